//! Rate limiting per callsite, through the real layer and the real broker: exact counts of what
//! ships and what is suppressed (`dropped.rate_limited`), one summary per callsite and window,
//! exempt levels, per-target overrides, the burst allowance, `log` records, and a flood of
//! 1,000,000 events from one callsite while every other callsite's events arrive.
//!
//! The limiter's clock is moved by hand (`with_manual_rate_limit_clock`): a window rolls over
//! only when a test says so, so no count depends on how fast the machine runs.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{documents, Capture};
use logcollect::capture::{ExemptLevel, ManualClock, TargetLimit, SUMMARY_TARGET};
use logcollect::{Config, Guard, Stats};
use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt;

const WINDOW: Duration = Duration::from_secs(1);

/// A shipper to `capture`'s exchange with these rate-limit settings, its layer installed for
/// the duration of `log`, which gets the limiter's clock. Returns the guard, flushed.
fn run(
    capture: &Capture,
    configure: impl FnOnce(&mut Config),
    log: impl FnOnce(&ManualClock),
) -> Guard {
    let (layer, guard) = logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(&capture.exchange)
        .configure(|c| {
            c.retry_delay = Duration::from_millis(100);
            c.backoff_max = Duration::from_millis(500);
            c.rate_limit.window = WINDOW;
            configure(c)
        })
        .build()
        .expect("build");
    let (layer, clock) = layer.with_manual_rate_limit_clock();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || log(&clock));
    assert!(
        guard.flush(Duration::from_secs(60)).is_complete(),
        "{}",
        guard.stats()
    );
    guard
}

/// Every document the broker holds for the test: `expected` of them, and nothing more.
fn receive(capture: &mut Capture, expected: usize) -> Vec<Value> {
    let mut docs = documents(&capture.receive(expected, Duration::from_secs(60)));
    docs.extend(documents(
        &capture.receive_until_quiet(Duration::from_millis(500)),
    ));
    docs
}

fn str_at<'a>(doc: &'a Value, pointer: &str) -> &'a str {
    doc.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} missing in {doc}"))
}

fn u64_at(doc: &Value, pointer: &str) -> u64 {
    doc.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} missing in {doc}"))
}

