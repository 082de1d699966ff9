//! Competing consumers on a quorum queue of a real three-node cluster (scripts/cluster: nodes
//! `lcclc1..3` on ports 5821–5823, stopped when the test ends, also when it fails). Each message
//! goes to one consumer; a consumer killed mid-stream loses nothing: what it had not acked is
//! delivered to the other.
//!
//! 1. Two `logcollect collect` processes, as on two hosts (each connected to its own node),
//!    share one queue and write to two directories; one is SIGKILLed mid-stream. Together the
//!    directories hold every `seq_no`. `collect` declares its queue without arguments, so it runs
//!    in a virtual host whose default queue type is quorum (`rabbitmqctl add_vhost
//!    --default-queue-type quorum`): the queue is a quorum queue with a member on every node.
//! 2. Two consumers standing in for two Logstash instances (acking a message only once its
//!    events are written, prefetch as the pipeline's) on the quorum queue `logcollect`; one loses
//!    its connection mid-stream as a killed process does (its TCP connection closed under it).

#[path = "../../tests/clusters/mod.rs"]
mod clusters;
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use clusters::{wait_until, Cluster, LIMIT};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Connection, ConnectionProperties};
use regex::Regex;
use serde_json::Value;

const NAME: &str = "lcclc";
const PORT: u16 = 5821;
/// The virtual host where queues declared without a type are quorum queues.
const VHOST: &str = "collect";
const EVENTS: u64 = 20_000;

fn uri(cluster: &Cluster, i: usize, vhost: &str) -> String {
    format!(
        "amqp://guest:guest@127.0.0.1:{}/{}",
        cluster.port_of(i),
        vhost.replace('/', "%2f")
    )
}

/// Ships seq_no 0..EVENTS at about 2000 events/s through every node of the list; returns once
/// the broker confirmed them all.
fn emit(uris: Vec<String>, exchange: String, emitted: Arc<Mutex<u64>>) {
    let (layer, guard) = logcollect::builder()
        .broker_uri(uris.join(","))
        .exchange(exchange)
        .service_name("competing")
        .configure(|c| c.queue_capacity = 1_000_000)
        .build()
        .expect("build the shipper");
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        for seq_no in 0..EVENTS {
            tracing::info!(target: "jobs", seq_no, "competing consumers");
            if seq_no % 100 == 99 {
                *emitted.lock().expect("emitted") = seq_no + 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
    let flushed = guard.flush(LIMIT);
    assert!(flushed.is_complete(), "undelivered: {flushed:?}");
}

/// Every seq_no in the files under `dir`, with how often it appears.
fn seqs_under(dir: &Path) -> BTreeMap<u64, usize> {
    let re = Regex::new(r#"(?: seq_no=|"seq_no":)(\d+)"#).expect("regex");
    let mut seen = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let mut text = String::new();
                if std::fs::File::open(&path)
                    .and_then(|mut f| f.read_to_string(&mut text))
                    .is_ok()
                {
                    for c in re.captures_iter(&text) {
                        *seen.entry(c[1].parse().expect("number")).or_insert(0) += 1;
                    }
                }
            }
        }
    }
    seen
}

/// A `logcollect collect` process on one node.
struct Collector {
    child: Child,
    dir: PathBuf,
}

impl Collector {
    fn start(uri: &str, exchange: &str, queue: &str, dir: PathBuf) -> Collector {
        let mut child = common::logcollect(exchange)
            .env("LOGCOLLECT_BROKER_URI", uri)
            .arg("collect")
            .arg("--dir")
            .arg(&dir)
            .args(["--queue", queue])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start logcollect collect");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("collect: {line}");
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.contains("consuming queue") => break,
                Ok(_) => {}
                Err(_) => panic!("logcollect collect did not start consuming"),
            }
        }
        Collector { child, dir }
    }

    fn signal(&mut self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal}");
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Messages delivered and not yet acked on the channels of connections to node `i` (the
/// consumer connected there; a publisher's channel holds none).
fn unacked_on(cluster: &Cluster, i: usize) -> u64 {
    let to = format!("-> 127.0.0.1:{} ", cluster.port_of(i));
    let Ok(out) = cluster.ctl(
        i,
        "rabbitmqctl",
        &[
            "list_channels",
            "name",
            "messages_unacknowledged",
            "--no-table-headers",
        ],
    ) else {
        return 0;
    };
    out.lines()
        .filter(|l| l.contains(&to))
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique(name));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    dir
}

