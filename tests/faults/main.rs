//! Fault injection against the real broker: the connection is cut, blackholed or slow, the
//! broker restarts, is down at start, or blocks publishing with a resource alarm. In every case
//! every event must arrive (duplicates are allowed, counted and printed) and the stats must add
//! up.
//!
//! The tests share the local broker and some change its state (through `rabbitmqctl`), so they
//! run one at a time, and every change is undone by a guard's `Drop`, even when a test fails.

#[path = "../common/mod.rs"]
mod common;

mod broker;
mod proxy;

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Capture, Received};
use logcollect::{Guard, LogcollectLayer, Stats};
use proxy::{Mode, Proxy};
use serde_json::Value;
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

/// Where the `ecs` format puts the fields the tests check.
const SEQ_NO: &str = "/fields/seq_no";
const EVENT_ID: &str = "/event/id";

static LOCK: Mutex<()> = Mutex::new(());

/// One test at a time; a test that panicked holding the lock does not stop the others.
fn serial() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Settings that make a failure show quickly: a 2 s heartbeat (in the URI), 3 s confirm and
/// connect timeouts, reconnect backoff between 50 ms and 1 s.
fn shipper(uri: String, exchange: &str) -> (LogcollectLayer, Guard) {
    shipper_with(uri, exchange, |_| {})
}

/// [`shipper`] with more settings.
fn shipper_with(
    uri: String,
    exchange: &str,
    more: impl FnOnce(&mut logcollect::Config),
) -> (LogcollectLayer, Guard) {
    logcollect::builder()
        .broker_uri(uri)
        .exchange(exchange)
        .identity("application", "faults-test")
        .configure(more)
        .configure(|c| {
            c.confirm_timeout = Duration::from_secs(3);
            c.connect_timeout = Duration::from_secs(3);
            c.backoff_min = Duration::from_millis(50);
            c.backoff_max = Duration::from_secs(1);
            c.retry_delay = Duration::from_millis(200);
            c.diagnostics_interval = Duration::from_secs(2);
        })
        .build()
        .expect("build the shipper")
}

/// The test broker's URI with a 2 s heartbeat.
fn direct_uri() -> String {
    let url = common::broker_url();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}heartbeat=2")
}

/// The test broker's AMQP address, for the proxy.
fn broker_addr() -> SocketAddr {
    let url = common::broker_url();
    let uri: lapin::uri::AMQPUri = url.parse().expect("broker URI");
    (uri.authority.host.as_str(), uri.authority.port)
        .to_socket_addrs()
        .expect("resolve broker")
        .next()
        .expect("broker address")
}

/// Logs `seq_no` values from a range at about `rate` events/s on a thread of its own (with the
/// layer as its default subscriber), until the range ends or [`Load::stop`] is called. A test
/// that injects a fault keeps the load running until the fault is over, then stops it: the
/// fault happens mid-stream by construction, however fast the machine is.
struct Load {
    stop: Arc<AtomicBool>,
    /// The next `seq_no` to log: everything below it was logged.
    next: Arc<AtomicU64>,
    thread: JoinHandle<Duration>,
}

/// The layer in a registry: a subscriber that several loads can share.
fn subscriber(layer: LogcollectLayer) -> Dispatch {
    Dispatch::new(tracing_subscriber::registry().with(layer))
}

/// A range with no practical end, for a load that runs until stopped.
const UNTIL_STOPPED: u64 = u64::MAX;

