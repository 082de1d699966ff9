//! The load generator against the real broker, through the default `logstash` exchange: it
//! exits 0 only when every event is confirmed, and a queue bound to the exchange then holds
//! exactly that many valid documents, one per `seq_no`, in either format.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{distinct_ints, documents, Capture};

fn run_loadgen(format: &str, events: u64, pointer: &str) {
    let mut capture = Capture::bind(
        logcollect::defaults::EXCHANGE,
        logcollect::defaults::BINDING_KEY,
    );
    let output = Command::new(common::loadgen_binary())
        .args(["--events", &events.to_string(), "--threads", "4"])
        .env("LOGCOLLECT_BROKER_URI", common::broker_url())
        .env("LOGCOLLECT_FORMAT", format)
        .env("LOGCOLLECT_IDENTITY__PROJECT", "loadtest")
        .env("LOGCOLLECT_IDENTITY__APPLICATION", "loadgen")
        .env_remove("LOGCOLLECT_EXCHANGE")
        .env_remove("LOGCOLLECT_ROUTING_KEY")
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        output.status.success(),
        "loadgen failed: {last}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        last.contains(" ok=true ") && last.contains(&format!("confirmed={events} ")),
        "{last}"
    );

    let messages = capture.receive(events as usize, Duration::from_secs(60));
    assert!(
        capture
            .receive_until_quiet(Duration::from_millis(500))
            .is_empty(),
        "more than {events}"
    );
    assert!(
        messages.iter().all(|m| m.routing_key == "logstash.loadgen"),
        "routing keys"
    );
    let docs = documents(&messages);
    assert_eq!(docs.len() as u64, events);
    let (distinct, dups) = distinct_ints(&docs, pointer);
    assert_eq!((distinct.len() as u64, dups), (events, 0));
    assert_eq!(distinct.iter().max().copied(), Some(events as i64 - 1));
}

#[test]
fn loadgen_delivers_every_event_in_both_formats() {
    run_loadgen("ecs", 20_000, "/fields/seq_no");
    run_loadgen("classic", 5_000, "/seq_no");
}
