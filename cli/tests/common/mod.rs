//! Test support for the `logcollect` command: running the built binary, and the real broker
//! through the test-support crate's client (unique exchanges, a queue of the test's own).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lapin::{BasicProperties, ExchangeKind};
use logcollect_test_support::client::{Client, Session};
use serde_json::Value;

#[allow(unused_imports)]
pub use logcollect_test_support::{broker_url, unique, HOW_TO_GET_A_BROKER};

/// The same broker URI with another password / vhost / port.
pub fn broker_with(password: Option<&str>, vhost: Option<&str>, port: Option<u16>) -> String {
    let mut uri: lapin::uri::AMQPUri = broker_url().parse().expect("valid URI");
    if let Some(p) = password {
        uri.authority.userinfo.password = p.to_string();
    }
    if let Some(v) = vhost {
        uri.vhost = v.to_string();
    }
    if let Some(p) = port {
        uri.authority.port = p;
    }
    format!(
        "amqp://{}:{}@{}:{}/{}",
        uri.authority.userinfo.username,
        uri.authority.userinfo.password,
        uri.authority.host,
        uri.authority.port,
        uri.vhost.replace('/', "%2f")
    )
}

/// The `logcollect` binary with a clean configuration: no inherited `LOGCOLLECT_*` variable,
/// the test broker, the given exchange.
pub fn logcollect(exchange: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_logcollect"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LOGCOLLECT_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.env("LOGCOLLECT_BROKER_URI", broker_url())
        .env("LOGCOLLECT_EXCHANGE", exchange)
        .env("NO_COLOR", "1");
    cmd
}

/// Runs to completion with `input` on stdin, within `limit`.
pub fn run_with_input(mut cmd: Command, input: Vec<u8>, limit: Duration) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start logcollect");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&input);
    });
    let output = wait_output(child, limit);
    let _ = writer.join();
    output
}

/// Waits for the child within `limit`, killing it (and failing) past that.
pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
            panic!("logcollect did not finish within {limit:?}; stderr: {stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Reads `stderr` line by line on a thread of its own, sending each line. Join the thread after
/// the child has exited: it ends at end of file, so every line the child wrote has been sent.
fn read_lines(stderr: std::process::ChildStderr) -> (mpsc::Receiver<String>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (rx, reader)
}

/// A running `logcollect tail`, started and listening (its queue is bound).
pub struct Tail {
    child: Option<Child>,
    stderr_lines: mpsc::Receiver<String>,
    stderr_reader: Option<JoinHandle<()>>,
    stderr_seen: Vec<String>,
}

impl Tail {
    /// Starts `logcollect tail ARGS` on `exchange` and waits for its `listening on` line.
    pub fn start(exchange: &str, args: &[&str]) -> Tail {
        let mut cmd = logcollect(exchange);
        cmd.arg("tail")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start logcollect tail");
        let (rx, reader) = read_lines(child.stderr.take().expect("stderr"));
        let mut tail = Tail {
            child: Some(child),
            stderr_lines: rx,
            stderr_reader: Some(reader),
            stderr_seen: Vec::new(),
        };
        tail.wait_for_stderr("listening on", Duration::from_secs(30));
        tail
    }

    /// Waits for a stderr line containing `text` (seen before or arriving within `limit`) and
    /// returns it; fails the test past `limit`.
    pub fn wait_for_stderr(&mut self, text: &str, limit: Duration) -> String {
        if let Some(line) = self.stderr_seen.iter().find(|l| l.contains(text)) {
            return line.clone();
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr_seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "logcollect tail did not print `{text}` within {limit:?}: {:?}",
                    self.stderr_seen
                ),
            }
        }
    }

    /// Stops it (SIGKILL) and returns status, what it printed, and its stderr.
    pub fn stop(mut self) -> (std::process::ExitStatus, String, String) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
        }
        self.finish(Duration::from_secs(10))
    }

    /// Waits for it to exit (it must, by --count) and returns status, stdout, and stderr.
    pub fn finish(mut self, limit: Duration) -> (std::process::ExitStatus, String, String) {
        let child = self.child.take().expect("child");
        let output = wait_output(child, limit);
        // The child is gone: the reader reaches the end of its stderr and has sent every line.
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        self.stderr_seen.extend(self.stderr_lines.try_iter());
        let stderr = self.stderr_seen.join("\n");
        (
            output.status,
            String::from_utf8(output.stdout).expect("tail prints UTF-8"),
            stderr,
        )
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A test's own broker connection (the test-support crate's [`Session`]): declares and deletes
/// exchanges, binds a queue, publishes raw messages and reads what arrives, one document at a
/// time.
pub struct Broker(Session);

impl Broker {
    pub fn connect() -> Broker {
        Broker(Client::test_broker().session())
    }

    /// Declares `name` (durable, as the shipper does) and deletes it when the test ends.
    pub fn exchange(&mut self, name: &str, kind: ExchangeKind) {
        self.0.exchange(name, kind);
    }

