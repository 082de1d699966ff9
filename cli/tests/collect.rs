//! `logcollect collect` against the real broker and real files: every seq_no in its
//! facility's file, sub-facilities, rotation by size and by schedule with their names,
//! compression that decodes, pruning, SIGKILL + restart, SIGHUP after an external move,
//! SIGTERM, array bodies and non-documents.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{unique, wait_until, Broker, Collect};
use logcollect::Format;
use regex::Regex;
use tracing_subscriber::layer::SubscriberExt;

/// Generous: a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(120);

fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique(name));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("test dir");
    dir
}

/// Ships `seqs` as INFO events of `service`, target `web::requests::handler` for even
/// seq_nos when `split`, `jobs` otherwise; waits for the broker's confirms.
fn emit(exchange: &str, format: Format, service: &str, seqs: std::ops::Range<u64>, split: bool) {
    let (layer, guard) = logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(exchange)
        .format(format)
        .service_name(service)
        .hostname("collect-host")
        .configure(|c| c.queue_capacity = 100_000)
        .build()
        .expect("build the shipper");
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let payload = "x".repeat(64);
        for seq_no in seqs {
            if split && seq_no % 2 == 0 {
                tracing::info!(target: "web::requests::handler", seq_no, payload = payload.as_str(), "load event");
            } else {
                tracing::info!(target: "jobs", seq_no, payload = payload.as_str(), "load event");
            }
        }
    });
    let flushed = guard.flush(Duration::from_secs(60));
    assert!(flushed.is_complete(), "undelivered: {flushed:?}");
}

/// The text of a file, decompressed by its extension.
fn read_any(path: &Path) -> String {
    let file = fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = String::new();
    let name = path.to_string_lossy();
    if name.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(file)
            .read_to_string(&mut out)
            .expect("gzip decodes");
    } else if name.ends_with(".zst") {
        zstd::stream::read::Decoder::new(file)
            .expect("zstd")
            .read_to_string(&mut out)
            .expect("zstd decodes");
    } else {
        let mut file = file;
        file.read_to_string(&mut out).expect("UTF-8 text");
    }
    out
}

