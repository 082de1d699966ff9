//! The README's first command, run as the README says: `scripts/quickstart` ships four events and
//! prints each document as it arrived — the documents of a batch one by one — field by field.

use std::process::Command;

use serde_json::Value;

/// The broker the tests use (as `scripts/test` exports it), handed to the quickstart the way the
/// README says: `LOGCOLLECT_BROKER_URI`.
fn broker_uri() -> String {
    std::env::var("LOGCOLLECT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2F".to_string())
}

fn field<'a>(doc: &'a Value, pointer: &str) -> &'a Value {
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in {doc}"))
}

#[test]
fn the_quickstart_prints_the_four_documents_it_shipped() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut command = Command::new(format!("{root}/scripts/quickstart"));
    // Only the broker comes from outside: a developer's own LOGCOLLECT_* settings would change
    // the documents.
    for (key, _) in std::env::vars() {
        if key.starts_with("LOGCOLLECT_") {
            command.env_remove(key);
        }
    }
    let output = command
        .env("LOGCOLLECT_BROKER_URI", broker_uri())
        .current_dir(root)
        .output()
        .expect("scripts/quickstart runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scripts/quickstart exited {:?} (a broker must answer at LOGCOLLECT_TEST_AMQP_URL or \
         127.0.0.1:5672: `scripts/broker` brings one up)\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status.code()
    );

    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        6,
        "stats, headline and four documents:\n{stdout}"
    );
    assert!(lines[0].starts_with("stats: accepted=4 "), "{}", lines[0]);
    assert!(lines[0].contains(" confirmed=4 "), "{}", lines[0]);
    assert_eq!(
        lines[1],
        "all 4 events confirmed by the broker; as they arrived:"
    );
    let docs: Vec<Value> = lines[2..]
        .iter()
        .map(|line| {
            let json = line
                .strip_prefix("[logstash.quickstart] ")
                .unwrap_or_else(|| panic!("not `[routing key] document`: {line}"));
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
        })
        .collect();

    // What every document carries: the producer, its host and PID, a distinct event id.
    let pid = field(&docs[0], "/process/pid").as_u64().expect("a pid");
    let host = hostname_of_this_machine();
    let mut ids = Vec::new();
    for doc in &docs {
        assert_eq!(field(doc, "/service/name"), "quickstart");
        assert_eq!(field(doc, "/log/logger"), "quickstart");
        assert_eq!(field(doc, "/process/pid").as_u64(), Some(pid));
        assert_eq!(field(doc, "/host/hostname"), host.as_str());
        assert_eq!(field(doc, "/ecs/version"), "8.11.0");
        assert_eq!(field(doc, "/event/dataset"), "quickstart");
        assert!(field(doc, "/@timestamp")
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
        ids.push(field(doc, "/event/id").as_str().expect("an id").to_string());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "four distinct event ids");

    let [started, charging, failed, warned] = &docs[..] else {
        unreachable!("four documents, checked above")
    };
    assert_eq!(field(started, "/message"), "quickstart started");
    assert_eq!(field(started, "/log/level"), "INFO");
    assert_eq!(field(started, "/fields/version"), env!("CARGO_PKG_VERSION"));

    assert_eq!(field(charging, "/message"), "charging card");
    assert_eq!(field(charging, "/log/level"), "INFO");
    assert_eq!(field(charging, "/fields/order_id"), 1042);
    assert_eq!(field(charging, "/fields/customer"), "c-77");
    assert_eq!(field(charging, "/fields/amount"), 99.5);
    assert_eq!(field(charging, "/fields/currency"), "EUR");
    assert_eq!(field(charging, "/spans"), &serde_json::json!(["checkout"]));
    let trace = field(charging, "/trace/id").as_str().expect("a trace id");
    assert!(trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()));

    assert_eq!(field(failed, "/message"), "payment failed");
    assert_eq!(field(failed, "/log/level"), "ERROR");
    assert_eq!(field(failed, "/trace/id"), trace, "one trace for the span");
    assert_eq!(field(failed, "/fields/attempt"), 1);
    assert_eq!(field(failed, "/fields/order_id"), 1042);
    assert_eq!(field(failed, "/error/type"), "PaymentError");
    assert_eq!(field(failed, "/error/message"), "card could not be charged");
    assert_eq!(
        field(failed, "/error/stack_trace"),
        "card could not be charged\nCaused by: payment gateway timed out"
    );

    assert_eq!(
        field(warned, "/message"),
        "records from the `log` crate arrive too"
    );
    assert_eq!(field(warned, "/log/level"), "WARN");
    assert!(warned.get("fields").is_none(), "{warned}");
}

fn hostname_of_this_machine() -> String {
    let out = Command::new("hostname").output().expect("hostname runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