impl Load {
    fn start(subscriber: Dispatch, seq: Range<u64>, rate: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicU64::new(seq.start));
        let (stop_flag, counter) = (stop.clone(), next.clone());
        let thread = std::thread::Builder::new()
            .name("faults-logger".into())
            .spawn(move || {
                let _default = tracing::dispatcher::set_default(&subscriber);
                let payload = "p".repeat(64);
                let started = Instant::now();
                for (i, seq_no) in seq.enumerate() {
                    if stop_flag.load(Relaxed) {
                        break;
                    }
                    let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    tracing::info!(seq_no, payload = payload.as_str(), "fault event");
                    counter.store(seq_no + 1, Relaxed);
                }
                started.elapsed()
            })
            .expect("spawn the logging thread");
        Load { stop, next, thread }
    }

    /// How many `seq_no` values have been logged so far (the next one to log).
    fn logged(&self) -> u64 {
        self.next.load(Relaxed)
    }

    /// Waits until at least `n` events were logged; fails the test after `timeout`.
    fn wait_logged(&self, n: u64, timeout: Duration) {
        assert!(
            common::wait_for(timeout, || self.logged() >= n),
            "only {} events logged within {timeout:?}",
            self.logged()
        );
    }

    /// Stops logging; returns the end of what was logged (`seq_no` below it) and how long the
    /// logging took.
    fn stop(self, timeout: Duration) -> (u64, Duration) {
        self.stop.store(true, Relaxed);
        self.finish(timeout)
    }

    /// Waits for the range to end (failing the test if the logging calls did not return within
    /// `timeout`: a logging call that waits on the broker).
    fn finish(self, timeout: Duration) -> (u64, Duration) {
        assert!(
            common::wait_for(timeout, || self.thread.is_finished()),
            "the logging calls did not return within {timeout:?}"
        );
        let took = self.thread.join().expect("logging thread");
        (self.next.load(Relaxed), took)
    }
}

/// [`common::await_stats`] for a test's guard.
fn await_stats(
    test: &str,
    guard: &Guard,
    what: &str,
    timeout: Duration,
    condition: impl Fn(&Stats) -> bool,
) {
    common::await_stats(
        &format!("{test}: {what}"),
        timeout,
        &guard.shipper(),
        condition,
    );
}

/// What arrived, by `seq_no`.
struct Tally {
    n: u64,
    /// Only documents whose `pointer` has this value count (others are someone else's).
    only: Option<(&'static str, String)>,
    /// `seq_no` → the `event.id` of its first copy.
    seen: HashMap<i64, String>,
    in_range: u64,
    duplicates: u64,
    /// Duplicates whose `event.id` differs from the first copy's.
    id_mismatches: Vec<String>,
    out_of_range: Vec<i64>,
    foreign: u64,
}

impl Tally {
    fn new(n: u64) -> Tally {
        Tally {
            n,
            only: None,
            seen: HashMap::new(),
            in_range: 0,
            duplicates: 0,
            id_mismatches: Vec::new(),
            out_of_range: Vec::new(),
            foreign: 0,
        }
    }

    fn only(mut self, pointer: &'static str, value: &str) -> Tally {
        self.only = Some((pointer, value.to_string()));
        self
    }

    /// Adds a message's documents; whether every `seq_no` has arrived.
    fn add(&mut self, message: &Received) -> bool {
        for doc in message.documents() {
            if let Some((pointer, value)) = &self.only {
                if doc.pointer(pointer).and_then(Value::as_str) != Some(value.as_str()) {
                    self.foreign += 1;
                    continue;
                }
            }
            let seq = doc
                .pointer(SEQ_NO)
                .and_then(Value::as_i64)
                .unwrap_or_else(|| panic!("{SEQ_NO} missing in {doc}"));
            let id = doc
                .pointer(EVENT_ID)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{EVENT_ID} missing in {doc}"))
                .to_string();
            if seq < 0 || seq as u64 >= self.n {
                self.out_of_range.push(seq);
                continue;
            }
            match self.seen.get(&seq) {
                Some(first) => {
                    self.duplicates += 1;
                    if *first != id {
                        self.id_mismatches
                            .push(format!("seq_no {seq}: event.id {first} then {id}"));
                    }
                }
                None => {
                    self.seen.insert(seq, id);
                    self.in_range += 1;
                }
            }
        }
        self.complete()
    }

    fn complete(&self) -> bool {
        self.in_range == self.n
    }

    fn missing(&self) -> u64 {
        self.n - self.in_range
    }

