//! `logcollect collect --from redis://…` and `tail --from redis://…` against the real Redis and
//! real files: every seq_no of a list in the files; SIGKILL mid-stream and a restart lose
//! none and repeat at most one batch; two collectors on one stream group split the work and a
//! dead consumer's pending entries are claimed; tail prints a stream's new entries and refuses
//! a list.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{unique, wait_until};
use regex::Regex;

/// Generous: a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(120);
/// The batch (`--prefetch`) the collectors run with: the most a kill may repeat.
const BATCH: usize = 100;

use logcollect_test_support::redis::{connect as redis, url as redis_url};

fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique(name));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("test dir");
    dir
}

/// An ECS document as the shipper writes it, carrying `seq_no`.
fn doc(service: &str, seq_no: u64) -> String {
    serde_json::json!({
        "@timestamp": "2026-01-01T00:00:00.000Z",
        "message": "load event",
        "log": {"level": "INFO", "logger": "jobs"},
        "service": {"name": service},
        // Keys in the order serde_json writes them with or without `preserve_order`
        // (the MongoDB driver turns it on in an all-features build).
        "fields": {"payload": "x".repeat(64), "seq_no": seq_no},
    })
    .to_string()
}

/// Pushes documents `seqs` onto list `key`, one multi-value RPUSH per 100, as the transport does.
fn push_list(conn: &mut redis::Connection, key: &str, service: &str, seqs: std::ops::Range<u64>) {
    let docs: Vec<String> = seqs.map(|n| doc(service, n)).collect();
    for chunk in docs.chunks(100) {
        let _: i64 = redis::cmd("RPUSH")
            .arg(key)
            .arg(chunk)
            .query(conn)
            .expect("RPUSH");
    }
}

/// Adds documents `seqs` to stream `key` with the transport's fields, pipelined.
fn push_stream(conn: &mut redis::Connection, key: &str, service: &str, seqs: std::ops::Range<u64>) {
    let seqs: Vec<u64> = seqs.collect();
    for chunk in seqs.chunks(500) {
        let mut pipe = redis::pipe();
        for &n in chunk {
            pipe.cmd("XADD")
                .arg(key)
                .arg("*")
                .arg("doc")
                .arg(doc(service, n))
                .arg("format")
                .arg("ecs")
                .arg("service")
                .arg(service)
                .ignore();
        }
        let () = pipe.query(conn).expect("XADD");
    }
}

fn del(conn: &mut redis::Connection, keys: &[&str]) {
    let _: Result<i64, _> = redis::cmd("DEL").arg(keys).query(conn);
}

/// Every seq_no of every `.log` file under `dir`, with how often it appears.
fn seq_counts(dir: &Path) -> BTreeMap<u64, usize> {
    let re = Regex::new(r" seq_no=(\d+)").expect("regex");
    let mut counts = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "log") {
                let mut text = String::new();
                if fs::File::open(&path)
                    .and_then(|mut f| f.read_to_string(&mut text))
                    .is_ok()
                {
                    for c in re.captures_iter(&text) {
                        *counts.entry(c[1].parse().expect("number")).or_insert(0) += 1;
                    }
                }
            }
        }
    }
    counts
}

fn has_all(counts: &BTreeMap<u64, usize>, n: u64) -> bool {
    (0..n).all(|s| counts.contains_key(&s))
}

/// Extra appearances beyond the first.
fn duplicates(counts: &BTreeMap<u64, usize>) -> usize {
    counts.values().map(|c| c - 1).sum()
}

/// A running `logcollect collect|tail --from …`, its standard error read line by line.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn start(args: &[&str]) -> Proc {
        Proc::start_with(args, &[])
    }

    fn start_with(args: &[&str], env: &[(&str, &Path)]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_logcollect"))
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start logcollect");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn collect(dir: &Path, key: &str, args: &[&str]) -> Proc {
        let dir = dir.to_string_lossy().into_owned();
        let url = redis_url();
        let batch = BATCH.to_string();
        let mut all = vec![
            "collect",
            "--dir",
            &dir,
            "--from",
            &url,
            "--key",
            key,
            "--prefetch",
            &batch,
        ];
        all.extend_from_slice(args);
        let mut p = Proc::start(&all);
        p.wait_for_line("logcollect collect: reading");
        p
    }

    fn wait_for_line(&mut self, text: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(text)) {
            return l.clone();
        }
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!("`{text}` not printed within {LIMIT:?}: {:?}", self.seen),
            }
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn kill(mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status and what stderr said.
    fn stop(mut self) -> (std::process::ExitStatus, Vec<String>) {
        self.signal("TERM");
        let status = self.wait();
        (status, self.drain())
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "logcollect did not exit within {LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn drain(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        self.seen.clone()
    }
}

fn llen(conn: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("LLEN").arg(key).query(conn).expect("LLEN")
}

