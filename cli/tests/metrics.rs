//! `logcollect collect --http`: `/metrics` over real HTTP after a known load — it parses as
//! Prometheus text (here by a strict parser of the test's own, which also refuses a series or
//! a TYPE twice; tests/elk/test_metrics_scrape.py parses a scrape with the Prometheus
//! project's parser), the counts equal what was sent, bytes equal the file's size, the facility
//! label stays bounded with thousands of services, the token and Host rules of the status
//! page apply — and `/healthz` turns 503 while writing fails past `--unhealthy-after`, then 200
//! again once it works.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{unique, wait_until, Broker, Collect};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(120);
const WRITTEN: &str = "logcollect_collect_events_written_total";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique(name));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("test dir");
    dir
}

/// A plain HTTP/1.1 GET with `Host` and extra header lines: status, content type, body.
fn get(port: u16, path: &str, host: &str, extra: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to collect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    (code, content_type, body.to_string())
}

/// A sample: name and labels (in order).
type Series = (String, Vec<(String, String)>);

/// Parses the Prometheus text format (0.0.4) strictly: `# HELP name text` and `# TYPE name
/// kind` once per family and before its samples, each sample of a declared family, metric and
/// label names of the allowed characters, label values quoted with only `\\`, `\"`, `\n`
/// escapes, no label twice, a float value, no series twice.
fn parse_exposition(text: &str) -> BTreeMap<Series, f64> {
    fn is_name(s: &str, colon: bool) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeSet<String> = BTreeSet::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, name, tail) = (parts.next(), parts.next(), parts.next());
            let name = name.unwrap_or_else(|| panic!("no metric name in {line:?}"));
            assert!(is_name(name, true), "bad metric name in {line:?}");
            match keyword {
                Some("HELP") => assert!(helps.insert(name.into()), "HELP twice: {line:?}"),
                Some("TYPE") => {
                    let kind = tail.unwrap_or_default();
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "bad type in {line:?}"
                    );
                    assert!(
                        types.insert(name.into(), kind.into()).is_none(),
                        "TYPE twice: {line:?}"
                    );
                    assert!(
                        !samples.keys().any(|(n, _): &Series| n == name),
                        "TYPE after samples: {line:?}"
                    );
                }
                _ => {}
            }
            continue;
        }
        assert!(!line.starts_with('#'), "bad comment {line:?}");
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let name = &line[..name_end];
        assert!(is_name(name, true), "bad metric name in {line:?}");
        assert!(
            types.contains_key(name),
            "sample of an undeclared family: {line:?}"
        );
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(inside) = rest.strip_prefix('{') {
            let bytes = inside.as_bytes();
            let mut i = 0;
            loop {
                if bytes.get(i) == Some(&b'}') {
                    rest = &inside[i + 1..];
                    break;
                }
                let eq = inside[i..].find('=').expect("label =") + i;
                let key = &inside[i..eq];
                assert!(is_name(key, false), "bad label name in {line:?}");
                assert_eq!(bytes.get(eq + 1), Some(&b'"'), "unquoted value in {line:?}");
                let mut value = String::new();
                i = eq + 2;
                loop {
                    match bytes.get(i) {
                        Some(b'\\') => {
                            match bytes.get(i + 1) {
                                Some(b'\\') => value.push('\\'),
                                Some(b'"') => value.push('"'),
                                Some(b'n') => value.push('\n'),
                                _ => panic!("bad escape in {line:?}"),
                            }
                            i += 2;
                        }
                        Some(b'"') => break,
                        Some(_) => {
                            let c = inside[i..].chars().next().expect("a character");
                            value.push(c);
                            i += c.len_utf8();
                        }
                        None => panic!("unterminated value in {line:?}"),
                    }
                }
                assert!(
                    !labels.iter().any(|(k, _): &(String, String)| k == key),
                    "label twice in {line:?}"
                );
                labels.push((key.to_string(), value));
                i += 1;
                match bytes.get(i) {
                    Some(b',') => i += 1,
                    Some(b'}') => {}
                    _ => panic!("bad label list in {line:?}"),
                }
            }
        }
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        assert!(
            samples.insert((name.to_string(), labels), value).is_none(),
            "series twice: {line:?}"
        );
    }
    samples
}