    /// Zero loss: every `seq_no` 0..n at least once; duplicates printed, and each one a copy of
    /// the same event (same `event.id`).
    fn assert_zero_loss(&self, test: &str) {
        eprintln!(
            "{test}: {} of {} seq_no arrived, {} duplicates, {} foreign documents",
            self.in_range, self.n, self.duplicates, self.foreign
        );
        if !self.complete() {
            let mut missing: Vec<u64> = (0..self.n)
                .filter(|s| !self.seen.contains_key(&(*s as i64)))
                .collect();
            let count = missing.len();
            missing.truncate(20);
            panic!("{test}: {count} events lost, e.g. seq_no {missing:?}");
        }
        assert!(
            self.out_of_range.is_empty(),
            "{test}: seq_no out of range: {:?}",
            &self.out_of_range[..self.out_of_range.len().min(20)]
        );
        assert!(
            self.id_mismatches.is_empty(),
            "{test}: duplicates that are not copies of one event: {:?}",
            &self.id_mismatches[..self.id_mismatches.len().min(20)]
        );
    }
}

/// Reads the capture until every `seq_no` arrived (or `timeout`), then until quiet for 1 s.
fn collect(capture: &mut Capture, tally: &mut Tally, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !tally.complete() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let messages = capture.receive(tally.missing() as usize, left);
        if messages.is_empty() {
            break;
        }
        for message in &messages {
            tally.add(message);
        }
    }
    for message in &capture.receive_until_quiet(Duration::from_secs(1)) {
        tally.add(message);
    }
}

/// Every event accepted, confirmed, none dropped.
fn assert_stats(test: &str, stats: &Stats, n: u64) {
    eprintln!("{test}: stats {stats}");
    assert_eq!(stats.accepted, n, "{test}: accepted; {stats}");
    assert_eq!(stats.confirmed, n, "{test}: confirmed; {stats}");
    assert_eq!(stats.dropped.total(), 0, "{test}: dropped; {stats}");
}

fn flush(test: &str, guard: &Guard) {
    let started = Instant::now();
    let flushed = guard.flush(Duration::from_secs(60));
    eprintln!(
        "{test}: flush took {:?}, {} undelivered",
        started.elapsed(),
        flushed.undelivered
    );
    assert!(flushed.is_complete(), "{test}: {}", guard.stats());
}

/// The common end of a proxy test: the load is stopped (its logging calls returned), every
/// event it logged is confirmed, and every `seq_no` arrived. Returns the final stats.
fn finish(test: &str, load: Load, guard: Guard, capture: &mut Capture) -> Stats {
    let (n, logged) = load.stop(Duration::from_secs(30));
    eprintln!("{test}: logged {n} events in {logged:?}");
    flush(test, &guard);
    let stats = guard.stats();
    assert_stats(test, &stats, n);
    drop(guard);
    let mut tally = Tally::new(n);
    collect(capture, &mut tally, Duration::from_secs(30));
    tally.assert_zero_loss(test);
    stats
}

// ---------------------------------------------------------------------------------------------
// (a) The connection fails: a proxy between the shipper and the broker.

#[test]
fn connection_cut_twice_mid_stream_loses_nothing() {
    const TEST: &str = "cut";
    let _serial = serial();
    let started = Instant::now();
    let proxy = Proxy::start(broker_addr());
    let mut capture = Capture::fresh();
    let (layer, guard) = shipper(proxy.uri("heartbeat=2"), &capture.exchange);
    let load = Load::start(subscriber(layer), 0..UNTIL_STOPPED, 5_000);

    for cut in 1..=2u64 {
        // Cut a session that is delivering: wait until it has confirmed something new and has
        // events in flight (published, not yet confirmed).
        let confirmed = guard.stats().confirmed;
        await_stats(
            TEST,
            &guard,
            "a confirm, and events in flight",
            Duration::from_secs(30),
            |s| s.confirmed > confirmed && s.published > s.confirmed + s.retried,
        );
        let before = guard.stats();
        proxy.cut();
        await_stats(TEST, &guard, "a reconnect", Duration::from_secs(30), |s| {
            s.reconnects >= cut
        });
        eprintln!(
            "{TEST}: cut {cut} at accepted={} confirmed={}; reconnected",
            before.accepted, before.confirmed
        );
    }
    // The stream goes on over the new session before the load stops.
    let confirmed = guard.stats().confirmed;
    await_stats(
        TEST,
        &guard,
        "a confirm after the cuts",
        Duration::from_secs(30),
        |s| s.confirmed > confirmed,
    );
    let stats = finish(TEST, load, guard, &mut capture);
    assert!(stats.reconnects >= 2, "{TEST}: reconnects; {stats}");
    // The cuts hit messages in flight: they were published again on the new session.
    assert!(
        stats.retried > 0,
        "{TEST}: nothing was in flight at a cut; {stats}"
    );
    eprintln!(
        "{TEST}: {} proxied connections; took {:?}",
        proxy.accepted(),
        started.elapsed()
    );
}

