//! The send side: one stream to each peer, dialed again with backoff when
//! it fails or closes. Each stream carries a bulk transfer of our table,
//! then the live records published while it is up.

use std::{net::SocketAddr, sync::Arc, sync::atomic::Ordering::Relaxed, time::Duration};

use anyhow::{Context, anyhow, bail};
use nix::sys::socket::{setsockopt, sockopt::TcpUserTimeout};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, BufWriter},
    net::{TcpSocket, TcpStream, tcp::WriteHalf},
    time::{sleep, timeout},
};

use super::{
    BulkRequest, HANDSHAKE_TIMEOUT, Inbound, Peer, Shared, frame,
    noise::{self, Session},
    queue::Next,
    wire::{self, Item, MAX_MESSAGE, Record},
};

/// First delay before dialing again, doubled after each failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// An idle stream carries an empty message this often, so that the peer
/// can tell a quiet director from a dead one.
pub(super) const KEEPALIVE: Duration = Duration::from_secs(1);
/// Data unacknowledged this long closes the stream (TCP_USER_TIMEOUT): a
/// peer that vanished is noticed in seconds, not after TCP's retries.
const UNACKED_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps a stream to `peer` up for as long as the transport runs.
pub(super) async fn run(shared: Arc<Shared>, peer: usize) {
    let peer = &shared.peers[peer];
    let mut delay = BACKOFF_MIN;
    // Whether the failure to reach the peer was logged since it was last up:
    // once, not every retry.
    let mut reported = false;
    loop {
        match connect(&shared, peer).await {
            Ok((stream, session, version)) => {
                (delay, reported) = (BACKOFF_MIN, false);
                tracing::info!(
                    "sync: sending to peer {} (wire format version {version})",
                    peer.address
                );
                let why = serve(&shared, peer, stream, session, version).await;
                tracing::warn!("sync: stream to peer {} closed: {why:#}", peer.address);
            }
            Err(e) if reported => {
                tracing::debug!("sync: cannot reach peer {}: {e:#}", peer.address)
            }
            Err(e) => {
                reported = true;
                tracing::warn!(
                    "sync: cannot reach peer {}: {e:#} (retrying every {BACKOFF_MAX:?} or sooner)",
                    peer.address
                );
            }
        }
        sleep(delay).await;
        delay = (delay * 2).min(BACKOFF_MAX);
    }
}

/// A stream to `peer`, its handshake done, and the wire format version it
/// speaks.
async fn connect(shared: &Shared, peer: &Peer) -> anyhow::Result<(TcpStream, Session, u16)> {
    let socket = if peer.address.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }?;
    // From our listen address: the peer (and its firewall) see us as
    // configured.
    if shared.listen.is_ipv4() == peer.address.is_ipv4() {
        socket
            .bind(SocketAddr::new(shared.listen.ip(), 0))
            .with_context(|| format!("cannot bind to {}", shared.listen.ip()))?;
    }
    let mut stream = timeout(CONNECT_TIMEOUT, socket.connect(peer.address))
        .await
        .context("connect timed out")??;
    stream.set_nodelay(true)?;
    setsockopt(
        &stream,
        TcpUserTimeout,
        &(UNACKED_TIMEOUT.as_millis() as u32),
    )?;
    let handshake = noise::initiate(&mut stream, &shared.psk, shared.hello());
    // The peer's hello names it, but we know whom we dialed: a peer behind
    // an address translation is reached on another address than its own.
    let (session, theirs) = match timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Err(_) => bail!("handshake timed out"),
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            if let Some(reason) = e.reason() {
                shared.reject(Some(peer), reason, &e);
            }
            return Err(e).context("handshake");
        }
    };
    Ok((
        stream,
        session,
        wire::agreed(shared.version, theirs.version),
    ))
}

