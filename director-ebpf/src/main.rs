//! director's XDP datapath: virtual-server lookup, connection tracking,
//! scheduling through userspace-computed rings, NAT and direct routing.
//!
//! Policy for what is not ours: anything that is not IPv4 TCP/UDP to a
//! virtual server or a tracked NAT reply passes to the stack untouched.
//! Packets we cannot classify pass (counted) and the stack judges them;
//! packets for a virtual server that cannot be forwarded are dropped (counted).
#![no_std]
#![no_main]

mod conntrack;
mod l2;
mod maps;
mod nat;
mod parse;
mod schedule;
mod stats;

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_ktime_get_ns, macros::xdp, programs::XdpContext,
};
use director_common::abi::{
    BACKEND_F_RESOLVED, CONN_F_NAT, Conn, FAMILY_V4, FlowKey, NatReply, PROTO_TCP, PROTO_UDP,
    Reason, VIP_F_NAT, VipInfo, VipKey, v4_key,
};
use director_common::tcp::State;
use network_types::{eth::EthHdr, ip::Ipv4Hdr};

use crate::{
    conntrack::Lookup,
    maps::{BACKENDS, VIPS},
    nat::Side,
    parse::{ETH_LEN, ETH_P_IP, L4, L4_OFF_V4, ptr_at},
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

#[inline(always)]
fn try_director(ctx: &XdpContext) -> Result<u32, Reason> {
    let eth = ptr_at::<EthHdr>(ctx, 0, Reason::TruncatedEth)?;
    // SAFETY: in bounds per `ptr_at`.
    let ether_type = unsafe { (*eth).ether_type };
    if u16::from_be(ether_type) != ETH_P_IP {
        return Ok(xdp_action::XDP_PASS);
    }
    ipv4(ctx)
}

/// IPv4 header fields the decisions need, copied out of the packet.
struct V4 {
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
}

#[inline(always)]
fn ipv4(ctx: &XdpContext) -> Result<u32, Reason> {
    let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN, Reason::BadIpv4Header)?;
    // SAFETY: in bounds per `ptr_at`; copied out field by field.
    let (vihl, tot_len, frags, v4) = unsafe {
        let ip = &*ip;
        (
            ip.vihl,
            u16::from_be_bytes(ip.tot_len) as usize,
            u16::from_be_bytes(ip.frags),
            V4 {
                src: ip.src_addr,
                dst: ip.dst_addr,
                proto: ip.proto,
            },
        )
    };
    let tcp = match v4.proto {
        PROTO_TCP => true,
        PROTO_UDP => false,
        _ => return Ok(xdp_action::XDP_PASS),
    };
    if vihl >> 4 != 4 || vihl & 0xf < 5 || tot_len < Ipv4Hdr::LEN {
        return Err(Reason::BadIpv4Header);
    }
    if ETH_LEN + tot_len > ctx.data_end() - ctx.data() {
        return Err(Reason::BadIpv4Header);
    }
    // MF set or a non-zero offset: ports are not in every fragment.
    if frags & 0x3fff != 0 {
        return Err(Reason::Fragment);
    }
    if vihl & 0xf != 5 {
        return Err(Reason::Ipv4Options);
    }
    let l4 = parse::l4(ctx, L4_OFF_V4, tcp)?;
    let vip_key = VipKey {
        addr: v4_key(v4.dst),
        port: l4.dport,
        proto: v4.proto,
        family: FAMILY_V4,
    };
    // SAFETY: copied out at once.
    if let Some(vip) = unsafe { VIPS.get(&vip_key).copied() } {
        return inbound(ctx, &v4, &l4, tcp, &vip);
    }
    reply(ctx, &v4, &l4, tcp)
}

#[inline(always)]
fn narrow(a: &[u8; 16]) -> [u8; 4] {
    [a[0], a[1], a[2], a[3]]
}

#[inline(always)]
fn flow(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, proto: u8) -> FlowKey {
    FlowKey {
        src: v4_key(src),
        dst: v4_key(dst),
        sport,
        dport,
        proto,
        family: FAMILY_V4,
        _pad: [0; 2],
    }
}

/// Client -> VIP: find or schedule the real server, then NAT or DR.
#[inline(always)]
fn inbound(ctx: &XdpContext, v4: &V4, l4: &L4, tcp: bool, vip: &VipInfo) -> Result<u32, Reason> {
    let key = flow(v4.src, v4.dst, l4.sport, l4.dport, v4.proto);
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let (backend_id, new_conn) = match conntrack::inbound(&key, tcp, l4.flags, now)? {
        Lookup::Known(id) => (id, false),
        Lookup::New => (schedule::pick(vip)?, true),
    };
    let be = BACKENDS
        .get(backend_id)
        .copied()
        .ok_or(Reason::BadBackend)?;
    if be.family != FAMILY_V4 {
        return Err(Reason::BadBackend);
    }
    if be.flags & BACKEND_F_RESOLVED == 0 {
        return Err(Reason::Unresolved);
    }
    let is_nat = vip.flags & VIP_F_NAT != 0;
    if new_conn {
        // SAFETY: in bounds (checked on entry); copied out at once.
        let (client_mac, local_mac) = unsafe {
            let eth = ptr_at::<EthHdr>(ctx, 0, Reason::TruncatedEth)?;
            ((*eth).src_addr, (*eth).dst_addr)
        };
        let ifindex = ctx.ingress_ifindex() as u32;
        if is_nat {
            let reply_key = flow(narrow(&be.addr), v4.src, be.port, l4.sport, v4.proto);
            conntrack::create_reply(
                &reply_key,
                &NatReply {
                    vip: v4_key(v4.dst),
                    vip_port: l4.dport,
                    _pad0: [0; 2],
                    ifindex,
                    vip_id: vip.vip_id,
                    backend_id,
                    dst_mac: client_mac,
                    src_mac: local_mac,
                },
            )?;
        }
        conntrack::create(
            &key,
            &Conn {
                backend_id,
                vip_id: vip.vip_id,
                state: if tcp { State::SynRecv } else { State::Udp } as u8,
                flags: if is_nat { CONN_F_NAT } else { 0 },
                _pad0: [0; 2],
                client_ifindex: ifindex,
                last_seen_ns: now,
                client_mac,
                local_mac,
                _pad1: [0; 4],
            },
        )?;
    }
    if is_nat {
        nat::rewrite(ctx, l4, tcp, Side::Destination, narrow(&be.addr), be.port)?;
    }
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    stats::traffic(vip.vip_id, backend_id, new_conn, bytes, true);
    l2::send(ctx, be.dst_mac, be.src_mac, be.ifindex)
}

/// Real server -> client of a NAT connection: restore VIP:port as source.
#[inline(always)]
fn reply(ctx: &XdpContext, v4: &V4, l4: &L4, tcp: bool) -> Result<u32, Reason> {
    let key = flow(v4.src, v4.dst, l4.sport, l4.dport, v4.proto);
    let Some(r) = conntrack::reply(&key) else {
        return Ok(xdp_action::XDP_PASS);
    };
    if tcp {
        let client_key = flow(v4.dst, narrow(&r.vip), l4.dport, r.vip_port, v4.proto);
        conntrack::reply_flags(&client_key, l4.flags);
    }
    nat::rewrite(ctx, l4, tcp, Side::Source, narrow(&r.vip), r.vip_port)?;
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    stats::traffic(r.vip_id, r.backend_id, false, bytes, false);
    l2::send(ctx, r.dst_mac, r.src_mac, r.ifindex)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
