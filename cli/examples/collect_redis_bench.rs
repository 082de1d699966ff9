//! Benchmark of `logcollect collect --from redis://…` on a list: pushes N loadgen-like ECS
//! documents onto a list of its own (one value each, one multi-value RPUSH per 1000, as the
//! transport batches), then starts the release `logcollect collect` on it with `text` files and
//! `flush_every = 1000`, and times how long it takes to write them all (from "reading" until
//! `/api/stats` counts N); then counts the distinct seq_no values in the file. With
//! `--ceiling 1` a copy of the list is first drained, in the same run, the collector's way but
//! without files (pipelined LMOVE into a processing list, LTRIM per batch): Redis's ceiling.
//!
//! ```text
//! cargo build --release -p logcollect-cli --bin logcollect --example collect_redis_bench
//! target/release/examples/collect_redis_bench --events 500000 --prefetch 500 --ceiling 1
//! ```
//! `LOGCOLLECT_TEST_REDIS` names another server than redis://127.0.0.1:6379/.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: not a number")))
        .unwrap_or(default)
}

fn doc(seq_no: u64) -> String {
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
    .to_string()
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

fn push(conn: &mut redis::Connection, key: &str, n: u64) {
    let mut seq = 0;
    while seq < n {
        let end = (seq + 1000).min(n);
        let docs: Vec<String> = (seq..end).map(doc).collect();
        let _: i64 = redis::cmd("RPUSH")
            .arg(key)
            .arg(&docs)
            .query(conn)
            .expect("RPUSH");
        seq = end;
    }
}

fn main() {
    let n = arg("--events", 500_000);
    let port = u16::try_from(arg("--port", 9028)).expect("port");
    let prefetch = u16::try_from(arg("--prefetch", 500)).expect("prefetch");
    let ceiling = arg("--ceiling", 0) != 0;
    let uri =
        std::env::var("LOGCOLLECT_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let id = std::process::id();
    let key = format!("lc-rbench-{id}");
    let dir = std::env::temp_dir().join(format!("lc-rbench-{id}"));
    let _ = std::fs::remove_dir_all(&dir);
    let mut conn = redis::Client::open(uri.as_str())
        .and_then(|c| c.get_connection())
        .expect("connect to Redis");

    if ceiling {
        let copy = format!("{key}-ceiling");
        let processing = format!("{copy}:processing");
        push(&mut conn, &copy, n);
        let started = Instant::now();
        let mut seen = 0u64;
        while seen < n {
            let mut pipe = redis::pipe();
            for _ in 0..prefetch {
                pipe.cmd("LMOVE")
                    .arg(&copy)
                    .arg(&processing)
                    .arg("LEFT")
                    .arg("RIGHT");
            }
            let moved: Vec<Option<Vec<u8>>> = pipe.query(&mut conn).expect("LMOVE");
            let got = moved.iter().flatten().count();
            let _: () = redis::cmd("LTRIM")
                .arg(&processing)
                .arg(got)
                .arg(-1)
                .query(&mut conn)
                .expect("LTRIM");
            seen += got as u64;
        }
        let secs = started.elapsed().as_secs_f64();
        let _: Result<i64, _> = redis::cmd("DEL")
            .arg(&copy)
            .arg(&processing)
            .query(&mut conn);
        println!(
            "redis_ceiling events={n} batch={prefetch} drained_s={secs:.2} events_per_s={:.0}",
            n as f64 / secs
        );
    }

    let started = Instant::now();
    push(&mut conn, &key, n);
    eprintln!(
        "list of {n} documents pushed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
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
        .args(["--from", &uri, "--key", &key, "--consumer", "bench"])
        .args(["--prefetch", &prefetch.to_string(), "--facilities"])
        .arg(&facilities)
        .args(["--http", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::piped())
        .spawn()
        .expect("run target/release/logcollect (build it first)");
    let pid = child.id();
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line.expect("stderr");
        if line.contains("logcollect collect: reading") {
            break;
        }
    }
    let reading = Instant::now();
    std::thread::spawn(move || for _ in lines {});
    loop {
        std::thread::sleep(Duration::from_millis(50));
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
    let drained = reading.elapsed();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = child.wait();
    let text = std::fs::read_to_string(dir.join("files/bench/root.log")).expect("the file");
    let seqs: HashSet<&str> = text
        .lines()
        .filter_map(|l| l.split(" seq_no=").nth(1)?.split(' ').next())
        .collect();
    println!(
        "collect_redis_bench events={n} prefetch={prefetch} drained_s={:.2} events_per_s={:.0} distinct_seq_no={}",
        drained.as_secs_f64(),
        n as f64 / drained.as_secs_f64(),
        seqs.len()
    );
    let _: Result<i64, _> = redis::cmd("DEL")
        .arg(&key)
        .arg(format!("{key}:processing:bench"))
        .query(&mut conn);
    let _ = std::fs::remove_dir_all(&dir);
}
