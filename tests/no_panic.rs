//! No panic on any input, by property: arbitrary events through redaction and both encoders
//! always give one valid UTF-8 JSON object that parses back (control characters, text decoded
//! from invalid UTF-8, `Debug` output of arbitrary bytes, 1 MB strings, thousands of fields,
//! deep span stacks); arbitrary values through the real capture layer never panic; arbitrary
//! configuration values give an error or a valid configuration, never a panic.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use logcollect::internals::{
    encode, CapturedEvent, ErrorValue, FieldValue, Identity, Redactor, SpanSnapshot,
};
use logcollect::{Config, Format};
use proptest::prelude::*;
use tracing_subscriber::layer::SubscriberExt;

/// Field names are `&'static str` in a captured event; a test may leak a few.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Text of every kind: arbitrary chars (controls included), lossy-decoded bytes, `Debug` of
/// bytes, and secrets-looking text.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| format!("{b:?}")),
        "[\\x00-\\x1f\\x7f\"\\\\]{0,32}",
        "(Bearer |eyJ|amqp://u:p@|AKIA|4111 1111 1111 111|://|@|:)*[A-Za-z0-9 .:/@_-]{0,40}",
    ]
}

fn value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<i64>().prop_map(FieldValue::I64),
        any::<u64>().prop_map(FieldValue::U64),
        any::<i128>().prop_map(FieldValue::I128),
        any::<u128>().prop_map(FieldValue::U128),
        any::<f64>().prop_map(FieldValue::F64),
        any::<bool>().prop_map(FieldValue::Bool),
        text().prop_map(FieldValue::Str),
        (text(), proptest::collection::vec(text(), 0..3)).prop_map(|(message, causes)| {
            FieldValue::Error(ErrorValue {
                message,
                type_name: "E".into(),
                causes,
            })
        }),
    ]
}

fn fields(max: usize) -> impl Strategy<Value = Vec<(&'static str, FieldValue)>> {
    proptest::collection::vec((text(), value()), 0..max)
        .prop_map(|v| v.into_iter().map(|(n, v)| (leak(n), v)).collect())
}

fn event() -> impl Strategy<Value = CapturedEvent> {
    (
        text(),
        text(),
        fields(12),
        proptest::collection::vec((text(), fields(4)), 0..8),
        any::<u64>(),
    )
        .prop_map(|(message, target, fields, spans, micros)| CapturedEvent {
            timestamp: UNIX_EPOCH + Duration::from_micros(micros % (1 << 52)),
            level: tracing::Level::INFO,
            target: Cow::Owned(target),
            module_path: None,
            file: None,
            line: Some(1),
            thread_name: Some(Arc::from("t")),
            thread_id: 1,
            message,
            fields,
            spans: spans
                .into_iter()
                .map(|(name, fields)| {
                    Arc::new(SpanSnapshot {
                        name: leak(name),
                        fields,
                    })
                })
                .collect(),
            trace: None,
        })
}

fn identity(entries: BTreeMap<String, String>) -> Identity {
    Identity {
        entries,
        hostname: "h".into(),
        pid: 1,
        service_name: "s".into(),
        service_version: None,
        service_environment: None,
        event_dataset: None,
        container_id: None,
        kubernetes: None,
    }
}

