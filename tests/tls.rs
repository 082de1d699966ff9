//! TLS against a real broker: a throw-away RabbitMQ node of this test (TLS only, client
//! certificate required, EXTERNAL enabled) and a CA, server and client certificates generated
//! now. One node serves every case; it is stopped and removed even when a case fails.
//!
//! Cases: mutual TLS delivers documents end to end (and `stats.node` names the node); EXTERNAL
//! logs in as the certificate's subject with no password; no client certificate, a server
//! certificate from another CA and a name mismatch are refused with an error naming the cause,
//! and nothing is delivered; redaction field by field in both formats, span fields and identity
//! entries included. Without a node: unreadable and malformed key files fail at `build`, and
//! TLS settings with an `amqp://` URI are a configuration error (never plain AMQP).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Duration;

use logcollect::{AuthMechanism, Config, Format, Guard, LogcollectLayer, RedactWith};
use logcollect_test_support::certs::write;
use logcollect_test_support::{unique, wait_for, Ca, Client, TlsNode};
use serde_json::{json, Value};
use tracing_subscriber::layer::SubscriberExt;

const PORT: u16 = 5741;
const CLIENT_USER: &str = "logcollect-client";

struct Setup {
    /// The node, its CA and the client certificate it knows as user `logcollect-client`.
    tls: TlsNode,
}

impl Setup {
    fn start() -> Setup {
        Setup {
            tls: TlsNode::start("lc-harden-tls", PORT, CLIENT_USER),
        }
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        self.tls.file(name, text)
    }

    /// The harness's own TLS client, as guest.
    fn harness(&self) -> Client {
        self.tls.harness()
    }

    /// A shipper configuration with our CA and client certificate.
    fn config(&self, exchange: &str) -> Config {
        let mut c = Config::default();
        c.broker_uri = format!("amqps://guest:guest@localhost:{PORT}/%2f");
        c.exchange = exchange.to_string();
        c.tls_ca_file = Some(self.tls.ca_file());
        c.tls_cert_file = Some(self.tls.cert_file());
        c.tls_key_file = Some(self.tls.key_file());
        c.backoff_min = Duration::from_millis(50);
        c.backoff_max = Duration::from_millis(500);
        c.connect_timeout = Duration::from_secs(10);
        c
    }
}

fn shipper(config: Config) -> (LogcollectLayer, Guard) {
    logcollect::builder()
        .configure(|c| *c = config)
        .build()
        .expect("build")
}

fn with_layer(layer: LogcollectLayer, f: impl FnOnce()) {
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
}

/// The shipper reports `what` in `last_error`, delivers nothing, and shows no password.
fn refused(guard: &Guard, what: &str) -> String {
    let shipper = guard.shipper();
    let ok = wait_for(Duration::from_secs(60), || {
        shipper.stats().last_error.is_some_and(|e| e.contains(what))
    });
    let stats = guard.stats();
    assert!(ok, "expected last_error with {what:?}: {stats}");
    assert_eq!(stats.confirmed, 0, "{stats}");
    assert_eq!(stats.node, None, "{stats}");
    let error = stats.last_error.unwrap_or_default();
    assert!(
        !error.contains("guest:guest"),
        "a password is shown: {error}"
    );
    error
}

fn mutual_tls_delivers_documents_end_to_end(s: &Setup) {
    let exchange = unique("tls-e2e");
    let queue = unique("tls-e2e-q");
    s.harness().bind(&exchange, &queue);
    let (layer, guard) = shipper(s.config(&exchange));
    with_layer(layer, || {
        for seq_no in 0..50u64 {
            tracing::info!(seq_no, kind = "tls", "over mutual TLS");
        }
    });
    assert!(
        guard.flush(Duration::from_secs(60)).is_complete(),
        "{}",
        guard.stats()
    );
    let stats = guard.stats();
    assert_eq!(stats.confirmed, 50, "{stats}");
    assert_eq!(
        stats.node.as_deref(),
        Some(format!("amqps://localhost:{PORT}/%2f").as_str()),
        "{stats}"
    );
    assert!(stats
        .to_string()
        .contains(&format!("node=amqps://localhost:{PORT}/%2f")));
    drop(guard);
    let docs = s
        .harness()
        .drain_at_least(&queue, 50, Duration::from_secs(30));
    assert_eq!(docs.len(), 50);
    let mut seq: Vec<i64> = docs
        .iter()
        .map(|d| d["fields"]["seq_no"].as_i64().expect("seq_no"))
        .collect();
    seq.sort_unstable();
    assert_eq!(seq, (0..50).collect::<Vec<i64>>());
    assert!(docs.iter().all(|d| d["message"] == "over mutual TLS"
        && d["fields"]["kind"] == "tls"
        && d["log"]["level"] == "INFO"));
}

