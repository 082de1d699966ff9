//! `logcollect send` against the real broker: a pipe of 10,000 lines arrives line for line and
//! in order (an empty line, a 2 MB line, invalid UTF-8 included); one message with its level,
//! logger, fields, PID and service; an unreachable broker is a non-zero exit.

mod common;

use std::time::Duration;

use common::{logcollect, run_with_input, unique, Broker};

const LIMIT: Duration = Duration::from_secs(180);

#[test]
fn ten_thousand_piped_lines_arrive_line_for_line_in_order() {
    const N: usize = 10_000;
    const BIG: usize = 2 * 1024 * 1024;
    let exchange = unique("lc-cli-send-pipe");
    let mut broker = Broker::connect();
    broker.capture(&exchange, "#");

    let mut input: Vec<u8> = Vec::new();
    let mut expected: Vec<String> = Vec::new();
    for i in 0..N {
        match i {
            100 => {
                input.extend_from_slice(b"\n");
                expected.push(String::new());
            }
            5000 => {
                input.extend(std::iter::repeat_n(b'x', BIG));
                input.push(b'\n');
                // max_field_bytes (1 MiB by default) cuts it as the library cuts any string.
                expected.push(format!(
                    "{}…[truncated {} bytes]",
                    "x".repeat(1 << 20),
                    BIG - (1 << 20)
                ));
            }
            7000 => {
                input.extend_from_slice(b"bad \xff\xfe utf8 \xc3\n");
                expected.push("bad \u{fffd}\u{fffd} utf8 \u{fffd}".to_string());
            }
            8000 => {
                input.extend_from_slice(b"crlf line\r\n");
                expected.push("crlf line".to_string());
            }
            _ if i == N - 1 => {
                // The last line has no line ending: it is shipped all the same.
                input.extend_from_slice(format!("line {i}").as_bytes());
                expected.push(format!("line {i}"));
            }
            _ => {
                input.extend_from_slice(format!("line {i}\n").as_bytes());
                expected.push(format!("line {i}"));
            }
        }
    }

    let mut cmd = logcollect(&exchange);
    cmd.args(["send", "--logger", "cron.backup", "--field", "job=backup"]);
    let out = run_with_input(cmd, input, LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    let got = broker.receive(N, Duration::from_secs(60));
    assert_eq!(got.len(), N, "every line arrives");
    let pid = got[0].2["process"]["pid"].as_u64().expect("pid");
    assert_ne!(
        pid,
        u64::from(std::process::id()),
        "send's own PID by default"
    );
    // Documents per message (a message's documents share its message id).
    let mut in_message = std::collections::HashMap::new();
    for (_, props, _) in &got {
        *in_message
            .entry(props.message_id().as_ref().map(|s| s.to_string()))
            .or_insert(0usize) += 1;
    }
    for (i, (key, props, doc)) in got.iter().enumerate() {
        let message = doc["message"].as_str().expect("message");
        assert!(
            message == expected[i],
            "line {i}: expected {:?}…, got {:?}…",
            expected[i].chars().take(40).collect::<String>(),
            message.chars().take(40).collect::<String>()
        );
        assert_eq!(key, "logstash.cron.backup");
        assert_eq!(doc["log"]["logger"], "cron.backup");
        assert_eq!(doc["log"]["level"], "INFO");
        assert_eq!(doc["fields"]["job"], "backup");
        assert_eq!(doc["process"]["pid"], pid);
        assert_eq!(doc["service"]["name"], "logcollect");
        // A message of one event is identified by its event; a batch has an id of its own.
        let message_id = props.message_id().as_ref().map(|s| s.to_string());
        let event_id = doc["event"]["id"].as_str().map(str::to_string);
        if in_message[&message_id] == 1 {
            assert_eq!(message_id, event_id, "line {i}");
        } else {
            assert_ne!(message_id, event_id, "line {i}");
        }
    }
    let event_ids: std::collections::HashSet<_> = got
        .iter()
        .filter_map(|(_, _, doc)| doc["event"]["id"].as_str())
        .collect();
    assert_eq!(event_ids.len(), N, "one event.id per line");
}

#[test]
fn one_message_carries_its_level_logger_fields_pid_and_service() {
    let exchange = unique("lc-cli-send-one");
    let mut broker = Broker::connect();
    broker.capture(&exchange, "#");

    let mut cmd = logcollect(&exchange);
    cmd.args([
        "send",
        "--level",
        "warn",
        "--logger",
        "billing::jobs",
        "--field",
        "disk=/var",
        "--field",
        "pct=91",
        "--pid",
        "4242",
        "--service",
        "nightly",
        "disk 91%",
        "full",
    ]);
    let out = run_with_input(cmd, Vec::new(), LIMIT);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = broker.receive(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1);
    let (key, props, doc) = &got[0];
    assert_eq!(key, "logstash.billing.jobs");
    assert_eq!(doc["message"], "disk 91% full");
    assert_eq!(doc["log"]["level"], "WARN");
    assert_eq!(doc["log"]["logger"], "billing::jobs");
    assert_eq!(
        doc["fields"],
        serde_json::json!({"disk": "/var", "pct": "91"})
    );
    assert_eq!(doc["process"]["pid"], 4242);
    assert_eq!(doc["service"]["name"], "nightly");
    assert_eq!(
        props.app_id().as_ref().map(|s| s.to_string()).as_deref(),
        Some("nightly")
    );

    // classic, with the parent's PID (this test process) and the identity from the config.
    let mut cmd = logcollect(&exchange);
    cmd.env("LOGCOLLECT_FORMAT", "classic")
        .env("LOGCOLLECT_IDENTITY__PROJECT", "billing")
        .args([
            "send", "--level", "error", "--pid", "parent", "--field", "host=h1",
        ])
        .arg("exit code 3");
    let out = run_with_input(cmd, Vec::new(), LIMIT);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = broker.receive(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1);
    let doc = &got[0].2;
    assert_eq!(doc["message"], "exit code 3");
    assert_eq!(doc["levelname"], "ERROR");
    assert_eq!(doc["logger"], "send");
    assert_eq!(doc["process"], std::process::id());
    assert_eq!(doc["project"], "billing");
    assert_eq!(doc["field_host"], "h1", "the collision rule applies");
}

#[test]
fn an_unreachable_broker_leaves_events_undelivered_and_exits_1() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let mut cmd = logcollect("logstash");
    cmd.env(
        "LOGCOLLECT_BROKER_URI",
        format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
    )
    .env("LOGCOLLECT_SHUTDOWN_TIMEOUT_MS", "500")
    .arg("send");
    let out = run_with_input(cmd, b"a\nb\nc\n".to_vec(), Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("3 of 3 events undelivered"), "{stderr}");
    assert!(stderr.contains("logcollect check"), "{stderr}");
}

