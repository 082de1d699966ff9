//! Encoding cost per event, on the shipper thread (the application's thread never encodes).
//!
//! `cargo bench --bench encode`

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::SystemTime;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use logcollect::internals::{
    encode_into, event_id, CapturedEvent, Envelope, FieldValue, Identity, Redactor, SpanSnapshot,
};
use logcollect::Format;

fn event() -> CapturedEvent {
    CapturedEvent {
        timestamp: SystemTime::now(),
        level: tracing::Level::INFO,
        target: Cow::Borrowed("loadgen"),
        module_path: Some(Cow::Borrowed("loadgen")),
        file: Some(Cow::Borrowed("examples/loadgen.rs")),
        line: Some(90),
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

fn bench(c: &mut Criterion) {
    let mut entries = BTreeMap::new();
    entries.insert("project".to_string(), "loadtest".to_string());
    entries.insert("application".to_string(), "loadgen".to_string());
    let identity = Identity::detect(entries, Some("bench-host".into()), false, None);
    let event = event();
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    for format in [Format::Ecs, Format::Classic] {
        bench_encode(
            &mut group,
            format.as_str(),
            &identity,
            &event,
            |e, env, out| encode_into(format, e, env, out),
        );
    }
    // The same `ecs` document built the general way (a path list, then nested): the direct
    // writer's gain, in this run.
    bench_encode(
        &mut group,
        "ecs_general",
        &identity,
        &event,
        logcollect::internals::encode_ecs_general,
    );
    // What the shipper does: redaction (the default rules) before encoding. `redacted` has
    // secrets to replace (a copy of the event is made); `clean` has none (nothing copied).
    let rules = [
        ("mask", Redactor::defaults()),
        (
            "hash",
            Redactor::new(
                logcollect::internals::REDACT_DEFAULT_FIELDS.iter().copied(),
                logcollect::Detector::ALL,
                logcollect::RedactWith::Hash,
                Some("bench-key"),
            ),
        ),
    ];
    let mut secret = event.clone();
    secret.message = "login by alice with Bearer abcdefghijklmnop".to_string();
    secret
        .fields
        .push(("password", FieldValue::Str("hunter2".into())));
    // A clean message with what the pair detectors look at (`=`, `:`, digits, a URL): what
    // an application logging `key=value` pairs pays when nothing is secret.
    let mut pairs = event.clone();
    pairs.message = "GET https://shop.example/api/orders/88231 status=200 duration_ms=12 \
                     user=alice tokenizer=fast passenger=3 at 2024-01-15T12:30:45.123Z \
                     request_id=550e8400-e29b-41d4-a716-446655440000"
        .to_string();
    for (name, redactor) in &rules {
        for (kind, event) in [
            ("clean", &event),
            ("redacted", &secret),
            ("pairs_clean", &pairs),
        ] {
            let name = format!("ecs+redact_{name}_{kind}");
            bench_encode(&mut group, &name, &identity, event, |e, env, out| {
                encode_into(Format::Ecs, &redactor.event(e), env, out)
            });
        }
    }
    bench_encode(
        &mut group,
        "ecs_secret_event_unredacted",
        &identity,
        &secret,
        |e, env, out| encode_into(Format::Ecs, e, env, out),
    );
    bench_encode(
        &mut group,
        "ecs_pairs_event_unredacted",
        &identity,
        &pairs,
        |e, env, out| encode_into(Format::Ecs, e, env, out),
    );
    group.finish();
}

/// Benches `encode` on `event` as the shipper calls it: a fresh event id each time, one reused
/// output buffer.
fn bench_encode(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    identity: &Identity,
    event: &CapturedEvent,
    encode: impl Fn(&CapturedEvent, &Envelope<'_>, &mut Vec<u8>),
) {
    let mut out = Vec::with_capacity(1024);
    group.bench_function(name, |b| {
        b.iter(|| {
            out.clear();
            let envelope = Envelope {
                id: event_id(event),
                identity,
                max_field_bytes: 1 << 20,
            };
            encode(black_box(event), &envelope, &mut out);
            black_box(out.len())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