#[test]
fn collect_from_a_list_writes_every_seq_no_once_and_empties_the_list() {
    let mut conn = redis();
    let key = unique("lc-rlist");
    let processing = format!("{key}:processing:one");
    const N: u64 = 3000;
    push_list(&mut conn, &key, "listsvc", 0..N);
    let _: i64 = redis::cmd("RPUSH")
        .arg(&key)
        .arg("plain text, not json")
        .query(&mut conn)
        .expect("RPUSH");
    let dir = test_dir("collect-rlist");
    let collect = Proc::collect(&dir, &key, &["--consumer", "one"]);
    wait_until("every seq_no in the files, the lists empty", LIMIT, || {
        has_all(&seq_counts(&dir), N)
            && llen(&mut conn, &key) == 0
            && llen(&mut conn, &processing) == 0
    });
    let (status, stderr) = collect.stop();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    let counts = seq_counts(&dir);
    assert_eq!(counts.len() as u64, N);
    assert_eq!(
        duplicates(&counts),
        0,
        "no restart: each seq_no exactly once"
    );
    // One document per value, in its service's file; the value that is no document raw.
    let text = fs::read_to_string(dir.join("listsvc/root.log")).expect("listsvc file");
    let first = text.lines().next().expect("a line");
    assert!(
        Regex::new(
            r"^2026-01-01T00:00:00\.000Z INFO  -\[-\] jobs: load event payload=x{64} seq_no=0$"
        )
        .expect("regex")
        .is_match(first),
        "{first}"
    );
    let raw = fs::read_to_string(dir.join("_raw/root.log")).expect("raw file");
    assert!(raw.contains("plain text, not json"), "{raw}");
    del(&mut conn, &[&key, &processing]);
}

#[test]
fn collect_from_a_list_survives_sigkill_with_at_most_one_batch_twice() {
    let mut conn = redis();
    let key = unique("lc-rkill");
    let processing = format!("{key}:processing:k");
    const N: u64 = 30_000;
    push_list(&mut conn, &key, "killsvc", 0..N);
    let dir = test_dir("collect-rkill");
    let collect = Proc::collect(&dir, &key, &["--consumer", "k"]);
    // Killed mid-stream: some written, most still in the list.
    wait_until("a first part in the files", LIMIT, || {
        seq_counts(&dir).len() >= 2000
    });
    collect.kill();
    let before = seq_counts(&dir).len() as u64;
    assert!(
        before < N,
        "killed too late to test anything ({before} of {N})"
    );
    let left = llen(&mut conn, &processing);
    eprintln!("killed after {before} seq_nos, {left} items in the processing list");

    let collect = Proc::collect(&dir, &key, &["--consumer", "k"]);
    wait_until("every seq_no after the restart", LIMIT, || {
        has_all(&seq_counts(&dir), N)
            && llen(&mut conn, &key) == 0
            && llen(&mut conn, &processing) == 0
    });
    let (status, stderr) = collect.stop();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    let counts = seq_counts(&dir);
    assert_eq!(counts.len() as u64, N, "every seq_no, none invented");
    let dups = duplicates(&counts);
    eprintln!("{dups} seq_nos written twice");
    assert!(
        dups <= BATCH,
        "{dups} duplicates: more than one batch ({BATCH})"
    );
    assert!(counts.values().all(|&c| c <= 2), "none thrice");
    del(&mut conn, &[&key, &processing]);
}

fn pending(conn: &mut redis::Connection, key: &str, group: &str) -> i64 {
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(key)
        .arg(group)
        .query(conn)
        .expect("XPENDING");
    match summary {
        redis::Value::Array(v) => match v.first() {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("XPENDING: {other:?}"),
        },
        other => panic!("XPENDING: {other:?}"),
    }
}

#[test]
fn two_collectors_split_a_stream_group_and_claim_a_dead_ones_entries() {
    let mut conn = redis();
    let key = unique("lc-rstream");
    let group = "files";
    const N: u64 = 20_000;
    const DEAD: usize = 300;
    let () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&key)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query(&mut conn)
        .expect("XGROUP CREATE");
    push_stream(&mut conn, &key, "streamsvc", 0..N / 2);
    // A collector that took entries and died before acking them.
    let taken: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg("dead")
        .arg("COUNT")
        .arg(DEAD)
        .arg("STREAMS")
        .arg(&key)
        .arg(">")
        .query(&mut conn)
        .expect("XREADGROUP");
    assert!(!matches!(taken, redis::Value::Nil));
    assert_eq!(pending(&mut conn, &key, group), DEAD as i64);

    let (dir1, dir2) = (test_dir("collect-rstream-1"), test_dir("collect-rstream-2"));
    let common = [
        "--data-type",
        "stream",
        "--group",
        group,
        "--claim-idle",
        "1",
    ];
    let one = Proc::collect(&dir1, &key, &[&common[..], &["--consumer", "one"]].concat());
    let mut two = Proc::collect(&dir2, &key, &[&common[..], &["--consumer", "two"]].concat());
    // One of them killed mid-stream, while more entries arrive.
    wait_until("the first collector at work", LIMIT, || {
        !seq_counts(&dir1).is_empty()
    });
    one.kill();
    push_stream(&mut conn, &key, "streamsvc", N / 2..N);
    wait_until("every seq_no in the files, nothing pending", LIMIT, || {
        let mut all = seq_counts(&dir1);
        for (s, c) in seq_counts(&dir2) {
            *all.entry(s).or_insert(0) += c;
        }
        has_all(&all, N) && pending(&mut conn, &key, group) == 0
    });
    two.wait_for_line("claimed");
    let (status, stderr) = two.stop();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    let (c1, c2) = (seq_counts(&dir1), seq_counts(&dir2));
    assert!(
        !c1.is_empty() && !c2.is_empty(),
        "both did part of the work"
    );
    let mut all = c1.clone();
    for (s, c) in &c2 {
        *all.entry(*s).or_insert(0) += c;
    }
    assert_eq!(all.len() as u64, N, "every seq_no, none invented");
    let dups = duplicates(&all);
    eprintln!(
        "collector one wrote {}, two {}; {dups} seq_nos twice",
        c1.len(),
        c2.len()
    );
    assert!(
        dups <= BATCH,
        "{dups} duplicates: more than the killed one's batch"
    );
    del(&mut conn, &[&key]);
}

