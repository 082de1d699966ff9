//! `transport = redis` against the real Redis (127.0.0.1:6379, or LOGCOLLECT_TEST_REDIS) and
//! servers of its own (`redis-server` on their own ports): a list and a stream each get every
//! `seq_no` in logging order as valid documents; a list at `redis.max_length` holds the
//! shipper back until a reader shrinks it; `WRONGTYPE` and a wrong password are named (never
//! the password); events spooled while Redis is away are replayed into it.

use std::time::{Duration, Instant};

use logcollect::{Config, RedisDataType, TransportKind};
use tracing_subscriber::layer::SubscriberExt;

use logcollect_test_support::redis::{connect as redis, free_port, url as redis_url, Server};

/// A key no other test or run uses.
fn unique_key(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("logcollect-test.{name}.{}.{nanos}", std::process::id())
}

fn configure(c: &mut Config, uri: &str, key: &str, data_type: RedisDataType) {
    c.transport = TransportKind::Redis;
    c.redis.uri = uri.to_string();
    c.redis.key = key.to_string();
    c.redis.data_type = data_type;
    c.batch.max_events = 50;
    c.backoff_max = Duration::from_millis(200);
    c.connect_timeout = Duration::from_secs(2);
}

/// Logs `seq_no` in `seqs` through `layer`.
fn log(layer: logcollect::LogcollectLayer, seqs: std::ops::Range<u64>) {
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for seq_no in seqs {
            tracing::info!(seq_no, "redis transport");
        }
    });
}

