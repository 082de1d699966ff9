//! Batches on the wire against the real broker: JSON arrays whose documents are counted one by
//! one, one routing key per message, a returned batch published again whole, an oversize
//! event dropped from its batch, and the `batch.*` settings' edge values.
//!
//! `batch.linger_ms` is set long in most of these tests so that batches are exactly as the test
//! says (a full batch leaves at once, a partial one would wait): what they check never depends
//! on how fast the shipper drains.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{await_stats, documents, Capture};
use logcollect::{Config, Guard, LogcollectLayer};
use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt;

const LONG: Duration = Duration::from_secs(600);

fn shipper(exchange: &str, configure: impl FnOnce(&mut Config)) -> (LogcollectLayer, Guard) {
    logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(exchange)
        .configure(|c| {
            c.retry_delay = Duration::from_millis(100);
            c.backoff_max = Duration::from_millis(500);
            configure(c)
        })
        .build()
        .expect("build")
}

/// Logs `seq_no` events `range` through `layer`, with targets `batch_a`, `batch_b`, `batch_c`
/// in turn when `targets` is 3, else all `batch_a`.
fn log(layer: LogcollectLayer, range: std::ops::Range<u64>, targets: u64) {
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        for i in range {
            match i % targets {
                0 => tracing::info!(target: "batch_a", seq_no = i, "batched event"),
                1 => tracing::info!(target: "batch_b", seq_no = i, "batched event"),
                _ => tracing::info!(target: "batch_c", seq_no = i, "batched event"),
            }
        }
    });
}

/// Flushes, failing the test with the stats when something is left after `secs` seconds.
fn flushed(guard: &Guard, secs: u64) {
    assert!(
        guard.flush(Duration::from_secs(secs)).is_complete(),
        "{}",
        guard.stats()
    );
}

fn seq_nos(docs: &[Value]) -> Vec<i64> {
    docs.iter()
        .map(|d| {
            d.pointer("/fields/seq_no")
                .and_then(Value::as_i64)
                .expect("seq_no")
        })
        .collect()
}

#[test]
fn arrays_on_the_wire_hold_every_event_once_and_counts_are_in_events_and_messages() {
    let mut capture = Capture::fresh();
    let (layer, guard) = shipper(&capture.exchange, |c| {
        c.batch.max_events = 50;
        c.batch.linger = LONG;
    });
    log(layer, 0..500, 1);
    flushed(&guard, 60);
    let stats = guard.stats();
    assert_eq!(
        (stats.accepted, stats.published, stats.confirmed),
        (500, 500, 500),
        "{stats}"
    );
    assert_eq!(
        (stats.messages_published, stats.messages_confirmed),
        (10, 10),
        "{stats}"
    );
    assert_eq!(stats.latency.samples, 500, "{stats}");
    assert!(stats.latency.p50 <= stats.latency.p99 && stats.latency.p99 <= stats.latency.max);

    let messages = capture.receive(500, Duration::from_secs(30));
    assert_eq!(messages.len(), 10);
    let mut message_ids = HashSet::new();
    for m in &messages {
        assert!(
            m.body.starts_with(b"[{") && m.body.ends_with(b"}]"),
            "a JSON array"
        );
        assert_eq!(m.documents().len(), 50);
        assert_eq!(m.routing_key, "logstash.batch_a");
        let id = m
            .properties
            .message_id()
            .as_ref()
            .expect("message_id")
            .to_string();
        assert!(
            m.documents()
                .iter()
                .all(|d| d["event"]["id"] != id.as_str()),
            "a batch has a message id of its own"
        );
        assert!(message_ids.insert(id));
    }
    let docs = documents(&messages);
    let ids: HashSet<&str> = docs
        .iter()
        .filter_map(|d| d["event"]["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 500, "one event.id per event");
    assert_eq!(seq_nos(&docs), (0..500).collect::<Vec<_>>(), "in order");
    assert!(capture
        .receive_until_quiet(Duration::from_millis(300))
        .is_empty());
}

#[test]
fn each_message_holds_one_routing_key_and_each_keys_order_is_kept() {
    let mut capture = Capture::fresh();
    let (layer, guard) = shipper(&capture.exchange, |c| {
        c.batch.max_events = 30;
        c.batch.linger = LONG;
    });
    log(layer, 0..30, 3);
    flushed(&guard, 60);
    let messages = capture.receive(30, Duration::from_secs(30));
    assert_eq!(documents(&messages).len(), 30);
    for (key, first) in [("batch_a", 0), ("batch_b", 1), ("batch_c", 2)] {
        let of_key: Vec<_> = messages
            .iter()
            .filter(|m| m.routing_key == format!("logstash.{key}"))
            .collect();
        let docs: Vec<Value> = of_key.iter().flat_map(|m| m.documents()).collect();
        assert!(
            docs.iter().all(|d| d["log"]["logger"] == key),
            "a message holds the events of its routing key only"
        );
        let expected: Vec<i64> = (0..10).map(|i| first + 3 * i).collect();
        assert_eq!(seq_nos(&docs), expected, "{key}: every event, in order");
        // 30 events in one drain: three keys, so three messages of 10.
        assert!(of_key.iter().all(|m| m.documents().len() == 10), "{key}");
    }
    assert_eq!(guard.stats().messages_confirmed, 3, "{}", guard.stats());
}

#[test]
fn a_returned_batch_is_published_again_whole() {
    let exchange = common::unique("logcollect-test-ret");
    let (layer, guard) = shipper(&exchange, |c| {
        c.batch.max_events = 20;
        c.batch.linger = LONG;
    });
    let shipper = guard.shipper();
    // No queue is bound yet: the broker returns the batch as unroutable.
    log(layer, 0..20, 1);
    await_stats("a return", Duration::from_secs(30), &shipper, |s| {
        s.returned >= 20
    });
    let mut capture = Capture::bind(&exchange, "#");
    await_stats("the confirm", Duration::from_secs(30), &shipper, |s| {
        s.confirmed == 20
    });
    let stats = shipper.stats();
    assert_eq!(stats.returned % 20, 0, "whole batches come back: {stats}");
    assert_eq!(stats.retried, stats.returned, "{stats}");
    assert_eq!(stats.published, 20 * stats.messages_published, "{stats}");
    assert_eq!(stats.messages_confirmed, 1, "{stats}");
    let messages = capture.receive(20, Duration::from_secs(30));
    assert_eq!(messages.len(), 1, "one message, the batch, whole");
    assert_eq!(
        seq_nos(&messages[0].documents()),
        (0..20).collect::<Vec<_>>()
    );
    drop(guard);
}

#[test]
fn an_oversize_event_is_dropped_from_its_batch_and_the_rest_delivered() {
    let mut capture = Capture::fresh();
    let max_message_bytes = 4000;
    let (layer, guard) = shipper(&capture.exchange, |c| {
        c.batch.max_events = 11;
        c.batch.linger = LONG;
        c.max_message_bytes = max_message_bytes;
    });
    let subscriber = tracing_subscriber::registry().with(layer);
    let huge = "h".repeat(10_000);
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..11u64 {
            if i == 5 {
                tracing::info!(target: "batch_a", seq_no = i, huge = huge.as_str(), "too big");
            } else {
                tracing::info!(target: "batch_a", seq_no = i, "batched event");
            }
        }
    });
    flushed(&guard, 60);
    let stats = guard.stats();
    assert_eq!(
        (stats.accepted, stats.confirmed, stats.dropped.oversize),
        (11, 10, 1),
        "{stats}"
    );
    let messages = capture.receive(10, Duration::from_secs(30));
    assert!(
        messages.iter().all(|m| m.body.len() <= max_message_bytes),
        "a batch never exceeds max_message_bytes"
    );
    assert!(
        messages.len() > 1,
        "10 events of ~600 bytes need several 4000-byte messages"
    );
    let expected: Vec<i64> = (0..11).filter(|i| *i != 5).collect();
    assert_eq!(seq_nos(&documents(&messages)), expected);
}

