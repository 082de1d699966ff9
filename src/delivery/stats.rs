//! Counters the application can read: what was accepted, delivered, dropped and why.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Live counters, shared by the layer (accepting) and the shipper (delivering).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// The transport's name (`transport`), for the metrics' label; set once at start.
    pub transport: std::sync::OnceLock<&'static str>,
    pub accepted: AtomicU64,
    pub published: AtomicU64,
    pub confirmed: AtomicU64,
    pub returned: AtomicU64,
    pub nacked: AtomicU64,
    pub retried: AtomicU64,
    pub reconnects: AtomicU64,
    pub sessions_replaced: AtomicU64,
    /// Events from an earlier run's spool, confirmed by this run.
    pub recovered: AtomicU64,
    pub spooled: AtomicU64,
    pub replayed: AtomicU64,
    pub spool_bytes: AtomicU64,
    /// Completed blocks, in milliseconds.
    pub blocked_ms: AtomicU64,
    /// When the current block began (ms since the Unix epoch), 0 when not blocked.
    pub blocked_since: AtomicU64,
    /// New events refused because the queue was full (never accepted).
    pub dropped_queue_full: AtomicU64,
    /// Accepted events pushed out of a full queue by newer ones (`drop_oldest`).
    pub evicted: AtomicU64,
    pub dropped_oversize: AtomicU64,
    pub dropped_closed: AtomicU64,
    /// Events of this run dropped because the spool was full.
    pub dropped_spool_full: AtomicU64,
    /// Events of an earlier run dropped because the spool was full (not part of `accepted`).
    pub dropped_spool_full_recovered: AtomicU64,
    /// Events the per-callsite rate limit suppressed (never accepted).
    pub dropped_rate_limited: AtomicU64,
    /// Events the destination refused for good (MongoDB: too large, failing validation).
    pub dropped_refused: AtomicU64,
    pub spool_torn: AtomicU64,
    /// AMQP messages published (each holds one or more events; a republish counts again).
    pub messages_published: AtomicU64,
    /// AMQP messages the broker confirmed.
    pub messages_confirmed: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// Logging call to broker confirm, for the most recent events.
    latency: Mutex<Latencies>,
    /// The broker node of the current session (credentials masked), `None` while disconnected.
    pub node: Mutex<Option<String>>,
}

/// How many recent events the latency percentiles cover.
pub(crate) const LATENCY_WINDOW: usize = 4096;

/// A ring of the latest delivery latencies, in microseconds.
#[derive(Debug, Default)]
struct Latencies {
    samples: Vec<u64>,
    next: usize,
}

impl Latencies {
    fn push(&mut self, micros: u64) {
        if self.samples.len() < LATENCY_WINDOW {
            self.samples.push(micros);
        } else {
            self.samples[self.next] = micros;
        }
        self.next = (self.next + 1) % LATENCY_WINDOW;
    }

    fn summary(&self) -> Latency {
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        let at = |q: f64| {
            let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
            Duration::from_micros(sorted.get(i).copied().unwrap_or(0))
        };
        Latency {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
            samples: sorted.len(),
        }
    }
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn store(counter: &AtomicU64, n: u64) {
        counter.store(n, Relaxed);
    }

    /// The broker blocked publishing (a resource alarm).
    pub fn block_started(&self) {
        self.blocked_since.store(now_ms().max(1), Relaxed);
    }

    /// The block ended: its duration joins the total.
    pub fn block_ended(&self) {
        let since = self.blocked_since.swap(0, Relaxed);
        if since > 0 {
            self.blocked_ms
                .fetch_add(now_ms().saturating_sub(since), Relaxed);
        }
    }

    /// Total blocked time, the current block included.
    fn blocked_time(&self) -> Duration {
        let since = self.blocked_since.load(Relaxed);
        let current = if since > 0 {
            now_ms().saturating_sub(since)
        } else {
            0
        };
        Duration::from_millis(self.blocked_ms.load(Relaxed) + current)
    }

    /// Events logged at `born` were confirmed at `now`.
    pub fn record_latency(&self, born: &[std::time::SystemTime], now: SystemTime) {
        if born.is_empty() {
            return;
        }
        #[cfg(feature = "metrics")]
        let histogram = crate::metrics::latency_histogram(self);
        if let Ok(mut latency) = self.latency.lock() {
            for t in born {
                let elapsed = now.duration_since(*t).unwrap_or_default();
                #[cfg(feature = "metrics")]
                histogram.record(elapsed.as_secs_f64());
                let micros = elapsed.as_micros();
                latency.push(u64::try_from(micros).unwrap_or(u64::MAX));
            }
        }
    }