#[test]
fn blackholed_connection_is_replaced_and_loses_nothing() {
    const TEST: &str = "blackhole";
    let _serial = serial();
    let started = Instant::now();
    let proxy = Proxy::start(broker_addr());
    let mut capture = Capture::fresh();
    let (layer, guard) = shipper(proxy.uri("heartbeat=2"), &capture.exchange);
    let load = Load::start(subscriber(layer), 0..UNTIL_STOPPED, 2_500);

    await_stats(TEST, &guard, "a confirm", Duration::from_secs(30), |s| {
        s.confirmed > 0
    });
    let before = guard.stats();
    let connections = proxy.accepted();
    proxy.set_mode(Mode::Blackhole);
    // Hold the blackhole until the shipper gives the silent connection up and tries a new one
    // (the heartbeat or the confirm timeout notices, after 3 to 4 s).
    assert!(
        common::wait_for(Duration::from_secs(60), || proxy.accepted() > connections),
        "{TEST}: the shipper never gave the blackholed connection up; {}",
        guard.stats()
    );
    let during = guard.stats();
    eprintln!("{TEST}: blackholed from {before}\n  to {during}");
    proxy.set_mode(Mode::Pass);
    await_stats(TEST, &guard, "a reconnect", Duration::from_secs(30), |s| {
        s.reconnects >= 1
    });
    let confirmed = guard.stats().confirmed;
    await_stats(
        TEST,
        &guard,
        "a confirm after the blackhole",
        Duration::from_secs(30),
        |s| s.confirmed > confirmed,
    );

    let stats = finish(TEST, load, guard, &mut capture);
    assert!(stats.reconnects >= 1, "{TEST}: reconnects; {stats}");
    // What went into the blackhole was in flight, never confirmed: published again.
    assert!(
        stats.retried > 0,
        "{TEST}: nothing was in flight in the blackhole; {stats}"
    );
    eprintln!(
        "{TEST}: {} proxied connections; took {:?}",
        proxy.accepted(),
        started.elapsed()
    );
}

