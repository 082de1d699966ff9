//! Shared test support: finding a real broker and reading what the shipper published.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;

#[allow(unused_imports)]
pub use logcollect_test_support::{broker_url, unique, wait_for, DEFAULT_URL, HOW_TO_GET_A_BROKER};

/// Waits until the shipper's stats satisfy `condition`; fails the test after `timeout`, saying
/// what was awaited and showing the stats.
pub fn await_stats(
    what: &str,
    timeout: Duration,
    shipper: &logcollect::Shipper,
    condition: impl Fn(&logcollect::Stats) -> bool,
) {
    assert!(
        wait_for(timeout, || condition(&shipper.stats())),
        "timed out after {timeout:?} waiting for {what}: {}",
        shipper.stats()
    );
}

/// One message as the broker delivered it.
#[derive(Debug, Clone)]
pub struct Received {
    pub routing_key: String,
    pub properties: BasicProperties,
    pub body: Vec<u8>,
}

impl Received {
    /// The documents in the body, the way Logstash's `json` codec reads it: an object is one
    /// event, an array one event per element.
    pub fn documents(&self) -> Vec<Value> {
        let text = std::str::from_utf8(&self.body).expect("body is valid UTF-8");
        match serde_json::from_str::<Value>(text).expect("body is valid JSON") {
            Value::Array(items) => items,
            doc => vec![doc],
        }
    }
}