fn external_logs_in_as_the_certificate_subject(s: &Setup) {
    let exchange = unique("tls-external");
    let queue = unique("tls-external-q");
    s.harness().bind(&exchange, &queue);
    let mut config = s.config(&exchange);
    // No user, no password: the certificate is the identity.
    config.broker_uri = format!("amqps://localhost:{PORT}/%2f");
    config.auth_mechanism = Some(AuthMechanism::External);
    let (layer, guard) = shipper(config);
    with_layer(layer, || {
        tracing::warn!(who = "external", "logged in by certificate")
    });
    assert!(
        guard.flush(Duration::from_secs(60)).is_complete(),
        "{}",
        guard.stats()
    );
    let connections = s
        .tls
        .node
        .ctl(&["list_connections", "user", "auth_mechanism", "ssl"]);
    assert!(
        connections
            .lines()
            .any(|l| l.contains(CLIENT_USER) && l.contains("EXTERNAL") && l.contains("true")),
        "no EXTERNAL TLS connection of {CLIENT_USER}: {connections}"
    );
    drop(guard);
    let docs = s
        .harness()
        .drain_at_least(&queue, 1, Duration::from_secs(30));
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["message"], "logged in by certificate");
    assert_eq!(docs[0]["fields"]["who"], "external");
}

fn no_client_certificate_is_refused(s: &Setup) {
    let mut config = s.config(&unique("tls-nocert"));
    config.tls_cert_file = None;
    config.tls_key_file = None;
    let (layer, guard) = shipper(config);
    with_layer(layer, || tracing::info!("never delivered"));
    let error = refused(&guard, "without a client certificate");
    assert!(error.contains("tls_cert_file"), "{error}");
}

fn a_server_certificate_from_another_ca_is_refused(s: &Setup) {
    let other = Ca::new("some other CA");
    let exchange = unique("tls-otherca");
    let queue = unique("tls-otherca-q");
    s.harness().bind(&exchange, &queue);
    let mut config = s.config(&exchange);
    config.tls_ca_file = Some(s.file("other-ca.pem", &other.pem));
    let (layer, guard) = shipper(config);
    with_layer(layer, || {
        tracing::info!(password = "never-sent", "never delivered")
    });
    let error = refused(&guard, "not trusted");
    assert!(error.contains("tls_ca_file"), "{error}");
    drop(guard);
    assert_eq!(s.harness().drain(&queue).len(), 0);
}

fn a_client_certificate_from_another_ca_is_refused(s: &Setup) {
    let other = Ca::new("a CA the broker does not trust");
    let stranger = other.client(CLIENT_USER);
    let mut config = s.config(&unique("tls-stranger"));
    config.tls_cert_file = Some(s.file("stranger.pem", &stranger.cert_pem));
    config.tls_key_file = Some(s.file("stranger.key", &stranger.key_pem));
    let (layer, guard) = shipper(config);
    with_layer(layer, || tracing::info!("never delivered"));
    let error = refused(&guard, "refused the client certificate");
    assert!(
        error.contains("signed by a CA the broker trusts"),
        "{error}"
    );
}

fn a_name_mismatch_is_refused(s: &Setup) {
    let mut config = s.config(&unique("tls-name"));
    config.tls_server_name = Some("broker.elsewhere.example".to_string());
    let (layer, guard) = shipper(config);
    with_layer(layer, || tracing::info!("never delivered"));
    let error = refused(&guard, "not valid for the name");
    assert!(error.contains("tls_server_name"), "{error}");
}

