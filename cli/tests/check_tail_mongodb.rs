//! `logcollect check` with `transport = mongodb` and `tail --from mongodb://…`, against
//! nx-27017 servers the tests start (test-support's `mongodb::Server`).
//!
//! check: a fresh collection passes, created as the shipper creates it, with the test document
//! read back field by field (nx-27017 cannot index `@timestamp`: the indexes step is a
//! warning naming each index); an existing collection with other options, an unreachable
//! server and a refused login (nx-27017 has no users) each fail at their step with a fix, never
//! showing the password. (nx-27017 keeps no index name of ours: an index of the shipper's name
//! with other keys is the unit tests' of cli/src/check/mongodb.rs.)
//! tail: the documents written after it started, not those before, with the filters and the
//! renderer of AMQP tail (control characters escaped, a document above 1 MiB named, not shown).

mod common;

use std::time::Duration;

use common::{check_failure, logcollect, run_with_input, Tail};
use logcollect::{Config, MongoWriteConcern, TransportKind};
use logcollect_test_support::mongodb::{free_port, Reader, Server};
use mongodb::bson::{doc, Bson, DateTime};
use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt;

const LIMIT: Duration = Duration::from_secs(60);

fn server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(free_port(), dir.path());
    (dir, server)
}

/// `check` with `transport = mongodb` and `vars`: exit code, report (`--json`, else `None`)
/// and standard output.
fn check(json: bool, vars: &[(&str, &str)]) -> (i32, Option<Value>, String) {
    let mut cmd = logcollect("unused");
    cmd.arg("check")
        .env("LOGCOLLECT_TRANSPORT", "mongodb")
        .env("LOGCOLLECT_CONNECT_TIMEOUT_MS", "2000")
        .env("LOGCOLLECT_SERVICE_NAME", "check-svc");
    if json {
        cmd.arg("--json");
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = run_with_input(cmd, Vec::new(), LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = json.then(|| {
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("check --json printed no JSON ({e}): {stdout}"))
    });
    (out.status.code().expect("exit code"), report, stdout)
}

/// Each step's (name, status, summary).
fn steps(report: &Value) -> Vec<(String, String, String)> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            let text = |k: &str| s[k].as_str().unwrap_or("").to_string();
            (text("step"), text("status"), text("summary"))
        })
        .collect()
}

#[test]
fn check_passes_on_a_fresh_collection_and_the_test_document_is_read_back() {
    let (_dir, server) = server();
    let coll = "fresh";
    let (code, report, _) = check(
        true,
        &[
            ("LOGCOLLECT_MONGODB__URI", &server.uri()),
            ("LOGCOLLECT_MONGODB__COLLECTION", coll),
            ("LOGCOLLECT_MONGODB__EXPIRE_AFTER_MS", "604800000"),
        ],
    );
    let report = report.expect("report");
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["failure"], Value::Null);
    let steps = steps(&report);
    let names: Vec<(&str, &str)> = steps
        .iter()
        .map(|(n, s, _)| (n.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("config", "ok"),
            ("connect", "ok"),
            ("login", "skipped"),
            ("collection", "ok"),
            ("indexes", "warning"),
            ("publish", "ok"),
            ("seen", "ok"),
        ],
        "{report}"
    );
    let port = server.port;
    assert_eq!(
        steps[0].2,
        format!(
            "mongodb 127.0.0.1:{port}, collection `logcollect.fresh` (documents expire 604800 s \
             after their time), write concern majority, format ecs"
        )
    );
    assert_eq!(steps[1].2, format!("127.0.0.1:{port} answers: primary"));
    assert_eq!(
        steps[2].2,
        "no user in `mongodb.uri`: the server is used without logging in"
    );
    assert_eq!(
        steps[3].2,
        "`logcollect.fresh` did not exist: created as the shipper creates it (documents \
         expire 604800 s after their time)"
    );
    // nx-27017 indexes no field named `@timestamp`: each refusal named, not a failure.
    for index in [
        "logcollect_time",
        "logcollect_service_time",
        "logcollect_level_time",
    ] {
        assert!(
            steps[4].2.contains(&format!("`{index}`: ")),
            "{}",
            steps[4].2
        );
    }
    assert!(
        steps[4]
            .2
            .contains("the shipper delivers without them (and reports it)"),
        "{}",
        steps[4].2
    );

    let reader = Reader::new(&server.uri());
    let info = reader.collection_info(coll);
    assert_eq!(info.get_str("name"), Ok(coll));
    let docs = reader.docs(coll);
    assert_eq!(docs.len(), 1, "one test document");
    let d = &docs[0];
    let id = d.get_str("_id").expect("_id a string");
    assert_eq!(
        d.get_document("event").and_then(|e| e.get_str("id")),
        Ok(id),
        "_id is event.id"
    );
    assert!(
        steps[5].2.starts_with(&format!(
            "the test document (_id = event.id {id}) was inserted into `logcollect.fresh`"
        )),
        "{}",
        steps[5].2
    );
    let Some(Bson::DateTime(time)) = d.get("@timestamp") else {
        panic!("@timestamp is a date: {d}");
    };
    assert_eq!(
        steps[6].2,
        format!(
            "the test document is in `logcollect.fresh`, its @timestamp a date ({})",
            time.try_to_rfc3339_string().expect("a time")
        )
    );
    assert_eq!(d.get_str("message"), Ok("logcollect check: test event"));
    assert_eq!(
        d.get_document("fields").and_then(|f| f.get_bool("check")),
        Ok(true)
    );
    assert_eq!(
        d.get_document("service").and_then(|s| s.get_str("name")),
        Ok("check-svc")
    );
    assert_eq!(
        d.get_document("log").and_then(|l| l.get_str("level")),
        Ok("INFO")
    );
    assert_eq!(
        d.get_document("log").and_then(|l| l.get_str("logger")),
        Ok("logcollect::check")
    );

    // The same check again: the collection is there now, as configured.
    let (code, report, _) = check(
        true,
        &[
            ("LOGCOLLECT_MONGODB__URI", &server.uri()),
            ("LOGCOLLECT_MONGODB__COLLECTION", coll),
        ],
    );
    let report = report.expect("report");
    assert_eq!(code, 0, "{report}");
    let steps = self::steps(&report);
    assert_eq!(
        (steps[3].0.as_str(), steps[3].2.as_str()),
        ("collection", "`logcollect.fresh` exists: not capped")
    );
    assert_eq!(reader.count(coll), 2);
}

