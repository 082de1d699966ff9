//! `logcollect collect` against the real broker and real files: every seq_no in its
//! facility's file, sub-facilities, rotation by size and by schedule with their names,
//! compression that decodes, pruning, SIGKILL + restart, SIGHUP after an external move,
//! SIGTERM, array bodies and non-documents; names that map alike, thousands of services under
//! a low descriptor limit, a poison message, a body of a million documents (peak memory),
//! forged control characters, a file removed under the daemon, cut documents, file modes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{unique, wait_until, Broker, Collect};
use logcollect::Format;
use regex::Regex;
use serde_json::{json, Value};
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
        // Every archive decodes whole, in-process (gzip's CRC, zstd's frame checksum): whole
        // lines, each one event.
        for n in names.iter().filter(|n| n.ends_with(ext)) {
            let text = read_any(&sub.join(n));
            assert!(!text.is_empty() && text.ends_with('\n'), "{n}");
            for line in text.lines() {
                assert_eq!(seqs_of(line).len(), 1, "{n}: {line}");
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
    assert!(!sub.join("root.log").exists(), "{:?}", files_in(&sub));
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

/// The text of a file, or `None` when it went away meanwhile (rotated, compressed, pruned).
fn try_read_any(path: &Path) -> Option<String> {
    let name = path.to_string_lossy();
    if name.ends_with(".tmp") {
        return None;
    }
    let file = fs::File::open(path).ok()?;
    let mut out = String::new();
    let read = if name.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(file).read_to_string(&mut out)
    } else if name.ends_with(".zst") {
        zstd::stream::read::Decoder::new(file)
            .ok()?
            .read_to_string(&mut out)
    } else {
        let mut file = file;
        file.read_to_string(&mut out)
    };
    read.ok().map(|_| out)
}

/// Every line of every file under `dir` (live and rotated, decompressed), by sub-directory.
fn lines_by_dir(dir: &Path) -> Option<BTreeMap<String, Vec<String>>> {
    let mut out = BTreeMap::new();
    for sub in files_in(dir) {
        let mut lines = Vec::new();
        for name in files_in(&dir.join(&sub)) {
            if name.ends_with(".tmp") {
                return None;
            }
            let text = try_read_any(&dir.join(&sub).join(&name))?;
            lines.extend(text.lines().map(str::to_string));
        }
        out.insert(sub, lines);
    }
    Some(out)
}

fn publish_docs(broker: &mut Broker, exchange: &str, docs: &[Value], per_message: usize) {
    for chunk in docs.chunks(per_message) {
        broker.publish(
            exchange,
            "logstash.test",
            Value::Array(chunk.to_vec()).to_string().as_bytes(),
        );
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
}

#[test]
fn names_that_map_alike_keep_their_own_files_through_size_rotation_and_gzip() {
    let s = Setup::new("names");
    let dir = test_dir("collect-names");
    let facilities = dir.join("facilities.toml");
    fs::write(
        &facilities,
        "[default]\nformat = \"ndjson\"\nmax_size = 3000\nbackup_count = 10000\n\
         compress = \"gzip\"\nflush_every = 7\n",
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
    // Differing only in what the old mapping turned into `_` or what case-folding merges.
    const NAMES: [&str; 11] = [
        "my_app",
        "my app",
        "My_App",
        "MY_APP",
        "my%app",
        "my%20app",
        "my/app",
        "my.app",
        "../my_app",
        "-my_app",
        "my\u{0}app",
    ];
    const N: u64 = 300;
    let docs: Vec<Value> = (0..N)
        .flat_map(|seq_no| {
            NAMES.iter().map(move |name| {
                json!({"@timestamp": "2026-01-01T00:00:00Z", "message": "names",
                       "log": {"level": "INFO", "logger": "x"}, "service": {"name": name},
                       "fields": {"seq_no": seq_no}})
            })
        })
        .collect();
    let mut broker = Broker::connect();
    publish_docs(&mut broker, &s.exchange, &docs, 55);
    let total = N as usize * NAMES.len();
    wait_until("every event in a file", LIMIT, || {
        lines_by_dir(&files).is_some_and(|d| d.values().map(Vec::len).sum::<usize>() == total)
    });
    // SIGTERM: the compressor finishes what was rotated before the process exits.
    collect.signal("TERM");
    let (status, stderr) = collect.wait(LIMIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let by_dir = lines_by_dir(&files).expect("files settled");
    assert_eq!(
        by_dir.len(),
        NAMES.len(),
        "one directory per name: {:?}",
        by_dir.keys()
    );
    let mut seen_names = BTreeSet::new();
    for (sub, lines) in &by_dir {
        let docs: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{sub}: {e}: {l}")))
            .collect();
        let names: BTreeSet<&str> = docs
            .iter()
            .map(|d| d["service"]["name"].as_str().expect("a name"))
            .collect();
        assert_eq!(
            names.len(),
            1,
            "{sub} holds one service's events: {names:?}"
        );
        seen_names.extend(names.iter().map(|n| n.to_string()));
        let mut seqs: Vec<u64> = docs
            .iter()
            .map(|d| d["fields"]["seq_no"].as_u64().expect("seq_no"))
            .collect();
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (0..N).collect::<Vec<_>>(),
            "{sub}: each event exactly once"
        );
        // Rotated and compressed, nothing left plain or half-done; the modes as created.
        let names = files_in(&files.join(sub));
        let rotated = rotated_name("root.log");
        assert!(
            names.iter().filter(|n| n.ends_with(".gz")).count() >= 3,
            "{names:?}"
        );
        for n in &names {
            assert!(
                n == "root.log" || (rotated.is_match(n) && n.ends_with(".gz")),
                "{n}"
            );
            assert_eq!(mode(&files.join(sub).join(n)), 0o640, "{sub}/{n}");
        }
        assert_eq!(mode(&files.join(sub)), 0o750, "{sub}");
        assert!(
            !sub.starts_with(['.', '-', '_']) && !sub.contains('/'),
            "{sub}"
        );
    }
    let expected: BTreeSet<String> = NAMES.iter().map(|n| n.to_string()).collect();
    assert_eq!(seen_names, expected);
    assert_eq!(mode(&files), 0o750);
}

#[test]
fn thousands_of_services_under_a_low_descriptor_limit_each_document_once() {
    let s = Setup::new("fds");
    let dir = test_dir("collect-fds");
    let files = dir.join("files");
    const SERVICES: u64 = 2000;
    const ROUNDS: u64 = 3;
    let collect = Collect::start_with(&s.exchange, &s.queue, &files, &[], |cmd| {
        // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child here.
        unsafe {
            cmd.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: 64,
                    rlim_max: 64,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let limits = fs::read_to_string(format!("/proc/{}/limits", collect.pid())).expect("limits");
    assert!(
        Regex::new(r"Max open files\s+64\s+64")
            .expect("regex")
            .is_match(&limits),
        "{limits}"
    );
    // Each message names 100 services, each service's documents spread over three messages.
    let docs: Vec<Value> = (0..ROUNDS)
        .flat_map(|round| {
            (0..SERVICES).map(move |svc| {
                json!({"message": "fd", "service": {"name": format!("svc-{svc:04}")},
                       "fields": {"seq_no": round * SERVICES + svc}})
            })
        })
        .collect();
    let mut broker = Broker::connect();
    publish_docs(&mut broker, &s.exchange, &docs, 100);
    let check = || {
        (0..SERVICES).all(|svc| {
            let path = files.join(format!("svc-{svc:04}/root.log"));
            let mut seqs = seqs_of(&fs::read_to_string(path).unwrap_or_default());
            seqs.sort_unstable();
            seqs == [svc, svc + SERVICES, svc + 2 * SERVICES]
        })
    };
    wait_until("the queue drained", LIMIT, || {
        s.broker_backlog(&s.queue) == Some(0)
    });
    wait_until("every document in its file, once", LIMIT, check);
    collect.signal("TERM");
    let (status, stderr) = collect.wait(LIMIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(check(), "still exactly once after the stop");
    assert!(!stderr.contains("cannot write"), "{stderr}");
    assert!(!files.join("_rejected").exists());
    assert_eq!(files_in(&files).len() as u64, SERVICES);
    assert_eq!(s.broker_backlog(&s.queue), Some(0));
}

#[test]
fn a_poison_message_is_dead_lettered_whole_and_acked_and_the_next_one_written() {
    let s = Setup::new("poison");
    let dir = test_dir("collect-poison");
    let files = dir.join("files");
    // The facility's file is a directory: no attempt can ever write there.
    fs::create_dir_all(files.join("poisonsvc/root.log")).expect("a directory in the way");
    let mut collect = Collect::start(&s.exchange, &s.queue, &files, &[]);
    let doc = |svc: &str, seq_no: u64| json!({"message": "p", "service": {"name": svc}, "fields": {"seq_no": seq_no}});
    let mut broker = Broker::connect();
    let poison = json!([doc("oksvc", 0), doc("poisonsvc", 100), doc("oksvc", 1)]).to_string();
    broker.publish(&s.exchange, "logstash.poison", poison.as_bytes());
    broker.publish(
        &s.exchange,
        "logstash.next",
        json!([doc("oksvc", 2)]).to_string().as_bytes(),
    );
    let ok = files.join("oksvc/root.log");
    wait_until("the next message written", LIMIT, || {
        seq_set(&ok).contains(&2)
    });
    collect.wait_for_line("message rejected after 3 attempts", LIMIT);
    wait_until("the queue drained", LIMIT, || {
        s.broker_backlog(&s.queue) == Some(0)
    });
    // The first event was written once (never again by the retries), the one after the
    // poison is only in the rejected message.
    assert_eq!(seqs_of(&read_any(&ok)), [0, 2]);
    let rejected = read_any(&files.join("_rejected/rejected.log"));
    let lines: Vec<&str> = rejected.lines().collect();
    assert_eq!(lines.len(), 1, "{rejected}");
    let record: Value = serde_json::from_str(lines[0]).expect("a JSON line");
    assert_eq!(record["body"], poison, "the message whole");
    assert_eq!(record["routing_key"], "logstash.poison");
    assert_eq!(record["attempts"], 3);
    assert_eq!(record["events_written_before"], 1);
    assert!(
        record["reason"]
            .as_str()
            .is_some_and(|r| r.contains("directory")),
        "{record}"
    );
    assert_eq!(mode(&files.join("_rejected/rejected.log")), 0o640);
    collect.signal("TERM");
    let (status, stderr) = collect.wait(LIMIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr.matches("cannot write a message (attempt").count(),
        3,
        "{stderr}"
    );
    assert_eq!(s.broker_backlog(&s.queue), Some(0));
}

/// Peak resident memory of a process (VmHWM), in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn a_body_of_a_million_documents_is_written_in_bounded_memory() {
    let s = Setup::new("million");
    let dir = test_dir("collect-million");
    let files = dir.join("files");
    const N: usize = 1_000_000;
    let mut body = String::with_capacity(N * 22);
    body.push('[');
    for i in 0..N {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(r#"{{"message":"{i}"}}"#));
    }
    body.push(']');
    let collect = Collect::start(&s.exchange, &s.queue, &files, &[]);
    let mut broker = Broker::connect();
    broker.publish(&s.exchange, "logstash.million", body.as_bytes());
    let file = || {
        files_in(&files)
            .first()
            .map(|d| files.join(d).join("root.log"))
    };
    let count = || {
        file()
            .and_then(|f| fs::read(f).ok())
            .map_or(0, |b| b.iter().filter(|c| **c == b'\n').count())
    };
    wait_until("a million lines", LIMIT, || count() == N);
    wait_until("the queue drained", LIMIT, || {
        s.broker_backlog(&s.queue) == Some(0)
    });
    let peak = peak_kib(collect.pid());
    let text = fs::read_to_string(file().expect("the file")).expect("text");
    let mut seen = vec![false; N];
    for line in text.lines() {
        let i: usize = line
            .rsplit(": ")
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(!seen[i], "twice: {i}");
        seen[i] = true;
    }
    assert!(seen.iter().all(|s| *s));
    eprintln!(
        "collect peak RSS for one body of {N} documents ({} bytes): {:.1} MiB",
        body.len(),
        peak as f64 / 1024.0
    );
    assert!(
        peak < 64 * 1024,
        "peak RSS {peak} KiB for a {}-byte body",
        body.len()
    );
    drop(collect);
}

#[test]
fn forged_control_characters_never_forge_a_line_and_ndjson_stays_json() {
    let s = Setup::new("ctl");
    let dir = test_dir("collect-ctl");
    let facilities = dir.join("facilities.toml");
    fs::write(&facilities, "[default]\n\n[ctl-nd]\nformat = \"ndjson\"\n").expect("write");
    let files = dir.join("files");
    let facilities_arg = facilities.to_string_lossy().into_owned();
    let collect = Collect::start(
        &s.exchange,
        &s.queue,
        &files,
        &["--facilities", &facilities_arg],
    );
    let f = "x\r\nFORGED 2026-01-01T00:00:00Z INFO h[1] l: m\u{1b}[31m\u{7}\u{0}\u{8}\u{7f}\u{85}\u{9b}2J y";
    let t = format!("2026-01-01T00:00:00Z{f}");
    let ecs = |svc: &str, seq_no: u64| {
        json!({"@timestamp": t, "message": f, "log": {"level": f, "logger": f},
               "host": {"hostname": f}, "process": {"pid": f}, "service": {"name": svc},
               "fields": {"seq_no": seq_no, f: f, "nested": {f: f}},
               "error": {"message": format!("E{f}"), "stack_trace": format!("E{f}\nCaused by: {f}")}})
    };
    let classic = |seq_no: u64| {
        json!({"@timestamp": t, "@version": "1", "message": f, "host": f, "levelname": f,
               "logger": f, "process": f, "seq_no": seq_no, f: f,
               "stack_trace": format!("E{f}\nCaused by: {f}")})
    };
    let text_svc = format!("ctl{f}");
    let mut docs: Vec<Value> = (0..5).map(|i| ecs(&text_svc, i)).collect();
    docs.extend((5..10).map(classic));
    let nd: Vec<Value> = (10..15).map(|i| ecs("ctl-nd", i)).collect();
    docs.extend(nd.iter().cloned());
    let mut broker = Broker::connect();
    publish_docs(&mut broker, &s.exchange, &docs, 4);
    broker.publish(&s.exchange, "logstash.raw", f.as_bytes());
    wait_until("every event written", LIMIT, || {
        lines_by_dir(&files).is_some_and(|d| {
            d.values()
                .flatten()
                .filter(|l| !l.starts_with("    "))
                .count()
                == 16
        })
    });
    let by_dir = lines_by_dir(&files).expect("files");
    let mut seqs = Vec::new();
    for (sub, lines) in &by_dir {
        for line in lines {
            assert!(
                !line.chars().any(char::is_control),
                "{sub}: a control character in {line:?}"
            );
            assert!(!line.starts_with("FORGED"), "{sub}: forged line {line:?}");
        }
        if sub == "ctl-nd" {
            for (line, doc) in lines.iter().zip(&nd) {
                let back: Value = serde_json::from_str(line).expect("ndjson stays JSON");
                assert_eq!(&back, doc, "the document as shipped");
            }
            seqs.extend(lines.iter().flat_map(|l| seqs_of(l)));
            continue;
        }
        let events: Vec<&String> = lines.iter().filter(|l| !l.starts_with("    ")).collect();
        for line in &events {
            if sub == "_raw" {
                assert!(
                    line.contains("RAW   routing_key=logstash.raw x\\r\\nFORGED"),
                    "{line}"
                );
                continue;
            }
            assert!(
                line.starts_with("2026-01-01T00:00:00Zx\\r\\nFORGED"),
                "{sub}: {line}"
            );
            seqs.extend(seqs_of(line));
        }
        // The rest are the stack traces' lines, indented.
        if sub != "_raw" {
            assert_eq!(events.len(), 5, "{sub}: {lines:?}");
        }
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..15).collect::<Vec<_>>());
    drop(collect);
}

#[test]
fn a_removed_file_is_reopened_at_its_path_and_modes_are_configurable() {
    let s = Setup::new("removed");
    let dir = test_dir("collect-removed");
    let files = dir.join("files");
    let mut collect = Collect::start(
        &s.exchange,
        &s.queue,
        &files,
        &["--file-mode", "600", "--dir-mode", "700"],
    );
    emit(&s.exchange, Format::Ecs, "rmsvc", 0..10, false);
    let live = files.join("rmsvc/root.log");
    wait_until("the first 10", LIMIT, || seq_set(&live).len() == 10);
    assert_eq!(mode(&live), 0o600);
    assert_eq!(mode(&files.join("rmsvc")), 0o700);
    fs::remove_file(&live).expect("remove the live file");
    // No signal: the daemon notices within a tick and opens the path again.
    collect.wait_for_line("was moved or removed: reopened at its path", LIMIT);
    wait_until("the path is back", LIMIT, || live.exists());
    emit(&s.exchange, Format::Ecs, "rmsvc", 10..20, false);
    wait_until("the next 10 at the path", LIMIT, || {
        seq_set(&live) == (10..20).collect()
    });
    assert_eq!(seqs_of(&read_any(&live)).len(), 10);
    assert_eq!(mode(&live), 0o600);
    collect.signal("TERM");
    let (status, stderr) = collect.wait(LIMIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
}

#[test]
fn a_document_over_the_limit_is_written_cut_with_a_marker() {
    let s = Setup::new("cut");
    let dir = test_dir("collect-cut");
    let facilities = dir.join("facilities.toml");
    fs::write(&facilities, "[default]\n\n[cutnd]\nformat = \"ndjson\"\n").expect("write");
    let files = dir.join("files");
    let facilities_arg = facilities.to_string_lossy().into_owned();
    let collect = Collect::start(
        &s.exchange,
        &s.queue,
        &files,
        &[
            "--facilities",
            &facilities_arg,
            "--max-document-bytes",
            "4096",
        ],
    );
    let big = "y".repeat(100_000);
    let mut broker = Broker::connect();
    for svc in ["cuttext", "cutnd"] {
        let body = json!([
            {"@timestamp": "2026-01-01T00:00:00Z", "message": big, "service": {"name": svc},
             "host": {"hostname": "h1"}, "log": {"level": "WARN", "logger": "big"},
             "fields": {"seq_no": 0}},
            {"message": "small", "service": {"name": svc}, "fields": {"seq_no": 1}}
        ]);
        broker.publish(&s.exchange, "logstash.cut", body.to_string().as_bytes());
    }
    let text = files.join("cuttext/root.log");
    let nd = files.join("cutnd/root.log");
    wait_until("both written", LIMIT, || {
        seq_set(&text).contains(&1) && seq_set(&nd).contains(&1)
    });
    let lines: Vec<String> = read_any(&text).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("2026-01-01T00:00:00Z WARN  h1[-] big: [document of 100")
            && lines[0].contains("bytes cut to its first 4096]"),
        "{}",
        &lines[0][..200]
    );
    assert!(lines[0].len() < 4096 + 200, "{}", lines[0].len());
    let lines: Vec<Value> = read_any(&nd)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["service"]["name"], "cutnd");
    assert_eq!(lines[0]["logcollect"]["cut"]["kept"], 4096);
    assert!(lines[0]["logcollect"]["cut"]["bytes"].as_u64().unwrap_or(0) > 100_000);
    assert_eq!(lines[1]["message"], "small");
    drop(collect);
}
