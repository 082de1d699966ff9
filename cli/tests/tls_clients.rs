//! `check`, `tail` and `collect` connect as the library does: against a throw-away TLS-only
//! node that requires client certificates, logging in with `EXTERNAL` (no password), and
//! against a node list whose first node is down.
//!
//! - TLS (node `lccon-tls`, port 5751): `check` passes every step with the client certificate
//!   and no password, and its test event reaches a bound queue; without the client
//!   certificate, or without the CA, it fails at the TLS step with the matching code; with a
//!   list whose first node is down, it says which node answers and exits 1. `tail` prints and
//!   `collect` writes every `seq_no` shipped to that node (through a list whose first node is
//!   down: the TLS settings apply to each node).
//! - A plain list (a closed port, then the test broker): `check` reports node 1 refused and
//!   node 2 answering, passes the publish and route steps through node 2, and exits 1
//!   (`node_unreachable`); `tail` and `collect` work through node 2.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{json_lines, logcollect, run_with_input, wait_output, wait_until, Broker};
use logcollect_test_support::{broker_url, closed_port, unique, TlsNode};
use regex::Regex;
use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt;

const LIMIT: Duration = Duration::from_secs(120);
const TLS_PORT: u16 = 5751;
const CLIENT_USER: &str = "lccon-client";

type Env = Vec<(String, String)>;

fn with(env: &Env, key: &str, value: &str) -> Env {
    let mut env: Env = env.iter().filter(|(k, _)| k != key).cloned().collect();
    env.push((key.to_string(), value.to_string()));
    env
}

fn without(env: &Env, key: &str) -> Env {
    env.iter().filter(|(k, _)| k != key).cloned().collect()
}

/// `logcollect ARGS` with exactly these settings (no inherited `LOGCOLLECT_*`).
fn command(exchange: &str, env: &Env, args: &[&str]) -> std::process::Command {
    let mut cmd = logcollect(exchange);
    cmd.env_remove("LOGCOLLECT_BROKER_URI");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args);
    cmd
}

/// `check --json`: exit code and report.
fn check(exchange: &str, env: &Env) -> (i32, Value) {
    let out = run_with_input(
        // The TLS node has no management API: the queue step is not asked for.
        command(exchange, env, &["check", "--json", "--management", "none"]),
        Vec::new(),
        LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "check --json printed no JSON ({e}): {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("exit code"), report)
}

fn steps(report: &Value) -> Vec<(String, String, Option<u64>)> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["step"].as_str().expect("step").to_string(),
                s["status"].as_str().expect("status").to_string(),
                s["node"].as_u64(),
            )
        })
        .collect()
}

fn step(name: &str, status: &str, node: Option<u64>) -> (String, String, Option<u64>) {
    (name.to_string(), status.to_string(), node)
}

/// Ships `seq_no` 0..n with exactly these settings (the library's shipper, as an application
/// configured like the command); waits for every confirm.
fn emit(exchange: &str, env: &Env, n: u64) {
    let vars = with(env, "LOGCOLLECT_EXCHANGE", exchange);
    let config = logcollect::Config::from_vars(vars).expect("a valid configuration");
    let (layer, guard) = logcollect::builder()
        .configure(|c| {
            *c = config;
            c.service_name = Some("lccon-svc".to_string());
            c.queue_capacity = 100_000;
        })
        .build()
        .expect("build the shipper");
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for seq_no in 0..n {
            tracing::info!(target: "jobs", seq_no, "over the connector");
        }
    });
    let flushed = guard.flush(Duration::from_secs(60));
    assert!(
        flushed.is_complete(),
        "undelivered: {flushed:?} {}",
        guard.stats()
    );
}

