//! The panic hook `init` installs: a child process that panics ships its panic event before it
//! dies, with the panic's message, location, thread, backtrace and the trace of the span it
//! panicked in; the previous hook still runs (the default one prints to stderr). Real broker.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Capture;
use serde_json::json;

/// Set in the child's environment: the exchange it ships to.
const CHILD_EXCHANGE: &str = "LOGCOLLECT_TEST_PANIC_CHILD_EXCHANGE";

/// The child's part, run only by the test below (ignored in a normal run, so it never passes
/// without doing anything). Installs everything with `init`, forgets the guard (so nothing but
/// the hook flushes), and panics in a named thread inside a span; then exits at once without
/// unwinding `main`.
#[test]
#[ignore = "the child process of a_child_that_panics_ships_its_panic_event_before_it_dies"]
fn child_process_entry() {
    let exchange = std::env::var(CHILD_EXCHANGE).unwrap_or_else(|_| {
        panic!("{CHILD_EXCHANGE} unset: this is the child of a_child_that_panics_ships_its_panic_event_before_it_dies, run by it")
    });
    let guard = logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(exchange)
        .identity("application", "panicking-child")
        .init()
        .expect("init");
    std::mem::forget(guard);
    let worker = std::thread::Builder::new()
        .name("doomed-worker".into())
        .spawn(|| {
            let span = tracing::info_span!("doomed", job = 7);
            let _entered = span.enter();
            let context = logcollect::trace::current().expect("a trace context");
            // libtest prints the test's name on the same line: the id follows "trace ".
            println!("trace {}", context.trace_id);
            let line = line!() + 1;
            panic!("the child gives up at line {line}");
        })
        .expect("spawn");
    let joined = worker.join();
    // No flush, no guard, no unwinding of main: only the hook has shipped anything.
    std::process::exit(if joined.is_err() { 42 } else { 1 });
}

#[test]
fn a_child_that_panics_ships_its_panic_event_before_it_dies() {
    let mut capture = Capture::fresh();
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "child_process_entry",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_EXCHANGE, &capture.exchange)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(42),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("panicked at") && stderr.contains("the child gives up"),
        "the previous (default) hook ran: {stderr}"
    );
    let trace = stdout
        .lines()
        .find_map(|l| l.split_once("trace ").map(|(_, id)| id.trim()))
        .expect("the child printed its trace id")
        .to_string();

    let messages = capture.receive(1, Duration::from_secs(20));
    let docs = common::documents(&messages);
    assert_eq!(docs.len(), 1, "{docs:#?}");
    let doc = &docs[0];
    let message = doc["message"].as_str().expect("message");
    assert!(
        message.starts_with("the child gives up at line "),
        "{message}"
    );
    let line: u64 = message
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("line in the message");
    assert_eq!(doc["log"]["level"], "ERROR");
    assert_eq!(doc["log"]["logger"], "panic");
    assert_eq!(
        doc["log"]["origin"],
        json!({"file": {"name": "tests/panic.rs", "line": line}})
    );
    assert_eq!(doc["process"]["thread"]["name"], "doomed-worker");
    assert_eq!(doc["error"]["type"], "panic");
    assert_eq!(doc["error"]["message"], message);
    let backtrace = doc["error"]["stack_trace"].as_str().expect("stack_trace");
    assert!(
        backtrace.contains("panic"),
        "a backtrace even with RUST_BACKTRACE=0: {backtrace}"
    );
    assert_eq!(doc["trace"]["id"], trace.as_str());
    assert_eq!(doc["spans"], json!(["doomed"]));
    assert_eq!(doc["fields"]["job"], 7);
    assert_eq!(doc["labels"]["application"], "panicking-child");
}
