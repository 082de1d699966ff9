//! A background worker with logcollect: consumes the jobs the `web` example queues and logs
//! inside each job's span, which continues the trace of the request that queued the job.
//!
//! ```text
//! cargo run --example worker [-- --queue NAME] [--max-jobs N]
//! ```
//!
//! Configuration as for `init` (`LOGCOLLECT_*`); consumes the durable queue
//! `logcollect-demo-jobs` (or `--queue`) on the same broker. Prints `consuming QUEUE` once it
//! consumes; stops after `--max-jobs` jobs, or on SIGINT/SIGTERM, delivering what is queued.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Connection, ConnectionProperties};
use logcollect::integrations::amqp;
use tracing::Instrument;

const JOBS_QUEUE: &str = "logcollect-demo-jobs";

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// One job: what the web example publishes.
async fn run_job(body: &[u8]) {
    let job: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let job_id = job["job_id"].as_str().unwrap_or("unknown");
    tracing::info!(job_id, "job started");
    tokio::time::sleep(Duration::from_millis(5)).await;
    tracing::info!(job_id, "job done");
}

async fn consume(broker_uri: &str, queue: &str, max_jobs: Option<u64>) -> Result<(), lapin::Error> {
    // The broker may not be up yet: retry for a while, as a service would.
    let mut delay = Duration::from_millis(200);
    let connection = loop {
        match Connection::connect(broker_uri, ConnectionProperties::default()).await {
            Ok(connection) => break connection,
            Err(e) if delay < Duration::from_secs(10) => {
                tracing::warn!(reason = %e, "cannot connect to the broker yet");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(e),
        }
    };
    let channel = connection.create_channel().await?;
    channel
        .queue_declare(
            ShortString::from(queue),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel.basic_qos(16, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(
            ShortString::from(queue),
            ShortString::from("logcollect-demo-worker"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    println!("consuming {queue}");
    let mut done = 0u64;
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        let span = amqp::job_span(queue, &delivery.properties);
        run_job(&delivery.data).instrument(span).await;
        delivery.ack(BasicAckOptions::default()).await?;
        done += 1;
        if max_jobs.is_some_and(|max| done >= max) {
            break;
        }
    }
    let _ = connection
        .close(200, ShortString::from("worker done"))
        .await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let queue = arg(&args, "--queue").unwrap_or_else(|| JOBS_QUEUE.into());
    let max_jobs = arg(&args, "--max-jobs").and_then(|n| n.parse().ok());

    // Service `logcollect-worker` (unless LOGCOLLECT_SERVICE_NAME or the `application` identity entry
    // names it), version from Cargo.
    let builder = logcollect::builder_from_env()?.cargo_package(logcollect::CargoPackage {
        name: "logcollect-worker",
        ..logcollect::cargo_package!()
    });
    let broker_uri = builder.config().broker_uri.clone();
    let shutdown_timeout = builder.config().shutdown_timeout;
    let guard = builder.init()?;

    tokio::select! {
        result = consume(&broker_uri, &queue, max_jobs) => {
            if let Err(e) = result {
                tracing::error!(error = &e as &dyn std::error::Error, "the worker stopped");
            }
        }
        _ = shutdown_signal() => {}
    }
    // Delivers what is queued without blocking a runtime worker (dropping the guard would wait
    // on this one); what is left undelivered is reported on stderr.
    let _ = guard.shutdown_async(shutdown_timeout).await;
    Ok(())
}