/// Documents per logger (target), summaries apart.
fn by_logger(docs: &[Value]) -> (BTreeMap<String, usize>, Vec<&Value>) {
    let mut counts = BTreeMap::new();
    let mut summaries = Vec::new();
    for doc in docs {
        let logger = str_at(doc, "/log/logger");
        if logger == SUMMARY_TARGET {
            summaries.push(doc);
        } else {
            *counts.entry(logger.to_string()).or_insert(0) += 1;
        }
    }
    (counts, summaries)
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn assert_counts(stats: &Stats, shipped: u64, suppressed: u64) {
    assert_eq!(
        (stats.accepted, stats.confirmed, stats.dropped.rate_limited),
        (shipped, shipped, suppressed),
        "{stats}"
    );
    assert_eq!(stats.dropped.total(), suppressed, "{stats}");
}

/// The flood: 1,000,000 events from one callsite limited to 100 per window, over two
/// windows, among three other callsites (one of them ERROR, exempt) logging all along.
#[test]
fn a_flood_from_one_callsite_ships_its_limit_and_one_summary_per_window_and_all_else_arrives() {
    const FLOOD: u64 = 500_000; // per window
    let mut capture = Capture::fresh();
    let mut flood_line = 0;
    let flood_window = |first: u64, flood_line: &mut u32| {
        for i in first..first + FLOOD {
            *flood_line = line!() + 1;
            tracing::info!(target: "rl_flood", seq_no = i, "hot loop");
            if i % 5_000 == 0 {
                tracing::info!(target: "rl_other_a", seq_no = i, "other");
                tracing::warn!(target: "rl_other_b", seq_no = i, "other");
                tracing::error!(target: "rl_errors", seq_no = i, "exempt");
            }
        }
    };
    let guard = run(
        &capture,
        |c| c.rate_limit.events = 100,
        |clock| {
            flood_window(0, &mut flood_line);
            clock.advance(WINDOW);
            flood_window(FLOOD, &mut flood_line);
            clock.advance(WINDOW);
            // The first event of a later window sends the summaries of the one before.
            tracing::info!(target: "rl_other_a", seq_no = 2 * FLOOD, "last");
        },
    );
    // Per window: 100 of the flood, 100 from each other callsite (100 calls each).
    let shipped = 2 * (100 + 3 * 100) + 1 + 2;
    let suppressed = 2 * (FLOOD - 100);
    assert_counts(&guard.stats(), shipped, suppressed);

    let docs = receive(&mut capture, shipped as usize);
    let (loggers, summaries) = by_logger(&docs);
    assert_eq!(
        loggers,
        counts(&[
            ("rl_flood", 200),
            ("rl_other_a", 201),
            ("rl_other_b", 200),
            ("rl_errors", 200)
        ])
    );
    // The flood's first 100 of each window pass, the rest of the window is suppressed.
    let mut flood_seqs: Vec<u64> = docs
        .iter()
        .filter(|d| d["log"]["logger"] == "rl_flood")
        .map(|d| u64_at(d, "/fields/seq_no"))
        .collect();
    flood_seqs.sort_unstable();
    let expected: Vec<u64> = (0..100).chain(FLOOD..FLOOD + 100).collect();
    assert_eq!(flood_seqs, expected);

    assert_eq!(summaries.len(), 2, "one summary per window: {summaries:?}");
    for summary in summaries {
        assert_eq!(summary["log"]["level"], "WARN");
        assert_eq!(u64_at(summary, "/fields/suppressed"), FLOOD - 100);
        assert_eq!(u64_at(summary, "/fields/limit"), 100);
        assert_eq!(u64_at(summary, "/fields/window_ms"), 1000);
        assert_eq!(str_at(summary, "/fields/callsite_target"), "rl_flood");
        assert_eq!(
            str_at(summary, "/fields/callsite_file"),
            "tests/rate_limit.rs"
        );
        assert_eq!(
            u64_at(summary, "/fields/callsite_line"),
            u64::from(flood_line)
        );
        let message = str_at(summary, "/message");
        assert!(
            message.contains("499900 events suppressed from rl_flood at tests/rate_limit.rs:"),
            "{message}"
        );
    }
}

/// The last window's summary is not lost when nothing is logged after it: shutting down
/// sends it, before the queue stops accepting events.
#[test]
fn shutting_down_sends_the_summary_of_the_window_then_running() {
    let mut capture = Capture::fresh();
    let guard = run(
        &capture,
        |c| c.rate_limit.events = 10,
        |_| {
            for i in 0..1_000 {
                tracing::info!(target: "rl_last", seq_no = i, "hot");
            }
        },
    );
    assert_counts(&guard.stats(), 10, 990);
    let shipper = guard.shipper();
    assert!(guard.shutdown(Duration::from_secs(60)).is_complete());
    assert_counts(&shipper.stats(), 11, 990);

    let docs = receive(&mut capture, 11);
    let (loggers, summaries) = by_logger(&docs);
    assert_eq!(loggers, counts(&[("rl_last", 10)]));
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    assert_eq!(u64_at(summaries[0], "/fields/suppressed"), 990);
    assert_eq!(str_at(summaries[0], "/fields/callsite_target"), "rl_last");
}

/// The same flood from four threads at once on one callsite: the limit holds exactly (each
/// event takes its place with a compare-and-swap), and the threads' other events all arrive.
#[test]
fn a_flood_from_four_threads_on_one_callsite_is_limited_exactly() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 250_000;
    let mut capture = Capture::fresh();
    let guard = run(
        &capture,
        |c| c.rate_limit.events = 100,
        |clock| {
            let dispatch = tracing::dispatcher::get_default(|d| d.clone());
            std::thread::scope(|scope| {
                for thread in 0..THREADS {
                    let dispatch = dispatch.clone();
                    scope.spawn(move || {
                        tracing::dispatcher::with_default(&dispatch, || {
                            for i in 0..PER_THREAD {
                                tracing::info!(target: "rl_flood", thread, seq_no = i, "hot");
                                if i % 10_000 == 0 {
                                    // 25 per thread: the 100 the limit allows.
                                    tracing::info!(target: "rl_shared", thread, "shared");
                                    tracing::error!(target: "rl_errors", thread, "exempt");
                                }
                            }
                        });
                    });
                }
            });
            clock.advance(WINDOW);
            tracing::info!(target: "rl_closing", "sends the summary");
        },
    );
    let flood = THREADS * PER_THREAD;
    assert_counts(&guard.stats(), 100 + 100 + 100 + 1 + 1, flood - 100);
    let docs = receive(&mut capture, 302);
    let (loggers, summaries) = by_logger(&docs);
    assert_eq!(
        loggers,
        counts(&[
            ("rl_flood", 100),
            ("rl_shared", 100),
            ("rl_errors", 100),
            ("rl_closing", 1)
        ])
    );
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    assert_eq!(u64_at(summaries[0], "/fields/suppressed"), flood - 100);
}

