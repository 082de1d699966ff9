//! `logcollect tail` against the real broker: exact counts in both formats from events logged
//! through the library, the filters, the line format, array bodies.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use common::{json_lines, unique, Broker, Tail};
use logcollect::Format;
use tracing_subscriber::layer::SubscriberExt;

const LIMIT: Duration = Duration::from_secs(90);

/// A shipper logging to `exchange` as `service`@`host`, with `log` run under its layer; waits
/// until the broker confirmed everything.
fn emit(exchange: &str, format: Format, service: &str, host: &str, log: impl FnOnce()) {
    let (layer, guard) = logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(exchange)
        .format(format)
        .service_name(service)
        .hostname(host)
        .identity(
            "project",
            if service == "svc-a" {
                "billing"
            } else {
                "other"
            },
        )
        .configure(|c| c.queue_capacity = 100_000)
        .build()
        .expect("build the shipper");
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, log);
    let flushed = guard.flush(Duration::from_secs(60));
    assert!(
        flushed.is_complete(),
        "undelivered: {flushed:?} {}",
        guard.stats()
    );
    assert_eq!(guard.stats().dropped.total(), 0);
}

/// Like the `loadgen` example: INFO events in a span, with `seq_no`, `worker` and `payload`.
fn loadgen(n: u64) {
    let payload = "x".repeat(64);
    for seq_no in 0..n {
        let worker = 0u64;
        let span = tracing::info_span!("loadgen_batch", worker);
        let _entered = span.enter();
        tracing::info!(seq_no, worker, payload = payload.as_str(), "load event");
    }
}

fn tail_sees_exactly_what_the_load_generator_sent(format: Format) {
    const N: u64 = 1000;
    let exchange = unique("lc-cli-tail-count");
    let mut broker = Broker::connect();
    broker.forget_exchange_later(&exchange); // tail declares it
    let tail = Tail::start(&exchange, &["--json", "--count", &N.to_string()]);
    emit(&exchange, format, "loadgen-svc", "load-host", || loadgen(N));
    let (status, stdout, stderr) = tail.finish(LIMIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let docs = json_lines(&stdout);
    assert_eq!(docs.len() as u64, N);
    let mut seqs = BTreeSet::new();
    let mut ids = HashSet::new();
    for doc in &docs {
        assert_eq!(doc["message"], "load event");
        match format {
            Format::Ecs => {
                assert_eq!(doc["log"]["level"], "INFO");
                assert_eq!(doc["service"]["name"], "loadgen-svc");
                assert_eq!(doc["host"]["hostname"], "load-host");
                assert_eq!(doc["fields"]["worker"], 0);
                assert_eq!(doc["fields"]["payload"], "x".repeat(64));
                assert_eq!(doc["spans"], serde_json::json!(["loadgen_batch"]));
                seqs.insert(doc["fields"]["seq_no"].as_u64().expect("seq_no"));
                ids.insert(doc["event"]["id"].as_str().expect("id").to_string());
            }
            Format::Classic => {
                assert_eq!(doc["levelname"], "INFO");
                assert_eq!(doc["host"], "load-host");
                assert_eq!(doc["worker"], 0);
                assert_eq!(doc["spans"], serde_json::json!(["loadgen_batch"]));
                seqs.insert(doc["seq_no"].as_u64().expect("seq_no"));
                ids.insert(doc["event_id"].as_str().expect("id").to_string());
            }
            other => panic!("no expectations for the format {other}"),
        }
    }
    assert_eq!(seqs, (0..N).collect::<BTreeSet<_>>());
    assert_eq!(ids.len() as u64, N, "every event once");
}

#[test]
fn tail_json_count_sees_exactly_the_events_sent_ecs() {
    tail_sees_exactly_what_the_load_generator_sent(Format::Ecs);
}

#[test]
fn tail_json_count_sees_exactly_the_events_sent_classic() {
    tail_sees_exactly_what_the_load_generator_sent(Format::Classic);
}

#[derive(Debug)]
struct Declined;
impl std::fmt::Display for Declined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("card declined")
    }
}
#[derive(Debug)]
struct Timeout;
impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("gateway timeout")
    }
}
impl std::error::Error for Timeout {}
impl std::error::Error for Declined {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&Timeout)
    }
}