#[test]
fn slow_link_loses_nothing() {
    const TEST: &str = "slow";
    const N: u64 = 5_000;
    let _serial = serial();
    let started = Instant::now();
    let proxy = Proxy::start(broker_addr());
    proxy.set_mode(Mode::Slow(Duration::from_millis(30)));
    let mut capture = Capture::fresh();
    let (layer, guard) = shipper(proxy.uri("heartbeat=2"), &capture.exchange);
    let load = Load::start(subscriber(layer), 0..N, 1_000);
    load.wait_logged(N, Duration::from_secs(60));

    let stats = finish(TEST, load, guard, &mut capture);
    assert_eq!(stats.accepted, N, "{TEST}: {stats}");
    // The delay hit every message in flight: a publish and its confirm each crossed the proxy
    // once, 30 ms each way (a lower bound: the confirms took at least that).
    assert!(
        stats.latency.samples > 0 && stats.latency.p50 >= Duration::from_millis(60),
        "{TEST}: the slow link did not slow the confirms; {stats}"
    );
    eprintln!(
        "{TEST}: reconnects={}, {} proxied connections; took {:?}",
        stats.reconnects,
        proxy.accepted(),
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// (b) The broker restarts twice under the load generator.

/// Kills the child on drop, so a failing test does not leave it running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn broker_restarts_twice_under_loadgen_and_nothing_is_lost() {
    const TEST: &str = "restart";
    let _serial = serial();
    broker::require_rabbitmqctl();
    let started = Instant::now();
    let binary = common::loadgen_binary();
    let application = common::unique("faults-loadgen");
    // Bound before loadgen starts: every event it publishes is routed to this queue.
    let mut capture = Capture::durable(
        logcollect::defaults::EXCHANGE,
        logcollect::defaults::BINDING_KEY,
    );
    // Logs at 1000 events/s until its standard input closes: the load runs until both restarts
    // are over, however long they take.
    let child = Command::new(binary)
        .args(["--until-eof", "--rate", "1000", "--progress-every", "500"])
        .args(["--flush-timeout-secs", "120"])
        .env("LOGCOLLECT_BROKER_URI", direct_uri())
        .env("LOGCOLLECT_FORMAT", "ecs")
        .env("LOGCOLLECT_IDENTITY__PROJECT", "faults")
        .env("LOGCOLLECT_IDENTITY__APPLICATION", &application)
        .env("LOGCOLLECT_BACKOFF_MIN_MS", "50")
        .env("LOGCOLLECT_BACKOFF_MAX_MS", "1000")
        .env("LOGCOLLECT_CONFIRM_TIMEOUT_MS", "3000")
        .env("LOGCOLLECT_CONNECT_TIMEOUT_MS", "3000")
        .env("LOGCOLLECT_DIAGNOSTICS_INTERVAL_MS", "2000")
        .env_remove("LOGCOLLECT_EXCHANGE")
        .env_remove("LOGCOLLECT_ROUTING_KEY")
        .env_remove("LOGCOLLECT_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start loadgen");
    let mut child = KillOnDrop(child);
    let progress = Progress::read(child.0.stdout.take().expect("loadgen stdout"));

    let spawned = Instant::now();
    for restart in 1..=2u32 {
        // Each restart cuts a live connection of loadgen's while it is delivering: its
        // connection is open and it has confirmed events since the last restart.
        assert!(
            common::wait_for(Duration::from_secs(60), || broker::has_connection(
                &application
            )),
            "{TEST}: loadgen not connected before restart {restart}"
        );
        let confirmed = progress.confirmed();
        assert!(
            common::wait_for(Duration::from_secs(60), || progress.confirmed() > confirmed),
            "{TEST}: loadgen confirmed nothing before restart {restart}: {}",
            progress.last()
        );
        assert!(
            matches!(child.0.try_wait(), Ok(None)),
            "{TEST}: loadgen ended before restart {restart}"
        );
        eprintln!(
            "{TEST}: restart {restart}, {:?} after loadgen started: {}",
            spawned.elapsed(),
            progress.last()
        );
        broker::restart(Duration::from_secs(2));
    }
    // Reconnected after the second restart and delivering again: now stop the load.
    let confirmed = progress.confirmed();
    assert!(
        common::wait_for(Duration::from_secs(60), || progress.confirmed() > confirmed),
        "{TEST}: loadgen confirmed nothing after the restarts: {}",
        progress.last()
    );
    drop(child.0.stdin.take());

    assert!(
        common::wait_for(Duration::from_secs(180), || !matches!(
            child.0.try_wait(),
            Ok(None)
        )),
        "{TEST}: loadgen still running 180 s after its input closed"
    );
    let status = child.0.wait().expect("loadgen status");
    let last = progress.finish();
    eprintln!("{TEST}: loadgen: {last}");
    assert!(
        status.success(),
        "{TEST}: loadgen failed ({status}): {last}"
    );
    let n = field(&last, "events");
    assert!(n > 0, "{TEST}: {last}");
    assert!(
        last.contains(" ok=true ") && field(&last, "confirmed") == n,
        "{TEST}: {last}"
    );
    let reconnects = field(&last, "reconnects");
    assert!(reconnects >= 2, "{TEST}: reconnects; {last}");
    eprintln!("{TEST}: loadgen logged {n} events and reconnected {reconnects} times");
    assert_eq!(field(&last, "dropped"), 0, "{TEST}: {last}");

    let mut tally = Tally::new(n).only("/labels/application", &application);
    capture.drain(
        |message| tally.add(message),
        Duration::from_secs(60),
        Duration::from_secs(1),
    );
    tally.assert_zero_loss(TEST);
    eprintln!("{TEST}: took {:?}", started.elapsed());
}

/// The value of `key=` in a loadgen line, as a number; fails the test if absent.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

/// Loadgen's standard output, read on a thread of its own: the latest line, and the latest
/// `confirmed=` count of its progress lines.
struct Progress {
    last: Arc<Mutex<String>>,
    confirmed: Arc<AtomicU64>,
    reader: JoinHandle<()>,
}

impl Progress {
    fn read(stdout: std::process::ChildStdout) -> Progress {
        let last = Arc::new(Mutex::new(String::new()));
        let confirmed = Arc::new(AtomicU64::new(0));
        let (line_slot, count) = (last.clone(), confirmed.clone());
        let reader = std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { break };
                if let Some(n) = line
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix("confirmed="))
                    .and_then(|v| v.parse().ok())
                {
                    count.store(n, Relaxed);
                }
                *line_slot.lock().unwrap_or_else(|p| p.into_inner()) = line;
            }
        });
        Progress {
            last,
            confirmed,
            reader,
        }
    }

    fn confirmed(&self) -> u64 {
        self.confirmed.load(Relaxed)
    }

    fn last(&self) -> String {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last line, once the output has ended.
    fn finish(self) -> String {
        let Progress { last, reader, .. } = self;
        let _ = reader.join();
        let line = last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        line
    }
}

