//! The send queue of one peer: what the daemon handed over for the open
//! stream, in order, bounded.
//!
//! A stream's first bulk transfer goes out before anything else; live
//! records published before it follow it (they are older than the table it
//! carries, or as old, and every later change follows them). When the
//! records waiting reach [`CAPACITY`], the stream is dropped rather than a
//! record: its reconnect's bulk transfer resyncs the peer.

use std::{
    collections::VecDeque,
    sync::Mutex,
    time::{Duration, Instant},
};

use tokio::sync::Notify;

use super::wire::Record;

/// Most live records waiting for one peer.
pub(super) const CAPACITY: usize = 1 << 16;
/// Most records handed to the writer at once.
pub(super) const BATCH: usize = 4096;

/// What the writer sends next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// A bulk transfer of the whole table.
    Bulk(Vec<Record>),
    /// Live records, in order.
    Records(Vec<Record>),
    /// The queue overflowed: drop the stream.
    Overflow,
}

/// The queue was full: the stream is being dropped.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Full;

enum Entry {
    /// A live record, and when it was published.
    Record(Instant, Record),
    Bulk(Vec<Record>),
}

#[derive(Default)]
struct State {
    /// The open stream, if any: a number that changes with each stream, so
    /// that a bulk transfer meant for an earlier one is not sent on it.
    session: Option<u64>,
    last_session: u64,
    /// The stream's first bulk transfer, until sent; None before the
    /// daemon answers.
    first_bulk: Option<Vec<Record>>,
    first_bulk_sent: bool,
    entries: VecDeque<Entry>,
    /// Records in `entries`.
    records: usize,
    overflowed: bool,
}

#[derive(Default)]
pub(super) struct Queue {
    state: Mutex<State>,
    /// One consumer (the peer's writer): a stored permit never loses a
    /// wakeup.
    ready: Notify,
}

impl Queue {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A stream opened: starts empty, waiting for its bulk transfer.
    /// Returns the session number a bulk transfer for it must carry.
    pub(super) fn open(&self) -> u64 {
        let mut s = self.state();
        let session = s.last_session + 1;
        *s = State {
            session: Some(session),
            last_session: session,
            ..State::default()
        };
        session
    }

    /// The stream closed: what waits for it is dropped with it.
    pub(super) fn close(&self) {
        let mut s = self.state();
        let last_session = s.last_session;
        *s = State {
            last_session,
            ..State::default()
        };
    }

    /// Live records for the open stream; nothing without one (the next
    /// stream starts with a bulk transfer).
    pub(super) fn push(&self, records: &[Record]) -> Result<(), Full> {
        let mut s = self.state();
        if s.session.is_none() || s.overflowed || records.is_empty() {
            return Ok(());
        }
        if s.records + records.len() > CAPACITY {
            s.overflowed = true;
            s.entries.clear();
            s.records = 0;
            drop(s);
            self.ready.notify_one();
            return Err(Full);
        }
        let now = Instant::now();
        s.entries
            .extend(records.iter().map(|&r| Entry::Record(now, r)));
        s.records += records.len();
        drop(s);
        self.ready.notify_one();
        Ok(())
    }

    /// A bulk transfer for stream `session`; ignored if that stream is gone.
    pub(super) fn bulk(&self, session: u64, records: Vec<Record>) {
        let mut s = self.state();
        if s.session != Some(session) || s.overflowed {
            return;
        }
        if s.first_bulk.is_none() && !s.first_bulk_sent {
            s.first_bulk = Some(records);
        } else {
            s.entries.push_back(Entry::Bulk(records));
        }
        drop(s);
        self.ready.notify_one();
    }

    /// Live records waiting.
    pub(super) fn len(&self) -> usize {
        self.state().records
    }

    /// How long the oldest live record waiting has waited: the sync lag on
    /// our side of the stream.
    pub(super) fn lag(&self) -> Duration {
        self.state()
            .entries
            .iter()
            .find_map(|e| match e {
                Entry::Record(at, _) => Some(at.elapsed()),
                Entry::Bulk(_) => None,
            })
            .unwrap_or_default()
    }

    /// Waits for what to send next on the open stream.
    pub(super) async fn next(&self) -> Next {
        loop {
            if let Some(next) = self.take() {
                return next;
            }
            self.ready.notified().await;
        }
    }

    fn take(&self) -> Option<Next> {
        let mut s = self.state();
        if s.overflowed {
            return Some(Next::Overflow);
        }
        if !s.first_bulk_sent {
            let bulk = s.first_bulk.take()?;
            s.first_bulk_sent = true;
            return Some(Next::Bulk(bulk));
        }
        match s.entries.pop_front()? {
            Entry::Bulk(bulk) => Some(Next::Bulk(bulk)),
            Entry::Record(_, first) => {
                let mut records = vec![first];
                while records.len() < BATCH
                    && let Some(Entry::Record(_, r)) = s.entries.front()
                {
                    records.push(*r);
                    s.entries.pop_front();
                }
                s.records -= records.len();
                Some(Next::Records(records))
            }
        }
    }
}
