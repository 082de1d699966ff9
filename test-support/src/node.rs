//! Throw-away RabbitMQ nodes (own node name, ports, data directory and configuration; never
//! the system node `rabbit@localhost` on 5672/25672). A [`Node`] is stopped and its directory
//! removed when it is dropped, so also when a test fails.
//!
//! Needs the `rabbitmq-server` package (`rabbitmq-server`, `rabbitmqctl` in /usr/sbin) as on
//! the CI machines; a node that cannot start fails the test, saying so.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::certs::{write, Ca, Leaf};
use crate::client::Client;

const HOW_TO_GET_RABBITMQ: &str = "throw-away nodes need the `rabbitmq-server` package \
(Debian: `apt-get install rabbitmq-server`; scripts/test does), which provides rabbitmq-server \
and rabbitmqctl, run as root or as the rabbitmq user";

/// A running throw-away node; stopped, and its directory removed, on drop.
#[derive(Debug)]
pub struct Node {
    /// `NAME@localhost`.
    pub name: String,
    /// Its AMQP (or AMQPS) listener on 127.0.0.1.
    pub port: u16,
    pub dir: PathBuf,
    conf: String,
    /// `false` once [`keep`](Node::keep) handed it over: drop leaves it running.
    owned: bool,
}

fn rabbitmq_command(program: &str) -> Command {
    let mut command = Command::new(program);
    let path = std::env::var("PATH").unwrap_or_default();
    command.env("PATH", format!("{path}:/usr/sbin:/sbin"));
    command
}

/// The configuration of a plain node: AMQP on 127.0.0.1:`port`, guest allowed from anywhere.
pub fn plain_conf(port: u16) -> String {
    format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n")
}

/// The URI of guest on a plain node.
pub fn plain_uri(port: u16) -> String {
    format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
}

