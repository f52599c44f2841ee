//! Raw `bpf(2)`: load an XDP program from instructions, create and read a per-CPU
//! array, attach a program to an interface of a lab namespace, run
//! `BPF_PROG_TEST_RUN`, read a program's id and sizes.
//!
//! No object file and no BPF toolchain at run time: the lab's XDP_PASS program
//! (`lab::xdp`) and the benchmark's baselines are built from instructions here. The
//! director's own program is loaded by aya; its fd goes through the same
//! [`test_run`], so every program is timed by one code path.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::lab::NetNs;
use anyhow::{Context, Result};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;

const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_MAP_TYPE_LRU_HASH: u32 = 9;
const BPF_MAP_TYPE_LRU_PERCPU_HASH: u32 = 10;
/// One LRU list per CPU instead of one shared list (map_flags).
const BPF_F_NO_COMMON_LRU: u32 = 1 << 1;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

/// `union bpf_attr`, as bytes: only the fields a command uses are set, the rest stays
/// zero as the kernel requires.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Self([0; 128])
    }

    fn u32_at(&mut self, offset: usize, v: u32) -> &mut Self {
        self.0[offset..offset + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn u64_at(&mut self, offset: usize, v: u64) -> &mut Self {
        self.0[offset..offset + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn read_u32(&self, offset: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[offset..offset + 4]);
        u32::from_ne_bytes(b)
    }

    fn call(&mut self, cmd: libc::c_long) -> io::Result<libc::c_long> {
        // SAFETY: `self` is a valid, initialised bpf_attr-sized buffer that outlives the
        // call; every pointer inside it points to memory the caller keeps alive.
        let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, self.0.as_mut_ptr(), self.0.len()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r)
    }

    fn call_fd(&mut self, cmd: libc::c_long) -> io::Result<OwnedFd> {
        let fd = self.call(cmd)?;
        // SAFETY: the command returned a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }
}

/// One `struct bpf_insn`. Registers: r0 return value, r1–r5 arguments (r1 = ctx on
/// entry), r10 frame pointer.
#[derive(Clone, Copy, Debug)]
pub struct Insn {
    code: u8,
    dst: u8,
    src: u8,
    off: i16,
    imm: i32,
}

/// Operand sizes of loads and stores.
#[derive(Clone, Copy, Debug)]
pub enum Size {
    B = 0x10,
    H = 0x08,
    W = 0x00,
    Dw = 0x18,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// `dst = imm` (64-bit).
    pub const fn mov_imm(dst: u8, imm: i32) -> Self {
        Self::new(0xb7, dst, 0, 0, imm)
    }

    /// `dst = src` (64-bit).
    pub const fn mov_reg(dst: u8, src: u8) -> Self {
        Self::new(0xbf, dst, src, 0, 0)
    }

    /// `dst += imm` (64-bit).
    pub const fn add_imm(dst: u8, imm: i32) -> Self {
        Self::new(0x07, dst, 0, 0, imm)
    }

    /// `dst = *(size *)(src + off)`.
    pub const fn load(size: Size, dst: u8, src: u8, off: i16) -> Self {
        Self::new(0x61 | size as u8, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = src`.
    pub const fn store(size: Size, dst: u8, off: i16, src: u8) -> Self {
        Self::new(0x63 | size as u8, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = imm`.
    pub const fn store_imm(size: Size, dst: u8, off: i16, imm: i32) -> Self {
        Self::new(0x62 | size as u8, dst, 0, off, imm)
    }

    /// `if dst > src goto +off` (unsigned).
    pub const fn jgt_reg(dst: u8, src: u8, off: i16) -> Self {
        Self::new(0x2d, dst, src, off, 0)
    }

    /// `if dst != imm goto +off`.
    pub const fn jne_imm(dst: u8, imm: i32, off: i16) -> Self {
        Self::new(0x55, dst, 0, off, imm)
    }

    /// `if dst == imm goto +off`.
    pub const fn jeq_imm(dst: u8, imm: i32, off: i16) -> Self {
        Self::new(0x15, dst, 0, off, imm)
    }

    /// Calls helper number `id`.
    pub const fn call(id: i32) -> Self {
        Self::new(0x85, 0, 0, 0, id)
    }

    pub const fn exit() -> Self {
        Self::new(0x95, 0, 0, 0, 0)
    }

    /// `dst = map` (a 16-byte `ld_imm64` with `BPF_PSEUDO_MAP_FD`): two instructions.
    pub fn load_map(dst: u8, map: &OwnedFd) -> [Self; 2] {
        [
            Self::new(0x18, dst, 1, 0, map.as_raw_fd()),
            Self::new(0, 0, 0, 0, 0),
        ]
    }

    fn bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.src << 4) | (self.dst & 0x0f);
        b[2..4].copy_from_slice(&self.off.to_ne_bytes());
        b[4..].copy_from_slice(&self.imm.to_ne_bytes());
        b
    }
}

/// A loaded XDP program.
#[derive(Debug)]
pub struct Program {
    name: String,
    fd: OwnedFd,
}

impl Program {
    /// Loads `insns` as an XDP program named `name` (at most 15 bytes).
    pub fn load(name: &str, insns: &[Insn]) -> Result<Self> {
        let code: Vec<u8> = insns.iter().flat_map(Insn::bytes).collect();
        let license = c"GPL";
        let mut log = vec![0u8; 64 * 1024];
        let mut attr = Attr::new();
        attr.u32_at(0, BPF_PROG_TYPE_XDP)
            .u32_at(4, insns.len() as u32)
            .u64_at(8, code.as_ptr() as u64)
            .u64_at(16, license.as_ptr() as u64)
            .u32_at(24, 1) // log_level
            .u32_at(28, log.len() as u32)
            .u64_at(32, log.as_mut_ptr() as u64)
            .u32_at(68, BPF_XDP);
        let n = name.len().min(15);
        attr.0[48..48 + n].copy_from_slice(&name.as_bytes()[..n]);
        let fd = attr.call_fd(BPF_PROG_LOAD).map_err(|e| {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            anyhow::anyhow!(
                "loading XDP program {name}: {e}; verifier log:\n{}",
                String::from_utf8_lossy(&log[..end])
            )
        })?;
        Ok(Self {
            name: name.to_owned(),
            fd,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// See [`attach`].
    pub fn attach(&self, ns: &NetNs, ifname: &str) -> Result<OwnedFd> {
        attach(self.fd(), &self.name, ns, ifname)
    }
}

/// Attaches XDP program `prog` (any loaded one, the director's included) in native
/// mode to `ifname` in `ns` through a BPF link: detached when the returned link fd is
/// closed, or when the device goes away with its namespace.
pub fn attach(prog: BorrowedFd<'_>, name: &str, ns: &NetNs, ifname: &str) -> Result<OwnedFd> {
    let prog_fd = prog.as_raw_fd() as u32;
    ns.run(|| -> Result<OwnedFd> {
        // Interface indexes are per namespace: resolve and attach from inside it.
        let ifindex = nix::net::if_::if_nametoindex(ifname)?;
        let mut attr = Attr::new();
        attr.u32_at(0, prog_fd)
            .u32_at(4, ifindex)
            .u32_at(8, BPF_XDP)
            .u32_at(12, XDP_FLAGS_DRV_MODE);
        Ok(attr.call_fd(BPF_LINK_CREATE)?)
    })
    .with_context(|| format!("attach XDP program {name} to {ifname} in {}", ns.name()))
}

/// One `BPF_PROG_TEST_RUN` call.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub retval: u32,
    /// Kernel-measured nanoseconds per repetition (its average over `repeat`).
    pub duration_ns: u32,
    pub out_len: u32,
}

/// Runs `prog` on a copy of `data` (the kernel copies it in on every call), `repeat`
/// times in the kernel; the possibly rewritten frame lands in `out`.
pub fn test_run(prog: BorrowedFd<'_>, data: &[u8], out: &mut [u8], repeat: u32) -> Result<Run> {
    let mut attr = Attr::new();
    attr.u32_at(0, prog.as_raw_fd() as u32)
        .u32_at(8, data.len() as u32)
        .u32_at(12, out.len() as u32)
        .u64_at(16, data.as_ptr() as u64)
        .u64_at(24, out.as_mut_ptr() as u64)
        .u32_at(32, repeat);
    attr.call(BPF_PROG_TEST_RUN)
        .context("BPF_PROG_TEST_RUN (needs root and a kernel with BPF)")?;
    Ok(Run {
        retval: attr.read_u32(4),
        duration_ns: attr.read_u32(36),
        out_len: attr.read_u32(12),
    })
}

/// What `BPF_OBJ_GET_INFO_BY_FD` says about a program.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct ProgInfo {
    pub id: u32,
    /// Instructions after the verifier's rewrites (`xlated_prog_len / 8`).
    pub xlated_insns: u32,
    /// Bytes of JIT-compiled machine code.
    pub jited_bytes: u32,
    /// Instructions the verifier processed while proving the program safe (its
    /// load-time cost; 0 before Linux 5.16).
    pub verified_insns: u32,
}

pub fn prog_info(prog: BorrowedFd<'_>) -> Result<ProgInfo> {
    // struct bpf_prog_info (append-only ABI): type @0, id @4, tag[8] @8,
    // jited_prog_len @16, xlated_prog_len @20, ..., verified_insns @216.
    let mut info = [0u8; 256];
    let mut attr = Attr::new();
    attr.u32_at(0, prog.as_raw_fd() as u32)
        .u32_at(4, info.len() as u32)
        .u64_at(8, info.as_mut_ptr() as u64);
    attr.call(BPF_OBJ_GET_INFO_BY_FD)
        .context("BPF_OBJ_GET_INFO_BY_FD")?;
    let u32_at = |o: usize| u32::from_ne_bytes([info[o], info[o + 1], info[o + 2], info[o + 3]]);
    Ok(ProgInfo {
        id: u32_at(4),
        jited_bytes: u32_at(16),
        xlated_insns: u32_at(20) / 8,
        verified_insns: u32_at(216),
    })
}

/// A per-CPU array of `u64` counters.
#[derive(Debug)]
pub struct Counters {
    fd: OwnedFd,
    cpus: usize,
}

impl Counters {
    pub fn create(name: &str, entries: u32) -> Result<Self> {
        let mut attr = Attr::new();
        attr.u32_at(0, BPF_MAP_TYPE_PERCPU_ARRAY)
            .u32_at(4, 4)
            .u32_at(8, 8)
            .u32_at(12, entries);
        let n = name.len().min(15);
        attr.0[28..28 + n].copy_from_slice(&name.as_bytes()[..n]);
        let fd = attr
            .call_fd(BPF_MAP_CREATE)
            .with_context(|| format!("create per-CPU array {name}"))?;
        Ok(Self {
            fd,
            cpus: possible_cpus()?,
        })
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Counter `index` summed over CPUs.
    pub fn sum(&self, index: u32) -> Result<u64> {
        let mut values = vec![0u64; self.cpus];
        let mut attr = Attr::new();
        attr.u32_at(0, self.fd.as_raw_fd() as u32)
            .u64_at(8, &index as *const u32 as u64)
            .u64_at(16, values.as_mut_ptr() as u64);
        attr.call(BPF_MAP_LOOKUP_ELEM)
            .context("read per-CPU counter")?;
        Ok(values.iter().sum())
    }
}

/// An LRU hash map (common LRU lists, preallocated: what the director's `CONNS` is).
/// The layouts a connection table could have, priced against each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lru {
    /// One hash table, one LRU list (the director's `CONNS`).
    Shared,
    /// One hash table, an LRU list per CPU (`BPF_F_NO_COMMON_LRU`).
    SharedPerCpuLists,
    /// A value per CPU (`BPF_MAP_TYPE_LRU_PERCPU_HASH`).
    PerCpu,
}

pub fn lru_hash(
    name: &str,
    key_size: u32,
    value_size: u32,
    entries: u32,
    kind: Lru,
) -> Result<OwnedFd> {
    let (map_type, flags) = match kind {
        Lru::Shared => (BPF_MAP_TYPE_LRU_HASH, 0),
        Lru::SharedPerCpuLists => (BPF_MAP_TYPE_LRU_HASH, BPF_F_NO_COMMON_LRU),
        Lru::PerCpu => (BPF_MAP_TYPE_LRU_PERCPU_HASH, 0),
    };
    let mut attr = Attr::new();
    attr.u32_at(0, map_type)
        .u32_at(4, key_size)
        .u32_at(8, value_size)
        .u32_at(12, entries)
        .u32_at(16, flags);
    let n = name.len().min(15);
    attr.0[28..28 + n].copy_from_slice(&name.as_bytes()[..n]);
    attr.call_fd(BPF_MAP_CREATE)
        .with_context(|| format!("create LRU hash {name}"))
}

/// Writes `key` -> `value` into the map `map` (sizes as the map was created with).
pub fn map_update(map: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> Result<()> {
    let mut attr = Attr::new();
    attr.u32_at(0, map.as_raw_fd() as u32)
        .u64_at(8, key.as_ptr() as u64)
        .u64_at(16, value.as_ptr() as u64);
    attr.call(BPF_MAP_UPDATE_ELEM)
        .context("update map element")?;
    Ok(())
}

/// Number of possible CPUs (`/sys/devices/system/cpu/possible`, e.g. `0-3`): the
/// length of a per-CPU map value.
fn possible_cpus() -> Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .context("read /sys/devices/system/cpu/possible")?;
    parse_cpu_list(text.trim()).with_context(|| format!("parse possible CPUs {:?}", text.trim()))
}

fn parse_cpu_list(list: &str) -> Option<usize> {
    let mut max = 0usize;
    for part in list.split(',') {
        let last = part.rsplit('-').next()?;
        max = max.max(last.trim().parse::<usize>().ok()?);
    }
    Some(max + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-1"), Some(2));
        assert_eq!(parse_cpu_list("0-3,8-11"), Some(12));
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn instruction_encoding() {
        // r1 = *(u32 *)(r2 + 4): opcode 0x61, dst 1, src 2.
        assert_eq!(
            Insn::load(Size::W, 1, 2, 4).bytes(),
            [0x61, 0x21, 4, 0, 0, 0, 0, 0]
        );
        assert_eq!(Insn::mov_imm(0, 2).bytes(), [0xb7, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(
            Insn::store_imm(Size::H, 2, 4, 0x1234).bytes(),
            [0x6a, 0x02, 4, 0, 0x34, 0x12, 0, 0]
        );
    }
}
