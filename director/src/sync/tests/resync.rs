//! A stream that breaks is dialed again and starts over with a bulk
//! transfer: after a peer's restart, and after its send queue overflowed.

use super::*;
use crate::sync::queue::CAPACITY;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_gets_and_sends_a_new_table() {
    let (a, b) = pair(conns(0..3), conns(10..12)).await;
    until_synced(&a, &b).await;
    let b_addr = b.addr;
    drop(b);
    until("a has seen b go", || {
        let s = a.peer(b_addr);
        !s.send_connected && !s.receive_connected && !s.synced
    })
    .await;
    let b = Node::restart(b_addr, &[a.addr], conns(20..22)).await;
    until("both hold the other's table again", || {
        b.synced_from(a.addr) == 1 && a.synced_from(b_addr) == 2
    })
    .await;
    assert_eq!(
        a.bulks_wanted_by(b_addr),
        2,
        "a new bulk request for the new stream"
    );
    assert_eq!(b.records_from(a.addr), conns(0..3));
    assert_eq!(
        a.records_from(b_addr),
        [conns(10..12), conns(20..22)].concat()
    );
    let s = a.peer(b_addr);
    assert!(s.send_connected && s.receive_connected && s.synced, "{s:?}");
}

#[tokio::test]
async fn a_full_queue_drops_the_stream_counted_and_it_resyncs() {
    // Until the test answers A's bulk request, live records wait in the
    // queue.
    let (a, mut rx, b) = by_hand_and_node().await;
    let a_addr = a.shared.listen;
    let first = next_bulk_request(&mut rx).await;
    for i in 0..CAPACITY as u32 {
        a.publish(&[conn(i)]);
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let s = &a.status().peers[0];
    assert_eq!((s.queue_len, s.queue_full_drops), (CAPACITY, 0), "{s:?}");
    assert!(s.send_lag_ms >= 20, "the oldest record has waited: {s:?}");
    a.publish(&[conn(CAPACITY as u32)]);
    let s = &a.status().peers[0];
    assert_eq!((s.queue_len, s.queue_full_drops), (0, 1), "{s:?}");
    assert_eq!(s.send_lag_ms, 0, "nothing waits: {s:?}");
    // The answer to the dropped stream's request is not sent on the next.
    a.bulk(first, conns(0..1));
    let second = next_bulk_request(&mut rx).await;
    assert_ne!(first, second);
    a.bulk(second, conns(0..2));
    until("b has the table from the new stream", || {
        b.synced_from(a_addr) == 1
    })
    .await;
    assert_eq!(b.records_from(a_addr), conns(0..2));
}
