//! Counters the application can read: what was accepted, delivered, dropped and why.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Live counters, shared by the layer (accepting) and the shipper (delivering).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub accepted: AtomicU64,
    pub published: AtomicU64,
    pub confirmed: AtomicU64,
    pub returned: AtomicU64,
    pub nacked: AtomicU64,
    pub retried: AtomicU64,
    pub reconnects: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_oversize: AtomicU64,
    pub dropped_closed: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn set_error(&self, error: impl fmt::Display) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error.to_string());
        }
    }

    /// Events that have left the shipper's custody for good: confirmed, or accepted and then
    /// dropped. Flush waits for this to reach the number accepted.
    pub fn settled(&self) -> u64 {
        self.confirmed.load(Relaxed) + self.dropped_oversize.load(Relaxed)
    }

    pub fn snapshot(&self, queue_depth: usize) -> Stats {
        Stats {
            accepted: self.accepted.load(Relaxed),
            published: self.published.load(Relaxed),
            confirmed: self.confirmed.load(Relaxed),
            returned: self.returned.load(Relaxed),
            nacked: self.nacked.load(Relaxed),
            retried: self.retried.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            dropped: Dropped {
                queue_full: self.dropped_queue_full.load(Relaxed),
                oversize: self.dropped_oversize.load(Relaxed),
                closed: self.dropped_closed.load(Relaxed),
            },
            queue_depth,
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }
}

/// A snapshot of the shipper's counters. Event counts, not message counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Events taken into the queue.
    pub accepted: u64,
    /// Events published to the broker (a republished event counts again).
    pub published: u64,
    /// Events the broker confirmed (acked and routed): these are delivered.
    pub confirmed: u64,
    /// Events returned by the broker as unroutable (no queue bound); they are republished.
    pub returned: u64,
    /// Events the broker nacked; they are republished.
    pub nacked: u64,
    /// Events published again after a return, a nack or a lost connection.
    pub retried: u64,
    /// Connections lost and re-established.
    pub reconnects: u64,
    /// Events dropped, by reason.
    pub dropped: Dropped,
    /// Events waiting in the in-memory queue.
    pub queue_depth: usize,
    /// The latest delivery error, if any.
    pub last_error: Option<String>,
}

/// Dropped events by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dropped {
    /// The queue was full when the event was logged (never accepted).
    pub queue_full: u64,
    /// The encoded event was larger than `max_message_bytes` (accepted, then dropped).
    pub oversize: u64,
    /// Logged after the shipper was shut down.
    pub closed: u64,
}

impl Dropped {
    pub fn total(&self) -> u64 {
        self.queue_full + self.oversize + self.closed
    }
}

impl fmt::Display for Stats {
    /// One line, `key=value` pairs, for logs and the load generator.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} published={} confirmed={} returned={} nacked={} retried={} reconnects={} \
             dropped={} dropped_queue_full={} dropped_oversize={} dropped_closed={} queue_depth={}",
            self.accepted,
            self.published,
            self.confirmed,
            self.returned,
            self.nacked,
            self.retried,
            self.reconnects,
            self.dropped.total(),
            self.dropped.queue_full,
            self.dropped.oversize,
            self.dropped.closed,
            self.queue_depth,
        )?;
        if let Some(error) = &self.last_error {
            write!(f, " last_error={error:?}")?;
        }
        Ok(())
    }
}
