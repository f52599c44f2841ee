//! Readiness, defined once for every user (keepalived's `vrrp_script` through
//! `director ready`, and route announcement): the datapath is attached, the
//! configuration applied, and every sync peer that answered within
//! `ready_timeout` has finished its bulk transfer to us. A peer that does not
//! answer in time is not waited for, so a cold start of a whole group, or a
//! restart while the peer is down, still becomes ready.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    /// Nothing heard yet.
    Silent,
    /// Its bulk transfer to us has begun.
    Sending,
    /// Its bulk transfer to us has ended.
    Synced,
}

#[derive(Debug)]
pub struct Readiness {
    started: Instant,
    timeout: Duration,
    attached: bool,
    peers: BTreeMap<SocketAddr, Peer>,
}

impl Readiness {
    pub fn new(peers: &[SocketAddr], timeout: Duration, now: Instant) -> Readiness {
        Readiness {
            started: now,
            timeout,
            attached: false,
            peers: peers.iter().map(|p| (*p, Peer::Silent)).collect(),
        }
    }

    /// The datapath is attached with the configuration applied.
    pub fn attached(&mut self) {
        self.attached = true;
    }

    /// `peer` began its bulk transfer to us.
    pub fn sending(&mut self, peer: SocketAddr) {
        if let Some(p) = self.peers.get_mut(&peer) {
            *p = Peer::Sending;
        }
    }

    /// `peer` finished its bulk transfer to us.
    pub fn synced(&mut self, peer: SocketAddr) {
        if let Some(p) = self.peers.get_mut(&peer) {
            *p = Peer::Synced;
        }
    }

    /// Ok with a summary when ready at `now`, else what it still waits for.
    pub fn check(&self, now: Instant) -> Result<String, String> {
        if !self.attached {
            return Err("not ready: the datapath is not attached yet".into());
        }
        let waited = now.duration_since(self.started);
        let mut waiting = Vec::new();
        let mut synced = 0;
        for (addr, p) in &self.peers {
            match p {
                Peer::Synced => synced += 1,
                Peer::Sending => waiting.push(format!("{addr} (its table is still arriving)")),
                Peer::Silent if waited < self.timeout => waiting.push(format!(
                    "{addr} (no answer yet; waiting up to {}s)",
                    self.timeout.as_secs()
                )),
                Peer::Silent => {}
            }
        }
        if !waiting.is_empty() {
            return Err(format!("not ready: waiting for {}", waiting.join(", ")));
        }
        Ok(match self.peers.len() {
            0 => "ready".to_string(),
            n => format!("ready: {synced} of {n} sync peers synced"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    const TIMEOUT: Duration = Duration::from_secs(10);

    #[test]
    fn without_peers_ready_once_attached() {
        let t0 = Instant::now();
        let mut r = Readiness::new(&[], TIMEOUT, t0);
        assert!(r.check(t0).is_err(), "not attached yet");
        r.attached();
        assert_eq!(r.check(t0).as_deref(), Ok("ready"));
    }

    #[test]
    fn a_peer_that_answers_is_waited_for_until_its_table_is_in() {
        let t0 = Instant::now();
        let a = peer("10.9.0.2:8848");
        let mut r = Readiness::new(&[a], TIMEOUT, t0);
        r.attached();
        let err = r.check(t0).unwrap_err();
        assert!(err.contains("no answer yet"), "{err}");
        r.sending(a);
        let late = t0 + TIMEOUT * 3;
        let err = r.check(late).unwrap_err();
        assert!(
            err.contains("still arriving"),
            "an answering peer is waited for past the timeout: {err}"
        );
        r.synced(a);
        assert_eq!(
            r.check(late).as_deref(),
            Ok("ready: 1 of 1 sync peers synced")
        );
    }

    #[test]
    fn a_silent_peer_is_not_waited_for_past_the_timeout() {
        let t0 = Instant::now();
        let (a, b) = (peer("10.9.0.2:8848"), peer("10.9.0.3:8848"));
        let mut r = Readiness::new(&[a, b], TIMEOUT, t0);
        r.attached();
        r.sending(a);
        r.synced(a);
        assert!(r.check(t0 + TIMEOUT / 2).is_err(), "b may still answer");
        assert_eq!(
            r.check(t0 + TIMEOUT).as_deref(),
            Ok("ready: 1 of 2 sync peers synced"),
            "cold start or peer down: ready without it"
        );
    }

    #[test]
    fn unknown_peers_change_nothing() {
        let t0 = Instant::now();
        let mut r = Readiness::new(&[], TIMEOUT, t0);
        r.attached();
        r.sending(peer("192.0.2.99:1"));
        assert_eq!(r.check(t0).as_deref(), Ok("ready"));
    }
}
