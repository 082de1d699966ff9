//! The logging call with rate limiting on (and not limiting) against the same call with it
//! off, interleaved: rounds of calls alternate between the two subscribers, so load from other
//! processes that comes and goes weighs on both alike. Prints each side's median time per call
//! over the rounds and the median of the rounds' ratios.
//!
//! `cargo bench --bench rate_limit`
//!
//! Same event shape and queue as `benches/logging.rs` (a span with one field, an event with
//! three fields; a 1024-event queue with `drop_oldest`, no broker). A third side, rate limiting
//! on with 100 events per second, shows what a suppressed call costs.
//!
//! Then, when a broker answers (`LOGCOLLECT_TEST_AMQP_URL`, else the local one), the issue's
//! flood on the real clock: 1,000,000 events from one callsite limited to 100 per 1 s window,
//! spread over a few seconds, beside two other callsites (one of them ERROR); everything is
//! read back from the broker and counted per window.

use std::hint::black_box;
use std::time::{Duration, Instant};

use logcollect::{Guard, Overflow};
use tracing_subscriber::layer::SubscriberExt;

const ROUNDS: usize = 101;
const CALLS: u64 = 20_000;

fn log_one(i: u64, payload: &str) {
    let span = tracing::info_span!("loadgen_batch", worker = 1u64);
    let _entered = span.enter();
    tracing::info!(seq_no = i, worker = 1u64, payload, "load event");
}

fn subscriber(rate_limit: u64) -> (tracing::Dispatch, Guard) {
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
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    (dispatch, guard)
}

