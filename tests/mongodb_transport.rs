//! `transport = mongodb` against nx-27017, a MongoDB wire-protocol server each test starts on
//! its own port and data directory (test-support's `mongodb::Server`): every `seq_no` arrives once, its time a BSON date; documents sent
//! again are absorbed by their `_id`; the collection and its indexes are made as configured;
//! an unreachable server is named; a spool written during an outage is replayed; a server
//! killed and restarted mid-stream loses nothing and duplicates nothing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use logcollect::{Config, MongoWriteConcern, TransportKind};
use logcollect_test_support::mongodb::{free_port, Reader, Server};
use mongodb::bson::{Bson, Document};
use tracing_subscriber::layer::SubscriberExt;

/// A TCP relay in front of a server that keeps what the shipper sent: nx-27017 takes a capped
/// collection's options and a TTL index's expiry without keeping them, so the test checks the
/// commands logcollect sends.
struct Relay {
    port: u16,
    sent: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Relay {
    fn start(to: u16) -> Relay {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = sent.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                let (mut c_in, mut s_out) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let (mut s_in, mut c_out) = (server, client);
                let kept = kept.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n @ 1..) = c_in.read(&mut buf) {
                        if let Ok(mut all) = kept.lock() {
                            all.extend_from_slice(&buf[..n]);
                        }
                        if s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s_out.shutdown(std::net::Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_in, &mut c_out);
                    let _ = c_out.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Relay { port, sent }
    }

    fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    fn sent(&self) -> Vec<u8> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Whether `bytes` hold the BSON element `key` with the number `value` (as any integer type).
fn has_number(bytes: &[u8], key: &str, value: i64) -> bool {
    let element = |tag: u8, number: &[u8]| {
        let mut e = vec![tag];
        e.extend_from_slice(key.as_bytes());
        e.push(0);
        e.extend_from_slice(number);
        e
    };
    let mut forms = vec![element(0x12, &value.to_le_bytes())];
    if let Ok(small) = i32::try_from(value) {
        forms.push(element(0x10, &small.to_le_bytes()));
    }
    forms.push(element(0x01, &(value as f64).to_le_bytes()));
    forms
        .iter()
        .any(|f| bytes.windows(f.len()).any(|w| w == f.as_slice()))
}

fn has(bytes: &[u8], what: &[u8]) -> bool {
    bytes.windows(what.len()).any(|w| w == what)
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn configure(c: &mut Config, uri: &str) {
    c.transport = TransportKind::Mongodb;
    c.mongodb.uri = uri.to_string();
    c.mongodb.write_concern = MongoWriteConcern::Primary;
    c.batch.max_events = 50;
    c.backoff_max = Duration::from_millis(200);
    c.connect_timeout = Duration::from_secs(2);
}

/// Logs `seq_no` in `seqs` through `layer`.
fn log(layer: logcollect::LogcollectLayer, seqs: std::ops::Range<u64>) {
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for seq_no in seqs {
            tracing::info!(seq_no, "mongodb transport");
        }
    });
}

/// Every `seq_no` 0..n exactly once among `docs`, with distinct `_id`s.
fn assert_each_once(docs: &[Document], n: u64) {
    let ids: HashSet<String> = docs
        .iter()
        .map(|d| match d.get("_id") {
            Some(Bson::String(id)) => id.clone(),
            other => panic!("_id is the event id, a string: {other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), docs.len(), "distinct _ids");
    let mut seqs: Vec<u64> = docs
        .iter()
        .map(|d| {
            let fields = d.get_document("fields").expect("fields");
            match fields.get("seq_no") {
                Some(Bson::Int32(n)) => *n as u64,
                Some(Bson::Int64(n)) => *n as u64,
                other => panic!("seq_no: {other:?}"),
            }
        })
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..n).collect::<Vec<_>>(), "each seq_no once");
}

#[test]
fn every_event_arrives_once_with_its_id_as_id_and_its_time_as_a_date() {
    const N: u64 = 2000;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(free_port(), dir.path());
    let (layer, guard) = logcollect::builder()
        .service_name("mongo-test")
        .configure(|c| configure(c, &server.uri()))
        .build()
        .expect("build");
    log(layer, 0..N);
    assert!(
        guard.flush(Duration::from_secs(60)).is_complete(),
        "{}",
        guard.stats()
    );
    let reader = Reader::new(&server.uri());
    let docs = reader.docs("logs");
    assert_each_once(&docs, N);
    let first = &docs[0];
    assert!(
        matches!(first.get("@timestamp"), Some(Bson::DateTime(_))),
        "{first}"
    );
    let event_id = first
        .get_document("event")
        .and_then(|e| e.get_str("id"))
        .expect("event.id");
    assert_eq!(first.get_str("_id"), Ok(event_id));
    assert_eq!(
        first
            .get_document("service")
            .and_then(|s| s.get_str("name")),
        Ok("mongo-test")
    );
    assert_eq!(first.get_str("message"), Ok("mongodb transport"));
    let stats = guard.stats();
    assert_eq!((stats.confirmed, stats.dropped.total()), (N, 0), "{stats}");
    assert!(stats.node.unwrap_or_default().starts_with("mongodb://"));
}

#[test]
fn the_collection_name_follows_its_template_and_classic_keeps_its_names() {
    const N: u64 = 100;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(free_port(), dir.path());
    let (layer, guard) = logcollect::builder()
        .service_name("billing")
        .format(logcollect::Format::Classic)
        .configure(|c| {
            configure(c, &server.uri());
            c.mongodb.collection = "logs_{service}".into();
        })
        .build()
        .expect("build");
    log(layer, 0..N);
    assert!(guard.flush(Duration::from_secs(60)).is_complete());
    let reader = Reader::new(&server.uri());
    let docs = reader.docs("logs_billing");
    assert_eq!(docs.len() as u64, N);
    let first = &docs[0];
    assert!(matches!(first.get("@timestamp"), Some(Bson::DateTime(_))));
    assert_eq!(first.get_str("_id"), first.get_str("event_id"));
    assert_eq!(first.get_str("levelname"), Ok("INFO"));
    assert_indexes_made_or_reported(&reader, &guard, "logs_billing");
}

/// Spools `n` events with no server to reach, and returns the spool directory.
fn spool_offline(dir: &Path, n: u64) -> PathBuf {
    let spool = dir.join("spool");
    let (layer, guard) = logcollect::builder()
        .spool_dir(&spool)
        .configure(|c| {
            configure(c, &format!("mongodb://127.0.0.1:{}", free_port()));
            c.shutdown_timeout = Duration::from_millis(200);
        })
        .build()
        .expect("build");
    log(layer, 0..n);
    wait_for("the events to be spooled", Duration::from_secs(30), || {
        guard.stats().spooled == n
    });
    drop(guard);
    spool
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

#[test]
fn the_same_events_sent_twice_are_absorbed_by_their_id() {
    const N: u64 = 500;
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = spool_offline(dir.path(), N);
    let again = dir.path().join("spool-again");
    copy_dir(&spool, &again);
    let server = Server::start(free_port(), dir.path());
    let reader = Reader::new(&server.uri());
    // Two shippers replay the same spool: the second sends every batch again, byte for byte,
    // as after a lost reply.
    for spool in [&spool, &again] {
        let (_layer, guard) = logcollect::builder()
            .spool_dir(spool)
            .configure(|c| configure(c, &server.uri()))
            .build()
            .expect("build");
        wait_for("the spool to be replayed", Duration::from_secs(60), || {
            guard.stats().recovered == N
        });
        let stats = guard.stats();
        assert_eq!(
            stats.dropped.total(),
            0,
            "duplicates are delivered: {stats}"
        );
        assert_each_once(&reader.docs("logs"), N);
    }
    assert_eq!(reader.count("logs"), N);
}

#[test]
fn a_capped_collection_and_the_named_indexes_are_asked_for_as_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(free_port(), dir.path());
    let relay = Relay::start(server.port);
    let (layer, guard) = logcollect::builder()
        .configure(|c| {
            configure(c, &relay.uri());
            c.mongodb.collection = "capped".into();
            c.mongodb.capped_bytes = 1 << 20;
            c.mongodb.capped_max = 1000;
        })
        .build()
        .expect("build");
    log(layer, 0..10);
    assert!(guard.flush(Duration::from_secs(60)).is_complete());
    let sent = relay.sent();
    assert!(
        has(&sent, b"\x02create\0\x07\0\0\0capped\0"),
        "a create command"
    );
    assert!(has(&sent, b"\x08capped\0\x01"), "capped: true");
    assert!(has_number(&sent, "size", 1 << 20), "size");
    assert!(has_number(&sent, "max", 1000), "max");
    for name in [
        "logcollect_time",
        "logcollect_service_time",
        "logcollect_level_time",
    ] {
        assert!(
            has(&sent, format!("{name}\0").as_bytes()),
            "index {name} asked for"
        );
    }
    assert!(!has(&sent, b"expireAfterSeconds"), "no TTL unless set");
    assert!(has_number(&sent, "w", 1), "write concern 1");
    let reader = Reader::new(&server.uri());
    assert_indexes_made_or_reported(&reader, &guard, "capped");
    assert_eq!(reader.count("capped"), 10);
}

/// The three indexes exist with their names, or (nx-27017 cannot index a field named
/// `@timestamp`, whatever the index's name) each refusal is reported by name while the events
/// are delivered all the same. What is asked for (keys, names, TTL) is checked by the unit
/// tests of src/transport/mongodb.rs.
fn assert_indexes_made_or_reported(reader: &Reader, guard: &logcollect::Guard, collection: &str) {
    let made: Vec<String> = reader
        .indexes(collection)
        .iter()
        .filter_map(|i| i.get_str("name").ok().map(str::to_string))
        .collect();
    let reported = guard.stats().last_error.unwrap_or_default();
    for name in [
        "logcollect_time",
        "logcollect_service_time",
        "logcollect_level_time",
    ] {
        assert!(
            made.iter().any(|m| m == name)
                || (reported.contains(&format!("index `{name}`"))
                    && reported.contains(&format!("collection `{collection}`"))),
            "{name} neither made ({made:?}) nor reported ({reported})"
        );
    }
}

#[test]
fn expire_after_asks_for_a_ttl_index_on_an_uncapped_collection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(free_port(), dir.path());
    let relay = Relay::start(server.port);
    let (layer, guard) = logcollect::builder()
        .configure(|c| {
            configure(c, &relay.uri());
            c.mongodb.collection = "expiring".into();
            c.mongodb.expire_after = Duration::from_secs(7 * 86_400);
            c.mongodb.write_concern = MongoWriteConcern::Majority;
        })
        .build()
        .expect("build");
    log(layer, 0..10);
    assert!(guard.flush(Duration::from_secs(60)).is_complete());
    let sent = relay.sent();
    assert!(
        has_number(&sent, "expireAfterSeconds", 7 * 86_400),
        "the TTL"
    );
    assert!(!has(&sent, b"\x08capped\0\x01"), "not capped");
    assert!(
        has(&sent, b"\x02w\0\x09\0\0\0majority\0"),
        "write concern majority"
    );
    let reader = Reader::new(&server.uri());
    assert_eq!(reader.count("expiring"), 10);
    assert!(!reader
        .collection_info("expiring")
        .get_document("options")
        .is_ok_and(|o| o.get_bool("capped") == Ok(true)));
    assert_indexes_made_or_reported(&reader, &guard, "expiring");
    if let Some(time) = reader
        .indexes("expiring")
        .into_iter()
        .find(|i| i.get_str("name") == Ok("logcollect_time"))
    {
        let seconds = match time.get("expireAfterSeconds") {
            Some(Bson::Int32(n)) => *n as i64,
            Some(Bson::Int64(n)) => *n,
            Some(Bson::Double(n)) => *n as i64,
            other => panic!("expireAfterSeconds: {other:?} in {time}"),
        };
        assert_eq!(seconds, 7 * 86_400);
    }
}

#[test]
fn an_unreachable_server_is_named_without_the_password() {
    let port = free_port();
    let (layer, guard) = logcollect::builder()
        .configure(|c| {
            configure(
                c,
                &format!("mongodb://app:s3cret-pw@127.0.0.1:{port}/?authSource=admin"),
            );
        })
        .build()
        .expect("build");
    log(layer, 0..1);
    let node = format!("mongodb://127.0.0.1:{port}");
    wait_for(
        "the failure to be reported",
        Duration::from_secs(30),
        || {
            guard
                .stats()
                .last_error
                .is_some_and(|e| e.contains(&node) && e.contains("`mongodb.uri`"))
        },
    );
    let stats = guard.stats();
    let error = stats.last_error.clone().unwrap_or_default();
    assert!(!format!("{stats} {error}").contains("s3cret"), "{stats}");
    assert_eq!(stats.confirmed, 0);
}

#[test]
fn events_spooled_while_mongodb_is_away_are_replayed_into_it() {
    const N: u64 = 500;
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool");
    let port = free_port();
    let (layer, guard) = logcollect::builder()
        .spool_dir(&spool)
        .configure(|c| configure(c, &format!("mongodb://127.0.0.1:{port}")))
        .build()
        .expect("build");
    log(layer, 0..N);
    wait_for("the events to be spooled", Duration::from_secs(30), || {
        guard.stats().spooled == N
    });
    let server = Server::start(port, dir.path());
    assert!(
        guard.flush(Duration::from_secs(60)).is_complete(),
        "{}",
        guard.stats()
    );
    let reader = Reader::new(&server.uri());
    assert_each_once(&reader.docs("logs"), N);
    let stats = guard.stats();
    assert_eq!(
        (stats.replayed, stats.confirmed + stats.recovered),
        (N, N),
        "{stats}"
    );
}

#[test]
fn a_server_killed_and_restarted_mid_stream_loses_nothing_and_duplicates_nothing() {
    const N: u64 = 10_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let server = Server::start(port, dir.path());
    let uri = server.uri();
    let (layer, guard) = logcollect::builder()
        .configure(|c| configure(c, &uri))
        .build()
        .expect("build");
    let logger = std::thread::spawn(move || log(layer, 0..N));
    let reader = Reader::new(&uri);
    wait_for("a first part to arrive", Duration::from_secs(120), || {
        reader.count("logs") >= 1000
    });
    drop(reader);
    // SIGKILL: what it acknowledged is in its SQLite files.
    drop(server);
    let server = Server::start(port, dir.path());
    logger.join().expect("logger");
    assert!(
        guard.flush(Duration::from_secs(120)).is_complete(),
        "{}",
        guard.stats()
    );
    let reader = Reader::new(&server.uri());
    assert_each_once(&reader.docs("logs"), N);
    let stats = guard.stats();
    eprintln!("{stats}");
    assert!(stats.reconnects >= 1, "{stats}");
    assert_eq!(stats.dropped.total(), 0, "{stats}");
}

#[test]
fn tls_settings_and_a_capped_collection_with_a_ttl_are_refused_at_build() {
    let error = |f: fn(&mut Config)| {
        logcollect::builder()
            .configure(|c| {
                configure(c, "mongodb://127.0.0.1:27017");
                f(c);
            })
            .build()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let tls = error(|c| c.tls_ca_file = Some("ca.pem".into()));
    assert!(
        tls.contains("`tls_ca_file`") && tls.contains("mongodb.uri"),
        "{tls}"
    );
    let both = error(|c| {
        c.mongodb.capped_bytes = 1 << 20;
        c.mongodb.expire_after = Duration::from_secs(60);
    });
    assert!(both.contains("mongodb.expire_after_ms"), "{both}");
    let max_alone = error(|c| c.mongodb.capped_max = 10);
    assert!(max_alone.contains("mongodb.capped_bytes"), "{max_alone}");
    let not_seconds = error(|c| c.mongodb.expire_after = Duration::from_millis(1500));
    assert!(not_seconds.contains("whole seconds"), "{not_seconds}");
    let mut config = Config::default();
    configure(
        &mut config,
        "mongodb://app:s3cret@db:27017/?authSource=admin",
    );
    assert!(!format!("{config:?}").contains("s3cret"), "Debug masks it");
    let bad_uri = error(|c| c.mongodb.uri = "redis://x:s3cret@h".into());
    assert!(
        bad_uri.contains("mongodb.uri") && !bad_uri.contains("s3cret"),
        "{bad_uri}"
    );
}

/// nx-27017 has no users: it refuses every login, which is what a wrong password meets on a
/// real server (the driver's SCRAM conversation fails either way).
#[test]
fn a_refused_login_is_named_with_its_fix_without_the_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(free_port(), dir.path());
    let uri = format!(
        "mongodb://app:wrong-s3cret@127.0.0.1:{}/?authSource=admin",
        server.port
    );
    let (layer, guard) = logcollect::builder()
        .configure(|c| configure(c, &uri))
        .build()
        .expect("build");
    log(layer, 0..1);
    wait_for("the refusal", Duration::from_secs(30), || {
        guard
            .stats()
            .last_error
            .is_some_and(|e| e.contains("mongodb.uri"))
    });
    let stats = guard.stats();
    let error = stats.last_error.clone().unwrap_or_default();
    assert!(error.contains("user name and password"), "{error}");
    assert!(!format!("{stats} {error}").contains("s3cret"), "{stats}");
    assert_eq!(stats.confirmed, 0);
}

#[test]
fn an_event_above_the_bson_limit_is_dropped_as_oversize_even_with_no_size_limit_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(free_port(), dir.path());
    let (layer, guard) = logcollect::builder()
        .configure(|c| {
            configure(c, &server.uri());
            c.max_message_bytes = 0;
            c.max_field_bytes = 0;
        })
        .build()
        .expect("build");
    let big = "x".repeat(17 << 20);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info!(seq_no = 0u64, "small");
        tracing::info!(payload = %big, "too big for one BSON document");
    });
    assert!(
        guard.flush(Duration::from_secs(60)).is_complete(),
        "{}",
        guard.stats()
    );
    let stats = guard.stats();
    assert_eq!((stats.confirmed, stats.dropped.oversize), (1, 1), "{stats}");
    assert_each_once(&Reader::new(&server.uri()).docs("logs"), 1);
}

/// A collection name the server will never take (MongoDB: `$` is not allowed) is the events'
/// route, not a failing link: its events are counted refused (checked before asking the server),
/// not sent again forever, and the link is kept.
#[test]
fn events_bound_for_a_collection_name_the_server_refuses_are_counted_refused_not_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(free_port(), dir.path());
    let (layer, guard) = logcollect::builder()
        .configure(|c| {
            configure(c, &server.uri());
            c.mongodb.collection = "logs$bad".into();
        })
        .build()
        .expect("build");
    log(layer, 0..120);
    let flushed = guard.flush(Duration::from_secs(60));
    let stats = guard.stats();
    assert!(flushed.is_complete(), "{flushed:?} {stats}");
    assert_eq!(
        (stats.accepted, stats.confirmed, stats.dropped.refused),
        (120, 0, 120),
        "{stats}"
    );
    assert_eq!(stats.reconnects, 0, "the link is not replaced: {stats}");
}