#[test]
fn check_prints_its_steps_one_line_each() {
    let (_dir, server) = server();
    let (code, _, stdout) = check(
        false,
        &[
            ("LOGCOLLECT_MONGODB__URI", &server.uri()),
            ("LOGCOLLECT_MONGODB__COLLECTION", "human"),
            ("LOGCOLLECT_MONGODB__CAPPED_BYTES", "1048576"),
            ("LOGCOLLECT_MONGODB__CAPPED_MAX", "1000"),
            ("LOGCOLLECT_MONGODB__WRITE_CONCERN", "1"),
        ],
    );
    assert_eq!(code, 0, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let port = server.port;
    assert_eq!(lines.len(), 8, "{stdout}");
    assert_eq!(
        lines[0],
        format!(
            "ok    config    mongodb 127.0.0.1:{port}, collection `logcollect.human` (capped \
             at 1048576 bytes, at most 1000 documents), write concern 1, format ecs"
        )
    );
    assert_eq!(
        lines[1],
        format!("ok    connect   127.0.0.1:{port} answers: primary")
    );
    assert_eq!(
        lines[2],
        "skip  login     no user in `mongodb.uri`: the server is used without logging in"
    );
    assert_eq!(
        lines[3],
        "ok    collection `logcollect.human` did not exist: created as the shipper creates it \
         (capped at 1048576 bytes, at most 1000 documents)"
    );
    assert!(lines[4].starts_with("WARN  indexes   "), "{}", lines[4]);
    assert!(
        lines[5].starts_with("ok    publish   the test document (_id = event.id ")
            && lines[5].ends_with(
                ") was inserted into `logcollect.human`, acknowledged with write concern 1"
            ),
        "{}",
        lines[5]
    );
    assert!(
        lines[6].starts_with("ok    seen      the test document is in `logcollect.human`"),
        "{}",
        lines[6]
    );
    assert_eq!(
        lines[7],
        "check passed: the test document was inserted into MongoDB and read back"
    );
}

#[test]
fn check_fails_on_a_collection_with_other_options_and_writes_nothing() {
    let (_dir, server) = server();
    let reader = Reader::new(&server.uri());
    reader.insert(
        "plain",
        vec![doc! { "_id": "x", "message": "already here" }],
    );
    let (code, report, _) = check(
        true,
        &[
            ("LOGCOLLECT_MONGODB__URI", &server.uri()),
            ("LOGCOLLECT_MONGODB__COLLECTION", "plain"),
            ("LOGCOLLECT_MONGODB__CAPPED_BYTES", "1048576"),
        ],
    );
    let report = report.expect("report");
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        check_failure(&report),
        ("collection".into(), "wrong_options".into())
    );
    let f = &report["failure"];
    assert_eq!(
        f["headline"],
        "`logcollect.plain` is not the collection the configuration asks for"
    );
    assert!(
        f["detail"].as_str().is_some_and(|d| d.starts_with(
            "it is not capped; the configuration says capped at \
                                            1048576 bytes"
        )),
        "{report}"
    );
    assert!(
        f["fix"].as_str().is_some_and(|d| d.contains("drop it")),
        "{report}"
    );
    assert_eq!(reader.count("plain"), 1, "no test document");
}

