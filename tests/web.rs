//! The `web` and `worker` examples against the real broker, driven by a real HTTP client (plain
//! HTTP/1.1 over a TCP socket): documents checked field by field, an incoming `traceparent`
//! kept, a missing or malformed one replaced by a new trace returned in the response, 100
//! concurrent requests that never mix ids, and a job that the worker logs with the trace id of
//! the request that queued it.
//!
//! Needs the `http` feature: `cargo test --features http --test web`.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Capture;
use serde_json::{json, Value};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const USER_AGENT: &str = "logcollect-test/1.0";

/// A running example; stopped with SIGTERM (then SIGKILL) on drop.
struct Running {
    child: Child,
    /// What followed the readiness prefix on its first matching stdout line.
    ready: String,
}

impl Running {
    /// Starts an example with a clean `LOGCOLLECT_*` environment plus `env`, and waits for a
    /// stdout line starting with `ready_prefix`.
    fn start(
        name: &str,
        features: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
        ready_prefix: &str,
    ) -> Running {
        let binary = common::example_binary(name, features);
        let mut command = Command::new(binary);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("LOGCOLLECT_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        command
            .args(args)
            .env("LOGCOLLECT_BROKER_URI", common::broker_url())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let prefix = ready_prefix.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix(&prefix) {
                    let _ = tx.send(rest.to_string());
                }
            }
        });
        let ready = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(rest) => rest,
            Err(_) => {
                let _ = child.kill();
                panic!("{name} never printed `{ready_prefix}…`");
            }
        };
        Running { child, ready }
    }

    /// Asks it to stop (SIGTERM: it delivers what is queued) and waits.
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The web example on a free port, publishing to `exchange` as application `app`, queueing its
/// jobs in `jobs_queue`.
fn web(exchange: &str, app: &str, jobs_queue: &str) -> (Running, SocketAddr) {
    web_with(exchange, app, jobs_queue, &[])
}

/// [`web`] with more environment variables.
fn web_with(
    exchange: &str,
    app: &str,
    jobs_queue: &str,
    extra_env: &[(&str, &str)],
) -> (Running, SocketAddr) {
    let mut env = vec![
        ("LOGCOLLECT_EXCHANGE", exchange),
        ("LOGCOLLECT_IDENTITY__APPLICATION", app),
        ("LOGCOLLECT_SERVICE_ENVIRONMENT", "test"),
    ];
    env.extend_from_slice(extra_env);
    let running = Running::start(
        "web",
        &["http"],
        &["--listen", "127.0.0.1:0", "--jobs-queue", jobs_queue],
        &env,
        "listening on http://",
    );
    let addr = running.ready.trim().parse().expect("listening address");
    (running, addr)
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
    }
}

/// One HTTP/1.1 request on a fresh connection.
fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\nUser-Agent: {USER_AGENT}\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Reads documents until `done` holds for those kept by `keep`, or `timeout` passes.
fn collect(
    capture: &mut Capture,
    keep: impl Fn(&Value) -> bool,
    done: impl Fn(&[Value]) -> bool,
    timeout: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut docs = Vec::new();
    while !done(&docs) && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let messages = capture.receive(1, left.min(Duration::from_secs(1)));
        docs.extend(common::documents(&messages).into_iter().filter(&keep));
    }
    docs
}

fn str_at<'a>(doc: &'a Value, pointer: &str) -> &'a str {
    doc.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} missing in {doc}"))
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `00-<trace>-<span>-<flags>` → (trace, span).
fn split_traceparent(tp: &str) -> (&str, &str) {
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00", "{tp}");
    assert!(is_hex(parts[1], 32) && is_hex(parts[2], 16), "{tp}");
    (parts[1], parts[2])
}

fn by_logger<'a>(docs: &'a [Value], logger: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| d.pointer("/log/logger").and_then(Value::as_str) == Some(logger))
        .collect()
}

