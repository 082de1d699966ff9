//! Redis's ceiling for logcollect's traffic: a plain redis-rs client pushing pre-made documents
//! of the same size, as many per command as the shipper's batch, as many commands per pipeline
//! as the shipper's Redis writer sends — no capture, no encoding, no queue. Run it and
//! `loadgen` with `LOGCOLLECT_TRANSPORT=redis` back to back (BENCHMARKS.md, "Redis").
//!
//! ```text
//! cargo run --release --example redis_ceiling -- --events 1000000 [--batch 256] [--doc-bytes 648]
//!     [--pipeline 64] [--data-type list|stream] [--uri redis://127.0.0.1:6379/0] [--key K]
//! ```
//!
//! The key (default `logcollect-ceiling`) is deleted before and after the run.

use std::process::ExitCode;
use std::time::Instant;

struct Args {
    events: u64,
    batch: u64,
    doc_bytes: usize,
    pipeline: u64,
    stream: bool,
    uri: String,
    key: String,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        events: 1_000_000,
        batch: logcollect::defaults::BATCH_MAX_EVENTS as u64,
        doc_bytes: 648,
        pipeline: 64,
        stream: false,
        uri: "redis://127.0.0.1:6379/0".into(),
        key: "logcollect-ceiling".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|_| format!("`{v}`: not a number"));
        match flag.as_str() {
            "--events" => a.events = number(value()?)?,
            "--batch" => a.batch = number(value()?)?.max(1),
            "--doc-bytes" => a.doc_bytes = number(value()?)?.max(16) as usize,
            "--pipeline" => a.pipeline = number(value()?)?.max(1),
            "--data-type" => {
                a.stream = match value()?.as_str() {
                    "list" => false,
                    "stream" => true,
                    other => return Err(format!("--data-type `{other}`: list or stream")),
                }
            }
            "--uri" => a.uri = value()?,
            "--key" => a.key = value()?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(a)
}

/// A JSON document of about `bytes` bytes.
fn document(bytes: usize) -> String {
    let head = r#"{"@timestamp":"2026-01-01T00:00:00.000000Z","message":"ceiling","pad":""#;
    let pad = bytes.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

async fn run(a: &Args) -> redis::RedisResult<f64> {
    let client = redis::Client::open(a.uri.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let _: () = redis::cmd("DEL").arg(&a.key).query_async(&mut conn).await?;
    let doc = document(a.doc_bytes);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < a.events {
        let mut pipe = redis::pipe();
        if a.stream {
            pipe.atomic();
        }
        let mut commands = 0;
        while commands < a.pipeline && sent < a.events {
            let n = a.batch.min(a.events - sent);
            if a.stream {
                for _ in 0..n {
                    pipe.cmd("XADD")
                        .arg(&a.key)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(1_000_000)
                        .arg("*")
                        .arg("doc")
                        .arg(&doc)
                        .arg("format")
                        .arg("ecs")
                        .arg("service")
                        .arg("ceiling");
                }
            } else {
                let push = pipe.cmd("RPUSH").arg(&a.key);
                for _ in 0..n {
                    push.arg(&doc);
                }
            }
            sent += n;
            commands += 1;
        }
        let _: redis::Value = pipe.query_async(&mut conn).await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let _: () = redis::cmd("DEL").arg(&a.key).query_async(&mut conn).await?;
    Ok(elapsed)
}

fn main() -> ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("redis_ceiling: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("redis_ceiling: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&a)) {
        Ok(secs) => {
            println!(
                "redis_ceiling events={} batch={} doc_bytes={} pipeline={} data_type={} \
                 total_s={secs:.3} events_per_s={:.0}",
                a.events,
                a.batch,
                a.doc_bytes,
                a.pipeline,
                if a.stream { "stream" } else { "list" },
                a.events as f64 / secs.max(1e-9)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("redis_ceiling: {e}");
            ExitCode::FAILURE
        }
    }
}
