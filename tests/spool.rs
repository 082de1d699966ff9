//! The disk spool against the real broker: events spooled while the broker is away reach it
//! on the next start, a SIGKILLed process loses nothing it spooled and a torn record is never
//! published, a full spool drops by its policy and counts exactly, and a spool in use by
//! another process is locked, naming that process.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{distinct_ints, documents, Capture};
use logcollect::{Guard, WhenFull};
use tracing_subscriber::layer::SubscriberExt;

const SEQ: &str = "/fields/seq_no";

/// A broker URI where nothing listens: connections are refused at once.
fn nowhere() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
}

fn shipper(
    uri: &str,
    exchange: &str,
    dir: &Path,
    max_bytes: u64,
    when_full: WhenFull,
) -> (logcollect::LogcollectLayer, Guard) {
    logcollect::builder()
        .broker_uri(uri)
        .exchange(exchange)
        .spool_dir(dir)
        .configure(|c| {
            c.spool.max_bytes = max_bytes;
            c.spool.when_full = when_full;
            c.backoff_max = Duration::from_millis(200);
        })
        .build()
        .expect("build")
}

/// Logs `seq_no` events `range` through `layer`, padded to ~`pad` bytes each.
fn log(layer: logcollect::LogcollectLayer, range: std::ops::Range<u64>, pad: usize) {
    let subscriber = tracing_subscriber::registry().with(layer);
    let padding = "p".repeat(pad);
    tracing::subscriber::with_default(subscriber, || {
        for i in range {
            tracing::info!(seq_no = i, padding = padding.as_str(), "spooled event");
        }
    });
}

/// Starts a shipper on the spool with the real broker, waits until it has recovered `events`,
/// and returns the distinct `seq_no`s that arrived (duplicates reported).
fn replay(
    capture: &mut Capture,
    dir: &Path,
    max_bytes: u64,
    events: u64,
) -> std::collections::HashSet<i64> {
    let (_layer, guard) = shipper(
        &common::broker_url(),
        &capture.exchange,
        dir,
        max_bytes,
        WhenFull::DropNewest,
    );
    let shipper = guard.shipper();
    common::await_stats("the replay", Duration::from_secs(60), &shipper, |s| {
        s.recovered >= events && s.spool_bytes == 0
    });
    let stats = shipper.stats();
    assert_eq!(
        (stats.accepted, stats.confirmed, stats.recovered),
        (0, 0, events),
        "{stats}"
    );
    let docs = documents(&capture.receive(events as usize, Duration::from_secs(30)));
    let (distinct, dups) = distinct_ints(&docs, SEQ);
    eprintln!(
        "replayed {} documents, {} distinct, {dups} duplicates",
        docs.len(),
        distinct.len()
    );
    drop(guard);
    distinct
}

#[test]
fn events_spooled_while_the_broker_is_away_are_delivered_on_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut capture = Capture::fresh();
    let (layer, guard) = shipper(
        &nowhere(),
        &capture.exchange,
        dir.path(),
        1 << 30,
        WhenFull::DropNewest,
    );
    let shipper = guard.shipper();
    log(layer, 0..3000, 100);
    common::await_stats("the spool", Duration::from_secs(60), &shipper, |s| {
        s.spooled == 3000
    });
    let left = guard.shutdown(Duration::from_millis(100));
    assert_eq!(left.undelivered, 3000);
    let stats = shipper.stats();
    assert_eq!(
        (stats.accepted, stats.spooled, stats.dropped.total()),
        (3000, 3000, 0),
        "{stats}"
    );
    assert!(stats.spool_bytes > 3000 * 100, "{stats}");

    let distinct = replay(&mut capture, dir.path(), 1 << 30, 3000);
    assert_eq!(distinct, (0..3000).collect());
}

/// Set in the child's environment: the spool directory it holds.
const HOLDER_DIR: &str = "LOGCOLLECT_TEST_SPOOL_HOLDER_DIR";

/// The child of the test below (ignored in a normal run): a shipper holding the spool directory
/// until its standard input closes.
#[test]
#[ignore = "run in a child process by a_spool_in_use_is_locked_against_a_shipper_of_another_process"]
fn spool_holder_child() {
    let dir = std::env::var(HOLDER_DIR)
        .unwrap_or_else(|_| panic!("run by the parent test, which sets {HOLDER_DIR}"));
    let (_layer, guard) = shipper(
        &nowhere(),
        "logcollect-test-lock",
        Path::new(&dir),
        1 << 20,
        WhenFull::DropNewest,
    );
    println!("holding pid {}", std::process::id());
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
    let _ = guard.shutdown(Duration::ZERO);
}

#[test]
fn a_spool_in_use_is_locked_against_a_shipper_of_another_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "spool_holder_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLDER_DIR, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the holder");
    let pid = child.id();
    assert_ne!(pid, std::process::id());
    // The holder has the lock once it says so.
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let said = stdout.by_ref().map_while(Result::ok).find_map(|l| {
        l.split_once("holding pid ")
            .map(|(_, p)| p.trim().to_string())
    });
    assert_eq!(said, Some(pid.to_string()), "the holder did not start");

    let second = logcollect::builder()
        .broker_uri(nowhere())
        .spool_dir(dir.path())
        .build();
    let error = second
        .expect_err("the second shipper is refused")
        .to_string();
    assert!(error.contains("in use by another process"), "{error}");
    assert!(
        error.contains(&format!("(pid {pid})")),
        "names the holder, {pid}: {error}"
    );

    drop(child.stdin.take());
    // Read to the end: the holder's last lines must not meet a closed pipe.
    stdout.for_each(drop);
    let status = child.wait().expect("the holder ends");
    assert!(status.success(), "{status}");
    // Released with the holder's exit: the directory can be taken now.
    let (_layer, guard) = shipper(
        &nowhere(),
        "logcollect-test-lock",
        dir.path(),
        1 << 20,
        WhenFull::DropNewest,
    );
    let _ = guard.shutdown(Duration::ZERO);
}

