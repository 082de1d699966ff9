//! A small operator's tool for trying logcollect without Logstash: bind a queue to the
//! exchange, count and check what arrived, delete it.
//!
//! ```text
//! cargo run --example queue -- bind  [QUEUE]   # durable queue bound to `logstash` with `logstash.#`
//! cargo run --example queue -- check [QUEUE]   # consume everything, validate each document,
//!                                              # count distinct event ids and seq_no values
//! cargo run --example queue -- delete [QUEUE]
//! ```
//! The broker is `LOGCOLLECT_BROKER_URI` (default `amqp://guest:guest@127.0.0.1:5672/%2f`),
//! the exchange `LOGCOLLECT_EXCHANGE` (default `logstash`).

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Connection, ConnectionProperties, ExchangeKind};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let queue = args
        .next()
        .unwrap_or_else(|| "logcollect-check".to_string());
    let uri = std::env::var("LOGCOLLECT_BROKER_URI")
        .unwrap_or_else(|_| logcollect::defaults::BROKER_URI.into());
    let exchange = std::env::var("LOGCOLLECT_EXCHANGE")
        .unwrap_or_else(|_| logcollect::defaults::EXCHANGE.into());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&command, &uri, &exchange, &queue)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: &str, uri: &str, exchange: &str, queue: &str) -> Result<String, String> {
    let connection = Connection::connect(uri, ConnectionProperties::default())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    let q = ShortString::try_new(queue).map_err(|e| e.to_string())?;
    match command {
        "bind" => {
            let x = ShortString::try_new(exchange).map_err(|e| e.to_string())?;
            let durable = ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            };
            channel
                .exchange_declare(
                    x.clone(),
                    ExchangeKind::Topic,
                    durable,
                    FieldTable::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            let qd = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            channel
                .queue_declare(q.clone(), qd, FieldTable::default())
                .await
                .map_err(|e| e.to_string())?;
            channel
                .queue_bind(
                    q,
                    x,
                    ShortString::from(logcollect::defaults::BINDING_KEY),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "queue `{queue}` bound to `{exchange}` with `{}`",
                logcollect::defaults::BINDING_KEY
            ))
        }
        "check" => {
            let mut consumer = channel
                .basic_consume(
                    q,
                    ShortString::from(""),
                    BasicConsumeOptions {
                        no_ack: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            let (mut messages, mut docs, mut invalid) = (0u64, 0u64, 0u64);
            let mut ids = HashSet::new();
            let mut seqs = HashSet::new();
            while let Ok(Some(Ok(delivery))) =
                tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
            {
                messages += 1;
                match serde_json::from_slice::<serde_json::Value>(&delivery.data) {
                    Ok(serde_json::Value::Array(items)) => {
                        for item in items {
                            docs += 1;
                            record_id(&item, &mut ids, &mut invalid);
                            record_seq(&item, &mut seqs);
                        }
                    }
                    Ok(doc) => {
                        docs += 1;
                        record_id(&doc, &mut ids, &mut invalid);
                        record_seq(&doc, &mut seqs);
                    }
                    Err(_) => invalid += 1,
                }
            }
            // The load generator numbers its events 0..N: any gap below the highest is a loss.
            let max = seqs.iter().max().copied();
            let missing = max.map_or(0, |m| (m + 1).saturating_sub(seqs.len() as u64));
            Ok(format!(
                "messages={messages} documents={docs} distinct_event_ids={} invalid={invalid} \
                 distinct_seq_no={} max_seq_no={} missing_seq_no={missing}",
                ids.len(),
                seqs.len(),
                max.map_or("-".to_string(), |m| m.to_string()),
            ))
        }
        "delete" => {
            let n = channel
                .queue_delete(q, QueueDeleteOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("queue `{queue}` deleted with {n} messages"))
        }
        other => Err(format!(
            "unknown command `{other}`; use bind, check or delete"
        )),
    }
}

/// A valid document is an object with an event id (`event.id` in ecs, `event_id` in classic).
/// The `seq_no` field (`ecs` or `classic`), if the document has one.
fn record_seq(doc: &serde_json::Value, seqs: &mut HashSet<u64>) {
    if let Some(seq) = doc
        .pointer("/fields/seq_no")
        .or_else(|| doc.get("seq_no"))
        .and_then(|v| v.as_u64())
    {
        seqs.insert(seq);
    }
}

fn record_id(doc: &serde_json::Value, ids: &mut HashSet<String>, invalid: &mut u64) {
    let id = doc
        .pointer("/event/id")
        .or_else(|| doc.get("event_id"))
        .and_then(|v| v.as_str());
    match id {
        Some(id) if doc.get("@timestamp").is_some() => {
            ids.insert(id.to_string());
        }
        _ => *invalid += 1,
    }
}