#[test]
fn check_names_an_unreachable_server_and_a_refused_login_without_the_password() {
    let port = free_port();
    let (code, report, _) = check(
        true,
        &[(
            "LOGCOLLECT_MONGODB__URI",
            &format!("mongodb://127.0.0.1:{port}"),
        )],
    );
    let report = report.expect("report");
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        check_failure(&report),
        ("connect".into(), "unreachable".into())
    );
    assert_eq!(
        report["failure"]["headline"],
        format!("127.0.0.1:{port}: MongoDB does not answer")
    );

    // nx-27017 has no users: every login is refused, as a wrong password is.
    let (_dir, server) = server();
    let uri = format!(
        "mongodb://app:wr0ng-s3cret@127.0.0.1:{}/?authSource=admin",
        server.port
    );
    let (code, report, stdout) = check(true, &[("LOGCOLLECT_MONGODB__URI", &uri)]);
    let report = report.expect("report");
    assert_eq!(code, 1, "{report}");
    assert_eq!(check_failure(&report), ("login".into(), "refused".into()));
    assert_eq!(
        report["failure"]["headline"],
        format!("127.0.0.1:{}: the server refused the login", server.port)
    );
    assert!(
        report["failure"]["fix"]
            .as_str()
            .is_some_and(|f| f.contains("user name and password of `mongodb.uri`")),
        "{report}"
    );
    assert_eq!(steps(&report)[1].1, "ok", "the server answered: {report}");
    assert!(!stdout.contains("wr0ng-s3cret"), "{stdout}");
    assert!(
        stdout.contains("mongodb://app:****@") || !stdout.contains("mongodb://app:"),
        "{stdout}"
    );

    // Two hosts, neither answering.
    let uri = format!(
        "mongodb://127.0.0.1:{},127.0.0.1:{}",
        free_port(),
        free_port()
    );
    let (code, report, _) = check(true, &[("LOGCOLLECT_MONGODB__URI", &uri)]);
    let report = report.expect("report");
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        check_failure(&report),
        ("nodes".into(), "no_node_answers".into())
    );
    let failed: Vec<_> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["status"] == "failed" && s.get("node").is_some())
        .map(|s| (s["node"].as_u64(), s["code"].as_str().map(str::to_string)))
        .collect();
    assert_eq!(
        failed,
        [
            (Some(1), Some("unreachable".to_string())),
            (Some(2), Some("unreachable".to_string()))
        ],
        "{report}"
    );
}

/// A shipper writing to `collection` of `uri`, as `service`, with `log` run under its layer;
/// waits until everything is confirmed.
fn emit(uri: &str, collection: &str, service: &str, log: impl FnOnce()) {
    let (layer, guard) = logcollect::builder()
        .service_name(service)
        .hostname("mongo-host")
        .configure(|c: &mut Config| {
            c.transport = TransportKind::Mongodb;
            c.mongodb.uri = uri.to_string();
            c.mongodb.collection = collection.to_string();
            c.mongodb.write_concern = MongoWriteConcern::Primary;
        })
        .build()
        .expect("build the shipper");
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), log);
    assert!(
        guard.flush(LIMIT).is_complete(),
        "undelivered: {}",
        guard.stats()
    );
    assert_eq!(guard.stats().dropped.total(), 0, "{}", guard.stats());
}

fn start_tail(uri: &str, args: &[&str]) -> Tail {
    let mut all = vec!["--from", uri];
    all.extend_from_slice(args);
    Tail::start("unused", &all)
}

