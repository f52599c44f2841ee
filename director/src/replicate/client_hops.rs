//! This director's next hops toward the clients of peers' connections, and
//! the records waiting for one. A record of a client whose hop is being
//! looked up waits behind the records before it, so that a removal never
//! overtakes the install it removes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use director_common::entries::Hop;

use crate::sync::Record;

/// How long a client's next hop is used without looking it up again.
pub const TTL: Duration = Duration::from_secs(30);

/// What to do with a received record now.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Install it, with this next hop toward its client (none: not needed,
    /// or not known and not worth waiting for).
    Install(Record, Option<Hop>),
    /// It waits behind a lookup already under way.
    Wait,
    /// It waits: look the client's next hop up.
    LookUp(IpAddr),
}

#[derive(Debug, Default)]
pub struct ClientHops {
    known: HashMap<IpAddr, (Hop, Instant)>,
    waiting: HashMap<IpAddr, Vec<(SocketAddr, Record)>>,
}

impl ClientHops {
    /// Where `record` from `peer` goes at `now`.
    pub fn route(&mut self, peer: SocketAddr, record: Record, now: Instant) -> Next {
        let (client, removal) = match &record {
            Record::Conn(c) => (c.client.ip(), false),
            Record::ConnGone(g) => (g.client.ip(), true),
            Record::Persist(_) => return Next::Install(record, None),
        };
        if let Some(queue) = self.waiting.get_mut(&client) {
            queue.push((peer, record));
            return Next::Wait;
        }
        match self.known.get(&client) {
            Some(&(hop, at)) if now.duration_since(at) < TTL => Next::Install(record, Some(hop)),
            // A removal needs no next hop.
            _ if removal => Next::Install(record, None),
            _ => {
                self.waiting.insert(client, vec![(peer, record)]);
                Next::LookUp(client)
            }
        }
    }

    /// The lookup of `client` ended, found at `now` or not: its waiting
    /// records, in order, to install with that hop.
    pub fn resolved(
        &mut self,
        client: IpAddr,
        hop: Option<Hop>,
        now: Instant,
    ) -> Vec<(SocketAddr, Record)> {
        if let Some(hop) = hop {
            self.known.insert(client, (hop, now));
        }
        self.waiting.remove(&client).unwrap_or_default()
    }

    /// Records waiting for a lookup.
    pub fn waiting(&self) -> usize {
        self.waiting.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::wire::{Conn, ConnGone, Persist, Protocol};

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    const PEER: &str = "10.9.0.2:8848";

    fn conn(client: &str, state: u8) -> Record {
        Record::Conn(Conn {
            protocol: Protocol::Tcp,
            client: addr(client),
            virtual_server: addr("192.0.2.10:80"),
            real_server: addr("10.1.0.11:8080"),
            state,
            idle_ms: 0,
        })
    }

    fn gone(client: &str) -> Record {
        Record::ConnGone(ConnGone {
            protocol: Protocol::Tcp,
            client: addr(client),
            virtual_server: addr("192.0.2.10:80"),
        })
    }

    fn hop(n: u8) -> Hop {
        Hop {
            ifindex: 2,
            dst_mac: [2, 0, 0, 0, 0, n],
            src_mac: [2, 0, 0, 0, 1, 1],
        }
    }

    #[test]
    fn records_of_an_unknown_client_wait_for_one_lookup_in_order() {
        let (mut h, t0, peer) = (ClientHops::default(), Instant::now(), addr(PEER));
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        let first = conn("198.51.100.7:40000", 1);
        let second = conn("198.51.100.7:40001", 1);
        let removal = gone("198.51.100.7:40000");
        assert_eq!(h.route(peer, first, t0), Next::LookUp(client));
        assert_eq!(
            h.route(peer, second, t0),
            Next::Wait,
            "one lookup per client"
        );
        assert_eq!(
            h.route(peer, removal, t0),
            Next::Wait,
            "a removal waits behind the install it removes"
        );
        assert_eq!(h.waiting(), 3);
        assert_eq!(
            h.resolved(client, Some(hop(7)), t0),
            vec![(peer, first), (peer, second), (peer, removal)]
        );
        assert_eq!(h.waiting(), 0);
        let third = conn("198.51.100.7:40002", 1);
        assert_eq!(h.route(peer, third, t0), Next::Install(third, Some(hop(7))));
    }

    #[test]
    fn a_known_hop_is_looked_up_again_after_its_ttl() {
        let (mut h, t0, peer) = (ClientHops::default(), Instant::now(), addr(PEER));
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        h.resolved(client, Some(hop(7)), t0);
        let c = conn("198.51.100.7:40000", 1);
        assert_eq!(
            h.route(peer, c, t0 + TTL - Duration::from_millis(1)),
            Next::Install(c, Some(hop(7)))
        );
        assert_eq!(h.route(peer, c, t0 + TTL), Next::LookUp(client));
    }

    #[test]
    fn a_failed_lookup_releases_its_records_without_a_hop_and_learns_nothing() {
        let (mut h, t0, peer) = (ClientHops::default(), Instant::now(), addr(PEER));
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        let c = conn("198.51.100.7:40000", 1);
        assert_eq!(h.route(peer, c, t0), Next::LookUp(client));
        assert_eq!(h.resolved(client, None, t0), vec![(peer, c)]);
        assert_eq!(h.route(peer, c, t0), Next::LookUp(client), "asked again");
    }

    #[test]
    fn removals_and_persistence_need_no_lookup() {
        let (mut h, t0, peer) = (ClientHops::default(), Instant::now(), addr(PEER));
        let g = gone("198.51.100.7:40000");
        assert_eq!(h.route(peer, g, t0), Next::Install(g, None));
        let p = Record::Persist(Persist {
            protocol: Protocol::Tcp,
            virtual_server: addr("192.0.2.10:80"),
            client_net: "198.51.100.0".parse().unwrap(),
            real_server: addr("10.1.0.11:8080"),
            idle_ms: 0,
        });
        assert_eq!(h.route(peer, p, t0), Next::Install(p, None));
        assert_eq!(h.waiting(), 0);
    }
}
