//! The harness's own AMQP client, the one the tests of both crates use: declares throw-away
//! exchanges and queues and binds them, receives documents with a deadline or until the queue
//! is quiet (array bodies split into their documents), publishes raw bodies, drains and deletes
//! queues; plain, or TLS with a client certificate; on a runtime of its own with logging off.

use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;

use crate::certs::{Ca, Leaf};
use crate::{broker_url, unique, HOW_TO_GET_A_BROKER};

/// How the harness itself connects: a URI and, for TLS, its roots and client identity.
#[derive(Clone, Debug)]
pub struct Client {
    pub uri: String,
    pub tls: OwnedTLSConfig,
}

impl Client {
    pub fn plain(uri: String) -> Client {
        Client {
            uri,
            tls: OwnedTLSConfig::default(),
        }
    }

    pub fn tls(uri: String, ca: &Ca, leaf: &Leaf) -> Client {
        Client {
            uri,
            tls: OwnedTLSConfig {
                identity: Some(OwnedIdentity::PKCS8 {
                    pem: leaf.cert_pem.clone().into_bytes(),
                    key: leaf.key_pem.clone().into_bytes(),
                }),
                cert_chain: Some(ca.pem.clone()),
            },
        }
    }

    /// The test broker ([`broker_url`]).
    pub fn test_broker() -> Client {
        Client::plain(broker_url())
    }

    /// A connection, on the caller's runtime.
    pub async fn try_connect(&self) -> lapin::Result<Connection> {
        let runtime = lapin::runtime::default_runtime()?;
        Connection::connect_with_config(
            &self.uri,
            ConnectionProperties::default(),
            self.tls.clone(),
            runtime,
        )
        .await
    }

    /// A connection, on the caller's runtime; fails the test, saying how to get a broker, when
    /// there is none.
    pub async fn connect(&self) -> Connection {
        self.try_connect().await.unwrap_or_else(|e| {
            panic!(
                "the harness cannot connect to {}: {e}; {HOW_TO_GET_A_BROKER}",
                self.uri
            )
        })
    }

    /// A connection of the test's own on a runtime of its own.
    pub fn session(&self) -> Session {
        Session::open(self)
    }

    /// Declares `exchange` as the shipper does (durable topic) and a durable `queue` bound to
    /// it with `#`.
    pub fn bind(&self, exchange: &str, queue: &str) {
        QuietRuntime::new().block_on(async {
            let durable = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            let (connection, _) =
                declare_bound_queue(self, exchange, queue, "#", durable, FieldTable::default())
                    .await;
            let _ = connection.close(200, ShortString::from("bound")).await;
        });
    }

    /// Deletes `exchange` (its bindings go with it).
    pub fn delete_exchange(&self, exchange: &str) {
        QuietRuntime::new().block_on(async {
            let connection = self.connect().await;
            let channel = connection.create_channel().await.expect("channel");
            channel
                .exchange_delete(
                    ShortString::from(exchange),
                    ExchangeDeleteOptions::default(),
                )
                .await
                .expect("delete exchange");
            let _ = connection.close(200, ShortString::from("deleted")).await;
        });
    }

    /// Takes every message the queue holds now (no ack: they are gone), as JSON documents (an
    /// array body is one document per element).
    pub fn drain(&self, queue: &str) -> Vec<Value> {
        QuietRuntime::new().block_on(async {
            let connection = self.connect().await;
            let channel = connection.create_channel().await.expect("channel");
            let mut docs = Vec::new();
            while let Some(message) = channel
                .basic_get(ShortString::from(queue), BasicGetOptions { no_ack: true })
                .await
                .expect("basic.get")
            {
                docs.extend(split_documents(&message.delivery.data));
            }
            let _ = connection.close(200, ShortString::from("drained")).await;
            docs
        })
    }