/// A started `logcollect` whose stderr is read line by line.
struct Running {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(mut cmd: std::process::Command, ready: &str) -> Running {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start logcollect");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut running = Running {
            child: Some(child),
            lines,
            seen: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match running.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(ready);
                    running.seen.push(line);
                    if found {
                        return running;
                    }
                }
                Err(_) => panic!("logcollect did not print `{ready}`: {:?}", running.seen),
            }
        }
    }

    /// Waits for the exit: status, stdout, stderr.
    fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        let output = wait_output(self.child.take().expect("running"), LIMIT);
        self.seen.extend(self.lines.try_iter());
        (
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
            self.seen.join("\n"),
        )
    }

    fn terminate(self) -> (std::process::ExitStatus, String, String) {
        if let Some(child) = &self.child {
            let status = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status()
                .expect("run kill");
            assert!(status.success());
        }
        self.finish()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `tail --json --count n` prints exactly the `n` events shipped with `env`.
fn tail_prints_every_event(env: &Env, exchange: &str) {
    const N: u64 = 200;
    let tail = Running::start(
        command(
            exchange,
            env,
            &["tail", "--json", "--count", &N.to_string()],
        ),
        "listening on",
    );
    emit(exchange, env, N);
    let (status, stdout, stderr) = tail.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let docs = json_lines(&stdout);
    assert_eq!(docs.len() as u64, N, "{stderr}");
    let seqs: BTreeSet<u64> = docs
        .iter()
        .map(|d| {
            assert_eq!(d["message"], "over the connector");
            assert_eq!(d["service"]["name"], "lccon-svc");
            d["fields"]["seq_no"].as_u64().expect("seq_no")
        })
        .collect();
    assert_eq!(seqs, (0..N).collect::<BTreeSet<_>>());
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn seqs_written(dir: &Path) -> Vec<u64> {
    let re = Regex::new(r#"(?: seq_no=|"seq_no":)(\d+)"#).expect("regex");
    let mut seqs = Vec::new();
    for path in files(dir) {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&path) {
            let _ = file.read_to_string(&mut text);
        }
        seqs.extend(
            re.captures_iter(&text)
                .filter_map(|c| c[1].parse::<u64>().ok()),
        );
    }
    seqs
}

/// `collect` writes each `seq_no` shipped with `env` once, and stops cleanly on SIGTERM.
fn collect_writes_every_event(env: &Env, exchange: &str, queue: &str) {
    const N: u64 = 300;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique("lccon-collect"));
    std::fs::create_dir_all(&dir).expect("test dir");
    let dir_arg = dir.display().to_string();
    let collect = Running::start(
        command(
            exchange,
            env,
            &["collect", "--dir", &dir_arg, "--queue", queue],
        ),
        "consuming queue",
    );
    emit(exchange, env, N);
    wait_until("every seq_no written", LIMIT, || {
        seqs_written(&dir).len() as u64 >= N
    });
    let (status, _, stderr) = collect.terminate();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let mut seqs = seqs_written(&dir);
    seqs.sort_unstable();
    assert_eq!(seqs, (0..N).collect::<Vec<_>>(), "each seq_no exactly once");
    let _ = std::fs::remove_dir_all(&dir);
}

fn check_passes_with_a_client_certificate_and_no_password(node: &TlsNode) {
    let exchange = unique("lccon-tls-check");
    let queue = unique("lccon-tls-check-q");
    node.harness().bind(&exchange, &queue);
    let env = node.external_env();
    assert!(env
        .iter()
        .all(|(k, v)| k != "LOGCOLLECT_BROKER_URI" || !v.contains('@')));
    let (code, report) = check(&exchange, &env);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(
        steps(&report),
        [
            step("config", "ok", None),
            step("dns", "ok", None),
            step("tcp", "ok", None),
            step("tls", "ok", None),
            step("login", "ok", None),
            step("exchange", "ok", None),
            step("publish", "ok", None),
            step("route", "ok", None),
            step("queue", "skipped", None),
        ]
    );
    let summary = |name: &str| -> String {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == name)
            .and_then(|s| s["summary"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        summary("tls").contains("client certificate is accepted"),
        "{report}"
    );
    assert!(summary("login").contains("EXTERNAL"), "{report}");
    let docs = node
        .harness()
        .drain_at_least(&queue, 1, Duration::from_secs(30));
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0]["message"], "logcollect check: test event");
}