    pub fn set_error(&self, error: impl fmt::Display) {
        if let Ok(mut last) = self.last_error.lock() {
            // A broker's words could quote a URI: never a password in the stats.
            *last =
                Some(crate::encoding::redact::mask_uri_passwords(&error.to_string()).into_owned());
        }
    }

    /// The node in use, or `None` while disconnected.
    pub fn set_node(&self, node: Option<&str>) {
        if let Ok(mut current) = self.node.lock() {
            *current = node.map(str::to_string);
        }
    }

    /// Events of this run that have left the shipper's custody for good: confirmed, or accepted
    /// and then dropped. Flush waits for this to reach the number accepted.
    pub fn settled(&self) -> u64 {
        self.confirmed.load(Relaxed)
            + self.dropped_oversize.load(Relaxed)
            + self.evicted.load(Relaxed)
            + self.dropped_spool_full.load(Relaxed)
            + self.dropped_refused.load(Relaxed)
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
            sessions_replaced: self.sessions_replaced.load(Relaxed),
            recovered: self.recovered.load(Relaxed),
            spooled: self.spooled.load(Relaxed),
            replayed: self.replayed.load(Relaxed),
            spool_bytes: self.spool_bytes.load(Relaxed),
            blocked_time: self.blocked_time(),
            dropped: Dropped {
                queue_full: self.dropped_queue_full.load(Relaxed) + self.evicted.load(Relaxed),
                oversize: self.dropped_oversize.load(Relaxed),
                closed: self.dropped_closed.load(Relaxed),
                spool_full: self.dropped_spool_full.load(Relaxed)
                    + self.dropped_spool_full_recovered.load(Relaxed),
                rate_limited: self.dropped_rate_limited.load(Relaxed),
                refused: self.dropped_refused.load(Relaxed),
            },
            spool_torn: self.spool_torn.load(Relaxed),
            messages_published: self.messages_published.load(Relaxed),
            messages_confirmed: self.messages_confirmed.load(Relaxed),
            latency: self.latency.lock().map(|l| l.summary()).unwrap_or_default(),
            queue_depth,
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
            node: self.node.lock().ok().and_then(|n| n.clone()),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A snapshot of the shipper's counters. Event counts, except the two `messages_*` ones.
///
/// Events of this run are `accepted`, then either `confirmed` or dropped; events found in the
/// spool from an earlier run are not `accepted` again: once delivered they count as `recovered`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Events taken into the queue.
    pub accepted: u64,
    /// Events published to the broker (a republished event counts again).
    pub published: u64,
    /// Events of this run the broker confirmed (acked and routed): these are delivered.
    pub confirmed: u64,
    /// Events returned by the broker as unroutable (no queue bound); they are republished.
    pub returned: u64,
    /// Events the broker nacked; they are republished.
    pub nacked: u64,
    /// Events published again after a return, a nack or a lost connection.
    pub retried: u64,
    /// Connections lost and re-established.
    pub reconnects: u64,
    /// Sessions the shipper gave up because the broker nacked and acked nothing for a while
    /// (twice `retry_delay_ms`, at least 1 s): each is replaced by a new connection and channel,
    /// on the next node of `broker_uri` if there is one (a reconnect too). A channel can stay
    /// that way after a cluster node that held a quorum queue's leader died.
    pub sessions_replaced: u64,
    /// Events an earlier run left in the spool, delivered (confirmed) by this one.
    pub recovered: u64,
    /// Events written to the disk spool (a spilled event counts once).
    pub spooled: u64,
    /// Events read back from the spool to be published (this run's and earlier runs').
    pub replayed: u64,
    /// Bytes the spool's segment files hold now.
    pub spool_bytes: u64,
    /// Time the broker kept publishing blocked (`connection.blocked`: a resource alarm), the
    /// current block included.
    pub blocked_time: Duration,
    /// Events dropped, by reason.
    pub dropped: Dropped,
    /// Torn or corrupt spool records skipped on replay (a write cut short by a crash): never
    /// published.
    pub spool_torn: u64,
    /// AMQP messages published; each holds one event or a batch of them (a republished
    /// message counts again).
    pub messages_published: u64,
    /// AMQP messages the broker confirmed (acked and routed).
    pub messages_confirmed: u64,
    /// From the logging call (the event's timestamp) to the broker's confirm, over the most
    /// recent events (4096) confirmed by this run.
    pub latency: Latency,
    /// Events waiting in the in-memory queue.
    pub queue_depth: usize,
    /// The latest delivery error, if any (broker URIs in it have their password masked).
    pub last_error: Option<String>,
    /// The broker node in use (`amqps://host:port/vhost`, no credentials); `None` while
    /// disconnected. With several `broker_uri` nodes, the one failover chose.
    pub node: Option<String>,
}

/// Delivery latency percentiles: event timestamp to broker confirm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Latency {
    /// The median.
    pub p50: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The longest.
    pub max: Duration,
    /// How many events these cover (0: none confirmed yet).
    pub samples: usize,
}

