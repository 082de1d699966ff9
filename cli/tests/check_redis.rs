//! `logcollect check` with `transport = redis`, against the real Redis (127.0.0.1:6379, or
//! LOGCOLLECT_TEST_REDIS) and a server of the test's own: a list and a stream pass with the
//! test document pushed and seen; a key of another type, a full list, a wrong password and an
//! unreachable node each fail at their step with a fix, never showing the password.

mod common;

use std::time::Duration;

use common::{check_failure, logcollect, run_with_input, unique};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

use logcollect_test_support::redis::{connect as redis, free_port, url as redis_url, Server};

/// `check --json` with `transport = redis` and `vars`: the exit code and the report.
fn check(vars: &[(&str, &str)]) -> (i32, Value, String) {
    let mut cmd = logcollect("unused");
    cmd.args(["check", "--json"])
        .env("LOGCOLLECT_TRANSPORT", "redis")
        .env("LOGCOLLECT_CONNECT_TIMEOUT_MS", "3000");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = run_with_input(cmd, Vec::new(), LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("check --json printed no JSON ({e}): {stdout}"));
    (out.status.code().expect("exit code"), report, stdout)
}

fn steps(report: &Value) -> Vec<(String, String)> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap_or("").to_string(),
                s["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn all_ok(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|n| (n.to_string(), "ok".to_string()))
        .collect()
}

#[test]
fn a_list_passes_with_the_test_document_pushed_and_seen() {
    let key = unique("check-redis-list");
    let (code, report, _) = check(&[
        ("LOGCOLLECT_REDIS__URI", &redis_url()),
        ("LOGCOLLECT_REDIS__KEY", &key),
    ]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        steps(&report),
        all_ok(&["config", "connect", "key", "length", "publish", "seen"])
    );
    let mut conn = redis();
    let values: Vec<String> = redis::cmd("LRANGE")
        .arg(&key)
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .expect("LRANGE");
    assert_eq!(values.len(), 1);
    let doc: Value = serde_json::from_str(&values[0]).expect("a JSON document");
    assert_eq!(doc["fields"]["check"], true);
    assert_eq!(doc["message"], "logcollect check: test event");
    let _: () = redis::cmd("DEL").arg(&key).query(&mut conn).expect("DEL");
}

#[test]
fn a_stream_passes_with_its_entry_seen() {
    let key = unique("check-redis-stream");
    let (code, report, _) = check(&[
        ("LOGCOLLECT_REDIS__URI", &redis_url()),
        ("LOGCOLLECT_REDIS__KEY", &key),
        ("LOGCOLLECT_REDIS__DATA_TYPE", "stream"),
    ]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        steps(&report),
        all_ok(&["config", "connect", "key", "length", "publish", "seen"])
    );
    let mut conn = redis();
    let len: u64 = redis::cmd("XLEN").arg(&key).query(&mut conn).expect("XLEN");
    assert_eq!(len, 1);
    let _: () = redis::cmd("DEL").arg(&key).query(&mut conn).expect("DEL");
}

#[test]
fn a_key_of_another_type_fails_at_the_key_step() {
    let key = unique("check-redis-wrongtype");
    let mut conn = redis();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("x")
        .query(&mut conn)
        .expect("SET");
    let (code, report, _) = check(&[
        ("LOGCOLLECT_REDIS__URI", &redis_url()),
        ("LOGCOLLECT_REDIS__KEY", &key),
    ]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(check_failure(&report), ("key".into(), "wrong_type".into()));
    let _: () = redis::cmd("DEL").arg(&key).query(&mut conn).expect("DEL");
}

#[test]
fn a_list_at_its_cap_fails_at_the_length_step_and_gets_nothing_pushed() {
    let key = unique("check-redis-full");
    let mut conn = redis();
    let _: () = redis::cmd("RPUSH")
        .arg(&key)
        .arg(&["a", "b", "c"][..])
        .query(&mut conn)
        .expect("RPUSH");
    let (code, report, _) = check(&[
        ("LOGCOLLECT_REDIS__URI", &redis_url()),
        ("LOGCOLLECT_REDIS__KEY", &key),
        ("LOGCOLLECT_REDIS__MAX_LENGTH", "3"),
    ]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        check_failure(&report),
        ("length".into(), "list_full".into())
    );
    let len: u64 = redis::cmd("LLEN").arg(&key).query(&mut conn).expect("LLEN");
    assert_eq!(len, 3, "nothing pushed");
    let _: () = redis::cmd("DEL").arg(&key).query(&mut conn).expect("DEL");
}

#[test]
fn a_wrong_password_and_an_unreachable_node_fail_at_connect_without_the_password() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique("check-redis-auth"));
    std::fs::create_dir_all(&dir).expect("test dir");
    let port = free_port();
    let server = Server::start(port, &["--requirepass", "the-right-one"], &dir);
    let uri = format!("redis://:wr0ng-s3cret@127.0.0.1:{port}/0");
    let (code, report, stdout) = check(&[("LOGCOLLECT_REDIS__URI", &uri)]);
    drop(server);
    assert_eq!(code, 1, "{report}");
    assert_eq!(check_failure(&report), ("connect".into(), "refused".into()));
    assert!(
        report["failure"]["fix"]
            .as_str()
            .is_some_and(|f| f.contains("redis.uri")),
        "{report}"
    );
    assert!(!stdout.contains("wr0ng-s3cret"), "{stdout}");

    // The server is gone: nothing listens there now.
    let (code, report, _) = check(&[(
        "LOGCOLLECT_REDIS__URI",
        &format!("redis://127.0.0.1:{port}/0"),
    )]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        check_failure(&report),
        ("connect".into(), "unreachable".into())
    );

    // A list of nodes none of which answers is named by its own setting.
    let other = free_port();
    let (code, report, _) = check(&[(
        "LOGCOLLECT_REDIS__URI",
        &format!("redis://127.0.0.1:{port}/0,redis://127.0.0.1:{other}/0"),
    )]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        check_failure(&report),
        ("nodes".into(), "no_node_answers".into())
    );
    let headline = report["failure"]["headline"].as_str().unwrap_or_default();
    assert!(
        headline.contains("none of the 2 nodes of `redis.uri` answers"),
        "{report}"
    );
}
