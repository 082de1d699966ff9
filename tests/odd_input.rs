//! Odd input never breaks a document: bytes that are not UTF-8, control characters, huge
//! strings, over-long targets (routing keys), deep error chains, non-finite floats. Real RabbitMQ.

mod common;

use std::time::Duration;

use common::Capture;
use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt;

fn ship(capture: &mut Capture, expected: usize, emit: impl FnOnce()) -> Vec<common::Received> {
    common::log_bridge();
    let (layer, guard) = logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(capture.exchange.clone())
        .build()
        .expect("build");
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), emit);
    let flushed = guard.flush(Duration::from_secs(30));
    assert!(flushed.is_complete(), "{flushed:?} {}", guard.stats());
    let messages = capture.receive(expected, Duration::from_secs(20));
    assert_eq!(messages.len(), expected);
    messages
}

fn only_doc(messages: &[common::Received]) -> Value {
    for m in messages {
        // Every body is valid UTF-8 JSON whatever the fields held.
        assert!(std::str::from_utf8(&m.body).is_ok());
    }
    messages[0].documents().remove(0)
}

#[test]
fn non_utf8_bytes_and_control_characters_give_valid_json() {
    let mut capture = Capture::fresh();
    let messages = ship(&mut capture, 1, || {
        let bytes: &[u8] = b"ok\xff\xfe\x00end";
        tracing::info!(
            raw = bytes,
            ctl = "nul\u{0} esc\u{1b}[31m bell\u{7} del\u{7f} tab\t nl\n",
            emoji = "🦀 ünïcödé",
            "line1\nline2\r\u{0}\u{2028}"
        );
    });
    let doc = only_doc(&messages);
    assert_eq!(
        doc["fields"]["raw"], "ok\u{fffd}\u{fffd}\u{0}end",
        "invalid bytes become U+FFFD"
    );
    assert_eq!(
        doc["fields"]["ctl"],
        "nul\u{0} esc\u{1b}[31m bell\u{7} del\u{7f} tab\t nl\n"
    );
    assert_eq!(doc["fields"]["emoji"], "🦀 ünïcödé");
    assert_eq!(doc["message"], "line1\nline2\r\u{0}\u{2028}");
    // Control characters are escaped, never raw, in the wire bytes.
    assert!(
        !messages[0].body.iter().any(|b| *b < 0x20),
        "raw control byte on the wire"
    );
}

#[test]
fn a_one_megabyte_string_arrives_intact_and_a_larger_one_is_cut_and_marked() {
    let mut capture = Capture::fresh();
    let one_mb = "x".repeat(1_000_000);
    let three_mib = "é".repeat(3 << 19); // 3 MiB of two-byte characters
    let messages = ship(&mut capture, 2, || {
        tracing::info!(blob = one_mb.as_str(), "one megabyte field");
        tracing::info!(blob = three_mib.as_str(), "{}", three_mib);
    });
    let docs = common::documents(&messages);
    assert_eq!(
        docs[0]["fields"]["blob"].as_str().map(str::len),
        Some(1_000_000)
    );
    for cut in [&docs[1]["fields"]["blob"], &docs[1]["message"]] {
        let cut = cut.as_str().unwrap();
        let (kept, marker) = cut.split_once('…').expect("truncation marker");
        assert_eq!(
            kept.len(),
            1 << 20,
            "kept up to max_field_bytes (1 MiB), whole characters"
        );
        assert!(kept.chars().all(|c| c == 'é'));
        assert_eq!(
            marker,
            format!("[truncated {} bytes]", (3 << 20) - (1 << 20))
        );
    }
}

#[test]
fn targets_longer_than_255_bytes_give_a_routing_key_cut_at_255_bytes() {
    let mut capture = Capture::fresh();
    let target = format!("svc::{}", "ü".repeat(200)); // 405 bytes
    let messages = ship(&mut capture, 1, || {
        log::logger().log(
            &log::Record::builder()
                .target(&target)
                .level(log::Level::Info)
                .args(format_args!("long target"))
                .build(),
        );
    });
    let key = &messages[0].routing_key;
    assert!(key.len() <= 255 && key.len() >= 254, "{} bytes", key.len());
    assert!(key.starts_with("logstash.svc.üü"));
    let doc = only_doc(&messages);
    assert_eq!(
        doc["log"]["logger"],
        target.as_str(),
        "the document keeps the whole target"
    );
}

#[derive(Debug)]
struct Layered(u32);
impl std::fmt::Display for Layered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "layer {}", self.0)
    }
}
impl std::error::Error for Layered {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Each layer's source is the next one; leaked so the chain is 'static.
        (self.0 < 100).then(|| {
            &*Box::leak(Box::new(Layered(self.0 + 1))) as &(dyn std::error::Error + 'static)
        })
    }
}

#[test]
fn error_chains_are_kept_and_bounded() {
    let mut capture = Capture::fresh();
    let messages = ship(&mut capture, 1, || {
        let io = std::io::Error::other("disk on fire");
        tracing::error!(
            error = &Layered(0) as &dyn std::error::Error,
            io = &io as &dyn std::error::Error,
            "deep chain"
        );
    });
    let doc = only_doc(&messages);
    assert_eq!(doc["error"]["message"], "layer 0");
    assert_eq!(doc["error"]["type"], "Layered");
    let trace = doc["error"]["stack_trace"].as_str().unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    assert_eq!(lines[0], "layer 0");
    assert_eq!(lines[1], "Caused by: layer 1");
    assert_eq!(lines.len(), 65, "the chain is cut at 64 causes");
    assert_eq!(doc["fields"]["io"], "disk on fire");
}

#[test]
fn non_finite_floats_and_huge_integers_stay_valid() {
    let mut capture = Capture::fresh();
    let messages = ship(&mut capture, 1, || {
        tracing::info!(
            nan = f64::NAN,
            inf = f64::INFINITY,
            small = -1.5e-300,
            wide = i128::MIN,
            fits = 5u128,
            "numbers"
        );
    });
    let doc = only_doc(&messages);
    assert_eq!(doc["fields"]["nan"], Value::Null);
    assert_eq!(doc["fields"]["inf"], Value::Null);
    // Written shortest-roundtrip (serde_json's reader is not exact for such values).
    let body = std::str::from_utf8(&messages[0].body).unwrap();
    assert!(body.contains(r#""small":-1.5e-300"#), "{body}");
    assert_eq!(doc["fields"]["wide"], i128::MIN.to_string());
    assert_eq!(doc["fields"]["fits"], 5);
}
