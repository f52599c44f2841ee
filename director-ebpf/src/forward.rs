//! The TCP/UDP paths: client -> VIP (find or schedule the real server, then
//! NAT or direct routing) and real server -> client (undo the NAT).
//!
//! The three entry points are BPF subprograms (`#[inline(never)]`): each
//! gets its own stack frame, where inlined together they would exceed the
//! 512-byte BPF stack. They take references and return `ret::pack`ed results.

use aya_ebpf::{bindings::xdp_md, helpers::bpf_ktime_get_coarse_ns};
use director_common::abi::{
    CONN_F_GUESS, CONN_F_NAT, Conn, NatReply, PROTO_TCP, Reason, VIP_F_MIDFLOW, VIP_F_NAT, VipInfo,
    coarse_s,
};
use director_common::tcp::State;
use network_types::eth::EthHdr;

use crate::{
    backend,
    conntrack::{self, Lookup, ServerSide},
    keys::{self, flow},
    l2,
    maps::BACKENDS,
    nat::{self, Side},
    parse::{Ctx, L4, Pkt, ptr_at},
    ret::{self, Packed},
    schedule,
    scratch::Scratch,
    stats, synsum,
};

/// Client -> VIP.
#[inline(never)]
pub fn inbound(raw: *mut xdp_md, pkt: &Pkt, l4: &L4, vip: &VipInfo, s: &mut Scratch) -> Packed {
    ret::pack(try_inbound(raw, pkt, l4, vip, s))
}

#[inline(always)]
fn try_inbound(
    raw: *mut xdp_md,
    pkt: &Pkt,
    l4: &L4,
    vip: &VipInfo,
    s: &mut Scratch,
) -> Result<u32, Reason> {
    let ctx = &Ctx::new(raw);
    let tcp = pkt.proto == PROTO_TCP;
    s.conn_key = flow(
        &pkt.src, &pkt.dst, l4.sport, l4.dport, pkt.proto, pkt.family,
    );
    // The coarse clock: a tick's precision is plenty for idle timeouts, and
    // it skips the clocksource read (the bench priced the precise clock at
    // about a fifth of an established packet on a VM).
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let midflow = vip.flags & VIP_F_MIDFLOW != 0;
    let (backend_id, new_conn) = match conntrack::inbound(s, tcp, l4.flags, now, midflow)? {
        Lookup::Known(id) => (id, false),
        Lookup::New {
            state,
            replaces,
            guess,
        } => {
            // Only a SYN with a correct checksum gets an entry (see `synsum`).
            if state == State::SynRecv && !synsum::verifies(raw, pkt) {
                return Err(Reason::BadSyn);
            }
            let new = NewConn {
                state: state as u8,
                flags: if guess { CONN_F_GUESS } else { 0 },
                replaces,
                now,
            };
            (open(ctx, pkt, l4, vip, &new, s)?, true)
        }
    };
    let be = backend::usable(backend_id, pkt.family)?;
    if vip.flags & VIP_F_NAT != 0 {
        nat::rewrite(
            ctx,
            pkt,
            l4.check_off,
            tcp,
            Side::Destination,
            &be.addr,
            be.port,
        )?;
    }
    let bytes = ctx.len() as u64;
    stats::traffic(backend_id, new_conn, bytes, true);
    l2::send(ctx, be.dst_mac, be.src_mac, be.ifindex)
}

/// What the lookup decided about a new connection.
#[derive(Clone, Copy)]
struct NewConn {
    state: u8,
    /// `CONN_F_*` other than NAT.
    flags: u8,
    replaces: Option<(u32, u8)>,
    now: u64,
}

/// Schedules a new connection and records it under `s.conn_key`; returns
/// the backend id.
#[inline(always)]
fn open(
    ctx: &Ctx,
    pkt: &Pkt,
    l4: &L4,
    vip: &VipInfo,
    new: &NewConn,
    s: &mut Scratch,
) -> Result<u32, Reason> {
    let NewConn {
        state,
        flags,
        replaces,
        now,
    } = *new;
    let backend_id = ret::unpack(schedule::pick(vip, s, pkt.family, l4.sport, now))?;
    let be = backend::usable(backend_id, pkt.family)?;
    // SAFETY: in bounds (checked on entry); copied out at once.
    let (client_mac, local_mac) = unsafe {
        let eth = ptr_at::<EthHdr>(ctx, 0, Reason::TruncatedEth)?;
        ((*eth).src_addr, (*eth).dst_addr)
    };
    let is_nat = vip.flags & VIP_F_NAT != 0;
    s.conn = Conn {
        backend_id,
        vip_id: vip.vip_id,
        state,
        flags: flags | if is_nat { CONN_F_NAT } else { 0 },
        _pad0: 0,
        client_ifindex: ctx.ingress_ifindex(),
        last_seen_ns: now,
        client_mac,
        local_mac,
        synced_s: coarse_s(now),
    };
    if is_nat {
        if let Some((old_id, _)) = replaces
            && let Some(old) = BACKENDS.get(old_id)
        {
            s.reply_key = s.conn_key.reply_via(old);
            conntrack::forget_reply(&s.reply_key);
        }
        // A reply entry only where the server's replies cannot be found
        // through its virtual server (see `NatServer`).
        s.server_key = keys::server(&be.addr, be.port, pkt.proto, pkt.family);
        let derived = conntrack::nat_server(&s.server_key)
            .is_some_and(|srv| srv.skips_reply_entry(vip.vip_id));
        if !derived {
            s.reply_key = s.conn_key.reply_via(be);
            s.reply = NatReply::of(&s.conn_key, &s.conn);
            conntrack::create_reply(&s.reply_key, &s.reply, &s.conn)?;
        }
    }
    conntrack::create(&s.conn_key, &s.conn, replaces)?;
    Ok(backend_id)
}

/// Real server -> client of a NAT connection: restore VIP:port as source.
/// Anything that is not a tracked reply passes.
#[inline(never)]
pub fn reply(raw: *mut xdp_md, pkt: &Pkt, l4: &L4, room: &mut Scratch) -> Packed {
    ret::pack(try_reply(&Ctx::new(raw), pkt, l4, room))
}

#[inline(always)]
fn try_reply(ctx: &Ctx, pkt: &Pkt, l4: &L4, room: &mut Scratch) -> Result<u32, Reason> {
    let side = ServerSide {
        srv: &pkt.src,
        sport: l4.sport,
        client: &pkt.dst,
        cport: l4.dport,
        proto: pkt.proto,
        family: pkt.family,
    };
    let Some(mut back) = conntrack::back(&side, room) else {
        return Ok(aya_ebpf::bindings::xdp_action::XDP_PASS);
    };
    let tcp = pkt.proto == PROTO_TCP;
    if tcp {
        let seen = conntrack::server_segment(&mut back, &side, l4.flags, room);
        if let conntrack::Seen::NotOurs = seen {
            return Ok(aya_ebpf::bindings::xdp_action::XDP_PASS);
        }
    }
    let (vip, vip_port) = back.vip();
    nat::rewrite(ctx, pkt, l4.check_off, tcp, Side::Source, vip, vip_port)?;
    let bytes = ctx.len() as u64;
    stats::traffic(back.backend_id(), false, bytes, false);
    let (ifindex, dst_mac, src_mac) = back.l2();
    l2::send(ctx, dst_mac, src_mac, ifindex)
}