/// Connects, declares `exchange` as the shipper would (durable topic), declares `queue` with
/// `options` and `arguments`, and binds it with `binding_key`.
pub async fn declare_bound_queue(
    exchange: &str,
    queue: &str,
    binding_key: &str,
    options: QueueDeclareOptions,
    arguments: FieldTable,
) -> (Connection, lapin::Channel) {
    let connection = Connection::connect(&broker_url(), ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot connect to {}: {e}; {HOW_TO_GET_A_BROKER}",
                broker_url()
            )
        });
    let channel = connection.create_channel().await.expect("channel");
    channel
        .exchange_declare(
            ShortString::from(exchange),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare exchange");
    channel
        .queue_declare(ShortString::from(queue), options, arguments)
        .await
        .expect("declare queue");
    channel
        .queue_bind(
            ShortString::from(queue),
            ShortString::from(exchange),
            ShortString::from(binding_key),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind queue");
    (connection, channel)
}

/// Consumes `queue` without acks: what is read is gone.
pub async fn consume(channel: &lapin::Channel, queue: &str) -> lapin::Result<lapin::Consumer> {
    channel
        .basic_consume(
            ShortString::from(queue),
            ShortString::from(""),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}

/// The harness's own runtime, with logging off on every thread it runs on. The harness is part
/// of the test process: with a global subscriber at TRACE, its consumer's per-delivery events
/// would be shipped to the exchange it consumes from, and consumed again, without end.
pub struct QuietRuntime(tokio::runtime::Runtime);

impl QuietRuntime {
    pub fn new() -> QuietRuntime {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            // The guard lives as long as the worker thread: forgetting it keeps it in place.
            .on_thread_start(|| {
                std::mem::forget(tracing::dispatcher::set_default(&tracing::Dispatch::none()))
            })
            .build()
            .expect("test runtime");
        QuietRuntime(runtime)
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        tracing::dispatcher::with_default(&tracing::Dispatch::none(), || self.0.block_on(future))
    }
}

/// A queue of our own bound to an exchange, read from a private runtime.
pub struct Capture {
    runtime: QuietRuntime,
    connection: Connection,
    pub exchange: String,
    pub queue: String,
    consumer: lapin::Consumer,
    delete_exchange: bool,
}

impl Capture {
    /// Declares `exchange` as the shipper would (durable topic), a queue of our own, and binds it
    /// with `binding_key`. The exchange is deleted on drop when it is a test-unique one.
    pub fn bind(exchange: &str, binding_key: &str) -> Capture {
        let runtime = QuietRuntime::new();
        let queue = unique("logcollect-test-q");
        let (connection, consumer) = runtime.block_on(async {
            let (connection, channel) = declare_bound_queue(
                exchange,
                &queue,
                binding_key,
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
            let consumer = consume(&channel, &queue).await.expect("consume");
            (connection, consumer)
        });
        Capture {
            runtime,
            connection,
            exchange: exchange.to_string(),
            queue,
            consumer,
            delete_exchange: exchange.starts_with("logcollect-test"),
        }
    }

    /// A fresh test-unique exchange with a queue bound to everything on it.
    pub fn fresh() -> Capture {
        Capture::bind(&unique("logcollect-test-x"), "#")
    }

    /// Reads messages until `events` documents have arrived or `timeout` passes.
    pub fn receive(&mut self, events: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut docs = 0;
        let consumer = &mut self.consumer;
        self.runtime.block_on(async {
            while docs < events {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, consumer.next()).await {
                    Ok(Some(Ok(delivery))) => {
                        let r = Received {
                            routing_key: delivery.routing_key.to_string(),
                            properties: delivery.properties.clone(),
                            body: delivery.data.clone(),
                        };
                        docs += r.documents().len();
                        out.push(r);
                    }
                    Ok(Some(Err(e))) => panic!("consumer failed: {e}"),
                    Ok(None) | Err(_) => break,
                }
            }
        });
        out
    }

    /// Everything that arrives within `quiet` of the previous message.
    pub fn receive_until_quiet(&mut self, quiet: Duration) -> Vec<Received> {
        let mut out = Vec::new();
        let consumer = &mut self.consumer;
        self.runtime.block_on(async {
            while let Ok(Some(Ok(delivery))) = tokio::time::timeout(quiet, consumer.next()).await {
                out.push(Received {
                    routing_key: delivery.routing_key.to_string(),
                    properties: delivery.properties.clone(),
                    body: delivery.data.clone(),
                });
            }
        });
        out
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let exchange = self.exchange.clone();
        let delete = self.delete_exchange;
        let connection = &self.connection;
        self.runtime.block_on(async {
            if delete {
                if let Ok(channel) = connection.create_channel().await {
                    let _ = channel
                        .exchange_delete(
                            ShortString::from(exchange.as_str()),
                            ExchangeDeleteOptions::default(),
                        )
                        .await;
                }
            }
            let _ = connection.close(200, ShortString::from("done")).await;
        });
    }
}

/// All documents of all messages.
pub fn documents(messages: &[Received]) -> Vec<Value> {
    messages.iter().flat_map(Received::documents).collect()
}

/// Distinct values of an integer field across documents, and how many duplicates.
pub fn distinct_ints(docs: &[Value], pointer: &str) -> (HashSet<i64>, usize) {
    let mut set = HashSet::new();
    let mut dups = 0;
    for doc in docs {
        let v = doc
            .pointer(pointer)
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("{pointer} missing in {doc}"));
        if !set.insert(v) {
            dups += 1;
        }
    }
    (set, dups)
}

/// Routes `log` records into `tracing` (once per test binary).
pub fn log_bridge() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_log::LogTracer::init();
    });
}

/// A TCP listener that accepts connections and never answers: a broker that hangs.
pub fn blackhole() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (listener, port)
}

/// A durable, non-exclusive, non-auto-delete queue bound to an exchange, for tests that restart
/// the broker: it survives the restart with every persistent message it holds. No connection is
/// kept open: each read opens a fresh one (retrying while the broker comes back), so a restart
/// between reads does no harm. The queue (and a test-unique exchange) is deleted on drop.
pub struct DurableCapture {
    runtime: QuietRuntime,
    pub exchange: String,
    pub queue: String,
    delete_exchange: bool,
}

