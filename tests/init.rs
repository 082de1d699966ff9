//! `logcollect::init()` end to end, in its own process (it installs the global subscriber):
//! configuration from the environment, `tracing` and `log` events, and — with every level
//! enabled — none of the AMQP client's own events shipped. Real RabbitMQ.

mod common;

use std::time::Duration;

use common::{documents, Capture};

#[test]
fn init_reads_the_environment_and_ships_tracing_and_log_events() {
    let mut capture = Capture::fresh();
    // SAFETY of set_var: this test binary has this single test, so no other thread reads the
    // environment concurrently.
    let vars = [
        ("LOGCOLLECT_BROKER_URI", common::broker_url()),
        ("LOGCOLLECT_EXCHANGE", capture.exchange.clone()),
        ("LOGCOLLECT_FORMAT", "classic".to_string()),
        ("LOGCOLLECT_LEVEL", "trace".to_string()),
        ("LOGCOLLECT_IDENTITY__PROJECT", "billing".to_string()),
        ("LOGCOLLECT_IDENTITY__APPLICATION", "init-test".to_string()),
        (
            "LOGCOLLECT_ROUTING_KEY",
            "app.{service}.{level}".to_string(),
        ),
    ];
    for (k, v) in &vars {
        unsafe { std::env::set_var(k, v) };
    }
    let guard = logcollect::init().expect("init");
    // A second init fails cleanly instead of panicking.
    let again = logcollect::init().expect_err("second init must fail");
    assert!(
        matches!(again, logcollect::Error::AlreadyInitialized(_)),
        "{again}"
    );

    tracing::info!(seq_no = 0, "from tracing");
    log::info!(target: "legacy", "from log");
    tracing::trace!(seq_no = 2, "trace level is on");

    let flushed = guard.flush(Duration::from_secs(20));
    assert!(flushed.is_complete(), "{}", guard.stats());
    let messages = capture.receive(3, Duration::from_secs(10));
    // Nothing else: lapin, amq-protocol and tokio log at TRACE on the shipper thread through
    // this same global subscriber, and none of it may be shipped.
    let extra = capture.receive_until_quiet(Duration::from_millis(500));
    assert!(extra.is_empty(), "unexpected: {:?}", documents(&extra));
    let docs = documents(&messages);
    let got: Vec<(&str, &str, &str)> = docs
        .iter()
        .map(|d| {
            (
                d["message"].as_str().unwrap(),
                d["logger"].as_str().unwrap(),
                d["levelname"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("from tracing", "init", "INFO"),
            ("from log", "legacy", "INFO"),
            ("trace level is on", "init", "TRACE")
        ]
    );
    for d in &docs {
        assert_eq!(d["project"], "billing");
        assert_eq!(d["application"], "init-test");
    }
    // Each event's routing key (a message's events share its key).
    let keys: Vec<&str> = messages
        .iter()
        .flat_map(|m| std::iter::repeat_n(m.routing_key.as_str(), m.documents().len()))
        .collect();
    assert_eq!(
        keys,
        [
            "app.init-test.info",
            "app.init-test.info",
            "app.init-test.trace"
        ]
    );
    let line = guard.stats().to_string();
    assert!(
        line.contains("accepted=3 published=3 confirmed=3 ") && line.contains(" dropped=0 "),
        "{line}"
    );
    drop(guard);
}
