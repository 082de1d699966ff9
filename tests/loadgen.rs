//! The load generator against the real broker, through the default `logstash` exchange: it
//! exits 0 only when every event is confirmed, and a queue bound to the exchange then holds
//! exactly that many valid documents, one per `seq_no`, in either format.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{distinct_ints, Capture};

/// Where each format puts the seq_no and the application identity.
fn run_loadgen(format: &str, events: u64, seq_pointer: &str, application_pointer: &str) {
    // The exchange is shared with anything else publishing to `logstash` on this broker: only
    // documents of this run's application count.
    let application = common::unique("loadgen");
    let mut capture = Capture::bind(
        logcollect::defaults::EXCHANGE,
        logcollect::defaults::BINDING_KEY,
    );
    let output = Command::new(common::loadgen_binary())
        .args(["--events", &events.to_string(), "--threads", "4"])
        .env("LOGCOLLECT_BROKER_URI", common::broker_url())
        .env("LOGCOLLECT_FORMAT", format)
        .env("LOGCOLLECT_IDENTITY__PROJECT", "loadtest")
        .env("LOGCOLLECT_IDENTITY__APPLICATION", &application)
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

    let ours = |message: &common::Received| {
        message.documents().into_iter().filter(|doc| {
            doc.pointer(application_pointer).and_then(|v| v.as_str()) == Some(application.as_str())
        })
    };
    let mut messages = Vec::new();
    let mut arrived = 0u64;
    while arrived < events {
        let batch = capture.receive((events - arrived) as usize, Duration::from_secs(60));
        assert!(
            !batch.is_empty(),
            "only {arrived} of {events} documents arrived"
        );
        for message in batch {
            let n = ours(&message).count() as u64;
            if n > 0 {
                arrived += n;
                messages.push(message);
            }
        }
    }
    let more: u64 = capture
        .receive_until_quiet(Duration::from_millis(500))
        .iter()
        .map(|m| ours(m).count() as u64)
        .sum();
    assert_eq!(more, 0, "more than {events}");
    assert!(
        messages.iter().all(|m| m.routing_key == "logstash.loadgen"),
        "routing keys"
    );
    let docs: Vec<_> = messages.iter().flat_map(|m| ours(m)).collect();
    assert_eq!(docs.len() as u64, events);
    let (distinct, dups) = distinct_ints(&docs, seq_pointer);
    assert_eq!((distinct.len() as u64, dups), (events, 0));
    assert_eq!(distinct.iter().max().copied(), Some(events as i64 - 1));
}

#[test]
fn loadgen_delivers_every_event_in_both_formats() {
    run_loadgen("ecs", 20_000, "/fields/seq_no", "/labels/application");
    run_loadgen("classic", 5_000, "/seq_no", "/application");
}
