//! Encoding cost per event, on the shipper thread (the application's thread never encodes).
//!
//! `cargo bench --features internals --bench encode`; with `LOGCOLLECT_BENCH_CPU_TIME=1`, the
//! bench thread's CPU time instead of wall time (on a shared machine, time spent waiting for a
//! core is then not counted).

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkGroup, Criterion, Throughput};
use logcollect::internals::{
    encode_into, event_id, CapturedEvent, Envelope, FieldValue, Identity, Redactor,
};
use logcollect::Format;

fn event() -> CapturedEvent {
    common::loadgen_event()
}

fn bench<M: Measurement>(c: &mut Criterion<M>) {
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
    // `mask_no_pairs`: the same rules without the `secret_pair` and `basic` detectors, the
    // budget of the pairs message in this run (what it cost before those detectors).
    let without_pairs: Vec<logcollect::Detector> = logcollect::Detector::ALL
        .iter()
        .copied()
        .filter(|d| {
            !matches!(
                d,
                logcollect::Detector::SecretPair | logcollect::Detector::Basic
            )
        })
        .collect();
    let rules = [
        ("mask", Redactor::defaults()),
        (
            "mask_no_pairs",
            Redactor::new(
                logcollect::internals::REDACT_DEFAULT_FIELDS.iter().copied(),
                &without_pairs,
                logcollect::RedactWith::Mask,
                None,
            ),
        ),
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
fn bench_encode<M: Measurement>(
    group: &mut BenchmarkGroup<'_, M>,
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

/// The CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
struct ThreadCpuTime;

fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_time()
    }

    fn end(&self, start: Duration) -> Duration {
        thread_cpu_time().saturating_sub(start)
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds, as for wall time.
        static WALL_TIME: WallTime = WallTime;
        WALL_TIME.formatter()
    }
}

fn main() {
    if std::env::var_os("LOGCOLLECT_BENCH_CPU_TIME").is_some_and(|v| v == "1") {
        let mut c = Criterion::default()
            .with_measurement(ThreadCpuTime)
            .configure_from_args();
        bench(&mut c);
        c.final_summary();
    } else {
        let mut c = Criterion::default().configure_from_args();
        bench(&mut c);
        c.final_summary();
    }
}
