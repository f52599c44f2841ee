//! Connection table: find or create the entry of an inbound flow, track TCP
//! state (and the connection counts that follow it), find NAT replies.

use director_common::{
    abi::{Conn, FlowKey, NatReply, Reason, TOUCH_INTERVAL_NS},
    tcp::{self, State},
};

use crate::{
    counts,
    maps::{CONNS, NAT_REPLIES},
};

pub enum Lookup {
    /// Existing connection on this backend.
    Known(u32),
    /// Schedule a new connection that starts in `state`. `replaces` names the
    /// entry (backend id, state) a SYN reusing a closed tuple takes over.
    New {
        state: State,
        replaces: Option<(u32, u8)>,
    },
}

/// Looks up an inbound flow and advances its state. `midflow` allows a TCP
/// segment without an entry to be scheduled (consistent hashing only).
#[inline(always)]
pub fn inbound(
    key: &FlowKey,
    tcp: bool,
    flags: u8,
    now: u64,
    midflow: bool,
) -> Result<Lookup, Reason> {
    let Some(conn) = CONNS.get_ptr_mut(key) else {
        if !tcp {
            return Ok(Lookup::New {
                state: State::Udp,
                replaces: None,
            });
        }
        if tcp::is_syn(flags) {
            return Ok(Lookup::New {
                state: State::SynRecv,
                replaces: None,
            });
        }
        if midflow {
            return Ok(Lookup::New {
                state: State::Established,
                replaces: None,
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
            });
        }
        let next = tcp::next(state, true, flags) as u8;
        if next != conn.state {
            counts::moved(conn.backend_id, conn.state, next);
            conn.state = next;
        }
    }
    if now.wrapping_sub(conn.last_seen_ns) > TOUCH_INTERVAL_NS {
        conn.last_seen_ns = now;
    }
    Ok(Lookup::Known(conn.backend_id))
}

#[inline(always)]
pub fn create_reply(key: &FlowKey, reply: &NatReply) -> Result<(), Reason> {
    NAT_REPLIES
        .insert(key, reply, 0)
        .map_err(|_| Reason::ConntrackFull)
}

/// Records a new connection and counts it.
#[inline(always)]
pub fn create(key: &FlowKey, conn: &Conn, replaces: Option<(u32, u8)>) -> Result<(), Reason> {
    CONNS
        .insert(key, conn, 0)
        .map_err(|_| Reason::ConntrackFull)?;
    if let Some((old_backend, old_state)) = replaces {
        counts::closed(old_backend, old_state);
    }
    counts::opened(conn.backend_id, conn.state);
    Ok(())
}

#[inline(always)]
pub fn forget_reply(key: &FlowKey) {
    let _ = NAT_REPLIES.remove(key);
}

#[inline(always)]
pub fn reply(key: &FlowKey) -> Option<&'static NatReply> {
    // SAFETY: a map value; racing writers store whole fields.
    unsafe { NAT_REPLIES.get(key) }
}

/// Backend id and flags of a connection.
#[inline(always)]
pub fn conn(key: &FlowKey) -> Option<(u32, u8)> {
    // SAFETY: as above; fields copied out at once.
    unsafe { CONNS.get(key).map(|c| (c.backend_id, c.flags)) }
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
        let next = tcp::next(state, false, flags) as u8;
        if next != conn.state {
            counts::moved(conn.backend_id, conn.state, next);
            conn.state = next;
        }
    }
}
