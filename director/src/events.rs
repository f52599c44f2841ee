//! The datapath's sync events (`SYNC_EVENTS`), read as they come: the ring's
//! file descriptor is polled by tokio, and each wake-up drains every record.

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use director_common::abi::SyncEvent;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tracing::warn;

use crate::dataplane::Dataplane;

/// Starts reading `ring`; events arrive in batches, in the ring's order.
pub fn spawn(ring: RingBuf<MapData>) -> anyhow::Result<mpsc::UnboundedReceiver<Vec<SyncEvent>>> {
    // SAFETY: the ring owns its map's file descriptor, which stays open and
    // the same for the ring's whole life, and the AsyncFd owns the ring.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
        .context("polling the sync event ring")?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let mut guard = match fd.readable_mut().await {
                Ok(g) => g,
                Err(e) => {
                    warn!("sync event ring: {e}");
                    return;
                }
            };
            let ring = guard.get_inner_mut();
            let mut batch = Vec::new();
            while let Some(record) = ring.next() {
                match Dataplane::sync_event(&record) {
                    Some(e) => batch.push(e),
                    None => warn!(
                        bytes = record.len(),
                        "sync event ring: a record of the wrong size"
                    ),
                }
            }
            guard.clear_ready();
            if !batch.is_empty() && tx.send(batch).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
