//! ICMP and ICMPv6 errors about tracked flows (destination unreachable,
//! fragmentation needed / packet too big, time exceeded). They quote the
//! packet that caused them; the quote names the flow, and the error is sent
//! where that flow goes, translated like the flow itself in NAT mode.
//!
//! - Toward a VIP: a router between us and the client answers a packet that
//!   left as VIP:port -> client. It goes to the flow's real server; in NAT mode
//!   the outer destination and the quoted source become the real server's.
//! - From the server side (NAT): an error about a packet we forwarded to a
//!   real server. It goes to the client; the outer source and the quoted
//!   destination become VIP:port.
//!
//! Every checksum that covers a changed byte is updated: outer IPv4 header,
//! quoted IPv4 header, quoted TCP/UDP checksum when quoted in full, and the
//! ICMP checksum (which for ICMPv6 also covers the outer addresses).

use aya_ebpf::bindings::{xdp_action, xdp_md};
use director_common::{
    abi::{CONN_F_NAT, FAMILY_V4, PROTO_TCP, PROTO_UDP, Reason, v4_key},
    csum,
};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    backend, conntrack,
    keys::flow,
    l2,
    nat::{self, Side, addr_off, load16, port_off, store16},
    parse::{Ctx, Pkt, V4_LEN, V6_LEN, check_field, ptr_at},
    ret::{self, Packed},
    scratch::Scratch,
};

/// The packet quoted by an ICMP error. Addresses first in an aligned
/// struct, as in `Pkt` (see `keys`).
#[repr(C, align(8))]
struct Quote {
    src: [u8; 16],
    dst: [u8; 16],
    l3_off: usize,
    l4_off: usize,
    proto: u8,
    sport: u16,
    dport: u16,
}

#[inline(always)]
fn is_error(family: u8, icmp_type: u8) -> bool {
    if family == FAMILY_V4 {
        matches!(icmp_type, 3 | 11)
    } else {
        matches!(icmp_type, 1..=3)
    }
}

#[inline(always)]
fn quote(ctx: &Ctx, family: u8, off: usize) -> Result<Quote, Reason> {
    let (proto, src, dst, l4_off) = if family == FAMILY_V4 {
        let ip = ptr_at::<Ipv4Hdr>(ctx, off, Reason::IcmpBadQuote)?;
        // SAFETY: in bounds per `ptr_at`; copied out.
        let (vihl, proto, src, dst) =
            unsafe { ((*ip).vihl, (*ip).proto, (*ip).src_addr, (*ip).dst_addr) };
        if vihl != 0x45 {
            return Err(Reason::IcmpBadQuote);
        }
        (proto, v4_key(src), v4_key(dst), off + V4_LEN)
    } else {
        let ip = ptr_at::<Ipv6Hdr>(ctx, off, Reason::IcmpBadQuote)?;
        // SAFETY: as above.
        unsafe { ((*ip).next_hdr, (*ip).src_addr, (*ip).dst_addr, off + V6_LEN) }
    };
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Err(Reason::IcmpUnknownFlow);
    }
    let ports = ptr_at::<[u8; 4]>(ctx, l4_off, Reason::IcmpBadQuote)?;
    // SAFETY: in bounds per `ptr_at`.
    let p = unsafe { *ports };
    Ok(Quote {
        l3_off: off,
        l4_off,
        proto,
        src,
        dst,
        sport: u16::from_ne_bytes([p[0], p[1]]),
        dport: u16::from_ne_bytes([p[2], p[3]]),
    })
}

/// A BPF subprogram with its own stack frame, see `forward`.
#[inline(never)]
pub fn handle(raw: *mut xdp_md, pkt: &Pkt, room: &mut Scratch) -> Packed {
    ret::pack(try_handle(&Ctx::new(raw), pkt, room))
}

#[inline(always)]
fn try_handle(ctx: &Ctx, pkt: &Pkt, room: &mut Scratch) -> Result<u32, Reason> {
    let hdr = ptr_at::<[u8; 8]>(ctx, pkt.l4_off, Reason::TruncatedL4)?;
    // SAFETY: in bounds per `ptr_at`.
    let icmp_type = unsafe { (*hdr)[0] };
    if !is_error(pkt.family, icmp_type) {
        return Ok(xdp_action::XDP_PASS);
    }
    let q = quote(ctx, pkt.family, pkt.l4_off + 8)?;
    // Both directions look the flow up by the quote reversed: the client
    // side in CONNS, the server side as a NAT reply would be.
    let key = flow(&q.dst, &q.src, q.dport, q.sport, q.proto, pkt.family);
    if let Some((backend_id, flags)) = conntrack::conn(&key) {
        let be = backend::usable(backend_id, pkt.family)?;
        if flags & CONN_F_NAT != 0 {
            translate(ctx, pkt, &q, Side::Destination, &be.addr, be.port)?;
        }
        return l2::send(ctx, be.dst_mac, be.src_mac, be.ifindex);
    }
    let side = conntrack::ServerSide {
        srv: &q.dst,
        sport: q.dport,
        client: &q.src,
        cport: q.sport,
        proto: q.proto,
        family: pkt.family,
    };
    if let Some(back) = conntrack::back(&side, room) {
        let (vip, vip_port) = back.vip();
        translate(ctx, pkt, &q, Side::Source, vip, vip_port)?;
        let (ifindex, dst_mac, src_mac) = back.l2();
        return l2::send(ctx, dst_mac, src_mac, ifindex);
    }
    Err(Reason::IcmpUnknownFlow)
}

/// Puts `addr` in the outer header's `outer` address and `addr`:`port` in
/// the quote's opposite end, fixing every checksum on the way.
#[inline(always)]
fn translate(
    ctx: &Ctx,
    pkt: &Pkt,
    q: &Quote,
    outer: Side,
    addr: &[u8; 16],
    port: u16,
) -> Result<(), Reason> {
    let v4 = pkt.family == FAMILY_V4;
    // The quote travelled the other way: its source is our destination.
    let inner = match outer {
        Side::Destination => Side::Source,
        Side::Source => Side::Destination,
    };
    // Changes inside the ICMP message, all covered by the ICMP checksum.
    let mut icmp_delta = 0u32;

    let d_outer = nat::set_addr(
        ctx,
        pkt.family,
        pkt.l3_off + addr_off(pkt.family, outer),
        addr,
    )?;
    if v4 {
        nat::fix_check(ctx, pkt.l3_off + 10, d_outer)?;
    } else {
        // The ICMPv6 checksum covers a pseudo-header with the outer addresses.
        icmp_delta += d_outer;
    }

    let d_inner = nat::set_addr(
        ctx,
        pkt.family,
        q.l3_off + addr_off(pkt.family, inner),
        addr,
    )?;
    icmp_delta += d_inner;
    if v4 {
        icmp_delta += nat::fix_check(ctx, q.l3_off + 10, d_inner)?;
    }
    let d_port = nat::set16(ctx, q.l4_off + port_off(inner), port)?;
    icmp_delta += d_port;

    // The quoted transport checksum, if the quote reaches it.
    let tcp = q.proto == PROTO_TCP;
    let check_off = q.l4_off + check_field(tcp);
    if let Ok(old) = load16(ctx, check_off)
        && (tcp || old != 0)
    {
        let mut new = csum::apply(old, d_inner + d_port);
        if !tcp {
            new = csum::udp_nonzero(new);
        }
        store16(ctx, check_off, new)?;
        icmp_delta += csum::delta(&old.to_ne_bytes(), &new.to_ne_bytes());
    }
    nat::fix_check(ctx, pkt.l4_off + 2, icmp_delta)?;
    Ok(())
}
