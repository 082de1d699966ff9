//! Test support of the logcollect workspace (not published): where the test broker is, and
//! throw-away RabbitMQ nodes of a test's own — plain, or TLS-only with client certificates and
//! `EXTERNAL` — with certificates generated at test time — and the harness's own AMQP client
//! ([`client`]), Redis ([`redis`]: the shared server, servers of a test's own) and MongoDB
//! ([`mongodb`]: nx-27017 servers of a test's own, a reader). The tests of both crates and `scripts/node` (through the
//! `logcollect-test-node` binary) use this one implementation.

pub mod certs;
pub mod client;
pub mod mongodb;
pub mod node;
pub mod redis;

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

pub use certs::{Ca, Leaf};
pub use client::{
    consume, declare_bound_queue, documents, split_documents, Capture, Client, DurableCapture,
    QuietRuntime, Received, Session,
};
pub use node::{Node, TlsNode};

/// The system broker tests use when `LOGCOLLECT_TEST_AMQP_URL` is not set.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// What to do when there is no broker.
pub const HOW_TO_GET_A_BROKER: &str = "these tests need a real RabbitMQ: start the local one \
with `rabbitmq-server -detached` (Debian package `rabbitmq-server`; guest/guest on \
127.0.0.1:5672), or start a throw-away node with `scripts/node start NAME PORT` and export what \
`scripts/node env NAME PORT` prints, or set LOGCOLLECT_TEST_AMQP_URL=amqp://user:pass@host:port/vhost";

/// The broker under test: `LOGCOLLECT_TEST_AMQP_URL`, else the local one on 127.0.0.1:5672.
/// Panics, saying how to get one, when it does not accept TCP connections at the first call;
/// later calls answer the same URI without looking again (the fault tests stop the broker and
/// still need its address).
pub fn broker_url() -> String {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(find_broker).clone()
}

fn find_broker() -> String {
    let url = std::env::var("LOGCOLLECT_TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_URL.into());
    let uri: lapin::uri::AMQPUri = url.parse().unwrap_or_else(|e| {
        panic!("LOGCOLLECT_TEST_AMQP_URL is not an AMQP URI ({e}); {HOW_TO_GET_A_BROKER}")
    });
    let addr = format!("{}:{}", uri.authority.host, uri.authority.port);
    assert!(
        reachable(&addr),
        "no RabbitMQ answers on {addr}: {HOW_TO_GET_A_BROKER}"
    );
    url
}

/// Whether something accepts TCP connections on `addr` (within 3 s).
pub fn reachable(addr: &str) -> bool {
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(3)).is_ok())
}

/// A unique name, so tests running in parallel never see each other's events.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{nanos:x}-{n}", std::process::id())
}

/// Polls `condition` every 20 ms until it holds or `timeout` passed; its last answer.
pub fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

/// A port on 127.0.0.1 nothing listens on now (for a server a test starts, or a node that is
/// down).
pub fn free_port() -> u16 {
    closed_port()
}

/// Waits until `what`, a server a test started, accepts connections on 127.0.0.1:`port`;
/// panics after `within`.
pub fn wait_until_listening(what: &str, port: u16, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not listen on {port} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on: a node that is down.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    listener.local_addr().expect("its address").port()
}
