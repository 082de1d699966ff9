//! Failover across a cluster's nodes, with real brokers: throw-away RabbitMQ nodes of this
//! test (own names, ports 5743/5744 and 5753/5754, directories), one queue bound on each.
//!
//! - The load generator is given both URIs; once it is delivering to the first node, that node
//!   is stopped mid-stream. The shipper moves to the second, `stats` says so, and every
//!   `seq_no` arrives: the union of the two queues (the first node restarted to read what it
//!   had confirmed) holds them all.
//! - Wrapping back: the first node dies (the shipper moves to the second), comes back, then the
//!   second dies while events flow: the shipper wraps around the list to the first node, and
//!   every `seq_no` arrives, the latest ones on the first node.
//! - A lost channel, not connection: the exchange is deleted under the shipper (the broker
//!   closes its channel with 404 NOT_FOUND at the next publish) and declared again; the
//!   shipper opens a new session, publishes what was unconfirmed again, and every `seq_no`
//!   arrives (on the test broker, with an exchange of the test's own).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use logcollect::Guard;
use logcollect_test_support::{broker_url, unique, wait_for, Client, Node};
use tracing_subscriber::layer::SubscriberExt;

const PORT_A: u16 = 5743;
const PORT_B: u16 = 5744;

fn plain_node(name: &'static str, port: u16) -> std::thread::JoinHandle<Node> {
    std::thread::spawn(move || Node::plain(name, port))
}

fn uri(port: u16) -> String {
    logcollect_test_support::node::plain_uri(port)
}

/// The number after `key=` in a stats line.
fn number(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.parse().ok())
}

#[test]
fn the_node_in_use_stops_mid_stream_and_every_event_arrives_through_the_other() {
    let (a, b) = (
        plain_node("lc-harden-fo-a", PORT_A),
        plain_node("lc-harden-fo-b", PORT_B),
    );
    let a = a.join().expect("node A");
    let b = b.join().expect("node B");
    let exchange = unique("failover");
    let queue = unique("failover-q");
    let (client_a, client_b) = (Client::plain(uri(PORT_A)), Client::plain(uri(PORT_B)));
    client_a.bind(&exchange, &queue);
    client_b.bind(&exchange, &queue);

    let mut loadgen = Command::new(common::loadgen_binary())
        .args(["--until-eof", "--rate", "2000", "--threads", "2"])
        .args(["--progress-every", "200", "--flush-timeout-secs", "120"])
        .env(
            "LOGCOLLECT_BROKER_URI",
            format!("{},{}", uri(PORT_A), uri(PORT_B)),
        )
        .env("LOGCOLLECT_EXCHANGE", &exchange)
        .env("LOGCOLLECT_BACKOFF_MIN_MS", "50")
        .env("LOGCOLLECT_BACKOFF_MAX_MS", "500")
        .env("LOGCOLLECT_QUEUE_CAPACITY", "1000000")
        .env_remove("LOGCOLLECT_ROUTING_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start loadgen");
    let stdin = loadgen.stdin.take();
    let stdout = loadgen.stdout.take().expect("stdout");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut last = String::new();
    // Waits for a progress line satisfying `what`; fails with the last one seen.
    let mut await_line = |what: &str, ok: &dyn Fn(&str) -> bool| -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            match lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if ok(&line) {
                        return line;
                    }
                    last = line;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("timed out waiting for {what}; last line: {last}");
    };

    let node_a = "node=amqp://127.0.0.1:5743/%2f";
    let node_b = "node=amqp://127.0.0.1:5744/%2f";
    let line = await_line("delivery to node A", &|l| {
        l.contains(node_a) && number(l, "confirmed=").is_some_and(|c| c >= 1000)
    });
    eprintln!("before the stop: {line}");
    a.stop();
    let line = await_line("delivery to node B after the stop", &|l| l.contains(node_b));
    let confirmed_at_switch = number(&line, "confirmed=").unwrap_or(0);
    let line = await_line("more deliveries to node B", &|l| {
        l.contains(node_b)
            && number(l, "confirmed=").is_some_and(|c| c >= confirmed_at_switch + 1000)
    });
    eprintln!("after the stop: {line}");
    drop(stdin);
    let status = loadgen.wait().expect("loadgen exit");
    let _ = reader.join();
    let report: Vec<String> = lines.try_iter().collect();
    let report = report.last().cloned().unwrap_or_default();
    assert!(status.success(), "loadgen failed: {report}");
    assert!(report.contains(" ok=true "), "{report}");
    assert!(report.contains(node_b), "{report}");
    assert!(
        number(&report, "reconnects=").is_some_and(|r| r >= 1),
        "{report}"
    );
    let events = number(&report, "events=").expect("events=");
    assert!(events >= 2000, "{report}");

    // What node A confirmed before it stopped is in its durable queue.
    a.restart();
    let mut seen = BTreeSet::new();
    let mut per_node = Vec::new();
    for client in [&client_a, &client_b] {
        let docs = client.drain(&queue);
        per_node.push(docs.len());
        for doc in docs {
            seen.insert(doc["fields"]["seq_no"].as_u64().expect("seq_no"));
        }
    }
    assert!(
        per_node.iter().all(|n| *n > 0),
        "both nodes got events: {per_node:?}"
    );
    let missing: Vec<u64> = (0..events).filter(|s| !seen.contains(s)).take(20).collect();
    assert!(
        missing.is_empty(),
        "{} of {events} seq_no missing (first: {missing:?}); per node {per_node:?}",
        events - seen.range(..events).count() as u64
    );
    assert_eq!(seen.len() as u64, events, "no seq_no beyond those logged");
    drop((a, b));
}

