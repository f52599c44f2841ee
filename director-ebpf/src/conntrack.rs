//! Connection table: find or create the entry of an inbound flow, track TCP
//! state, and find the NAT entry of a reply.

use director_common::{
    abi::{Conn, FlowKey, NatReply, Reason, TOUCH_INTERVAL_NS},
    tcp::{self, State},
};

use crate::maps::{CONNS, NAT_REPLIES};

pub enum Lookup {
    /// Existing connection on this backend.
    Known(u32),
    /// Schedule a new connection (no entry, or a SYN reusing a closed one).
    New,
}

/// Looks up an inbound flow and advances its state.
#[inline(always)]
pub fn inbound(key: &FlowKey, tcp: bool, flags: u8, now: u64) -> Result<Lookup, Reason> {
    let Some(conn) = CONNS.get_ptr_mut(key) else {
        if tcp && !tcp::is_syn(flags) {
            return Err(Reason::NoConnection);
        }
        return Ok(Lookup::New);
    };
    // SAFETY: value pointer from a map lookup; racing writers only ever
    // store whole small fields.
    let conn = unsafe { &mut *conn };
    if tcp {
        let state = State::from_u8(conn.state).unwrap_or(State::Established);
        if tcp::reopens(state, flags) {
            return Ok(Lookup::New);
        }
        let next = tcp::next(state, true, flags);
        if next as u8 != conn.state {
            conn.state = next as u8;
        }
    }
    touch(conn, now);
    Ok(Lookup::Known(conn.backend_id))
}

#[inline(always)]
fn touch(conn: &mut Conn, now: u64) {
    if now.wrapping_sub(conn.last_seen_ns) > TOUCH_INTERVAL_NS {
        conn.last_seen_ns = now;
    }
}

#[inline(always)]
pub fn create(key: &FlowKey, conn: &Conn) -> Result<(), Reason> {
    CONNS
        .insert(key, conn, 0)
        .map_err(|_| Reason::ConntrackFull)
}

#[inline(always)]
pub fn create_reply(key: &FlowKey, reply: &NatReply) -> Result<(), Reason> {
    NAT_REPLIES
        .insert(key, reply, 0)
        .map_err(|_| Reason::ConntrackFull)
}

#[inline(always)]
pub fn reply(key: &FlowKey) -> Option<NatReply> {
    // SAFETY: copied out at once.
    unsafe { NAT_REPLIES.get(key).copied() }
}

/// A FIN or RST from the real server moves the client-side entry's state.
#[inline(always)]
pub fn reply_flags(client_key: &FlowKey, flags: u8) {
    if flags & (tcp::FLAG_FIN | tcp::FLAG_RST) == 0 {
        return;
    }
    if let Some(conn) = CONNS.get_ptr_mut(client_key) {
        // SAFETY: as in `inbound`.
        let conn = unsafe { &mut *conn };
        let state = State::from_u8(conn.state).unwrap_or(State::Established);
        conn.state = tcp::next(state, false, flags) as u8;
    }
}