/// Two services on two hosts, several levels, messages and fields.
fn mixed_events(exchange: &str, format: Format) {
    emit(exchange, format, "svc-a", "host-a", || {
        tracing::debug!(order = 1, "noise");
        tracing::info!(order = 1, "disk 50% full");
        tracing::warn!(order = 42, "disk 91% full");
        let err: &(dyn std::error::Error + 'static) = &Declined;
        tracing::error!(order = 42, error = err, "payment failed");
    });
    emit(exchange, format, "svc-b", "host-b", || {
        tracing::info!(order = 7, "hello from b");
        tracing::warn!(order = 42, "disk 95% full");
    });
}

/// The messages a tail printed (as `--json`).
fn messages(stdout: &str) -> BTreeSet<String> {
    json_lines(stdout)
        .iter()
        .map(|d| d["message"].as_str().expect("message").to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn filters_show_exactly_the_matching_events(format: Format) {
    let exchange = unique("lc-cli-tail-filter");
    let mut broker = Broker::connect();
    broker.forget_exchange_later(&exchange);
    let cases: Vec<(Vec<&str>, BTreeSet<String>)> = vec![
        (
            vec!["--level", "warn"],
            set(&["disk 91% full", "payment failed", "disk 95% full"]),
        ),
        (
            vec!["--service", "svc-b"],
            set(&["hello from b", "disk 95% full"]),
        ),
        (
            vec!["--host", "host-a"],
            set(&["noise", "disk 50% full", "disk 91% full", "payment failed"]),
        ),
        (
            vec!["--grep", r"^disk \d+% full$"],
            set(&["disk 50% full", "disk 91% full", "disk 95% full"]),
        ),
        (
            vec!["--field", "order=42", "--field", "project=billing"],
            set(&["disk 91% full", "payment failed"]),
        ),
        (
            vec!["--level", "info", "--service", "svc-a", "--grep", "full"],
            set(&["disk 50% full", "disk 91% full"]),
        ),
    ];
    // `project` is labels.project in ecs, a top-level key in classic: a field path for each.
    let tails: Vec<(Tail, BTreeSet<String>)> = cases
        .into_iter()
        .map(|(mut args, expected)| {
            for a in args.iter_mut() {
                if *a == "project=billing" && format == Format::Ecs {
                    *a = "labels.project=billing";
                }
            }
            args.push("--json");
            (Tail::start(&exchange, &args), expected)
        })
        .collect();
    mixed_events(&exchange, format);
    // Everything is confirmed and routed. Then a message no filter can pass: each tail reports
    // it on stderr, and a tail handles its queue in order, so once it has, it has printed
    // every event before it.
    broker.publish(&exchange, "logstash.end", b"end of the events: not JSON");
    for (mut tail, expected) in tails {
        tail.wait_for_stderr("end of the events", LIMIT);
        let (_, stdout, stderr) = tail.stop();
        assert_eq!(messages(&stdout), expected, "{stderr}");
        assert_eq!(json_lines(&stdout).len(), expected.len(), "no duplicates");
    }
}

#[test]
fn filters_work_ecs() {
    filters_show_exactly_the_matching_events(Format::Ecs);
}

#[test]
fn filters_work_classic() {
    filters_show_exactly_the_matching_events(Format::Classic);
}

#[test]
fn lines_show_time_level_origin_logger_message_fields_and_the_first_cause() {
    for format in [Format::Ecs, Format::Classic] {
        let exchange = unique("lc-cli-tail-line");
        let mut broker = Broker::connect();
        broker.forget_exchange_later(&exchange);
        let tail = Tail::start(&exchange, &["--count", "6"]);
        mixed_events(&exchange, format);
        let (status, stdout, stderr) = tail.finish(LIMIT);
        assert_eq!(status.code(), Some(0), "{stderr}");
        assert!(
            !stdout.contains('\u{1b}'),
            "a pipe gets no colour: {stdout}"
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 6, "{stdout}");
        let pid = std::process::id();
        let find = |needle: &str| -> &str {
            lines
                .iter()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no line with `{needle}` in {stdout}"))
        };
        let warn = find("disk 91% full");
        // TIME LEVEL SERVICE@HOST[PID] LOGGER: MESSAGE FIELDS
        let (time, rest) = warn.split_once(' ').unwrap();
        assert!(time.ends_with('Z') && time.contains('T'), "{warn}");
        assert!(
            rest.starts_with(&format!(
                "WARN  svc-a@host-a[{pid}] tail: disk 91% full order=42"
            )),
            "{format:?}: {warn}"
        );
        let error = find("payment failed");
        assert!(
            error.contains("ERROR svc-a@host-a")
                && error.ends_with("error=\"card declined (caused by: gateway timeout)\""),
            "{format:?}: {error}"
        );
        assert!(find("hello from b").contains("INFO  svc-b@host-b"));
        assert!(find("noise").contains("DEBUG svc-a@host-a"));
    }
}

#[test]
fn array_bodies_are_split_and_non_json_is_reported() {
    let exchange = unique("lc-cli-tail-array");
    let mut broker = Broker::connect();
    broker.exchange(&exchange, lapin::ExchangeKind::Topic);
    let tail = Tail::start(&exchange, &["--count", "2", "--color", "always"]);
    broker.publish(&exchange, "logstash.x", b"\xffnot json at all");
    let array = serde_json::json!([
        {"@timestamp": "2026-01-01T00:00:00Z", "message": "first of two",
         "log": {"level": "INFO", "logger": "a"}, "service": {"name": "s"},
         "host": {"hostname": "h"}, "process": {"pid": 1}},
        {"@timestamp": "2026-01-01T00:00:01Z", "@version": "1", "message": "second of two",
         "levelname": "CRITICAL", "logger": "b", "host": "h2", "process": 2, "application": "app"}
    ]);
    broker.publish(&exchange, "logstash.x", array.to_string().as_bytes());
    let (status, stdout, stderr) = tail.finish(LIMIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("is not JSON"), "{stderr}");
    let plain: String = strip_ansi(&stdout);
    let lines: Vec<&str> = plain.lines().collect();
    assert_eq!(
        lines,
        [
            "2026-01-01T00:00:00Z INFO  s@h[1] a: first of two",
            // classic identity entries are top-level keys like fields: shown as fields
            "2026-01-01T00:00:01Z CRITICAL app@h2[2] b: second of two application=app",
        ],
        "{stdout}"
    );
    assert!(stdout.contains('\u{1b}'), "--color always colours a pipe");
}

#[test]
fn count_zero_exits_at_once() {
    let exchange = unique("lc-cli-tail-zero");
    let mut broker = Broker::connect();
    broker.forget_exchange_later(&exchange);
    let tail = Tail::start(&exchange, &["--count", "0"]);
    let (status, stdout, _) = tail.finish(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    assert!(stdout.is_empty());
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