/// Fills a 64 KiB spool with ~500-byte events while the broker is away, then replays it.
fn full_spool(when_full: WhenFull) -> (u64, std::collections::HashSet<i64>) {
    const N: u64 = 2000;
    const MAX: u64 = 64 << 10;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut capture = Capture::fresh();
    let (layer, guard) = shipper(&nowhere(), &capture.exchange, dir.path(), MAX, when_full);
    let shipper = guard.shipper();
    log(layer, 0..N, 300);
    common::await_stats("the spool", Duration::from_secs(60), &shipper, |s| {
        s.spooled + s.dropped.spool_full == N || s.spooled == N
    });
    let _ = guard.shutdown(Duration::from_millis(100));
    let stats = shipper.stats();
    assert_eq!(stats.accepted, N, "{stats}");
    assert!(stats.spool_bytes <= MAX, "{stats}");
    let dropped = stats.dropped.spool_full;
    assert!(dropped > 0 && dropped < N, "{stats}");
    assert_eq!(stats.dropped.total(), dropped, "{stats}");
    match when_full {
        WhenFull::DropNewest => assert_eq!(stats.spooled + dropped, N, "{stats}"),
        // Every event was written; the oldest segments were deleted to make room.
        _ => assert_eq!(stats.spooled, N, "{stats}"),
    }
    (dropped, replay(&mut capture, dir.path(), MAX, N - dropped))
}

#[test]
fn a_full_spool_dropping_newest_keeps_the_first_events_and_counts_the_rest() {
    let (dropped, arrived) = full_spool(WhenFull::DropNewest);
    assert_eq!(arrived, (0..(2000 - dropped as i64)).collect());
}

#[test]
fn a_full_spool_dropping_oldest_keeps_the_last_events_and_counts_the_rest() {
    let (dropped, arrived) = full_spool(WhenFull::DropOldest);
    assert_eq!(arrived, (dropped as i64..2000).collect());
}

#[test]
fn a_sigkilled_process_loses_nothing_it_spooled_and_a_torn_record_is_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The load generator, logging with a spool while no broker listens, 100k events/s.
    let mut child = Command::new(common::loadgen_binary())
        .args([
            "--events",
            "100000000",
            "--rate",
            "100000",
            "--progress-every",
            "500",
        ])
        .env("LOGCOLLECT_SPOOL__DIR", dir.path())
        .env("LOGCOLLECT_BROKER_URI", nowhere())
        .env("LOGCOLLECT_EXCHANGE", "logcollect-test-killed")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the load generator");
    let stdout = child.stdout.take().expect("stdout");
    let mut spooled = 0u64;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read the child");
        let on_disk = line
            .split(' ')
            .find_map(|kv| kv.strip_prefix("spooled="))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = on_disk {
            spooled = n;
            if spooled >= 20_000 {
                break;
            }
        }
    }
    assert!(
        spooled >= 20_000,
        "the child ended before spooling 20000 events"
    );
    // SIGKILL, mid-stream: the child is still logging and spooling.
    child.kill().expect("SIGKILL");
    let _ = child.wait();

    // Whatever the kill cut, also leave a torn record at the end of the newest segment.
    let mut segments: Vec<_> = std::fs::read_dir(dir.path())
        .expect("spool dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let newest = segments.last().expect("segments were written");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(newest)
        .expect("open segment");
    file.write_all(&[200, 1, 0, 0, 1, 2, 3, 4, b'{', b'"'])
        .expect("append a torn record");
    drop(file);

    let mut capture = Capture::bind("logcollect-test-killed", "#");
    let (_layer, guard) = shipper(
        &common::broker_url(),
        "logcollect-test-killed",
        dir.path(),
        1 << 30,
        WhenFull::DropNewest,
    );
    let shipper = guard.shipper();
    common::await_stats("the replay", Duration::from_secs(60), &shipper, |s| {
        s.spool_bytes == 0 && s.spool_torn >= 1
    });
    let stats = shipper.stats();
    drop(guard);
    assert!(stats.recovered >= spooled, "{stats}");
    // Every message is valid JSON (documents() fails on anything else): nothing torn was sent.
    let messages = capture.receive(stats.recovered as usize, Duration::from_secs(30));
    // The child spooled what it batched: records of many events, replayed whole.
    assert!(
        messages.iter().any(|m| m.documents().len() > 1),
        "the spool holds and replays batches"
    );
    assert!(stats.messages_confirmed < stats.recovered, "{stats}");
    let docs = documents(&messages);
    let (distinct, dups) = distinct_ints(&docs, SEQ);
    eprintln!(
        "child reported {spooled} spooled; replayed {} documents, {} distinct, {dups} duplicates, {} torn",
        docs.len(),
        distinct.len(),
        stats.spool_torn
    );
    for seq in 0..spooled as i64 {
        assert!(
            distinct.contains(&seq),
            "seq_no {seq} was spooled and never arrived"
        );
    }
    // The spool holds a prefix of what was logged: nothing after a gap.
    assert_eq!(distinct, (0..stats.recovered as i64).collect());
}