#[test]
fn tail_prints_the_documents_written_after_it_started_and_not_those_before() {
    let (_dir, server) = server();
    let uri = server.uri();
    let coll = "tailed";
    emit(&uri, coll, "before-svc", || {
        for seq_no in 0..5u64 {
            tracing::info!(seq_no, "written before tail");
        }
    });
    let mut tail = start_tail(&uri, &["--key", coll, "--json", "--count", "3"]);
    let listening = tail.wait_for_stderr("listening on", LIMIT);
    assert!(
        listening.contains(&format!("collection `logcollect.{coll}` of {uri}"))
            && listening.ends_with("(polling by @timestamp and _id)"),
        "{listening}"
    );
    // A document too large to print, named on standard error.
    let reader = Reader::new(&uri);
    reader.insert(
        coll,
        vec![doc! {
            "_id": "big",
            "@timestamp": DateTime::now(),
            "message": "x".repeat(1 << 20),
        }],
    );
    tail.wait_for_stderr("above 1 MiB", LIMIT);
    emit(&uri, coll, "after-svc", || {
        for seq_no in 10..13u64 {
            tracing::warn!(seq_no, "written after tail");
        }
    });
    let (status, stdout, stderr) = tail.finish(LIMIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("a document of `logcollect.") && stderr.contains("_id String(\"big\")"),
        "{stderr}"
    );
    let docs: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let mut seqs: Vec<u64> = docs
        .iter()
        .map(|d| d["fields"]["seq_no"].as_u64().expect("seq_no"))
        .collect();
    // In (@timestamp, _id) order: events of one millisecond by their ids.
    let keys: Vec<(String, String)> = docs
        .iter()
        .map(|d| {
            let text = |v: &Value| v.as_str().unwrap_or("").to_string();
            (text(&d["@timestamp"]), text(&d["event"]["id"]))
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "in (@timestamp, _id) order");
    seqs.sort_unstable();
    assert_eq!(seqs, [10, 11, 12], "the new ones, each once, not the old");
    let stored = reader.docs(coll);
    for d in &docs {
        assert_eq!(d["message"], "written after tail");
        assert_eq!(d["service"]["name"], "after-svc");
        assert_eq!(d["host"]["hostname"], "mongo-host");
        assert_eq!(d["log"]["level"], "WARN");
        assert!(d.get("_id").is_none(), "_id is the event id: left out");
        // The date as the server keeps it (milliseconds), in RFC 3339.
        let id = d["event"]["id"].as_str().expect("event.id");
        let same = stored
            .iter()
            .find(|s| s.get_str("_id") == Ok(id))
            .expect("stored");
        let time = same.get_datetime("@timestamp").expect("a date");
        assert_eq!(
            d["@timestamp"],
            time.try_to_rfc3339_string().expect("RFC 3339")
        );
    }
}

#[test]
fn tail_filters_and_escapes_as_amqp_tail_does() {
    let (_dir, server) = server();
    let uri = server.uri();
    let coll = "filtered";
    let reader = Reader::new(&uri);
    // No collection yet: tail follows it from its first document.
    let mut tail = start_tail(
        &uri,
        &[
            "--key",
            coll,
            "--level",
            "warn",
            "--service",
            "svc-a",
            "--grep",
            "^keep",
            "--count",
            "2",
            "--color",
            "never",
        ],
    );
    tail.wait_for_stderr("listening on", LIMIT);
    emit(&uri, coll, "svc-b", || {
        tracing::error!("keep? no: another service");
    });
    emit(&uri, coll, "svc-a", || {
        tracing::info!("keep? no: below warn");
        tracing::warn!("drop: does not match");
        tracing::warn!(order = 1u64, "keep this one");
    });
    // Written by something else than the shipper: a control sequence in the message.
    let time = DateTime::now();
    reader.insert(
        coll,
        vec![doc! {
            "_id": "foreign",
            "@timestamp": time,
            "message": "keep\u{1b}[31m red\nsecond line",
            "log": { "level": "ERROR", "logger": "other" },
            "service": { "name": "svc-a" },
            "host": { "hostname": "h" },
            "process": { "pid": 7 },
        }],
    );
    let (status, stdout, stderr) = tail.finish(LIMIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let (first_time, first) = lines[0].split_once(' ').expect("time first");
    assert!(first_time.ends_with('Z'), "{}", lines[0]);
    assert_eq!(
        first,
        format!(
            "WARN  svc-a@mongo-host[{}] check_tail_mongodb: keep this one order=1",
            std::process::id()
        )
    );
    assert_eq!(
        lines[1],
        format!(
            "{} ERROR svc-a@h[7] other: keep\\u{{1b}}[31m red\\nsecond line",
            time.try_to_rfc3339_string().expect("RFC 3339")
        )
    );
}
