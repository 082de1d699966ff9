//! `init` with the broker down (a listener that accepts TCP and never answers): it returns at
//! once, logging never waits, and flush and shutdown report what was not delivered.

mod common;

use std::time::{Duration, Instant};

#[test]
fn init_returns_at_once_and_logging_never_waits_when_the_broker_hangs() {
    let (_listener, port) = common::blackhole();
    let connect_timeout = Duration::from_secs(60);
    unsafe {
        std::env::set_var(
            "LOGCOLLECT_BROKER_URI",
            format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        );
        std::env::set_var(
            "LOGCOLLECT_CONNECT_TIMEOUT_MS",
            connect_timeout.as_millis().to_string(),
        );
        std::env::set_var("LOGCOLLECT_SHUTDOWN_TIMEOUT_MS", "200");
    }
    let started = Instant::now();
    let guard = logcollect::init().expect("init succeeds while the broker hangs");
    for i in 0..1000 {
        tracing::info!(seq_no = i, "while the broker hangs");
    }
    let elapsed = started.elapsed();
    // The shipper is stuck in a connect that lasts up to 60 s; init and 1000 events must not
    // have waited for it. (A bound relative to that timeout, not a performance figure.)
    assert!(
        elapsed < connect_timeout / 10,
        "init + logging took {elapsed:?}"
    );
    let stats = guard.stats();
    assert_eq!((stats.accepted, stats.confirmed), (1000, 0), "{stats}");

    let flushed = guard.flush(Duration::from_millis(300));
    assert_eq!(flushed.undelivered, 1000);
    assert!(!flushed.is_complete());

    let shipper = guard.shipper();
    let shutting = Instant::now();
    let left = guard.shutdown(Duration::from_millis(200));
    assert_eq!(left.undelivered, 1000);
    assert!(
        shutting.elapsed() < connect_timeout / 10,
        "shutdown took {:?}",
        shutting.elapsed()
    );

    // After shutdown, events are dropped and counted, never queued or panicking.
    let before = shipper.stats();
    tracing::info!("after shutdown");
    tracing::warn!("after shutdown too");
    let after = shipper.stats();
    assert_eq!(
        (after.dropped.closed - before.dropped.closed, after.accepted),
        (2, 1000),
        "{after}"
    );
    assert_eq!(after.dropped.total(), after.dropped.closed, "{after}");
}