/// Runs an established stream until it fails; returns why it ended.
async fn serve(
    shared: &Shared,
    peer: &Peer,
    mut stream: TcpStream,
    session: Session,
    version: u16,
) -> anyhow::Error {
    let _open = Open::new(peer);
    let request = BulkRequest {
        peer: peer.address,
        session: peer.queue.open(),
    };
    // A daemon that has gone away needs no table.
    let _ = shared.inbound.send(Inbound::BulkWanted(request));
    let (mut rd, wr) = stream.split();
    let mut writer = Writer {
        out: BufWriter::with_capacity(2 * MAX_MESSAGE, wr),
        session,
        payload: Vec::with_capacity(wire::MAX_PAYLOAD),
        begun: false,
        version,
    };
    let mut byte = [0];
    tokio::select! {
        e = writer.run(peer) => e,
        // The peer never writes after its handshake: a read ends only when
        // it closes.
        r = rd.read(&mut byte) => match r {
            Ok(0) => anyhow!("closed by the peer"),
            Ok(_) => anyhow!("the peer wrote on a send stream"),
            Err(e) => e.into(),
        },
    }
}

/// Marks the peer's send stream open while it lives.
struct Open<'a>(&'a Peer);

impl<'a> Open<'a> {
    fn new(peer: &'a Peer) -> Open<'a> {
        peer.stats.send_connected.store(true, Relaxed);
        Open(peer)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.queue.close();
        self.0.stats.send_connected.store(false, Relaxed);
    }
}

/// Batches items into messages, seals and writes them.
struct Writer<'a> {
    out: BufWriter<WriteHalf<'a>>,
    session: Session,
    /// The plaintext of the message being filled.
    payload: Vec<u8>,
    /// A bulk transfer's beginning went out ahead of its records.
    begun: bool,
    /// The wire format version of the stream.
    version: u16,
}

impl Writer<'_> {
    async fn run(&mut self, peer: &Peer) -> anyhow::Error {
        // The stream's bulk transfer begins at once, before the daemon has
        // walked its table: the peer learns without delay that we answered.
        let begin = async {
            self.item(peer, &Item::BulkBegin).await?;
            self.seal(peer).await?;
            self.begun = true;
            anyhow::Ok(self.out.flush().await?)
        };
        if let Err(e) = begin.await {
            return e;
        }
        loop {
            if let Err(e) = self.send_next(peer).await {
                return e;
            }
        }
    }

    /// Sends what the queue gives next, or a keepalive after a quiet
    /// [`KEEPALIVE`].
    async fn send_next(&mut self, peer: &Peer) -> anyhow::Result<()> {
        let records = match timeout(KEEPALIVE, peer.queue.next()).await {
            Err(_) => {
                self.seal(peer).await?;
                0
            }
            Ok(Next::Overflow) => bail!("send queue full"),
            Ok(Next::Bulk(records)) => {
                if !std::mem::take(&mut self.begun) {
                    self.item(peer, &Item::BulkBegin).await?;
                }
                self.records(peer, &records).await?;
                let entries = records.len() as u64;
                self.item(peer, &Item::BulkEnd { entries }).await?;
                records.len()
            }
            Ok(Next::Records(records)) => {
                self.records(peer, &records).await?;
                records.len()
            }
        };
        // What the queue gave goes out now: a live record waits for no
        // other to fill its message.
        if !self.payload.is_empty() {
            self.seal(peer).await?;
        }
        self.out.flush().await?;
        peer.stats.records_sent.fetch_add(records as u64, Relaxed);
        Ok(())
    }

    async fn records(&mut self, peer: &Peer, records: &[Record]) -> anyhow::Result<()> {
        for &r in records {
            self.item(peer, &Item::Record(r)).await?;
        }
        Ok(())
    }

    async fn item(&mut self, peer: &Peer, item: &Item) -> anyhow::Result<()> {
        self.start();
        if !wire::append(&mut self.payload, item) {
            self.seal(peer).await?;
            self.start();
            if !wire::append(&mut self.payload, item) {
                bail!("{item:?} does not fit in a message");
            }
        }
        Ok(())
    }

    /// From version 2 a message begins with the time it was begun.
    fn start(&mut self) {
        if self.payload.is_empty() && self.version >= 2 {
            let sent = Item::SentAt {
                unix_ms: wire::unix_ms(),
            };
            wire::append(&mut self.payload, &sent);
        }
    }

    /// Writes the message filled so far (an empty one is a keepalive).
    async fn seal(&mut self, peer: &Peer) -> anyhow::Result<()> {
        let msg = self.session.seal(&self.payload)?;
        frame::write(&mut self.out, msg).await?;
        self.payload.clear();
        peer.stats.messages_sent.fetch_add(1, Relaxed);
        Ok(())
    }
}
