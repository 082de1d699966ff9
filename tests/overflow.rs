//! The overflow policies of the in-memory queue, each counted exactly: drop_oldest, block
//! (with and without room appearing in time) and spill to the spool. (drop_newest, the
//! default, is in `capture.rs`.)

mod common;

use std::time::Duration;

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

#[test]
fn drop_oldest_accepts_every_event_and_counts_those_pushed_out() {
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
    let (_listener, uri) = stuck_broker();
    let (layer, guard) = logcollect::builder()
        .broker_uri(uri)
        .queue_capacity(10)
        .overflow(Overflow::Block)
        .configure(|c| c.block_timeout = Duration::from_millis(20))
        .build()
        .expect("build");
    log(layer, 15);
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