/// Every seq_no below EVENTS at least once in `total`, none beyond; the copies beyond one.
fn every_seq_no(total: &BTreeMap<u64, usize>, what: &str) -> usize {
    let missing: Vec<u64> = (0..EVENTS).filter(|s| !total.contains_key(s)).collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {EVENTS} seq_no missing (first: {:?})",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert_eq!(
        total.len() as u64,
        EVENTS,
        "{what}: no seq_no beyond those shipped"
    );
    total.values().sum::<usize>() - EVENTS as usize
}

fn two_collect_processes(cluster: &Cluster) {
    let exchange = common::unique("lc-competing");
    let queue = "competing-files";
    let (dir_a, dir_b) = (test_dir("collect-a"), test_dir("collect-b"));
    let mut a = Collector::start(&uri(cluster, 0, VHOST), &exchange, queue, dir_a.clone());
    let mut b = Collector::start(&uri(cluster, 1, VHOST), &exchange, queue, dir_b.clone());
    let emitted = Arc::new(Mutex::new(0));
    let uris: Vec<String> = (0..cluster.nodes).map(|i| uri(cluster, i, VHOST)).collect();
    let emitter = {
        let (exchange, emitted) = (exchange.clone(), emitted.clone());
        std::thread::spawn(move || emit(uris, exchange, emitted))
    };
    // Mid-stream: both have written, a third of the events are out, A holds unacked messages.
    let mut held = 0;
    wait_until(
        "both collectors writing, a third shipped, A holding some",
        || {
            *emitted.lock().expect("emitted") >= EVENTS / 3
                && !seqs_under(&a.dir).is_empty()
                && !seqs_under(&b.dir).is_empty()
                && {
                    held = unacked_on(cluster, 0);
                    held > 0
                }
        },
    );
    a.signal("KILL");
    let _ = a.child.wait();
    let written_by_a = seqs_under(&dir_a);
    emitter.join().expect("emitter");
    let mut total = BTreeMap::new();
    wait_until("every seq_no in one directory or the other", || {
        total = seqs_under(&dir_a);
        for (s, n) in seqs_under(&dir_b) {
            *total.entry(s).or_insert(0) += n;
        }
        (0..EVENTS).all(|s| total.contains_key(&s))
    });
    b.signal("TERM");
    let status = b.child.wait().expect("wait");
    assert!(status.success(), "collect B exit: {status}");
    let by_b = seqs_under(&dir_b);
    let duplicates = every_seq_no(&total, "two collect processes");
    eprintln!(
        "two collect processes, A killed mid-stream holding {held} unacked messages: {EVENTS} of \
         {EVENTS} seq_no written, A {} before it died, B {}; {duplicates} duplicates (written by \
         A, not acked before the kill, delivered again to B)",
        written_by_a.len(),
        by_b.len()
    );
    drop(a);
}

