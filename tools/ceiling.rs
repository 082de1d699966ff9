//! The broker's ceiling for logcollect's traffic: raw lapin publishing pre-encoded bodies of the
//! same document size and the same events per message as the shipper, persistent, `mandatory`,
//! with a window of publisher confirms — no capture, no encoding, no queue. `scripts/bench`
//! runs it and `loadgen` back to back and prints both rates and their ratio.
//!
//! ```text
//! cargo run --release --example ceiling -- --events 1000000 [--batch 256] [--doc-bytes 648] [--window 64]
//! cargo run --release --example ceiling -- --events 10000 --batch 1 --rate 1000   # latency
//! cargo run --release --example ceiling -- --setup QUEUE      # durable queue bound with logstash.#
//! cargo run --release --example ceiling -- --teardown QUEUE   # delete it
//! ```
//!
//! The broker is `LOGCOLLECT_BROKER_URI`, the exchange `logstash` (declared as the shipper
//! does). With `--rate R`, messages are published at R per second and each one's time from
//! the publish call to its confirm is reported (`latency_p50_ms`, `latency_p99_ms`,
//! `latency_max_ms`, over the last 4096 messages like the shipper's stats): the broker's own share of the shipper's delivery latency under light load.
//! The bench queue drops its oldest messages beyond 64 MiB (`x-max-length-bytes`,
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
    /// Messages per second; 0: as fast as the window allows.
    rate: u64,
    setup: Option<String>,
    teardown: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        events: 1_000_000,
        batch: logcollect::defaults::BATCH_MAX_EVENTS as u64,
        doc_bytes: 648,
        window: 64,
        rate: 0,
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
            "--rate" => a.rate = number(value()?)?,
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
    if args.rate > 0 {
        return paced(
            &channel,
            &exchange,
            &routing_key,
            &body,
            &properties,
            messages,
            &args,
        )
        .await;
    }
    let started = Instant::now();
    let mut in_flight = VecDeque::new();
    let mut confirmed = 0u64;
    for _ in 0..messages {
        if in_flight.len() >= args.window {
            confirmed += settle(in_flight.pop_front()).await?;
        }
        let confirm = publish(&channel, &exchange, &routing_key, &body, &properties).await?;
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

/// Publishes one body as the shipper does: persistent properties, `mandatory`.
async fn publish(
    channel: &lapin::Channel,
    exchange: &ShortString,
    routing_key: &ShortString,
    body: &[u8],
    properties: &BasicProperties,
) -> Result<lapin::PublisherConfirm, String> {
    channel
        .basic_publish(
            exchange.clone(),
            routing_key.clone(),
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            body,
            properties.clone(),
        )
        .await
        .map_err(|e| format!("publish: {e}"))
}

/// `--rate`: one message every 1/R s, each confirm awaited on its own, latencies reported.
async fn paced(
    channel: &lapin::Channel,
    exchange: &ShortString,
    routing_key: &ShortString,
    body: &[u8],
    properties: &BasicProperties,
    messages: u64,
    args: &Args,
) -> Result<String, String> {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let started = Instant::now();
    let interval = std::time::Duration::from_secs(1).checked_div(args.rate as u32);
    let interval = interval.unwrap_or_default();
    let mut in_flight = FuturesUnordered::new();
    let mut latencies = Vec::with_capacity(messages as usize);
    let mut settled = 0u64;
    for i in 0..messages {
        let due = started + interval.saturating_mul(i.min(u64::from(u32::MAX)) as u32);
        // Settle what confirms arrive while waiting for the next message's time.
        loop {
            tokio::select! {
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    let (sent, result): (Instant, Result<u64, String>) = done;
                    settled += result?;
                    latencies.push(sent.elapsed());
                }
                _ = tokio::time::sleep_until(due.into()) => break,
            }
        }
        let sent = Instant::now();
        let confirm = publish(channel, exchange, routing_key, body, properties).await?;
        in_flight.push(async move { (sent, settle(Some(confirm)).await) });
    }
    while let Some((sent, result)) = in_flight.next().await {
        settled += result?;
        latencies.push(sent.elapsed());
    }
    // Over the last 4096 confirms, as the shipper's `Stats` reports its latency.
    let mut latencies = latencies.split_off(latencies.len().saturating_sub(4096));
    latencies.sort();
    let ms = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(format!(
        "ceiling events={} messages={settled} batch={} rate={} total_s={:.3} \
         latency_p50_ms={:.3} latency_p99_ms={:.3} latency_max_ms={:.3}",
        settled * args.batch,
        args.batch,
        args.rate,
        started.elapsed().as_secs_f64(),
        ms(0.5),
        ms(0.99),
        ms(1.0)
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
