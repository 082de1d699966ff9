//! Node loss under load on a real three-node RabbitMQ cluster (scripts/cluster: throw-away nodes
//! `lcclut1..3` on ports 5811–5813, the stack's definitions with the quorum queue `logcollect`),
//! stopped when the test ends, also when it fails. The load generator runs at a steady rate with
//! the three nodes as `broker_uri`; for each fault, every `seq_no` it logged is counted in the
//! quorum queue, duplicates are counted and must be republications (the same `event.id`), and
//! the failover time (last confirm seen before the fault, first after) is printed, measured
//! from progress lines every 100 ms: not asserted.
//!
//! Faults: SIGKILL of the shipper's node (a follower of the queue); SIGKILL of the queue's
//! leader while the shipper uses a follower; SIGKILL of the node that is both (the broker then
//! nacks everything on the surviving session's channel until the session is replaced:
//! `sessions_replaced`); a rolling restart of every node; the shipper's node (the leader) cut
//! off — frozen with SIGSTOP, so its sockets stay open and answer nothing, as behind a firewall
//! dropping its packets — for three heartbeats, then resumed (the shipper leaves it at its
//! confirm timeout; the queue waits for its leader: the cluster does not notice a cut shorter
//! than its net_ticktime, 60 s).
//!
//! Competing consumers: cli/tests/cluster_collect.rs. `CLUSTER_TEST_CASES=3,5` runs only those.

mod clusters;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::BasicConsumeOptions;
use lapin::types::{FieldTable, ShortString};
use lapin::{Connection, ConnectionProperties};
use serde_json::Value;

use clusters::{Cluster, LIMIT};

const NAME: &str = "lcclut";
const PORT: u16 = 5811;
const QUEUE: &str = clusters::QUEUE;
/// Events per second the load generator logs.
const RATE: u64 = 2000;
/// Asked of the broker in every URI: a cut is noticed within a few seconds.
const HEARTBEAT_S: u64 = 3;

/// The number after `key=` in a stats line.
fn number(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.parse().ok())
}

/// The load generator, logging at `RATE` until stopped, and what it printed, with when.
struct Load {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<(Instant, String)>,
    /// (when, confirmed) of every progress line seen.
    timeline: Vec<(Instant, u64)>,
    last: String,
    started: Instant,
}

impl Load {
    fn start(uris: &[String], application: &str) -> Load {
        let uris: Vec<String> = uris
            .iter()
            .map(|u| format!("{u}?heartbeat={HEARTBEAT_S}"))
            .collect();
        let mut command = Command::new(common::loadgen_binary());
        // Only this run's settings (a LOGCOLLECT_TEST_CLUSTER_* of scripts/cluster is no setting).
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("LOGCOLLECT_") {
                command.env_remove(key);
            }
        }
        let mut child = command
            .args(["--until-eof", "--rate", &RATE.to_string(), "--threads", "2"])
            .args(["--progress-every", &(RATE / 10).to_string()])
            .args(["--flush-timeout-secs", "120"])
            .env("LOGCOLLECT_BROKER_URI", uris.join(","))
            .env("LOGCOLLECT_IDENTITY__APPLICATION", application)
            .env("LOGCOLLECT_BACKOFF_MIN_MS", "50")
            .env("LOGCOLLECT_BACKOFF_MAX_MS", "1000")
            .env("LOGCOLLECT_CONFIRM_TIMEOUT_MS", "5000")
            .env("LOGCOLLECT_CONNECT_TIMEOUT_MS", "3000")
            .env("LOGCOLLECT_QUEUE_CAPACITY", "1000000")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start loadgen");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send((Instant::now(), line));
            }
        });
        Load {
            child,
            stdin,
            lines,
            timeline: Vec::new(),
            last: String::new(),
            started: Instant::now(),
        }
    }

    fn record(&mut self, at: Instant, line: String) {
        if let Some(c) = number(&line, "confirmed=") {
            if line.starts_with("progress") {
                self.timeline.push((at, c));
            }
        }
        self.last = line;
    }

    /// Waits for a progress line satisfying `ok`; returns it.
    fn until(&mut self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok((at, line)) => {
                    let hit = ok(&line);
                    self.record(at, line);
                    if hit {
                        eprintln!(
                            "[{:>6.1}s] {what}: {}",
                            self.started.elapsed().as_secs_f64(),
                            self.last
                        );
                        return self.last.clone();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!(
                        "loadgen exited while waiting for {what}; last line: {}",
                        self.last
                    )
                }
            }
        }
        panic!("timed out waiting for {what}; last line: {}", self.last);
    }

    /// The latest confirmed count seen.
    fn confirmed(&self) -> u64 {
        self.timeline.last().map_or(0, |t| t.1)
    }

    /// Records the lines printed so far: what follows is after now.
    fn catch_up(&mut self) {
        while let Ok((at, line)) = self.lines.try_recv() {
            self.record(at, line);
        }
    }

    /// Waits until `more` events beyond those confirmed now are confirmed (not lines printed
    /// before now, still unread: a fault just made must be behind the confirms counted).
    fn progress(&mut self, what: &str, more: u64) -> String {
        self.catch_up();
        let target = self.confirmed() + more;
        self.until(what, |l| {
            number(l, "confirmed=").is_some_and(|c| c >= target)
        })
    }

    /// Stops logging; the final report line (the loadgen flushed and exited) and the timeline.
    fn finish(mut self) -> (String, Vec<(Instant, u64)>) {
        drop(self.stdin.take());
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "loadgen did not exit: {}",
                self.last
            );
            self.catch_up();
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok((at, line)) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.record(at, line);
        }
        assert!(status.success(), "loadgen failed: {}", self.last);
        assert!(self.last.contains(" ok=true "), "{}", self.last);
        (self.last.clone(), std::mem::take(&mut self.timeline))
    }
}

