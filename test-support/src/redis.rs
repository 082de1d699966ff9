//! Redis for the tests: the shared server (127.0.0.1:6379, or LOGCOLLECT_TEST_REDIS), and
//! `redis-server` processes of a test's own, on their own ports, stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use crate::free_port;
use crate::{certs, wait_until_listening, Ca};

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
        wait_until_listening("redis-server", port, Duration::from_secs(20));
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

/// A `redis-server` of the test's own that takes TLS on `tls_port` only from clients with a
/// certificate of its private CA (generated here, files in the test's directory); its plain
/// port is the test's own way in.
pub struct TlsServer {
    pub server: Server,
    pub tls_port: u16,
    /// The CA's certificate (`tls_ca_file`), and a client's (`tls_cert_file`, `tls_key_file`).
    pub ca_file: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsServer {
    pub fn start(dir: &Path) -> TlsServer {
        let ca = Ca::new("logcollect redis test CA");
        let server_leaf = ca.server();
        let client_leaf = ca.client("shipper");
        let ca_file = certs::write(dir, "ca.pem", &ca.pem);
        let server_cert = certs::write(dir, "server.pem", &server_leaf.cert_pem);
        let server_key = certs::write(dir, "server.key", &server_leaf.key_pem);
        let client_cert = certs::write(dir, "client.pem", &client_leaf.cert_pem);
        let client_key = certs::write(dir, "client.key", &client_leaf.key_pem);
        let tls_port = free_port();
        let path = |p: &Path| p.to_str().expect("UTF-8 path").to_string();
        let server = Server::start(
            free_port(),
            &[
                "--tls-port",
                &tls_port.to_string(),
                "--tls-cert-file",
                &path(&server_cert),
                "--tls-key-file",
                &path(&server_key),
                "--tls-ca-cert-file",
                &path(&ca_file),
                "--tls-auth-clients",
                "yes",
            ],
            dir,
        );
        wait_until_listening("redis-server's TLS port", tls_port, Duration::from_secs(20));
        TlsServer {
            server,
            tls_port,
            ca_file,
            client_cert,
            client_key,
        }
    }

    /// `rediss://localhost:TLS_PORT/0` (the name its certificate holds).
    pub fn uri(&self) -> String {
        format!("rediss://localhost:{}/0", self.tls_port)
    }
}
