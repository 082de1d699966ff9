//! Documents as they arrive in a queue bound to the exchange, checked field by field, in both
//! formats, with their message properties and routing keys. Real RabbitMQ.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::Capture;
use logcollect::{Format, Guard};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing_subscriber::layer::SubscriberExt;

#[derive(Debug)]
struct Timeout;
impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("gateway timed out")
    }
}
impl std::error::Error for Timeout {}

#[derive(Debug)]
struct PaymentError(Timeout);
impl std::fmt::Display for PaymentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("card declined")
    }
}
impl std::error::Error for PaymentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

fn shipper(capture: &Capture, format: Format) -> (logcollect::LogcollectLayer, Guard) {
    logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(capture.exchange.clone())
        .format(format)
        .identity("project", "billing")
        .identity("application", "worker")
        .hostname("web-1")
        .build()
        .expect("build")
}

/// The trace context of the reference event's two spans.
#[derive(Debug, Clone)]
struct Trace {
    outer: logcollect::trace::SpanContext,
    inner: logcollect::trace::SpanContext,
}

thread_local! {
    static TRACE: std::cell::RefCell<Option<Trace>> = const { std::cell::RefCell::new(None) };
}

/// The trace context the last reference event on this thread was logged in.
fn last_trace() -> Trace {
    TRACE
        .with(|t| t.borrow().clone())
        .expect("the spans have a trace context")
}

/// Emits the reference event: two spans, fields of every type, an error with a source chain.
fn emit_reference_event() -> u32 {
    let outer = tracing::info_span!("request", req = "r-1", depth = 1u64);
    let _o = outer.enter();
    let inner = tracing::info_span!("charge", depth = 2u64, customer = "c-9");
    let _i = inner.enter();
    TRACE.with(|t| {
        *t.borrow_mut() = Some(Trace {
            outer: logcollect::trace::span_context(&outer).expect("outer context"),
            inner: logcollect::trace::current().expect("inner context"),
        })
    });
    let err = PaymentError(Timeout);
    let line = line!() + 1;
    tracing::warn!(
        target: "billing::api",
        seq_no = 7i64,
        big = u64::MAX,
        amount = 9.5f64,
        ok = true,
        customer = "c-1",
        debugged = ?vec![1, 2],
        error = &err as &dyn std::error::Error,
        "payment {} of {}", "declined", 3
    );
    line
}

fn ship_one(format: Format) -> (common::Received, u32, SystemTime) {
    let mut capture = Capture::fresh();
    let (layer, guard) = shipper(&capture, format);
    let before = SystemTime::now();
    let subscriber = tracing_subscriber::registry().with(layer);
    let line = tracing::subscriber::with_default(subscriber, emit_reference_event);
    let flushed = guard.flush(Duration::from_secs(20));
    assert!(
        flushed.is_complete(),
        "undelivered: {flushed:?}, stats {}",
        guard.stats()
    );
    let messages = capture.receive(1, Duration::from_secs(10));
    assert_eq!(messages.len(), 1, "exactly one message");
    let stats = guard.stats();
    assert_eq!(
        (stats.accepted, stats.confirmed, stats.dropped.total()),
        (1, 1, 0),
        "{stats}"
    );
    (messages[0].clone(), line, before)
}

fn check_properties(message: &common::Received, doc_id: &str, format: &str, before: SystemTime) {
    let p = &message.properties;
    assert_eq!(message.routing_key, "logstash.billing.api");
    assert_eq!(p.delivery_mode(), &Some(2), "persistent");
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(
        p.message_id().as_ref().map(|s| s.as_str()),
        Some(doc_id),
        "message_id is the event id"
    );
    assert_eq!(p.app_id().as_ref().map(|s| s.as_str()), Some("worker"));
    assert_eq!(p.kind().as_ref().map(|s| s.as_str()), Some(format));
    let ts = p.timestamp().expect("timestamp");
    let before = before.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(
        ts >= before && ts <= before + 60,
        "timestamp {ts} vs {before}"
    );
}

fn check_timestamp(doc: &Value, before: SystemTime) {
    let ts = doc["@timestamp"].as_str().expect("@timestamp");
    // RFC 3339, UTC, microseconds: 2026-11-21T08:53:32.123456Z
    assert_eq!(ts.len(), 27, "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");
    let parsed = humantime::parse_rfc3339(ts).expect("parses");
    assert!(
        parsed >= before - Duration::from_millis(1) && parsed <= SystemTime::now(),
        "{ts}"
    );
}