/// Where `scripts/node` and `scripts/cluster` keep their nodes' files:
/// LOGCOLLECT_TEST_NODES_DIR, else `logcollect-nodes` in the system's temporary directory. Not
/// under the checkout: the node runs as the rabbitmq user, which cannot reach a checkout inside
/// a private (0700) directory such as a `mktemp -d` clone — its pid file gave `eacces`.
pub fn nodes_dir() -> PathBuf {
    std::env::var_os("LOGCOLLECT_TEST_NODES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("logcollect-nodes"))
}

impl Node {
    /// A plain node: AMQP on 127.0.0.1:`port`, guest/guest.
    pub fn plain(name: &str, port: u16) -> Node {
        Node::start(name, port, &plain_conf(port), &[], &[])
    }

    /// Starts `name@localhost` in a directory under the system's temporary directory; see
    /// [`start_in`](Node::start_in).
    pub fn start(
        name: &str,
        port: u16,
        conf: &str,
        plugins: &[&str],
        files: &[(&str, &str)],
    ) -> Node {
        let dir = std::env::temp_dir().join(format!("logcollect-node-{name}"));
        Node::start_in(&dir, name, port, conf, plugins, files)
    }

    /// Starts `name@localhost` with its listener on 127.0.0.1:`port` (distribution port
    /// `port + 20000`) and `conf` as its whole `rabbitmq.conf` (`{dir}` is replaced by its
    /// directory), with `plugins` enabled and `files` written beside it; waits until it runs.
    /// A node of the same name left by a killed run is stopped first.
    pub fn start_in(
        dir: &Path,
        name: &str,
        port: u16,
        conf: &str,
        plugins: &[&str],
        files: &[(&str, &str)],
    ) -> Node {
        let node = Node {
            name: format!("{name}@localhost"),
            port,
            dir: dir.to_path_buf(),
            conf: conf.replace("{dir}", &dir.display().to_string()),
            owned: true,
        };
        stop_node(&node.name);
        let _ = std::fs::remove_dir_all(dir);
        for sub in ["mnesia", "log"] {
            std::fs::create_dir_all(dir.join(sub))
                .unwrap_or_else(|e| panic!("node directory {}: {e}", dir.display()));
        }
        write(dir, "rabbitmq.conf", &node.conf);
        write(
            dir,
            "enabled_plugins",
            &format!("[{}].\n", plugins.join(",")),
        );
        write(dir, "empty-env.conf", "");
        for (file, text) in files {
            write(dir, file, text);
        }
        // Debian's wrappers run the node as the rabbitmq user.
        if Command::new("id")
            .arg("rabbitmq")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            let _ = Command::new("chown")
                .args(["-R", "rabbitmq:rabbitmq"])
                .arg(dir)
                .status();
        }
        node.launch();
        node
    }

    /// Starts `name@localhost` again on the files a stopped or killed node left in `dir`
    /// (its configuration, plugins, and data: a cluster member rejoins its cluster with its
    /// queues' replicas). Nothing is deleted.
    pub fn relaunch_in(dir: &Path, name: &str, port: u16) -> Node {
        let mut node = Node {
            name: format!("{name}@localhost"),
            port,
            dir: dir.to_path_buf(),
            conf: std::fs::read_to_string(dir.join("rabbitmq.conf"))
                .unwrap_or_else(|e| panic!("{}/rabbitmq.conf: {e}", dir.display())),
            // A node that fails to start again keeps its files (and logs) for a look.
            owned: false,
        };
        // A killed node's pid file is stale; `rabbitmqctl wait` could read it as the new
        // one is written (`garbage_in_pid_file`).
        let _ = std::fs::remove_file(dir.join(format!("{name}.pid")));
        node.launch();
        node.owned = true;
        node
    }

    fn short(&self) -> &str {
        self.name.trim_end_matches("@localhost")
    }

    fn launch(&self) {
        let dir = self.dir.display().to_string();
        let short = self.short();
        let started = rabbitmq_command("rabbitmq-server")
            .arg("-detached")
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env(
                "RABBITMQ_DIST_PORT",
                (u32::from(self.port) + 20000).to_string(),
            )
            .env("RABBITMQ_MNESIA_BASE", format!("{dir}/mnesia"))
            .env("RABBITMQ_LOG_BASE", format!("{dir}/log"))
            .env("RABBITMQ_CONFIG_FILE", format!("{dir}/rabbitmq.conf"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                format!("{dir}/enabled_plugins"),
            )
            .env("RABBITMQ_PID_FILE", format!("{dir}/{short}.pid"))
            .env("RABBITMQ_CONF_ENV_FILE", format!("{dir}/empty-env.conf"))
            // Otherwise the distribution port listens on every interface.
            .env("ERL_FLAGS", "-kernel inet_dist_use_interface {127,0,0,1}")
            .output();
        match started {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "rabbitmq-server -detached for {} failed: {}{}; {HOW_TO_GET_RABBITMQ}",
                self.name,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("cannot run rabbitmq-server ({e}); {HOW_TO_GET_RABBITMQ}"),
        }
        let waited = rabbitmq_command("rabbitmqctl")
            .args(["-n", &self.name, "wait", "--timeout", "120"])
            .arg(format!("{dir}/{short}.pid"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run rabbitmqctl ({e}); {HOW_TO_GET_RABBITMQ}"));
        assert!(
            waited.status.success(),
            "node {} did not start: {}{}; see its logs in {dir}/log",
            self.name,
            String::from_utf8_lossy(&waited.stdout),
            String::from_utf8_lossy(&waited.stderr),
        );
    }

    /// `rabbitmqctl -n <node> args…`; its standard output, or a failure naming the command.
    pub fn ctl(&self, args: &[&str]) -> String {
        let output = rabbitmq_command("rabbitmqctl")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run rabbitmqctl ({e}); {HOW_TO_GET_RABBITMQ}"));
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?} on {}: {}",
            self.name,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Stops the node (its files stay, for [`restart`](Node::restart)).
    pub fn stop(&self) {
        stop_node(&self.name);
    }

    /// Starts it again with the same files (durable queues and persistent messages kept).
    pub fn restart(&self) {
        self.launch();
    }

    /// The node keeps running after this value is gone (`scripts/node start`).
    pub fn keep(mut self) {
        self.owned = false;
    }
}

/// Stops `NAME@localhost` if it runs.
pub fn stop_node(name: &str) {
    let _ = rabbitmq_command("rabbitmqctl")
        .args(["-n", name, "stop"])
        .output();
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.owned {
            self.stop();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A TLS-only node (no plain listener) that requires a client certificate, with `PLAIN` and
/// `EXTERNAL` (`ssl_cert_login_from = common_name`), its CA, a client certificate for a user
/// that has no password, and those files written for clients to read.
#[derive(Debug)]
pub struct TlsNode {
    pub node: Node,
    pub ca: Ca,
    /// The client certificate of [`client_user`](TlsNode::client_user).
    pub client: Leaf,
    /// The user the client certificate logs in as with `EXTERNAL` (all permissions on `/`).
    pub client_user: String,
    /// `ca.pem`, `client.pem`, `client.key`.
    pub files: tempfile::TempDir,
}

impl TlsNode {
    /// Starts `name@localhost` with TLS on 127.0.0.1:`port` and creates `client_user`.
    pub fn start(name: &str, port: u16, client_user: &str) -> TlsNode {
        let ca = Ca::new("logcollect test CA");
        let server = ca.server();
        let client = ca.client(client_user);
        let conf = format!(
            "listeners.tcp = none\n\
             listeners.ssl.default = 127.0.0.1:{port}\n\
             ssl_options.cacertfile = {{dir}}/ca.pem\n\
             ssl_options.certfile = {{dir}}/server.pem\n\
             ssl_options.keyfile = {{dir}}/server.key\n\
             ssl_options.verify = verify_peer\n\
             ssl_options.fail_if_no_peer_cert = true\n\
             auth_mechanisms.1 = PLAIN\n\
             auth_mechanisms.2 = EXTERNAL\n\
             ssl_cert_login_from = common_name\n\
             loopback_users = none\n"
        );
        let node = Node::start(
            name,
            port,
            &conf,
            &["rabbitmq_auth_mechanism_ssl"],
            &[
                ("ca.pem", &ca.pem),
                ("server.pem", &server.cert_pem),
                ("server.key", &server.key_pem),
            ],
        );
        node.ctl(&["add_user", client_user, "unused-password"]);
        node.ctl(&["clear_password", client_user]);
        node.ctl(&["set_permissions", "-p", "/", client_user, ".*", ".*", ".*"]);
        let files = tempfile::tempdir().expect("temp dir");
        write(files.path(), "ca.pem", &ca.pem);
        write(files.path(), "client.pem", &client.cert_pem);
        write(files.path(), "client.key", &client.key_pem);
        TlsNode {
            node,
            ca,
            client,
            client_user: client_user.to_string(),
            files,
        }
    }

    /// Writes `text` beside the client files; its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        write(self.files.path(), name, text)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.files.path().join("ca.pem")
    }

    pub fn cert_file(&self) -> PathBuf {
        self.files.path().join("client.pem")
    }

    pub fn key_file(&self) -> PathBuf {
        self.files.path().join("client.key")
    }

    /// `amqps://localhost:PORT/%2f`: no user, no password (for `EXTERNAL`).
    pub fn uri(&self) -> String {
        format!("amqps://localhost:{}/%2f", self.node.port)
    }

    /// The same as guest/guest (`PLAIN` over TLS).
    pub fn guest_uri(&self) -> String {
        format!("amqps://guest:guest@localhost:{}/%2f", self.node.port)
    }

    /// The `LOGCOLLECT_*` settings that log in with the client certificate and no password.
    pub fn external_env(&self) -> Vec<(String, String)> {
        [
            ("LOGCOLLECT_BROKER_URI", self.uri()),
            ("LOGCOLLECT_TLS_CA_FILE", path(&self.ca_file())),
            ("LOGCOLLECT_TLS_CERT_FILE", path(&self.cert_file())),
            ("LOGCOLLECT_TLS_KEY_FILE", path(&self.key_file())),
            ("LOGCOLLECT_AUTH_MECHANISM", "external".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The harness's own TLS client, as guest with the client certificate.
    pub fn harness(&self) -> Client {
        Client::tls(self.guest_uri(), &self.ca, &self.client)
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}