/// seq_no values of text (` seq_no=N`) and ndjson (`"seq_no":N`) lines.
fn seqs_of(text: &str) -> Vec<u64> {
    let re = Regex::new(r#"(?: seq_no=|"seq_no":)(\d+)"#).expect("regex");
    re.captures_iter(text)
        .map(|c| c[1].parse().expect("number"))
        .collect()
}

fn seq_set(path: &Path) -> BTreeSet<u64> {
    if !path.exists() {
        return BTreeSet::new();
    }
    seqs_of(&read_any(path)).into_iter().collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn rotated_name(live: &str) -> Regex {
    Regex::new(&format!(
        r"^{}\.\d{{8}}T\d{{6}}\.\d{{3}}-\d{{8}}T\d{{6}}\.\d{{3}}(\.gz|\.zst)?$",
        regex::escape(live)
    ))
    .expect("regex")
}

/// Sets up an exchange and a unique queue name, deleted at the end.
struct Setup {
    broker: Broker,
    exchange: String,
    queue: String,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let mut broker = Broker::connect();
        let exchange = unique(&format!("lc-collect-{name}"));
        broker.forget_exchange_later(&exchange);
        Setup {
            broker,
            exchange,
            queue: unique(&format!("lc-collect-{name}-q")),
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let queue = self.queue.clone();
        self.broker.delete_queue(&queue);
    }
}

const FACILITIES: &str = r#"
[default]
flush_every = 100

[billing]
flush_every = 50

["billing:web.requests"]
format = "ndjson"
"#;

#[test]
fn every_seq_no_lands_in_its_facility_file_both_formats_arrays_and_raw() {
    let s = Setup::new("routing");
    let dir = test_dir("collect-routing");
    let facilities = dir.join("facilities.toml");
    fs::write(&facilities, FACILITIES).expect("write facilities");
    let files = dir.join("files");
    let facilities_arg = facilities.to_string_lossy().into_owned();
    let collect = Collect::start(
        &s.exchange,
        &s.queue,
        &files,
        &["--facilities", &facilities_arg],
    );
    const N: u64 = 2000;
    emit(&s.exchange, Format::Ecs, "billing", 0..N, true);
    emit(&s.exchange, Format::Classic, "shop", 0..N, false);
    // A batch body (an array of documents) and a message that is no document.
    let mut broker = Broker::connect();
    let batch = serde_json::json!([
        {"@timestamp": "2026-01-01T00:00:00Z", "message": "batched", "log": {"level": "WARN", "logger": "b"},
         "service": {"name": "batchsvc"}, "fields": {"seq_no": 1}},
        {"@timestamp": "2026-01-01T00:00:00Z", "message": "batched", "log": {"level": "INFO", "logger": "b"},
         "service": {"name": "batchsvc"}, "fields": {"seq_no": 2}}
    ]);
    broker.publish(&s.exchange, "logstash.b", batch.to_string().as_bytes());
    broker.publish(&s.exchange, "logstash.raw", b"plain text, \x1b not json");

    let web = files.join("billing/web.requests.log");
    let root = files.join("billing/root.log");
    let shop = files.join("shop/root.log");
    let even: BTreeSet<u64> = (0..N).filter(|n| n % 2 == 0).collect();
    let odd: BTreeSet<u64> = (0..N).filter(|n| n % 2 == 1).collect();
    let all: BTreeSet<u64> = (0..N).collect();
    wait_until("every seq_no in its facility's file", LIMIT, || {
        seq_set(&web) == even
            && seq_set(&root) == odd
            && seq_set(&shop) == all
            && seq_set(&files.join("batchsvc/root.log")).len() == 2
            && files.join("_raw/root.log").exists()
    });
    // Exactly once here: no restart, so no redelivery.
    assert_eq!(seqs_of(&read_any(&web)).len() as u64, N / 2);
    assert_eq!(seqs_of(&read_any(&shop)).len() as u64, N);
    // ndjson: each line the document as shipped; text: the human line.
    for line in read_any(&web).lines() {
        let doc: serde_json::Value = serde_json::from_str(line).expect("ndjson line");
        assert_eq!(doc["log"]["logger"], "web::requests::handler");
        assert_eq!(doc["service"]["name"], "billing");
    }
    let first = read_any(&root).lines().next().expect("a line").to_string();
    assert!(
        Regex::new(r"^\S+ INFO  collect-host\[\d+\] jobs: load event seq_no=\d+ payload=x{64}$")
            .expect("regex")
            .is_match(&first),
        "{first}"
    );
    let batched = read_any(&files.join("batchsvc/root.log"));
    assert!(
        batched.contains(" WARN  -[-] b: batched seq_no=1"),
        "{batched}"
    );
    let raw = read_any(&files.join("_raw/root.log"));
    assert!(
        raw.contains("RAW   routing_key=logstash.raw plain text, \\u{1b} not json"),
        "{raw}"
    );
    // Everything written was acked.
    wait_until("the queue drained", LIMIT, || {
        s.broker_backlog(&s.queue) == Some(0)
    });
    drop(collect);
}

impl Setup {
    fn broker_backlog(&self, queue: &str) -> Option<u32> {
        let mut b = Broker::connect();
        b.queue_backlog(queue)
    }
}

#[test]
fn size_rotation_compresses_with_span_names_and_keeps_backup_count() {
    let s = Setup::new("size");
    let dir = test_dir("collect-size");
    let facilities = dir.join("facilities.toml");
    fs::write(
        &facilities,
        r#"
[default]
max_size = 4000
backup_count = 3
compress = "gzip"
flush_every = 10

[zsvc]
compress = "zstd"
compress_level = 5
"#,
    )
    .expect("write facilities");
    let files = dir.join("files");
    let facilities_arg = facilities.to_string_lossy().into_owned();
    let collect = Collect::start(
        &s.exchange,
        &s.queue,
        &files,
        &["--facilities", &facilities_arg],
    );
    const N: u64 = 600;
    emit(&s.exchange, Format::Ecs, "gsvc", 0..N, false);
    emit(&s.exchange, Format::Ecs, "zsvc", 0..N, false);
    for (svc, ext) in [("gsvc", ".gz"), ("zsvc", ".zst")] {
        let sub = files.join(svc);
        let name = rotated_name("root.log");
        // Done: the last event written, 3 compressed files kept, no plain rotated file left.
        wait_until(&format!("{svc}: 3 compressed rotated files"), LIMIT, || {
            let names = files_in(&sub);
            let rotated: Vec<_> = names.iter().filter(|n| name.is_match(n)).collect();
            seq_set(&sub.join("root.log")).contains(&(N - 1))
                && rotated.len() == 3
                && rotated.iter().all(|n| n.ends_with(ext))
                && !names.iter().any(|n| n.ends_with(".tmp"))
        });
        let names = files_in(&sub);
        assert_eq!(names.len(), 4, "the live file and 3 rotated: {names:?}");
        // The oldest were deleted: what is left is the newest seq_nos, without a gap.
        let mut seen = BTreeSet::new();
        for n in &names {
            let text = read_any(&sub.join(n));
            assert!(
                text.len() <= 4000,
                "{n} has {} bytes > max_size",
                text.len()
            );
            seen.extend(seqs_of(&text));
        }
        let low = *seen.iter().next().expect("some");
        assert!(low > 0, "backup_count deletes the oldest");
        assert_eq!(seen, (low..N).collect::<BTreeSet<_>>());
        // And the standard tools agree.
        let tool = if ext == ".gz" { "gzip" } else { "zstd" };
        for n in names.iter().filter(|n| n.ends_with(ext)) {
            if let Ok(out) = std::process::Command::new(tool)
                .arg("-t")
                .arg(sub.join(n))
                .output()
            {
                assert!(out.status.success(), "{tool} -t {n}: {out:?}");
            }
        }
    }
    drop(collect);
}

#[test]
fn a_cron_schedule_rotates_on_time_without_new_events() {
    let s = Setup::new("cron");
    let dir = test_dir("collect-cron");
    let facilities = dir.join("facilities.toml");
    // Every 2 seconds (6 fields: seconds first).
    fs::write(
        &facilities,
        "[default]\nrotate = \"*/2 * * * * *\"\nbackup_count = 50\nflush_every = 1\n",
    )
    .expect("write facilities");
    let files = dir.join("files");
    let facilities_arg = facilities.to_string_lossy().into_owned();
    let collect = Collect::start(
        &s.exchange,
        &s.queue,
        &files,
        &["--facilities", &facilities_arg],
    );
    emit(&s.exchange, Format::Ecs, "cronsvc", 0..20, false);
    let sub = files.join("cronsvc");
    let name = rotated_name("root.log");
    // No event follows: only the timer can rotate.
    wait_until("a rotated file holding all 20 events", LIMIT, || {
        let rotated: BTreeSet<u64> = files_in(&sub)
            .iter()
            .filter(|n| name.is_match(n))
            .flat_map(|n| seq_set(&sub.join(n)))
            .collect();
        rotated == (0..20).collect()
    });
    // The live file is gone until the next event (created on the first line).
    assert!(seq_set(&sub.join("root.log")).is_empty());
    // Span: start before end.
    for n in files_in(&sub).iter().filter(|n| name.is_match(n)) {
        let span = &n["root.log.".len()..];
        let (start, end) = span.split_at(19);
        assert!(start < &end[1..], "{n}");
    }
    drop(collect);
}

#[test]
fn sigkill_mid_stream_and_restart_loses_no_seq_no() {
    let s = Setup::new("kill");
    let dir = test_dir("collect-kill");
    let facilities = dir.join("facilities.toml");
    fs::write(&facilities, "[default]\nflush_every = 200\n").expect("write facilities");
    let files = dir.join("files");
    let facilities_arg = facilities.to_string_lossy().into_owned();
    let args = ["--facilities", facilities_arg.as_str(), "--prefetch", "500"];
    let collect = Collect::start(&s.exchange, &s.queue, &files, &args);
    const N: u64 = 20_000;
    let exchange = s.exchange.clone();
    let shipper = std::thread::spawn(move || emit(&exchange, Format::Ecs, "killsvc", 0..N, false));
    let live = files.join("killsvc/root.log");
    wait_until("some events written", LIMIT, || seq_set(&live).len() > 500);
    collect.kill();
    shipper.join().expect("shipper");
    let written_before = seq_set(&live).len();
    assert!((written_before as u64) < N, "killed mid-stream");
    let collect = Collect::start(&s.exchange, &s.queue, &files, &args);
    let all: BTreeSet<u64> = (0..N).collect();
    wait_until("every seq_no after the restart", LIMIT, || {
        seq_set(&live) == all
    });
    // Every line is whole: a torn last line was ended before the restart's first.
    for line in read_any(&live).lines() {
        assert_eq!(seqs_of(line).len(), 1, "a line with one event: {line}");
    }
    drop(collect);
}

#[test]
fn sighup_after_an_external_move_writes_a_new_file_and_sigterm_acks_and_exits() {
    let s = Setup::new("hup");
    let dir = test_dir("collect-hup");
    let files = dir.join("files");
    let mut collect = Collect::start(&s.exchange, &s.queue, &files, &[]);
    emit(&s.exchange, Format::Ecs, "hupsvc", 0..10, false);
    let live = files.join("hupsvc/root.log");
    wait_until("the first 10", LIMIT, || seq_set(&live).len() == 10);
    let moved = dir.join("moved.log");
    fs::rename(&live, &moved).expect("move as logrotate does");
    collect.signal("HUP");
    collect.wait_for_line("SIGHUP: files reopened", LIMIT);
    emit(&s.exchange, Format::Ecs, "hupsvc", 10..20, false);
    wait_until("the next 10 in a new file", LIMIT, || {
        seq_set(&live) == (10..20).collect()
    });
    assert_eq!(seq_set(&moved), (0..10).collect());
    // SIGTERM: stops, syncs, acks, exits 0; nothing left in the queue.
    collect.signal("TERM");
    let (status, stderr) = collect.wait(LIMIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("stopped; every written event synced and acked"),
        "{stderr}"
    );
    assert_eq!(s.broker_backlog(&s.queue), Some(0));
}

#[test]
fn bad_facilities_files_are_refused_with_the_reason() {
    let dir = test_dir("collect-bad");
    let cases: BTreeMap<&str, (&str, &str)> = BTreeMap::from([
        (
            "missing",
            (
                "[default]\nrotate = \"daily\"\n",
                "`backup_count` is required",
            ),
        ),
        (
            "unknown",
            (
                "[default]\nbackup_count = 2\nrotat = \"daily\"\n",
                "unknown field `rotat`",
            ),
        ),
        (
            "cron",
            (
                "[default]\nbackup_count = 2\nrotate = \"*/99 * * *\"\n",
                "cron expression",
            ),
        ),
        ("toml", ("[default\n", "TOML parse error")),
    ]);
    for (name, (text, expected)) in cases {
        let path = dir.join(format!("{name}.toml"));
        fs::write(&path, text).expect("write");
        let out = common::logcollect("unused")
            .arg("collect")
            .arg("--dir")
            .arg(dir.join("files"))
            .arg("--facilities")
            .arg(&path)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}