// ---------------------------------------------------------------------------------------------
// (c) The broker is down when the application starts.

#[test]
fn broker_down_at_start_then_up_loses_nothing() {
    const TEST: &str = "down-at-start";
    const N: u64 = 5_000;
    let _serial = serial();
    broker::require_rabbitmqctl();
    let started = Instant::now();
    // Declared before the broker goes down: the queue and its binding survive the stop.
    let mut capture = Capture::durable(&common::unique("logcollect-test-x"), "#");
    let stopped = broker::AppStopped::new();
    let (layer, guard) = shipper(direct_uri(), &capture.exchange);
    let (_, logged) = Load::start(subscriber(layer), 0..N, 2_500).finish(Duration::from_secs(30));
    eprintln!("{TEST}: logging took {logged:?} with the broker down");
    std::thread::sleep(Duration::from_secs(1));
    let down = guard.stats();
    eprintln!("{TEST}: while down: {down}");
    assert_eq!((down.accepted, down.confirmed), (N, 0), "{TEST}: {down}");
    // The shipper tried the stopped broker and failed: nothing was published.
    assert_eq!(down.published, 0, "{TEST}: {down}");
    assert!(
        down.last_error.is_some(),
        "{TEST}: no error while down; {down}"
    );
    drop(stopped);

    flush(TEST, &guard);
    let stats = guard.stats();
    assert_stats(TEST, &stats, N);
    drop(guard);

    let mut tally = Tally::new(N);
    capture.drain(
        |message| tally.add(message),
        Duration::from_secs(30),
        Duration::from_secs(1),
    );
    tally.assert_zero_loss(TEST);
    eprintln!("{TEST}: took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// (d) A resource alarm blocks publishing.

#[test]
fn memory_alarm_blocks_publishing_without_blocking_logging_and_loses_nothing() {
    memory_alarm("alarm", None);
}

#[test]
fn memory_alarm_with_a_spool_moves_waiting_events_to_disk_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("spool dir");
    memory_alarm("alarm-spool", Some(dir.path()));
}

#[allow(non_snake_case)]
fn memory_alarm(TEST: &'static str, spool: Option<&std::path::Path>) {
    const N: u64 = 3_000;
    let _serial = serial();
    broker::require_rabbitmqctl();
    let started = Instant::now();
    let mut capture = Capture::fresh();
    let alarm = broker::MemoryAlarm::raise();
    let (layer, guard) = shipper_with(direct_uri(), &capture.exchange, |c| {
        c.spool.dir = spool.map(|p| p.to_path_buf());
    });
    let (_, logged) = Load::start(subscriber(layer), 0..N, 1_500).finish(Duration::from_secs(30));
    eprintln!("{TEST}: logging took {logged:?} while blocked");
    // RabbitMQ blocks a connection when it first publishes under the alarm: wait until the
    // shipper has seen the block, then watch it hold for longer than the confirm timeout (3 s):
    // nothing is confirmed, and no reconnect storm makes it through.
    await_stats(TEST, &guard, "the block", Duration::from_secs(60), |s| {
        s.blocked_time > Duration::ZERO
    });
    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(250));
        let blocked = guard.stats();
        assert_eq!(blocked.accepted, N, "{TEST}: {blocked}");
        assert_eq!(
            blocked.confirmed, 0,
            "{TEST}: confirmed while blocked; {blocked}"
        );
    }
    let blocked = guard.stats();
    eprintln!("{TEST}: while blocked: {blocked}");
    assert!(
        blocked.blocked_time >= Duration::from_secs(1),
        "{TEST}: the ongoing block shows in blocked_time; {blocked}"
    );
    assert_eq!(
        (blocked.reconnects, blocked.retried),
        (0, 0),
        "{TEST}: {blocked}"
    );
    // The block hit messages in flight: published, never confirmed while it held.
    assert!(
        blocked.published > blocked.confirmed,
        "{TEST}: nothing in flight when the block took hold; {blocked}"
    );
    if spool.is_some() {
        // Everything not published before the block took hold waits on disk. Events spooled
        // while the first connection was being opened and replayed from disk before the block
        // count in `spooled` and in `published` (as `replayed`): each event is on disk, read
        // back and published, or published from memory, exactly one of those.
        let on_disk = blocked.spooled - blocked.replayed;
        assert_eq!(
            on_disk + blocked.published,
            N,
            "{TEST}: waiting events are on disk; {blocked}"
        );
        assert!(on_disk > 0 && blocked.spool_bytes > 0, "{TEST}: {blocked}");
    }
    alarm.clear();

    flush(TEST, &guard);
    let stats = guard.stats();
    assert_stats(TEST, &stats, N);
    drop(guard);

    let mut tally = Tally::new(N);
    collect(&mut capture, &mut tally, Duration::from_secs(30));
    tally.assert_zero_loss(TEST);
    eprintln!("{TEST}: took {:?}", started.elapsed());
    assert_eq!(
        stats.reconnects, 0,
        "{TEST}: a block is not a dead connection; {stats}"
    );
    assert_eq!(stats.replayed, stats.spooled, "{TEST}: {stats}");
    // The block must be seen as a block (and timed), not as a dead connection to replace: a
    // shipper that reconnects instead reports `publish did not complete` and blocked_ms=0.
    assert!(
        stats.blocked_time > Duration::ZERO,
        "{TEST}: blocked_time is zero: the shipper did not notice the block; {stats}"
    );
}

