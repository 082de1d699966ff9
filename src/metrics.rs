//! The shipper's counters in the application's own metrics (cargo feature `metrics`), through
//! the `metrics` facade: whichever recorder the application installs (Prometheus, StatsD,
//! OpenTelemetry) exports them. Names and labels: docs/metrics.md.
//!
//! One owner: the counters stay in [`Stats`](crate::Stats); a thread copies a snapshot into the
//! recorder every [`INTERVAL`] (absolute values, so a missed tick loses nothing), and once more
//! when the guard stops. Only the latency histogram is fed per event, as events are confirmed.
//! Labels have bounded values only: `transport` (`amqp`, `redis`, `mongodb`) and the drop
//! `reason`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

use metrics::{counter, gauge, histogram};

use crate::delivery::{Counters, Shared};

/// How often the snapshot is copied into the recorder.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// The transport label's value: the configured transport's name.
fn transport(counters: &Counters) -> &'static str {
    counters.transport.get().copied().unwrap_or("amqp")
}

/// The delivery latency histogram (seconds): logging call to broker confirm, one sample per
/// event. Looked up once per confirmed message, not per event.
pub(crate) fn latency_histogram(counters: &Counters) -> metrics::Histogram {
    histogram!("logcollect_delivery_latency_seconds", "transport" => transport(counters))
}

/// Copies the snapshot into the recorder every [`INTERVAL`] until the shipper is gone. A
/// thread that cannot be started only costs the metrics (the caller reports it), never logging.
pub(crate) fn spawn(shared: &Arc<Shared>) -> std::io::Result<()> {
    let weak: Weak<Shared> = Arc::downgrade(shared);
    std::thread::Builder::new()
        .name("logcollect-metrics".into())
        .spawn(move || {
            // Whatever the recorder logs is not shipped (no loop through the shipper).
            crate::own_threads::mark_current();
            while let Some(shared) = weak.upgrade() {
                publish(&shared);
                drop(shared);
                std::thread::sleep(INTERVAL);
            }
        })
        .map(drop)
}

/// Sets every counter and gauge from the shipper's counters now.
pub(crate) fn publish(shared: &Shared) {
    let s = shared.stats();
    let t = transport(&shared.counters);
    let counters = [
        ("logcollect_events_accepted_total", s.accepted),
        ("logcollect_events_published_total", s.published),
        ("logcollect_events_confirmed_total", s.confirmed),
        ("logcollect_events_returned_total", s.returned),
        ("logcollect_events_nacked_total", s.nacked),
        ("logcollect_events_retried_total", s.retried),
        ("logcollect_events_recovered_total", s.recovered),
        ("logcollect_events_spooled_total", s.spooled),
        ("logcollect_events_replayed_total", s.replayed),
        ("logcollect_spool_torn_records_total", s.spool_torn),
        ("logcollect_reconnects_total", s.reconnects),
        ("logcollect_messages_published_total", s.messages_published),
        ("logcollect_messages_confirmed_total", s.messages_confirmed),
        (
            "logcollect_blocked_milliseconds_total",
            u64::try_from(s.blocked_time.as_millis()).unwrap_or(u64::MAX),
        ),
    ];
    for (name, value) in counters {
        counter!(name, "transport" => t).absolute(value);
    }
    let dropped = [
        ("queue_full", s.dropped.queue_full),
        ("oversize", s.dropped.oversize),
        ("closed", s.dropped.closed),
        ("spool_full", s.dropped.spool_full),
        ("rate_limited", s.dropped.rate_limited),
        ("refused", s.dropped.refused),
    ];
    for (reason, value) in dropped {
        counter!("logcollect_events_dropped_total", "transport" => t, "reason" => reason)
            .absolute(value);
    }
    let blocked = shared.counters.blocked_since.load(Relaxed) > 0;
    gauge!("logcollect_queue_depth", "transport" => t).set(s.queue_depth as f64);
    gauge!("logcollect_spool_bytes", "transport" => t).set(s.spool_bytes as f64);
    gauge!("logcollect_blocked", "transport" => t).set(f64::from(u8::from(blocked)));
    gauge!("logcollect_connected", "transport" => t).set(f64::from(u8::from(s.node.is_some())));
    // The recent percentile as a gauge too: alerts on it need no bucket configuration in the
    // application's exporter (the histogram's rendering is the exporter's choice).
    gauge!("logcollect_delivery_latency_p99_seconds", "transport" => t)
        .set(s.latency.p99.as_secs_f64());
}
