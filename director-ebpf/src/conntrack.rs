//! Connection table: find or create the entry of an inbound flow, track TCP
//! state (and the connection counts that follow it), find where a NAT
//! real server's packets go back to.
//!
//! A TCP connection is half-open until the client's first ACK: its entry
//! lives in `EMBRYOS` (and `EMBRYO_REPLIES`) until then, then moves to
//! `CONNS` (and `NAT_REPLIES`), so that SYNs never evict an established
//! connection (docs/connection-table.md). Every lookup by a connection's
//! key tries `CONNS` first: an established packet pays nothing for this.

use director_common::{
    abi::{
        CONN_F_NAT, Conn, EVENT_CONN_GONE, EVENT_CONN_NEW, EVENT_CONN_STATE, FlowKey, NatReply,
        NatServer, Reason, TOUCH_INTERVAL_NS, VipKey, coarse_s,
    },
    tcp::{self, State},
};

use crate::{
    counts,
    keys::{flow, same_addr, server},
    maps::{BACKENDS, CONNS, EMBRYO_REPLIES, EMBRYOS, NAT_REPLIES, NAT_SERVERS},
    scratch::Scratch,
    sync,
};

pub enum Lookup {
    /// Existing connection on this backend.
    Known(u32),
    /// Schedule a new connection that starts in `state`. `replaces` names the
    /// entry (backend id, state) a SYN reusing a closed tuple takes over;
    /// `guess` is a mid-flow segment's entry (see `CONN_F_GUESS`).
    New {
        state: State,
        replaces: Option<(u32, u8)>,
        guess: bool,
    },
}

/// Looks up an inbound flow and advances its state. `midflow` allows a TCP
/// segment without an entry to be scheduled (consistent hashing only).
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "a key passed by value is copied onto the BPF stack, which then exceeds 512 bytes"
)]
#[inline(always)]
pub fn inbound(
    s: &mut Scratch,
    tcp: bool,
    flags: u8,
    now: u64,
    midflow: bool,
) -> Result<Lookup, Reason> {
    let Some(conn) = CONNS.get_ptr_mut(&s.conn_key) else {
        if !tcp {
            return Ok(Lookup::New {
                state: State::Udp,
                replaces: None,
                guess: false,
            });
        }
        if let Some(embryo) = EMBRYOS.get_ptr_mut(&s.conn_key) {
            // SAFETY: as below.
            return grow(unsafe { &mut *embryo }, s, flags, now);
        }
        if tcp::is_syn(flags) {
            return Ok(Lookup::New {
                state: State::SynRecv,
                replaces: None,
                guess: false,
            });
        }
        if midflow {
            return Ok(Lookup::New {
                state: State::Established,
                replaces: None,
                guess: true,
            });
        }
        return Err(Reason::NoConnection);
    };
    // SAFETY: value pointer from a map lookup; racing writers only ever
    // store whole small fields.
    let conn = unsafe { &mut *conn };
    if tcp {
        let state = State::from_u8(conn.state).unwrap_or(State::Established);
        if tcp::reopens(state, flags) {
            return Ok(Lookup::New {
                state: State::SynRecv,
                replaces: Some((conn.backend_id, conn.state)),
                guess: false,
            });
        }
        if advance(conn, state, true, flags) {
            sync::conn(EVENT_CONN_STATE, &s.conn_key);
        }
    }
    // Saturating, as in `schedule::pick`.
    if now.saturating_sub(conn.last_seen_ns) > TOUCH_INTERVAL_NS {
        conn.last_seen_ns = now;
        sync::refresh(conn, &s.conn_key, now);
    }
    Ok(Lookup::Known(conn.backend_id))
}