#[test]
fn errors_are_exempt_and_target_overrides_win_by_longest_prefix() {
    let mut capture = Capture::fresh();
    let guard = run(
        &capture,
        |c| {
            c.rate_limit.events = 5;
            c.rate_limit.targets = vec![
                TargetLimit {
                    target: "rl_app".into(),
                    events: 2,
                },
                TargetLimit {
                    target: "rl_app::db".into(),
                    events: 0,
                },
            ];
        },
        |clock| {
            for i in 0..20 {
                tracing::info!(target: "rl_default", seq_no = i, "default limit");
                tracing::warn!(target: "rl_default", seq_no = i, "its own callsite");
                tracing::info!(target: "rl_app::web", seq_no = i, "override 2");
                tracing::info!(target: "rl_app::db::pool", seq_no = i, "override 0: no limit");
                tracing::error!(target: "rl_app::web", seq_no = i, "exempt");
            }
            clock.advance(WINDOW);
            tracing::error!(target: "rl_closing", "sends the summaries");
        },
    );
    // 5 + 5 + 2 + 20 + 20 + the closing event + 3 summaries (the callsites that suppressed).
    assert_counts(&guard.stats(), 56, 15 + 15 + 18);
    let docs = receive(&mut capture, 56);
    let (loggers, summaries) = by_logger(&docs);
    assert_eq!(
        loggers,
        counts(&[
            ("rl_default", 10),
            ("rl_app::web", 22),
            ("rl_app::db::pool", 20),
            ("rl_closing", 1)
        ])
    );
    let mut suppressed: Vec<(String, u64, u64)> = summaries
        .iter()
        .map(|s| {
            (
                str_at(s, "/fields/callsite_target").to_string(),
                u64_at(s, "/fields/suppressed"),
                u64_at(s, "/fields/limit"),
            )
        })
        .collect();
    suppressed.sort();
    assert_eq!(
        suppressed,
        [
            ("rl_app::web".to_string(), 18, 2),
            ("rl_default".to_string(), 15, 5),
            ("rl_default".to_string(), 15, 5)
        ]
    );
}

#[test]
fn target_limits_alone_turn_rate_limiting_on_for_their_targets_only() {
    let mut capture = Capture::fresh();
    let guard = run(
        &capture,
        |c| {
            c.rate_limit.targets = vec![TargetLimit {
                target: "rl_noisy".into(),
                events: 2,
            }];
        },
        |_| {
            for i in 0..10 {
                tracing::info!(target: "rl_noisy::dependency", seq_no = i, "limited");
                tracing::info!(target: "rl_quiet", seq_no = i, "not limited");
            }
        },
    );
    assert_counts(&guard.stats(), 12, 8);
    let docs = receive(&mut capture, 12);
    assert_eq!(
        by_logger(&docs).0,
        counts(&[("rl_noisy::dependency", 2), ("rl_quiet", 10)])
    );
}

#[test]
fn with_no_exempt_level_errors_are_limited_too() {
    let mut capture = Capture::fresh();
    let guard = run(
        &capture,
        |c| {
            c.rate_limit.events = 3;
            c.rate_limit.exempt_level = ExemptLevel::None;
        },
        |_| {
            for i in 0..10 {
                tracing::error!(target: "rl_errors", seq_no = i, "limited");
            }
        },
    );
    // No later window: the summary is not sent yet, the count is there.
    assert_counts(&guard.stats(), 3, 7);
    let docs = receive(&mut capture, 3);
    assert_eq!(by_logger(&docs).0, counts(&[("rl_errors", 3)]));
}

#[test]
fn a_quiet_callsite_saves_up_to_its_burst_allowance() {
    let mut capture = Capture::fresh();
    let guard = run(
        &capture,
        |c| {
            c.rate_limit.events = 2;
            c.rate_limit.burst = 3;
        },
        |clock| {
            let burst = |n: u64| {
                for i in 0..n {
                    tracing::info!(target: "rl_bursty", seq_no = i, "burst");
                }
            };
            // A fresh callsite starts with the whole allowance: 2 + 3 pass.
            burst(10);
            // One window later: 2 pass (nothing saved, all was spent).
            clock.advance(WINDOW);
            burst(10);
            // Quiet for one window: what it saved (2) and this window's (2) pass.
            clock.advance(2 * WINDOW);
            burst(10);
            // Quiet for many windows: at most 2 + 3 pass.
            clock.advance(100 * WINDOW);
            burst(10);
        },
    );
    // 5 + 2 + 4 + 5 passed; summaries of the first three bursts (each sent at the next window's first event).
    assert_counts(&guard.stats(), 16 + 3, 40 - 16);
    let docs = receive(&mut capture, 19);
    let (loggers, summaries) = by_logger(&docs);
    assert_eq!(loggers, counts(&[("rl_bursty", 16)]));
    let suppressed: Vec<u64> = summaries
        .iter()
        .map(|s| u64_at(s, "/fields/suppressed"))
        .collect();
    assert_eq!(suppressed, [5, 8, 6]);
}