/// Logs `seq_no` 0, 1, 2… through the shipper `guard` belongs to, on a thread of its own,
/// about one every millisecond, until stopped.
struct Logger {
    stop: Arc<AtomicBool>,
    logged: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Logger {
    fn start(layer: logcollect::LogcollectLayer, message: &'static str) -> Logger {
        let stop = Arc::new(AtomicBool::new(false));
        let logged = Arc::new(AtomicU64::new(0));
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        let thread = std::thread::spawn({
            let (stop, logged) = (stop.clone(), logged.clone());
            move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let mut seq_no = 0u64;
                    while !stop.load(Relaxed) {
                        tracing::info!(seq_no, "{message}");
                        seq_no += 1;
                        logged.store(seq_no, Relaxed);
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
            }
        });
        Logger {
            stop,
            logged,
            thread: Some(thread),
        }
    }

    fn logged(&self) -> u64 {
        self.logged.load(Relaxed)
    }

    /// Stops logging; how many events were logged.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the logging thread");
        }
        self.logged()
    }
}

/// Waits until the shipper is on `node` and confirmed `more` events beyond what it had.
fn delivering_to(guard: &Guard, node: &str, more: u64) {
    let from = guard.stats().confirmed;
    let ok = wait_for(Duration::from_secs(120), || {
        let stats = guard.stats();
        stats.node.as_deref() == Some(node) && stats.confirmed >= from + more
    });
    assert!(ok, "not delivering to {node}: {}", guard.stats());
}

fn shipper(broker_uri: String, exchange: &str) -> (logcollect::LogcollectLayer, Guard) {
    logcollect::builder()
        .broker_uri(broker_uri)
        .exchange(exchange)
        .configure(|c| {
            c.backoff_min = Duration::from_millis(50);
            c.backoff_max = Duration::from_millis(500);
            c.queue_capacity = 1_000_000;
        })
        .build()
        .expect("build the shipper")
}

/// The `seq_no`s of `docs`, checked to be `message`'s.
fn seq_nos(docs: &[serde_json::Value], message: &str) -> BTreeSet<u64> {
    docs.iter()
        .map(|d| {
            assert_eq!(d["message"], message, "{d}");
            d["fields"]["seq_no"].as_u64().expect("seq_no")
        })
        .collect()
}

