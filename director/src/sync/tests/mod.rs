//! Tests of the sync transport: transports on loopback addresses in one
//! process, each driven by a small stand-in for the daemon ([`Node`]).

mod exchange;
mod latency;
mod proxy;
mod queue;
mod reject;
mod resync;
mod wire;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{net::TcpListener, sync::mpsc::UnboundedReceiver, task::JoinHandle};

use super::{BulkRequest, Inbound, PeerStatus, Record, Transport, wire::Conn, wire::Protocol};

const KEY: &[u8] = b"a shared key of at least 32 bytes, as a file holds it";
/// How long a test waits for something that takes milliseconds.
const PATIENCE: Duration = Duration::from_secs(10);

/// A listener on `ip`, on a port of the kernel's choosing.
async fn listener(ip: &str) -> TcpListener {
    TcpListener::bind((ip, 0))
        .await
        .unwrap_or_else(|e| panic!("cannot bind {ip}: {e}"))
}

/// A connection record whose client port and idle time are `i`.
fn conn(i: u32) -> Record {
    Record::Conn(Conn {
        protocol: Protocol::Tcp,
        client: SocketAddr::new([192, 0, 2, 1].into(), (i % 60_000) as u16 + 1024),
        virtual_server: "198.51.100.10:80".parse().unwrap(),
        real_server: "203.0.113.11:8080".parse().unwrap(),
        state: 2,
        idle_ms: i,
    })
}

fn conns(range: std::ops::Range<u32>) -> Vec<Record> {
    range.map(conn).collect()
}

/// A transport and what it delivered, each event with the time it came.
/// The stand-in daemon answers every bulk request with `table`.
struct Node {
    addr: SocketAddr,
    transport: Transport,
    log: Arc<Mutex<Vec<(Instant, Inbound)>>>,
    daemon: JoinHandle<()>,
}

impl Node {
    fn start(listener: TcpListener, peers: &[SocketAddr], key: &[u8], table: Vec<Record>) -> Node {
        Node::speaking(super::wire::VERSION, listener, peers, key, table)
    }

    /// A node whose newest wire format is `version`.
    fn speaking(
        version: u16,
        listener: TcpListener,
        peers: &[SocketAddr],
        key: &[u8],
        table: Vec<Record>,
    ) -> Node {
        let addr = listener.local_addr().unwrap();
        let (transport, mut rx) = Transport::on(listener, peers, key, version).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let daemon = tokio::spawn({
            let transport = transport.clone();
            let log = log.clone();
            async move {
                while let Some(inbound) = rx.recv().await {
                    let at = Instant::now();
                    if let Inbound::BulkWanted(request) = inbound {
                        transport.bulk(request, table.clone());
                    }
                    log.lock().unwrap().push((at, inbound));
                }
            }
        });
        Node {
            addr,
            transport,
            log,
            daemon,
        }
    }

    /// A node on the address of one that has stopped: binds it again (the
    /// old listener closes as its task is cancelled).
    async fn restart(addr: SocketAddr, peers: &[SocketAddr], table: Vec<Record>) -> Node {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match TcpListener::bind(addr).await {
                Ok(l) => return Node::start(l, peers, KEY, table),
                Err(e) if Instant::now() > deadline => panic!("cannot bind {addr} again: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn events(&self) -> Vec<Inbound> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    fn count(&self, pred: impl Fn(&Inbound) -> bool) -> usize {
        self.events().iter().filter(|e| pred(e)).count()
    }

    /// The records delivered from `peer`, in order.
    fn records_from(&self, peer: SocketAddr) -> Vec<Record> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Inbound::Records { peer: p, records } if p == peer => Some(records),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn synced_from(&self, peer: SocketAddr) -> usize {
        self.count(|e| *e == Inbound::Synced { peer })
    }

    fn bulks_wanted_by(&self, peer: SocketAddr) -> usize {
        self.count(|e| matches!(e, Inbound::BulkWanted(r) if r.peer == peer))
    }

    fn peer(&self, addr: SocketAddr) -> PeerStatus {
        self.transport
            .status()
            .peers
            .into_iter()
            .find(|p| p.address == addr)
            .unwrap_or_else(|| panic!("{addr} is not a peer of {}", self.addr))
    }

    /// How many connections from `peer` this node rejected for `reason`.
    fn rejected(&self, peer: SocketAddr, reason: &str) -> u64 {
        self.peer(peer).messages_rejected[reason]
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.daemon.abort();
    }
}

/// Two nodes that are each other's peer, on 127.0.0.1 and 127.0.0.2, each
/// answering bulk requests with its `table`.
async fn pair(table_a: Vec<Record>, table_b: Vec<Record>) -> (Node, Node) {
    let (la, lb) = (listener("127.0.0.1").await, listener("127.0.0.2").await);
    let (a, b) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    (
        Node::start(la, &[b], KEY, table_a),
        Node::start(lb, &[a], KEY, table_b),
    )
}

/// Waits until `cond` holds, or panics naming `what`.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `a` and `b` hold each other's table.
async fn until_synced(a: &Node, b: &Node) {
    until("both nodes are synced", || {
        a.synced_from(b.addr) > 0 && b.synced_from(a.addr) > 0
    })
    .await;
}

/// A transport on 127.0.0.1 whose daemon is the test (it answers bulk
/// requests by hand), what it delivers, and its peer, a node on 127.0.0.2
/// with an empty table.
async fn by_hand_and_node() -> (Transport, UnboundedReceiver<Inbound>, Node) {
    let (la, lb) = (listener("127.0.0.1").await, listener("127.0.0.2").await);
    let (a_addr, b_addr) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    let b = Node::start(lb, &[a_addr], KEY, vec![]);
    let (a, rx) = Transport::on(la, &[b_addr], KEY, super::wire::VERSION).unwrap();
    (a, rx, b)
}

/// For a test that is its transport's daemon: the next bulk request, past
/// what the peer's (empty) table delivers.
async fn next_bulk_request(rx: &mut UnboundedReceiver<Inbound>) -> BulkRequest {
    loop {
        match tokio::time::timeout(PATIENCE, rx.recv()).await {
            Ok(Some(Inbound::BulkWanted(r))) => return r,
            Ok(Some(Inbound::BulkBegun { .. } | Inbound::Synced { .. })) => {}
            other => panic!("expected a bulk request, got {other:?}"),
        }
    }
}
