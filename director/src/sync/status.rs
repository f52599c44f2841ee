//! What the transport counts, per peer, and its snapshot for `director
//! status` and metrics.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

/// Why a connection was closed with nothing more from it delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The handshake failed: a different key, or not a sync peer at all.
    BadHandshake,
    /// The handshake was valid but the first message failed authentication:
    /// a captured connection replayed (whoever holds the key derives the
    /// session's keys), or that message forged.
    Replay,
    /// A later message failed authentication: forged, or replayed,
    /// duplicated or reordered within the session (Noise's nonces).
    BadTag,
    /// Authentic but not a valid message of the format.
    Malformed,
    /// The peer speaks another wire format version.
    BadVersion,
    /// An authentic director whose listen address is not one of `peers`.
    UnknownPeer,
}

impl Reason {
    const ALL: [Reason; 6] = [
        Reason::BadHandshake,
        Reason::Replay,
        Reason::BadTag,
        Reason::Malformed,
        Reason::BadVersion,
        Reason::UnknownPeer,
    ];

    /// The name in status and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadHandshake => "bad_handshake",
            Reason::Replay => "replay",
            Reason::BadTag => "bad_tag",
            Reason::Malformed => "malformed",
            Reason::BadVersion => "bad_version",
            Reason::UnknownPeer => "unknown_peer",
        }
    }
}

/// Rejections by reason.
#[derive(Default)]
pub(super) struct Rejections([AtomicU64; Reason::ALL.len()]);

impl Rejections {
    pub(super) fn count(&self, reason: Reason) {
        self.0[reason as usize].fetch_add(1, Relaxed);
    }

    /// Every reason, by name (zeros included, so that a series exists).
    fn snapshot(&self) -> BTreeMap<String, u64> {
        Reason::ALL
            .iter()
            .map(|&r| (r.as_str().to_owned(), self.0[r as usize].load(Relaxed)))
            .collect()
    }
}

/// The counters of one peer, updated by its send task and its receive
/// connections.
#[derive(Default)]
pub(super) struct PeerStats {
    pub send_connected: AtomicBool,
    /// Open receive streams: a new one may come while a dead one has not
    /// timed out yet.
    pub receive_streams: AtomicUsize,
    /// Open receive streams whose bulk transfer has ended.
    pub synced_streams: AtomicUsize,
    pub records_sent: AtomicU64,
    pub records_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub messages_received: AtomicU64,
    pub rejected: Rejections,
    pub queue_full_drops: AtomicU64,
    /// Milliseconds after the transport's start, plus one, of the last
    /// authentic message from the peer; 0 before the first.
    last_received: AtomicU64,
    /// The last message's delay from the peer's send to our receipt, in
    /// milliseconds plus one; 0 before the first (or from a version 1 peer).
    lag: AtomicU64,
}

impl PeerStats {
    pub(super) fn received_at(&self, epoch: Instant) {
        let ms = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_received.store(ms.saturating_add(1), Relaxed);
    }

    /// A message that the peer began `ms` milliseconds ago (by the two
    /// wall clocks) arrived.
    pub(super) fn lag(&self, ms: u64) {
        self.lag.store(ms.saturating_add(1), Relaxed);
    }

    pub(super) fn snapshot(
        &self,
        address: SocketAddr,
        queue: &super::queue::Queue,
        epoch: Instant,
    ) -> PeerStatus {
        let last = self.last_received.load(Relaxed);
        let last_received_ms = (last > 0).then(|| {
            let at = Duration::from_millis(last - 1);
            epoch.elapsed().saturating_sub(at).as_millis() as u64
        });
        PeerStatus {
            address,
            send_connected: self.send_connected.load(Relaxed),
            receive_connected: self.receive_streams.load(Relaxed) > 0,
            synced: self.synced_streams.load(Relaxed) > 0,
            records_sent: self.records_sent.load(Relaxed),
            records_received: self.records_received.load(Relaxed),
            messages_sent: self.messages_sent.load(Relaxed),
            messages_received: self.messages_received.load(Relaxed),
            messages_rejected: self.rejected.snapshot(),
            queue_len: queue.len(),
            send_lag_ms: queue.lag().as_millis() as u64,
            receive_lag_ms: self.lag.load(Relaxed).checked_sub(1),
            queue_full_drops: self.queue_full_drops.load(Relaxed),
            last_received_ms,
        }
    }
}

/// One peer as `director status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer's configured (listen) address.
    pub address: SocketAddr,
    /// Our stream to it is up (handshake done).
    pub send_connected: bool,
    /// A stream from it is up.
    pub receive_connected: bool,
    /// A stream from it is up and has carried its whole table.
    pub synced: bool,
    /// Records (connection and persistence entries) sent, bulk transfers
    /// included, and received.
    pub records_sent: u64,
    pub records_received: u64,
    /// Noise messages (batches of records, keepalives) sent, and received
    /// authentic.
    pub messages_sent: u64,
    pub messages_received: u64,
    /// Connections closed on a rejected message, by [`Reason`] name.
    pub messages_rejected: BTreeMap<String, u64>,
    /// Records waiting to be sent to it.
    pub queue_len: usize,
    /// How long the oldest of them has waited (0 when none waits).
    pub send_lag_ms: u64,
    /// The sync lag from the peer to us: its last message's delay from
    /// being begun on the peer to its arrival here, by the two hosts' wall
    /// clocks (so their offset is in it); None before its first message
    /// with records, or from a peer speaking wire format version 1.
    pub receive_lag_ms: Option<u64>,
    /// Streams closed because its send queue was full (each resyncs).
    pub queue_full_drops: u64,
    /// Since its last authentic message (an idle stream carries a keepalive
    /// every second); None before the first.
    pub last_received_ms: Option<u64>,
}

/// The whole transport as `director status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    pub peers: Vec<PeerStatus>,
    /// Connections rejected before they could be told apart from a peer:
    /// from an address that is no peer's.
    pub rejected_unattributed: BTreeMap<String, u64>,
}

impl SyncStatus {
    pub(super) fn new(peers: Vec<PeerStatus>, unattributed: &Rejections) -> SyncStatus {
        SyncStatus {
            peers,
            rejected_unattributed: unattributed.snapshot(),
        }
    }
}
