//! What the layer captures and how it composes: `log` records, filters and `fmt` layers, the
//! AMQP client's own events, many threads. Real RabbitMQ.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{distinct_ints, documents, Capture};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::EnvFilter;

fn build(capture: &Capture) -> (logcollect::LogcollectLayer, logcollect::Guard) {
    logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(capture.exchange.clone())
        .identity("application", "capture-test")
        .build()
        .expect("build")
}

#[test]
fn log_crate_records_keep_their_target_level_file_and_line() {
    common::log_bridge();
    let mut capture = Capture::fresh();
    let (layer, guard) = build(&capture);
    let line =
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let line = line!() + 1;
            log::warn!(target: "legacy::db", "pool exhausted: {} waiting", 3);
            log::error!("plain record");
            line
        });
    assert!(guard.flush(Duration::from_secs(20)).is_complete());
    let messages = capture.receive(2, Duration::from_secs(10));
    let docs = documents(&messages);
    assert_eq!(docs.len(), 2);
    assert_eq!(messages[0].routing_key, "logstash.legacy.db");
    assert_eq!(docs[0]["log"]["logger"], "legacy::db");
    assert_eq!(docs[0]["log"]["level"], "WARN");
    assert_eq!(docs[0]["message"], "pool exhausted: 3 waiting");
    assert_eq!(docs[0]["log"]["origin"]["file"]["name"], "tests/capture.rs");
    assert_eq!(docs[0]["log"]["origin"]["file"]["line"], line);
    assert_eq!(docs[0]["log"]["origin"]["module"], "capture");
    // tracing-log's own `log.*` fields are metadata, not user fields.
    assert!(docs[0].get("fields").is_none(), "{}", docs[0]);
    assert_eq!(
        docs[1]["log"]["logger"], "capture",
        "a record's default target is its module"
    );
    assert_eq!(docs[1]["log"]["level"], "ERROR");
}

/// A writer the fmt layer prints into, so the test can read it.
#[derive(Clone, Default)]
struct Console(Arc<Mutex<Vec<u8>>>);
impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn composes_with_env_filter_and_a_fmt_layer() {
    let mut capture = Capture::fresh();
    let (layer, guard) = build(&capture);
    let console = Console::default();
    let writer = console.clone();
    let subscriber = tracing_subscriber::registry()
        .with(EnvFilter::new("info,noisy=error"))
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone()),
        )
        .with(layer);
    tracing::subscriber::with_default(subscriber, || {
        tracing::debug!("filtered out by level");
        tracing::warn!(target: "noisy", "filtered out by target");
        tracing::info!(n = 1, "kept");
        tracing::error!(target: "noisy", "kept too");
    });
    assert!(guard.flush(Duration::from_secs(20)).is_complete());
    let docs = documents(&capture.receive(2, Duration::from_secs(10)));
    let messages: Vec<&str> = docs
        .iter()
        .map(|d| d["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["kept", "kept too"]);
    assert!(capture
        .receive_until_quiet(Duration::from_millis(300))
        .is_empty());
    let printed = String::from_utf8(console.0.lock().unwrap().clone()).unwrap();
    assert!(
        printed.contains("kept") && printed.contains("n=1"),
        "{printed}"
    );
    assert!(!printed.contains("filtered out"), "{printed}");
    assert_eq!(guard.stats().accepted, 2);
}

#[test]
fn many_threads_every_event_confirmed_exactly_once() {
    const THREADS: i64 = 4;
    const PER_THREAD: i64 = 1500;
    let mut capture = Capture::fresh();
    let (layer, guard) = build(&capture);
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let dispatch = dispatch.clone();
            std::thread::Builder::new()
                .name(format!("producer-{t}"))
                .spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        for i in 0..PER_THREAD {
                            let span = tracing::info_span!("work", thread = t);
                            let _e = span.enter();
                            tracing::info!(seq_no = t * PER_THREAD + i, "event");
                        }
                    })
                })
                .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let flushed = guard.flush(Duration::from_secs(60));
    let stats = guard.stats();
    assert!(flushed.is_complete(), "{stats}");
    let total = (THREADS * PER_THREAD) as u64;
    assert_eq!(
        (stats.accepted, stats.confirmed, stats.dropped.total()),
        (total, total, 0),
        "{stats}"
    );
    let docs = documents(&capture.receive(total as usize, Duration::from_secs(30)));
    assert!(
        capture
            .receive_until_quiet(Duration::from_millis(500))
            .is_empty(),
        "nothing beyond the events"
    );
    let (distinct, dups) = distinct_ints(&docs, "/fields/seq_no");
    assert_eq!((distinct.len() as u64, dups), (total, 0));
    assert!(distinct.iter().all(|n| (0..total as i64).contains(n)));
    for doc in &docs {
        let logger = doc["log"]["logger"].as_str().unwrap();
        assert_eq!(logger, "capture", "only the test's own events: {doc}");
        assert!(doc["process"]["thread"]["name"]
            .as_str()
            .unwrap()
            .starts_with("producer-"));
    }
}

