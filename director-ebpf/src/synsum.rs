//! The TCP checksum of a SYN, verified before the SYN makes an entry: a
//! flood of corrupt or carelessly forged SYNs fills no table. The segment is
//! copied into per-CPU room a chunk at a time (`bpf_xdp_load_bytes` takes a
//! bounded length, where a variable-length packet pointer would not verify)
//! and summed by the kernel (`bpf_csum_diff`, at most 512 bytes a call).

use aya_ebpf::{
    bindings::xdp_md,
    helpers::{bpf_csum_diff, bpf_xdp_load_bytes},
    macros::map,
    maps::PerCpuArray,
};
use director_common::{abi::PROTO_TCP, csum};

use crate::parse::Pkt;

const CHUNK: usize = 512;
const CHUNKS: usize = csum::SYN_CHECKED_MAX.div_ceil(CHUNK);

/// A chunk and its zero padding to a multiple of four. Twice the chunk: the
/// verifier bounds the rounded-up length by its bits, not its value.
#[repr(C)]
struct Room {
    buf: [u8; 2 * CHUNK],
}

#[map]
static ROOM: PerCpuArray<Room> = PerCpuArray::with_max_entries(1, 0);

/// Whether the TCP segment of `pkt` carries a correct checksum; false too
/// for a segment shorter than a TCP header or longer than
/// `csum::SYN_CHECKED_MAX`. A BPF subprogram: the caller's paths are
/// checked once, not once per chunk.
#[inline(never)]
pub fn verifies(raw: *mut xdp_md, pkt: &Pkt) -> bool {
    let len = pkt.l4_end.wrapping_sub(pkt.l4_off);
    if !(20..=csum::SYN_CHECKED_MAX).contains(&len) {
        return false;
    }
    let Some(room) = ROOM.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's entry; an XDP program runs to completion on its CPU.
    let buf = unsafe { &mut (*room).buf };
    let mut sum = csum::pseudo(&pkt.src, &pkt.dst, PROTO_TCP, len as u16);
    for i in 0..CHUNKS {
        let off = i * CHUNK;
        if off >= len {
            break;
        }
        let n = (len - off).min(CHUNK);
        // SAFETY: `buf` has room for `n` <= CHUNK bytes.
        let rc = unsafe {
            bpf_xdp_load_bytes(
                raw,
                (pkt.l4_off + off) as u32,
                buf.as_mut_ptr().cast(),
                n as u32,
            )
        };
        if rc != 0 || n > CHUNK {
            return false;
        }
        buf[n] = 0;
        buf[n + 1] = 0;
        buf[n + 2] = 0;
        let padded = (n + 3) & !3;
        // SAFETY: `padded` bytes of `buf` are initialised (the loaded bytes
        // and the zeros after them).
        let r = unsafe {
            bpf_csum_diff(
                core::ptr::null_mut(),
                0,
                buf.as_mut_ptr().cast(),
                padded as u32,
                sum,
            )
        };
        if r < 0 {
            return false;
        }
        sum = r as u32;
    }
    csum::verifies(sum)
}