/// A TCP relay to a node, to cut a consumer's connection as its process dying would.
struct Relay {
    port: u16,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(upstream: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let port = listener.local_addr().expect("addr").port();
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let kept = sockets.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let pipes = [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ];
                for (from, to) in pipes {
                    if let (Ok(mut from), Ok(mut to)) = (from, to) {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = to.shutdown(Shutdown::Both);
                        });
                    }
                }
                kept.lock().expect("sockets").extend([client, server]);
            }
        });
        Relay { port, sockets }
    }

    /// Closes every connection relayed.
    fn cut(&self) {
        for s in self.sockets.lock().expect("sockets").iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// A stand-in for a Logstash instance: consumes with a prefetch of 16 messages, writes each
/// message's seq_no, then acks it. Stops when the connection fails or `stop` is set.
fn stand_in(
    uri: String,
    queue: &'static str,
    slow: Duration,
    written: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let connection = Connection::connect(&uri, ConnectionProperties::default())
                .await
                .expect("connect");
            let channel = connection.create_channel().await.expect("channel");
            channel
                .basic_qos(16, BasicQosOptions::default())
                .await
                .expect("qos");
            let mut consumer = channel
                .basic_consume(
                    ShortString::from(queue),
                    ShortString::from(""),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("consume");
            while !stop.load(Ordering::Relaxed) {
                let next = tokio::time::timeout(Duration::from_millis(200), consumer.next()).await;
                let delivery = match next {
                    Ok(Some(Ok(d))) => d,
                    Ok(_) => return,
                    Err(_) => continue,
                };
                let docs = match serde_json::from_slice::<Value>(&delivery.data).expect("JSON") {
                    Value::Array(items) => items,
                    doc => vec![doc],
                };
                {
                    let mut w = written.lock().expect("written");
                    for doc in docs {
                        let seq = doc.pointer("/fields/seq_no").and_then(Value::as_u64);
                        w.push(seq.expect("seq_no"));
                    }
                }
                tokio::time::sleep(slow).await;
                if delivery.ack(BasicAckOptions::default()).await.is_err() {
                    return;
                }
            }
        });
    })
}

fn two_logstash_stand_ins(cluster: &Cluster) {
    let queue = clusters::QUEUE;
    let relay = Relay::start(cluster.port_of(0));
    let (written_a, written_b) = (Arc::default(), Arc::default());
    let stop = Arc::new(AtomicBool::new(false));
    // A is slow (it always holds unacked messages); B keeps up.
    let a = stand_in(
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", relay.port),
        queue,
        Duration::from_millis(20),
        Arc::clone(&written_a),
        stop.clone(),
    );
    let b = stand_in(
        uri(cluster, 1, "/"),
        queue,
        Duration::ZERO,
        Arc::clone(&written_b),
        stop.clone(),
    );
    let emitted = Arc::new(Mutex::new(0));
    let uris: Vec<String> = (0..cluster.nodes).map(|i| uri(cluster, i, "/")).collect();
    let emitter = {
        let emitted = emitted.clone();
        std::thread::spawn(move || emit(uris, "logstash".to_string(), emitted))
    };
    let len = |w: &Arc<Mutex<Vec<u64>>>| w.lock().expect("written").len();
    let mut held = 0;
    wait_until(
        "both stand-ins writing, a third shipped, A holding some",
        || {
            *emitted.lock().expect("emitted") >= EVENTS / 3
                && len(&written_a) > 0
                && len(&written_b) > 0
                && {
                    held = unacked_on(cluster, 0);
                    held > 0
                }
        },
    );
    relay.cut();
    a.join().expect("stand-in A");
    let by_a = len(&written_a);
    emitter.join().expect("emitter");
    let total = || {
        let mut t = BTreeMap::new();
        for w in [&written_a, &written_b] {
            for s in w.lock().expect("written").iter() {
                *t.entry(*s).or_insert(0usize) += 1;
            }
        }
        t
    };
    wait_until("every seq_no written by one stand-in or the other", || {
        total().len() as u64 >= EVENTS
    });
    stop.store(true, Ordering::Relaxed);
    b.join().expect("stand-in B");
    let duplicates = every_seq_no(&total(), "two Logstash stand-ins");
    eprintln!(
        "two Logstash stand-ins, A cut off mid-stream holding {held} unacked messages: {EVENTS} \
         of {EVENTS} seq_no written, A {by_a} \
         before the cut, B {}; {duplicates} duplicates (written by A, its ack lost with the \
         connection, delivered again to B)",
        len(&written_b)
    );
}

#[test]
fn competing_consumers_share_a_quorum_queue_and_a_killed_one_loses_nothing() {
    let cluster = Cluster::start(NAME, PORT, 3);
    cluster
        .ctl(
            0,
            "rabbitmqctl",
            &["add_vhost", VHOST, "--default-queue-type", "quorum"],
        )
        .expect("add_vhost");
    cluster
        .ctl(
            0,
            "rabbitmqctl",
            &["set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*"],
        )
        .expect("set_permissions");
    two_collect_processes(&cluster);
    two_logstash_stand_ins(&cluster);
}