impl Capture {
    /// A [`DurableCapture`] on `exchange` (declared durable topic, as the shipper does), bound
    /// with `binding_key`.
    pub fn durable(exchange: &str, binding_key: &str) -> DurableCapture {
        DurableCapture::bind(exchange, binding_key)
    }
}

impl DurableCapture {
    pub fn bind(exchange: &str, binding_key: &str) -> DurableCapture {
        let runtime = QuietRuntime::new();
        let queue = unique("logcollect-test-dq");
        runtime.block_on(async {
            let (connection, _) = declare_bound_queue(
                exchange,
                &queue,
                binding_key,
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
            let _ = connection.close(200, ShortString::from("declared")).await;
        });
        DurableCapture {
            runtime,
            exchange: exchange.to_string(),
            queue,
            delete_exchange: exchange.starts_with("logcollect-test"),
        }
    }

    /// A fresh connection, retried until `deadline` (the broker may still be starting).
    async fn connect(deadline: Instant) -> Option<Connection> {
        loop {
            match Connection::connect(&broker_url(), ConnectionProperties::default()).await {
                Ok(connection) => return Some(connection),
                Err(e) if Instant::now() >= deadline => {
                    eprintln!("durable capture: cannot connect: {e}");
                    return None;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Reads messages, handing each to `done`, until it returns true (everything expected has
    /// arrived) or `timeout` passes, reconnecting if the connection is lost meanwhile; then reads
    /// on until the queue stays quiet for `quiet` (late duplicates). Messages are consumed
    /// without acks: what is read is gone.
    pub fn drain(
        &mut self,
        mut done: impl FnMut(&Received) -> bool,
        timeout: Duration,
        quiet: Duration,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let queue = self.queue.clone();
        self.runtime.block_on(async {
            let mut out: Vec<Received> = Vec::new();
            let mut finished = false;
            while Instant::now() < deadline {
                let Some(connection) = Self::connect(deadline).await else {
                    break;
                };
                let consumer = async {
                    let channel = connection.create_channel().await?;
                    consume(&channel, &queue).await
                };
                let mut consumer = match consumer.await {
                    Ok(consumer) => consumer,
                    Err(e) => {
                        eprintln!("durable capture: cannot consume: {e}; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                loop {
                    let wait = if finished {
                        quiet
                    } else {
                        deadline.saturating_duration_since(Instant::now())
                    };
                    match tokio::time::timeout(wait, consumer.next()).await {
                        Ok(Some(Ok(delivery))) => {
                            let received = Received {
                                routing_key: delivery.routing_key.to_string(),
                                properties: delivery.properties.clone(),
                                body: delivery.data.clone(),
                            };
                            if !finished && done(&received) {
                                finished = true;
                            }
                            out.push(received);
                        }
                        Ok(Some(Err(e))) => {
                            eprintln!("durable capture: consumer failed: {e}; reconnecting");
                            break;
                        }
                        Ok(None) => {
                            eprintln!("durable capture: consumer ended; reconnecting");
                            break;
                        }
                        // Quiet after completion, or the deadline.
                        Err(_) => {
                            let _ = connection.close(200, ShortString::from("done")).await;
                            return out;
                        }
                    }
                }
            }
            out
        })
    }
}

impl Drop for DurableCapture {
    fn drop(&mut self) {
        let (queue, exchange, delete_exchange) = (
            self.queue.clone(),
            self.exchange.clone(),
            self.delete_exchange,
        );
        self.runtime.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(30);
            let Some(connection) = Self::connect(deadline).await else {
                eprintln!("durable capture: queue {queue} left behind: broker unreachable");
                return;
            };
            if let Ok(channel) = connection.create_channel().await {
                if let Err(e) = channel
                    .queue_delete(
                        ShortString::from(queue.as_str()),
                        QueueDeleteOptions::default(),
                    )
                    .await
                {
                    eprintln!("durable capture: cannot delete queue {queue}: {e}");
                }
                if delete_exchange {
                    let _ = channel
                        .exchange_delete(
                            ShortString::from(exchange.as_str()),
                            ExchangeDeleteOptions::default(),
                        )
                        .await;
                }
            }
            let _ = connection.close(200, ShortString::from("done")).await;
        });
    }
}

/// The load generator example, built now if needed: `cargo test --test faults` alone does not
/// build examples.
pub fn loadgen_binary() -> std::path::PathBuf {
    example_binary("loadgen", &[])
}

/// An example, built now (with `features`) if needed.
pub fn example_binary(name: &str, features: &[&str]) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build
        .args(["build", "--quiet", "--example", name, "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    if !features.is_empty() {
        build.arg("--features").arg(features.join(","));
    }
    // Without the variables `cargo test` sets for this process: with them the inner build
    // fingerprints differently and rebuilds the dependency tree, on every run.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let set_by_cargo_test = (key.starts_with("CARGO")
            && !["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_INCREMENTAL"].contains(&key.as_str())
            && !key.starts_with("CARGO_BUILD_")
            && !key.starts_with("CARGO_PROFILE_")
            && !key.starts_with("CARGO_NET_")
            && !key.starts_with("CARGO_TERM_")
            && !key.starts_with("CARGO_REGISTRIES_"))
            || ["OUT_DIR", "LD_LIBRARY_PATH", "RUST_TEST_THREADS"].contains(&key.as_str());
        if set_by_cargo_test {
            build.env_remove(&key);
        }
    }
    if dir.file_name().is_some_and(|name| name == "release") {
        build.arg("--release");
    }
    let status = build
        .status()
        .unwrap_or_else(|e| panic!("run cargo build --example {name}: {e}"));
    assert!(status.success(), "cargo build --example {name} failed");
    let path = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} missing", path.display());
    path
}

/// A TCP gate before the test broker: it accepts connections at once and holds them (nothing is
/// read or forwarded) until [`Gate::open`], then joins each to the broker. A shipper behind a
/// closed gate is connecting and keeps its events queued; opened, it delivers them.
pub struct Gate {
    /// The broker URI through the gate.
    pub uri: String,
    open: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl Gate {
    pub fn closed() -> Gate {
        let broker: lapin::uri::AMQPUri = broker_url().parse().expect("the test broker's URI");
        let target = format!("{}:{}", broker.authority.host, broker.authority.port);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the gate");
        let port = listener.local_addr().expect("gate address").port();
        let open = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let gate = open.clone();
        // Lives as long as the test binary: it only ever waits in `accept`.
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let (gate, target) = (gate.clone(), target.clone());
                std::thread::spawn(move || {
                    let (lock, opened) = &*gate;
                    let mut is_open = lock.lock().unwrap_or_else(|p| p.into_inner());
                    while !*is_open {
                        is_open = opened.wait(is_open).unwrap_or_else(|p| p.into_inner());
                    }
                    drop(is_open);
                    let Ok(server) = TcpStream::connect(&target) else {
                        return;
                    };
                    let (Ok(mut client_in), Ok(mut server_out)) =
                        (client.try_clone(), server.try_clone())
                    else {
                        return;
                    };
                    let upstream = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut client_in, &mut server_out);
                        let _ = server_out.shutdown(std::net::Shutdown::Write);
                    });
                    let (mut server_in, mut client_out) = (server, client);
                    let _ = std::io::copy(&mut server_in, &mut client_out);
                    let _ = client_out.shutdown(std::net::Shutdown::Write);
                    let _ = upstream.join();
                });
            }
        });
        let uri = format!(
            "amqp://{}:{}@127.0.0.1:{port}/{}",
            broker.authority.userinfo.username,
            broker.authority.userinfo.password,
            broker.vhost.replace('/', "%2f")
        );
        Gate { uri, open }
    }

    /// Lets held and later connections through to the broker.
    pub fn open(&self) {
        let (lock, opened) = &*self.open;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        opened.notify_all();
    }
}