#[test]
fn failover_wraps_back_to_the_first_node_and_every_event_arrives() {
    let (a, b) = (
        plain_node("lccon-wrap-a", 5753),
        plain_node("lccon-wrap-b", 5754),
    );
    let a = a.join().expect("node A");
    let b = b.join().expect("node B");
    let exchange = unique("lccon-wrap");
    let queue = unique("lccon-wrap-q");
    let (client_a, client_b) = (Client::plain(uri(a.port)), Client::plain(uri(b.port)));
    client_a.bind(&exchange, &queue);
    client_b.bind(&exchange, &queue);
    let (node_a, node_b) = (
        format!("amqp://127.0.0.1:{}/%2f", a.port),
        format!("amqp://127.0.0.1:{}/%2f", b.port),
    );

    let (layer, guard) = shipper(format!("{},{}", uri(a.port), uri(b.port)), &exchange);
    let logger = Logger::start(layer, "wrap around");
    delivering_to(&guard, &node_a, 300);
    a.stop();
    delivering_to(&guard, &node_b, 300);
    a.restart();
    delivering_to(&guard, &node_b, 300);
    let before_b_stops = logger.logged();
    b.stop();
    // The list wraps: after node B (the last) comes node A again.
    delivering_to(&guard, &node_a, 300);
    let logged = logger.stop();
    assert!(
        guard.flush(Duration::from_secs(60)).is_complete(),
        "{}",
        guard.stats()
    );
    let stats = guard.stats();
    assert_eq!(stats.confirmed, logged, "{stats}");
    assert_eq!(stats.node.as_deref(), Some(node_a.as_str()), "{stats}");
    assert!(
        stats.reconnects >= 2,
        "both faults hit the session: {stats}"
    );
    assert_eq!(stats.dropped.total(), 0, "{stats}");
    drop(guard);

    b.restart();
    let on_a = seq_nos(&client_a.drain(&queue), "wrap around");
    let on_b = seq_nos(&client_b.drain(&queue), "wrap around");
    assert!(
        on_a.range(before_b_stops..).next().is_some(),
        "nothing logged after node B stopped reached node A: {} on A, {} on B",
        on_a.len(),
        on_b.len()
    );
    assert!(!on_b.is_empty(), "node B took events while node A was down");
    let seen: BTreeSet<u64> = on_a.union(&on_b).copied().collect();
    let missing: Vec<u64> = (0..logged).filter(|s| !seen.contains(s)).take(20).collect();
    assert!(
        missing.is_empty(),
        "{} of {logged} seq_no missing (first: {missing:?})",
        (0..logged).filter(|s| !seen.contains(s)).count()
    );
    assert_eq!(seen.len() as u64, logged, "no seq_no beyond those logged");
    drop((a, b));
}

#[test]
fn a_lost_channel_is_replaced_and_every_event_arrives() {
    let url = broker_url();
    let client = Client::plain(url.clone());
    let exchange = unique("lccon-channel");
    let queue = unique("lccon-channel-q");
    client.bind(&exchange, &queue);
    let (layer, guard) = shipper(url, &exchange);
    let logger = Logger::start(layer, "channel lost");
    let ok = wait_for(Duration::from_secs(60), || guard.stats().confirmed >= 300);
    assert!(ok, "{}", guard.stats());

    // The next publish to the deleted exchange makes the broker close the shipper's channel
    // (404 NOT_FOUND); the connection stays.
    client.delete_exchange(&exchange);
    let mut why = String::new();
    let hit = wait_for(Duration::from_secs(60), || {
        let stats = guard.stats();
        if let Some(e) = &stats.last_error {
            if e.contains("NOT_FOUND") || e.contains("channel was closed") {
                why = e.clone();
            }
        }
        stats.reconnects >= 1 && stats.retried >= 1 && !why.is_empty()
    });
    assert!(
        hit,
        "the fault did not hit the shipper: {} ({why})",
        guard.stats()
    );
    // The shipper declared the exchange again; the queue's binding went with the old one.
    client.bind(&exchange, &queue);
    let from = guard.stats().confirmed;
    let ok = wait_for(Duration::from_secs(60), || {
        guard.stats().confirmed >= from + 300
    });
    assert!(
        ok,
        "no delivery after the channel was replaced: {}",
        guard.stats()
    );
    let logged = logger.stop();
    assert!(
        guard.flush(Duration::from_secs(60)).is_complete(),
        "{}",
        guard.stats()
    );
    let stats = guard.stats();
    assert_eq!(stats.confirmed, logged, "{stats}");
    assert_eq!(stats.dropped.total(), 0, "{stats}");
    drop(guard);

    let docs = client.drain_at_least(&queue, logged as usize, Duration::from_secs(30));
    let seen = seq_nos(&docs, "channel lost");
    let missing: Vec<u64> = (0..logged).filter(|s| !seen.contains(s)).take(20).collect();
    assert!(
        missing.is_empty(),
        "{} of {logged} seq_no missing (first: {missing:?}); {stats}",
        (0..logged).filter(|s| !seen.contains(s)).count()
    );
    assert_eq!(seen.len() as u64, logged, "no seq_no beyond those logged");
}
