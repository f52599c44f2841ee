//! A two-instruction XDP_PASS program for the lab's own veth ends.
//!
//! Frames the director XDP_TXes out of a veth sit in the peer's queue until that peer's
//! NAPI is kicked, and the kernel (6.18) kicks it after XDP_TX only when the peer has an
//! XDP program: GRO alone gives the peer NAPI but leaves XDP_TX frames stranded until
//! the next frame the stack sends that way. (XDP_REDIRECT into a veth flushes
//! explicitly, so it works with GRO alone.) The lab therefore attaches this program to
//! the peers of the director's interfaces.
//!
//! Loaded with raw `bpf(2)` calls: no object file, no BPF toolchain at test time. The
//! attachment is a BPF link held by an fd, so it goes away with the fd (or the device).

use std::os::fd::{FromRawFd, OwnedFd};

use anyhow::{Context, Result};

use super::netns::NetNs;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_PASS: i32 = 2;

/// `union bpf_attr`, as bytes: only the fields used here are set, the rest stays zero
/// as the kernel requires.
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

    fn call(&mut self, cmd: libc::c_long) -> std::io::Result<OwnedFd> {
        // SAFETY: `self` is a valid, initialised bpf_attr-sized buffer that outlives the
        // call; every pointer inside it points to memory the caller keeps alive.
        let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, self.0.as_mut_ptr(), self.0.len()) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: bpf() returned a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }
}

/// One `struct bpf_insn`: opcode, dst/src registers, offset, immediate.
fn insn(code: u8, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[4..].copy_from_slice(&imm.to_ne_bytes());
    b
}

/// The loaded XDP_PASS program.
#[derive(Debug)]
pub struct XdpPass {
    prog: OwnedFd,
}

impl XdpPass {
    pub fn load() -> Result<Self> {
        // r0 = XDP_PASS; exit
        let insns: Vec<u8> = [insn(0xb7, XDP_PASS), insn(0x95, 0)].concat();
        let license = c"GPL";
        let name = b"lab_xdp_pass\0";
        let mut attr = Attr::new();
        attr.u32_at(0, BPF_PROG_TYPE_XDP)
            .u32_at(4, (insns.len() / 8) as u32)
            .u64_at(8, insns.as_ptr() as u64)
            .u64_at(16, license.as_ptr() as u64)
            .u32_at(68, BPF_XDP);
        attr.0[48..48 + name.len()].copy_from_slice(name);
        let prog = attr
            .call(BPF_PROG_LOAD)
            .context("load XDP_PASS program (bpf PROG_LOAD)")?;
        Ok(Self { prog })
    }

    /// Attaches the program (native mode) to `ifname` in `ns`; detached when the
    /// returned link fd is closed.
    pub fn attach(&self, ns: &NetNs, ifname: &str) -> Result<OwnedFd> {
        use std::os::fd::AsRawFd;
        let prog_fd = self.prog.as_raw_fd() as u32;
        ns.run(|| -> Result<OwnedFd> {
            // Interface indexes are per namespace: resolve and attach from inside it.
            let ifindex = nix::net::if_::if_nametoindex(ifname)?;
            let mut attr = Attr::new();
            attr.u32_at(0, prog_fd)
                .u32_at(4, ifindex)
                .u32_at(8, BPF_XDP)
                .u32_at(12, XDP_FLAGS_DRV_MODE);
            Ok(attr.call(BPF_LINK_CREATE)?)
        })
        .with_context(|| format!("attach XDP_PASS to {ifname} in {}", ns.name()))
    }
}