#[test]
fn log_records_are_limited_per_line_of_the_logging_call() {
    common::log_bridge();
    let mut capture = Capture::fresh();
    let guard = run(
        &capture,
        |c| c.rate_limit.events = 3,
        |clock| {
            for i in 0..10 {
                log::info!(target: "rl_legacy", "first call {i}");
                log::info!(target: "rl_legacy", "second call {i}");
            }
            clock.advance(WINDOW);
            log::warn!(target: "rl_legacy", "sends the summaries");
        },
    );
    assert_counts(&guard.stats(), 3 + 3 + 1 + 2, 14);
    let docs = receive(&mut capture, 9);
    let first = docs
        .iter()
        .filter(|d| str_at(d, "/message").starts_with("first call"))
        .count();
    let second = docs
        .iter()
        .filter(|d| str_at(d, "/message").starts_with("second call"))
        .count();
    assert_eq!((first, second), (3, 3));
    let (_, summaries) = by_logger(&docs);
    let mut lines: Vec<u64> = summaries
        .iter()
        .map(|s| u64_at(s, "/fields/callsite_line"))
        .collect();
    lines.sort_unstable();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1], lines[0] + 1, "the two calls' lines: {lines:?}");
}

#[test]
fn off_by_default_every_event_of_a_hot_callsite_ships() {
    assert_eq!(Config::default().rate_limit.events, 0);
    let mut capture = Capture::fresh();
    let guard = run(
        &capture,
        |_| {},
        |_| {
            for i in 0..2_000 {
                tracing::info!(target: "rl_unlimited", seq_no = i, "hot");
            }
        },
    );
    assert_counts(&guard.stats(), 2_000, 0);
    assert_eq!(receive(&mut capture, 2_000).len(), 2_000);
}

#[test]
fn settings_are_read_from_variables_and_files_and_checked() {
    let config = Config::from_vars([
        (
            "LOGCOLLECT_RATE_LIMIT__EVENTS".to_string(),
            "100".to_string(),
        ),
        (
            "LOGCOLLECT_RATE_LIMIT__WINDOW_MS".to_string(),
            "250".to_string(),
        ),
        ("LOGCOLLECT_RATE_LIMIT__BURST".to_string(), "50".to_string()),
        (
            "LOGCOLLECT_RATE_LIMIT__EXEMPT_LEVEL".to_string(),
            "WARN".to_string(),
        ),
        (
            "LOGCOLLECT_RATE_LIMIT__TARGETS".to_string(),
            "sqlx=10, my_app::db=0".to_string(),
        ),
    ])
    .expect("valid");
    let r = &config.rate_limit;
    assert_eq!(
        (r.events, r.window, r.burst, r.exempt_level),
        (100, Duration::from_millis(250), 50, ExemptLevel::Warn)
    );
    let targets = vec![
        TargetLimit {
            target: "sqlx".into(),
            events: 10,
        },
        TargetLimit {
            target: "my_app::db".into(),
            events: 0,
        },
    ];
    assert_eq!(r.targets, targets);

    // In a file, `targets` may be a table of target = events.
    let from_file: Config = toml::from_str(
        "[rate_limit]\nevents = 100\n[rate_limit.targets]\nsqlx = 10\n\"my_app::db\" = 0\n",
    )
    .expect("valid file");
    let mut sorted = from_file.rate_limit.targets.clone();
    sorted.sort_by(|a, b| a.target.cmp(&b.target));
    assert_eq!(sorted, [targets[1].clone(), targets[0].clone()]);

    for (key, value, says) in [
        ("LOGCOLLECT_RATE_LIMIT__WINDOW_MS", "0", "at least 1 ms"),
        ("LOGCOLLECT_RATE_LIMIT__TARGETS", "sqlx", "`target=events`"),
        ("LOGCOLLECT_RATE_LIMIT__TARGETS", "=5", "no target"),
        ("LOGCOLLECT_RATE_LIMIT__TARGETS", "sqlx=many", "invalid"),
        ("LOGCOLLECT_RATE_LIMIT__EVENTS", "-1", "invalid"),
        (
            "LOGCOLLECT_RATE_LIMIT__EXEMPT_LEVEL",
            "fatal",
            "error, warn",
        ),
    ] {
        let error = Config::from_vars([(key.to_string(), value.to_string())])
            .expect_err(value)
            .to_string();
        assert!(error.contains(key), "{error}");
        assert!(error.contains(says), "{key}={value}: {error}");
    }
}
