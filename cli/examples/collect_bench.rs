//! Benchmark of `logcollect collect`: fills a queue of its own with N loadgen-like ECS
//! documents (B per message: 1 = one event per message, as the shipper sends today; more =
//! array bodies), then starts the release `logcollect collect` on it with `text` files and
//! `flush_every = 1000`, and measures how fast it drains the backlog into the files, and its
//! peak RSS (VmHWM). Finally it counts the distinct seq_no values in the file.
//!
//! ```text
//! cargo build --release -p logcollect-cli --bin logcollect --example collect_bench
//! LOGCOLLECT_BROKER_URI=amqp://guest:guest@127.0.0.1:5672/%2f \
//!   target/release/examples/collect_bench --events 1000000 --batch 100 --ceiling 1
//! ```
//!
//! `--prefetch N` is passed to `collect` (and the ceiling consumer); `--ceiling 1` also drains
//! a copy of the backlog with a consumer that only acks, for a same-run broker ceiling.
//! `events_per_s` counts until every event is written (the status page's count);
//! `acked_events_per_s` until the collector, sent SIGTERM then, has synced, acked and exited
//! (`left_in_queue` should be 0).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: not a number")))
        .unwrap_or(default)
}

fn doc(seq_no: u64) -> serde_json::Value {
    serde_json::json!({
        "@timestamp": "2026-11-21T19:00:00.123456Z",
        "ecs": {"version": "8.11.0"},
        "event": {"dataset": "bench", "id": format!("0190a000-0000-7000-8000-{seq_no:012}")},
        "host": {"hostname": "bench-host"},
        "log": {"level": "INFO", "logger": "loadgen"},
        "message": "load event",
        "process": {"pid": 4242, "thread": {"id": 1}},
        "service": {"name": "bench"},
        "spans": ["loadgen_batch"],
        "fields": {"seq_no": seq_no, "worker": 0, "payload": "x".repeat(64)}
    })
}

fn stats(port: u16) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    serde_json::from_str(raw.split_once("\r\n\r\n")?.1).ok()
}