#[test]
fn bad_arguments_and_configuration_exit_2() {
    let mut cmd = logcollect("logstash");
    cmd.args(["send", "--level", "loud", "x"]);
    let out = run_with_input(cmd, Vec::new(), LIMIT);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a level"));

    let mut cmd = logcollect("logstash");
    cmd.env("LOGCOLLECT_QUEUE_CAPACITY", "lots")
        .args(["send", "x"]);
    let out = run_with_input(cmd, Vec::new(), LIMIT);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LOGCOLLECT_QUEUE_CAPACITY"));
}

#[test]
fn a_small_queue_slows_the_pipe_down_instead_of_dropping_lines() {
    const N: usize = 3000;
    let exchange = unique("lc-cli-send-pace");
    let mut broker = Broker::connect();
    broker.capture(&exchange, "#");
    let input: String = (0..N).map(|i| format!("{i}\n")).collect();
    let mut cmd = logcollect(&exchange);
    cmd.env("LOGCOLLECT_QUEUE_CAPACITY", "8").arg("send");
    let out = run_with_input(cmd, input.into_bytes(), LIMIT);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = broker.receive(N, Duration::from_secs(60));
    let messages: Vec<String> = got
        .iter()
        .map(|(_, _, d)| d["message"].as_str().expect("message").to_string())
        .collect();
    assert_eq!(messages, (0..N).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[test]
fn a_broker_that_takes_nothing_does_not_hold_the_pipe_forever() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let input: String = (0..20).map(|i| format!("{i}\n")).collect();
    let mut cmd = logcollect("logstash");
    cmd.env(
        "LOGCOLLECT_BROKER_URI",
        format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
    )
    .env("LOGCOLLECT_QUEUE_CAPACITY", "4")
    .env("LOGCOLLECT_SHUTDOWN_TIMEOUT_MS", "300")
    .args(["send", "--queue-wait-ms", "300"]);
    let started = std::time::Instant::now();
    let out = run_with_input(cmd, input.into_bytes(), Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(15), "{stderr}");
    assert!(stderr.contains("took no event for 0.3 s"), "{stderr}");
    // 4 fit in the queue (never confirmed), the other 16 are dropped by drop_newest.
    assert!(
        stderr.contains("20 of 20 events undelivered (4 not confirmed"),
        "{stderr}"
    );
    assert!(stderr.contains("16 dropped"), "{stderr}");
}
