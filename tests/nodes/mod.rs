//! Throw-away RabbitMQ nodes of the tests' own (own node name, ports, data directory and
//! configuration; never the system node `rabbit@localhost` on 5672/25672, never ports 5701–5730),
//! and certificates generated at test time with rcgen. A [`Node`] is stopped and its directory
//! removed when it is dropped, so also when a test fails.
//!
//! Needs the `rabbitmq-server` package (`rabbitmq-server`, `rabbitmqctl` in /usr/sbin) as on
//! the CI machines; a test that cannot start a node fails, saying so.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::{FieldTable, ShortString};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

const HOW_TO_GET_RABBITMQ: &str = "these tests start their own RabbitMQ nodes: install the \
`rabbitmq-server` package (Debian: `apt-get install rabbitmq-server`; scripts/test does), which \
provides rabbitmq-server and rabbitmqctl, and run as root or as the rabbitmq user";

/// A certificate authority of the test, and what it signed.
pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> Leaf {
        self.leaf(
            "localhost",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate whose subject is `CN=<name>`.
    pub fn client(&self, name: &str) -> Leaf {
        self.leaf(name, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, cn: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// Writes `text` to `dir/name`, returning the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// A running throw-away node; stopped, and its directory removed, on drop.
pub struct Node {
    pub name: String,
    pub port: u16,
    pub dir: PathBuf,
    conf: String,
}

fn rabbitmq_command(program: &str) -> Command {
    let mut command = Command::new(program);
    let path = std::env::var("PATH").unwrap_or_default();
    command.env("PATH", format!("{path}:/usr/sbin:/sbin"));
    command
}

impl Node {
    /// Starts `name@localhost` with its listener on 127.0.0.1:`port` (distribution port
    /// `port + 20000`) and `conf` as its whole `rabbitmq.conf` (`{dir}` is replaced by its
    /// directory), with `plugins` enabled; waits until it runs.
    pub fn start(
        name: &str,
        port: u16,
        conf: &str,
        plugins: &[&str],
        files: &[(&str, &str)],
    ) -> Node {
        let dir = std::env::temp_dir().join(format!("logcollect-node-{name}"));
        // A directory left by a killed run: its node may even be running.
        let node = Node {
            name: format!("{name}@localhost"),
            port,
            dir: dir.clone(),
            conf: conf.replace("{dir}", &dir.display().to_string()),
        };
        let _ = rabbitmq_command("rabbitmqctl")
            .args(["-n", &node.name, "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["mnesia", "log"] {
            std::fs::create_dir_all(dir.join(sub)).expect("node directory");
        }
        write(&dir, "rabbitmq.conf", &node.conf);
        write(
            &dir,
            "enabled_plugins",
            &format!("[{}].\n", plugins.join(",")),
        );
        write(&dir, "empty-env.conf", "");
        for (file, text) in files {
            write(&dir, file, text);
        }
        // Debian's wrappers run the node as the rabbitmq user.
        if Command::new("id")
            .arg("rabbitmq")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            let _ = Command::new("chown")
                .args(["-R", "rabbitmq:rabbitmq"])
                .arg(&dir)
                .status();
        }
        node.launch();
        node
    }

    fn launch(&self) {
        let dir = self.dir.display().to_string();
        let short = self.name.trim_end_matches("@localhost");
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
            .expect("rabbitmqctl wait");
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
            .expect("rabbitmqctl");
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
        let _ = rabbitmq_command("rabbitmqctl")
            .args(["-n", &self.name, "stop"])
            .output();
    }

    /// Starts it again with the same files (durable queues and persistent messages kept).
    pub fn restart(&self) {
        self.launch();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How the harness itself connects: a URI and, for TLS, its roots and client identity.
#[derive(Clone)]
pub struct Client {
    pub uri: String,
    pub tls: OwnedTLSConfig,
}

impl Client {
    pub fn plain(uri: String) -> Client {
        Client {
            uri,
            tls: OwnedTLSConfig::default(),
        }
    }

    pub fn tls(uri: String, ca: &Ca, leaf: &Leaf) -> Client {
        Client {
            uri,
            tls: OwnedTLSConfig {
                identity: Some(OwnedIdentity::PKCS8 {
                    pem: leaf.cert_pem.clone().into_bytes(),
                    key: leaf.key_pem.clone().into_bytes(),
                }),
                cert_chain: Some(ca.pem.clone()),
            },
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    async fn connect(&self) -> Connection {
        let runtime = lapin::runtime::default_runtime().expect("lapin runtime");
        Connection::connect_with_config(
            &self.uri,
            ConnectionProperties::default(),
            self.tls.clone(),
            runtime,
        )
        .await
        .unwrap_or_else(|e| panic!("the harness cannot connect to its node: {e}"))
    }

    /// Declares `exchange` as the shipper does (durable topic) and a durable `queue` bound to
    /// it with `#`.
    pub fn bind(&self, exchange: &str, queue: &str) {
        Client::runtime().block_on(async {
            let connection = self.connect().await;
            let channel = connection.create_channel().await.expect("channel");
            channel
                .exchange_declare(
                    ShortString::from(exchange),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("declare exchange");
            channel
                .queue_declare(
                    ShortString::from(queue),
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("declare queue");
            channel
                .queue_bind(
                    ShortString::from(queue),
                    ShortString::from(exchange),
                    ShortString::from("#"),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("bind");
            let _ = connection.close(200, ShortString::from("bound")).await;
        });
    }

    /// Takes every message the queue holds now (no ack: they are gone), as JSON documents (an
    /// array body is one document per element).
    pub fn drain(&self, queue: &str) -> Vec<serde_json::Value> {
        Client::runtime().block_on(async {
            let connection = self.connect().await;
            let channel = connection.create_channel().await.expect("channel");
            let mut docs = Vec::new();
            while let Some(message) = channel
                .basic_get(ShortString::from(queue), BasicGetOptions { no_ack: true })
                .await
                .expect("basic.get")
            {
                let body = &message.delivery.data;
                let text = std::str::from_utf8(body).expect("a UTF-8 body");
                match serde_json::from_str(text).expect("a JSON body") {
                    serde_json::Value::Array(items) => docs.extend(items),
                    doc => docs.push(doc),
                }
            }
            let _ = connection.close(200, ShortString::from("drained")).await;
            docs
        })
    }

    /// Drains `queue` until `n` documents came or `timeout` passed.
    pub fn drain_at_least(
        &self,
        queue: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + timeout;
        let mut docs = Vec::new();
        loop {
            docs.extend(self.drain(queue));
            if docs.len() >= n || std::time::Instant::now() >= deadline {
                return docs;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