fn redaction_field_by_field_in_both_formats(s: &Setup) {
    for format in [Format::Ecs, Format::Classic] {
        let exchange = unique("tls-redact");
        let queue = unique("tls-redact-q");
        s.harness().bind(&exchange, &queue);
        let mut config = s.config(&exchange);
        config.format = format;
        config
            .identity
            .insert("api_token".to_string(), "id-secret-1".to_string());
        config
            .identity
            .insert("project".to_string(), "billing".to_string());
        config.redact_fields_extra = vec!["customer_ssn".to_string()];
        let (layer, guard) = shipper(config);
        with_layer(layer, || {
            let span = tracing::info_span!("request", session_id = "sess-42", route = "/pay");
            let _in = span.enter();
            tracing::info!(
                password = "hunter2",
                user = "alice",
                Authorization = "Bearer abcdefghijklmnop",
                customer_ssn = 123456789u64,
                order = "order 4111111111111112 shipped",
                card = "paid with 4111 1111 1111 1111",
                db = "postgres://app:pg-secret@db:5432/app",
                "login with AKIAIOSFODNN7EXAMPLE by alice"
            );
        });
        assert!(
            guard.flush(Duration::from_secs(60)).is_complete(),
            "{}",
            guard.stats()
        );
        drop(guard);
        let docs = s
            .harness()
            .drain_at_least(&queue, 1, Duration::from_secs(30));
        assert_eq!(docs.len(), 1, "{format}");
        let d = &docs[0];
        let text = d.to_string();
        for secret in [
            "hunter2",
            "abcdefghijklmnop",
            "123456789",
            "sess-42",
            "pg-secret",
            "AKIAIOSFODNN7EXAMPLE",
            "4111 1111 1111 1111",
            "id-secret-1",
        ] {
            assert!(!text.contains(secret), "{format}: {secret} leaked: {text}");
        }
        let field = |name: &str| -> Value {
            match format {
                Format::Ecs => d["fields"][name].clone(),
                _ => d[name].clone(),
            }
        };
        assert_eq!(field("password"), "[REDACTED]", "{format}");
        assert_eq!(field("Authorization"), "[REDACTED]", "{format}");
        assert_eq!(field("customer_ssn"), "[REDACTED]", "{format}");
        assert_eq!(field("session_id"), "[REDACTED]", "{format}: a span field");
        assert_eq!(field("route"), "/pay", "{format}");
        assert_eq!(field("user"), "alice", "{format}");
        assert_eq!(field("order"), "order 4111111111111112 shipped", "{format}");
        assert_eq!(field("card"), "paid with [REDACTED]", "{format}");
        assert_eq!(
            field("db"),
            "postgres://app:[REDACTED]@db:5432/app",
            "{format}"
        );
        assert_eq!(d["message"], "login with [REDACTED] by alice", "{format}");
        let (token, project) = match format {
            Format::Ecs => (&d["labels"]["api_token"], &d["labels"]["project"]),
            _ => (&d["api_token"], &d["project"]),
        };
        assert_eq!(
            (token, project),
            (&json!("[REDACTED]"), &json!("billing")),
            "{format}: {text}"
        );
    }

    // The keyed hash: equal secrets, equal replacements; the secret never shows.
    let exchange = unique("tls-hash");
    let queue = unique("tls-hash-q");
    s.harness().bind(&exchange, &queue);
    let mut config = s.config(&exchange);
    config.redact_with = RedactWith::Hash;
    config.redact_hash_key = Some("test-key".to_string());
    let (layer, guard) = shipper(config);
    with_layer(layer, || {
        tracing::info!(token = "t-1", "a");
        tracing::info!(token = "t-1", "b");
        tracing::info!(token = "t-2", "c");
    });
    assert!(
        guard.flush(Duration::from_secs(60)).is_complete(),
        "{}",
        guard.stats()
    );
    drop(guard);
    let mut docs = s
        .harness()
        .drain_at_least(&queue, 3, Duration::from_secs(30));
    docs.sort_by_key(|d| d["message"].as_str().unwrap_or_default().to_string());
    let hashes: Vec<&str> = docs
        .iter()
        .map(|d| d["fields"]["token"].as_str().expect("token"))
        .collect();
    assert!(
        hashes
            .iter()
            .all(|h| h.starts_with("[REDACTED:") && h.len() == 23),
        "{hashes:?}"
    );
    assert_eq!(hashes[0], hashes[1]);
    assert_ne!(hashes[0], hashes[2]);
}

