//! The overflow policies of the in-memory queue, each counted exactly, with which events
//! survive: drop_oldest, drop_newest, block (its wait timed, with and without room appearing in
//! time) and spill to the spool.

mod common;

use std::time::{Duration, Instant};

use common::{distinct_ints, documents, Capture};
use logcollect::{LogcollectLayer, Overflow};
use tracing_subscriber::layer::SubscriberExt;

fn log(layer: LogcollectLayer, n: u64) {
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for i in 0..n {
            tracing::info!(seq_no = i, "overflowing");
        }
    });
}

/// A broker that accepts TCP and never speaks: nothing leaves the queue.
fn stuck_broker() -> (std::net::TcpListener, String) {
    let (listener, port) = common::blackhole();
    (listener, format!("amqp://guest:guest@127.0.0.1:{port}/%2f"))
}

/// Logs `seq_no` 0..100 into a queue of 10 behind a closed gate, then opens it: the `seq_no`s
/// delivered (in order) and the stats once all is delivered.
fn overflow_behind_a_gate(overflow: Overflow) -> (Vec<i64>, logcollect::Stats) {
    let mut capture = Capture::fresh();
    let gate = common::Gate::closed();
    let (layer, guard) = logcollect::builder()
        .broker_uri(&gate.uri)
        .exchange(&capture.exchange)
        .queue_capacity(10)
        .overflow(overflow)
        .configure(|c| c.connect_timeout = Duration::from_secs(60))
        .build()
        .expect("build");
    log(layer, 100);
    let stats = guard.stats();
    assert_eq!(stats.dropped.queue_full, 90, "{stats}");
    assert_eq!(stats.queue_depth, 10, "{stats}");
    gate.open();
    assert!(
        guard.flush(Duration::from_secs(30)).is_complete(),
        "{}",
        guard.stats()
    );
    let stats = guard.stats();
    let docs = documents(&capture.receive(10, Duration::from_secs(30)));
    let more = documents(&capture.receive_until_quiet(Duration::from_millis(500)));
    assert!(more.is_empty(), "more than the 10 queued arrived: {more:?}");
    let seqs = docs
        .iter()
        .map(|d| {
            d.pointer("/fields/seq_no")
                .and_then(|v| v.as_i64())
                .expect("seq_no")
        })
        .collect();
    (seqs, stats)
}

#[test]
fn drop_oldest_accepts_every_event_and_counts_those_pushed_out() {
    let (seqs, stats) = overflow_behind_a_gate(Overflow::DropOldest);
    // The 90 pushed out are the oldest: the last 10 logged survive.
    assert_eq!(seqs, (90..100).collect::<Vec<_>>());
    assert_eq!(
        (stats.accepted, stats.confirmed, stats.dropped.queue_full),
        (100, 10, 90),
        "{stats}"
    );
}

#[test]
fn drop_newest_keeps_the_first_events_and_counts_the_rest() {
    let (seqs, stats) = overflow_behind_a_gate(Overflow::DropNewest);
    assert_eq!(seqs, (0..10).collect::<Vec<_>>());
    // A refused event is never accepted.
    assert_eq!(
        (stats.accepted, stats.confirmed, stats.dropped.queue_full),
        (10, 10, 90),
        "{stats}"
    );
}

#[test]
fn drop_oldest_with_a_stuck_broker_leaves_the_queue_full_and_undelivered() {
    let (_listener, uri) = stuck_broker();
    let (layer, guard) = logcollect::builder()
        .broker_uri(uri)
        .queue_capacity(10)
        .overflow(Overflow::DropOldest)
        .build()
        .expect("build");
    log(layer, 100);
    let stats = guard.stats();
    assert_eq!(stats.accepted, 100, "{stats}");
    assert_eq!(stats.dropped.queue_full, 90, "{stats}");
    assert_eq!(stats.queue_depth, 10, "{stats}");
    // The 90 pushed out are settled (dropped), so only the 10 queued are undelivered.
    assert_eq!(guard.shutdown(Duration::from_millis(100)).undelivered, 10);
}

