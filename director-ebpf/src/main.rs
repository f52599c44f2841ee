//! director's XDP datapath: virtual-server lookup, connection tracking,
//! scheduling through userspace-computed lists, NAT and direct routing, for
//! IPv4 and IPv6, TCP and UDP, and the ICMP errors about those flows.
//!
//! Policy for what is not ours: anything that is not for a virtual server, a
//! tracked NAT reply or an ICMP error about a tracked flow passes to the stack
//! untouched. Packets we cannot classify pass (counted) and the stack judges
//! them; packets for a virtual server that cannot be forwarded are dropped
//! (counted). See `Reason`.
#![no_std]
#![no_main]
// Atomic add without CAS support on the BPF target, see `counts`.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod backend;
mod conntrack;
mod counts;
mod forward;
mod icmp;
mod keys;
mod l2;
mod maps;
mod nat;
mod parse;
mod ret;
mod schedule;
mod scratch;
mod stats;
mod sync;
mod synsum;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use director_common::abi::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, Reason};
use network_types::eth::EthHdr;

use crate::{
    maps::VIPS,
    parse::{Ctx, ETH_LEN, ETH_P_IP, ETH_P_IPV6, ptr_at},
};

#[xdp]
pub fn director(ctx: XdpContext) -> u32 {
    match try_director(&ctx) {
        Ok(action) => action,
        Err(reason) => {
            stats::reason(reason);
            if reason.passes() {
                xdp_action::XDP_PASS
            } else {
                xdp_action::XDP_DROP
            }
        }
    }
}

#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "a key passed by value is copied onto the BPF stack, which then exceeds 512 bytes"
)]
#[inline(always)]
fn try_director(xdp: &XdpContext) -> Result<u32, Reason> {
    let ctx = &Ctx::new(xdp.ctx);
    let eth = ptr_at::<EthHdr>(ctx, 0, Reason::TruncatedEth)?;
    // SAFETY: in bounds per `ptr_at`.
    let ether_type = u16::from_be(unsafe { (*eth).ether_type });
    let pkt = match ether_type {
        ETH_P_IP => parse::ipv4(ctx, ETH_LEN)?,
        ETH_P_IPV6 => parse::ipv6(ctx, ETH_LEN)?,
        _ => None,
    };
    let Some(pkt) = pkt else {
        return Ok(xdp_action::XDP_PASS);
    };
    // Taken once here and handed down (see `scratch`).
    let room = scratch::get()?;
    if pkt.proto == PROTO_ICMP || pkt.proto == PROTO_ICMPV6 {
        return ret::unpack(icmp::handle(xdp.ctx, &pkt, room));
    }
    let l4 = parse::l4(ctx, pkt.l4_off, pkt.proto == PROTO_TCP)?;
    room.vip_key = keys::server(&pkt.dst, l4.dport, pkt.proto, pkt.family);
    // SAFETY: a map value, only ever replaced whole by userspace.
    if let Some(vip) = unsafe { VIPS.get(&room.vip_key) } {
        return ret::unpack(forward::inbound(xdp.ctx, &pkt, &l4, vip, room));
    }
    ret::unpack(forward::reply(xdp.ctx, &pkt, &l4, room))
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
