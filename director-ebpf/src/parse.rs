//! Bounds-checked packet access and header parsing. Every read or write of
//! packet memory goes through `ptr_at`, whose comparison against `data_end`
//! is what the verifier needs to see.

use core::mem;

use aya_ebpf::{bindings::xdp_md, programs::XdpContext};

use director_common::abi::{
    FAMILY_V4, FAMILY_V6, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Reason, v4_key,
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_LEN: usize = EthHdr::LEN;
pub const V4_LEN: usize = Ipv4Hdr::LEN;
pub const V6_LEN: usize = Ipv6Hdr::LEN;

/// The packet bounds and ingress interface, read from the XDP context once
/// per BPF (sub)program. Reading `ctx->data_end` again later lets LLVM keep a
/// pointer *into* the context (ctx + 4) across the function, which the
/// verifier refuses to dereference.
pub struct Ctx {
    data: usize,
    end: usize,
    ifindex: u32,
}

impl Ctx {
    #[inline(always)]
    pub fn new(raw: *mut xdp_md) -> Ctx {
        let ctx = XdpContext::new(raw);
        Ctx {
            data: ctx.data(),
            end: ctx.data_end(),
            ifindex: ctx.ingress_ifindex() as u32,
        }
    }

    #[inline(always)]
    pub fn data(&self) -> usize {
        self.data
    }

    #[inline(always)]
    pub fn data_end(&self) -> usize {
        self.end
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.end - self.data
    }

    #[inline(always)]
    pub fn ingress_ifindex(&self) -> u32 {
        self.ifindex
    }
}

/// Pointer to a `T` at byte `off` of the packet, or `err` when it would run
/// past the end.
#[inline(always)]
pub fn ptr_at<T>(ctx: &Ctx, off: usize, err: Reason) -> Result<*mut T, Reason> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + mem::size_of::<T>() > end {
        return Err(err);
    }
    Ok((start + off) as *mut T)
}

/// The network layer of a packet we may handle, copied out of it. The
/// addresses come first in an aligned struct so that copying them into keys
/// takes word loads and stores, not byte ones.
#[repr(C, align(8))]
pub struct Pkt {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Offset of the IP header and of what follows it.
    pub l3_off: usize,
    pub l4_off: usize,
    /// End of the IP payload (a short frame's Ethernet padding follows).
    pub l4_end: usize,
    pub family: u8,
    /// TCP, UDP, ICMP or ICMPv6.
    pub proto: u8,
}

/// An IPv4 packet carrying TCP, UDP or ICMP; `None` for anything else.
#[inline(always)]
pub fn ipv4(ctx: &Ctx, off: usize) -> Result<Option<Pkt>, Reason> {
    let ip = ptr_at::<Ipv4Hdr>(ctx, off, Reason::BadIpv4Header)?;
    // SAFETY: in bounds per `ptr_at`; copied out field by field.
    let (vihl, tot_len, frags, proto, src, dst) = unsafe {
        let ip = &*ip;
        (
            ip.vihl,
            u16::from_be_bytes(ip.tot_len) as usize,
            u16::from_be_bytes(ip.frags),
            ip.proto,
            ip.src_addr,
            ip.dst_addr,
        )
    };
    if !matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_ICMP) {
        return Ok(None);
    }
    if vihl >> 4 != 4 || vihl & 0xf < 5 || tot_len < V4_LEN {
        return Err(Reason::BadIpv4Header);
    }
    if off + tot_len > ctx.len() {
        return Err(Reason::BadIpv4Header);
    }
    // MF set or a non-zero offset: ports are not in every fragment.
    if frags & 0x3fff != 0 {
        return Err(Reason::Fragment);
    }
    if vihl & 0xf != 5 {
        return Err(Reason::Ipv4Options);
    }
    Ok(Some(Pkt {
        family: FAMILY_V4,
        proto,
        l3_off: off,
        l4_off: off + V4_LEN,
        l4_end: off + tot_len,
        src: v4_key(src),
        dst: v4_key(dst),
    }))
}

/// An IPv6 packet whose first next header is TCP, UDP or ICMPv6; `None` for
/// anything else. Extension headers are not walked: such packets pass.
#[inline(always)]
pub fn ipv6(ctx: &Ctx, off: usize) -> Result<Option<Pkt>, Reason> {
    let ip = ptr_at::<Ipv6Hdr>(ctx, off, Reason::BadIpv6Header)?;
    // SAFETY: in bounds per `ptr_at`; copied out.
    let (version, payload_len, next, src, dst) = unsafe {
        let ip = &*ip;
        (
            ip.vcf[0] >> 4,
            u16::from_be_bytes(ip.payload_len) as usize,
            ip.next_hdr,
            ip.src_addr,
            ip.dst_addr,
        )
    };
    if version != 6 || off + V6_LEN + payload_len > ctx.len() {
        return Err(Reason::BadIpv6Header);
    }
    match next {
        PROTO_TCP | PROTO_UDP | PROTO_ICMPV6 => Ok(Some(Pkt {
            family: FAMILY_V6,
            proto: next,
            l3_off: off,
            l4_off: off + V6_LEN,
            l4_end: off + V6_LEN + payload_len,
            src,
            dst,
        })),
        44 => Err(Reason::Fragment),
        // Hop-by-hop, routing, destination options, mobility, HIP, shim6.
        0 | 43 | 60 | 135 | 139 | 140 => Err(Reason::Ipv6ExtHeader),
        _ => Ok(None),
    }
}

/// Ports and, for TCP, flags of a transport header, and where its checksum is.
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
pub const UDP_LEN: usize = 8;

/// Offset of the transport checksum within its header.
#[inline(always)]
pub const fn check_field(tcp: bool) -> usize {
    if tcp { TCP_CHECK } else { UDP_CHECK }
}

/// Parses the fixed part of the TCP or UDP header at `off`.
#[inline(always)]
pub fn l4(ctx: &Ctx, off: usize, tcp: bool) -> Result<L4, Reason> {
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
