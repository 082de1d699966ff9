//! The shipper's own work is recognised by its threads, not by crate names: an application's
//! events with targets such as `tokio::…` or `lapin::…`, logged on its own threads, are shipped;
//! nothing the shipper's stack logs (lapin, tokio, on the shipper's thread and the AMQP I/O
//! thread) is, even with everything enabled at TRACE.
//!
//! The subject runs in a child process (this test binary, running the ignored `child` test), so
//! that no other AMQP client in the process logs anything: every event its counting layer sees
//! besides the application's is the shipper's own.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use common::{documents, Capture};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

const CHILD_EXCHANGE: &str = "LOGCOLLECT_TEST_OWN_EVENTS_EXCHANGE";

/// The application's events: (target, message), logged on application threads.
const APP_EVENTS: &[(&str, &str)] = &[
    ("own_events", "plain application event"),
    ("tokio::runtime", "an application event with a tokio target"),
    ("lapin::channel", "an application event with a lapin target"),
    (
        "rustls::client",
        "an application event with a rustls target",
    ),
];

/// Counts every event it sees.
struct Count(Arc<AtomicU64>);

impl<S: tracing::Subscriber> Layer<S> for Count {
    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        self.0.fetch_add(1, Relaxed);
    }
}

#[test]
fn app_events_with_any_target_are_shipped_and_the_shippers_own_are_not() {
    let mut capture = Capture::fresh();
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--ignored", "--exact", "child", "--nocapture"])
        .env(CHILD_EXCHANGE, &capture.exchange)
        .env("LOGCOLLECT_TEST_AMQP_URL", common::broker_url())
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in:\n{stdout}"));
    let value = |key: &str| -> u64 {
        result
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key}= in {result}"))
    };
    let app = APP_EVENTS.len() as u64 * 2;
    // The shipper's stack did log (at TRACE) while shipping: there was something to keep out.
    assert!(
        value("seen") > app,
        "the shipper's stack logged nothing to keep out: {result}"
    );
    // Only the application's events were taken in and delivered.
    assert_eq!(
        (value("accepted"), value("confirmed")),
        (app, app),
        "{result}"
    );

    let docs = documents(&capture.receive(app as usize, Duration::from_secs(30)));
    assert!(
        capture
            .receive_until_quiet(Duration::from_millis(500))
            .is_empty(),
        "more than the application's events arrived"
    );
    let mut shipped: Vec<(String, String, String)> = docs
        .iter()
        .map(|d| {
            let text = |p: &str| {
                d.pointer(p)
                    .and_then(|v| v.as_str())
                    .unwrap_or_else(|| panic!("{p} missing in {d}"))
                    .to_string()
            };
            (
                text("/log/logger"),
                text("/message"),
                text("/process/thread/name"),
            )
        })
        .collect();
    shipped.sort();
    let mut expected: Vec<(String, String, String)> = APP_EVENTS
        .iter()
        .flat_map(|(target, message)| {
            ["main", "app-worker"].map(|thread| {
                let thread = if thread == "main" { "child" } else { thread };
                (target.to_string(), message.to_string(), thread.to_string())
            })
        })
        .collect();
    expected.sort();
    assert_eq!(shipped, expected);
}

/// The subject: a global subscriber at TRACE with a counting layer and the logcollect layer;
/// the application's events on the test thread and on a thread of its own.
#[test]
#[ignore = "run in a child process by app_events_with_any_target_are_shipped_and_the_shippers_own_are_not"]
fn child() {
    let Ok(exchange) = std::env::var(CHILD_EXCHANGE) else {
        panic!("run by the parent test, which sets {CHILD_EXCHANGE}");
    };
    let seen = Arc::new(AtomicU64::new(0));
    let (layer, guard) = logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(exchange)
        .build()
        .expect("build");
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("trace"))
            .with(Count(seen.clone()))
            .with(layer),
    )
    .expect("global subscriber");

    fn log_app_events() {
        tracing::info!(target: "own_events", "plain application event");
        tracing::info!(target: "tokio::runtime", "an application event with a tokio target");
        tracing::info!(target: "lapin::channel", "an application event with a lapin target");
        tracing::info!(target: "rustls::client", "an application event with a rustls target");
    }
    assert_eq!(
        APP_EVENTS.len(),
        4,
        "log_app_events logs each of APP_EVENTS"
    );
    log_app_events();
    std::thread::Builder::new()
        .name("app-worker".into())
        .spawn(log_app_events)
        .expect("spawn")
        .join()
        .expect("join");
    let flushed = guard.flush(Duration::from_secs(30));
    assert!(flushed.is_complete(), "{}", guard.stats());
    let stats = guard.stats();
    println!(
        "RESULT seen={} accepted={} confirmed={}",
        seen.load(Relaxed),
        stats.accepted,
        stats.confirmed
    );
}
