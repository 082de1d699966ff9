//! The subscriber composes: `build()` + your own subscriber + `log` records, the `log` bridge in
//! either order, the reload handle, `enabled = false`, and console and shipper levels set apart.
//! Each scenario installs a global subscriber, so each runs in a process of its own: the test
//! runs this binary again with only that scenario (an ignored test) selected. Real RabbitMQ.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{documents, Capture};
use serde_json::Value;

/// Runs the ignored test `scenario` alone in a new process of this binary; its stdout.
fn in_own_process(scenario: &str) -> String {
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            scenario,
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "scenario {scenario} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

/// The `message` of each document, sorted: messages of different routing keys (targets) may
/// arrive in any order.
fn messages(docs: &[Value]) -> Vec<String> {
    let mut messages: Vec<String> = docs
        .iter()
        .map(|d| d["message"].as_str().expect("message").to_string())
        .collect();
    messages.sort();
    messages
}

/// Receives `n` documents, then checks nothing else comes.
fn receive_exactly(capture: &mut Capture, n: usize) -> Vec<Value> {
    let docs = documents(&capture.receive(n, Duration::from_secs(20)));
    let extra = documents(&capture.receive_until_quiet(Duration::from_millis(500)));
    assert!(extra.is_empty(), "unexpected: {extra:?}");
    docs
}

#[test]
fn build_with_your_own_subscriber_ships_tracing_and_log_records() {
    in_own_process("scenario_composed");
}

#[test]
#[ignore = "run by build_with_your_own_subscriber_ships_tracing_and_log_records, alone"]
fn scenario_composed() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};

    let mut capture = Capture::fresh();
    let (layer, guard) = logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(&capture.exchange)
        .build()
        .expect("build");
    // The README's composition: a global filter, a second layer with a filter of its own,
    // tracing-subscriber's `init()` (its default `tracing-log` feature sets the `log` bridge).
    tracing_subscriber::registry()
        .with(EnvFilter::new("info"))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
        )
        .with(layer)
        .init();
    // Called anyway, as code written for any subscriber would: no error, nothing changed.
    assert_eq!(
        logcollect::capture::init_log_bridge().expect("bridge after init"),
        logcollect::capture::LogBridge::AlreadySet
    );

    tracing::info!(seq_no = 0, "tracing 0");
    log::info!(target: "legacy", "log 1");
    tracing::debug!(seq_no = 2, "below the filter");
    log::debug!("log below the filter");
    tracing::warn!(seq_no = 3, "tracing 3");
    assert!(
        guard.flush(Duration::from_secs(20)).is_complete(),
        "{}",
        guard.stats()
    );

    let docs = receive_exactly(&mut capture, 3);
    assert_eq!(messages(&docs), ["log 1", "tracing 0", "tracing 3"]);
    let log = docs
        .iter()
        .find(|d| d["message"] == "log 1")
        .expect("log 1");
    assert_eq!(log["log"]["logger"], "legacy", "{log}");
    assert_eq!(guard.stats().accepted, 3);
}

#[test]
fn the_log_bridge_called_first_is_refused_instead_of_making_init_panic() {
    in_own_process("scenario_bridge_first");
}

#[test]
#[ignore = "run by the_log_bridge_called_first_is_refused_instead_of_making_init_panic, alone"]
fn scenario_bridge_first() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let mut capture = Capture::fresh();
    let e = logcollect::capture::init_log_bridge().expect_err("no subscriber yet");
    assert!(
        matches!(e, logcollect::Error::LogBridge(_)) && e.to_string().contains("after"),
        "{e}"
    );
    let (layer, guard) = logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(&capture.exchange)
        .build()
        .expect("build");
    // Panics if a `log` logger was set above.
    tracing_subscriber::registry().with(layer).init();
    log::warn!("log after all");
    assert!(
        guard.flush(Duration::from_secs(20)).is_complete(),
        "{}",
        guard.stats()
    );
    assert_eq!(
        messages(&receive_exactly(&mut capture, 1)),
        ["log after all"]
    );
}

#[test]
fn the_level_changes_while_running() {
    in_own_process("scenario_reload");
}