fn by_message<'a>(docs: &'a [Value], message: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["message"] == message)
        .unwrap_or_else(|| panic!("no document with message {message:?} in {docs:#?}"))
}

/// The done-when check: through the default `logstash` exchange (filtered by our own
/// application), a request with a `traceparent` gives an access event and handler events with
/// its trace id; every field checked.
#[test]
fn incoming_traceparent_is_kept_by_the_access_and_handler_events() {
    let app = common::unique("web-test");
    let mut capture = Capture::bind("logstash", "logstash.#");
    let (mut web, addr) = web("logstash", &app, &common::unique("logcollect-test-jobs"));
    let started = std::time::SystemTime::now();
    let response = http(addr, "GET", "/hello", &[("traceparent", TRACEPARENT)]);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, "hello\n");
    let request_id = response.header("x-request-id").to_string();
    assert!(uuid::Uuid::parse_str(&request_id).is_ok(), "{request_id}");
    let (trace, server_span) = split_traceparent(response.header("traceparent"));
    assert_eq!(trace, TRACE_ID, "the incoming trace id is kept");
    assert_ne!(
        server_span, "00f067aa0ba902b7",
        "the server's own span is the parent now"
    );

    let docs = collect(
        &mut capture,
        |d| d["labels"]["application"] == app.as_str(),
        |docs| docs.len() >= 3,
        Duration::from_secs(30),
    );
    web.stop();
    assert_eq!(
        docs.len(),
        3,
        "access event + two handler events: {docs:#?}"
    );

    let access = by_logger(&docs, "logcollect::http::access");
    assert_eq!(access.len(), 1, "{docs:#?}");
    let access = access[0];
    assert_eq!(access["message"], "GET /hello 200");
    assert_eq!(access["log"]["level"], "INFO");
    assert_eq!(access["http"]["request"]["method"], "GET");
    assert_eq!(access["http"]["request"]["id"], request_id.as_str());
    assert_eq!(access["http"]["response"]["status_code"], 200);
    assert_eq!(access["http"]["response"]["body"]["bytes"], 6);
    assert_eq!(access["http"]["request"]["body"]["bytes"], 0);
    assert_eq!(access["http"]["version"], "1.1");
    assert_eq!(access["http"]["route"], "/hello");
    assert_eq!(access["url"], json!({"path": "/hello"}));
    assert_eq!(access["client"], json!({"ip": "127.0.0.1"}));
    assert_eq!(access["user_agent"], json!({"original": USER_AGENT}));
    let duration = access["event"]["duration"]
        .as_i64()
        .expect("event.duration");
    let elapsed = started.elapsed().expect("clock").as_nanos() as i64;
    assert!(
        duration > 0 && duration < elapsed,
        "{duration} ns vs {elapsed}"
    );
    assert_eq!(access["trace"]["id"], TRACE_ID);
    assert_eq!(access["span"]["id"], server_span, "the request span");
    assert_eq!(
        access["transaction"]["id"], server_span,
        "the request is the transaction"
    );
    assert_eq!(access["spans"], json!(["http.request"]));
    assert_eq!(access["service"]["name"], app.as_str());
    assert_eq!(access["service"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(access["service"]["environment"], "test");
    assert_eq!(access["event"]["dataset"], app.as_str());
    assert!(
        access.get("fields").is_none(),
        "nothing left over: {access}"
    );
    assert!(access.get("error").is_none());

    for message in [
        "saying hello",
        "hello from a task spawned with the request span",
    ] {
        let handler = by_message(&docs, message);
        assert_eq!(handler["log"]["level"], "INFO");
        assert_eq!(handler["log"]["logger"], "web");
        assert_eq!(handler["trace"]["id"], TRACE_ID, "{message}");
        assert_eq!(handler["span"]["id"], server_span);
        assert_eq!(handler["transaction"]["id"], server_span);
        assert_eq!(handler["http"]["request"]["id"], request_id.as_str());
        assert_eq!(handler["http"]["request"]["method"], "GET");
        assert_eq!(handler["http"]["route"], "/hello");
        assert_eq!(handler["url"]["path"], "/hello");
        assert!(
            handler["http"]["response"].is_null(),
            "only the access event has a status"
        );
    }
    assert_eq!(
        by_message(&docs, "saying hello")["fields"],
        json!({"greeting": "hello"})
    );
}

/// No `traceparent`, or a malformed one: a new trace, returned in the response and carried by
/// the documents; the bad header is never an error. An incoming `x-request-id` is kept.
#[test]
fn missing_or_malformed_traceparent_starts_a_new_trace() {
    let mut capture = Capture::fresh();
    let (mut web, addr) = web(
        &capture.exchange,
        &common::unique("web-test"),
        &common::unique("logcollect-test-jobs"),
    );
    let malformed = [
        None,
        Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"),
        Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
        Some("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        Some("garbage"),
    ];
    let mut expected = Vec::new();
    for (i, header) in malformed.iter().enumerate() {
        let request_id = format!("req-{i}-{}", uuid::Uuid::new_v4().simple());
        let mut headers = vec![("x-request-id", request_id.as_str())];
        if let Some(h) = header {
            headers.push(("traceparent", h));
        }
        let response = http(addr, "GET", "/hello", &headers);
        assert_eq!(response.status, 200, "{header:?}: {response:?}");
        assert_eq!(response.header("x-request-id"), request_id, "kept");
        let (trace, _) = split_traceparent(response.header("traceparent"));
        assert_ne!(trace, TRACE_ID, "{header:?}");
        expected.push((request_id, trace.to_string()));
    }
    let traces: HashSet<&String> = expected.iter().map(|(_, t)| t).collect();
    assert_eq!(traces.len(), expected.len(), "a new trace each time");
    let docs = collect(
        &mut capture,
        |_| true,
        |docs| docs.len() >= 3 * expected.len(),
        Duration::from_secs(30),
    );
    web.stop();
    assert_eq!(docs.len(), 3 * expected.len(), "{docs:#?}");
    for (request_id, trace) in &expected {
        let mine: Vec<&Value> = docs
            .iter()
            .filter(|d| d["http"]["request"]["id"] == request_id.as_str())
            .collect();
        assert_eq!(mine.len(), 3, "{request_id}");
        for doc in mine {
            assert_eq!(doc["trace"]["id"], trace.as_str(), "{doc}");
        }
    }
}

/// A handler error is an ERROR event with the `source()` chain and a 500 access event at ERROR;
/// a handler that panics gives a 500, an ERROR access event and the panic hook's event, all in
/// the request's trace.
#[test]
fn errors_and_panics_are_error_events_in_the_request_trace() {
    let mut capture = Capture::fresh();
    // As in a pod whose spec passes the downward-API variables.
    let (mut web, addr) = web_with(
        &capture.exchange,
        &common::unique("web-test"),
        &common::unique("logcollect-test-jobs"),
        &[
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("POD_NAME", "web-7d4b9c-x2x7p"),
            ("POD_NAMESPACE", "shop"),
            ("NODE_NAME", "node-3"),
        ],
    );
    let fail = http(addr, "GET", "/fail", &[("traceparent", TRACEPARENT)]);
    assert_eq!(fail.status, 500);
    let panic = http(addr, "GET", "/panic", &[]);
    assert_eq!(panic.status, 500);
    let (panic_trace, panic_span) = split_traceparent(panic.header("traceparent"));
    let (panic_trace, panic_span) = (panic_trace.to_string(), panic_span.to_string());
    // Still serving after the panic.
    assert_eq!(http(addr, "GET", "/hello", &[]).status, 200);

    let docs = collect(
        &mut capture,
        |_| true,
        |docs| docs.len() >= 7,
        Duration::from_secs(30),
    );
    web.stop();

    let fail_id = fail.header("x-request-id");
    let failed: Vec<&Value> = docs
        .iter()
        .filter(|d| d["http"]["request"]["id"] == fail_id)
        .collect();
    assert_eq!(failed.len(), 2, "{docs:#?}");
    let handler = by_message(&docs, "could not complete the checkout");
    assert_eq!(handler["log"]["level"], "ERROR");
    assert_eq!(handler["trace"]["id"], TRACE_ID);
    assert_eq!(
        handler["error"],
        json!({
            "message": "checkout failed",
            "type": "CheckoutError",
            "stack_trace": "checkout failed\nCaused by: inventory service refused the connection",
        })
    );
    let access = by_message(&docs, "GET /fail 500");
    assert_eq!(access["log"]["level"], "ERROR");
    assert_eq!(access["http"]["response"]["status_code"], 500);
    assert_eq!(access["trace"]["id"], TRACE_ID);

    let panic_id = panic.header("x-request-id");
    let panicked: Vec<&Value> = docs
        .iter()
        .filter(|d| d["http"]["request"]["id"] == panic_id)
        .collect();
    assert_eq!(
        panicked.len(),
        2,
        "the hook's event and the access event: {docs:#?}"
    );
    for doc in &panicked {
        assert_eq!(doc["log"]["level"], "ERROR");
        assert_eq!(doc["trace"]["id"], panic_trace.as_str());
        assert_eq!(doc["span"]["id"], panic_span.as_str());
        assert_eq!(doc["error"]["type"], "panic");
        assert_eq!(
            doc["error"]["message"],
            "the demo handler panicked on purpose"
        );
    }
    let access = by_logger(&docs, "logcollect::http::access")
        .into_iter()
        .find(|d| d["http"]["request"]["id"] == panic_id)
        .expect("the panic's access event");
    assert_eq!(access["http"]["response"]["status_code"], 500);
    assert_eq!(access["http"]["route"], "/panic");
    for doc in &docs {
        assert_eq!(
            doc["kubernetes"],
            json!({"pod": {"name": "web-7d4b9c-x2x7p"}, "namespace": "shop", "node": {"name": "node-3"}}),
            "{doc}"
        );
    }
    let hook = by_logger(&docs, "panic")[0];
    assert_eq!(hook["message"], "the demo handler panicked on purpose");
    assert_eq!(hook["log"]["origin"]["file"]["name"], "examples/web.rs");
    assert!(hook["log"]["origin"]["file"]["line"].as_u64().is_some());
    assert!(!str_at(hook, "/error/stack_trace").is_empty());
}

/// 100 requests at once, each with its own request id and trace: every document carries the
/// ids of its own request, never another's.
#[test]
fn hundred_concurrent_requests_never_mix_ids() {
    const N: usize = 100;
    let mut capture = Capture::fresh();
    let (mut web, addr) = web(
        &capture.exchange,
        &common::unique("web-test"),
        &common::unique("logcollect-test-jobs"),
    );
    let requests: Vec<(String, String)> = (0..N)
        .map(|i| {
            let trace = format!("{:032x}", uuid::Uuid::new_v4().as_u128() | 1);
            (format!("concurrent-{i}"), trace)
        })
        .collect();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(N));
    let threads: Vec<_> = requests
        .iter()
        .cloned()
        .map(|(request_id, trace)| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
                barrier.wait();
                let response = http(
                    addr,
                    "GET",
                    "/hello",
                    &[
                        ("x-request-id", request_id.as_str()),
                        ("traceparent", traceparent.as_str()),
                    ],
                );
                assert_eq!(response.status, 200);
                assert_eq!(response.header("x-request-id"), request_id);
                assert_eq!(split_traceparent(response.header("traceparent")).0, trace);
            })
        })
        .collect();
    for t in threads {
        t.join().expect("request thread");
    }
    let docs = collect(
        &mut capture,
        |_| true,
        |docs| docs.len() >= 3 * N,
        Duration::from_secs(60),
    );
    web.stop();
    assert_eq!(docs.len(), 3 * N);
    let expected: HashMap<&str, &str> = requests
        .iter()
        .map(|(r, t)| (r.as_str(), t.as_str()))
        .collect();
    let mut per_request: HashMap<&str, usize> = HashMap::new();
    let mut spans: HashMap<&str, HashSet<&str>> = HashMap::new();
    for doc in &docs {
        let request_id = str_at(doc, "/http/request/id");
        let trace = str_at(doc, "/trace/id");
        assert_eq!(Some(&trace), expected.get(request_id), "{doc}");
        *per_request.entry(request_id).or_default() += 1;
        spans
            .entry(request_id)
            .or_default()
            .insert(str_at(doc, "/transaction/id"));
    }
    assert_eq!(per_request.len(), N);
    assert!(per_request.values().all(|&n| n == 3), "{per_request:?}");
    assert!(
        spans.values().all(|s| s.len() == 1),
        "one transaction per request"
    );
    let transactions: HashSet<&&str> = spans.values().flatten().collect();
    assert_eq!(transactions.len(), N, "and a different one for each");
}