#[test]
fn block_waits_up_to_its_timeout_then_drops_and_counts() {
    const TIMEOUT: Duration = Duration::from_millis(100);
    let (_listener, uri) = stuck_broker();
    let (layer, guard) = logcollect::builder()
        .broker_uri(uri)
        .queue_capacity(10)
        .overflow(Overflow::Block)
        .configure(|c| c.block_timeout = TIMEOUT)
        .build()
        .expect("build");
    // Each call is timed: the queue stays full, so each past the 10th waits its whole timeout
    // (a lower bound: how much longer it takes is the machine's business).
    let waited: Vec<Duration> =
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            (0..15u64)
                .map(|seq_no| {
                    let started = Instant::now();
                    tracing::info!(seq_no, "overflowing");
                    started.elapsed()
                })
                .collect()
        });
    for (seq_no, took) in waited.iter().enumerate().skip(10) {
        assert!(
            *took >= TIMEOUT,
            "event {seq_no} waited {took:?}, less than block_timeout {TIMEOUT:?}"
        );
    }
    let stats = guard.stats();
    assert_eq!(stats.accepted, 10, "{stats}");
    assert_eq!(stats.dropped.queue_full, 5, "{stats}");
    let _ = guard.shutdown(Duration::from_millis(100));
}

#[test]
fn block_loses_nothing_when_the_shipper_makes_room_in_time() {
    let mut capture = Capture::fresh();
    let (layer, guard) = logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(&capture.exchange)
        .queue_capacity(4)
        .overflow(Overflow::Block)
        .configure(|c| c.block_timeout = Duration::from_secs(30))
        .build()
        .expect("build");
    log(layer, 2000);
    assert!(guard.flush(Duration::from_secs(30)).is_complete());
    let stats = guard.stats();
    assert_eq!(
        (stats.accepted, stats.confirmed, stats.dropped.total()),
        (2000, 2000, 0),
        "{stats}"
    );
    let docs = documents(&capture.receive(2000, Duration::from_secs(30)));
    let (distinct, _) = distinct_ints(&docs, "/fields/seq_no");
    assert_eq!(distinct, (0..2000).collect());
}

#[test]
fn spill_writes_to_the_spool_what_the_queue_cannot_hold_and_drops_nothing() {
    let (_listener, uri) = stuck_broker();
    let dir = tempfile::tempdir().expect("tempdir");
    let (layer, guard) = logcollect::builder()
        .broker_uri(uri)
        .queue_capacity(10)
        .spool_dir(dir.path())
        .build()
        .expect("build");
    assert_eq!(
        logcollect::Config::default().overflow_policy(),
        Overflow::DropNewest
    );
    log(layer, 5000);
    let shipper = guard.shipper();
    let _ = guard.shutdown(Duration::from_millis(100));
    let stats = shipper.stats();
    assert_eq!((stats.accepted, stats.spooled), (5000, 5000), "{stats}");
    assert_eq!(stats.dropped.total(), 0, "{stats}");

    // The next start replays them in the order they were logged, though the logging thread
    // and the shipper both wrote to the spool.
    let mut capture = Capture::fresh();
    let (_layer, guard) = logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(&capture.exchange)
        .spool_dir(dir.path())
        .build()
        .expect("build");
    let docs = documents(&capture.receive(5000, Duration::from_secs(30)));
    let order: Vec<i64> = docs
        .iter()
        .filter_map(|d| d.pointer("/fields/seq_no").and_then(|v| v.as_i64()))
        .collect();
    assert_eq!(order, (0..5000).collect::<Vec<_>>());
    // Confirms can trail the deliveries a little.
    common::wait_for(Duration::from_secs(60), || guard.stats().recovered >= 5000);
    assert_eq!(guard.stats().recovered, 5000, "{}", guard.stats());
}

#[test]
fn spill_without_a_spool_is_a_configuration_error() {
    let error = logcollect::builder()
        .overflow(Overflow::Spill)
        .build()
        .expect_err("refused")
        .to_string();
    assert!(error.contains("spool.dir"), "{error}");
}
