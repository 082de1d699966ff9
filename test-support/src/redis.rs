//! Redis for the tests: the shared server (127.0.0.1:6379, or LOGCOLLECT_TEST_REDIS), and
//! `redis-server` processes of a test's own, on their own ports, stopped when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shared Redis's URL.
pub fn url() -> String {
    std::env::var("LOGCOLLECT_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// A connection to the shared Redis, or a panic saying how to get one.
pub fn connect() -> ::redis::Connection {
    let url = url();
    ::redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| {
            panic!(
                "no Redis at {url} ({e}): start one (`redis-server --port 6379 --save '' \
                 --appendonly no`) or name one in LOGCOLLECT_TEST_REDIS"
            )
        })
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `redis-server` of the test's own (no RDB snapshots; `args` add to that), killed when
/// dropped.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    /// Starts one on `port` with its files in `dir`, and waits until it listens.
    pub fn start(port: u16, args: &[&str], dir: &Path) -> Server {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--dir", dir.to_str().expect("UTF-8 dir")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): install it (`apt-get install redis-server`)"
                )
            });
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