    /// An exchange the test did not declare itself (a command did) is deleted at the end too.
    pub fn forget_exchange_later(&mut self, name: &str) {
        self.0.forget_exchange_later(name);
    }

    /// Declares `exchange` (topic, deleted at the end) and a queue of the test's own bound with
    /// `key`, and starts consuming it.
    pub fn capture(&mut self, exchange: &str, key: &str) {
        self.0.forget_exchange_later(exchange);
        self.0.capture(exchange, key);
    }

    /// Reads until `n` documents arrived or `timeout` passed: (routing key, properties, document)
    /// for each document (an array body is one per element).
    pub fn receive(
        &mut self,
        n: usize,
        timeout: Duration,
    ) -> Vec<(String, BasicProperties, Value)> {
        let messages = self.0.receive(n, timeout);
        messages
            .into_iter()
            .flat_map(|m| {
                let docs = m.documents();
                docs.into_iter()
                    .map(move |doc| (m.routing_key.clone(), m.properties.clone(), doc))
            })
            .collect()
    }

    /// Publishes a raw body with confirms (for array bodies and non-JSON messages).
    pub fn publish(&mut self, exchange: &str, routing_key: &str, body: &[u8]) {
        self.0.publish(exchange, routing_key, body);
    }

    /// Messages ready in `queue` (passive declare), `None` when it does not exist.
    pub fn queue_backlog(&mut self, queue: &str) -> Option<u32> {
        self.0.queue_backlog(queue)
    }

    /// Deletes `queue` (a command declared it) now.
    pub fn delete_queue(&mut self, queue: &str) {
        self.0.delete_queue(queue);
    }
}

/// Parses `--json` output: one document per line.
pub fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// A running `logcollect collect`, consuming (its queue bound) once `start` returns.
pub struct Collect {
    pub child: Option<Child>,
    pub queue: String,
    stderr_lines: mpsc::Receiver<String>,
    stderr_reader: Option<JoinHandle<()>>,
    pub stderr_seen: Vec<String>,
}

impl Collect {
    pub fn start(exchange: &str, queue: &str, dir: &std::path::Path, args: &[&str]) -> Collect {
        Collect::start_with(exchange, queue, dir, args, |_| {})
    }

    /// `start`, with the command adjusted first (limits, environment).
    pub fn start_with(
        exchange: &str,
        queue: &str,
        dir: &std::path::Path,
        args: &[&str],
        prepare: impl FnOnce(&mut Command),
    ) -> Collect {
        let mut cmd = logcollect(exchange);
        prepare(&mut cmd);
        cmd.arg("collect")
            .arg("--dir")
            .arg(dir)
            .args(["--queue", queue])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start logcollect collect");
        let (rx, reader) = read_lines(child.stderr.take().expect("stderr"));
        let mut c = Collect {
            child: Some(child),
            queue: queue.to_string(),
            stderr_lines: rx,
            stderr_reader: Some(reader),
            stderr_seen: Vec::new(),
        };
        c.wait_for_line("consuming queue", Duration::from_secs(60));
        c
    }

    /// Waits for a stderr line containing `text`.
    pub fn wait_for_line(&mut self, text: &str, limit: Duration) {
        if self.stderr_seen.iter().any(|l| l.contains(text)) {
            return;
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    self.stderr_seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!(
                    "logcollect collect did not print `{text}` within {limit:?}: {:?}",
                    self.stderr_seen
                ),
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` (TERM, HUP, KILL) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the exit within `limit`: status and everything printed on stderr.
    pub fn wait(mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!(
                    "logcollect collect did not exit within {limit:?}: {:?}",
                    self.stderr_seen
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The child is gone: the reader reaches the end of its stderr and has sent every line.
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        self.stderr_seen.extend(self.stderr_lines.try_iter());
        (status, self.stderr_seen.join("\n"))
    }

    /// SIGKILL, and waits for it to be gone.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Collect {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until `check` holds, polling, within `limit`; panics with `what` past it.
pub fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The failure of a `check --json` report: its step and code, after checking that it says
/// what, why and how to fix, and that its step is the last one walked, failed.
pub fn check_failure(report: &Value) -> (String, String) {
    let f = &report["failure"];
    assert_eq!(report["ok"], false, "{report}");
    for key in ["headline", "detail", "fix"] {
        assert!(
            f[key].as_str().is_some_and(|s| !s.is_empty()),
            "failure.{key} is empty: {report}"
        );
    }
    let last = report["steps"]
        .as_array()
        .and_then(|steps| steps.last())
        .unwrap_or_else(|| panic!("no step: {report}"));
    assert_eq!(last["status"], "failed", "{report}");
    assert_eq!(last["step"], f["step"], "{report}");
    let text = |k: &str| f[k].as_str().unwrap_or_default().to_string();
    (text("step"), text("code"))
}