fn check_without_the_client_certificate_fails_at_tls(node: &TlsNode) {
    let exchange = unique("lccon-tls-nocert");
    let env = without(
        &without(&node.external_env(), "LOGCOLLECT_TLS_CERT_FILE"),
        "LOGCOLLECT_TLS_KEY_FILE",
    );
    let env = with(&env, "LOGCOLLECT_AUTH_MECHANISM", "plain");
    let env = with(&env, "LOGCOLLECT_BROKER_URI", &node.guest_uri());
    let (code, report) = check(&exchange, &env);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["failure"]["step"], "tls", "{report}");
    assert_eq!(
        report["failure"]["code"], "client_certificate_required",
        "{report}"
    );
    assert!(
        report["failure"]["fix"]
            .as_str()
            .unwrap()
            .contains("tls_cert_file"),
        "{report}"
    );

    // Without the CA, the broker's certificate is not trusted.
    let env = without(&node.external_env(), "LOGCOLLECT_TLS_CA_FILE");
    let (code, report) = check(&exchange, &env);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["failure"]["step"], "tls", "{report}");
    assert_eq!(report["failure"]["code"], "tls_certificate", "{report}");
    assert!(
        report["failure"]["fix"]
            .as_str()
            .unwrap()
            .contains("tls_ca_file"),
        "{report}"
    );
}

/// A TLS list whose first node is down: node 1 refused, node 2 answers and carries the event.
fn check_names_the_tls_node_that_answers(node: &TlsNode) {
    let exchange = unique("lccon-tls-list");
    let queue = unique("lccon-tls-list-q");
    node.harness().bind(&exchange, &queue);
    let env = with(
        &node.external_env(),
        "LOGCOLLECT_BROKER_URI",
        &format!("amqps://localhost:{}/%2f,{}", closed_port(), node.uri()),
    );
    let (code, report) = check(&exchange, &env);
    assert_node_one_down(code, &report);
    assert_eq!(node.harness().drain(&queue).len(), 1, "the test event");
}

/// `check` against [down, up]: exit 1, `node_unreachable`, and which node answers.
fn assert_node_one_down(code: i32, report: &Value) {
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["ok"], false);
    assert_eq!(report["failure"]["step"], "nodes", "{report}");
    assert_eq!(report["failure"]["code"], "node_unreachable", "{report}");
    let headline = report["failure"]["headline"].as_str().unwrap();
    assert!(
        headline.contains("node 1") && headline.contains("through node 2"),
        "{headline}"
    );
    let nodes = report["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 2, "{report}");
    assert_eq!(
        (
            &nodes[0]["node"],
            &nodes[0]["answers"],
            &nodes[0]["step"],
            &nodes[0]["code"]
        ),
        (
            &Value::from(1),
            &Value::from(false),
            &Value::from("tcp"),
            &Value::from("connection_refused")
        ),
        "{report}"
    );
    assert_eq!(
        (&nodes[1]["node"], &nodes[1]["answers"]),
        (&Value::from(2), &Value::from(true)),
        "{report}"
    );
    let steps = steps(report);
    for expected in [
        step("tcp", "failed", Some(1)),
        step("tcp", "ok", Some(2)),
        step("login", "ok", Some(2)),
        step("exchange", "ok", None),
        step("publish", "ok", None),
        step("route", "ok", None),
    ] {
        assert!(steps.contains(&expected), "{expected:?} in {steps:?}");
    }
    assert_eq!(steps.last(), Some(&step("nodes", "failed", None)));
}