/// Nanoseconds per call over `CALLS` calls through `dispatch`.
fn round(dispatch: &tracing::Dispatch, payload: &str, next: &mut u64) -> f64 {
    tracing::dispatcher::with_default(dispatch, || {
        let start = Instant::now();
        for _ in 0..CALLS {
            *next += 1;
            log_one(black_box(*next), payload);
        }
        start.elapsed().as_nanos() as f64 / CALLS as f64
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that names another bench skips this one.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    if filter.is_some_and(|f| !"rate_limit".contains(&f)) {
        return;
    }
    let payload = "x".repeat(64);
    let sides = [
        ("off", subscriber(0)),
        // Far more than a call per second can reach: every event passes the check.
        ("on_not_limiting", subscriber(1_000_000_000)),
        ("on_flood_100_per_s", subscriber(100)),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); sides.len()];
    let mut next = 0;
    // One round each to warm up, not counted.
    for (_, (dispatch, _)) in &sides {
        round(dispatch, &payload, &mut next);
    }
    for _ in 0..ROUNDS {
        for (i, (_, (dispatch, _))) in sides.iter().enumerate() {
            times[i].push(round(dispatch, &payload, &mut next));
        }
    }
    println!("rate_limit: {ROUNDS} interleaved rounds of {CALLS} calls per side");
    let off = median(times[0].clone());
    for (i, (name, _)) in sides.iter().enumerate() {
        let ratios: Vec<f64> = times[i].iter().zip(&times[0]).map(|(t, o)| t / o).collect();
        println!(
            "  {name:<20} median {:>8.1} ns/call   median of round ratios to off {:.3}x   (ratio of medians {:.3}x)",
            median(times[i].clone()),
            median(ratios),
            median(times[i].clone()) / off
        );
    }
    for (_, (_, guard)) in sides {
        let _ = guard.shutdown(Duration::ZERO);
    }
    let url = std::env::var("LOGCOLLECT_TEST_AMQP_URL")
        .unwrap_or_else(|_| logcollect_test_support::DEFAULT_URL.to_string());
    if logcollect_test_support::reachable("127.0.0.1:5672")
        || url != logcollect_test_support::DEFAULT_URL
    {
        flood(&url);
    } else {
        println!("flood: no broker on 127.0.0.1:5672, skipped");
    }
}

/// The flood on the real clock, read back from the broker.
fn flood(url: &str) {
    use lapin::options::{
        BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    };
    use lapin::types::{FieldTable, ShortString};

    const FLOOD: u64 = 1_000_000;
    let exchange = logcollect_test_support::unique("logcollect-bench-rl");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (connection, channel, queue) = runtime.block_on(async {
        let connection = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
            .await
            .expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        channel
            .exchange_declare(
                ShortString::from(exchange.as_str()),
                lapin::ExchangeKind::Topic,
                // As the shipper declares it; deleted at the end.
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("exchange");
        let queue = channel
            .queue_declare(
                ShortString::from(""),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue")
            .name()
            .clone();
        channel
            .queue_bind(
                queue.clone(),
                ShortString::from(exchange.as_str()),
                ShortString::from("#"),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        (connection, channel, queue)
    });

    let (layer, guard) = logcollect::builder()
        .broker_uri(url)
        .exchange(&exchange)
        .configure(|c| {
            c.panic_hook = false;
            c.rate_limit.events = 100;
            c.rate_limit.window = Duration::from_secs(1);
        })
        .build()
        .expect("build");
    let start = Instant::now();
    let logged =
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            for i in 0..FLOOD {
                tracing::info!(target: "rl_flood", seq_no = i, "hot loop");
                if i % 10_000 == 0 {
                    tracing::info!(target: "rl_other", seq_no = i, "other");
                    tracing::error!(target: "rl_errors", seq_no = i, "exempt");
                    // Spread over a few windows.
                    std::thread::sleep(Duration::from_millis(40));
                }
            }
            let logged = start.elapsed();
            // The last window's summary goes out with the first event of a later window.
            std::thread::sleep(Duration::from_millis(1_100));
            tracing::info!(target: "rl_closing", "closing");
            logged
        });
    let flushed = guard.flush(Duration::from_secs(60));
    let stats = guard.stats();
    let docs: Vec<serde_json::Value> = runtime.block_on(async {
        let mut docs = Vec::new();
        while docs.len() < stats.confirmed as usize {
            match channel
                .basic_get(queue.clone(), BasicGetOptions { no_ack: true })
                .await
                .expect("basic.get")
            {
                Some(message) => match serde_json::from_slice(&message.delivery.data) {
                    Ok(serde_json::Value::Array(items)) => docs.extend(items),
                    Ok(doc) => docs.push(doc),
                    Err(e) => panic!("not JSON: {e}"),
                },
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let _ = channel
            .exchange_delete(
                ShortString::from(exchange.as_str()),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await;
        let _ = connection.close(200, ShortString::from("done")).await;
        docs
    });
    let _ = guard.shutdown(Duration::from_secs(5));

    // Per second of `@timestamp` (the windows are whole seconds of the wall clock).
    let mut per_window: std::collections::BTreeMap<String, [u64; 3]> = Default::default();
    let mut summaries = 0;
    let mut summarised = 0;
    let mut others = [0u64; 2];
    for doc in &docs {
        let second = doc["@timestamp"].as_str().unwrap_or("")[..19].to_string();
        match doc["log"]["logger"].as_str().unwrap_or("") {
            "rl_flood" => per_window.entry(second).or_default()[0] += 1,
            "logcollect::rate_limit" => {
                summaries += 1;
                summarised += doc["fields"]["suppressed"].as_u64().unwrap_or(0);
                per_window.entry(second).or_default()[1] += 1;
            }
            "rl_other" => others[0] += 1,
            "rl_errors" => others[1] += 1,
            _ => {}
        }
    }
    println!(
        "flood: {FLOOD} events from one callsite (limit 100 per 1 s window) in {:.2} s, flush complete: {}",
        logged.as_secs_f64(),
        flushed.is_complete()
    );
    println!(
        "  shipped {} documents; dropped.rate_limited {}; summaries {summaries} saying {summarised} suppressed",
        docs.len(),
        stats.dropped.rate_limited
    );
    println!(
        "  other callsites: rl_other {}/100, rl_errors (ERROR, exempt) {}/100",
        others[0], others[1]
    );
    for (second, [flood, summary, _]) in per_window {
        println!("  {second}  flood events {flood:>4}  summaries {summary}");
    }
}
