//! The user examples run as the README shows them and ship what they log: `minimal`,
//! `compose` and `config_file`, each a process of its own against the real RabbitMQ.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{documents, Capture};

/// Runs the example with `vars`; its stdout. Fails the test unless it exits with 0.
fn run(name: &str, vars: &[(&str, &str)], args: &[&str]) -> String {
    let mut command = Command::new(common::example_binary(name, &[]));
    // Only the variables given: the test's environment may hold LOGCOLLECT_* of its own.
    for (key, _) in std::env::vars() {
        if key.starts_with("LOGCOLLECT_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    let out = command
        .envs(vars.iter().copied())
        .args(args)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The messages of what arrived, sorted (targets differ, so messages may interleave).
fn received(capture: &mut Capture, n: usize) -> Vec<String> {
    let docs = documents(&capture.receive(n, Duration::from_secs(20)));
    let extra = documents(&capture.receive_until_quiet(Duration::from_millis(500)));
    assert!(extra.is_empty(), "unexpected: {extra:?}");
    let mut messages: Vec<String> = docs
        .iter()
        .map(|d| d["message"].as_str().expect("message").to_string())
        .collect();
    messages.sort();
    messages
}

#[test]
fn minimal() {
    let mut capture = Capture::fresh();
    let url = common::broker_url();
    run(
        "minimal",
        &[
            ("LOGCOLLECT_BROKER_URI", &url),
            ("LOGCOLLECT_EXCHANGE", &capture.exchange),
        ],
        &[],
    );
    assert_eq!(
        received(&mut capture, 2),
        ["logged in", "records of the log crate are shipped too"]
    );
    let lines = include_str!("../examples/minimal.rs").lines().count();
    assert!(lines <= 15, "examples/minimal.rs has {lines} lines");
}

#[test]
fn compose() {
    let mut capture = Capture::fresh();
    let url = common::broker_url();
    let stdout = run(
        "compose",
        &[
            ("LOGCOLLECT_BROKER_URI", &url),
            ("LOGCOLLECT_EXCHANGE", &capture.exchange),
            ("RUST_LOG", "debug"),
        ],
        &[],
    );
    assert_eq!(
        received(&mut capture, 3),
        [
            "a record of the log crate, shipped",
            "shipped and printed",
            "shipped when RUST_LOG lets debug through, not printed"
        ]
    );
    // The console layer's own filter: warnings only.
    assert!(stdout.contains("shipped and printed"), "{stdout}");
    assert!(!stdout.contains("not printed"), "{stdout}");
}

#[test]
fn config_file() {
    let mut capture = Capture::fresh();
    let sample = include_str!("../examples/config_file.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.toml");
    let text = sample
        .replace(
            "broker_uri = \"amqp://guest:guest@127.0.0.1:5672/%2f\"",
            &format!("broker_uri = \"{}\"", common::broker_url()),
        )
        .replace(
            "exchange = \"logstash\"",
            &format!("exchange = \"{}\"", capture.exchange),
        );
    assert_ne!(text, sample);
    std::fs::write(&path, text).expect("write");
    let stdout = run("config_file", &[], &[path.to_str().expect("utf-8 path")]);
    let docs = documents(&capture.receive(2, Duration::from_secs(20)));
    assert_eq!(docs.len(), 2, "{docs:?}");
    // The file's identity entries and console_level are in force.
    for d in &docs {
        assert_eq!(d["labels"]["project"], "billing", "{d}");
        assert_eq!(d["service"]["name"], "invoicer", "{d}");
    }
    assert!(stdout.contains("printed on the console too"), "{stdout}");
    assert!(!stdout.contains("configured from a file"), "{stdout}");
}