/// The failover time of `fault`: the longest time with no confirm from the last confirm seen
/// before it until `until` (the next fault, or the end), from `(when, confirmed)` of the progress
/// lines (100 ms apart: that is the resolution). A session that keeps failing after its first
/// confirms (nacks, say) counts whole.
fn failover(
    timeline: &[(Instant, u64)],
    fault: Instant,
    until: Option<Instant>,
) -> Option<Duration> {
    // When a confirm was first seen: a line whose count grew.
    let confirms: Vec<Instant> = timeline
        .windows(2)
        .filter(|w| w[1].1 > w[0].1)
        .map(|w| w[1].0)
        .collect();
    let start = confirms.iter().rposition(|t| *t <= fault)?;
    let window: Vec<Instant> = confirms[start..]
        .iter()
        .copied()
        .take_while(|t| until.is_none_or(|u| *t <= u))
        .collect();
    window
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]))
        .max()
}

/// Every document the queue holds, read through node `uri` until it stays empty for a second
/// (taken without acks: the broker sends as fast as it can, and the queue is left empty).
fn drain(uri: &str, expect: usize) -> Vec<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let connection = Connection::connect(uri, ConnectionProperties::default())
            .await
            .expect("connect to drain");
        let channel = connection.create_channel().await.expect("channel");
        let mut consumer = channel
            .basic_consume(
                ShortString::from(QUEUE),
                ShortString::from(""),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let mut docs = Vec::new();
        let deadline = Instant::now() + LIMIT;
        loop {
            let quiet = if docs.len() >= expect {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(15)
            };
            match tokio::time::timeout(quiet, consumer.next()).await {
                Ok(Some(Ok(delivery))) => {
                    match serde_json::from_slice::<Value>(&delivery.data).expect("JSON") {
                        Value::Array(items) => docs.extend(items),
                        doc => docs.push(doc),
                    }
                }
                _ => break,
            }
            if Instant::now() > deadline {
                break;
            }
        }
        let _ = connection.close(200, ShortString::from("drained")).await;
        docs
    })
}

/// What a case found: every seq_no of its run in the queue, duplicates republications.
struct Outcome {
    events: u64,
    duplicates: usize,
}

/// Counts the run's documents in the queue: each `seq_no` below `events` at least once, none
/// beyond, every copy of one the same event (`event.id`).
fn count(cluster: &Cluster, via: usize, application: &str, events: u64) -> Outcome {
    let began = Instant::now();
    let docs = drain(&cluster.uri(via), events as usize);
    eprintln!(
        "drained {} documents in {:.1} s",
        docs.len(),
        began.elapsed().as_secs_f64()
    );
    let mut ids: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let mut copies = 0usize;
    let mut others = 0usize;
    for doc in &docs {
        if doc.pointer("/labels/application").and_then(Value::as_str) != Some(application) {
            others += 1;
            continue;
        }
        let seq = doc
            .pointer("/fields/seq_no")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("no seq_no: {doc}"));
        let id = doc
            .pointer("/event/id")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no event.id: {doc}"));
        ids.entry(seq).or_default().insert(id.to_string());
        copies += 1;
    }
    assert_eq!(others, 0, "documents of another run in the queue");
    let missing: Vec<u64> = (0..events).filter(|s| !ids.contains_key(s)).collect();
    assert!(
        missing.is_empty(),
        "{} of {events} seq_no missing from the quorum queue (first: {:?})",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert_eq!(ids.len() as u64, events, "no seq_no beyond those logged");
    let two_ids: Vec<_> = ids.iter().filter(|(_, v)| v.len() > 1).take(5).collect();
    assert!(
        two_ids.is_empty(),
        "a seq_no with two event ids is not a republication: {two_ids:?}"
    );
    Outcome {
        events,
        duplicates: copies - events as usize,
    }
}

/// The URIs starting at node `first`.
fn from(cluster: &Cluster, first: usize) -> Vec<String> {
    (0..cluster.nodes)
        .map(|k| cluster.uri((first + k) % cluster.nodes))
        .collect()
}

