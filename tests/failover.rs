//! Failover across a cluster's nodes, with real brokers: two throw-away RabbitMQ nodes of this
//! test (own names, ports 5743/5744, directories), one queue bound on each. The load generator
//! is given both URIs; once it is delivering to the first node, that node is stopped mid-stream.
//! The shipper moves to the second, `stats` says so, and every `seq_no` arrives: the union of
//! the two queues (the first node restarted to read what it had confirmed) holds them all.

mod common;
mod nodes;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nodes::{Client, Node};

const PORT_A: u16 = 5743;
const PORT_B: u16 = 5744;

fn plain_node(name: &'static str, port: u16) -> std::thread::JoinHandle<Node> {
    std::thread::spawn(move || {
        Node::start(
            name,
            port,
            &format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n"),
            &[],
            &[],
        )
    })
}

fn uri(port: u16) -> String {
    format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
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
    let exchange = common::unique("failover");
    let queue = common::unique("failover-q");
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
