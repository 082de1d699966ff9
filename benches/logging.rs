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
//! shipper's thread. So that the steady-state case (`logcollect`) measures the logging call and
//! not a full queue, its queue is small and `overflow = drop_oldest`: each call also frees the
//! event it pushes out, which the shipper would otherwise free — a cost logcollect's figure
//! includes and the real logging call does not pay. No broker is reachable (nothing is sent).
//!
//! The sustained burst (issue 22): loops of [`BURST`] calls while the shipper delivers to the
//! real broker at the same time (`LOGCOLLECT_TEST_AMQP_URL`, else 127.0.0.1:5672), the queue
//! large enough that nothing drops; only the loop is timed, and the shipper delivers everything
//! before the next loop starts. `logcollect_burst` ships with the defaults;
//! `logcollect_burst_slow_shipper` with one 16-event message in flight at a time (a shipper
//! slower than the logger: the queue holds a large part of each burst at its end, printed).
//! `fmt_json_to_sink_burst` times the JSON formatter over the same loops. Each burst case also
//! prints the logging thread's CPU time per call. Without a broker the burst cases are skipped
//! (said on stderr).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
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

/// Calls per burst: the loop of 100,000 events.
const BURST: u64 = 100_000;

/// Runs `iters` calls in loops of at most [`BURST`], timing only the loops; `settle` runs
/// (untimed) after each loop. Adds the loops' CPU time on this thread to `cpu`: on a 2-core
/// machine the shipper, the broker and other processes take turns with the logging thread, and
/// wall time per call includes those turns.
fn bursts(
    iters: u64,
    next: &mut u64,
    payload: &str,
    cpu: &mut Duration,
    settle: &mut dyn FnMut(),
) -> Duration {
    let mut timed = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let calls = left.min(BURST);
        let (start, start_cpu) = (Instant::now(), thread_cpu());
        for _ in 0..calls {
            *next += 1;
            log_one(black_box(*next), payload);
        }
        timed += start.elapsed();
        *cpu += thread_cpu().saturating_sub(start_cpu);
        settle();
        left -= calls;
    }
    timed
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The real broker for the bursts: a throw-away exchange and an exclusive queue bound to it
/// that keeps at most 64 MiB (oldest dropped), so that the broker routes and confirms every
/// message and nothing piles up; both go away at the end.
struct Broker {
    url: String,
    exchange: String,
    runtime: tokio::runtime::Runtime,
    connection: lapin::Connection,
}

impl Broker {
    fn open() -> Option<Broker> {
        use lapin::options::QueueDeclareOptions;
        use lapin::types::{AMQPValue, FieldTable};

        let url = std::env::var("LOGCOLLECT_TEST_AMQP_URL")
            .unwrap_or_else(|_| logcollect_test_support::DEFAULT_URL.to_string());
        if url == logcollect_test_support::DEFAULT_URL
            && !logcollect_test_support::reachable("127.0.0.1:5672")
        {
            return None;
        }
        let exchange = logcollect_test_support::unique("logcollect-bench-burst");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // Every message routed (and so confirmed) into a queue that drops its oldest beyond
        // 64 MiB, gone with the connection.
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-max-length-bytes".into(),
            AMQPValue::LongLongInt(64 << 20),
        );
        arguments.insert(
            "x-overflow".into(),
            AMQPValue::LongString("drop-head".into()),
        );
        let queue = logcollect_test_support::unique("logcollect-bench-burst-q");
        let (connection, _channel) =
            runtime.block_on(logcollect_test_support::declare_bound_queue(
                &logcollect_test_support::Client::plain(url.clone()),
                &exchange,
                &queue,
                "#",
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                arguments,
            ));
        Some(Broker {
            url,
            exchange,
            runtime,
            connection,
        })
    }

    /// A layer shipping to this broker, its queue large enough for a whole burst.
    fn layer(&self, slow: bool) -> (logcollect::LogcollectLayer, logcollect::Guard) {
        logcollect::builder()
            .broker_uri(&self.url)
            .exchange(&self.exchange)
            .identity("project", "loadtest")
            .identity("application", "loadgen")
            .overflow(Overflow::DropNewest)
            .configure(|c| {
                c.queue_capacity = 2 * BURST as usize;
                c.panic_hook = false;
                if slow {
                    c.batch.max_events = 16;
                    c.confirm_window = 1;
                }
            })
            .build()
            .expect("build")
    }

    fn close(self) {
        let _ = self.runtime.block_on(async {
            if let Ok(channel) = self.connection.create_channel().await {
                let _ = channel
                    .exchange_delete(
                        lapin::types::ShortString::from(self.exchange.as_str()),
                        lapin::options::ExchangeDeleteOptions::default(),
                    )
                    .await;
            }
            self.connection
                .close(200, lapin::types::ShortString::from("done"))
                .await
        });
    }
}

