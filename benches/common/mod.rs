//! What the benches share.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use logcollect::internals::{CapturedEvent, FieldValue, SpanSnapshot};

/// loadgen's event (tools/loadgen.rs): a message, three fields, inside a span; no trace ids.
pub fn loadgen_event() -> CapturedEvent {
    CapturedEvent {
        timestamp: SystemTime::now(),
        level: tracing::Level::INFO,
        target: Cow::Borrowed("loadgen"),
        module_path: Some(Cow::Borrowed("loadgen")),
        file: Some(Cow::Borrowed("tools/loadgen.rs")),
        line: Some(134),
        thread_name: Some(Arc::from("worker-1")),
        thread_id: 7,
        message: "load event".to_string(),
        fields: vec![
            ("seq_no", FieldValue::I64(123_456)),
            ("worker", FieldValue::U64(1)),
            ("payload", FieldValue::Str("x".repeat(64))),
        ],
        spans: vec![Arc::new(SpanSnapshot {
            name: "loadgen_batch",
            fields: vec![("worker", FieldValue::U64(1))],
        })],
        trace: None,
    }
}