// ---------------------------------------------------------------------------------------------
// (c) with a spool: an outage longer than memory holds.

#[test]
fn broker_down_longer_than_memory_holds_spools_and_loses_nothing() {
    const TEST: &str = "down-spooled";
    const N: u64 = 5_000;
    let _serial = serial();
    broker::require_rabbitmqctl();
    let dir = tempfile::tempdir().expect("spool dir");
    let mut capture = Capture::durable(&common::unique("logcollect-test-x"), "#");
    let stopped = broker::AppStopped::new();
    // Memory for 500 events: without the spool, 4500 would be dropped.
    let (layer, guard) = shipper_with(direct_uri(), &capture.exchange, |c| {
        c.queue_capacity = 500;
        c.spool.dir = Some(dir.path().to_path_buf());
    });
    Load::start(subscriber(layer), 0..N, 5_000).finish(Duration::from_secs(30));
    assert!(
        common::wait_for(Duration::from_secs(60), || guard.stats().spooled == N),
        "{TEST}: not everything reached the spool while the broker was down; {}",
        guard.stats()
    );
    let down = guard.stats();
    eprintln!("{TEST}: while down: {down}");
    assert_eq!((down.accepted, down.confirmed), (N, 0), "{TEST}: {down}");
    assert!(down.spool_bytes > 0, "{TEST}: {down}");
    assert!(
        down.last_error.is_some(),
        "{TEST}: no error while down; {down}"
    );
    drop(stopped);

    flush(TEST, &guard);
    assert!(
        common::wait_for(Duration::from_secs(60), || guard.stats().spool_bytes == 0),
        "{TEST}: the spool did not empty; {}",
        guard.stats()
    );
    let stats = guard.stats();
    assert_stats(TEST, &stats, N);
    assert_eq!(stats.replayed, N, "{TEST}: replayed; {stats}");
    drop(guard);

    let mut tally = Tally::new(N);
    capture.drain(
        |message| tally.add(message),
        Duration::from_secs(30),
        Duration::from_secs(1),
    );
    tally.assert_zero_loss(TEST);
}