fn main() {
    let n = arg("--events", 1_000_000);
    let batch = arg("--batch", 100).max(1);
    let port = u16::try_from(arg("--port", 9029)).expect("port");
    let prefetch = u16::try_from(arg("--prefetch", 2000)).expect("prefetch");
    // `--ceiling 1`: the same backlog also goes to a second queue, drained first by a plain
    // consumer that acks without parsing or writing: what the broker and AMQP alone allow.
    let ceiling = arg("--ceiling", 0) != 0;
    let uri = std::env::var("LOGCOLLECT_BROKER_URI")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let id = std::process::id();
    let exchange = format!("lc-bench-{id}");
    let queue = format!("lc-bench-{id}-q");
    let dir = std::env::temp_dir().join(format!("lc-bench-{id}"));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let connection = rt.block_on(async {
        let c = Connection::connect(&uri, ConnectionProperties::default())
            .await
            .expect("connect");
        let ch = c.create_channel().await.expect("channel");
        ch.exchange_declare(
            ShortString::from(exchange.as_str()),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("exchange");
        ch.queue_declare(
            ShortString::from(queue.as_str()),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("queue");
        ch.queue_bind(
            ShortString::from(queue.as_str()),
            ShortString::from(exchange.as_str()),
            ShortString::from("#"),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
        if ceiling {
            ch.queue_declare(
                ShortString::from(format!("{queue}-ceiling").as_str()),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue");
            ch.queue_bind(
                ShortString::from(format!("{queue}-ceiling").as_str()),
                ShortString::from(exchange.as_str()),
                ShortString::from("#"),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        }
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        let started = Instant::now();
        let mut seq = 0u64;
        let mut pending = Vec::new();
        while seq < n {
            let end = (seq + batch).min(n);
            let body = if batch == 1 {
                serde_json::to_vec(&doc(seq))
            } else {
                serde_json::to_vec(&(seq..end).map(doc).collect::<Vec<_>>())
            }
            .expect("json");
            seq = end;
            pending.push(
                ch.basic_publish(
                    ShortString::from(exchange.as_str()),
                    ShortString::from("logstash.loadgen"),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .expect("publish"),
            );
            if pending.len() >= 500 {
                for p in pending.drain(..) {
                    p.await.expect("confirm");
                }
            }
        }
        for p in pending.drain(..) {
            p.await.expect("confirm");
        }
        eprintln!(
            "backlog of {n} events in {} messages published in {:.1}s",
            n.div_ceil(batch),
            started.elapsed().as_secs_f64()
        );
        c
    });

    if ceiling {
        let messages = n.div_ceil(batch);
        let secs = rt.block_on(async {
            let ch = connection.create_channel().await.expect("channel");
            ch.basic_qos(prefetch, BasicQosOptions::default())
                .await
                .expect("qos");
            let mut consumer = ch
                .basic_consume(
                    ShortString::from(format!("{queue}-ceiling").as_str()),
                    ShortString::from("ceiling"),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("consume");
            let started = Instant::now();
            let mut seen = 0u64;
            while let Some(d) = consumer.next().await {
                let d = d.expect("delivery");
                seen += 1;
                if seen.is_multiple_of(u64::from(prefetch / 2).max(1)) || seen == messages {
                    ch.basic_ack(d.delivery_tag, BasicAckOptions { multiple: true })
                        .await
                        .expect("ack");
                }
                if seen == messages {
                    break;
                }
            }
            let secs = started.elapsed().as_secs_f64();
            let _ = ch
                .queue_delete(
                    ShortString::from(format!("{queue}-ceiling").as_str()),
                    QueueDeleteOptions::default(),
                )
                .await;
            secs
        });
        println!(
            "broker_ceiling events={n} batch={batch} prefetch={prefetch} drained_s={secs:.2} events_per_s={:.0}",
            n as f64 / secs
        );
    }

    let facilities = dir.join("facilities.toml");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        &facilities,
        "[default]\nformat = \"text\"\nflush_every = 1000\n",
    )
    .expect("facilities");
    let exe = std::env::current_exe().expect("exe");
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target/release")
        .join("logcollect");
    let started = Instant::now();
    let mut child = Command::new(&bin)
        .args(["collect", "--dir"])
        .arg(dir.join("files"))
        .args([
            "--queue",
            &queue,
            "--prefetch",
            &prefetch.to_string(),
            "--facilities",
        ])
        .arg(&facilities)
        .args(["--http", &format!("127.0.0.1:{port}")])
        .env("LOGCOLLECT_BROKER_URI", &uri)
        .env("LOGCOLLECT_EXCHANGE", &exchange)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run target/release/logcollect (build it first)");
    let pid = child.id();
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line.expect("stderr");
        if line.contains("consuming queue") {
            break;
        }
    }
    let consuming = Instant::now();
    std::thread::spawn(move || for _ in lines {});
    let mut peak_kb = 0u64;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            for l in status.lines() {
                if let Some(v) = l.strip_prefix("VmHWM:") {
                    peak_kb = v
                        .trim()
                        .trim_end_matches(" kB")
                        .trim()
                        .parse()
                        .unwrap_or(peak_kb);
                }
            }
        }
        if stats(port)
            .and_then(|s| s["events"].as_u64())
            .is_some_and(|e| e >= n)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "did not drain within 600 s"
        );
    }
    let drained = consuming.elapsed();
    // SIGTERM: the collector syncs and acks what it wrote, then exits; until then an event
    // may be in the file but not yet on disk and acked.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = child.wait();
    let acked = consuming.elapsed();
    // Messages not acked are back in the queue once the collector's connection closed.
    let left = rt.block_on(async {
        let ch = connection.create_channel().await.ok()?;
        let q = ch
            .queue_declare(
                ShortString::from(queue.as_str()),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .ok()?;
        Some(q.message_count())
    });
    let file = dir.join("files/bench/root.log");
    let text = std::fs::read_to_string(&file).expect("the file");
    let seqs: HashSet<&str> = text
        .lines()
        .filter_map(|l| l.split(" seq_no=").nth(1)?.split(' ').next())
        .collect();
    println!(
        "collect_bench events={n} batch={batch} prefetch={prefetch} drained_s={:.2} events_per_s={:.0} acked_s={:.2} acked_events_per_s={:.0} left_in_queue={} peak_rss_mib={:.1} distinct_seq_no={} file_bytes={}",
        drained.as_secs_f64(),
        n as f64 / drained.as_secs_f64(),
        acked.as_secs_f64(),
        n as f64 / acked.as_secs_f64(),
        left.map_or("?".to_string(), |m| m.to_string()),
        peak_kb as f64 / 1024.0,
        seqs.len(),
        text.len()
    );
    rt.block_on(async {
        if let Ok(ch) = connection.create_channel().await {
            let _ = ch
                .queue_delete(
                    ShortString::from(queue.as_str()),
                    QueueDeleteOptions::default(),
                )
                .await;
            let _ = ch
                .exchange_delete(
                    ShortString::from(exchange.as_str()),
                    ExchangeDeleteOptions::default(),
                )
                .await;
        }
        let _ = connection.close(200, ShortString::from("done")).await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}