/// Dropped events by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dropped {
    /// The in-memory queue was full: the new event was refused (`drop_newest`, or `block` after
    /// its timeout), or an older queued one was pushed out (`drop_oldest`).
    pub queue_full: u64,
    /// The encoded event was larger than `max_message_bytes` (accepted, then dropped).
    pub oversize: u64,
    /// Logged after the shipper was shut down.
    pub closed: u64,
    /// The spool was full, by its `when_full` policy (the new event, or the oldest segment's).
    pub spool_full: u64,
    /// Suppressed by the per-callsite rate limit (`rate_limit.*`; never accepted). Each
    /// callsite's suppressed events are also summarised in one WARN event per window.
    pub rate_limited: u64,
    /// Refused for good by the destination, each reported (MongoDB: a document too large or
    /// failing the collection's validation); the other events of its message were delivered.
    pub refused: u64,
}

impl Dropped {
    /// Every dropped event, whatever the reason.
    pub fn total(&self) -> u64 {
        self.queue_full
            + self.oversize
            + self.closed
            + self.spool_full
            + self.rate_limited
            + self.refused
    }
}

impl fmt::Display for Stats {
    /// One line, `key=value` pairs, for logs and the load generator.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} published={} confirmed={} returned={} nacked={} retried={} reconnects={} \
             sessions_replaced={} recovered={} spooled={} replayed={} spool_bytes={} blocked_ms={} \
             dropped={} dropped_queue_full={} dropped_oversize={} dropped_closed={} \
             dropped_spool_full={} dropped_rate_limited={} dropped_refused={} spool_torn={} messages_published={} messages_confirmed={} \
             latency_p50_ms={:.3} latency_p99_ms={:.3} latency_max_ms={:.3} queue_depth={}",
            self.accepted,
            self.published,
            self.confirmed,
            self.returned,
            self.nacked,
            self.retried,
            self.reconnects,
            self.sessions_replaced,
            self.recovered,
            self.spooled,
            self.replayed,
            self.spool_bytes,
            self.blocked_time.as_millis(),
            self.dropped.total(),
            self.dropped.queue_full,
            self.dropped.oversize,
            self.dropped.closed,
            self.dropped.spool_full,
            self.dropped.rate_limited,
            self.dropped.refused,
            self.spool_torn,
            self.messages_published,
            self.messages_confirmed,
            ms(self.latency.p50),
            ms(self.latency.p99),
            ms(self.latency.max),
            self.queue_depth,
        )?;
        if let Some(node) = &self.node {
            write!(f, " node={node}")?;
        }
        if let Some(error) = &self.last_error {
            write!(f, " last_error={error:?}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_cover_the_most_recent_events() {
        let counters = Counters::default();
        assert_eq!(counters.snapshot(0).latency, Latency::default());
        let now = SystemTime::now();
        let born: Vec<SystemTime> = (1..=100)
            .map(|ms| now - Duration::from_millis(ms))
            .collect();
        counters.record_latency(&born, now);
        let l = counters.snapshot(0).latency;
        assert_eq!(l.samples, 100);
        assert_eq!(l.max, Duration::from_millis(100));
        assert!(l.p50 >= Duration::from_millis(50) && l.p50 <= Duration::from_millis(51));
        assert_eq!(l.p99, Duration::from_millis(99));
        // Newer events push the oldest out; a clock that went back counts as 0.
        counters.record_latency(&vec![now; LATENCY_WINDOW], now);
        counters.record_latency(&[now + Duration::from_secs(1)], now);
        let l = counters.snapshot(0).latency;
        assert_eq!((l.samples, l.max), (LATENCY_WINDOW, Duration::ZERO));
        let line = counters.snapshot(0).to_string();
        assert!(
            line.contains(" latency_p50_ms=0.000 latency_p99_ms=0.000 "),
            "{line}"
        );
    }
}
