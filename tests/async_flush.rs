//! Flushing and shutting down from async code never block a runtime worker. The shipper
//! reaches the broker through a TCP proxy that is a task of the test's own runtime: if waiting
//! for delivery blocked the runtime's thread, the proxy could not forward the confirms and the
//! wait would end undelivered at its timeout. Real RabbitMQ.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{documents, Capture};
use tokio::net::{TcpListener, TcpStream};
use tracing_subscriber::layer::SubscriberExt;

const EVENTS: i64 = 50;

/// `url` with its host and port replaced by 127.0.0.1:`port`.
fn via(url: &str, port: u16) -> String {
    let (scheme_user, rest) = url.rsplit_once('@').expect("user@host in the broker URL");
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    format!("{scheme_user}@127.0.0.1:{port}{path}")
}

/// A proxy to the broker, spawned on the current runtime; its port.
async fn proxy() -> u16 {
    let url = common::broker_url();
    let authority = url.rsplit_once('@').expect("@").1;
    let broker = authority.split('/').next().expect("host:port").to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let broker = broker.clone();
            tokio::spawn(async move {
                if let Ok(mut upstream) = TcpStream::connect(&broker).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    port
}

/// Logs `EVENTS` events through a subscriber with the layer (this thread's default).
fn log_events(layer: logcollect::LogcollectLayer) {
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        for seq_no in 0..EVENTS {
            tracing::info!(seq_no, "async flush");
        }
    });
}

fn assert_every_event_arrived(capture: &mut Capture) {
    let docs = documents(&capture.receive(EVENTS as usize, Duration::from_secs(20)));
    let seq: HashSet<i64> = docs
        .iter()
        .map(|d| d["seq_no"].as_i64().expect("seq_no"))
        .collect();
    assert_eq!(docs.len(), EVENTS as usize);
    assert_eq!(seq, (0..EVENTS).collect());
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn flush_async_lets_the_runtimes_other_tasks_run() {
    let mut capture = Capture::fresh();
    let runtime = current_thread_runtime();
    let guard = runtime.block_on(async {
        let port = proxy().await;
        let (layer, guard) = logcollect::builder()
            .broker_uri(via(&common::broker_url(), port))
            .exchange(&capture.exchange)
            .format(logcollect::Format::Classic)
            .build()
            .expect("build");
        log_events(layer);
        let flushed = guard.flush_async(Duration::from_secs(20)).await;
        assert!(flushed.is_complete(), "{flushed:?} {}", guard.stats());
        guard
    });
    assert_eq!(guard.stats().confirmed, EVENTS as u64);
    assert_every_event_arrived(&mut capture);
}

#[test]
fn shutdown_async_lets_the_runtimes_other_tasks_run() {
    let mut capture = Capture::fresh();
    let runtime = current_thread_runtime();
    let shipper = runtime.block_on(async {
        let port = proxy().await;
        let (layer, guard) = logcollect::builder()
            .broker_uri(via(&common::broker_url(), port))
            .exchange(&capture.exchange)
            .format(logcollect::Format::Classic)
            .build()
            .expect("build");
        log_events(layer);
        let shipper = guard.shipper();
        let flushed = guard.shutdown_async(Duration::from_secs(20)).await;
        assert!(flushed.is_complete(), "{flushed:?} {}", shipper.stats());
        shipper
    });
    assert_eq!(shipper.stats().confirmed, EVENTS as u64);
    assert_every_event_arrived(&mut capture);
}

/// Dropped on the only worker of a multi-thread runtime, the guard waits in `block_in_place`:
/// the proxy task moves to another thread and delivery completes.
#[test]
fn dropping_the_guard_on_a_runtime_worker_does_not_starve_its_tasks() {
    let mut capture = Capture::fresh();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let shipper = runtime.block_on(async {
        let port = proxy().await;
        let exchange = capture.exchange.clone();
        // On the worker (block_on's own thread is not one).
        tokio::spawn(async move {
            let (layer, guard) = logcollect::builder()
                .broker_uri(via(&common::broker_url(), port))
                .exchange(exchange)
                .format(logcollect::Format::Classic)
                .shutdown_timeout(Duration::from_secs(20))
                .build()
                .expect("build");
            log_events(layer);
            let shipper = guard.shipper();
            drop(guard);
            shipper
        })
        .await
        .expect("task")
    });
    assert_eq!(
        shipper.stats().confirmed,
        EVENTS as u64,
        "{}",
        shipper.stats()
    );
    assert_every_event_arrived(&mut capture);
}