/// POST /jobs queues a job with the request's trace context; the worker example logs the job
/// inside a span that continues the request's trace.
#[test]
fn a_job_queued_by_a_request_is_logged_by_the_worker_with_its_trace_id() {
    let mut capture = Capture::fresh();
    let jobs_queue = common::unique("logcollect-test-jobs");
    let (mut web, addr) = web(&capture.exchange, &common::unique("web-test"), &jobs_queue);
    let response = http(addr, "POST", "/jobs", &[("traceparent", TRACEPARENT)]);
    assert_eq!(response.status, 202, "{response:?}");
    let job_id = response.body.trim().to_string();
    let worker_app = common::unique("worker-test");
    let mut worker = Running::start(
        "worker",
        &[],
        &["--queue", &jobs_queue, "--max-jobs", "1"],
        &[
            ("LOGCOLLECT_EXCHANGE", &capture.exchange),
            ("LOGCOLLECT_IDENTITY__APPLICATION", &worker_app),
        ],
        "consuming ",
    );
    let docs = collect(
        &mut capture,
        |_| true,
        |docs| {
            docs.iter()
                .filter(|d| d["labels"]["application"] == worker_app.as_str())
                .count()
                >= 2
                && docs.len() >= 4
        },
        Duration::from_secs(60),
    );
    web.stop();
    worker.stop();
    delete_queue(&jobs_queue);

    let queued = by_message(&docs, "job queued");
    assert_eq!(queued["trace"]["id"], TRACE_ID);
    assert_eq!(queued["fields"]["job_id"], job_id.as_str());
    let web_transaction = str_at(queued, "/transaction/id");
    for message in ["job started", "job done"] {
        let doc = by_message(&docs, message);
        assert_eq!(doc["labels"]["application"], worker_app.as_str());
        assert_eq!(
            doc["trace"]["id"], TRACE_ID,
            "{message}: the request's trace"
        );
        assert_eq!(doc["spans"], json!(["job"]));
        assert_eq!(doc["fields"]["job.queue"], jobs_queue.as_str());
        assert_eq!(doc["fields"]["job.message_id"], job_id.as_str());
        assert_eq!(doc["fields"]["job_id"], job_id.as_str());
        let transaction = str_at(doc, "/transaction/id");
        assert_ne!(
            transaction, web_transaction,
            "the job is a transaction of its own"
        );
        assert_eq!(str_at(doc, "/span/id"), transaction);
    }
}

fn delete_queue(queue: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        if let Ok(connection) =
            lapin::Connection::connect(&common::broker_url(), Default::default()).await
        {
            if let Ok(channel) = connection.create_channel().await {
                let _ = channel
                    .queue_delete(queue.into(), lapin::options::QueueDeleteOptions::default())
                    .await;
            }
            let _ = connection.close(200, "done".into()).await;
        }
    });
}
