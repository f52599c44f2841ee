//! Connection-state sync between the directors of a group: the transport.
//!
//! Symmetric: every director listens on its `listen` address for its peers'
//! streams, and dials every peer for its own. A stream is TCP carrying a
//! Noise session keyed by the shared key file ([`noise`]); its messages are
//! batches of records in a format versioned on its own ([`wire`]). A
//! (re)established stream first carries the sender's whole table, which the
//! daemon supplies when asked ([`Inbound::BulkWanted`]), then the live
//! records it publishes. A full send queue drops the stream, counted, and
//! the reconnect resyncs: nothing is lost silently.
//!
//! The daemon holds a [`Transport`], publishes its datapath's changes with
//! [`Transport::publish`] and installs what arrives as [`Inbound`].

mod convert;
mod frame;
mod noise;
mod queue;
mod receive;
mod send;
mod status;
#[cfg(test)]
mod tests;
pub mod wire;

use std::{fmt, net::SocketAddr, sync::Arc, time::Duration, time::Instant};

use anyhow::Context;
use tokio::{
    net::TcpListener,
    sync::mpsc::{self, UnboundedReceiver, UnboundedSender},
    task::JoinHandle,
};

pub use convert::UnknownState;
pub use status::{PeerStatus, Reason, SyncStatus};
pub use wire::Record;

use crate::config::SyncConfig;

/// Longest a handshake may take, on either side.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the transport hands the daemon, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// Records from `peer`'s stream, in order.
    Records {
        peer: SocketAddr,
        records: Vec<Record>,
    },
    /// A stream to a peer just opened: answer with [`Transport::bulk`].
    BulkWanted(BulkRequest),
    /// `peer`'s bulk transfer to us began: it answered, and its whole table
    /// is coming (a stream's first one begins as soon as it opens).
    BulkBegun { peer: SocketAddr },
    /// `peer`'s bulk transfer to us ended: we hold its whole table.
    Synced { peer: SocketAddr },
}

/// A send stream's request for our whole table; it names the stream, so
/// that an answer to a stream that has since closed is not sent on the
/// next one (which asks again). Kept, it serves for a later resync of the
/// same stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkRequest {
    pub peer: SocketAddr,
    session: u64,
}

/// The running transport; clones share it, and it stops when the last one
/// is dropped.
#[derive(Clone)]
pub struct Transport {
    shared: Arc<Shared>,
    _tasks: Arc<Tasks>,
}

impl Transport {
    /// Listens on `cfg.listen` and dials every peer, authenticating with
    /// `key` (the key file's bytes).
    pub async fn start(
        cfg: &SyncConfig,
        key: &[u8],
    ) -> anyhow::Result<(Transport, UnboundedReceiver<Inbound>)> {
        let listener = TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("cannot listen for sync peers on {}", cfg.listen))?;
        Transport::on(listener, &cfg.peers, key, wire::VERSION)
    }

    /// The transport on a bound `listener`, whose address names us to the
    /// peers, speaking wire formats up to `version`.
    fn on(
        listener: TcpListener,
        peers: &[SocketAddr],
        key: &[u8],
        version: u16,
    ) -> anyhow::Result<(Transport, UnboundedReceiver<Inbound>)> {
        let (inbound, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            listen: listener.local_addr()?,
            psk: noise::Psk::derive(key),
            peers: peers
                .iter()
                .map(|&address| Peer {
                    address,
                    queue: queue::Queue::default(),
                    stats: status::PeerStats::default(),
                })
                .collect(),
            inbound,
            unattributed: status::Rejections::default(),
            epoch: Instant::now(),
            version,
        });
        let mut tasks = vec![tokio::spawn(receive::listen(shared.clone(), listener))];
        tasks.extend((0..peers.len()).map(|i| tokio::spawn(send::run(shared.clone(), i))));
        let transport = Transport {
            shared,
            _tasks: Arc::new(Tasks(tasks)),
        };
        Ok((transport, rx))
    }

    /// Live records for every peer with an open send stream (the others get
    /// them in their next bulk transfer). A peer whose queue is full has its
    /// stream dropped and resynced.
    pub fn publish(&self, records: &[Record]) {
        for peer in &self.shared.peers {
            if peer.queue.push(records).is_err() {
                peer.stats
                    .queue_full_drops
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    "sync: send queue to peer {} full ({} records): dropping the stream to resync",
                    peer.address,
                    queue::CAPACITY
                );
            }
        }
    }

    /// The answer to `request`: our whole table, sent as a bulk transfer
    /// before any live record on that stream.
    pub fn bulk(&self, request: BulkRequest, records: Vec<Record>) {
        if let Some(peer) = self.shared.peer(request.peer) {
            peer.queue.bulk(request.session, records);
        }
    }

    pub fn status(&self) -> SyncStatus {
        let s = &self.shared;
        let peers = s
            .peers
            .iter()
            .map(|p| p.stats.snapshot(p.address, &p.queue, s.epoch))
            .collect();
        SyncStatus::new(peers, &s.unattributed)
    }
}

/// The tasks of a transport, stopped with it.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// What the transport's tasks share.
struct Shared {
    /// Our address, as the peers know it.
    listen: SocketAddr,
    psk: noise::Psk,
    peers: Vec<Peer>,
    inbound: UnboundedSender<Inbound>,
    /// Rejections of connections from no peer's address.
    unattributed: status::Rejections,
    epoch: Instant,
    /// The newest wire format we speak ([`wire::VERSION`]; older in tests).
    version: u16,
}

struct Peer {
    address: SocketAddr,
    queue: queue::Queue,
    stats: status::PeerStats,
}

impl Shared {
    fn hello(&self) -> wire::Hello {
        wire::Hello {
            version: self.version,
            listen: self.listen,
        }
    }

    /// The peer configured at `address`.
    fn peer(&self, address: SocketAddr) -> Option<&Peer> {
        self.peers.iter().find(|p| p.address == address)
    }

    /// The one peer on the IP a connection came from (peers dial from their
    /// listen address), to count what it sent before it named itself.
    fn peer_at_ip(&self, from: SocketAddr) -> Option<&Peer> {
        let mut at = self.peers.iter().filter(|p| p.address.ip() == from.ip());
        match (at.next(), at.next()) {
            (Some(peer), None) => Some(peer),
            _ => None,
        }
    }

    /// Counts a rejection against `peer` (or no peer) and logs it.
    fn reject(&self, peer: Option<&Peer>, reason: Reason, why: &dyn fmt::Display) {
        match peer {
            Some(p) => {
                p.stats.rejected.count(reason);
                tracing::warn!(
                    "sync: rejected peer {} ({}): {why}",
                    p.address,
                    reason.as_str()
                );
            }
            None => {
                self.unattributed.count(reason);
                tracing::warn!("sync: rejected a connection ({}): {why}", reason.as_str());
            }
        }
    }
}
