//! What is rejected, counted, and never delivered: a wrong key, a replayed
//! capture, a message duplicated within a session, another format version
//! and a director that is not a peer.

use tokio::{
    io::AsyncReadExt,
    net::{TcpSocket, TcpStream},
};

use super::{
    proxy::{Proxy, Tamper, untouched},
    *,
};
use crate::sync::{
    frame,
    noise::{self, Psk},
    wire::{Hello, VERSION},
};

const OTHER_KEY: &[u8] = b"another key of at least 32 bytes, from another group";

/// Nothing but bulk requests for our own streams reached the daemon.
#[track_caller]
fn assert_nothing_delivered(node: &Node) {
    let delivered: Vec<Inbound> = node
        .events()
        .into_iter()
        .filter(|e| !matches!(e, Inbound::BulkWanted(_)))
        .collect();
    assert_eq!(delivered, [], "{} delivered", node.addr);
}

/// Reads from `stream` until the other side closes it.
async fn until_closed(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("the listener closes the connection")
        .ok();
}

/// A connection to `to` from `from_ip`.
async fn dial(from_ip: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind((from_ip.parse::<std::net::IpAddr>().unwrap(), 0).into())
        .unwrap();
    socket.connect(to).await.unwrap()
}

#[tokio::test]
async fn a_wrong_key_fails_the_handshake_both_ways() {
    let (la, lb) = (listener("127.0.0.1").await, listener("127.0.0.2").await);
    let (a_addr, b_addr) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    let a = Node::start(la, &[b_addr], KEY, conns(0..3));
    let b = Node::start(lb, &[a_addr], OTHER_KEY, conns(3..6));
    until("each has rejected the other's handshake", || {
        a.rejected(b_addr, "bad_handshake") > 0 && b.rejected(a_addr, "bad_handshake") > 0
    })
    .await;
    // Redialed with backoff, rejected each time, never delivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (node, peer) in [(&a, b_addr), (&b, a_addr)] {
        assert_eq!(
            node.events(),
            [],
            "{} delivered or asked for something",
            node.addr
        );
        let s = node.peer(peer);
        assert!(
            !s.send_connected && !s.receive_connected && !s.synced && s.records_received == 0,
            "{s:?}"
        );
        assert!(s.messages_rejected["bad_handshake"] >= 2, "redialed: {s:?}");
    }
}

/// A on 127.0.0.1 sends to B on 127.0.0.2 through a proxy on 127.0.0.3
/// that applies `tamper`; B sends to A directly. A's table is `table`.
async fn through_proxy(tamper: Tamper, table: Vec<Record>) -> (Node, Node, Proxy) {
    let (la, lb, lp) = (
        listener("127.0.0.1").await,
        listener("127.0.0.2").await,
        listener("127.0.0.3").await,
    );
    let (a_addr, b_addr) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    let b = Node::start(lb, &[a_addr], KEY, vec![]);
    let proxy = Proxy::start(lp, b_addr, tamper).await;
    let a = Node::start(la, &[proxy.addr], KEY, table);
    (a, b, proxy)
}

#[tokio::test]
async fn a_replayed_capture_is_rejected() {
    let (a, b, proxy) = through_proxy(untouched, conns(0..3)).await;
    let (a_addr, b_addr) = (a.addr, b.addr);
    until("b has a's table", || b.synced_from(a_addr) == 1).await;
    a.transport.publish(&[conn(10)]);
    until("b has a's live record", || {
        b.records_from(a_addr).len() == 4
    })
    .await;
    let capture = proxy.captured(0);
    assert!(
        capture.len() >= 3,
        "a handshake, a table and a record: {capture:?}"
    );
    // The sender restarts; its earlier connection is replayed from its
    // address, handshake and all.
    drop(a);
    until("b has lost a", || !b.peer(a_addr).receive_connected).await;
    let mut replay = dial("127.0.0.1", b_addr).await;
    for f in &capture {
        frame::write(&mut replay, f).await.unwrap();
    }
    until_closed(&mut replay).await;
    until("b counted the replay", || b.rejected(a_addr, "replay") == 1).await;
    assert_eq!(
        b.records_from(a_addr),
        [conns(0..3), vec![conn(10)]].concat()
    );
    assert_eq!(
        b.synced_from(a_addr),
        1,
        "the replayed table was not delivered"
    );
    assert!(!b.peer(a_addr).receive_connected);
}