// ---------------------------------------------------------------------------------------------
// Shutdown while the broker takes nothing: what is unconfirmed goes to the spool.

#[test]
fn at_the_shutdown_deadline_unconfirmed_events_go_to_the_spool_and_the_next_start_sends_them() {
    const TEST: &str = "shutdown-spool";
    const N: u64 = 2_000;
    let _serial = serial();
    let dir = tempfile::tempdir().expect("spool dir");
    let proxy = Proxy::start(broker_addr());
    let mut capture = Capture::fresh();
    let (layer, guard) = shipper_with(proxy.uri("heartbeat=30"), &capture.exchange, |c| {
        c.spool.dir = Some(dir.path().to_path_buf());
        // Long enough that the session is not replaced before the shutdown.
        c.confirm_timeout = Duration::from_secs(60);
    });
    let logging = subscriber(layer);
    // The first event is confirmed: the session (connection, channel, confirms, exchange) is
    // up. Then nothing gets through: publishes and confirms hang.
    Load::start(logging.clone(), 0..1, 1).finish(Duration::from_secs(30));
    await_stats(
        TEST,
        &guard,
        "the first confirm",
        Duration::from_secs(60),
        |s| s.confirmed == 1,
    );
    proxy.set_mode(Mode::Blackhole);
    Load::start(logging, 1..N, 20_000).finish(Duration::from_secs(30));
    // Messages that will never be confirmed fill the confirm window, or, when batches pack
    // every event into fewer messages than that, every event is in flight.
    let window = logcollect::Config::default().confirm_window as u64;
    await_stats(
        TEST,
        &guard,
        "a full window",
        Duration::from_secs(60),
        |s| s.messages_published == 1 + window || s.published == N,
    );
    let shipper = guard.shipper();
    let before = shipper.stats();
    // The first event may have gone through the spool while the connection was being opened
    // (the shipper moves what waits to disk while no broker takes events); nothing else has.
    assert_eq!(before.confirmed, 1, "{TEST}: {before}");
    assert_eq!(before.spooled, before.replayed, "{TEST}: {before}");
    // The deadline hits messages in flight: published into the blackhole, never confirmed.
    assert!(
        before.published > before.confirmed,
        "{TEST}: nothing in flight at the shutdown; {before}"
    );
    let left = guard.shutdown(Duration::from_millis(300));
    let stats = shipper.stats();
    eprintln!("{TEST}: at shutdown: {stats}");
    assert_eq!(left.undelivered, N - 1, "{TEST}");
    // Everything else, the published-but-unconfirmed included, is on disk.
    assert_eq!(
        (stats.spooled - before.spooled, stats.dropped.total()),
        (N - 1, 0),
        "{TEST}: {stats}"
    );
    drop(proxy);

    // The next start, with the broker reachable, sends them.
    let (_layer, guard) = shipper_with(direct_uri(), &capture.exchange, |c| {
        c.spool.dir = Some(dir.path().to_path_buf());
    });
    let next = guard.shipper();
    assert!(
        common::wait_for(Duration::from_secs(30), || {
            let s = next.stats();
            s.recovered >= N - 1 && s.spool_bytes == 0
        }),
        "{TEST}: the next start did not send the spool; {}",
        next.stats()
    );
    drop(guard);
    let mut tally = Tally::new(N);
    collect(&mut capture, &mut tally, Duration::from_secs(30));
    tally.assert_zero_loss(TEST);
}