#[test]
fn tls_against_a_node_that_requires_client_certificates() {
    let setup = Setup::start();
    type Case = fn(&Setup);
    let cases: [(&str, Case); 7] = [
        (
            "mutual_tls_delivers_documents_end_to_end",
            mutual_tls_delivers_documents_end_to_end,
        ),
        (
            "external_logs_in_as_the_certificate_subject",
            external_logs_in_as_the_certificate_subject,
        ),
        (
            "no_client_certificate_is_refused",
            no_client_certificate_is_refused,
        ),
        (
            "a_server_certificate_from_another_ca_is_refused",
            a_server_certificate_from_another_ca_is_refused,
        ),
        (
            "a_client_certificate_from_another_ca_is_refused",
            a_client_certificate_from_another_ca_is_refused,
        ),
        ("a_name_mismatch_is_refused", a_name_mismatch_is_refused),
        (
            "redaction_field_by_field_in_both_formats",
            redaction_field_by_field_in_both_formats,
        ),
    ];
    let failed: Vec<&str> = cases
        .iter()
        .filter(|(name, case)| {
            eprintln!("case {name}");
            catch_unwind(AssertUnwindSafe(|| case(&setup))).is_err()
        })
        .map(|(name, _)| *name)
        .collect();
    assert!(failed.is_empty(), "failed cases: {failed:?}");
}

#[test]
fn bad_tls_files_fail_at_build_naming_the_setting_and_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("files CA");
    let client = ca.client("files");
    let cert = write(dir.path(), "client.pem", &client.cert_pem);
    let key = write(dir.path(), "client.key", &client.key_pem);
    let garbage = write(dir.path(), "garbage.key", "not a key\n");
    let missing = dir.path().join("missing.key");
    let build = |cert: &PathBuf, key: &PathBuf| {
        logcollect::builder()
            .broker_uri(format!("amqps://localhost:{PORT}/%2f"))
            .configure(|c| {
                c.tls_cert_file = Some(cert.clone());
                c.tls_key_file = Some(key.clone());
            })
            .build()
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let e = build(&cert, &missing).expect_err("a missing key file");
    assert!(
        e.contains("tls_key_file") && e.contains("missing.key") && e.contains("cannot be read"),
        "{e}"
    );
    let e = build(&cert, &garbage).expect_err("a file without a key");
    assert!(
        e.contains("tls_key_file") && e.contains("no usable private key"),
        "{e}"
    );
    let e = build(&garbage, &key).expect_err("a file without a certificate");
    assert!(
        e.contains("tls_cert_file") && e.contains("no PEM certificate"),
        "{e}"
    );
    let e = logcollect::builder()
        .configure(|c| c.tls_cert_file = Some(cert.clone()))
        .build()
        .map(drop)
        .expect_err("a certificate without its key")
        .to_string();
    assert!(e.contains("tls_key_file"), "{e}");
}

#[test]
fn tls_settings_never_fall_back_to_plain_amqp() {
    let mut c = Config::default();
    c.tls_ca_file = Some(PathBuf::from("/nonexistent/ca.pem"));
    c.broker_uri = "amqps://a:1/%2f,amqp://u:secret@b:5672/%2f".to_string();
    let e = c
        .validate()
        .expect_err("amqp:// with TLS settings")
        .to_string();
    assert!(
        e.contains("node 2") && e.contains("never falls back"),
        "{e}"
    );
    assert!(!e.contains("secret"), "{e}");
    let mut c = Config::default();
    c.auth_mechanism = Some(AuthMechanism::External);
    c.broker_uri = "amqps://h/%2f".to_string();
    let e = c
        .validate()
        .expect_err("EXTERNAL without a certificate")
        .to_string();
    assert!(
        e.contains("auth_mechanism") && e.contains("tls_cert_file"),
        "{e}"
    );
}
