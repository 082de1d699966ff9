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
    /// The last error printed: its headline, when, and how many like it were held back since.
    last_error: Option<(&'static str, Instant, u64)>,
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

    /// A delivery problem (broker unreachable, login refused, connection lost…). The same
    /// headline is printed at most once per interval; a different one (the cause changed) at
    /// once.
    pub fn error(&mut self, what: &'static str, error: &dyn std::fmt::Display) {
        let now = Instant::now();
        match &mut self.last_error {
            Some((last, at, held_back))
                if *last == what && now.duration_since(*at) < self.interval =>
            {
                *held_back += 1
            }
            slot => {
                let held_back = slot.map_or(0, |(_, _, n)| n);
                let more = if held_back > 0 {
                    format!(" ({held_back} similar messages suppressed)")
                } else {
                    String::new()
                };
                emit(&format!("{what}: {error}{more}"));
                *slot = Some((what, now, 0));
            }
        }
    }

    /// Called periodically: reports drops at most once per interval, and once when they stop.
    /// `stats` is taken only when a report may be due: the shipper asks at every tick, and a
    /// snapshot sorts the latency window.
    pub fn drops(&mut self, stats: impl FnOnce() -> Stats) {
        let now = Instant::now();
        if now.duration_since(self.last_drop_report) < self.interval {
            return;
        }
        if let Some(report) = self.drop_report(&stats(), now) {
            emit(&report);
        }
    }

    fn drop_report(&mut self, stats: &Stats, now: Instant) -> Option<String> {
        // Events the rate limit suppressed are the policy the user set, summarised in events of
        // their own: not losses to warn about.
        let total = stats.dropped.total() - stats.dropped.rate_limited;
        if now.duration_since(self.last_drop_report) < self.interval {
            return None;
        }
        let report = if total > self.dropped_reported {
            self.dropping = true;
            Some(format!(
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
            ))
        } else if self.dropping {
            self.dropping = false;
            Some(format!("drops stopped; {total} events dropped in total"))
        } else {
            None
        };
        self.dropped_reported = total;
        self.last_drop_report = now;
        report
    }
}

pub(crate) fn emit(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "logcollect: {line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dropped(queue_full: u64) -> Stats {
        let mut stats = Stats::default();
        stats.dropped.queue_full = queue_full;
        stats
    }

    #[test]
    fn drops_are_reported_once_per_interval_then_summarised_when_they_stop() {
        let start = Instant::now();
        let mut diag = Diagnostics::new(Duration::from_secs(10));
        diag.last_drop_report = start;
        let at = |s| start + Duration::from_secs(s);
        // Within the interval: held back.
        assert_eq!(diag.drop_report(&dropped(5), at(3)), None);
        let report = diag.drop_report(&dropped(7), at(10)).expect("a report");
        assert!(
            report.starts_with("7 events dropped in the last 10s (total 7: queue_full=7"),
            "{report}"
        );
        assert_eq!(diag.drop_report(&dropped(9), at(15)), None);
        let report = diag.drop_report(&dropped(9), at(20)).expect("a report");
        assert!(report.starts_with("2 events dropped"), "{report}");
        assert_eq!(
            diag.drop_report(&dropped(9), at(30)).as_deref(),
            Some("drops stopped; 9 events dropped in total")
        );
        assert_eq!(diag.drop_report(&dropped(9), at(40)), None);
    }

    #[test]
    fn events_the_rate_limit_suppressed_are_not_reported_as_drops() {
        let start = Instant::now();
        let mut diag = Diagnostics::new(Duration::from_secs(10));
        diag.last_drop_report = start;
        let mut stats = dropped(0);
        stats.dropped.rate_limited = 1_000;
        assert_eq!(
            diag.drop_report(&stats, start + Duration::from_secs(10)),
            None
        );
        stats.dropped.queue_full = 3;
        let report = diag
            .drop_report(&stats, start + Duration::from_secs(20))
            .expect("a report");
        assert!(report.starts_with("3 events dropped"), "{report}");
    }
}
