//! The receive side: the streams peers open to our listen address. Each is
//! authenticated by its handshake, then every message by its AEAD tag; the
//! first message that fails closes the stream, and nothing of it is
//! delivered.

use std::{net::SocketAddr, sync::Arc, sync::atomic::Ordering::Relaxed, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinSet,
    time::{sleep, timeout},
};

use super::{
    HANDSHAKE_TIMEOUT, Inbound, Peer, Shared, frame, noise,
    send::KEEPALIVE,
    status::Reason,
    wire::{self, Item, Record},
};

/// A stream silent this long (several keepalives) is taken for dead and
/// closed: its sender has gone without a word.
const RECEIVE_TIMEOUT: Duration = KEEPALIVE.saturating_mul(5);

/// Accepts streams for as long as the transport runs; they end with it.
pub(super) async fn listen(shared: Arc<Shared>, listener: TcpListener) {
    let mut streams = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, from)) => {
                    streams.spawn(receive(shared.clone(), stream, from));
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some.
                    tracing::warn!("sync: accept on {}: {e}", shared.listen);
                    sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = streams.join_next() => {}
        }
    }
}

/// One stream from a peer, from its handshake to its end.
async fn receive(shared: Arc<Shared>, mut stream: TcpStream, from: SocketAddr) {
    // Only our handshake reply is written: no delay for it.
    let _ = stream.set_nodelay(true);
    let handshake = noise::respond(&mut stream, &shared.psk, shared.hello());
    let (mut session, theirs) = match timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Err(_) => return tracing::debug!("sync: handshake from {from} timed out"),
        Ok(Err(e)) => {
            let why = format!("handshake from {from}: {e}");
            return match e.reason() {
                Some(reason) => shared.reject(shared.peer_at_ip(from), reason, &why),
                None => tracing::debug!("sync: {why}"),
            };
        }
        Ok(Ok(done)) => done,
    };
    let Some(peer) = shared.peer(theirs.listen) else {
        let why = format!(
            "from {from}: the director listening on {} is not a configured peer",
            theirs.listen
        );
        return shared.reject(shared.peer_at_ip(from), Reason::UnknownPeer, &why);
    };
    let version = wire::agreed(shared.version, theirs.version);
    let mut open = Stream::new(peer, version);
    tracing::info!(
        "sync: receiving from peer {} (connected from {from}, wire format version {version})",
        peer.address
    );
    let mut msg = Vec::new();
    let mut first = true;
    loop {
        match timeout(RECEIVE_TIMEOUT, frame::read(&mut stream, &mut msg)).await {
            Err(_) => {
                return tracing::warn!(
                    "sync: nothing from peer {} in {RECEIVE_TIMEOUT:?}: closing its stream",
                    peer.address
                );
            }
            Ok(Err(e)) => {
                return tracing::info!("sync: stream from peer {} closed: {e}", peer.address);
            }
            Ok(Ok(())) => {}
        }
        let plaintext = match session.open(&msg) {
            Ok(p) => p,
            Err(e) => {
                let reason = if first {
                    Reason::Replay
                } else {
                    Reason::BadTag
                };
                return shared.reject(Some(peer), reason, &e);
            }
        };
        first = false;
        let delivered = wire::decode(plaintext)
            .map_err(|e| e.to_string())
            .and_then(|items| open.progress.take(peer.address, items));
        let (inbound, records, sent_at) = match delivered {
            Ok(delivered) => delivered,
            Err(e) => return shared.reject(Some(peer), Reason::Malformed, &e),
        };
        peer.stats.received_at(shared.epoch);
        if let Some(sent) = sent_at {
            peer.stats.lag(wire::unix_ms().saturating_sub(sent));
        }
        peer.stats.messages_received.fetch_add(1, Relaxed);
        peer.stats.records_received.fetch_add(records, Relaxed);
        open.mark_synced();
        for inbound in inbound {
            // A daemon that has gone away takes nothing more.
            let _ = shared.inbound.send(inbound);
        }
    }
}

