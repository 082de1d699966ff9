//! Encoding: pure functions from a [`CapturedEvent`] to JSON bytes and a routing key.
//!
//! No I/O and no randomness here: the event id is chosen by the caller (the shipper), so the
//! same event always encodes to the same bytes, and a redelivery carries the same id.

mod classic;
mod ecs;
mod known;
pub(crate) mod redact;
mod routing;
mod value;

use uuid::Uuid;

use crate::capture::CapturedEvent;
use crate::identity::Identity;

pub use classic::RESERVED as CLASSIC_RESERVED;
pub use redact::{Detector, RedactWith};
pub use routing::{routing_key, MAX_ROUTING_KEY_BYTES};

crate::choice::choice! {
    /// The document format written for each event. See `docs/formats.md`.
    pub enum Format: "a format", default Ecs {
        /// Elastic Common Schema field names, nested objects (the default).
        Ecs = "ecs",
        /// The python-logstash / Python logcollect layout.
        Classic = "classic",
    }
}

/// Everything besides the event itself that goes into a document.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// The event's id (`event.id` / `event_id`); the shipper uses UUID v7 from the event time.
    pub id: Uuid,
    /// Who logged it.
    pub identity: &'a Identity,
    /// Longest string value kept, in bytes; longer ones are cut at a character boundary and
    /// marked `…[truncated N bytes]`. 0 means no limit.
    pub max_field_bytes: usize,
}

/// Encodes one event as one JSON object.
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub fn encode(format: Format, event: &CapturedEvent, envelope: &Envelope<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + event.message.len());
    encode_into(format, event, envelope, &mut out);
    out
}

/// Appends one event, as one JSON object, to `out`.
pub fn encode_into(
    format: Format,
    event: &CapturedEvent,
    envelope: &Envelope<'_>,
    out: &mut Vec<u8>,
) {
    let result = match format {
        Format::Ecs => ecs::write(event, envelope, out),
        Format::Classic => {
            let fields = classic::top_level_fields(event, envelope.identity);
            serde_json::to_writer(
                &mut *out,
                &classic::Document::build(event, envelope, &fields),
            )
        }
    };
    // Writing to a Vec cannot fail and every value serialises (non-finite floats become null).
    debug_assert!(result.is_ok(), "encoding failed: {result:?}");
}

/// The `ecs` document built the general way (path list, then nesting) even when the direct
/// writer applies: the encode bench compares the two in one run.
#[cfg(feature = "internals")]
pub fn encode_ecs_general(event: &CapturedEvent, envelope: &Envelope<'_>, out: &mut Vec<u8>) {
    let fields = ecs::split_fields(event);
    let result = serde_json::to_writer(out, &ecs::Document::build(event, envelope, &fields));
    debug_assert!(result.is_ok(), "encoding failed: {result:?}");
}