/// Forwards the first connection's third frame twice: after the handshake
/// and the message that begins the bulk transfer, the one that carries the
/// table.
fn duplicate_the_table(conn: usize, n: usize, frame: Vec<u8>) -> Vec<Vec<u8>> {
    if (conn, n) == (0, 2) {
        vec![frame.clone(), frame]
    } else {
        vec![frame]
    }
}

#[tokio::test]
async fn a_message_duplicated_in_the_session_is_rejected_and_the_stream_resyncs() {
    let table = conns(0..3);
    let (a, b, proxy) = through_proxy(duplicate_the_table, table.clone()).await;
    let a_addr = a.addr;
    until("a's second stream has carried its table", || {
        b.synced_from(a_addr) == 2
    })
    .await;
    assert_eq!(b.rejected(a_addr, "bad_tag"), 1);
    assert_eq!(b.rejected(a_addr, "replay"), 0);
    assert_eq!(
        b.records_from(a_addr),
        [table.clone(), table].concat(),
        "the table once per stream, not its duplicate"
    );
    assert_eq!(a.bulks_wanted_by(proxy.addr), 2);
}

/// A hello of the next format version, from `listen`.
fn next_version(listen: SocketAddr) -> Hello {
    Hello {
        version: VERSION + 1,
        listen,
    }
}

/// Asserts that the other side answered with the current version's hello
/// from `listen`, then closed `stream`.
async fn assert_answered_then_closed(theirs: Hello, listen: SocketAddr, stream: &mut TcpStream) {
    let current = Hello {
        version: VERSION,
        listen,
    };
    assert_eq!(theirs, current, "the other side tells its own version");
    until_closed(stream).await;
}

#[tokio::test]
async fn another_format_version_is_refused_by_the_listener() {
    let (la, lb) = (listener("127.0.0.1").await, listener("127.0.0.2").await);
    let (a_addr, b_addr) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    let b = Node::start(lb, &[a_addr], KEY, conns(0..3));
    let mut s = dial("127.0.0.1", b_addr).await;
    let (_, theirs) = noise::initiate(&mut s, &Psk::derive(KEY), next_version(a_addr))
        .await
        .expect("the listener completes the handshake");
    assert_answered_then_closed(theirs, b_addr, &mut s).await;
    until("b counted the version", || {
        b.rejected(a_addr, "bad_version") == 1
    })
    .await;
    assert_nothing_delivered(&b);
    assert!(!b.peer(a_addr).receive_connected);
}

#[tokio::test]
async fn another_format_version_is_refused_by_the_sender() {
    let (la, lf) = (listener("127.0.0.1").await, listener("127.0.0.2").await);
    let fake = lf.local_addr().unwrap();
    let a = Node::start(la, &[fake], KEY, conns(0..3));
    let (mut s, _) = lf.accept().await.unwrap();
    let (_, theirs) = noise::respond(&mut s, &Psk::derive(KEY), next_version(fake))
        .await
        .expect("the sender completes the handshake");
    assert_answered_then_closed(theirs, a.addr, &mut s).await;
    until("a counted the version", || {
        a.rejected(fake, "bad_version") == 1
    })
    .await;
    assert_eq!(a.bulks_wanted_by(fake), 0, "no stream opened");
    assert!(!a.peer(fake).send_connected);
}

#[tokio::test]
async fn a_director_that_is_no_peer_is_refused() {
    let (la, lb, lc) = (
        listener("127.0.0.1").await,
        listener("127.0.0.2").await,
        listener("127.0.0.3").await,
    );
    let (a_addr, b_addr) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    drop(la);
    // C holds the key but B does not list it.
    let b = Node::start(lb, &[a_addr], KEY, vec![]);
    let _c = Node::start(lc, &[b_addr], KEY, conns(0..3));
    until("b counted c", || {
        b.transport.status().rejected_unattributed["unknown_peer"] > 0
    })
    .await;
    assert_nothing_delivered(&b);
    assert_eq!(
        b.rejected(a_addr, "unknown_peer"),
        0,
        "not counted against a peer"
    );
}