#[test]
fn an_event_logged_alone_travels_as_one_object_and_tiny_max_bytes_sends_each_alone() {
    let mut capture = Capture::fresh();
    let (layer, guard) = shipper(&capture.exchange, |_| {});
    log(layer, 0..1, 1);
    flushed(&guard, 30);
    let messages = capture.receive(1, Duration::from_secs(30));
    assert!(messages[0].body.starts_with(b"{"), "a plain object");
    let doc = &messages[0].documents()[0];
    assert_eq!(
        messages[0]
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string()),
        doc["event"]["id"].as_str().map(str::to_string),
        "a one-event message is identified by its event"
    );
    drop(guard);

    let mut capture = Capture::fresh();
    let (layer, guard) = shipper(&capture.exchange, |c| {
        c.batch.max_bytes = 1;
        c.batch.max_events = 5;
        c.batch.linger = LONG;
    });
    log(layer, 0..5, 1);
    flushed(&guard, 30);
    let messages = capture.receive(5, Duration::from_secs(30));
    assert_eq!(
        messages.len(),
        5,
        "an event larger than batch.max_bytes travels alone"
    );
    assert!(messages.iter().all(|m| m.body.starts_with(b"{")));
    assert_eq!(seq_nos(&documents(&messages)), (0..5).collect::<Vec<_>>());
}

#[test]
fn a_flush_sends_what_lingers() {
    let mut capture = Capture::fresh();
    let (layer, guard) = shipper(&capture.exchange, |c| {
        c.batch.max_events = 1000;
        c.batch.linger = Duration::MAX;
    });
    log(layer, 0..7, 1);
    flushed(&guard, 30);
    let messages = capture.receive(7, Duration::from_secs(30));
    assert_eq!(seq_nos(&documents(&messages)), (0..7).collect::<Vec<_>>());
}

#[test]
fn batch_settings_out_of_range_are_errors_naming_the_key() {
    for (key, value) in [
        ("LOGCOLLECT_BATCH__MAX_EVENTS", "0"),
        ("LOGCOLLECT_BATCH__MAX_BYTES", "0"),
        ("LOGCOLLECT_BATCH__MAX_BYTES", "134217729"),
        ("LOGCOLLECT_BATCH__MAX_EVENTS", "-1"),
    ] {
        let err = Config::from_vars([(key.to_string(), value.to_string())])
            .expect_err(value)
            .to_string();
        assert!(
            err.contains(key) || err.contains("batch."),
            "{key}={value}: {err}"
        );
    }
    let huge = Config::from_vars([
        (
            "LOGCOLLECT_BATCH__MAX_EVENTS".to_string(),
            u64::MAX.to_string(),
        ),
        (
            "LOGCOLLECT_BATCH__LINGER_MS".to_string(),
            u64::MAX.to_string(),
        ),
    ])
    .expect("huge but legal");
    assert_eq!(huge.batch.max_events as u64, u64::MAX);
    assert_eq!(huge.batch.linger, Duration::from_millis(u64::MAX));
}