/// A run: the loadgen from node `first`, `fault` injected once it delivers there (returning
/// the instants of its faults), then stopped, counted, reported.
fn case(
    cluster: &Cluster,
    label: &str,
    first: usize,
    fault: impl FnOnce(&Cluster, &mut Load) -> Vec<Instant>,
) -> String {
    let began = Instant::now();
    let application = common::unique(label);
    let mut load = Load::start(&from(cluster, first), &application);
    let on_first = cluster.shown(first);
    load.until("delivery to the first node", |l| {
        l.contains(&on_first) && number(l, "confirmed=").is_some_and(|c| c >= RATE)
    });
    let faults = fault(cluster, &mut load);
    load.progress("deliveries after the fault", RATE);
    let stopping = Instant::now();
    let (report, timeline) = load.finish();
    eprintln!(
        "the load generator flushed and exited in {:.1} s",
        stopping.elapsed().as_secs_f64()
    );
    let events = number(&report, "events=").expect("events=");
    let via = cluster.leader();
    let outcome = count(cluster, via, &application, events);
    let times: Vec<String> = faults
        .iter()
        .enumerate()
        .map(
            |(k, f)| match failover(&timeline, *f, faults.get(k + 1).copied()) {
                Some(d) => format!("{} ms", d.as_millis()),
                None => "no stall seen".to_string(),
            },
        )
        .collect();
    let line = format!(
        "{label}: {} of {} seq_no in the quorum queue, {} duplicates (same event.id); failover \
         {}; reconnects={} sessions_replaced={} nacked={} (case took {:.0} s)",
        outcome.events,
        outcome.events,
        outcome.duplicates,
        times.join(", "),
        number(&report, "reconnects=").unwrap_or(0),
        number(&report, "sessions_replaced=").unwrap_or(0),
        number(&report, "nacked=").unwrap_or(0),
        began.elapsed().as_secs_f64(),
    );
    eprintln!("{line}");
    line
}

/// Whether case `n` runs: all of them, unless CLUSTER_TEST_CASES lists some (`1,3`), for
/// working on one.
fn runs(n: u32) -> bool {
    std::env::var("CLUSTER_TEST_CASES")
        .map(|list| list.split(',').any(|c| c.trim() == n.to_string()))
        .unwrap_or(true)
}

#[test]
fn every_event_reaches_the_quorum_queue_whichever_node_fails() {
    let cluster = Cluster::start(NAME, PORT, 3);
    let mut results = Vec::new();

    // 1. The shipper's node, a follower of the queue.
    if runs(1) {
        let leader = cluster.healthy_leader();
        let follower = (leader + 1) % 3;
        results.push(case(&cluster, "kill-shipper-node", follower, |c, load| {
            let at = Instant::now();
            c.kill(follower);
            load.until("delivery through another node", |l| {
                !l.contains(&c.shown(follower)) && l.contains("node=")
            });
            vec![at]
        }));
        cluster.restart(follower);
    }

    // 2. The queue's leader, while the shipper uses a follower.
    if runs(2) {
        let leader = cluster.healthy_leader();
        let follower = (leader + 1) % 3;
        results.push(case(&cluster, "kill-leader", follower, |c, _| {
            let at = Instant::now();
            c.kill(leader);
            vec![at]
        }));
        cluster.restart(leader);
    }

    // 3. The node that is both.
    if runs(3) {
        let leader = cluster.healthy_leader();
        results.push(case(
            &cluster,
            "kill-leader-and-shipper-node",
            leader,
            |c, load| {
                let at = Instant::now();
                c.kill(leader);
                load.until("delivery through another node", |l| {
                    !l.contains(&c.shown(leader)) && l.contains("node=")
                });
                vec![at]
            },
        ));
        cluster.restart(leader);
    }

    // 4. A rolling restart: each node stopped and started again in turn, under load.
    if runs(4) {
        let _ = cluster.healthy_leader();
        results.push(case(&cluster, "rolling-restart", 0, |c, load| {
            let mut faults = Vec::new();
            for i in 0..c.nodes {
                faults.push(Instant::now());
                c.stop(i);
                load.progress(&format!("deliveries while {} is down", c.node(i)), RATE / 2);
                c.restart(i);
                let _ = c.healthy_leader();
            }
            faults
        }));
    }

    // 5. The shipper's node, the leader, cut off for longer than the heartbeat.
    if runs(5) {
        let leader = cluster.healthy_leader();
        results.push(case(
            &cluster,
            "cut-leader-and-shipper-node",
            leader,
            |c, load| {
                let at = Instant::now();
                c.signal(leader, "STOP");
                load.until("a session on another node during the cut", |l| {
                    !l.contains(&c.shown(leader)) && l.contains("node=")
                });
                // Longer than the heartbeat, shorter than the cluster's own failure detection
                // (net_ticktime, 60 s): the queue waits for its leader to come back.
                let cut = Duration::from_secs(3 * HEARTBEAT_S);
                std::thread::sleep(cut.saturating_sub(at.elapsed()));
                c.signal(leader, "CONT");
                vec![at]
            },
        ));
        let _ = cluster.healthy_leader();
    }

    let mut summary = std::io::stderr().lock();
    let _ = writeln!(summary, "cluster failover summary (rate {RATE}/s):");
    for line in &results {
        let _ = writeln!(summary, "  {line}");
    }
}
