//! One-way latency of a live record between two transports on loopback.

use super::*;

const RATE: u32 = 2_000;
const SECONDS: u32 = 5;

/// At 2 000 records/s for 5 s, from `publish` on one side to the record
/// reaching the daemon on the other. The bound is loose for a shared
/// machine; the figures are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_record_latency_at_2000_per_second() {
    let (a, b) = pair(vec![], vec![]).await;
    until_synced(&a, &b).await;
    let total = RATE * SECONDS;
    let mut sent = Vec::with_capacity(total as usize);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
    for i in 0..total {
        tick.tick().await;
        sent.push(Instant::now());
        a.transport.publish(&[conn(i)]);
    }
    until("every record arrived", || {
        b.records_from(a.addr).len() == total as usize
    })
    .await;
    let sent = &sent;
    let mut latencies: Vec<Duration> = b
        .log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(at, e)| match e {
            Inbound::Records { records, .. } => Some((*at, records.clone())),
            _ => None,
        })
        .flat_map(|(at, records)| {
            records.into_iter().map(move |r| match r {
                Record::Conn(c) => at - sent[c.idle_ms as usize],
                other => panic!("unexpected {other:?}"),
            })
        })
        .collect();
    assert_eq!(latencies.len(), total as usize);
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let (p50, p99, max) = (p(0.50), p(0.99), latencies[latencies.len() - 1]);
    println!(
        "sync live record latency over loopback, {total} records at {RATE}/s: p50 {p50:?}, p99 {p99:?}, max {max:?}"
    );
    assert!(p99 < Duration::from_millis(200), "p99 {p99:?}");
}