#[test]
fn unroutable_events_are_not_counted_delivered_and_go_out_once_a_queue_is_bound() {
    // An exchange no queue is bound to: the broker returns every message.
    let exchange = common::unique("logcollect-test-x");
    let (layer, guard) = logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(exchange.clone())
        .configure(|c| {
            c.retry_delay = Duration::from_millis(200);
            // The pause doubles per return: capped, the retry after the binding comes soon.
            c.backoff_max = Duration::from_secs(1);
        })
        .build()
        .unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for i in 0..3 {
            tracing::info!(seq_no = i, "nobody listens yet");
        }
    });
    // However long connecting takes here, every event comes back returned at least once.
    assert!(
        common::wait_for(Duration::from_secs(60), || guard.stats().returned >= 3),
        "not returned: {}",
        guard.stats()
    );
    let flushed = guard.flush(Duration::from_millis(100));
    let stats = guard.stats();
    assert_eq!(flushed.undelivered, 3, "{stats}");
    assert_eq!(stats.confirmed, 0);
    assert!(stats.returned >= 3, "{stats}");
    assert!(
        stats
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("unroutable"),
        "{stats}"
    );

    // Once a queue is bound, the same events (same ids) are delivered.
    let mut capture = Capture::bind(&exchange, "#");
    assert!(
        guard.flush(Duration::from_secs(20)).is_complete(),
        "{}",
        guard.stats()
    );
    let docs = documents(&capture.receive(3, Duration::from_secs(10)));
    let (distinct, _) = distinct_ints(&docs, "/fields/seq_no");
    assert_eq!(distinct.len(), 3);
    assert_eq!(guard.stats().confirmed, 3);
}

#[test]
fn a_full_queue_drops_newest_and_counts_exactly() {
    // A broker that accepts TCP and never speaks: nothing is delivered, the queue fills.
    let (_listener, port) = common::blackhole();
    let (layer, guard) = logcollect::builder()
        .broker_uri(format!("amqp://guest:guest@127.0.0.1:{port}/%2f"))
        .queue_capacity(10)
        .build()
        .unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for i in 0..100 {
            tracing::info!(seq_no = i, "into a full queue");
        }
    });
    let stats = guard.stats();
    assert_eq!(stats.accepted, 10, "{stats}");
    assert_eq!(stats.dropped.queue_full, 90, "{stats}");
    assert_eq!(stats.queue_depth, 10, "{stats}");
    let flushed = guard.shutdown(Duration::from_millis(100));
    assert_eq!(flushed.undelivered, 10);
}

#[test]
fn nacked_events_are_published_again_until_the_broker_takes_them() {
    use futures_util::StreamExt;
    use lapin::options::QueueDeclareOptions;
    use lapin::types::{AMQPValue, FieldTable, ShortString};

    const N: i64 = 200;
    let exchange = common::unique("logcollect-test-x");
    let queue = common::unique("logcollect-test-nack");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // A queue that holds 4 messages and makes the broker nack publishes beyond that; batches of
    // at most 5 events, so the 200 events need 40 messages at least.
    let (connection, channel) = runtime.block_on(async {
        let mut args = FieldTable::default();
        args.insert(ShortString::from("x-max-length"), AMQPValue::LongInt(4));
        args.insert(
            ShortString::from("x-overflow"),
            AMQPValue::LongString("reject-publish".into()),
        );
        let options = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        common::declare_bound_queue(&exchange, &queue, "#", options, args).await
    });

    let (layer, guard) = logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(exchange.clone())
        .configure(|c| {
            c.retry_delay = Duration::from_millis(20);
            c.backoff_max = Duration::from_millis(200);
            c.batch.max_events = 5;
        })
        .build()
        .expect("build");
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for i in 0..N {
            tracing::info!(seq_no = i, "into a queue that nacks");
        }
    });
    common::wait_for(Duration::from_secs(60), || guard.stats().nacked > 0);
    let stats = guard.stats();
    assert!(
        stats.nacked > 0,
        "the full queue made the broker nack: {stats}"
    );
    assert!(
        stats.messages_confirmed <= 4 && stats.confirmed <= 20,
        "only what the queue held is confirmed: {stats}"
    );

    // Reading the queue makes room: the nacked events go out again and are confirmed.
    let docs = runtime.block_on(async {
        let mut consumer = common::consume(&channel, &queue).await.expect("consume");
        let mut docs = Vec::new();
        while docs.len() < N as usize {
            match tokio::time::timeout(Duration::from_secs(20), consumer.next()).await {
                // A body is one document or an array of them, as the `json` codec reads it.
                Ok(Some(Ok(delivery))) => {
                    match serde_json::from_slice::<serde_json::Value>(&delivery.data).expect("JSON")
                    {
                        serde_json::Value::Array(items) => docs.extend(items),
                        doc => docs.push(doc),
                    }
                }
                _ => break,
            }
        }
        docs
    });
    assert!(
        guard.flush(Duration::from_secs(20)).is_complete(),
        "{}",
        guard.stats()
    );
    let stats = guard.stats();
    assert_eq!(stats.confirmed, N as u64, "{stats}");
    assert!(stats.retried >= stats.nacked, "{stats}");
    let (distinct, _) = distinct_ints(&docs, "/fields/seq_no");
    assert_eq!(distinct, (0..N).collect());
    drop(guard);
    runtime.block_on(async {
        let _ = channel
            .exchange_delete(ShortString::from(exchange.as_str()), Default::default())
            .await;
        let _ = connection.close(200, ShortString::from("done")).await;
    });
}
