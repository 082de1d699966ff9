//! The MongoDB transport's conversion of a document from JSON (as the engine holds it) to BSON,
//! on the transport's writer task, beside what encoding the same JSON document costs on the
//! shipper thread: loadgen's event (BENCHMARKS.md, "MongoDB as the transport").
//!
//! `cargo bench --features internals,mongodb --bench mongodb`

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use logcollect::internals::{
    bson_document, encode_into, event_id, CapturedEvent, Envelope, Identity,
};
use logcollect::Format;

/// loadgen's event with trace ids.
fn event() -> CapturedEvent {
    CapturedEvent {
        trace: Some(logcollect::trace::SpanContext::new_root().ids()),
        ..common::loadgen_event()
    }
}

fn bench(c: &mut Criterion) {
    let mut entries = BTreeMap::new();
    entries.insert("project".to_string(), "loadtest".to_string());
    entries.insert("application".to_string(), "loadgen".to_string());
    let identity = Identity::detect(entries, Some("bench-host".into()), false, None);
    let event = event();
    let mut group = c.benchmark_group("mongodb");
    group.throughput(Throughput::Elements(1));
    for format in [Format::Ecs, Format::Classic] {
        let envelope = Envelope {
            id: event_id(&event),
            identity: &identity,
            max_field_bytes: 1 << 20,
        };
        let mut json = Vec::new();
        encode_into(format, &event, &envelope, &mut json);
        group.bench_function(format!("encode_json_{}", format.as_str()), |b| {
            let mut out = Vec::with_capacity(1024);
            b.iter(|| {
                out.clear();
                encode_into(format, black_box(&event), &envelope, &mut out);
                black_box(out.len())
            })
        });
        group.bench_function(format!("json_to_bson_{}", format.as_str()), |b| {
            b.iter(|| bson_document(black_box(&json), format).map(|d| d.as_bytes().len()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