fn value(m: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let key = (
        name.to_string(),
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    *m.get(&key)
        .unwrap_or_else(|| panic!("no {name}{labels:?} in {:?}", m.keys()))
}

fn doc(service: &str, seq_no: u64) -> serde_json::Value {
    json!({"message": "m", "service": {"name": service}, "fields": {"seq_no": seq_no}})
}

fn seq_count(path: &Path) -> usize {
    fs::read_to_string(path)
        .map(|t| t.lines().filter(|l| l.contains("seq_no")).count())
        .unwrap_or(0)
}

#[test]
fn metrics_count_what_was_written_with_bounded_facility_labels_behind_the_token() {
    let mut broker = Broker::connect();
    let exchange = unique("lc-metrics");
    let queue = unique("lc-metrics-q");
    broker.forget_exchange_later(&exchange);
    let files = test_dir("collect-metrics").join("files");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let token = "metrics-test-token";
    let collect = Collect::start(
        &exchange,
        &queue,
        &files,
        &["--http", &addr, "--http-token", token],
    );
    let auth = format!("Authorization: Bearer {token}\r\n");

    // The status page's rules: a foreign Host is refused, the token is required.
    assert_eq!(get(port, "/metrics", "evil.example", &auth).0, 403);
    assert_eq!(get(port, "/metrics", "127.0.0.1", "").0, 401);

    // N events of one service, in arrays of 10, then one event of each of 2000 more services
    // (arrays of 100): the first 50 facilities seen get a label, the 1951 after them count as
    // "other".
    let n = 500u64;
    for chunk in 0..n / 10 {
        let body: Vec<_> = (chunk * 10..chunk * 10 + 10)
            .map(|i| doc("main", i))
            .collect();
        broker.publish(
            &exchange,
            "logstash.main",
            json!(body).to_string().as_bytes(),
        );
    }
    let main_file = files.join("main/root.log");
    wait_until("the main service's events written", LIMIT, || {
        seq_count(&main_file) == n as usize
    });
    let others = 2000u64;
    for chunk in 0..others / 100 {
        let body: Vec<_> = (chunk * 100..chunk * 100 + 100)
            .map(|i| doc(&format!("svc{i:04}"), i))
            .collect();
        broker.publish(
            &exchange,
            "logstash.svc",
            json!(body).to_string().as_bytes(),
        );
    }
    let last = files.join(format!("svc{:04}/root.log", others - 1));
    wait_until("the other services' events written", LIMIT, || {
        seq_count(&last) == 1
    });
    wait_until("the queue drained", LIMIT, || {
        broker.queue_backlog(&queue) == Some(0)
    });

    let (code, content_type, text) = get(port, "/metrics", "127.0.0.1", &auth);
    assert_eq!(code, 200, "{text}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let m = parse_exposition(&text);
    let written = WRITTEN;
    assert_eq!(value(&m, written, &[("facility", "main:root")]), n as f64);
    let main_bytes = fs::metadata(&main_file).expect("main file").len();
    assert_eq!(
        value(
            &m,
            "logcollect_collect_bytes_written_total",
            &[("facility", "main:root")]
        ),
        main_bytes as f64
    );
    // Labels: "main", then svc0000..svc0048 (50 in all), then "other" for the rest.
    let facilities: BTreeSet<String> = m
        .keys()
        .filter(|(name, _)| name == written)
        .map(|(_, labels)| labels[0].1.clone())
        .collect();
    assert_eq!(facilities.len(), 51, "{facilities:?}");
    assert!(facilities.contains("svc0048:root"), "{facilities:?}");
    assert!(!facilities.contains("svc0049:root"), "{facilities:?}");
    assert_eq!(
        value(&m, written, &[("facility", "other")]),
        (others - 49) as f64
    );
    let total: f64 = m
        .iter()
        .filter(|((name, _), _)| name == written)
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, (n + others) as f64);
    assert_eq!(
        value(&m, "logcollect_collect_messages_total", &[]),
        (n / 10 + others / 100) as f64
    );
    for zero in [
        "logcollect_collect_write_errors_total",
        "logcollect_collect_rejected_messages_total",
        "logcollect_collect_cut_documents_total",
        "logcollect_collect_errors_total",
        "logcollect_collect_compressions_total",
        "logcollect_collect_write_failing_seconds",
    ] {
        assert_eq!(value(&m, zero, &[]), 0.0, "{zero}");
    }
    assert_eq!(value(&m, "logcollect_collect_broker_connected", &[]), 1.0);
    assert_eq!(value(&m, "logcollect_collect_healthy", &[]), 1.0);
    assert!(value(&m, "logcollect_collect_open_files", &[]) >= 1.0);
    drop(collect);
    broker.delete_queue(&queue);
}

#[test]
fn healthz_turns_503_while_writing_fails_past_the_threshold_and_200_once_it_works() {
    let mut broker = Broker::connect();
    let exchange = unique("lc-healthz");
    let queue = unique("lc-healthz-q");
    broker.forget_exchange_later(&exchange);
    let files = test_dir("collect-healthz").join("files");
    // The facility's file is a directory: every write there fails (even as root).
    let in_the_way = files.join("hsvc/root.log");
    fs::create_dir_all(&in_the_way).expect("a directory in the way");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut collect = Collect::start(
        &exchange,
        &queue,
        &files,
        &["--http", &addr, "--unhealthy-after", "1"],
    );
    let health = || get(port, "/healthz", "127.0.0.1", "");
    wait_until("healthy once consuming", LIMIT, || health().0 == 200);

    broker.publish(
        &exchange,
        "logstash.h",
        doc("hsvc", 0).to_string().as_bytes(),
    );
    wait_until(
        "/healthz 503 after writes failed for over 1 s",
        LIMIT,
        || health().0 == 503,
    );
    let (_, _, why) = health();
    assert!(why.contains("not writing"), "{why}");
    // The message goes to DIR/_rejected/ after its attempts; still no write has succeeded.
    collect.wait_for_line("message rejected after 3 attempts", LIMIT);
    assert_eq!(health().0, 503);
    let (_, _, text) = get(port, "/metrics", "127.0.0.1", "");
    let m = parse_exposition(&text);
    assert_eq!(value(&m, "logcollect_collect_write_errors_total", &[]), 3.0);
    assert_eq!(
        value(&m, "logcollect_collect_rejected_messages_total", &[]),
        1.0
    );
    assert!(value(&m, "logcollect_collect_write_failing_seconds", &[]) > 1.0);
    assert_eq!(value(&m, "logcollect_collect_healthy", &[]), 0.0);

    // Fixed: the next message is written, and the collector is healthy again.
    fs::remove_dir(&in_the_way).expect("remove the directory");
    broker.publish(
        &exchange,
        "logstash.h",
        doc("hsvc", 1).to_string().as_bytes(),
    );
    wait_until("the next message written", LIMIT, || {
        seq_count(&in_the_way) == 1
    });
    wait_until("/healthz 200 again", LIMIT, || health().0 == 200);
    let (_, _, text) = get(port, "/metrics", "127.0.0.1", "");
    let m = parse_exposition(&text);
    assert_eq!(
        value(&m, "logcollect_collect_write_failing_seconds", &[]),
        0.0
    );
    assert_eq!(value(&m, WRITTEN, &[("facility", "hsvc:root")]), 1.0);
    drop(collect);
    broker.delete_queue(&queue);
}

#[test]
fn the_parser_refuses_malformed_exposition() {
    let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{f=\"q\\\"\\n\",g=\"2\"} 3\n";
    let m = parse_exposition(ok);
    assert_eq!(value(&m, "a_total", &[("f", "q\"\n"), ("g", "2")]), 3.0);
    for bad in [
        "a_total 1\n",                                          // no TYPE
        "# TYPE a_total counter\na_total{f=\"x} 1\n",           // unterminated
        "# TYPE a_total counter\na_total{f=\"x\"} one\n",       // value
        "# TYPE a_total counter\n1a 1\n",                       // name
        "# TYPE a_total counter\na_total{f=\"\\x\"} 1\n",       // escape
        "# TYPE a_total counter\na_total 1\na_total 2\n",       // twice
        "# TYPE a_total counter\na_total{f=\"1\",f=\"2\"} 1\n", // label twice
        "# TYPE a_total counter\na_total{f=\"1\"g=\"2\"} 1\n",  // no comma
    ] {
        let refused = std::panic::catch_unwind(|| parse_exposition(bad)).is_err();
        assert!(refused, "accepted {bad:?}");
    }
}