    /// Drains `queue` until `n` documents came or `timeout` passed.
    pub fn drain_at_least(&self, queue: &str, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut docs = Vec::new();
        loop {
            docs.extend(self.drain(queue));
            if docs.len() >= n || Instant::now() >= deadline {
                return docs;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The documents of a body, the way Logstash's `json` codec reads it: an object is one event,
/// an array one event per element. Fails the test on a body that is not UTF-8 JSON.
pub fn split_documents(body: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(body).expect("body is valid UTF-8");
    match serde_json::from_str::<Value>(text).expect("body is valid JSON") {
        Value::Array(items) => items,
        doc => vec![doc],
    }
}

/// One message as the broker delivered it.
#[derive(Debug, Clone)]
pub struct Received {
    pub routing_key: String,
    pub properties: BasicProperties,
    pub body: Vec<u8>,
}

impl Received {
    fn new(delivery: &lapin::message::Delivery) -> Received {
        Received {
            routing_key: delivery.routing_key.to_string(),
            properties: delivery.properties.clone(),
            body: delivery.data.clone(),
        }
    }

    /// The documents in the body ([`split_documents`]).
    pub fn documents(&self) -> Vec<Value> {
        split_documents(&self.body)
    }
}

/// All documents of all messages.
pub fn documents(messages: &[Received]) -> Vec<Value> {
    messages.iter().flat_map(Received::documents).collect()
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

    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        tracing::dispatcher::with_default(&tracing::Dispatch::none(), || self.0.block_on(future))
    }
}

impl Default for QuietRuntime {
    fn default() -> QuietRuntime {
        QuietRuntime::new()
    }
}

/// Declares `exchange` of `kind`, durable as the shipper declares it.
async fn declare_exchange(channel: &Channel, exchange: &str, kind: ExchangeKind) {
    channel
        .exchange_declare(
            ShortString::from(exchange),
            kind,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("declare exchange {exchange}: {e}"));
}

/// Connects, declares `exchange` as the shipper would (durable topic), declares `queue` with
/// `options` and `arguments`, and binds it with `binding_key`.
pub async fn declare_bound_queue(
    client: &Client,
    exchange: &str,
    queue: &str,
    binding_key: &str,
    options: QueueDeclareOptions,
    arguments: FieldTable,
) -> (Connection, Channel) {
    let connection = client.connect().await;
    let channel = connection.create_channel().await.expect("channel");
    declare_and_bind(&channel, exchange, queue, binding_key, options, arguments).await;
    (connection, channel)
}

/// [`declare_bound_queue`] on a channel the caller has.
async fn declare_and_bind(
    channel: &Channel,
    exchange: &str,
    queue: &str,
    binding_key: &str,
    options: QueueDeclareOptions,
    arguments: FieldTable,
) {
    declare_exchange(channel, exchange, ExchangeKind::Topic).await;
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
}

/// Consumes `queue` without acks: what is read is gone.
pub async fn consume(channel: &Channel, queue: &str) -> lapin::Result<lapin::Consumer> {
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

/// One connection of the test's own on a quiet runtime: declares exchanges (deleted when it is
/// dropped), a queue of its own to read from, publishes raw bodies, looks at and deletes queues.
pub struct Session {
    runtime: QuietRuntime,
    connection: Connection,
    channel: Channel,
    /// Deleted on drop.
    exchanges: Vec<String>,
    consumer: Option<lapin::Consumer>,
}

impl Session {
    pub fn open(client: &Client) -> Session {
        let runtime = QuietRuntime::new();
        let (connection, channel) = runtime.block_on(async {
            let connection = client.connect().await;
            let channel = connection.create_channel().await.expect("channel");
            (connection, channel)
        });
        Session {
            runtime,
            connection,
            channel,
            exchanges: Vec::new(),
            consumer: None,
        }
    }

    /// Runs `future` on the session's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Declares `name` of `kind` (durable, as the shipper does); deleted on drop.
    pub fn exchange(&mut self, name: &str, kind: ExchangeKind) {
        let channel = &self.channel;
        self.runtime.block_on(declare_exchange(channel, name, kind));
        self.forget_exchange_later(name);
    }

    /// An exchange the session did not declare (a command did, or `capture`) is deleted on
    /// drop too.
    pub fn forget_exchange_later(&mut self, name: &str) {
        if !self.exchanges.iter().any(|e| e == name) {
            self.exchanges.push(name.to_string());
        }
    }

    /// Declares `exchange` (durable topic, as the shipper does; not deleted on drop unless
    /// asked) and a queue of the session's own (exclusive, auto-deleted) bound with
    /// `binding_key`, and consumes it: what [`receive`](Self::receive) reads. Its name.
    pub fn capture(&mut self, exchange: &str, binding_key: &str) -> String {
        let queue = unique("logcollect-test-q");
        let channel = &self.channel;
        let consumer = self.runtime.block_on(async {
            let own = QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            };
            declare_and_bind(
                channel,
                exchange,
                &queue,
                binding_key,
                own,
                FieldTable::default(),
            )
            .await;
            consume(channel, &queue).await.expect("consume")
        });
        self.consumer = Some(consumer);
        queue
    }

    /// Reads messages until `documents` documents have arrived or `timeout` passed.
    pub fn receive(&mut self, documents: usize, timeout: Duration) -> Vec<Received> {
        let consumer = self.consumer.as_mut().expect("capture first");
        let deadline = Instant::now() + timeout;
        self.runtime.block_on(async {
            let mut out = Vec::new();
            let mut docs = 0;
            while docs < documents {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, consumer.next()).await {
                    Ok(Some(Ok(delivery))) => {
                        let received = Received::new(&delivery);
                        docs += received.documents().len();
                        out.push(received);
                    }
                    Ok(Some(Err(e))) => panic!("consumer failed: {e}"),
                    Ok(None) | Err(_) => break,
                }
            }
            out
        })
    }

    /// Everything that arrives within `quiet` of the previous message.
    pub fn receive_until_quiet(&mut self, quiet: Duration) -> Vec<Received> {
        let consumer = self.consumer.as_mut().expect("capture first");
        self.runtime.block_on(async {
            let mut out = Vec::new();
            while let Ok(Some(Ok(delivery))) = tokio::time::timeout(quiet, consumer.next()).await {
                out.push(Received::new(&delivery));
            }
            out
        })
    }

    /// Publishes a raw body (an array body, a message that is not JSON) and waits for the
    /// broker's confirm.
    pub fn publish(&mut self, exchange: &str, routing_key: &str, body: &[u8]) {
        let connection = &self.connection;
        self.runtime.block_on(async {
            let channel = connection.create_channel().await.expect("channel");
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .expect("confirms");
            channel
                .basic_publish(
                    ShortString::from(exchange),
                    ShortString::from(routing_key),
                    BasicPublishOptions::default(),
                    body,
                    BasicProperties::default(),
                )
                .await
                .expect("publish")
                .await
                .expect("confirm");
            let _ = channel.close(200, ShortString::from("done")).await;
        });
    }

    /// Messages ready in `queue` (passive declare), `None` when it does not exist.
    pub fn queue_backlog(&mut self, queue: &str) -> Option<u32> {
        let connection = &self.connection;
        self.runtime.block_on(async {
            // A channel of its own: a passive declare of a missing queue closes the channel.
            let channel = connection.create_channel().await.ok()?;
            let q = channel
                .queue_declare(
                    ShortString::from(queue),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .ok()?;
            let _ = channel.close(200, ShortString::from("done")).await;
            Some(q.message_count())
        })
    }

    /// Deletes `queue` now.
    pub fn delete_queue(&mut self, queue: &str) {
        let connection = &self.connection;
        self.runtime.block_on(async {
            if let Ok(channel) = connection.create_channel().await {
                let _ = channel
                    .queue_delete(ShortString::from(queue), QueueDeleteOptions::default())
                    .await;
                let _ = channel.close(200, ShortString::from("done")).await;
            }
        });
    }
}

/// Deletes `queue` and `exchanges`, then closes `connection`: the end of a test's use of them.
async fn clean_up(connection: &Connection, queue: Option<&str>, exchanges: &[String]) {
    if let Ok(channel) = connection.create_channel().await {
        if let Some(queue) = queue {
            if let Err(e) = channel
                .queue_delete(ShortString::from(queue), QueueDeleteOptions::default())
                .await
            {
                eprintln!("the harness cannot delete queue {queue}: {e}");
            }
        }
        for name in exchanges {
            let _ = channel
                .exchange_delete(
                    ShortString::from(name.as_str()),
                    ExchangeDeleteOptions::default(),
                )
                .await;
        }
    }
    let _ = connection.close(200, ShortString::from("done")).await;
}

impl Drop for Session {
    fn drop(&mut self) {
        let exchanges = std::mem::take(&mut self.exchanges);
        self.runtime
            .block_on(clean_up(&self.connection, None, &exchanges));
    }
}

/// A queue of the test's own bound to an exchange of the test broker, read from a private
/// runtime. A test-unique exchange (`logcollect-test…`) is deleted on drop.
pub struct Capture {
    session: Session,
    pub exchange: String,
    pub queue: String,
}

impl Capture {
    /// Declares `exchange` as the shipper would (durable topic), a queue of our own, and binds
    /// it with `binding_key`.
    pub fn bind(exchange: &str, binding_key: &str) -> Capture {
        let mut session = Client::test_broker().session();
        let queue = session.capture(exchange, binding_key);
        if exchange.starts_with("logcollect-test") {
            session.forget_exchange_later(exchange);
        }
        Capture {
            session,
            exchange: exchange.to_string(),
            queue,
        }
    }

    /// A fresh test-unique exchange with a queue bound to everything on it.
    pub fn fresh() -> Capture {
        Capture::bind(&unique("logcollect-test-x"), "#")
    }

    /// A [`DurableCapture`] on `exchange` (declared durable topic, as the shipper does), bound
    /// with `binding_key`.
    pub fn durable(exchange: &str, binding_key: &str) -> DurableCapture {
        DurableCapture::bind(exchange, binding_key)
    }

    /// Reads messages until `events` documents have arrived or `timeout` passes.
    pub fn receive(&mut self, events: usize, timeout: Duration) -> Vec<Received> {
        self.session.receive(events, timeout)
    }

    /// Everything that arrives within `quiet` of the previous message.
    pub fn receive_until_quiet(&mut self, quiet: Duration) -> Vec<Received> {
        self.session.receive_until_quiet(quiet)
    }
}

/// A durable, non-exclusive, non-auto-delete queue bound to an exchange, for tests that restart
/// the broker: it survives the restart with every persistent message it holds. No connection is
/// kept open: each read opens a fresh one (retrying while the broker comes back), so a restart
/// between reads does no harm. The queue (and a test-unique exchange) is deleted on drop.
pub struct DurableCapture {
    runtime: QuietRuntime,
    client: Client,
    pub exchange: String,
    pub queue: String,
    delete_exchange: bool,
}

impl DurableCapture {
    pub fn bind(exchange: &str, binding_key: &str) -> DurableCapture {
        let runtime = QuietRuntime::new();
        let client = Client::test_broker();
        let queue = unique("logcollect-test-dq");
        runtime.block_on(async {
            let durable = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            let (connection, _) = declare_bound_queue(
                &client,
                exchange,
                &queue,
                binding_key,
                durable,
                FieldTable::default(),
            )
            .await;
            let _ = connection.close(200, ShortString::from("declared")).await;
        });
        DurableCapture {
            runtime,
            client,
            exchange: exchange.to_string(),
            queue,
            delete_exchange: exchange.starts_with("logcollect-test"),
        }
    }

    /// A fresh connection, retried until `deadline` (the broker may still be starting).
    async fn connect(client: &Client, deadline: Instant) -> Option<Connection> {
        loop {
            match client.try_connect().await {
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
        let (client, queue) = (&self.client, self.queue.as_str());
        self.runtime.block_on(async {
            let mut out: Vec<Received> = Vec::new();
            let mut finished = false;
            while Instant::now() < deadline {
                let Some(connection) = Self::connect(client, deadline).await else {
                    break;
                };
                let consumer = async {
                    let channel = connection.create_channel().await?;
                    consume(&channel, queue).await
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
                            let received = Received::new(&delivery);
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
        let (client, queue, exchange) = (&self.client, &self.queue, &self.exchange);
        let delete_exchange = self.delete_exchange;
        self.runtime.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(30);
            let Some(connection) = Self::connect(client, deadline).await else {
                eprintln!("durable capture: queue {queue} left behind: broker unreachable");
                return;
            };
            let exchanges = if delete_exchange {
                std::slice::from_ref(exchange)
            } else {
                &[]
            };
            clean_up(&connection, Some(queue), exchanges).await;
        });
    }
}
