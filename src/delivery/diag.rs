//! The shipper's own diagnostics, on stderr and rate-limited.
//!
//! They never go through `tracing`: a shipper that logged its troubles through itself would
//! queue more events exactly when it cannot deliver them.

use std::io::Write;
use std::time::{Duration, Instant};

use super::stats::Stats;

/// Prints each kind of message at most once per interval, counting what it held back.
pub(crate) struct Diagnostics {
    interval: Duration,
    last_error: Option<(Instant, u64)>,
    last_drop_report: Instant,
    dropped_reported: u64,
    dropping: bool,
}

impl Diagnostics {
    pub fn new(interval: Duration) -> Self {
        Diagnostics {
            interval,
            last_error: None,
            last_drop_report: Instant::now(),
            dropped_reported: 0,
            dropping: false,
        }
    }

    /// A delivery problem (broker unreachable, connection lost…).
    pub fn error(&mut self, what: &str, error: &dyn std::fmt::Display) {
        let now = Instant::now();
        match &mut self.last_error {
            Some((at, held_back)) if now.duration_since(*at) < self.interval => *held_back += 1,
            slot => {
                let held_back = slot.map_or(0, |(_, n)| n);
                let more = if held_back > 0 {
                    format!(" ({held_back} similar messages suppressed)")
                } else {
                    String::new()
                };
                emit(&format!("{what}: {error}{more}"));
                *slot = Some((now, 0));
            }
        }
    }

    /// Called periodically: reports drops at most once per interval, and once when they stop.
    pub fn drops(&mut self, stats: &Stats) {
        let total = stats.dropped.total();
        let now = Instant::now();
        if now.duration_since(self.last_drop_report) < self.interval {
            return;
        }
        if total > self.dropped_reported {
            emit(&format!(
                "{} events dropped in the last {}s (total {}: queue_full={} oversize={} closed={} \
                 spool_full={}); queue depth {}",
                total - self.dropped_reported,
                now.duration_since(self.last_drop_report).as_secs(),
                total,
                stats.dropped.queue_full,
                stats.dropped.oversize,
                stats.dropped.closed,
                stats.dropped.spool_full,
                stats.queue_depth,
            ));
            self.dropping = true;
        } else if self.dropping {
            emit(&format!("drops stopped; {total} events dropped in total"));
            self.dropping = false;
        }
        self.dropped_reported = total;
        self.last_drop_report = now;
    }
}

pub(crate) fn emit(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "logcollect: {line}");
}
