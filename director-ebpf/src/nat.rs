//! Address and port rewrite with incremental checksum updates (RFC 1624,
//! `director_common::csum`). IPv4 without options: the caller checked.

use aya_ebpf::programs::XdpContext;
use director_common::{abi::Reason, csum};
use network_types::ip::Ipv4Hdr;

use crate::parse::{ETH_LEN, L4, L4_OFF_V4, ptr_at};

/// Which end of the packet to rewrite.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Inbound: VIP:port becomes the real server's address and port.
    Destination,
    /// Reply: the real server's address and port become VIP:port.
    Source,
}

#[inline(always)]
pub fn rewrite(
    ctx: &XdpContext,
    l4: &L4,
    tcp: bool,
    side: Side,
    addr: [u8; 4],
    port: u16,
) -> Result<(), Reason> {
    let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN, Reason::BadIpv4Header)?;
    // SAFETY: in bounds per `ptr_at`; Ipv4Hdr is u8 and byte arrays only.
    let ip = unsafe { &mut *ip };
    let old_addr = match side {
        Side::Destination => core::mem::replace(&mut ip.dst_addr, addr),
        Side::Source => core::mem::replace(&mut ip.src_addr, addr),
    };
    let ip_check = u16::from_ne_bytes(ip.check);
    ip.check = csum::replace4(ip_check, old_addr, addr).to_ne_bytes();

    let port_off = L4_OFF_V4 + if side == Side::Destination { 2 } else { 0 };
    let port_p = ptr_at::<[u8; 2]>(ctx, port_off, Reason::TruncatedL4)?;
    let check_p = ptr_at::<[u8; 2]>(ctx, l4.check_off, Reason::TruncatedL4)?;
    let new_port = port.to_ne_bytes();
    // SAFETY: both in bounds per `ptr_at`.
    unsafe {
        let old_port = core::mem::replace(&mut *port_p, new_port);
        let check = u16::from_ne_bytes(*check_p);
        // A UDP checksum of zero means "none" and stays so.
        if tcp || check != 0 {
            let mut c = csum::replace4(check, old_addr, addr);
            c = csum::replace2(c, old_port, new_port);
            if !tcp {
                c = csum::udp_nonzero(c);
            }
            *check_p = c.to_ne_bytes();
        }
    }
    Ok(())
}
