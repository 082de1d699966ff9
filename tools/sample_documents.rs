//! Prints one line of JSON: the crate's wire defaults and one real document in each format, as
//! the encoders write them. The ELK checks in `tests/elk/` read it to compare the Logstash
//! pipeline, the compose stack and the Kibana objects with what the crate really produces.
//!
//! ```text
//! cargo run -q --example sample_documents              # print only
//! cargo run -q --example sample_documents -- --publish # also ship the same event through init()
//! ```
//! With `--publish`, the standard configuration applies (`LOGCOLLECT_BROKER_URI`,
//! `LOGCOLLECT_EXCHANGE`, `LOGCOLLECT_FORMAT`, …); the exit code is 0 only if the broker
//! confirmed every event.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use logcollect::internals::{
    encode, event_id, CapturedEvent, Envelope, ErrorValue, FieldValue, Identity, SpanSnapshot,
};
use logcollect::{defaults, Format};
use serde_json::{json, Value};

#[derive(Debug)]
struct GatewayTimeout;
impl std::fmt::Display for GatewayTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("payment gateway timed out")
    }
}
impl std::error::Error for GatewayTimeout {}

#[derive(Debug)]
struct PaymentError(GatewayTimeout);
impl std::fmt::Display for PaymentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("card could not be charged")
    }
}
impl std::error::Error for PaymentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The event `emit` logs, as the layer captures it.
fn captured(line: u32) -> CapturedEvent {
    CapturedEvent {
        timestamp: SystemTime::now(),
        level: tracing::Level::ERROR,
        target: Cow::Borrowed("sample_documents::checkout"),
        module_path: Some(Cow::Borrowed("sample_documents")),
        file: Some(Cow::Borrowed("tools/sample_documents.rs")),
        line: Some(line),
        thread_name: Some(Arc::from("main")),
        thread_id: 1,
        message: "payment failed".to_string(),
        fields: vec![
            ("attempt", FieldValue::I64(1)),
            ("amount", FieldValue::F64(99.5)),
            (
                "error",
                FieldValue::Error(ErrorValue::from_error(&PaymentError(GatewayTimeout))),
            ),
        ],
        spans: vec![Arc::new(SpanSnapshot {
            name: "checkout",
            fields: vec![
                ("order_id", FieldValue::I64(1042)),
                ("customer", FieldValue::Str("c-77".into())),
            ],
        })],
        // The ids a span gives every event inside it (see logcollect::trace).
        trace: Some(logcollect::trace::SpanContext::new_root().ids()),
    }
}

/// Logs the sample event and returns the line of the logging call. Without a subscriber
/// installed it logs nothing, which is fine when only printing.
fn emit() -> u32 {
    let span = tracing::info_span!("checkout", order_id = 1042, customer = "c-77");
    let _entered = span.enter();
    let err = PaymentError(GatewayTimeout);
    let line = line!() + 1;
    tracing::error!(target: "sample_documents::checkout", attempt = 1, amount = 99.5, error = &err as &dyn std::error::Error, "payment failed");
    line
}

fn main() -> ExitCode {
    let publish = std::env::args().any(|a| a == "--publish");
    let mut entries = BTreeMap::new();
    entries.insert("project".to_string(), "demo".to_string());
    entries.insert("application".to_string(), "sample".to_string());
    let identity = Identity::detect(entries, None, false, None);
    let guard = if publish {
        let started = logcollect::builder_from_env().and_then(|b| {
            b.identity("project", "demo")
                .identity("application", "sample")
                .init()
        });
        match started {
            Ok(guard) => Some(guard),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let event = captured(emit());
    let doc = |format| -> Value {
        let envelope = Envelope {
            id: event_id(&event),
            identity: &identity,
            max_field_bytes: 1 << 20,
        };
        serde_json::from_slice(&encode(format, &event, &envelope)).unwrap_or(Value::Null)
    };
    let line = json!({
        "defaults": {
            "exchange": defaults::EXCHANGE,
            "exchange_type": defaults::EXCHANGE_TYPE,
            "durable": true,
            "routing_key": defaults::ROUTING_KEY,
            "binding_key": defaults::BINDING_KEY,
            "ecs_id_field": "[event][id]",
            "classic_id_field": "[event_id]",
            "batch_max_events": defaults::BATCH_MAX_EVENTS,
            "batch_max_bytes": defaults::BATCH_MAX_BYTES,
        },
        "ecs": doc(Format::Ecs),
        "classic": doc(Format::Classic),
    });

    if let Some(guard) = guard {
        let flushed = guard.flush(Duration::from_secs(20));
        println!("{line}");
        if !flushed.is_complete() {
            eprintln!(
                "{} events not confirmed: {}",
                flushed.undelivered,
                guard.stats()
            );
            return ExitCode::FAILURE;
        }
    } else {
        println!("{line}");
    }
    ExitCode::SUCCESS
}
