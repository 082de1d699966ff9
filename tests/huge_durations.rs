//! Legal but extreme durations never panic (no `Instant + Duration` overflow): they saturate,
//! meaning "no deadline", and every call returns as soon as its work is done.

mod common;

use std::time::{Duration, Instant};

use common::Capture;
use logcollect::Overflow;
use tracing_subscriber::layer::SubscriberExt;

fn log(layer: logcollect::LogcollectLayer, n: u64) {
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for seq_no in 0..n {
            tracing::info!(seq_no, "huge durations");
        }
    });
}

/// Every event logged arrived, once, in order: counted in documents, not messages (a message
/// may hold a batch of them).
fn assert_seq_nos(messages: &[common::Received], n: u64) {
    let seq_nos: Vec<u64> = common::documents(messages)
        .iter()
        .map(|d| {
            d.pointer("/fields/seq_no")
                .and_then(|v| v.as_u64())
                .expect("seq_no")
        })
        .collect();
    assert_eq!(seq_nos, (0..n).collect::<Vec<_>>());
}

/// A broker URI where nothing listens.
fn nowhere() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
}

#[test]
fn flush_and_shutdown_with_duration_max_return_once_delivered() {
    let mut capture = Capture::fresh();
    let (layer, guard) = logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(&capture.exchange)
        .shutdown_timeout(Duration::MAX)
        .build()
        .expect("build");
    assert!(guard.flush(Duration::MAX).is_complete(), "nothing to flush");
    log(layer, 10);
    assert!(
        guard.flush(Duration::MAX).is_complete(),
        "{}",
        guard.stats()
    );
    let started = Instant::now();
    drop(guard); // shutdown_timeout = Duration::MAX, nothing left to deliver
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_seq_nos(&capture.receive(10, Duration::from_secs(30)), 10);
}

#[test]
fn block_with_duration_max_waits_for_room_and_loses_nothing() {
    let mut capture = Capture::fresh();
    let (layer, guard) = logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(&capture.exchange)
        .queue_capacity(2)
        .overflow(Overflow::Block)
        .configure(|c| c.block_timeout = Duration::MAX)
        .build()
        .expect("build");
    log(layer, 500);
    assert!(
        guard.flush(Duration::MAX).is_complete(),
        "{}",
        guard.stats()
    );
    let stats = guard.stats();
    assert_eq!(
        (stats.accepted, stats.confirmed, stats.dropped.total()),
        (500, 500, 0),
        "{stats}"
    );
    assert_seq_nos(&capture.receive(500, Duration::from_secs(30)), 500);
}

#[test]
fn backoff_and_retry_delays_of_duration_max_saturate_and_shutdown_is_prompt() {
    let (layer, guard) = logcollect::builder()
        .broker_uri(nowhere())
        .configure(|c| {
            c.backoff_min = Duration::MAX;
            c.backoff_max = Duration::MAX;
            c.retry_delay = Duration::MAX;
            c.connect_timeout = Duration::MAX;
            c.confirm_timeout = Duration::MAX;
        })
        .build()
        .expect("build");
    log(layer, 3);
    // The shipper failed to connect once and now waits "for ever" before the next attempt.
    common::await_stats(
        "a connection error",
        Duration::from_secs(30),
        &guard.shipper(),
        |s| s.last_error.is_some(),
    );
    let started = Instant::now();
    let left = guard.shutdown(Duration::from_millis(200));
    assert_eq!(left.undelivered, 3);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
