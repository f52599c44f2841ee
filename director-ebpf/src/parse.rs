//! Bounds-checked packet access. Every read or write of packet memory goes
//! through `ptr_at`, whose comparison against `data_end` is what the
//! verifier needs to see.

use core::mem;

use aya_ebpf::programs::XdpContext;
use director_common::abi::Reason;
use network_types::{eth::EthHdr, ip::Ipv4Hdr};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_LEN: usize = EthHdr::LEN;
pub const L4_OFF_V4: usize = ETH_LEN + Ipv4Hdr::LEN;

/// Pointer to a `T` at byte `off` of the packet, or `err` when it would run
/// past the end.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, off: usize, err: Reason) -> Result<*mut T, Reason> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + mem::size_of::<T>() > end {
        return Err(err);
    }
    Ok((start + off) as *mut T)
}

/// Ports and, for TCP, flags of a transport header; offsets of the fields the
/// rewrite touches.
pub struct L4 {
    /// Network byte order.
    pub sport: u16,
    /// Network byte order.
    pub dport: u16,
    /// TCP flags byte (0 for UDP).
    pub flags: u8,
    /// Offset of the checksum field from the packet start.
    pub check_off: usize,
}

const TCP_CHECK: usize = 16;
const TCP_FLAGS: usize = 13;
const TCP_MIN_LEN: usize = 20;
const UDP_CHECK: usize = 6;
const UDP_LEN: usize = 8;

/// Parses the fixed part of the TCP or UDP header at `off`.
#[inline(always)]
pub fn l4(ctx: &XdpContext, off: usize, tcp: bool) -> Result<L4, Reason> {
    if tcp {
        let h = ptr_at::<[u8; TCP_MIN_LEN]>(ctx, off, Reason::TruncatedL4)?;
        // SAFETY: in bounds per `ptr_at`; a byte array has no alignment.
        let h = unsafe { &*h };
        Ok(L4 {
            sport: u16::from_ne_bytes([h[0], h[1]]),
            dport: u16::from_ne_bytes([h[2], h[3]]),
            flags: h[TCP_FLAGS],
            check_off: off + TCP_CHECK,
        })
    } else {
        let h = ptr_at::<[u8; UDP_LEN]>(ctx, off, Reason::TruncatedL4)?;
        // SAFETY: as above.
        let h = unsafe { &*h };
        Ok(L4 {
            sport: u16::from_ne_bytes([h[0], h[1]]),
            dport: u16::from_ne_bytes([h[2], h[3]]),
            flags: 0,
            check_off: off + UDP_CHECK,
        })
    }
}
