//! A peer's records for a real server this director does not have yet.
//!
//! A rolling reload reaches the directors of a group one after another. Until
//! it reaches this one, the connections a peer sends to a server added there
//! name a server unknown here; dropped, they would be missing when their flows
//! move here (a director leaving), and a scheduler other than `mh` cannot pick
//! the same server again for a mid-flow segment. So they wait here, bounded in
//! number and in time, and go in once a reload brings their server. A later
//! record of the same entry replaces the waiting one; a removal removes it. The
//! time an entry waited is added to its idle time when it goes in.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use director_common::entries::Hop;

use crate::apply::{ConnId, SyncedConn, SyncedPersist};
use crate::config::Protocol;

/// Longer than a rolling reload of a group takes; a connection in use is
/// reported again every 30 s anyway, so one dropped after this comes back.
pub const HOLD: Duration = Duration::from_secs(120);
/// Entries that may wait at once; more are dropped (and counted).
pub const MAX: usize = 65_536;

/// A waiting entry: what to install, from whom, and since when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiting<T> {
    pub peer: SocketAddr,
    pub entry: T,
    pub since: Instant,
}

/// A connection with the next hop toward its client, as it was looked up.
pub type WaitingConn = Waiting<(SyncedConn, Option<Hop>)>;

type PersistId = (Protocol, SocketAddr, IpAddr);

#[derive(Debug, Default)]
pub struct Unplaced {
    conns: HashMap<ConnId, WaitingConn>,
    persists: HashMap<PersistId, Waiting<SyncedPersist>>,
    /// Entries dropped: expired, or no room.
    pub dropped: u64,
}

impl Unplaced {
    pub fn len(&self) -> usize {
        self.conns.len() + self.persists.len()
    }

    pub fn park_conn(&mut self, peer: SocketAddr, c: SyncedConn, hop: Option<Hop>, since: Instant) {
        let room = self.len() < MAX;
        park(
            &mut self.conns,
            c.id,
            Waiting {
                peer,
                entry: (c, hop),
                since,
            },
            room,
            &mut self.dropped,
        );
    }

    pub fn park_persist(&mut self, peer: SocketAddr, p: SyncedPersist, since: Instant) {
        let room = self.len() < MAX;
        park(
            &mut self.persists,
            (p.protocol, p.virtual_server, p.client_net),
            Waiting {
                peer,
                entry: p,
                since,
            },
            room,
            &mut self.dropped,
        );
    }

    /// The peer removed the connection: nothing of it is left to install.
    pub fn forget(&mut self, id: &ConnId) {
        self.conns.remove(id);
    }

    /// Every waiting entry that has not expired; the caller installs what it
    /// can (its idle time grown by its wait: [`aged`]) and parks the rest
    /// again, as they were.
    pub fn take(&mut self, now: Instant) -> (Vec<WaitingConn>, Vec<Waiting<SyncedPersist>>) {
        let before = self.len();
        let fresh = |since: Instant| now.saturating_duration_since(since) < HOLD;
        let conns: Vec<_> = self
            .conns
            .drain()
            .map(|(_, w)| w)
            .filter(|w| fresh(w.since))
            .collect();
        let persists: Vec<_> = self
            .persists
            .drain()
            .map(|(_, w)| w)
            .filter(|w| fresh(w.since))
            .collect();
        self.dropped += (before - conns.len() - persists.len()) as u64;
        (conns, persists)
    }
}

/// An idle time reported at `since`, as it is at `now`.
pub fn aged(idle: Duration, since: Instant, now: Instant) -> Duration {
    idle + now.saturating_duration_since(since)
}

/// A newer record of an entry replaces the waiting one (and keeps its place);
/// a new entry needs room.
fn park<K: std::hash::Hash + Eq, T>(
    map: &mut HashMap<K, T>,
    key: K,
    value: T,
    room: bool,
    dropped: &mut u64,
) {
    match map.entry(key) {
        Entry::Occupied(mut o) => {
            o.insert(value);
        }
        Entry::Vacant(v) if room => {
            v.insert(value);
        }
        Entry::Vacant(_) => *dropped += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use director_common::tcp::State;

    fn conn(port: u16, idle: Duration) -> SyncedConn {
        SyncedConn {
            id: ConnId {
                protocol: Protocol::Tcp,
                client: SocketAddr::from(([198, 51, 100, 7], port)),
                virtual_server: "192.0.2.10:80".parse().expect("address"),
            },
            real_server: "10.1.0.14:8080".parse().expect("address"),
            state: State::Established,
            idle,
        }
    }

    const PEER: SocketAddr =
        SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(10, 9, 0, 2)), 8848);

    #[test]
    fn a_waiting_connection_is_taken_as_it_was_and_ages_by_its_wait() {
        let t0 = Instant::now();
        let mut u = Unplaced::default();
        u.park_conn(PEER, conn(1000, Duration::from_secs(1)), None, t0);
        let later = t0 + Duration::from_secs(10);
        let (conns, persists) = u.take(later);
        assert!(persists.is_empty());
        assert_eq!(conns.len(), 1);
        let w = conns[0];
        assert_eq!((w.entry.0.idle, w.since), (Duration::from_secs(1), t0));
        assert_eq!(
            aged(w.entry.0.idle, w.since, later),
            Duration::from_secs(11)
        );
        assert_eq!(u.len(), 0, "taken entries are parked again by the caller");
    }

    #[test]
    fn a_newer_record_replaces_the_waiting_one_and_a_removal_forgets_it() {
        let t0 = Instant::now();
        let mut u = Unplaced::default();
        u.park_conn(PEER, conn(1000, Duration::from_secs(5)), None, t0);
        u.park_conn(PEER, conn(1000, Duration::ZERO), None, t0);
        u.park_conn(PEER, conn(1001, Duration::ZERO), None, t0);
        assert_eq!(u.len(), 2);
        u.forget(&conn(1001, Duration::ZERO).id);
        let (conns, _) = u.take(t0);
        assert_eq!(conns.len(), 1);
        assert_eq!(conns[0].entry.0.idle, Duration::ZERO, "the newer record");
    }

    #[test]
    fn entries_expire_after_hold_and_never_exceed_max() {
        let t0 = Instant::now();
        let mut u = Unplaced::default();
        for port in 0..=u16::MAX {
            u.park_conn(PEER, conn(port, Duration::ZERO), None, t0);
        }
        u.park_conn(PEER, conn(1, Duration::from_secs(1)), None, t0);
        assert_eq!(u.len(), MAX);
        assert_eq!(
            u.dropped, 0,
            "65 536 entries fit, and a newer record takes no room"
        );
        let mut extra = conn(2, Duration::ZERO);
        extra.id.client = "198.51.100.8:2".parse().expect("address");
        u.park_conn(PEER, extra, None, t0);
        assert_eq!((u.len(), u.dropped), (MAX, 1));
        let (conns, _) = u.take(t0 + HOLD);
        assert!(conns.is_empty());
        assert_eq!(u.dropped, 1 + MAX as u64);
    }
}