/// The UTC timestamp of an event as RFC 3339 with microseconds: `2026-11-21T08:53:32.123456Z`.
pub(crate) fn timestamp(event: &CapturedEvent) -> String {
    let mut out = Vec::with_capacity(27);
    timestamp_into(event.timestamp, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `time` as [`timestamp`] writes it, without the formatting machinery (it cost the
/// shipper a twentieth of its time). RFC 3339 has four-digit years: a time before 1970 or
/// after 9999 (a broken clock) is written as the nearest of the two ends (`humantime`, which
/// the unit test compares this with, panics before 1970 and fails after 9999).
pub(crate) fn timestamp_into(time: std::time::SystemTime, out: &mut Vec<u8>) {
    // 10000-01-01T00:00:00Z
    const YEAR_10000: u64 = 253_402_300_800;
    let since = match time.duration_since(std::time::UNIX_EPOCH) {
        Ok(since) if since.as_secs() < YEAR_10000 => since,
        Ok(_) => std::time::Duration::new(YEAR_10000 - 1, 999_999_999),
        Err(_) => std::time::Duration::ZERO,
    };
    let secs = since.as_secs();
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    // Consecutive events share their day: its date is worked out once per thread and day.
    thread_local! {
        static DAY: std::cell::Cell<(u64, [u8; 10])> = const { std::cell::Cell::new((u64::MAX, [0; 10])) };
    }
    let date = DAY.with(|day| match day.get() {
        (cached, date) if cached == days => date,
        _ => {
            let date = civil_date(days);
            day.set((days, date));
            date
        }
    });
    buf[..10].copy_from_slice(&date);
    put_digits(&mut buf, 11, 2, of_day / 3600);
    put_digits(&mut buf, 14, 2, of_day / 60 % 60);
    put_digits(&mut buf, 17, 2, of_day % 60);
    put_digits(&mut buf, 20, 6, u64::from(since.subsec_micros()));
    out.extend_from_slice(&buf);
}

/// `n`'s low `width` decimal digits into `buf` at `at`, zero-padded.
fn put_digits(buf: &mut [u8], at: usize, width: usize, mut n: u64) {
    for b in buf[at..at + width].iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// `YYYY-MM-DD` of a day since 1970-01-01 (H. Hinnant's `civil_from_days`, for days ≥ 0).
fn civil_date(days: u64) -> [u8; 10] {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let mut date = *b"0000-00-00";
    put_digits(&mut date, 0, 4, year);
    put_digits(&mut date, 5, 2, month);
    put_digits(&mut date, 8, 2, day);
    date
}

/// A UUID v7 whose time part is the event's time, so ids sort like the events.
pub fn event_id(event: &CapturedEvent) -> Uuid {
    let since = event
        .timestamp
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        since.as_secs(),
        since.subsec_nanos(),
    ))
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::borrow::Cow;
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use tracing_core::Level;

    use crate::capture::{CapturedEvent, FieldValue, SpanSnapshot};
    use crate::identity::Identity;

    pub fn identity() -> Identity {
        let mut entries = BTreeMap::new();
        entries.insert("project".to_string(), "billing".to_string());
        entries.insert("application".to_string(), "worker".to_string());
        Identity {
            entries,
            hostname: "web-1".to_string(),
            pid: 4242,
            service_name: "worker".to_string(),
            service_version: None,
            service_environment: None,
            event_dataset: None,
            container_id: None,
            kubernetes: None,
        }
    }

    pub fn event(fields: Vec<(&'static str, FieldValue)>) -> CapturedEvent {
        CapturedEvent {
            timestamp: UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            level: Level::WARN,
            target: Cow::Borrowed("billing::api"),
            module_path: Some(Cow::Borrowed("billing::api")),
            file: Some(Cow::Borrowed("src/api.rs")),
            line: Some(42),
            thread_name: Some(Arc::from("main")),
            thread_id: 1,
            message: "payment accepted".to_string(),
            fields,
            spans: vec![
                Arc::new(SpanSnapshot {
                    name: "request",
                    fields: vec![
                        ("req", FieldValue::Str("r-1".into())),
                        ("depth", FieldValue::I64(1)),
                    ],
                }),
                Arc::new(SpanSnapshot {
                    name: "charge",
                    fields: vec![("depth", FieldValue::I64(2))],
                }),
            ],
            trace: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{event, identity};
    use super::*;
    use crate::capture::FieldValue;
    use serde_json::{json, Value};

    fn doc(format: Format, fields: Vec<(&'static str, FieldValue)>) -> (Value, Vec<u8>) {
        let identity = identity();
        let envelope = Envelope {
            id: Uuid::nil(),
            identity: &identity,
            max_field_bytes: 16,
        };
        let bytes = encode(format, &event(fields), &envelope);
        (serde_json::from_slice(&bytes).unwrap(), bytes)
    }

    #[test]
    fn encoding_is_pure_the_same_event_and_id_give_the_same_bytes() {
        let fields = || vec![("n", FieldValue::I64(1))];
        assert_eq!(doc(Format::Ecs, fields()).1, doc(Format::Ecs, fields()).1);
        assert_eq!(
            doc(Format::Classic, fields()).1,
            doc(Format::Classic, fields()).1
        );
    }

    #[test]
    fn ecs_merges_span_fields_innermost_first_and_event_fields_last() {
        let (d, _) = doc(Format::Ecs, vec![("req", FieldValue::Str("event".into()))]);
        assert_eq!(d["fields"], json!({"req": "event", "depth": 2}));
        assert_eq!(d["@timestamp"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(d["event"]["id"], Uuid::nil().to_string());
        assert_eq!(d["log"]["level"], "WARN");
    }

    proptest::proptest! {
        #[test]
        fn timestamps_are_written_as_humantime_writes_them(
            secs in proptest::prop_oneof![0u64..4_102_444_800, 0u64..253_402_300_800],
            nanos in 0u32..1_000_000_000,
        ) {
            let time = std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos);
            let mut out = Vec::new();
            timestamp_into(time, &mut out);
            proptest::prop_assert_eq!(
                String::from_utf8(out).unwrap(),
                humantime::format_rfc3339_micros(time).to_string()
            );
        }
    }

    #[test]
    fn timestamps_outside_four_digit_years_are_clamped_not_a_panic() {
        let written = |time| {
            let mut out = Vec::new();
            timestamp_into(time, &mut out);
            String::from_utf8(out).unwrap()
        };
        let before = std::time::UNIX_EPOCH - std::time::Duration::from_micros(1_500_000);
        assert_eq!(written(before), "1970-01-01T00:00:00.000000Z");
        let after = std::time::UNIX_EPOCH + std::time::Duration::from_secs(300_000_000_000);
        assert_eq!(written(after), "9999-12-31T23:59:59.999999Z");
    }

    #[test]
    fn strings_are_bounded_by_max_field_bytes() {
        let (d, _) = doc(Format::Ecs, vec![("long", FieldValue::Str("a".repeat(20)))]);
        assert_eq!(d["fields"]["long"], "aaaaaaaaaaaaaaaa…[truncated 4 bytes]");
        assert_eq!(d["message"], "payment accepted");
    }

    #[test]
    fn classic_uses_python_level_names_and_flat_keys() {
        let (d, _) = doc(Format::Classic, vec![("host", FieldValue::Bool(true))]);
        assert_eq!(d["levelname"], "WARNING");
        assert_eq!(d["host"], "web-1");
        assert_eq!(d["field_host"], true);
        assert_eq!(d["project"], "billing");
        assert_eq!(d["depth"], 2);
    }

    #[test]
    fn trace_ids_and_known_fields_go_to_their_ecs_places_and_classic_keys() {
        use crate::trace::{SpanId, TraceId, TraceIds};
        let identity = identity().with_service(Some("1.2.3".into()), Some("prod".into()), None);
        let mut e = event(vec![
            ("http.response.status_code", FieldValue::U64(503)),
            ("event.duration", FieldValue::U64(1_500_000)),
            ("client.ip", FieldValue::Str("127.0.0.1".into())),
            ("url.path", FieldValue::Str("/hello".into())),
            ("http.request.id", FieldValue::Str("r-9".into())),
            // a wrong type stays a user field
            ("http.request.body.bytes", FieldValue::Str("many".into())),
            ("user_agent.original", FieldValue::Bool(true)),
        ]);
        e.trace = Some(TraceIds {
            trace_id: TraceId::new(0x4bf92f3577b34da6a3ce929d0e0e4736).unwrap(),
            span_id: SpanId::new(0x3ff9a8981b7ccd5a).unwrap(),
            transaction_id: SpanId::new(0x00f067aa0ba902b7).unwrap(),
        });
        let envelope = Envelope {
            id: Uuid::nil(),
            identity: &identity,
            max_field_bytes: 0,
        };
        let d: Value = serde_json::from_slice(&encode(Format::Ecs, &e, &envelope)).unwrap();
        assert_eq!(
            d["trace"],
            json!({"id": "4bf92f3577b34da6a3ce929d0e0e4736"})
        );
        assert_eq!(d["span"], json!({"id": "3ff9a8981b7ccd5a"}));
        assert_eq!(d["transaction"], json!({"id": "00f067aa0ba902b7"}));
        assert_eq!(d["http"]["response"]["status_code"], 503);
        assert_eq!(d["http"]["request"]["id"], "r-9");
        assert_eq!(d["event"]["duration"], 1_500_000);
        assert_eq!(d["event"]["dataset"], "worker");
        assert_eq!(d["event"]["id"], Uuid::nil().to_string());
        assert_eq!(d["client"]["ip"], "127.0.0.1");
        assert_eq!(d["url"]["path"], "/hello");
        assert_eq!(
            d["user_agent"]["original"], "true",
            "a keyword takes any scalar"
        );
        assert_eq!(
            d["service"],
            json!({"name": "worker", "version": "1.2.3", "environment": "prod"})
        );
        assert_eq!(d["fields"]["http.request.body.bytes"], "many");
        assert_eq!(d["fields"]["req"], "r-1");
        assert_eq!(d["log"]["origin"]["file"]["line"], 42);

        let c: Value = serde_json::from_slice(&encode(Format::Classic, &e, &envelope)).unwrap();
        assert_eq!(c["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c["span_id"], "3ff9a8981b7ccd5a");
        assert_eq!(c["transaction_id"], "00f067aa0ba902b7");
        assert_eq!(c["http_response_status_code"], 503);
        assert_eq!(c["event_duration"], 1_500_000);
        assert_eq!(c["client_ip"], "127.0.0.1");
        assert_eq!(c["service_version"], "1.2.3");
        assert_eq!(c["service_environment"], "prod");
        assert_eq!(c["event_dataset"], "worker");
        assert_eq!(c["http.request.body.bytes"], "many");
    }

    #[test]
    fn a_panic_origin_replaces_the_event_origin() {
        let e = event(vec![
            ("error.type", FieldValue::Str("panic".into())),
            ("error.stack_trace", FieldValue::Str("bt".into())),
            (
                "log.origin.file.name",
                FieldValue::Str("src/main.rs".into()),
            ),
            ("log.origin.file.line", FieldValue::U64(7)),
        ]);
        let identity = identity();
        let envelope = Envelope {
            id: Uuid::nil(),
            identity: &identity,
            max_field_bytes: 0,
        };
        let d: Value = serde_json::from_slice(&encode(Format::Ecs, &e, &envelope)).unwrap();
        assert_eq!(
            d["log"]["origin"],
            json!({"file": {"name": "src/main.rs", "line": 7}})
        );
        assert_eq!(d["error"], json!({"type": "panic", "stack_trace": "bt"}));
        let c: Value = serde_json::from_slice(&encode(Format::Classic, &e, &envelope)).unwrap();
        assert_eq!(
            (&c["path"], &c["lineno"]),
            (&json!("src/main.rs"), &json!(7))
        );
        assert_eq!(
            (&c["error_type"], &c["stack_trace"]),
            (&json!("panic"), &json!("bt"))
        );
    }
}