/// Counts the peer's receive stream open while it lives.
struct Stream<'a> {
    peer: &'a Peer,
    progress: Progress,
    /// Counted in the peer's synced streams.
    synced: bool,
}

impl<'a> Stream<'a> {
    fn new(peer: &'a Peer, version: u16) -> Stream<'a> {
        peer.stats.receive_streams.fetch_add(1, Relaxed);
        Stream {
            peer,
            progress: Progress {
                version,
                ..Progress::default()
            },
            synced: false,
        }
    }

    fn mark_synced(&mut self) {
        if self.progress.synced && !self.synced {
            self.synced = true;
            self.peer.stats.synced_streams.fetch_add(1, Relaxed);
        }
    }
}

impl Drop for Stream<'_> {
    fn drop(&mut self) {
        if self.synced {
            self.peer.stats.synced_streams.fetch_sub(1, Relaxed);
        }
        self.peer.stats.receive_streams.fetch_sub(1, Relaxed);
    }
}

/// Where a stream is in its bulk transfers.
#[derive(Clone, Copy, Default)]
struct Progress {
    /// Records so far of the bulk transfer under way.
    bulk: Option<u64>,
    /// A bulk transfer has ended.
    synced: bool,
    /// The stream's wire format version: an item of a later one is
    /// malformed, as it would be to a director of that version.
    version: u16,
}

impl Progress {
    /// What one message's `items` deliver, how many records, and when the
    /// sender began it (version 2); moves on only if the whole message is
    /// valid, so that a bad one delivers nothing.
    fn take(
        &mut self,
        peer: SocketAddr,
        items: Vec<Item>,
    ) -> Result<(Vec<Inbound>, u64, Option<u64>), String> {
        let mut next = *self;
        let mut out = Delivery {
            peer,
            inbound: Vec::new(),
            records: Vec::new(),
            count: 0,
            sent_at: None,
        };
        for item in items {
            match item {
                Item::Record(r) => {
                    out.records.push(r);
                    out.count += 1;
                    if let Some(n) = &mut next.bulk {
                        *n += 1;
                    }
                }
                Item::BulkBegin if next.bulk.is_some() => {
                    return Err("a bulk transfer began inside another".to_owned());
                }
                Item::BulkBegin => {
                    next.bulk = Some(0);
                    out.event(Inbound::BulkBegun { peer });
                }
                Item::BulkEnd { entries } => {
                    match next.bulk {
                        Some(n) if n == entries => {}
                        Some(n) => {
                            return Err(format!(
                                "a bulk transfer of {n} records ended as one of {entries}"
                            ));
                        }
                        None => return Err("a bulk transfer ended that had not begun".to_owned()),
                    }
                    next.bulk = None;
                    next.synced = true;
                    out.event(Inbound::Synced { peer });
                }
                Item::SentAt { .. } if next.version < 2 => {
                    return Err("a version 2 item on a version 1 stream".to_owned());
                }
                Item::SentAt { unix_ms } => out.sent_at = Some(unix_ms),
            }
        }
        *self = next;
        Ok(out.finish())
    }
}

/// What a message delivers: runs of records between events.
struct Delivery {
    peer: SocketAddr,
    inbound: Vec<Inbound>,
    /// The run of records since the last event.
    records: Vec<Record>,
    count: u64,
    sent_at: Option<u64>,
}

impl Delivery {
    fn event(&mut self, event: Inbound) {
        self.end_run();
        self.inbound.push(event);
    }

    fn end_run(&mut self) {
        if !self.records.is_empty() {
            let records = std::mem::take(&mut self.records);
            self.inbound.push(Inbound::Records {
                peer: self.peer,
                records,
            });
        }
    }

    fn finish(mut self) -> (Vec<Inbound>, u64, Option<u64>) {
        self.end_run();
        (self.inbound, self.count, self.sent_at)
    }
}
