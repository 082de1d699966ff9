//! The one-call boot in a plain (non-async) program, then a look at what arrived.
//!
//! ```text
//! scripts/quickstart              # brings a broker up first when none answers
//! cargo run --example quickstart  # needs RabbitMQ at LOGCOLLECT_BROKER_URI (default: local)
//! ```
//! Configure it like any application: `LOGCOLLECT_IDENTITY__PROJECT=demo`,
//! `LOGCOLLECT_CONSOLE=true`, `LOGCOLLECT_FORMAT=classic`, … (see docs/configuration.md).
//!
//! Exits 0 once the broker has confirmed every event and every document was read back; 1 when
//! they were not confirmed within [`DELIVERY_WAIT`] (the broker never answered) or could not be
//! read back; 2 on an invalid configuration.

use std::time::Duration;

/// How long the example waits for the broker to confirm its events. Returns as soon as they
/// are; the margin covers a first connection that fails (a broker still starting) and the
/// shipper's reconnect backoff.
const DELIVERY_WAIT: Duration = Duration::from_secs(20);

#[derive(Debug)]
struct GatewayTimeout;
impl std::fmt::Display for GatewayTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("payment gateway timed out")
    }
}
impl std::error::Error for GatewayTimeout {}

#[derive(Debug)]
struct PaymentError {
    source: GatewayTimeout,
}
impl std::fmt::Display for PaymentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("card could not be charged")
    }
}
impl std::error::Error for PaymentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn main() {
    // Demo only: a private queue bound to the exchange, so we can show what arrives.
    // (In production Logstash's queue is bound there; see compose/README.md.)
    let peek = peek::Peek::bind();

    // The one call an application makes.
    let guard = match logcollect::init() {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };

    tracing::info!(version = env!("CARGO_PKG_VERSION"), "quickstart started");
    {
        let span = tracing::info_span!("checkout", order_id = 1042, customer = "c-77");
        let _entered = span.enter();
        tracing::info!(amount = 99.5, currency = "EUR", "charging card");
        let err = PaymentError {
            source: GatewayTimeout,
        };
        tracing::error!(
            error = &err as &dyn std::error::Error,
            attempt = 1,
            "payment failed"
        );
    }
    log::warn!("records from the `log` crate arrive too");

    // Usually you just let the guard drop at the end of main; here we wait to show the result.
    let flushed = guard.flush(DELIVERY_WAIT);
    let stats = guard.stats();
    println!("stats: {stats}");
    if !flushed.is_complete() {
        let uri = logcollect::Config::from_env()
            .map(|c| peek::mask(&c.broker_uri))
            .unwrap_or_default();
        eprintln!(
            "{} events not confirmed by the broker within {DELIVERY_WAIT:?}{}: is RabbitMQ \
             running at {uri}? `scripts/quickstart` brings one up (see README.md)",
            flushed.undelivered,
            stats
                .last_error
                .as_deref()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default(),
        );
        std::process::exit(1);
    }
    println!(
        "all {} events confirmed by the broker; as they arrived:",
        stats.confirmed
    );
    // A batch arrives as one message whose body is an array of documents: each is shown alone.
    let shown = match peek {
        Ok(mut peek) => peek.documents(stats.confirmed as usize),
        Err(e) => {
            eprintln!("cannot read the documents back: {e}");
            std::process::exit(1);
        }
    };
    for doc in &shown {
        println!("{doc}");
    }
    if (shown.len() as u64) < stats.confirmed {
        eprintln!(
            "only {} of the {} confirmed events were read back from the exchange",
            shown.len(),
            stats.confirmed
        );
        std::process::exit(1);
    }
}

mod peek {
    //! Reads back what the shipper published. Not something an application does.

    use futures_util::StreamExt;
    use lapin::options::{
        BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    };
    use lapin::types::{FieldTable, ShortString};
    use lapin::{Connection, ConnectionProperties, ExchangeKind};
    use std::time::Duration;

    pub struct Peek {
        runtime: tokio::runtime::Runtime,
        _connection: Connection,
        consumer: lapin::Consumer,
    }

    impl Peek {
        pub fn bind() -> Result<Peek, String> {
            let config = logcollect::Config::from_env().map_err(|e| e.to_string())?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let (connection, consumer) = runtime.block_on(async {
                let connection =
                    Connection::connect(&config.broker_uri, ConnectionProperties::default())
                        .await
                        .map_err(|e| {
                            format!(
                                "cannot reach the broker at {}: {e}",
                                mask(&config.broker_uri)
                            )
                        })?;
                let channel = connection
                    .create_channel()
                    .await
                    .map_err(|e| e.to_string())?;
                let exchange =
                    ShortString::try_new(config.exchange.as_str()).map_err(|e| e.to_string())?;
                let durable = ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                };
                channel
                    .exchange_declare(
                        exchange.clone(),
                        ExchangeKind::from(config.exchange_type),
                        durable,
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let exclusive = QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                };
                let queue = channel
                    .queue_declare(ShortString::from(""), exclusive, FieldTable::default())
                    .await
                    .map_err(|e| e.to_string())?;
                channel
                    .queue_bind(
                        queue.name().clone(),
                        exchange,
                        ShortString::from("#"),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let consumer = channel
                    .basic_consume(
                        queue.name().clone(),
                        ShortString::from(""),
                        BasicConsumeOptions {
                            no_ack: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((connection, consumer))
            })?;
            Ok(Peek {
                runtime,
                _connection: connection,
                consumer,
            })
        }

        /// The first `n` documents this process shipped, one per line as they arrived (with
        /// their routing keys; a batch's array split into its documents), waiting at most a few
        /// seconds. Documents of other applications publishing to the same exchange (a shared
        /// broker) are left out.
        pub fn documents(&mut self, n: usize) -> Vec<String> {
            let pid = u64::from(std::process::id());
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            let consumer = &mut self.consumer;
            self.runtime.block_on(async {
                let mut out = Vec::new();
                while out.len() < n {
                    match tokio::time::timeout_at(deadline, consumer.next()).await {
                        Ok(Some(Ok(d))) => {
                            for doc in split(&d.data) {
                                if shipped_by(doc, pid) {
                                    out.push(format!("[{}] {}", d.routing_key, doc.get()));
                                }
                            }
                        }
                        _ => break,
                    }
                }
                out
            })
        }
    }

    /// The documents of a message body: the elements of an array (a batch), or the body itself
    /// (one event). A body that is not JSON gives none.
    fn split(body: &[u8]) -> Vec<&serde_json::value::RawValue> {
        serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(body)
            .or_else(|_| {
                serde_json::from_slice::<&serde_json::value::RawValue>(body).map(|d| vec![d])
            })
            .unwrap_or_default()
    }

    /// Whether a document carries `pid`: `process.pid` (ecs) or `process` (classic).
    fn shipped_by(doc: &serde_json::value::RawValue, pid: u64) -> bool {
        serde_json::from_str::<serde_json::Value>(doc.get()).is_ok_and(|doc| {
            doc.pointer("/process/pid")
                .or_else(|| doc.get("process"))
                .and_then(serde_json::Value::as_u64)
                == Some(pid)
        })
    }

    /// The URI without its password: `amqp://user:***@host:5672/vhost`.
    pub fn mask(uri: &str) -> String {
        let Some((scheme, rest)) = uri.split_once("://") else {
            return uri.to_string();
        };
        match rest.rsplit_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            _ => uri.to_string(),
        }
    }
}
