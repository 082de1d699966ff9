//! The report on stderr at shutdown (docs/configuration.md, "Guard"): when events are left undelivered, one
//! line says how many, the timeout, whether they are lost or in the spool, and the stats; when
//! everything was delivered, nothing is said. A child process ships, the test reads its stderr.

mod common;

use std::process::Command;
use std::time::Duration;

use tracing_subscriber::layer::SubscriberExt;

/// Set in the child's environment: `lost`, `spool:DIR` or `delivered:EXCHANGE`.
const CHILD_MODE: &str = "LOGCOLLECT_TEST_SHUTDOWN_REPORT";

/// The child of the tests below (ignored in a normal run): logs 25 events, then drops the
/// guard, whose shutdown reports on stderr.
#[test]
#[ignore = "run in a child process by the tests of tests/shutdown_report.rs"]
fn shutdown_report_child() {
    let mode = std::env::var(CHILD_MODE)
        .unwrap_or_else(|_| panic!("run by a parent test, which sets {CHILD_MODE}"));
    // A broker that accepts TCP and never answers: nothing is delivered.
    let (_listener, port) = common::blackhole();
    let hanging = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let mut builder = logcollect::builder().shutdown_timeout(Duration::from_millis(300));
    builder = match mode.split_once(':') {
        None if mode == "lost" => builder.broker_uri(hanging),
        Some(("spool", dir)) => builder.broker_uri(hanging).spool_dir(dir),
        Some(("delivered", exchange)) => {
            builder.broker_uri(common::broker_url()).exchange(exchange)
        }
        _ => panic!("unknown mode {mode}"),
    };
    let (layer, guard) = builder.build().expect("build");
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for seq_no in 0..25u64 {
            tracing::info!(seq_no, "before shutdown");
        }
    });
    drop(guard);
}

/// Runs the child in `mode`; its stderr lines that come from logcollect.
fn child_report(mode: &str) -> Vec<String> {
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "shutdown_report_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_MODE, mode)
        .output()
        .expect("run the child");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    stderr
        .lines()
        .filter(|l| l.starts_with("logcollect: "))
        .map(str::to_string)
        .collect()
}

/// The `key=value` of a stats line, as a number.
fn stat(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

#[test]
fn events_left_undelivered_without_a_spool_are_reported_lost_with_the_stats() {
    let lines = child_report("lost");
    let report: Vec<&String> = lines.iter().filter(|l| l.contains("at shutdown")).collect();
    assert_eq!(report.len(), 1, "{lines:#?}");
    let line = report[0];
    assert!(
        line.starts_with(
            "logcollect: 25 events undelivered at shutdown (timeout 300ms) and lost (no spool is set); stats: "
        ),
        "{line}"
    );
    assert_eq!(
        (
            stat(line, "accepted"),
            stat(line, "confirmed"),
            stat(line, "dropped")
        ),
        (25, 0, 0),
        "{line}"
    );
}

#[test]
fn events_left_undelivered_with_a_spool_are_reported_kept_for_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = child_report(&format!("spool:{}", dir.path().display()));
    // What the shipper had not moved to disk yet when it stopped is written then, and said so.
    for line in lines
        .iter()
        .filter(|l| l.contains("written to the spool at shutdown"))
    {
        let kept: u64 = line
            .strip_prefix("logcollect: ")
            .and_then(|l| l.split_once(' '))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {line}"));
        assert!(
            (1..=25).contains(&kept)
                && line.ends_with("undelivered events written to the spool at shutdown; they will be sent on the next start"),
            "{line}"
        );
    }
    let report: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("events undelivered at shutdown"))
        .collect();
    assert_eq!(report.len(), 1, "{lines:#?}");
    let line = report[0];
    assert!(
        line.starts_with(
            "logcollect: 25 events undelivered at shutdown (timeout 300ms); those in the spool are sent on the next start; stats: "
        ),
        "{line}"
    );
    assert_eq!(
        (
            stat(line, "accepted"),
            stat(line, "spooled"),
            stat(line, "dropped")
        ),
        (25, 25, 0),
        "{line}"
    );
}

#[test]
fn a_shutdown_that_delivered_everything_reports_nothing() {
    let capture = common::Capture::fresh();
    let lines = child_report(&format!("delivered:{}", capture.exchange));
    assert!(
        lines.iter().all(|l| !l.contains("undelivered")),
        "{lines:#?}"
    );
}