#[test]
#[ignore = "run by the_level_changes_while_running, alone"]
fn scenario_reload() {
    let mut capture = Capture::fresh();
    let guard = logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(&capture.exchange)
        .level("info")
        .init()
        .expect("init");
    let levels = guard.levels().expect("init installs reloadable filters");

    tracing::debug!(seq_no = 0, "debug before");
    log::debug!("log debug before");
    levels.set_level("debug").expect("more verbose");
    tracing::debug!(seq_no = 1, "debug after raising");
    log::debug!("log debug after raising");
    levels.set_level("warn").expect("less verbose");
    tracing::info!(seq_no = 3, "info after lowering");
    log::info!("log info after lowering");
    tracing::warn!(seq_no = 4, "warn after lowering");
    // A bad directive is refused and changes nothing.
    let e = levels.set_level("=[").expect_err("invalid directive");
    assert!(e.to_string().contains("`level`"), "{e}");
    tracing::info!(seq_no = 5, "info after the refused change");
    tracing::error!(seq_no = 6, "error after the refused change");
    assert!(
        guard.flush(Duration::from_secs(20)).is_complete(),
        "{}",
        guard.stats()
    );

    let docs = receive_exactly(&mut capture, 4);
    assert_eq!(
        messages(&docs),
        [
            "debug after raising",
            "error after the refused change",
            "log debug after raising",
            "warn after lowering"
        ]
    );
}

#[test]
fn enabled_false_ships_nothing_and_starts_nothing() {
    in_own_process("scenario_disabled");
}

/// The threads of this process (Linux: a thread is in /proc/self/task from its creation).
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

#[test]
#[ignore = "run by enabled_false_ships_nothing_and_starts_nothing, alone"]
fn scenario_disabled() {
    // A "broker" of our own: any connection attempt would be accepted here.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let config = logcollect::Config::from_vars([
        ("LOGCOLLECT_ENABLED".to_string(), "false".to_string()),
        (
            "LOGCOLLECT_BROKER_URI".to_string(),
            format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        ),
    ])
    .expect("config");
    assert!(!config.enabled);
    let before = threads();
    let guard = logcollect::Builder::from_config(config)
        .init()
        .expect("init while disabled");
    assert_eq!(threads(), before, "no shipper thread");
    tracing::info!(seq_no = 0, "not shipped");
    log::warn!("not shipped either");
    let stats = guard.stats();
    assert_eq!((stats.accepted, stats.published), (0, 0), "{stats}");
    assert!(guard.flush(Duration::from_secs(5)).is_complete());
    assert!(guard.levels().is_some());
    assert!(guard.shutdown(Duration::from_secs(5)).is_complete());
    assert_eq!(threads(), before, "no thread started");
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "no connection was attempted"
    );
}

#[test]
fn console_and_shipper_levels_are_set_apart() {
    let stdout = in_own_process("scenario_console_level");
    let line = |text: &str| stdout.lines().any(|l| l.contains(text));
    assert!(line("warn to both"), "{stdout}");
    assert!(!line("debug shipped only"), "{stdout}");
    assert!(line("debug on the console now"), "{stdout}");
    assert!(!line("info shipped only, console at error"), "{stdout}");
}

#[test]
#[ignore = "run by console_and_shipper_levels_are_set_apart, alone"]
fn scenario_console_level() {
    let mut capture = Capture::fresh();
    let guard = logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(&capture.exchange)
        .level("debug")
        .console(true)
        .console_level("warn")
        .init()
        .expect("init");
    let levels = guard.levels().expect("levels");
    tracing::debug!(seq_no = 0, "debug shipped only");
    tracing::warn!(seq_no = 1, "warn to both");
    levels.set_console_level("debug").expect("console level");
    tracing::debug!(seq_no = 2, "debug on the console now");
    // The console keeps its own level when `level` changes.
    levels.set_console_level("error").expect("console level");
    levels.set_level("info").expect("level");
    tracing::info!(seq_no = 3, "info shipped only, console at error");
    assert!(
        guard.flush(Duration::from_secs(20)).is_complete(),
        "{}",
        guard.stats()
    );
    let docs = receive_exactly(&mut capture, 4);
    assert_eq!(
        messages(&docs),
        [
            "debug on the console now",
            "debug shipped only",
            "info shipped only, console at error",
            "warn to both"
        ]
    );
}