fn check_uuid_v7(id: &str) {
    let uuid = uuid::Uuid::parse_str(id).expect("event id is a UUID");
    assert_eq!(uuid.get_version_num(), 7, "{id}");
}

#[test]
fn ecs_document_field_by_field() {
    let (message, line, before) = ship_one(Format::Ecs);
    let docs = message.documents();
    assert_eq!(docs.len(), 1);
    let doc = &docs[0];
    let id = doc["event"]["id"].as_str().expect("event.id").to_string();
    check_uuid_v7(&id);
    check_properties(&message, &id, "ecs", before);
    check_timestamp(doc, before);

    assert_eq!(doc["message"], "payment declined of 3");
    assert_eq!(doc["log"]["level"], "WARN");
    assert_eq!(doc["log"]["logger"], "billing::api");
    assert_eq!(doc["log"]["origin"]["file"]["name"], "tests/documents.rs");
    assert_eq!(doc["log"]["origin"]["file"]["line"], line);
    assert_eq!(doc["log"]["origin"]["module"], "documents");
    assert_eq!(doc["process"]["pid"], std::process::id());
    assert_eq!(
        doc["process"]["thread"]["name"],
        std::thread::current().name().unwrap_or("")
    );
    assert!(doc["process"]["thread"]["id"]
        .as_u64()
        .is_some_and(|id| id > 0));
    assert_eq!(doc["host"], json!({"hostname": "web-1"}));
    assert_eq!(doc["service"], json!({"name": "worker"}));
    assert_eq!(doc["ecs"], json!({"version": "8.11.0"}));
    assert_eq!(doc["event"], json!({"id": id, "dataset": "worker"}));
    // The innermost span's ids; the transaction is the root span; one trace.
    let trace = last_trace();
    assert_eq!(trace.inner.trace_id, trace.outer.trace_id);
    assert_eq!(trace.outer.transaction_id, trace.outer.span_id);
    assert_eq!(trace.inner.transaction_id, trace.outer.span_id);
    assert_eq!(
        doc["trace"],
        json!({"id": trace.inner.trace_id.to_string()})
    );
    assert_eq!(doc["span"], json!({"id": trace.inner.span_id.to_string()}));
    assert_eq!(
        doc["transaction"],
        json!({"id": trace.outer.span_id.to_string()})
    );
    let hex = |v: &Value, len: usize| {
        v.as_str().is_some_and(|s| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
    };
    assert!(hex(&doc["trace"]["id"], 32) && hex(&doc["span"]["id"], 16));
    assert_eq!(
        doc["labels"],
        json!({"project": "billing", "application": "worker"})
    );
    assert_eq!(doc["spans"], json!(["request", "charge"]));
    assert_eq!(
        doc["fields"],
        json!({
            // span fields root to leaf, innermost wins (depth), then the event's own fields
            "req": "r-1",
            "depth": 2,
            "customer": "c-1",
            "seq_no": 7,
            "big": u64::MAX.to_string(),
            "amount": 9.5,
            "ok": true,
            "debugged": "[1, 2]",
            "error": "card declined",
        })
    );
    assert_eq!(
        doc["error"],
        json!({
            "message": "card declined",
            "type": "PaymentError",
            "stack_trace": "card declined\nCaused by: gateway timed out",
        })
    );
    let keys: Vec<&str> = doc
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut keys = keys;
    keys.sort();
    assert_eq!(
        keys,
        [
            "@timestamp",
            "ecs",
            "error",
            "event",
            "fields",
            "host",
            "labels",
            "log",
            "message",
            "process",
            "service",
            "span",
            "spans",
            "trace",
            "transaction"
        ]
    );
}

#[test]
fn classic_document_field_by_field() {
    let (message, line, before) = ship_one(Format::Classic);
    let docs = message.documents();
    let doc = &docs[0];
    let id = doc["event_id"].as_str().expect("event_id").to_string();
    check_uuid_v7(&id);
    check_properties(&message, &id, "classic", before);
    check_timestamp(doc, before);
    let expected = json!({
        "@timestamp": doc["@timestamp"],
        "@version": "1",
        "message": "payment declined of 3",
        "host": "web-1",
        "levelname": "WARNING",
        "logger": "billing::api",
        "type": "logstash",
        "tags": [],
        "process": std::process::id(),
        "event_id": id,
        "path": "tests/documents.rs",
        "lineno": line,
        "thread_name": std::thread::current().name().unwrap_or(""),
        "spans": ["request", "charge"],
        "stack_trace": "card declined\nCaused by: gateway timed out",
        "trace_id": last_trace().inner.trace_id.to_string(),
        "span_id": last_trace().inner.span_id.to_string(),
        "transaction_id": last_trace().outer.span_id.to_string(),
        "event_dataset": "worker",
        "project": "billing",
        "application": "worker",
        "req": "r-1",
        "depth": 2,
        "customer": "c-1",
        "seq_no": 7,
        "big": u64::MAX.to_string(),
        "amount": 9.5,
        "ok": true,
        "debugged": "[1, 2]",
        "error": "card declined",
    });
    assert_eq!(doc, &expected);
}

/// The collision rule: user fields named like ECS objects never collide with them.
#[test]
fn fields_named_like_reserved_keys_do_not_collide() {
    for format in [Format::Ecs, Format::Classic] {
        let mut capture = Capture::fresh();
        let (layer, guard) = logcollect::builder()
            .broker_uri(common::broker_url())
            .exchange(capture.exchange.clone())
            .format(format)
            .identity("project", "billing")
            .identity("host", "identity-host")
            .identity("seq", "identity-seq")
            .hostname("web-1")
            .build()
            .unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                host = "user-host",
                log = "user-log",
                error = "user-error",
                service = 3,
                event = "user-event",
                process = "user-process",
                field_host = "already-prefixed",
                seq = 1,
                "collide"
            );
        });
        assert!(guard.flush(Duration::from_secs(20)).is_complete());
        let messages = capture.receive(1, Duration::from_secs(10));
        let body = String::from_utf8(messages[0].body.clone()).unwrap();
        let doc = &messages[0].documents()[0];
        match format {
            Format::Ecs => {
                assert_eq!(doc["host"], json!({"hostname": "web-1"}));
                assert!(
                    doc["log"].is_object() && doc["error"].is_null() && doc["event"].is_object()
                );
                assert_eq!(doc["fields"]["host"], "user-host");
                assert_eq!(doc["fields"]["log"], "user-log");
                assert_eq!(doc["fields"]["error"], "user-error");
                assert_eq!(doc["fields"]["service"], 3);
                assert_eq!(doc["fields"]["event"], "user-event");
                assert_eq!(doc["labels"]["host"], "identity-host");
                // Logged outside any span: no trace context.
                assert!(doc["trace"].is_null() && doc["span"].is_null());
                assert!(doc["transaction"].is_null());
            }
            Format::Classic => {
                assert_eq!(doc["host"], "web-1");
                assert_eq!(doc["process"], std::process::id());
                assert_eq!(doc["field_host"], "user-host");
                assert_eq!(doc["field_process"], "user-process");
                assert_eq!(doc["log"], "user-log");
                assert_eq!(doc["error"], "user-error");
                // Renamed names are taken in order: the event's `host` took `field_host`, so the
                // user's own `field_host` and then the identity entry `host` move further.
                assert_eq!(doc["field_field_host"], "already-prefixed");
                assert_eq!(doc["field_field_field_host"], "identity-host");
                // The event field `seq` wins over the identity entry `seq`.
                assert_eq!(doc["seq"], 1);
                assert_eq!(doc["field_seq"], "identity-seq");
                assert_eq!(doc["project"], "billing");
                assert!(doc["trace_id"].is_null());
            }
            other => panic!("no expectations for the format {other}"),
        }
        // No key appears twice in the raw JSON: Elasticsearch rejects duplicate keys.
        assert_no_duplicate_keys(&body);
    }
}

fn assert_no_duplicate_keys(body: &str) {
    use serde::de::{Deserializer, MapAccess, Visitor};
    struct Strict;
    impl<'de> Visitor<'de> for Strict {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) {
                    return Err(serde::de::Error::custom(format!("duplicate key {key}")));
                }
                map.next_value::<StrictValue>()?;
            }
            Ok(())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element::<StrictValue>()?.is_some() {}
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_string<E>(self, _: String) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }
    struct StrictValue;
    impl<'de> serde::Deserialize<'de> for StrictValue {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Strict).map(|_| StrictValue)
        }
    }
    let mut de = serde_json::Deserializer::from_str(body);
    StrictValue::deserialize(&mut de).unwrap_or_else(|e| panic!("{e} in {body}"));
}
