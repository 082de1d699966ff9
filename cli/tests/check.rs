//! `logcollect check` against the real broker: the healthy path, and each break with its own
//! diagnosis and a non-zero exit; the queue step (type, replicas and their state, from the
//! management API) against a real three-node cluster of the test's own (scripts/cluster with
//! the management plugin: nodes `lcclk1..3` on ports 5851–5853, API on 15851–15853).

#[path = "../../tests/clusters/mod.rs"]
mod clusters;
mod common;

use std::time::Duration;

use common::{broker_with, check_failure, logcollect, run_with_input, unique, Broker};
use lapin::ExchangeKind;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `check --json` with extra variables; returns the exit code and the JSON report.
fn check_json(exchange: &str, vars: &[(&str, &str)]) -> (i32, Value) {
    check_json_with(exchange, &[], vars)
}

/// The same with extra arguments.
fn check_json_with(exchange: &str, args: &[&str], vars: &[(&str, &str)]) -> (i32, Value) {
    let mut cmd = logcollect(exchange);
    cmd.args(["check", "--json"]).args(args);
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

#[test]
fn a_healthy_broker_with_a_bound_queue_passes_every_step() {
    let exchange = unique("lc-cli-check-ok");
    let mut broker = Broker::connect();
    broker.capture(&exchange, "logstash.#");
    let (code, report) = check_json(&exchange, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true);
    assert!(report["failure"].is_null());
    // Then the queue step, which this test's broker may or may not answer (the management
    // plugin): informative, never the check's failure.
    let mut steps = steps(&report);
    let queue = steps.pop().expect("the queue step");
    assert_eq!(queue.0, "queue", "{report}");
    assert!(queue.1 == "ok" || queue.1 == "skipped", "{report}");
    assert_eq!(
        steps,
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
    assert_eq!(
        check_failure(&report),
        ("login".into(), "access_refused".into())
    );
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
    assert_eq!(
        check_failure(&report),
        ("login".into(), "vhost_not_found".into())
    );
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
        check_failure(&report),
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
    assert_eq!(
        check_failure(&report),
        ("route".into(), "no_queue_bound".into())
    );
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
    assert_eq!(check_failure(&report).1, "no_queue_bound");
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
        check_failure(&report),
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
        check_failure(&report),
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
    assert_eq!(check_failure(&report), ("dns".into(), "dns_failure".into()));
}

#[test]
fn an_invalid_configuration_exits_2() {
    let (code, report) = check_json("logstash", &[("LOGCOLLECT_EXCHANGE_TYPE", "bogus")]);
    assert_eq!(code, 2, "{report}");
    assert_eq!(
        check_failure(&report),
        ("config".into(), "config_invalid".into())
    );
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

/// The step named `name`: (status, summary).
fn step(report: &Value, name: &str) -> (String, String) {
    let s = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {report}"));
    (
        s["status"].as_str().expect("status").to_string(),
        s["summary"].as_str().expect("summary").to_string(),
    )
}

#[test]
fn an_unreachable_management_api_is_reported_not_available_and_the_check_still_passes() {
    let exchange = unique("lc-cli-check-nomgmt");
    let mut broker = Broker::connect();
    broker.capture(&exchange, "logstash.#");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }; // closed again
    let url = format!("http://ops:pw-never-printed-1@127.0.0.1:{port}");
    let (code, report) = check_json_with(&exchange, &["--management", &url], &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true, "{report}");
    let (status, summary) = step(&report, "queue");
    assert_eq!(status, "skipped", "{report}");
    assert!(summary.starts_with("not available: "), "{summary}");
    assert!(summary.contains("connection refused"), "{summary}");
    assert!(
        summary.contains(&format!("http://127.0.0.1:{port}")),
        "{summary}"
    );
    assert!(report.get("queue").is_none(), "{report}");
    assert!(
        !report.to_string().contains("pw-never-printed-1"),
        "{report}"
    );

    // `none` skips the step without trying.
    let (code, report) = check_json_with(&exchange, &["--management", "none"], &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(step(&report, "queue").0, "skipped");
    assert!(step(&report, "queue").1.contains("--management none"));

    // A URL that is not one is a usage error.
    let (code, _) = {
        let mut cmd = logcollect(&exchange);
        cmd.args(["check", "--management", "ftp://127.0.0.1:15671"]);
        let out = run_with_input(cmd, Vec::new(), LIMIT);
        (out.status.code(), out)
    };
    assert_eq!(code, Some(2));
}

#[test]
fn an_https_management_api_is_asked_trusting_the_system_roots() {
    use logcollect_test_support::certs;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::{Read, Write};
    use std::sync::Arc;

    // An HTTPS server of a canned answer, with a certificate of a test CA, which the command
    // trusts as the system's roots (SSL_CERT_FILE, read by the platform verifier).
    let ca = certs::Ca::new("logcollect check https test CA");
    let dir = std::env::temp_dir().join(unique("lc-check-https"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca_file = certs::write(&dir, "ca.pem", &ca.pem);
    let leaf = ca.server();
    let chain = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate");
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let body = r#"{"type":"stream","state":"running","leader":"rabbit@a","members":["rabbit@a","rabbit@b"],"online":["rabbit@a","rabbit@b"]}"#;
    // The request's head is sent back before the answer: once the check has the answer,
    // it is there (and a check that never asks leaves the server waiting, not the test).
    let (heads, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("accept");
        let conn = rustls::ServerConnection::new(Arc::new(tls)).expect("tls");
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("the request");
            head.push(byte[0]);
        }
        let _ = heads.send(String::from_utf8_lossy(&head).into_owned());
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(answer.as_bytes()).expect("the answer");
        stream.conn.send_close_notify();
        let _ = stream.flush();
    });

    let exchange = unique("lc-cli-check-https");
    let mut broker = Broker::connect();
    broker.capture(&exchange, "logstash.#");
    let url = format!("https://ops:pw-never-printed-2@localhost:{port}");
    let ca_path = ca_file.to_string_lossy().into_owned();
    let (code, report) = check_json_with(
        &exchange,
        &["--management", &url],
        &[("SSL_CERT_FILE", &ca_path)],
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 0, "{report}");
    let (status, summary) = step(&report, "queue");
    assert_eq!(status, "ok", "{report}");
    let head = received.try_recv().expect("the request");
    assert!(head.starts_with("GET /api/queues/"), "{head}");
    assert!(head.contains("/logcollect HTTP/1.1\r\n"), "{head}");
    // "ops:pw-never-printed-2"
    assert!(
        head.contains("\r\nauthorization: Basic b3BzOnB3LW5ldmVyLXByaW50ZWQtMg==\r\n"),
        "{head}"
    );
    assert_eq!(report["queue"]["type"], "stream", "{report}");
    assert!(
        summary.contains("is a stream queue: 2 replicas, all online")
            && summary.ends_with(&format!("(management API at https://localhost:{port})")),
        "{summary}"
    );
    assert!(
        !report.to_string().contains("pw-never-printed-2"),
        "{report}"
    );
}

#[test]
fn the_queue_step_names_a_quorum_queues_replicas_and_their_state_and_a_classic_queues_node() {
    use clusters::Cluster;

    let cluster = Cluster::start_managed("lcclk", 5851, 3);
    let api = cluster.management_url(0);
    let broker = cluster.uri(0);
    let vars = [("LOGCOLLECT_BROKER_URI", broker.as_str())];

    // The stack's quorum queue `logcollect` (scripts/cluster loads its definitions).
    let (code, report) = check_json_with("logstash", &["--management", &api], &vars);
    assert_eq!(code, 0, "{report}");
    assert_eq!(step(&report, "queue").0, "ok", "{report}");
    let queue = &report["queue"];
    assert_eq!(queue["name"], "logcollect");
    assert_eq!(queue["vhost"], "/");
    assert_eq!(queue["type"], "quorum", "{report}");
    let members = queue["members"].as_array().expect("members");
    let mut nodes: Vec<&str> = members
        .iter()
        .map(|m| m["node"].as_str().expect("node"))
        .collect();
    nodes.sort_unstable();
    let expected: Vec<String> = (0..3).map(|i| cluster.node(i)).collect();
    assert_eq!(nodes, expected, "a replica on every node: {report}");
    assert!(
        members.iter().all(|m| m["online"] == true),
        "all online: {report}"
    );
    let leaders: Vec<&Value> = members.iter().filter(|m| m["leader"] == true).collect();
    assert_eq!(leaders.len(), 1, "one leader: {report}");
    assert_eq!(leaders[0]["node"], queue["leader"], "{report}");
    let leader = queue["leader"].as_str().expect("leader named").to_string();
    let summary = step(&report, "queue").1;
    assert!(
        summary.contains("is a quorum queue: 3 replicas, all online")
            && summary.contains(&format!("leader {leader}")),
        "{summary}"
    );

    // The human form, with credentials in the URL of a monitoring user: never printed.
    let password = "pw-Zq9-never-printed";
    cluster
        .ctl(0, "rabbitmqctl", &["add_user", "lc-ops", password])
        .expect("add_user");
    cluster
        .ctl(0, "rabbitmqctl", &["set_user_tags", "lc-ops", "monitoring"])
        .expect("set_user_tags");
    cluster
        .ctl(
            0,
            "rabbitmqctl",
            &["set_permissions", "-p", "/", "lc-ops", "", "", ".*"],
        )
        .expect("set_permissions");
    let with_user = format!(
        "http://lc-ops:{password}@127.0.0.1:{}",
        cluster.port_of(0) + 10000
    );
    let mut cmd = logcollect("logstash");
    cmd.env("LOGCOLLECT_BROKER_URI", &broker)
        .args(["check", "--management", &with_user]);
    let out = run_with_input(cmd, Vec::new(), LIMIT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("queue") && text.contains("is a quorum queue: 3 replicas, all online"),
        "{text}"
    );
    assert!(!text.contains(password), "{text}");

    // By default: port 15672 of the broker's host with the broker URI's user, here a
    // publisher without a management tag. Its password is not printed either.
    let publisher_password = "pub-pw-never-printed";
    cluster
        .ctl(
            0,
            "rabbitmqctl",
            &["add_user", "lc-pub", publisher_password],
        )
        .expect("add_user");
    cluster
        .ctl(
            0,
            "rabbitmqctl",
            &["set_permissions", "-p", "/", "lc-pub", ".*", ".*", ".*"],
        )
        .expect("set_permissions");
    let pub_uri = format!(
        "amqp://lc-pub:{publisher_password}@127.0.0.1:{}/%2f",
        cluster.port_of(0)
    );
    let (code, report) = check_json_with(
        "logstash",
        &["--management", &api],
        &[("LOGCOLLECT_BROKER_URI", &pub_uri)],
    );
    assert_eq!(code, 0, "{report}");
    let (status, summary) = step(&report, "queue");
    assert_eq!(status, "skipped", "{report}");
    assert!(
        summary.starts_with("not available: ") && summary.contains("refused user `lc-pub` (401)"),
        "{summary}"
    );
    assert!(!report.to_string().contains(publisher_password), "{report}");

    // A classic queue bound to the exchange: its node, no replicas.
    let classic = unique("lc-check-classic");
    declare_classic(&broker, &classic);
    let (code, report) = check_json_with(
        "logstash",
        &["--management", &api, "--queue", &classic],
        &vars,
    );
    assert_eq!(code, 0, "{report}");
    let queue = &report["queue"];
    assert_eq!(queue["type"], "classic", "{report}");
    assert_eq!(queue["name"], classic.as_str());
    assert!(queue["members"].as_array().expect("members").is_empty());
    assert!(
        expected.iter().any(|n| queue["node"] == n.as_str()),
        "its node named: {report}"
    );
    assert!(step(&report, "queue").1.contains("no replicas"), "{report}");

    // A replica down: named offline, the queue still works (a majority is up), check passes.
    let follower = (0..3)
        .find(|&i| cluster.node(i) != leader && i != 0)
        .expect("a follower that is not node 1");
    cluster.stop(follower);
    let down = cluster.node(follower);
    // The API tells what its statistics last said (every 5 s by default): asked until then.
    let deadline = std::time::Instant::now() + clusters::LIMIT;
    let report = loop {
        let (code, report) = check_json_with("logstash", &["--management", &api], &vars);
        assert_eq!(code, 0, "a replica down fails no step: {report}");
        let offline = report["queue"]["members"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["online"] == false));
        if offline {
            break report;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{down} never shown offline: {report}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let queue = &report["queue"];
    assert_eq!(queue["type"], "quorum");
    let members = queue["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{report}");
    for m in members {
        assert_eq!(m["online"], m["node"] != down.as_str(), "{report}");
    }
    let summary = step(&report, "queue").1;
    assert!(
        summary.contains(&format!("3 replicas, 2 online, offline: {down}")),
        "{summary}"
    );
}

/// A durable classic queue bound to the stack's exchange for the test event's routing key.
fn declare_classic(uri: &str, queue: &str) {
    use lapin::options::{QueueBindOptions, QueueDeclareOptions};
    use lapin::types::{AMQPValue, FieldTable, ShortString};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let connection = lapin::Connection::connect(uri, lapin::ConnectionProperties::default())
            .await
            .expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        let mut args = FieldTable::default();
        args.insert(
            ShortString::from("x-queue-type"),
            AMQPValue::LongString("classic".into()),
        );
        channel
            .queue_declare(
                ShortString::from(queue),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                args,
            )
            .await
            .expect("declare");
        channel
            .queue_bind(
                ShortString::from(queue),
                ShortString::from("logstash"),
                ShortString::from("logstash.#"),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        let _ = connection.close(200, ShortString::from("declared")).await;
    });
}
