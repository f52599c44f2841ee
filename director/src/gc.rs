//! Expiry of idle connection entries by TCP state (the LRU only evicts
//! under pressure; timeouts are ours).

use director_common::{
    abi::{CONN_F_NAT, Conn, FAMILY_V4, FlowKey},
    tcp::State,
};

use crate::dataplane::Dataplane;

/// Whether `conn` has been idle longer than its state allows at `now_ns`.
/// `last_seen_ns` lags by up to `TOUCH_INTERVAL_NS`, which only errs on the
/// side of keeping an entry a second longer.
pub fn expired(conn: &Conn, now_ns: u64) -> bool {
    let timeout = State::from_u8(conn.state).map_or(0, State::timeout_secs);
    now_ns.saturating_sub(conn.last_seen_ns) > timeout * 1_000_000_000
}

/// The `NAT_REPLIES` key of a NAT connection to `server` (address, wire port).
pub fn reply_key(client: &FlowKey, server_addr: [u8; 16], server_port: u16) -> FlowKey {
    FlowKey {
        src: server_addr,
        dst: client.src,
        sport: server_port,
        dport: client.sport,
        proto: client.proto,
        family: client.family,
        _pad: [0; 2],
    }
}

/// Removes expired entries; returns how many.
pub fn sweep(dp: &mut Dataplane, backends: &[(u32, [u8; 16], u16)], now_ns: u64) -> usize {
    let mut removed = 0;
    for (key, conn) in dp.conns() {
        if !expired(&conn, now_ns) {
            continue;
        }
        let reply = (conn.flags & CONN_F_NAT != 0 && key.family == FAMILY_V4)
            .then(|| backends.iter().find(|b| b.0 == conn.backend_id))
            .flatten()
            .map(|&(_, addr, port)| reply_key(&key, addr, port));
        dp.remove_conn(&key, reply.as_ref());
        removed += 1;
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(state: State, last_seen_s: u64) -> Conn {
        Conn {
            state: state as u8,
            last_seen_ns: last_seen_s * 1_000_000_000,
            ..Conn::default()
        }
    }

    #[test]
    fn each_state_has_its_own_timeout() {
        let now = 10_000 * 1_000_000_000;
        assert!(!expired(&conn(State::Established, 10_000 - 899), now));
        assert!(expired(&conn(State::Established, 10_000 - 901), now));
        assert!(!expired(&conn(State::FinWait, 10_000 - 119), now));
        assert!(expired(&conn(State::FinWait, 10_000 - 121), now));
        assert!(expired(&conn(State::Close, 10_000 - 11), now));
        assert!(!expired(&conn(State::Udp, 10_000 - 299), now));
    }

    #[test]
    fn unknown_state_expires_at_once_and_future_stamps_do_not() {
        let mut c = conn(State::Established, 5);
        c.state = 0;
        assert!(expired(&c, 6 * 1_000_000_000));
        assert!(!expired(&conn(State::Close, 20), 10 * 1_000_000_000));
    }

    #[test]
    fn reply_key_mirrors_the_client_flow() {
        let client = FlowKey {
            src: [198, 51, 100, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            dst: [192, 0, 2, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            sport: 1111,
            dport: 80,
            proto: 6,
            family: FAMILY_V4,
            _pad: [0; 2],
        };
        let server = [10, 1, 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let r = reply_key(&client, server, 8080);
        assert_eq!(
            (r.src, r.dst, r.sport, r.dport),
            (server, client.src, 8080, 1111)
        );
    }
}
