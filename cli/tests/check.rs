//! `logcollect check` against the real broker: the healthy path, and each break with its own
//! diagnosis and a non-zero exit.

mod common;

use std::time::Duration;

use common::{broker_with, logcollect, run_with_input, unique, Broker};
use lapin::ExchangeKind;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `check --json` with extra variables; returns the exit code and the JSON report.
fn check_json(exchange: &str, vars: &[(&str, &str)]) -> (i32, Value) {
    let mut cmd = logcollect(exchange);
    cmd.args(["check", "--json"]);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = run_with_input(cmd, Vec::new(), LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("check --json printed no JSON ({e}): {stdout}"));
    (out.status.code().expect("exit code"), report)
}

fn steps(report: &Value) -> Vec<(String, String)> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["step"].as_str().expect("step").to_string(),
                s["status"].as_str().expect("status").to_string(),
            )
        })
        .collect()
}

/// The failure's step and code, after checking its shape.
fn failure(report: &Value) -> (String, String) {
    let f = &report["failure"];
    assert_eq!(report["ok"], false, "{report}");
    for key in ["headline", "detail", "fix"] {
        assert!(
            f[key].as_str().is_some_and(|s| !s.is_empty()),
            "failure.{key} is empty: {report}"
        );
    }
    let last = steps(report).pop().expect("a step");
    assert_eq!(last.1, "failed", "{report}");
    assert_eq!(last.0, f["step"], "{report}");
    (
        f["step"].as_str().unwrap().to_string(),
        f["code"].as_str().unwrap().to_string(),
    )
}

