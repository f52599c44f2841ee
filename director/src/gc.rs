//! Periodic upkeep of the datapath's tables: expiry of idle connection
//! entries by TCP state and per-virtual-server timeouts (the LRU only evicts
//! under pressure), reconciliation of the live connection counts, and expiry
//! of idle persistence entries.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use director_common::{
    abi::{Backend, CONN_F_NAT, Conn, ConnCounts, FlowKey, PersistKey},
    tcp::State,
};

use crate::{
    config::Timeouts,
    dataplane::Dataplane,
    maps::{Maps, Table},
};

/// Idle timeout of an entry in `state` under a virtual server's timeouts.
/// SYN_RECV and CLOSE keep the IPVS values, which `ipvsadm --set` does not
/// change either.
pub fn timeout(state: Option<State>, t: &Timeouts) -> Duration {
    match state {
        Some(State::Established) => t.tcp,
        Some(State::FinWait) => t.tcp_fin,
        Some(State::Udp) => t.udp,
        Some(s @ (State::SynRecv | State::Close)) => Duration::from_secs(s.timeout_secs()),
        None => Duration::ZERO,
    }
}

/// Whether `conn` has been idle longer than allowed at `now_ns`.
/// `last_seen_ns` lags by up to `TOUCH_INTERVAL_NS`, which only errs on the
/// side of keeping an entry a second longer.
pub fn expired(conn: &Conn, t: &Timeouts, now_ns: u64) -> bool {
    let limit = timeout(State::from_u8(conn.state), t).as_nanos() as u64;
    now_ns.saturating_sub(conn.last_seen_ns) > limit
}

/// What the sweep needs to know of the configuration, by id.
#[derive(Debug, Default)]
pub struct View {
    /// Per vip id: timeouts, persistence timeout and prefix.
    pub vips: HashMap<u32, (Timeouts, Option<Duration>, u8)>,
    /// Per backend id: its server (for NAT reply keys and listings).
    pub backends: HashMap<u32, Backend>,
}

impl View {
    /// The `NAT_REPLIES` key of a connection, if it has one.
    pub fn reply_of(&self, key: &FlowKey, conn: &Conn) -> Option<FlowKey> {
        if conn.flags & CONN_F_NAT == 0 {
            return None;
        }
        Some(key.reply_via(self.backends.get(&conn.backend_id)?))
    }
}

/// What one sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub conns_expired: usize,
    pub persist_expired: usize,
    /// Entries left in the connection table.
    pub conns_live: usize,
    /// Entries left in the half-open table.
    pub half_open_live: usize,
}

/// One pass over the tables at `now_ns`.
pub fn sweep(dp: &mut Dataplane, view: &View, now_ns: u64) -> Swept {
    let default_timeouts = Timeouts::default();
    let mut swept = Swept::default();
    let mut live: HashMap<u32, ConnCounts> = HashMap::new();
    let mut persistent: HashSet<PersistKey> = HashSet::new();
    let entries: Vec<_> = Table::BOTH
        .into_iter()
        .flat_map(|t| dp.conns(t).into_iter().map(move |e| (t, e)))
        .collect();
    for (table, (key, conn)) in entries {
        let vip = view.vips.get(&conn.vip_id);
        let t = vip.map_or(&default_timeouts, |v| &v.0);
        if expired(&conn, t, now_ns) {
            dp.remove_conn(table, &key, view.reply_of(&key, &conn).as_ref());
            swept.conns_expired += 1;
            continue;
        }
        match table {
            Table::Established => swept.conns_live += 1,
            Table::HalfOpen => swept.half_open_live += 1,
        }
        let c = live.entry(conn.backend_id).or_default();
        if conn.state == State::Established as u8 {
            c.active += 1;
        } else {
            c.inactive += 1;
        }
        if let Some(&(_, Some(_), prefix)) = vip {
            persistent.insert(PersistKey::of(&key.src, key.family, prefix, conn.vip_id));
        }
    }
    reconcile(dp, view.backends.keys().copied(), &live);

    for (key, mut entry) in dp.persist_entries() {
        if persistent.contains(&key) {
            // A client with connections stays attached however long they last.
            entry.last_seen_ns = now_ns;
            let _ = dp.set_persist(&key, &entry);
            continue;
        }
        let limit = view
            .vips
            .get(&key.vip_id)
            .and_then(|v| v.1)
            .unwrap_or(Duration::ZERO)
            .as_nanos() as u64;
        if now_ns.saturating_sub(entry.last_seen_ns) > limit {
            dp.remove_persist(&key);
            swept.persist_expired += 1;
        }
    }
    swept
}

/// Sets each backend's released counts so that opened − released equals the
/// connections actually in the table: covers entries this sweep expired and
/// entries the LRU evicted. Connections opened while the table was walked
/// make it briefly low; the next sweep corrects that.
fn reconcile(dp: &mut Dataplane, ids: impl Iterator<Item = u32>, live: &HashMap<u32, ConnCounts>) {
    for id in ids {
        let Ok(opened) = dp.opened_counts(id) else {
            continue;
        };
        let now = live.get(&id).copied().unwrap_or_default();
        let released = ConnCounts {
            active: opened.active.wrapping_sub(now.active),
            inactive: opened.inactive.wrapping_sub(now.inactive),
        };
        let _ = dp.set_released(id, &released);
    }
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

    const NOW: u64 = 10_000 * 1_000_000_000;

    #[test]
    fn each_state_has_its_own_default_timeout() {
        let t = Timeouts::default();
        assert!(!expired(&conn(State::Established, 10_000 - 899), &t, NOW));
        assert!(expired(&conn(State::Established, 10_000 - 901), &t, NOW));
        assert!(!expired(&conn(State::FinWait, 10_000 - 119), &t, NOW));
        assert!(expired(&conn(State::FinWait, 10_000 - 121), &t, NOW));
        assert!(expired(&conn(State::Close, 10_000 - 11), &t, NOW));
        assert!(!expired(&conn(State::SynRecv, 10_000 - 59), &t, NOW));
        assert!(!expired(&conn(State::Udp, 10_000 - 299), &t, NOW));
    }

    #[test]
    fn virtual_server_timeouts_apply() {
        let t = Timeouts {
            tcp: Duration::from_secs(30),
            tcp_fin: Duration::from_secs(5),
            udp: Duration::from_secs(2),
        };
        assert!(expired(&conn(State::Established, 10_000 - 31), &t, NOW));
        assert!(!expired(&conn(State::Established, 10_000 - 29), &t, NOW));
        assert!(expired(&conn(State::FinWait, 10_000 - 6), &t, NOW));
        assert!(expired(&conn(State::Udp, 10_000 - 3), &t, NOW));
        assert!(!expired(&conn(State::Udp, 10_000 - 1), &t, NOW));
    }

    #[test]
    fn unknown_state_expires_at_once_and_future_stamps_do_not() {
        let t = Timeouts::default();
        let mut c = conn(State::Established, 5);
        c.state = 0;
        assert!(expired(&c, &t, 6 * 1_000_000_000));
        assert!(!expired(&conn(State::Close, 20), &t, 10 * 1_000_000_000));
    }
}
