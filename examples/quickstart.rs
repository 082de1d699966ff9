//! The one-call boot in a plain (non-async) program, then a look at what arrived.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//! Configure it like any application: `LOGCOLLECT_IDENTITY__PROJECT=demo`,
//! `LOGCOLLECT_CONSOLE=true`, `LOGCOLLECT_FORMAT=classic`, … (see README.md).

use std::time::Duration;

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
    // (In production Logstash's queue is bound there; see "Full stack" in README.md.)
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
    let flushed = guard.flush(Duration::from_secs(10));
    let stats = guard.stats();
    println!("stats: {stats}");
    if !flushed.is_complete() {
        eprintln!(
            "{} events not confirmed by the broker yet",
            flushed.undelivered
        );
        std::process::exit(1);
    }
    println!(
        "all {} events confirmed by the broker; as they arrived:",
        stats.confirmed
    );
    match peek {
        Ok(mut peek) => {
            for doc in peek.documents(stats.confirmed as usize) {
                println!("{doc}");
            }
        }
        Err(e) => println!("(cannot show them: {e})"),
    }
}

mod peek {
    //! Reads back what the shipper published. Not something an application does.

    use futures_util::StreamExt;
    use lapin::options::{
        BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    };
    use lapin::types::{FieldTable, ShortString};
    use lapin::{Connection, ConnectionProperties};
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
                            format!("cannot reach the broker at {}: {e}", config.broker_uri)
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
                        config.exchange_type.kind(),
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

        pub fn documents(&mut self, n: usize) -> Vec<String> {
            let consumer = &mut self.consumer;
            self.runtime.block_on(async {
                let mut out = Vec::new();
                while out.len() < n {
                    match tokio::time::timeout(Duration::from_secs(2), consumer.next()).await {
                        Ok(Some(Ok(d))) => out.push(format!(
                            "[{}] {}",
                            d.routing_key,
                            String::from_utf8_lossy(&d.data)
                        )),
                        _ => break,
                    }
                }
                out
            })
        }
    }
}
