//! Two directors exchanging their tables and live records.

use std::collections::BTreeMap;

use super::*;
use crate::sync::wire::{ConnGone, Persist};

fn persist() -> Record {
    Record::Persist(Persist {
        protocol: Protocol::Udp,
        virtual_server: "[2001:db8::10]:53".parse().unwrap(),
        client_net: "2001:db8:1::".parse().unwrap(),
        real_server: "[2001:db8:2::11]:53".parse().unwrap(),
        idle_ms: 1500,
    })
}

fn gone() -> Record {
    Record::ConnGone(ConnGone {
        protocol: Protocol::Tcp,
        client: "192.0.2.1:1024".parse().unwrap(),
        virtual_server: "198.51.100.10:80".parse().unwrap(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_then_live_records_both_ways() {
    let table_a = conns(0..3);
    let table_b = vec![persist()];
    let (a, b) = pair(table_a.clone(), table_b.clone()).await;
    until_synced(&a, &b).await;
    // Each asked for its table once, and each got the other's whole.
    assert_eq!(
        (a.bulks_wanted_by(b.addr), b.bulks_wanted_by(a.addr)),
        (1, 1)
    );
    assert_eq!(b.records_from(a.addr), table_a);
    let from_b: Vec<Inbound> = a
        .events()
        .into_iter()
        .filter(|e| !matches!(e, Inbound::BulkWanted(_)))
        .collect();
    assert_eq!(
        from_b,
        [
            Inbound::BulkBegun { peer: b.addr },
            Inbound::Records {
                peer: b.addr,
                records: table_b.clone()
            },
            Inbound::Synced { peer: b.addr },
        ]
    );

    a.transport.publish(&[conn(10), gone()]);
    b.transport.publish(&[conn(20)]);
    a.transport.publish(&[conn(11)]);
    until("the live records arrive", || {
        b.records_from(a.addr).len() == 6 && a.records_from(b.addr).len() == 2
    })
    .await;
    assert_eq!(
        b.records_from(a.addr)[3..],
        [conn(10), gone(), conn(11)],
        "live records in the order published"
    );
    assert_eq!(a.records_from(b.addr), [persist(), conn(20)]);

    let zero: BTreeMap<String, u64> = [
        "bad_handshake",
        "replay",
        "bad_tag",
        "malformed",
        "bad_version",
        "unknown_peer",
    ]
    .into_iter()
    .map(|r| (r.to_owned(), 0))
    .collect();
    until("a has counted what it sent", || {
        a.peer(b.addr).records_sent == 6
    })
    .await;
    let status = a.peer(b.addr);
    // Keepalives make the message counts and the time since the last one
    // vary.
    assert_eq!(
        PeerStatus {
            messages_sent: 0,
            messages_received: 0,
            last_received_ms: None,
            receive_lag_ms: None,
            ..status.clone()
        },
        PeerStatus {
            address: b.addr,
            send_connected: true,
            receive_connected: true,
            synced: true,
            records_sent: 6,
            records_received: 2,
            messages_sent: 0,
            messages_received: 0,
            messages_rejected: zero.clone(),
            queue_len: 0,
            send_lag_ms: 0,
            receive_lag_ms: None,
            queue_full_drops: 0,
            last_received_ms: None,
        }
    );
    assert!(
        status.receive_lag_ms.is_some_and(|ms| ms < 1000),
        "version 2 tells the lag: {status:?}"
    );
    assert!(
        status.messages_sent >= 2 && status.messages_received >= 2,
        "a table and at least one batch each way: {status:?}"
    );
    assert!(status.last_received_ms.is_some(), "{status:?}");
    assert_eq!(b.peer(a.addr).records_received, 6);
    assert_eq!(a.transport.status().rejected_unattributed, zero);
}

/// An idle stream carries keepalives: the peer hears from us every second
/// and keeps the stream.
#[tokio::test]
async fn idle_streams_stay_up_with_keepalives() {
    let (a, b) = pair(vec![], vec![]).await;
    until_synced(&a, &b).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let status = a.peer(b.addr);
    assert!(
        status.last_received_ms.is_some_and(|ms| ms < 1500),
        "a keepalive within the last second and a half: {status:?}"
    );
    assert!(status.send_connected && status.receive_connected && status.synced);
    assert_eq!(
        a.bulks_wanted_by(b.addr),
        1,
        "the stream was never redialed"
    );
}

/// Records published before the daemon answers the bulk request go after
/// the table, in order; a table meant for an earlier stream is not sent.
#[tokio::test]
async fn bulk_first_then_records_published_before_it() {
    let (a, mut rx, b) = by_hand_and_node().await;
    let (a_addr, b_addr) = (a.shared.listen, b.addr);
    let request = next_bulk_request(&mut rx).await;
    assert_eq!(request.peer, b_addr);
    a.publish(&[conn(100)]);
    a.bulk(
        BulkRequest {
            session: request.session + 1,
            ..request
        },
        conns(50..51),
    );
    a.bulk(request, conns(0..2));
    a.publish(&[conn(101)]);
    until("the table and both live records arrive", || {
        b.records_from(a_addr).len() == 4
    })
    .await;
    assert_eq!(
        b.records_from(a_addr),
        [conn(0), conn(1), conn(100), conn(101)]
    );
    assert_eq!(b.synced_from(a_addr), 1);
}

/// A director speaking version 1 of the wire format (the one before this
/// build's) and one speaking version 2 sync both ways: each stream speaks
/// version 1, so neither side tells a lag it cannot measure; two version 2
/// directors do (the exchange above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_format_version_and_this_one_sync_both_ways() {
    let (la, lb) = (listener("127.0.0.1").await, listener("127.0.0.2").await);
    let (a_addr, b_addr) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    let new = Node::start(la, &[b_addr], KEY, conns(0..3));
    let old = Node::speaking(1, lb, &[a_addr], KEY, vec![persist()]);
    until_synced(&new, &old).await;
    assert_eq!(old.records_from(new.addr), conns(0..3));
    assert_eq!(new.records_from(old.addr), [persist()]);
    new.transport.publish(&[conn(10), gone()]);
    old.transport.publish(&[conn(20)]);
    until("the live records arrive", || {
        old.records_from(new.addr).len() == 5 && new.records_from(old.addr).len() == 2
    })
    .await;
    assert_eq!(old.records_from(new.addr)[3..], [conn(10), gone()]);
    assert_eq!(new.records_from(old.addr), [persist(), conn(20)]);
    for (node, peer) in [(&new, old.addr), (&old, new.addr)] {
        let status = node.peer(peer);
        assert_eq!(
            status.receive_lag_ms, None,
            "a version 1 stream: {status:?}"
        );
        assert_eq!(
            status.messages_rejected.values().sum::<u64>(),
            0,
            "{status:?}"
        );
    }
}