/// One valid UTF-8 JSON object per event, whatever the event.
fn check(event: &CapturedEvent, identity: &Identity, max_field_bytes: usize) {
    for redactor in [Redactor::defaults(), Redactor::none()] {
        let redacted = redactor.event(event);
        for format in [Format::Ecs, Format::Classic] {
            let envelope = logcollect::internals::Envelope {
                id: uuid::Uuid::nil(),
                identity,
                max_field_bytes,
            };
            let bytes = encode(format, &redacted, &envelope);
            let text = std::str::from_utf8(&bytes).expect("valid UTF-8");
            let doc: serde_json::Value = serde_json::from_str(text).expect("parses back");
            assert!(doc.is_object(), "one object: {text}");
            assert!(doc["message"].is_string(), "{text}");
            // One document: nothing after the object.
            let mut stream =
                serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
            assert!(stream.next().is_some() && stream.next().is_none());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_event_encodes_to_one_valid_json_object(
        event in event(),
        entries in proptest::collection::btree_map(text(), text(), 0..4),
        max in prop_oneof![Just(0usize), 1usize..64],
    ) {
        check(&event, &identity(entries), max);
    }

    #[test]
    fn redaction_never_panics_and_leaves_text_without_secrets_alone(s in text()) {
        let r = Redactor::defaults();
        let out = r.text(&s);
        if !out.contains("[REDACTED") {
            prop_assert_eq!(out.as_ref(), s.as_str());
        }
        let _ = logcollect::internals::mask_uri_passwords(&s);
    }

    #[test]
    fn any_configuration_value_is_an_error_or_a_valid_config(
        pairs in proptest::collection::vec(
            (prop_oneof![
                proptest::sample::select(logcollect::CONFIG_KEYS.to_vec()).prop_map(str::to_string),
                Just("spool__max_bytes".to_string()),
                Just("spool__dir".to_string()),
                Just("identity__project".to_string()),
                "[a-z_]{1,12}",
            ], prop_oneof![
                any::<String>(),
                "[0-9]{0,25}",
                Just("18446744073709551615".to_string()),
                Just(",".to_string()),
                Just("amqps://a/%2f,,amqp://b".to_string()),
                "(amqps?://)?[a-z:@/%0-9,]{0,30}",
                "(mask|hash|bearer, jwt|external|plain|ecs|true|block)",
            ]),
            0..6,
        )
    ) {
        let vars = pairs
            .into_iter()
            .filter(|(_, v)| !v.contains('\0'))
            .map(|(k, v)| (format!("LOGCOLLECT_{}", k.to_uppercase()), v));
        if let Ok(config) = Config::from_vars(vars) {
            prop_assert!(config.validate().is_ok());
            // Debug never panics.
            let _ = format!("{config:?}");
        }
    }

    /// Passwords of broker URIs (and the redaction hash key) given with arbitrary other values
    /// never show in the configuration's `Debug`, nor in an error, whichever way it is shown.
    #[test]
    fn no_configuration_output_shows_a_password(
        uris in proptest::collection::vec(
            "amqps?://[a-z]{1,6}:S3CRETpw[a-z0-9]{0,4}@[a-z0-9.]{1,10}(:[0-9]{1,5})?(/%2f|/v)?",
            1..3,
        ),
        elsewhere in proptest::sample::select(vec!["level", "exchange", "routing_key", "hostname", "tls_server_name", "queue_capacity", "spool__dir"]),
        pairs in proptest::collection::vec(
            (
                proptest::sample::select(logcollect::CONFIG_KEYS.to_vec()).prop_map(str::to_string),
                prop_oneof![any::<String>(), "[0-9]{0,25}", "(mask|hash|ecs|true|block)"],
            ),
            0..4,
        )
    ) {
        const SECRET: &str = "S3CRETpw";
        let vars: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(k, v)| !v.contains('\0') && !v.contains(SECRET) && k != "broker_uri" && k != "redact_hash_key")
            .map(|(k, v)| (format!("LOGCOLLECT_{}", k.to_uppercase()), v))
            .chain([
                ("LOGCOLLECT_BROKER_URI".to_string(), uris.join(",")),
                ("LOGCOLLECT_REDACT_HASH_KEY".to_string(), format!("{SECRET}-key")),
                // A URI with a password where another setting's value goes.
                (format!("LOGCOLLECT_{}", elsewhere.to_uppercase()), uris[0].clone()),
            ])
            .collect();
        let shown = match Config::from_vars(vars.clone()) {
            Ok(config) => {
                let mut shown = format!("{config:?}\n{config:#?}");
                if let Err(e) = config.validate() {
                    shown += &format!("\n{e}\n{e:?}");
                }
                shown
            }
            Err(e) => format!("{e}\n{e:?}"),
        };
        prop_assert!(!shown.contains(SECRET), "{vars:?} shows a password: {shown}");
    }
}

#[test]
fn huge_events_encode_to_one_valid_json_object() {
    let big = "é\u{0}\u{1f}\"\\".repeat(200_000); // ~1.2 MB with controls and quotes
    let many: Vec<(&'static str, FieldValue)> = (0..5000)
        .map(|i| (leak(format!("f{i}")), FieldValue::Str(format!("v{i}\u{7}"))))
        .collect();
    let deep: Vec<Arc<SpanSnapshot>> = (0..1000)
        .map(|i| {
            Arc::new(SpanSnapshot {
                name: "s",
                fields: vec![(leak(format!("depth{i}")), FieldValue::U64(i))],
            })
        })
        .collect();
    let event = CapturedEvent {
        timestamp: UNIX_EPOCH,
        level: tracing::Level::ERROR,
        target: Cow::Borrowed("t"),
        module_path: None,
        file: None,
        line: None,
        thread_name: None,
        thread_id: 0,
        message: big.clone(),
        fields: many
            .into_iter()
            .chain([("big", FieldValue::Str(big))])
            .collect(),
        spans: deep,
        trace: None,
    };
    check(&event, &identity(BTreeMap::new()), 0);
    check(&event, &identity(BTreeMap::new()), 1 << 20);
}

#[derive(Debug)]
#[allow(dead_code)]
struct Odd(Vec<u8>, String);

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The real layer captures whatever values it is given (the broker is unreachable here: only
    /// capture runs); `log` records too, through the bridge's `tracing-log` conversion.
    #[test]
    fn the_capture_layer_takes_any_value(
        s in text(),
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        n in any::<i64>(),
        f in any::<f64>(),
        depth in 0usize..64,
    ) {
        let (layer, guard) = logcollect::builder()
            .broker_uri("amqp://guest:S3CRETpw@127.0.0.1:1/%2f")
            .configure(|c| {
                c.connect_timeout = Duration::from_millis(200);
                c.queue_capacity = 16;
            })
            .build()
            .expect("build");
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let spans: Vec<_> = (0..depth)
                .map(|i| tracing::info_span!("deep", i, s = s.as_str()).entered())
                .collect();
            let odd = Odd(bytes.clone(), s.clone());
            tracing::info!(s = s.as_str(), n, f, odd = ?odd, bytes = ?bytes.as_slice(), "{s}");
            tracing::error!(error = &std::io::Error::other(s.clone()) as &(dyn std::error::Error + 'static));
            tracing_log::format_trace(
                &log::Record::builder()
                    .args(format_args!("{s}{bytes:?}"))
                    .level(log::Level::Warn)
                    .target("odd")
                    .build(),
            ).expect("log record");
            drop(spans);
        });
        // The three events: the `info!`, the `error!` and the `log` record.
        let stats = guard.stats();
        prop_assert_eq!(stats.accepted, 3, "{}", stats);
        // The password of the broker URI shows nowhere in the counters or the last error.
        prop_assert!(!format!("{stats} {stats:?}").contains("S3CRETpw"), "{:?}", stats);
        let _ = guard.shutdown(Duration::ZERO);
    }
}