#[test]
fn tail_from_a_stream_prints_new_entries_only() {
    let mut conn = redis();
    let key = unique("lc-rtail");
    push_stream(&mut conn, &key, "old", 0..1);
    let url = redis_url();
    let mut tail = Proc::start(&[
        "tail", "--from", &url, "--key", &key, "--count", "3", "--json",
    ]);
    tail.wait_for_line("listening on stream");
    push_stream(&mut conn, &key, "tailsvc", 10..13);
    let status = tail.wait();
    assert_eq!(status.code(), Some(0), "{:?}", tail.drain());
    let mut out = String::new();
    tail.child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("stdout");
    let docs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let seqs: Vec<u64> = docs
        .iter()
        .map(|d| d["fields"]["seq_no"].as_u64().expect("seq_no"))
        .collect();
    assert_eq!(
        seqs,
        vec![10, 11, 12],
        "the new entries, in order, not the old one"
    );
    for d in &docs {
        assert_eq!(d["service"]["name"], "tailsvc");
        assert_eq!(d["message"], "load event");
    }
    // Tail took nothing: the stream holds all four.
    let len: i64 = redis::cmd("XLEN").arg(&key).query(&mut conn).expect("XLEN");
    assert_eq!(len, 4);
    del(&mut conn, &[&key]);
}

#[test]
fn tail_from_a_list_refuses_and_takes_nothing() {
    let mut conn = redis();
    let key = unique("lc-rtail-list");
    push_list(&mut conn, &key, "listsvc", 0..5);
    let url = redis_url();
    let mut tail = Proc::start(&["tail", "--from", &url, "--key", &key]);
    let status = tail.wait();
    let stderr = tail.drain().join("\n");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is a list"), "{stderr}");
    assert!(
        stderr.contains("stream"),
        "says what to use instead: {stderr}"
    );
    assert_eq!(llen(&mut conn, &key), 5, "nothing taken");
    del(&mut conn, &[&key]);
}

/// `--from rediss://` uses the settings' TLS files as the shipper does: a server whose
/// certificate only the private CA of `tls_ca_file` vouches for, asking for a client
/// certificate (`tls_cert_file`, `tls_key_file`).
#[test]
fn collect_from_rediss_trusts_tls_ca_file_and_presents_the_client_certificate() {
    const N: u64 = 500;
    let dir = test_dir("collect-rediss");
    let files = tempfile::tempdir().expect("tempdir");
    let tls = logcollect_test_support::redis::TlsServer::start(files.path());
    let mut conn = redis::Client::open(tls.server.url())
        .and_then(|c| c.get_connection())
        .expect("the plain port");
    let key = unique("lc-rediss");
    push_list(&mut conn, &key, "tlssvc", 0..N);
    let out = dir.to_string_lossy().into_owned();
    let from = tls.uri();
    // The shippers' own settings (TLS files are checked against the transport's URI).
    let from_path = PathBuf::from(&from);
    let mut collect = Proc::start_with(
        &["collect", "--dir", &out, "--from", &from, "--key", &key],
        &[
            ("LOGCOLLECT_TRANSPORT", Path::new("redis")),
            ("LOGCOLLECT_REDIS__URI", &from_path),
            ("LOGCOLLECT_TLS_CA_FILE", &tls.ca_file),
            ("LOGCOLLECT_TLS_CERT_FILE", &tls.client_cert),
            ("LOGCOLLECT_TLS_KEY_FILE", &tls.client_key),
        ],
    );
    collect.wait_for_line("logcollect collect: reading");
    wait_until("every seq_no in the files", LIMIT, || {
        has_all(&seq_counts(&dir), N)
    });
    let (status, stderr) = collect.stop();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    assert_eq!(seq_counts(&dir).len() as u64, N);
    assert_eq!(llen(&mut conn, &key), 0);
}