/// A client segment of a half-open connection. The handshake's ACK moves
/// the entry to `CONNS`, its reply entry with it, and peers hear of it;
/// a retransmitted SYN goes to the same server; a RST or FIN leaves the
/// entry where it is, to expire; a SYN after those opens anew.
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "a key passed by value is copied onto the BPF stack, which then exceeds 512 bytes"
)]
#[inline(always)]
fn grow(embryo: &mut Conn, s: &mut Scratch, flags: u8, now: u64) -> Result<Lookup, Reason> {
    let state = State::from_u8(embryo.state).unwrap_or(State::SynRecv);
    if tcp::reopens(state, flags) {
        return Ok(Lookup::New {
            state: State::SynRecv,
            replaces: Some((embryo.backend_id, embryo.state)),
            guess: false,
        });
    }
    embryo.last_seen_ns = now;
    if tcp::next(state, true, flags) != State::Established {
        advance(embryo, state, true, flags);
        return Ok(Lookup::Known(embryo.backend_id));
    }
    s.conn = *embryo;
    s.conn.state = State::Established as u8;
    s.conn.synced_s = coarse_s(now);
    CONNS
        .insert(&s.conn_key, &s.conn, 0)
        .map_err(|_| Reason::ConntrackFull)?;
    // Only once the entry has moved: a refused insert leaves it half-open.
    counts::moved(s.conn.backend_id, embryo.state, State::Established as u8);
    let _ = EMBRYOS.remove(&s.conn_key);
    if s.conn.flags & CONN_F_NAT != 0
        && let Some(be) = BACKENDS.get(s.conn.backend_id)
    {
        s.reply_key = s.conn_key.reply_via(be);
        // SAFETY: a map value, copied out at once.
        if let Some(r) = unsafe { EMBRYO_REPLIES.get(&s.reply_key) } {
            s.reply = *r;
            NAT_REPLIES
                .insert(&s.reply_key, &s.reply, 0)
                .map_err(|_| Reason::ConntrackFull)?;
            let _ = EMBRYO_REPLIES.remove(&s.reply_key);
        }
    }
    sync::conn(EVENT_CONN_NEW, &s.conn_key);
    Ok(Lookup::Known(s.conn.backend_id))
}

/// The reply entry of a new NAT connection, half-open if `conn` is.
#[inline(always)]
pub fn create_reply(key: &FlowKey, reply: &NatReply, conn: &Conn) -> Result<(), Reason> {
    let map = if half_open(conn) {
        &EMBRYO_REPLIES
    } else {
        &NAT_REPLIES
    };
    map.insert(key, reply, 0).map_err(|_| Reason::ConntrackFull)
}

#[inline(always)]
fn half_open(conn: &Conn) -> bool {
    conn.state == State::SynRecv as u8
}

/// Records a new connection and counts it: a SYN's in `EMBRYOS`, where it
/// stays until the client's ACK, and peers hear of it then; a UDP flow's
/// or a mid-flow segment's in `CONNS` at once. A SYN reusing a closed
/// tuple takes over its entry (`replaces`), which leaves `CONNS` now.
#[inline(always)]
pub fn create(key: &FlowKey, conn: &Conn, replaces: Option<(u32, u8)>) -> Result<(), Reason> {
    if !half_open(conn) {
        CONNS
            .insert(key, conn, 0)
            .map_err(|_| Reason::ConntrackFull)?;
        sync::conn(EVENT_CONN_NEW, key);
    } else {
        EMBRYOS
            .insert(key, conn, 0)
            .map_err(|_| Reason::ConntrackFull)?;
    }
    if let Some((old_backend, old_state)) = replaces {
        counts::closed(old_backend, old_state);
        if CONNS.remove(key).is_ok() {
            sync::conn(EVENT_CONN_GONE, key);
        }
    }
    counts::opened(conn.backend_id, conn.state);
    Ok(())
}

/// Forgets a reply entry, established or half-open.
#[inline(always)]
pub fn forget_reply(key: &FlowKey) {
    if NAT_REPLIES.remove(key).is_err() {
        let _ = EMBRYO_REPLIES.remove(key);
    }
}

/// The connection under `key`, established or half-open.
#[inline(always)]
fn find(key: &FlowKey) -> Option<*mut Conn> {
    CONNS.get_ptr_mut(key).or_else(|| EMBRYOS.get_ptr_mut(key))
}

/// Where a NAT real server's packet to a client goes back out: found
/// through the server's virtual server and `CONNS`, or in `NAT_REPLIES`.
pub enum Back {
    Conn(&'static NatServer, &'static mut Conn),
    Reply(&'static NatReply),
}

impl Back {
    /// The virtual server address and port the packet must come from.
    #[inline(always)]
    pub fn vip(&self) -> (&[u8; 16], u16) {
        match self {
            Back::Conn(s, _) => (&s.vip, s.vip_port),
            Back::Reply(r) => (&r.vip, r.vip_port),
        }
    }

    /// (interface, destination MAC, source MAC) towards the client.
    #[inline(always)]
    pub fn l2(&self) -> (u32, [u8; 6], [u8; 6]) {
        match self {
            Back::Conn(_, c) => (c.client_ifindex, c.client_mac, c.local_mac),
            Back::Reply(r) => (r.ifindex, r.dst_mac, r.src_mac),
        }
    }

    #[inline(always)]
    pub fn backend_id(&self) -> u32 {
        match self {
            Back::Conn(_, c) => c.backend_id,
            Back::Reply(r) => r.backend_id,
        }
    }
}

/// The `NAT_SERVERS` entry of a real server.
#[inline(always)]
pub fn nat_server(key: &VipKey) -> Option<&'static NatServer> {
    // SAFETY: a map value, only ever replaced whole by userspace.
    unsafe { NAT_SERVERS.get(key) }
}

