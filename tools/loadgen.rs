//! Load generator: emits INFO events as fast as possible (or at a given rate) from several
//! threads through the standard configuration, then flushes and reports.
//!
//! ```text
//! cargo run --release --example loadgen -- --events 20000 [--threads 4] [--rate 0] [--flush-timeout-secs 30]
//!     [--drain-spool] [--progress-every N] [--until-eof]
//! ```
//!
//! Each event is inside a span and carries `seq_no` (0..N-1, unique across threads), `worker`
//! and `payload`. The last line printed is the stats; the exit code is 0 only if the broker
//! confirmed every event. With `--drain-spool` (and `LOGCOLLECT_SPOOL__DIR`), it also waits,
//! within the flush timeout, until the spool is empty: what an earlier run left there is
//! delivered too (`recovered`), e.g. `--events 0 --drain-spool` only replays a spool. With
//! `--progress-every N`, a `progress logged=… <stats>` line is printed every N events. With
//! `--until-eof`, it logs until its standard input closes (or `--events` is reached, unbounded
//! unless given): a test keeps the load running while it injects faults, then stops it; the
//! report's `events=` is how many were logged. The stats on the last line include the delivery
//! latency (`latency_p50_ms`, `latency_p99_ms`, `latency_max_ms`: logging call to broker
//! confirm, over the last 4096 events); `--rate 1000` measures it under light load.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    events: u64,
    threads: u64,
    rate: u64,
    flush_timeout: Duration,
    drain_spool: bool,
    progress_every: u64,
    until_eof: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut events = None;
    let mut args = Args {
        events: 100_000,
        threads: 1,
        rate: 0,
        flush_timeout: Duration::from_secs(30),
        drain_spool: false,
        progress_every: 0,
        until_eof: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{name} needs a value"))?;
            v.parse()
                .map_err(|_| format!("{name}: `{v}` is not a non-negative integer"))
        };
        match flag.as_str() {
            "--events" => events = Some(value("--events")?),
            "--threads" => args.threads = value("--threads")?.max(1),
            "--rate" => args.rate = value("--rate")?,
            "--flush-timeout-secs" => {
                args.flush_timeout = Duration::from_secs(value("--flush-timeout-secs")?)
            }
            "--drain-spool" => args.drain_spool = true,
            "--progress-every" => args.progress_every = value("--progress-every")?,
            "--until-eof" => args.until_eof = true,
            "-h" | "--help" => {
                return Err("usage: loadgen [--events N] [--threads T] [--rate R] \
                            [--flush-timeout-secs S] [--drain-spool] [--progress-every N] [--until-eof]"
                    .into())
            }
            other => return Err(format!("unknown argument `{other}`; see --help")),
        }
    }
    args.events = match (events, args.until_eof) {
        (Some(n), _) => n,
        (None, true) => u64::MAX,
        (None, false) => args.events,
    };
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let guard = match logcollect::init() {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };

    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    if args.until_eof {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            stop.store(true, Ordering::Relaxed);
        });
    }
    let started = Instant::now();
    let workers: Vec<_> = (0..args.threads)
        .map(|worker| {
            let (next, stop) = (next.clone(), stop.clone());
            let (shipper, progress_every) = (guard.shipper(), args.progress_every);
            let (events, per_thread_rate) = (args.events, args.rate as f64 / args.threads as f64);
            std::thread::spawn(move || {
                let payload = "x".repeat(64);
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let seq_no = next.fetch_add(1, Ordering::Relaxed);
                    if seq_no >= events {
                        break;
                    }
                    if per_thread_rate > 0.0 {
                        let due = started + Duration::from_secs_f64(sent as f64 / per_thread_rate);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let span = tracing::info_span!("loadgen_batch", worker);
                    let _entered = span.enter();
                    tracing::info!(seq_no, worker, payload = payload.as_str(), "load event");
                    sent += 1;
                    if progress_every > 0 && (seq_no + 1).is_multiple_of(progress_every) {
                        println!("progress logged={} {}", seq_no + 1, shipper.stats());
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let emitted = started.elapsed();
    // Every seq_no handed out below `events` was logged.
    let logged = next.load(Ordering::Relaxed).min(args.events);
    let flushed = guard.flush(args.flush_timeout);
    let mut spool_drained = true;
    if args.drain_spool {
        let deadline = started + emitted + args.flush_timeout;
        while guard.stats().spool_bytes > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        spool_drained = guard.stats().spool_bytes == 0;
    }
    let elapsed = started.elapsed();
    let stats = guard.stats();
    let ok = flushed.is_complete()
        && spool_drained
        && stats.confirmed >= logged
        && stats.dropped.total() == 0;
    println!(
        "loadgen events={} threads={} rate={} emit_s={:.3} total_s={:.3} confirmed_per_s={:.0} \
         events_per_message={:.1} undelivered={} ok={} {}",
        logged,
        args.threads,
        args.rate,
        emitted.as_secs_f64(),
        elapsed.as_secs_f64(),
        (stats.confirmed + stats.recovered) as f64 / elapsed.as_secs_f64(),
        stats.published as f64 / stats.messages_published.max(1) as f64,
        flushed.undelivered,
        ok,
        stats
    );
    drop(guard);
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