#[test]
fn a_healthy_broker_with_a_bound_queue_passes_every_step() {
    let exchange = unique("lc-cli-check-ok");
    let mut broker = Broker::connect();
    broker.capture(&exchange, "logstash.#");
    let (code, report) = check_json(&exchange, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true);
    assert!(report["failure"].is_null());
    assert_eq!(
        steps(&report),
        [
            ("config", "ok"),
            ("dns", "skipped"),
            ("tcp", "ok"),
            ("tls", "skipped"),
            ("login", "ok"),
            ("exchange", "ok"),
            ("publish", "ok"),
            ("route", "ok"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    // The test event is a real document, on the routing key of its logger.
    let got = broker.receive(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    let (key, props, doc) = &got[0];
    assert_eq!(key, "logstash.logcollect.check");
    assert_eq!(doc["message"], "logcollect check: test event");
    assert_eq!(doc["log"]["level"], "INFO");
    assert_eq!(doc["log"]["logger"], "logcollect::check");
    assert_eq!(doc["fields"]["check"], true);
    assert_eq!(
        props.message_id().as_ref().map(|s| s.to_string()),
        doc["event"]["id"].as_str().map(str::to_string)
    );

    // The human form says the same, in words.
    let mut cmd = logcollect(&exchange);
    cmd.args(["check", "--logger", "billing::api"]);
    let out = run_with_input(cmd, Vec::new(), LIMIT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("check passed"), "{text}");
    assert!(text.contains("`logstash.billing.api`"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "NO_COLOR and a pipe: no colour: {text}"
    );
}

#[test]
fn a_wrong_password_is_a_refused_login() {
    let exchange = unique("lc-cli-check-pw");
    let uri = broker_with(Some("not-the-password"), None, None);
    let (code, report) = check_json(&exchange, &[("LOGCOLLECT_BROKER_URI", &uri)]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(failure(&report), ("login".into(), "access_refused".into()));
    let detail = report["failure"]["detail"].as_str().unwrap();
    assert!(detail.contains("ACCESS_REFUSED"), "{detail}");
    assert!(report["failure"]["fix"]
        .as_str()
        .unwrap()
        .contains("password"));
}

#[test]
fn an_unknown_vhost_is_named() {
    let exchange = unique("lc-cli-check-vh");
    let vhost = unique("no-such-vhost");
    let uri = broker_with(None, Some(&vhost), None);
    let (code, report) = check_json(&exchange, &[("LOGCOLLECT_BROKER_URI", &uri)]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(failure(&report), ("login".into(), "vhost_not_found".into()));
    let headline = report["failure"]["headline"].as_str().unwrap();
    assert!(headline.contains(&vhost), "{headline}");
    assert!(report["failure"]["detail"]
        .as_str()
        .unwrap()
        .contains("NOT_ALLOWED"));
}

#[test]
fn an_exchange_of_another_type_is_a_precondition_failure_explained() {
    let exchange = unique("lc-cli-check-type");
    let mut broker = Broker::connect();
    broker.exchange(&exchange, ExchangeKind::Fanout);
    let (code, report) = check_json(&exchange, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        failure(&report),
        ("exchange".into(), "exchange_mismatch".into())
    );
    let f = &report["failure"];
    let headline = f["headline"].as_str().unwrap();
    assert!(
        headline.contains("exists as a fanout exchange") && headline.contains("asks for topic"),
        "{headline}"
    );
    let detail = f["detail"].as_str().unwrap();
    assert!(detail.contains("PRECONDITION_FAILED"), "{detail}");
    assert!(
        detail.contains("passive declare confirms it exists"),
        "{detail}"
    );
    assert!(f["fix"]
        .as_str()
        .unwrap()
        .contains("LOGCOLLECT_EXCHANGE_TYPE"));

    // Configured as what exists, the exchange step passes.
    let (_, report) = check_json(&exchange, &[("LOGCOLLECT_EXCHANGE_TYPE", "fanout")]);
    assert!(
        steps(&report).contains(&("exchange".to_string(), "ok".to_string())),
        "{report}"
    );
}

#[test]
fn no_queue_bound_means_nothing_would_reach_logstash() {
    let exchange = unique("lc-cli-check-noq");
    let mut broker = Broker::connect();
    broker.forget_exchange_later(&exchange); // check declares it
    let (code, report) = check_json(&exchange, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(failure(&report), ("route".into(), "no_queue_bound".into()));
    assert!(steps(&report).contains(&("publish".to_string(), "ok".to_string())));
    let f = &report["failure"];
    assert!(f["headline"]
        .as_str()
        .unwrap()
        .contains("nothing would reach Logstash"));
    assert!(f["detail"].as_str().unwrap().contains("NO_ROUTE"));
    assert!(f["fix"].as_str().unwrap().contains("logstash.#"));

    // A binding that does not match the routing key is no better.
    let mut bound = Broker::connect();
    bound.capture(&exchange, "other.#");
    let (code, report) = check_json(&exchange, &[]);
    assert_eq!(code, 1);
    assert_eq!(failure(&report).1, "no_queue_bound");
}

#[test]
fn a_closed_port_is_a_refused_connection() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }; // closed again
    let uri = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let (code, report) = check_json("logstash", &[("LOGCOLLECT_BROKER_URI", &uri)]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        failure(&report),
        ("tcp".into(), "connection_refused".into())
    );
    assert!(report["failure"]["headline"]
        .as_str()
        .unwrap()
        .contains(&format!("127.0.0.1:{port}")));
}

#[test]
fn a_port_that_never_answers_times_out_in_the_handshake() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let uri = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let (code, report) = check_json(
        "logstash",
        &[
            ("LOGCOLLECT_BROKER_URI", &uri),
            ("LOGCOLLECT_CONNECT_TIMEOUT_MS", "1000"),
        ],
    );
    drop(listener);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        failure(&report),
        ("login".into(), "handshake_timeout".into())
    );
}

#[test]
fn an_unresolvable_host_is_a_dns_failure() {
    let (code, report) = check_json(
        "logstash",
        &[(
            "LOGCOLLECT_BROKER_URI",
            "amqp://guest:guest@no-such-host.invalid:5672/%2f",
        )],
    );
    assert_eq!(code, 1, "{report}");
    assert_eq!(failure(&report), ("dns".into(), "dns_failure".into()));
}

#[test]
fn an_invalid_configuration_exits_2() {
    let (code, report) = check_json("logstash", &[("LOGCOLLECT_EXCHANGE_TYPE", "bogus")]);
    assert_eq!(code, 2, "{report}");
    assert_eq!(failure(&report), ("config".into(), "config_invalid".into()));
    assert!(report["failure"]["detail"]
        .as_str()
        .unwrap()
        .contains("LOGCOLLECT_EXCHANGE_TYPE"));

    // --config names a file, as LOGCOLLECT_CONFIG does.
    let dir = std::env::temp_dir().join(unique("lc-cli-config"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("logcollect.toml");
    std::fs::write(&file, "exchange_type = \"sideways\"\n").unwrap();
    let mut cmd = logcollect("logstash");
    cmd.arg("--config").arg(&file).arg("check");
    let out = run_with_input(cmd, Vec::new(), LIMIT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("sideways"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
