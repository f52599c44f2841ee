//! The send queue on its own.

use super::*;
use crate::sync::queue::{BATCH, CAPACITY, Full, Next, Queue};

/// What the queue gives now, without waiting.
async fn now(q: &Queue) -> Option<Next> {
    tokio::time::timeout(Duration::from_millis(20), q.next())
        .await
        .ok()
}

#[tokio::test]
async fn the_first_bulk_goes_first_and_later_ones_in_order() {
    let q = Queue::default();
    assert_eq!(q.push(&[conn(0)]), Ok(()));
    assert_eq!(q.len(), 0, "no stream: nothing kept");
    let session = q.open();
    q.push(&[conn(1), conn(2)]).unwrap();
    assert_eq!(now(&q).await, None, "live records wait for the table");
    q.bulk(session + 1, conns(90..91));
    assert_eq!(now(&q).await, None, "a table for another stream is ignored");
    q.bulk(session, conns(10..12));
    q.push(&[conn(3)]).unwrap();
    q.bulk(session, conns(20..21));
    q.push(&[conn(4)]).unwrap();
    assert_eq!(q.len(), 4);
    assert_eq!(now(&q).await, Some(Next::Bulk(conns(10..12))));
    assert_eq!(now(&q).await, Some(Next::Records(conns(1..4))));
    assert_eq!(now(&q).await, Some(Next::Bulk(conns(20..21))));
    assert_eq!(now(&q).await, Some(Next::Records(conns(4..5))));
    assert_eq!(now(&q).await, None);
    assert_eq!(q.len(), 0);
    q.close();
    q.push(&[conn(5)]).unwrap();
    q.bulk(session, conns(0..1));
    assert_eq!(q.len(), 0, "a closed stream takes nothing");
    assert_ne!(q.open(), session, "each stream has its own number");
}

#[tokio::test]
async fn overflow_drops_what_waits_and_then_takes_nothing() {
    let q = Queue::default();
    let session = q.open();
    q.bulk(session, vec![]);
    assert_eq!(now(&q).await, Some(Next::Bulk(vec![])));
    q.push(&conns(0..CAPACITY as u32 - 1)).unwrap();
    q.push(&[conn(0)]).unwrap();
    assert_eq!(q.len(), CAPACITY);
    assert_eq!(q.push(&[conn(1)]), Err(Full));
    assert_eq!(q.len(), 0);
    assert_eq!(q.push(&[conn(2)]), Ok(()), "counted once");
    assert_eq!(now(&q).await, Some(Next::Overflow));
    // A batch larger than the queue overflows at once.
    q.open();
    assert_eq!(q.push(&conns(0..CAPACITY as u32 + 1)), Err(Full));
}

#[tokio::test]
async fn records_come_in_batches() {
    let q = Queue::default();
    let session = q.open();
    q.bulk(session, vec![]);
    now(&q).await;
    q.push(&conns(0..5000)).unwrap();
    let Some(Next::Records(first)) = now(&q).await else {
        panic!("expected records");
    };
    let Some(Next::Records(second)) = now(&q).await else {
        panic!("expected records");
    };
    assert_eq!(first.len(), BATCH);
    assert_eq!([first, second].concat(), conns(0..5000));
    assert_eq!(now(&q).await, None);
}