#[test]
fn check_tail_and_collect_against_a_tls_node_with_client_certificates() {
    let node = TlsNode::start("lccon-tls", TLS_PORT, CLIENT_USER);
    // tail and collect through a list whose first node is down: TLS applies to every node.
    let list = with(
        &node.external_env(),
        "LOGCOLLECT_BROKER_URI",
        &format!("amqps://localhost:{}/%2f,{}", closed_port(), node.uri()),
    );
    type Case<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Case)> = vec![
        (
            "check_passes_with_a_client_certificate_and_no_password",
            Box::new(|| check_passes_with_a_client_certificate_and_no_password(&node)),
        ),
        (
            "check_without_the_client_certificate_fails_at_tls",
            Box::new(|| check_without_the_client_certificate_fails_at_tls(&node)),
        ),
        (
            "check_names_the_tls_node_that_answers",
            Box::new(|| check_names_the_tls_node_that_answers(&node)),
        ),
        (
            "tail_prints_every_event",
            Box::new(|| tail_prints_every_event(&node.external_env(), &unique("lccon-tls-tail"))),
        ),
        (
            "tail_prints_every_event_through_node_2",
            Box::new(|| tail_prints_every_event(&list, &unique("lccon-tls-tail2"))),
        ),
        (
            "collect_writes_every_event_through_node_2",
            Box::new(|| {
                collect_writes_every_event(
                    &list,
                    &unique("lccon-tls-collect"),
                    &unique("lccon-tls-collect-q"),
                )
            }),
        ),
    ];
    let failed: Vec<&str> = cases
        .iter()
        .filter(|(name, case)| {
            eprintln!("case {name}");
            catch_unwind(AssertUnwindSafe(case)).is_err()
        })
        .map(|(name, _)| *name)
        .collect();
    assert!(failed.is_empty(), "failed cases: {failed:?}");
}

/// [a closed port, the test broker].
fn plain_list() -> Env {
    vec![(
        "LOGCOLLECT_BROKER_URI".to_string(),
        format!(
            "amqp://guest:guest@127.0.0.1:{}/%2f,{}",
            closed_port(),
            broker_url()
        ),
    )]
}

#[test]
fn check_says_which_nodes_answer_when_the_first_is_down() {
    let exchange = unique("lccon-list-check");
    let mut broker = Broker::connect();
    broker.capture(&exchange, "logstash.#");
    let (code, report) = check(&exchange, &plain_list());
    assert_node_one_down(code, &report);
    assert_eq!(broker.receive(1, Duration::from_secs(10)).len(), 1);

    // Every node answering: the nodes step passes and check exits 0.
    let both = vec![(
        "LOGCOLLECT_BROKER_URI".to_string(),
        format!("{},{}", broker_url(), broker_url()),
    )];
    let (code, report) = check(&exchange, &both);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        steps(&report).last(),
        Some(&step("nodes", "ok", None)),
        "{report}"
    );

    // No node answering: each is reported, then `no_node_answers`.
    let none = vec![(
        "LOGCOLLECT_BROKER_URI".to_string(),
        format!(
            "amqp://guest:guest@127.0.0.1:{}/%2f,amqp://guest:guest@127.0.0.1:{}/%2f",
            closed_port(),
            closed_port()
        ),
    )];
    let (code, report) = check(&exchange, &none);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["failure"]["code"], "no_node_answers", "{report}");
    assert!(steps(&report).contains(&step("tcp", "failed", Some(2))));
}

#[test]
fn tail_works_through_the_second_node_when_the_first_is_down() {
    let exchange = unique("lccon-list-tail");
    let mut broker = Broker::connect();
    broker.forget_exchange_later(&exchange); // tail declares it
    tail_prints_every_event(&plain_list(), &exchange);
}

#[test]
fn collect_works_through_the_second_node_when_the_first_is_down() {
    let exchange = unique("lccon-list-collect");
    let queue = unique("lccon-list-collect-q");
    let mut broker = Broker::connect();
    broker.forget_exchange_later(&exchange);
    collect_writes_every_event(&plain_list(), &exchange, &queue);
    broker.delete_queue(&queue);
}
