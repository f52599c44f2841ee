//! Address and port rewrite with incremental checksum updates (RFC 1624,
//! `director_common::csum`), for both families.

use director_common::{
    abi::{FAMILY_V4, Reason},
    csum,
};

use crate::parse::{Ctx, Pkt, ptr_at};

/// Which end of the packet to rewrite.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Inbound: VIP:port becomes the real server's address and port.
    Destination,
    /// Reply: the real server's address and port become VIP:port.
    Source,
}

/// Offset of the source or destination address within an IP header.
#[inline(always)]
pub const fn addr_off(family: u8, side: Side) -> usize {
    match (family == FAMILY_V4, side) {
        (true, Side::Source) => 12,
        (true, Side::Destination) => 16,
        (false, Side::Source) => 8,
        (false, Side::Destination) => 24,
    }
}

/// Offset of the source or destination port within a TCP/UDP header.
#[inline(always)]
pub const fn port_off(side: Side) -> usize {
    match side {
        Side::Source => 0,
        Side::Destination => 2,
    }
}

/// Writes `addr` over the IP address at `off` (IPv4: its first four bytes)
/// and returns the checksum delta of the change (`csum::delta`), to be
/// applied to every checksum that covers the address.
#[inline(always)]
pub fn set_addr(ctx: &Ctx, family: u8, off: usize, addr: &[u8; 16]) -> Result<u32, Reason> {
    if family == FAMILY_V4 {
        let p = ptr_at::<[u8; 4]>(ctx, off, Reason::BadIpv4Header)?;
        let new = [addr[0], addr[1], addr[2], addr[3]];
        // SAFETY: in bounds per `ptr_at`.
        let old = unsafe { core::mem::replace(&mut *p, new) };
        Ok(csum::delta(&old, &new))
    } else {
        let p = ptr_at::<[u8; 16]>(ctx, off, Reason::BadIpv6Header)?;
        // SAFETY: in bounds per `ptr_at`.
        let old = unsafe { core::mem::replace(&mut *p, *addr) };
        Ok(csum::delta(&old, addr))
    }
}

/// Reads the 16-bit field at `off` as stored (see `csum`).
#[inline(always)]
pub fn load16(ctx: &Ctx, off: usize) -> Result<u16, Reason> {
    let p = ptr_at::<[u8; 2]>(ctx, off, Reason::TruncatedL4)?;
    // SAFETY: in bounds per `ptr_at`.
    Ok(u16::from_ne_bytes(unsafe { *p }))
}

#[inline(always)]
pub fn store16(ctx: &Ctx, off: usize, v: u16) -> Result<(), Reason> {
    let p = ptr_at::<[u8; 2]>(ctx, off, Reason::TruncatedL4)?;
    // SAFETY: in bounds per `ptr_at`.
    unsafe { *p = v.to_ne_bytes() };
    Ok(())
}

/// Replaces the 16-bit field at `off`; returns the checksum delta.
#[inline(always)]
pub fn set16(ctx: &Ctx, off: usize, v: u16) -> Result<u32, Reason> {
    let old = load16(ctx, off)?;
    store16(ctx, off, v)?;
    Ok(csum::delta(&old.to_ne_bytes(), &v.to_ne_bytes()))
}

/// Applies `delta` to the checksum field at `off`; returns the delta of
/// that field's own change (for a checksum that covers this one).
#[inline(always)]
pub fn fix_check(ctx: &Ctx, off: usize, delta: u32) -> Result<u32, Reason> {
    let old = load16(ctx, off)?;
    let new = csum::apply(old, delta);
    store16(ctx, off, new)?;
    Ok(csum::delta(&old.to_ne_bytes(), &new.to_ne_bytes()))
}

/// Rewrites one end of a TCP/UDP packet to `addr`:`port` (wire order),
/// fixing the IPv4 header checksum and the transport checksum, whose
/// pseudo-header covers the address.
#[inline(always)]
pub fn rewrite(
    ctx: &Ctx,
    pkt: &Pkt,
    check_off: usize,
    tcp: bool,
    side: Side,
    addr: &[u8; 16],
    port: u16,
) -> Result<(), Reason> {
    let d_addr = set_addr(
        ctx,
        pkt.family,
        pkt.l3_off + addr_off(pkt.family, side),
        addr,
    )?;
    if pkt.family == FAMILY_V4 {
        fix_check(ctx, pkt.l3_off + 10, d_addr)?;
    }
    let d_port = set16(ctx, pkt.l4_off + port_off(side), port)?;
    let check = load16(ctx, check_off)?;
    // A UDP checksum of zero means "none" (IPv4 only) and stays so.
    if tcp {
        store16(ctx, check_off, csum::apply(check, d_addr + d_port))
    } else if check != 0 {
        store16(
            ctx,
            check_off,
            csum::udp_nonzero(csum::apply(check, d_addr + d_port)),
        )
    } else {
        Ok(())
    }
}
