//! The broker's ceiling for logcollect's traffic: raw lapin publishing pre-encoded bodies of the
//! same document size and the same events per message as the shipper, persistent, `mandatory`,
//! with a window of publisher confirms — no capture, no encoding, no queue. `scripts/bench`
//! runs it and `loadgen` back to back and prints both rates and their ratio.
//!
//! ```text
//! cargo run --release --example ceiling -- --events 1000000 [--batch 256] [--doc-bytes 560] [--window 64]
//! cargo run --release --example ceiling -- --setup QUEUE      # durable queue bound with logstash.#
//! cargo run --release --example ceiling -- --teardown QUEUE   # delete it
//! ```
//!
//! The broker is `LOGCOLLECT_BROKER_URI`, the exchange `logstash` (declared as the shipper
//! does). The bench queue drops its oldest messages beyond 64 MiB (`x-max-length-bytes`,
//! `drop-head`), so long runs never fill the broker's memory or disk; every message is still
//! routed, persisted and confirmed.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::Instant;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties, ExchangeKind};

struct Args {
    events: u64,
    batch: u64,
    doc_bytes: usize,
    window: usize,
    setup: Option<String>,
    teardown: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        events: 1_000_000,
        batch: logcollect::defaults::BATCH_MAX_EVENTS as u64,
        doc_bytes: 560,
        window: 64,
        setup: None,
        teardown: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|_| format!("`{v}`: not a number"));
        match flag.as_str() {
            "--events" => a.events = number(value()?)?,
            "--batch" => a.batch = number(value()?)?.max(1),
            "--doc-bytes" => a.doc_bytes = number(value()?)?.max(16) as usize,
            "--window" => a.window = number(value()?)?.max(1) as usize,
            "--setup" => a.setup = Some(value()?),
            "--teardown" => a.teardown = Some(value()?),
            _ => return Err(format!("unknown argument `{flag}`; see the example's docs")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
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
    match runtime.block_on(run(args)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ceiling: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One document of `bytes` bytes, JSON like the shipper's.
fn document(seq: u64, bytes: usize) -> String {
    let head = format!(r#"{{"message":"load event","seq_no":{seq},"pad":""#);
    let pad = bytes.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

async fn run(args: Args) -> Result<String, String> {
    let uri = std::env::var("LOGCOLLECT_BROKER_URI")
        .unwrap_or_else(|_| logcollect::defaults::BROKER_URI.into());
    let connection = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    let exchange = ShortString::from(logcollect::defaults::EXCHANGE);
    channel
        .exchange_declare(
            exchange.clone(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("declare exchange: {e}"))?;
    if let Some(queue) = &args.setup {
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-max-length-bytes".into(),
            AMQPValue::LongLongInt(64 << 20),
        );
        arguments.insert(
            "x-overflow".into(),
            AMQPValue::LongString("drop-head".into()),
        );
        let options = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(queue.as_str().into(), options, arguments)
            .await
            .map_err(|e| format!("declare queue: {e}"))?;
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange,
                logcollect::defaults::BINDING_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| format!("bind: {e}"))?;
        return Ok(format!("ceiling setup queue={queue}"));
    }
    if let Some(queue) = &args.teardown {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .map_err(|e| format!("delete: {e}"))?;
        return Ok(format!("ceiling teardown queue={queue}"));
    }

    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    // Pre-encoded: one body per message, shared by every publish.
    let docs: Vec<String> = (0..args.batch)
        .map(|i| document(i, args.doc_bytes))
        .collect();
    let body = format!("[{}]", docs.join(",")).into_bytes();
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into());
    let routing_key = ShortString::from("logstash.loadgen");
    let messages = args.events.div_ceil(args.batch);
    let started = Instant::now();
    let mut in_flight = VecDeque::new();
    let mut confirmed = 0u64;
    for _ in 0..messages {
        if in_flight.len() >= args.window {
            confirmed += settle(in_flight.pop_front()).await?;
        }
        let confirm = channel
            .basic_publish(
                exchange.clone(),
                routing_key.clone(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                &body,
                properties.clone(),
            )
            .await
            .map_err(|e| format!("publish: {e}"))?;
        in_flight.push_back(confirm);
    }
    while let Some(c) = in_flight.pop_front() {
        confirmed += settle(Some(c)).await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let events = confirmed * args.batch;
    let _ = connection.close(200, "done".into()).await;
    Ok(format!(
        "ceiling events={events} messages={confirmed} batch={} doc_bytes={} body_bytes={} \
         window={} total_s={elapsed:.3} confirmed_per_s={:.0}",
        args.batch,
        args.doc_bytes,
        body.len(),
        args.window,
        events as f64 / elapsed
    ))
}

/// Awaits one confirm: 1 if acked and routed.
async fn settle(
    confirm: Option<impl std::future::Future<Output = lapin::Result<Confirmation>>>,
) -> Result<u64, String> {
    let Some(confirm) = confirm else {
        return Ok(0);
    };
    match confirm.await.map_err(|e| format!("confirm: {e}"))? {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(1),
        Confirmation::Ack(Some(_)) => Err("returned unroutable: run --setup QUEUE first".into()),
        Confirmation::Nack(_) => Err("nacked".into()),
    }
}