/// A packet from a real server to a client, as the reply and ICMP paths see
/// it (for an ICMP error, the quoted packet reversed).
pub struct ServerSide<'a> {
    pub srv: &'a [u8; 16],
    pub sport: u16,
    pub client: &'a [u8; 16],
    pub cport: u16,
    pub proto: u8,
    pub family: u8,
}

/// Where a packet from a real server goes back to, if it belongs to a NAT
/// connection. A connection found through the server's virtual server must
/// be to that very server. Keys are built in `room` (the callers' stack
/// frames are full).
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "a key passed by value is copied onto the BPF stack, which then exceeds 512 bytes"
)]
#[inline(always)]
pub fn back(p: &ServerSide, room: &mut Scratch) -> Option<Back> {
    room.server_key = server(p.srv, p.sport, p.proto, p.family);
    let s = nat_server(&room.server_key)?;
    if s.derives() {
        room.conn_key = flow(p.client, &s.vip, p.cport, s.vip_port, p.proto, p.family);
        if let Some(c) = find(&room.conn_key) {
            // SAFETY: as in `inbound`.
            let c = unsafe { &mut *c };
            let ours = c.flags & CONN_F_NAT != 0
                && BACKENDS
                    .get(c.backend_id)
                    .is_some_and(|b| b.port == p.sport && same_addr(&b.addr, p.srv));
            if ours {
                return Some(Back::Conn(s, c));
            }
        }
    }
    room.reply_key = flow(p.srv, p.client, p.sport, p.cport, p.proto, p.family);
    // SAFETY: map values; racing writers store whole fields.
    unsafe {
        NAT_REPLIES
            .get(&room.reply_key)
            .or_else(|| EMBRYO_REPLIES.get(&room.reply_key))
    }
    .map(Back::Reply)
}

/// Backend id and flags of a connection, established or half-open.
#[inline(always)]
pub fn conn(key: &FlowKey) -> Option<(u32, u8)> {
    // SAFETY: as above; fields copied out at once.
    find(key).map(|c| unsafe { ((*c).backend_id, (*c).flags) })
}

/// What a real server's segment means for the connection it matched.
pub enum Seen {
    Ours,
    /// A new connection the client opened to the server itself (see
    /// `tcp::server_reopens`): the closed entry is forgotten, the packet
    /// passes.
    NotOurs,
}

/// A real server's segment on its connection: a FIN or RST moves the state;
/// a SYN-ACK on a closed entry is not ours (see `Seen`). The segment's keys
/// are `room`'s, as `back` left them.
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "a key passed by value is copied onto the BPF stack, which then exceeds 512 bytes"
)]
#[inline(always)]
pub fn server_segment(back: &mut Back, p: &ServerSide, flags: u8, room: &mut Scratch) -> Seen {
    let syn_ack = flags & (tcp::FLAG_SYN | tcp::FLAG_ACK) == tcp::FLAG_SYN | tcp::FLAG_ACK;
    if flags & (tcp::FLAG_FIN | tcp::FLAG_RST) == 0 && !syn_ack {
        return Seen::Ours;
    }
    let conn = match back {
        Back::Conn(_, c) => &mut **c,
        Back::Reply(r) => {
            room.conn_key = flow(p.client, &r.vip, p.cport, r.vip_port, p.proto, p.family);
            let Some(c) = find(&room.conn_key) else {
                return Seen::Ours;
            };
            // SAFETY: as in `inbound`.
            unsafe { &mut *c }
        }
    };
    let state = State::from_u8(conn.state).unwrap_or(State::Established);
    if tcp::server_reopens(state, flags) {
        counts::closed(conn.backend_id, conn.state);
        if CONNS.remove(&room.conn_key).is_ok() {
            sync::conn(EVENT_CONN_GONE, &room.conn_key);
        } else {
            let _ = EMBRYOS.remove(&room.conn_key);
        }
        room.reply_key = flow(p.srv, p.client, p.sport, p.cport, p.proto, p.family);
        forget_reply(&room.reply_key);
        return Seen::NotOurs;
    }
    if advance(conn, state, false, flags) {
        sync::conn(EVENT_CONN_STATE, &room.conn_key);
    }
    Seen::Ours
}

/// Moves `conn` (in `state`) to where a segment with `flags` takes it,
/// keeping its backend's connection counts.
#[inline(always)]
fn advance(conn: &mut Conn, state: State, from_client: bool, flags: u8) -> bool {
    let next = tcp::next(state, from_client, flags) as u8;
    if next == conn.state {
        return false;
    }
    counts::moved(conn.backend_id, conn.state, next);
    conn.state = next;
    true
}