/// The documents of a list, oldest first (read without taking them).
fn list(conn: &mut redis::Connection, key: &str) -> Vec<serde_json::Value> {
    let values: Vec<String> = redis::cmd("LRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query(conn)
        .expect("LRANGE");
    values
        .iter()
        .map(|v| serde_json::from_str(v).expect("each value is one JSON document"))
        .collect()
}

fn seq_nos(docs: &[serde_json::Value]) -> Vec<u64> {
    docs.iter()
        .map(|d| {
            d.pointer("/fields/seq_no")
                .and_then(|v| v.as_u64())
                .unwrap_or_else(|| panic!("seq_no in {d}"))
        })
        .collect()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_list_gets_every_event_in_logging_order_as_one_document_per_value() {
    const N: u64 = 2000;
    let mut conn = redis();
    let key = unique_key("list");
    let (layer, guard) = logcollect::builder()
        .configure(|c| configure(c, &redis_url(), &key, RedisDataType::List))
        .build()
        .expect("build");
    log(layer, 0..N);
    assert!(
        guard.flush(Duration::from_secs(30)).is_complete(),
        "{}",
        guard.stats()
    );
    let docs = list(&mut conn, &key);
    assert_eq!(seq_nos(&docs), (0..N).collect::<Vec<_>>());
    let first = &docs[0];
    assert_eq!(first["message"], "redis transport");
    assert_eq!(first["log"]["level"], "INFO");
    assert_eq!(
        first["ecs"]["version"].as_str().map(|v| v.is_empty()),
        Some(false)
    );
    let stats = guard.stats();
    assert_eq!((stats.confirmed, stats.dropped.total()), (N, 0), "{stats}");
    assert!(stats.node.unwrap_or_default().starts_with("redis://"));
    let _: () = redis::cmd("DEL").arg(&key).query(&mut conn).expect("DEL");
}

#[test]
fn a_stream_gets_every_event_in_logging_order_with_its_service() {
    const N: u64 = 1000;
    let mut conn = redis();
    let key = unique_key("stream");
    let (layer, guard) = logcollect::builder()
        .service_name("stream-test")
        .configure(|c| {
            configure(c, &redis_url(), &key, RedisDataType::Stream);
            c.redis.max_length = 0;
        })
        .build()
        .expect("build");
    log(layer, 0..N);
    assert!(
        guard.flush(Duration::from_secs(30)).is_complete(),
        "{}",
        guard.stats()
    );
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .expect("XRANGE");
    let mut docs = Vec::new();
    for entry in &entries.ids {
        let service: String = entry.get("service").expect("service field");
        assert_eq!(service, "stream-test");
        let format: String = entry.get("format").expect("format field");
        assert_eq!(format, "ecs");
        let doc: String = entry.get("doc").expect("doc field");
        docs.push(serde_json::from_str::<serde_json::Value>(&doc).expect("JSON doc"));
    }
    assert_eq!(seq_nos(&docs), (0..N).collect::<Vec<_>>());
    let _: () = redis::cmd("DEL").arg(&key).query(&mut conn).expect("DEL");
}

#[test]
fn a_list_at_its_length_cap_holds_the_shipper_until_a_reader_shrinks_it() {
    const N: u64 = 600;
    const CAP: u64 = 100;
    let mut conn = redis();
    let key = unique_key("capped");
    let (layer, guard) = logcollect::builder()
        .configure(|c| {
            configure(c, &redis_url(), &key, RedisDataType::List);
            c.redis.max_length = CAP;
        })
        .build()
        .expect("build");
    log(layer, 0..N);
    wait_for("the shipper to hold", Duration::from_secs(30), || {
        guard
            .stats()
            .last_error
            .is_some_and(|e| e.contains("redis.max_length"))
    });
    let held: u64 = redis::cmd("LLEN").arg(&key).query(&mut conn).expect("LLEN");
    assert!(held >= CAP, "held at the cap: {held}");
    // At most one message (50 events) past the cap.
    assert!(held <= CAP + 50, "the shipper held back: {held} of {N}");
    // A reader takes values as Logstash's redis input does, oldest first.
    let mut read = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (read.len() as u64) < N {
        assert!(Instant::now() < deadline, "read {} of {N}", read.len());
        let values: Vec<String> = redis::cmd("LPOP")
            .arg(&key)
            .arg(50)
            .query(&mut conn)
            .unwrap_or_default();
        if values.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
        read.extend(
            values
                .iter()
                .map(|v| serde_json::from_str::<serde_json::Value>(v).expect("JSON")),
        );
    }
    assert_eq!(seq_nos(&read), (0..N).collect::<Vec<_>>());
    assert!(guard.flush(Duration::from_secs(10)).is_complete());
    let stats = guard.stats();
    assert!(stats.blocked_time > Duration::ZERO, "{stats}");
    assert_eq!(stats.confirmed, N, "{stats}");
}

#[test]
fn a_key_of_another_type_is_named_and_nothing_is_lost_once_it_is_fixed() {
    let mut conn = redis();
    let key = unique_key("wrongtype");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("a string")
        .query(&mut conn)
        .expect("SET");
    let (layer, guard) = logcollect::builder()
        .configure(|c| configure(c, &redis_url(), &key, RedisDataType::List))
        .build()
        .expect("build");
    log(layer, 0..10);
    wait_for("WRONGTYPE to be reported", Duration::from_secs(30), || {
        guard
            .stats()
            .last_error
            .is_some_and(|e| e.contains("WRONGTYPE") && e.contains("redis.data_type"))
    });
    assert_eq!(guard.stats().confirmed, 0);
    let _: () = redis::cmd("DEL").arg(&key).query(&mut conn).expect("DEL");
    assert!(
        guard.flush(Duration::from_secs(30)).is_complete(),
        "{}",
        guard.stats()
    );
    assert_eq!(seq_nos(&list(&mut conn, &key)), (0..10).collect::<Vec<_>>());
    let _: () = redis::cmd("DEL").arg(&key).query(&mut conn).expect("DEL");
}

#[test]
fn a_wrong_password_is_named_without_the_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(free_port(), &["--requirepass", "right-one"], dir.path());
    let uri = format!("redis://:wrong-one-s3cret@127.0.0.1:{}/0", server.port);
    let (layer, guard) = logcollect::builder()
        .configure(|c| configure(c, &uri, "logs", RedisDataType::List))
        .build()
        .expect("build");
    log(layer, 0..1);
    wait_for("the refusal", Duration::from_secs(30), || {
        guard
            .stats()
            .last_error
            .is_some_and(|e| e.contains("redis.uri"))
    });
    let stats = guard.stats();
    let error = stats.last_error.clone().unwrap_or_default();
    assert!(
        error.to_lowercase().contains("authentication failed"),
        "{error}"
    );
    assert!(!format!("{stats} {error}").contains("s3cret"), "{stats}");
}

#[test]
fn events_spooled_while_redis_is_away_are_replayed_into_it_in_order() {
    const N: u64 = 500;
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool");
    let port = free_port();
    let uri = format!("redis://127.0.0.1:{port}/0");
    let (layer, guard) = logcollect::builder()
        .spool_dir(&spool)
        .configure(|c| configure(c, &uri, "logs", RedisDataType::List))
        .build()
        .expect("build");
    log(layer, 0..N);
    wait_for("the events to be spooled", Duration::from_secs(30), || {
        guard.stats().spooled == N
    });
    let server = Server::start(port, &[], dir.path());
    assert!(
        guard.flush(Duration::from_secs(60)).is_complete(),
        "{}",
        guard.stats()
    );
    let mut conn = redis::Client::open(uri.as_str())
        .and_then(|c| c.get_connection())
        .expect("connect");
    assert_eq!(
        seq_nos(&list(&mut conn, "logs")),
        (0..N).collect::<Vec<_>>()
    );
    let stats = guard.stats();
    assert_eq!(
        (stats.replayed, stats.confirmed + stats.recovered),
        (N, N),
        "{stats}"
    );
    drop(server);
}

/// Every `seq_no` in `docs` at least once: the duplicates.
fn duplicates_of_all(docs: &[serde_json::Value], n: u64) -> u64 {
    let mut seen = vec![0u64; n as usize];
    for seq in seq_nos(docs) {
        let slot = seen
            .get_mut(seq as usize)
            .unwrap_or_else(|| panic!("seq_no {seq} was never logged"));
        *slot += 1;
    }
    let missing: Vec<usize> = (0..seen.len()).filter(|&i| seen[i] == 0).collect();
    assert!(
        missing.is_empty(),
        "{} seq_no missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    seen.iter().map(|c| c - 1).sum()
}

#[test]
fn a_redis_killed_and_restarted_mid_stream_with_appendfsync_always_loses_nothing() {
    const N: u64 = 20_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let aof = ["--appendonly", "yes", "--appendfsync", "always"];
    let server = Server::start(port, &aof, dir.path());
    let uri = format!("redis://127.0.0.1:{port}/0");
    let (layer, guard) = logcollect::builder()
        .configure(|c| configure(c, &uri, "logs", RedisDataType::List))
        .build()
        .expect("build");
    let logger = std::thread::spawn(move || log(layer, 0..N));
    let mut conn = redis::Client::open(uri.as_str())
        .and_then(|c| c.get_connection())
        .expect("connect");
    wait_for("a first part to arrive", Duration::from_secs(60), || {
        redis::cmd("LLEN")
            .arg("logs")
            .query::<u64>(&mut conn)
            .is_ok_and(|n| n >= 2000)
    });
    // SIGKILL: what Redis acknowledged is in its append-only file, fsynced.
    drop(server);
    let server = Server::start(port, &aof, dir.path());
    logger.join().expect("logger");
    assert!(
        guard.flush(Duration::from_secs(60)).is_complete(),
        "{}",
        guard.stats()
    );
    let mut conn = redis::Client::open(uri.as_str())
        .and_then(|c| c.get_connection())
        .expect("connect");
    let docs = list(&mut conn, "logs");
    let duplicates = duplicates_of_all(&docs, N);
    let stats = guard.stats();
    eprintln!("{duplicates} duplicates; {stats}");
    // Only what was in flight at the kill can be there twice: at most the confirm window's
    // messages (64 of 50 events).
    assert!(duplicates <= 64 * 50, "{duplicates} duplicates; {stats}");
    assert!(stats.reconnects >= 1, "{stats}");
    drop(server);
}

#[test]
fn a_spool_written_under_amqp_is_replayed_into_redis() {
    const N: u64 = 300;
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool");
    let key = unique_key("from-amqp");
    {
        // A broker that is not there: everything goes to the spool at shutdown.
        let (layer, guard) = logcollect::builder()
            .broker_uri(format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port()))
            // The route kept with each spooled message is the Redis key on replay.
            .routing_key(&key)
            .spool_dir(&spool)
            .configure(|c| c.shutdown_timeout = Duration::from_millis(200))
            .build()
            .expect("build");
        log(layer, 0..N);
        drop(guard);
    }
    let (_layer, guard) = logcollect::builder()
        .spool_dir(&spool)
        .configure(|c| configure(c, &redis_url(), &key, RedisDataType::List))
        .build()
        .expect("build");
    wait_for("the spool to be replayed", Duration::from_secs(60), || {
        guard.stats().recovered == N
    });
    let mut conn = redis();
    assert_eq!(seq_nos(&list(&mut conn, &key)), (0..N).collect::<Vec<_>>());
    let _: () = redis::cmd("DEL").arg(&key).query(&mut conn).expect("DEL");
}

#[test]
fn rediss_with_the_tls_settings_and_a_client_certificate_delivers_every_event() {
    const N: u64 = 200;
    let dir = tempfile::tempdir().expect("tempdir");
    // The plain port is the test's own way in; the shipper uses TLS with a client certificate.
    let tls = logcollect_test_support::redis::TlsServer::start(dir.path());
    let (ca_file, client_cert, client_key) = (&tls.ca_file, &tls.client_cert, &tls.client_key);
    let server = &tls.server;
    let uri = tls.uri();
    let (layer, guard) = logcollect::builder()
        .configure(|c| {
            configure(c, &uri, "logs", RedisDataType::List);
            c.tls_ca_file = Some(ca_file.clone());
            c.tls_cert_file = Some(client_cert.clone());
            c.tls_key_file = Some(client_key.clone());
        })
        .build()
        .expect("build");
    log(layer, 0..N);
    assert!(
        guard.flush(Duration::from_secs(30)).is_complete(),
        "{}",
        guard.stats()
    );
    assert!(guard
        .stats()
        .node
        .unwrap_or_default()
        .starts_with("rediss://"));
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{}/0", server.port))
        .and_then(|c| c.get_connection())
        .expect("connect");
    assert_eq!(
        seq_nos(&list(&mut conn, "logs")),
        (0..N).collect::<Vec<_>>()
    );
}

#[test]
fn tls_settings_with_a_plain_redis_uri_are_refused_at_build() {
    let error = logcollect::builder()
        .configure(|c| {
            configure(c, "redis://127.0.0.1:6379/0", "logs", RedisDataType::List);
            c.tls_ca_file = Some("ca.pem".into());
        })
        .build()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("`tls_ca_file`") && error.contains("rediss://"),
        "{error}"
    );
}
