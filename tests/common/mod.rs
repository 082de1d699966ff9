//! Shared test support of the library's tests: the shipper's stats awaited, documents counted,
//! examples built, a gate before the broker; the broker and the harness's AMQP client come from
//! the test-support crate.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::Duration;

use logcollect_test_support::client;
use serde_json::Value;

// The harness's AMQP client is the test-support crate's, shared with the CLI's tests.
#[allow(unused_imports)]
pub use logcollect_test_support::client::{
    consume, documents, Capture, DurableCapture, QuietRuntime, Received,
};
#[allow(unused_imports)]
pub use logcollect_test_support::{broker_url, unique, wait_for, DEFAULT_URL, HOW_TO_GET_A_BROKER};

/// Waits until the shipper's stats satisfy `condition`; fails the test after `timeout`, saying
/// what was awaited and showing the stats.
pub fn await_stats(
    what: &str,
    timeout: Duration,
    shipper: &logcollect::Shipper,
    condition: impl Fn(&logcollect::Stats) -> bool,
) {
    assert!(
        wait_for(timeout, || condition(&shipper.stats())),
        "timed out after {timeout:?} waiting for {what}: {}",
        shipper.stats()
    );
}

/// Connects to the test broker, declares `exchange` as the shipper would (durable topic),
/// declares `queue` with `options` and `arguments`, and binds it with `binding_key`.
pub async fn declare_bound_queue(
    exchange: &str,
    queue: &str,
    binding_key: &str,
    options: lapin::options::QueueDeclareOptions,
    arguments: lapin::types::FieldTable,
) -> (lapin::Connection, lapin::Channel) {
    client::declare_bound_queue(
        &client::Client::test_broker(),
        exchange,
        queue,
        binding_key,
        options,
        arguments,
    )
    .await
}

/// Distinct values of an integer field across documents, and how many duplicates.
pub fn distinct_ints(docs: &[Value], pointer: &str) -> (HashSet<i64>, usize) {
    let mut set = HashSet::new();
    let mut dups = 0;
    for doc in docs {
        let v = doc
            .pointer(pointer)
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("{pointer} missing in {doc}"));
        if !set.insert(v) {
            dups += 1;
        }
    }
    (set, dups)
}

/// Routes `log` records into `tracing` (once per test binary).
pub fn log_bridge() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_log::LogTracer::init();
    });
}

/// A TCP listener that accepts connections and never answers: a broker that hangs.
pub fn blackhole() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (listener, port)
}

/// The load generator example, built now if needed: `cargo test --test faults` alone does not
/// build examples.
pub fn loadgen_binary() -> std::path::PathBuf {
    example_binary("loadgen", &[])
}

/// An example, built now (with `features`) if needed.
pub fn example_binary(name: &str, features: &[&str]) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build
        .args(["build", "--quiet", "--example", name, "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    if !features.is_empty() {
        build.arg("--features").arg(features.join(","));
    }
    // Without the variables `cargo test` sets for this process: with them the inner build
    // fingerprints differently and rebuilds the dependency tree, on every run.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let set_by_cargo_test = (key.starts_with("CARGO")
            && !["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_INCREMENTAL"].contains(&key.as_str())
            && !key.starts_with("CARGO_BUILD_")
            && !key.starts_with("CARGO_PROFILE_")
            && !key.starts_with("CARGO_NET_")
            && !key.starts_with("CARGO_TERM_")
            && !key.starts_with("CARGO_REGISTRIES_"))
            || ["OUT_DIR", "LD_LIBRARY_PATH", "RUST_TEST_THREADS"].contains(&key.as_str());
        if set_by_cargo_test {
            build.env_remove(&key);
        }
    }
    if dir.file_name().is_some_and(|name| name == "release") {
        build.arg("--release");
    }
    let status = build
        .status()
        .unwrap_or_else(|e| panic!("run cargo build --example {name}: {e}"));
    assert!(status.success(), "cargo build --example {name} failed");
    let path = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} missing", path.display());
    path
}

/// A TCP gate before the test broker: it accepts connections at once and holds them (nothing is
/// read or forwarded) until [`Gate::open`], then joins each to the broker. A shipper behind a
/// closed gate is connecting and keeps its events queued; opened, it delivers them.
pub struct Gate {
    /// The broker URI through the gate.
    pub uri: String,
    open: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl Gate {
    pub fn closed() -> Gate {
        let broker: lapin::uri::AMQPUri = broker_url().parse().expect("the test broker's URI");
        let target = format!("{}:{}", broker.authority.host, broker.authority.port);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the gate");
        let port = listener.local_addr().expect("gate address").port();
        let open = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let gate = open.clone();
        // Lives as long as the test binary: it only ever waits in `accept`.
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let (gate, target) = (gate.clone(), target.clone());
                std::thread::spawn(move || {
                    let (lock, opened) = &*gate;
                    let mut is_open = lock.lock().unwrap_or_else(|p| p.into_inner());
                    while !*is_open {
                        is_open = opened.wait(is_open).unwrap_or_else(|p| p.into_inner());
                    }
                    drop(is_open);
                    let Ok(server) = TcpStream::connect(&target) else {
                        return;
                    };
                    let (Ok(mut client_in), Ok(mut server_out)) =
                        (client.try_clone(), server.try_clone())
                    else {
                        return;
                    };
                    let upstream = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut client_in, &mut server_out);
                        let _ = server_out.shutdown(std::net::Shutdown::Write);
                    });
                    let (mut server_in, mut client_out) = (server, client);
                    let _ = std::io::copy(&mut server_in, &mut client_out);
                    let _ = client_out.shutdown(std::net::Shutdown::Write);
                    let _ = upstream.join();
                });
            }
        });
        let uri = format!(
            "amqp://{}:{}@127.0.0.1:{port}/{}",
            broker.authority.userinfo.username,
            broker.authority.userinfo.password,
            broker.vhost.replace('/', "%2f")
        );
        Gate { uri, open }
    }

    /// Lets held and later connections through to the broker.
    pub fn open(&self) {
        let (lock, opened) = &*self.open;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        opened.notify_all();
    }
}