/// Measures bursts through a layer shipping to `broker` as `name`.
fn bench_burst(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    broker: &Broker,
    name: &str,
    slow: bool,
    payload: &str,
) {
    let (layer, guard) = broker.layer(slow);
    let before = guard.stats();
    let subscriber = tracing_subscriber::registry().with(layer);
    let mut deepest = 0;
    let (mut wall, mut cpu, mut calls) = (Duration::ZERO, Duration::ZERO, 0);
    tracing::subscriber::with_default(subscriber, || {
        let mut next = 0u64;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let timed = bursts(iters, &mut next, payload, &mut cpu, &mut || {
                    deepest = deepest.max(guard.stats().queue_depth);
                    let flushed = guard.flush(Duration::from_secs(120));
                    assert!(flushed.is_complete(), "{name}: the shipper did not deliver");
                });
                wall += timed;
                calls += iters;
                timed
            })
        });
    });
    eprintln!(
        "{name}: over all {calls} calls (warm-up included), {:.0} ns per call of wall time, {:.0} ns of the logging thread's CPU time",
        wall.as_nanos() as f64 / calls.max(1) as f64,
        cpu.as_nanos() as f64 / calls.max(1) as f64
    );
    let stats = guard.stats();
    assert_eq!(
        stats.dropped.total(),
        before.dropped.total(),
        "{name}: events were dropped"
    );
    eprintln!(
        "{name}: {} events confirmed; queue depth at the end of a burst: up to {deepest}",
        stats.confirmed
    );
    let _ = guard.shutdown(Duration::from_secs(5));
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

    // The bursts: each sample is whole loops of `BURST` calls (flat sampling), and the shipper
    // delivers between loops, which takes longer than the loops themselves.
    let mut group = c.benchmark_group("logging_burst");
    group
        .sampling_mode(criterion::SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    match Broker::open() {
        Some(broker) => {
            bench_burst(&mut group, &broker, "logcollect_burst", false, &payload);
            bench_burst(
                &mut group,
                &broker,
                "logcollect_burst_slow_shipper",
                true,
                &payload,
            );
            broker.close();
        }
        None => eprintln!(
            "logging_burst: no broker on 127.0.0.1:5672 (scripts/test starts one; or set \
             LOGCOLLECT_TEST_AMQP_URL): the logcollect bursts are skipped"
        ),
    }
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::sink),
    );
    let (mut next, mut cpu, mut calls) = (0u64, Duration::ZERO, 0);
    tracing::subscriber::with_default(subscriber, || {
        group.bench_function("fmt_json_to_sink_burst", |b| {
            b.iter_custom(|iters| {
                calls += iters;
                bursts(iters, &mut next, &payload, &mut cpu, &mut || {})
            })
        });
    });
    eprintln!(
        "fmt_json_to_sink_burst: over all {calls} calls (warm-up included), {:.0} ns of the logging thread's CPU time per call",
        cpu.as_nanos() as f64 / calls.max(1) as f64
    );
    group.finish();
}

/// `LOGCOLLECT_BENCH_ONE_BURST=default|slow`: one burst of [`BURST`] calls (after one to warm
/// up), both delivered, then exit: what callgrind counts per event on the logging thread
/// (`log_one`) and on the shipper's thread.
fn one_burst(which: &str) {
    let broker = Broker::open().expect("one burst needs a broker on 127.0.0.1:5672");
    let (layer, guard) = broker.layer(which == "slow");
    let payload = "x".repeat(64);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let mut next = 0;
        let mut settle = || assert!(guard.flush(Duration::from_secs(120)).is_complete());
        let mut cpu = Duration::ZERO;
        let warm = bursts(BURST, &mut next, &payload, &mut cpu, &mut settle);
        cpu = Duration::ZERO;
        let timed = bursts(BURST, &mut next, &payload, &mut cpu, &mut settle);
        eprintln!(
            "one burst ({which}): {:.0} ns per call, {:.0} ns of CPU (warm-up burst {:.0} ns); {} events confirmed",
            timed.as_nanos() as f64 / BURST as f64,
            cpu.as_nanos() as f64 / BURST as f64,
            warm.as_nanos() as f64 / BURST as f64,
            guard.stats().confirmed
        );
    });
    let _ = guard.shutdown(Duration::from_secs(5));
    broker.close();
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(which) = std::env::var("LOGCOLLECT_BENCH_ONE_BURST") {
        return one_burst(&which);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
