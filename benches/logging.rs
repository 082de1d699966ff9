//! The logging call's own cost — what the application's thread pays per event — against
//! tracing-subscriber's JSON `fmt` layer writing to `io::sink`, in the same run, with the same
//! event shape: a span with one field, an event with three fields and a message.
//!
//! `cargo bench --bench logging`
//!
//! Rate limiting (`rate_limit.*`, off by default) is measured in the same run: on with a limit
//! the bench never reaches (the cost of the check), and on with a limit of 100 per second (a
//! flood: nearly every call is suppressed).
//!
//! logcollect's layer snapshots the event and queues it; encoding and delivery happen on the
//! shipper's thread. So that the bench measures the logging call and not a full queue, the
//! queue is small and `overflow = drop_oldest`: each call also frees the event it pushes out,
//! which the shipper would otherwise free — a cost logcollect's figure includes and the real
//! logging call does not pay. No broker is reachable (nothing is sent).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use logcollect::Overflow;
use tracing_subscriber::layer::SubscriberExt;

fn log_one(i: u64, payload: &str) {
    let span = tracing::info_span!("loadgen_batch", worker = 1u64);
    let _entered = span.enter();
    tracing::info!(seq_no = i, worker = 1u64, payload, "load event");
}

/// Measures logcollect's layer as `name`, with `rate_limit.events = rate_limit` (0: off).
fn bench_logcollect(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    rate_limit: u64,
    payload: &str,
) {
    let (layer, guard) = logcollect::builder()
        .broker_uri("amqp://guest:guest@127.0.0.1:1/%2f")
        .identity("project", "loadtest")
        .identity("application", "loadgen")
        .overflow(Overflow::DropOldest)
        .configure(|c| {
            c.queue_capacity = 1024;
            c.panic_hook = false;
            c.rate_limit.events = rate_limit;
        })
        .build()
        .expect("build");
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let mut i = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                log_one(black_box(i), payload)
            })
        });
    });
    let _ = guard.shutdown(Duration::ZERO);
}

fn bench(c: &mut Criterion) {
    let payload = "x".repeat(64);
    let mut group = c.benchmark_group("logging_call");
    group.measurement_time(Duration::from_secs(5));

    bench_logcollect(&mut group, "logcollect", 0, &payload);
    // Far more than a call per second can reach: every event passes the check.
    bench_logcollect(
        &mut group,
        "logcollect_rate_limit_not_limiting",
        1_000_000_000,
        &payload,
    );
    // 100 per second: a flood, nearly every call suppressed.
    bench_logcollect(&mut group, "logcollect_rate_limit_flood", 100, &payload);

    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::sink),
    );
    tracing::subscriber::with_default(subscriber, || {
        let mut i = 0u64;
        group.bench_function("fmt_json_to_sink", |b| {
            b.iter(|| {
                i += 1;
                log_one(black_box(i), &payload)
            })
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
