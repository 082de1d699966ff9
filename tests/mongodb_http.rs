//! The `web` example's app (examples/web.rs) in this process, shipping with `transport =
//! mongodb` to an nx-27017 of the test's own, driven by real HTTP requests: the `http` layer's
//! access events and the handler's error event land in the one collection with their ECS
//! `http.*` and `url.*` fields, read back with the driver.
//!
//! `cargo test --all-features --test mongodb_http` (nx-27017: the project's `.venv`, as
//! scripts/test installs it, or LOGCOLLECT_TEST_MONGODB_SERVER).

#[path = "../examples/web.rs"]
#[allow(dead_code)]
mod web;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use logcollect::{MongoWriteConcern, TransportKind};
use logcollect_test_support::mongodb::{free_port, Reader, Server};
use mongodb::bson::{Bson, Document};

const COLLECTION: &str = "web";

/// One HTTP/1.1 request over a fresh connection; the status code and the `x-request-id` header.
fn request(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the app");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: logcollect-test/1.0\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let request_id = response
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-request-id")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no x-request-id in {response:?}"));
    (status, request_id)
}

fn text<'d>(doc: &'d Document, path: &str) -> &'d str {
    lookup(doc, path)
        .and_then(Bson::as_str)
        .unwrap_or_else(|| panic!("no string `{path}` in {doc}"))
}

fn lookup<'d>(doc: &'d Document, path: &str) -> Option<&'d Bson> {
    let mut parts = path.split('.');
    let mut value = doc.get(parts.next()?)?;
    for part in parts {
        value = value.as_document()?.get(part)?;
    }
    Some(value)
}

fn integer(doc: &Document, path: &str) -> i64 {
    match lookup(doc, path) {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        other => panic!("`{path}` is {other:?}, not an integer, in {doc}"),
    }
}

#[test]
fn access_and_error_events_of_the_web_app_land_in_one_collection_with_their_http_fields() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(free_port(), dir.path());
    let guard = logcollect::builder()
        .configure(|c| {
            c.transport = TransportKind::Mongodb;
            c.mongodb.uri = server.uri();
            c.mongodb.collection = COLLECTION.into();
            c.mongodb.write_concern = MongoWriteConcern::Primary;
            c.connect_timeout = Duration::from_secs(5);
        })
        .service_name("web-test")
        .console(false)
        .panic_hook(false)
        .init()
        .expect("init with transport = mongodb");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // The jobs' broker is never reached: no job is queued.
    let jobs = Arc::new(web::Jobs::new(
        "amqp://127.0.0.1:1/%2f".into(),
        "unused".into(),
    ));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    runtime.spawn(async move {
        axum::serve(
            listener,
            web::app(jobs).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let (hello_status, hello_id) = request(addr, "/hello");
    let (fail_status, fail_id) = request(addr, "/fail");
    assert_eq!((hello_status, fail_status), (200, 500));
    let flushed = guard.flush(Duration::from_secs(60));
    assert!(flushed.is_complete(), "{flushed:?} {}", guard.stats());

    let docs = Reader::new(&server.uri()).docs(COLLECTION);
    let of_request = |id: &str| -> Vec<&Document> {
        docs.iter()
            .filter(|d| lookup(d, "http.request.id").and_then(Bson::as_str) == Some(id))
            .collect()
    };
    let access = |id: &str| -> &Document {
        let found: Vec<&Document> = of_request(id)
            .into_iter()
            .filter(|d| lookup(d, "http.response.status_code").is_some())
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one access event for request {id}: {docs:#?}"
        );
        found[0]
    };

    for (id, path, status, level) in [
        (&hello_id, "/hello", 200, "INFO"),
        (&fail_id, "/fail", 500, "ERROR"),
    ] {
        let a = access(id);
        assert_eq!(text(a, "http.request.method"), "GET");
        assert_eq!(text(a, "url.path"), path);
        assert_eq!(text(a, "http.route"), path);
        assert_eq!(integer(a, "http.response.status_code"), status);
        assert!(integer(a, "event.duration") > 0, "{a}");
        assert_eq!(text(a, "log.level"), level);
        assert_eq!(text(a, "user_agent.original"), "logcollect-test/1.0");
        assert_eq!(text(a, "client.ip"), "127.0.0.1");
        assert_eq!(text(a, "service.name"), "web-test");
        assert_eq!(
            a.get_str("_id"),
            Ok(text(a, "event.id")),
            "_id is the event id"
        );
        assert!(
            matches!(a.get("@timestamp"), Some(Bson::DateTime(_))),
            "{a}"
        );
        assert!(
            lookup(a, "trace.id").and_then(Bson::as_str).is_some(),
            "{a}"
        );
    }

    // The handler's error event: in the request's trace, beside its access event.
    let errors: Vec<&Document> = of_request(&fail_id)
        .into_iter()
        .filter(|d| lookup(d, "http.response.status_code").is_none())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = errors[0];
    assert_eq!(text(e, "log.level"), "ERROR");
    assert_eq!(text(e, "message"), "could not complete the checkout");
    assert_eq!(text(e, "error.message"), "checkout failed");
    assert_eq!(text(e, "error.type"), "CheckoutError");
    assert_eq!(text(e, "trace.id"), text(access(&fail_id), "trace.id"));
    assert_eq!(integer(e, "fields.order"), 1042);
    assert_eq!(e.get_str("_id"), Ok(text(e, "event.id")));
    assert!(
        matches!(e.get("@timestamp"), Some(Bson::DateTime(_))),
        "{e}"
    );
    // The /hello handler's own events are there too, and no other request's: 2 access events,
    // the error, and hello's two INFO events.
    assert_eq!(of_request(&hello_id).len(), 3, "{docs:#?}");
    let of_requests = docs
        .iter()
        .filter(|d| lookup(d, "http.request.id").is_some())
        .count();
    assert_eq!(of_requests, 5, "{docs:#?}");
    drop(guard);
}
