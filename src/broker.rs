//! The broker: connecting, and declaring the topology the shipper publishes into.
//!
//! [`Connector`] is the one way to connect that the shipper and every other client of the
//! broker share (the `logcollect` command's `check`, `tail` and `collect`): the node list in
//! order, TLS files, server name, `EXTERNAL`, heartbeat and connection name, all from
//! [`Config`]; failures are a typed [`BrokerError`].

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::tcp::{AsyncTcpStream, OwnedIdentity, OwnedTLSConfig};
use lapin::types::{FieldTable, LongString, ShortString};
use lapin::uri::{AMQPScheme, AMQPUri, SASLMechanism};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::encoding::redact::mask_uri_passwords;
use crate::{Config, Error};

crate::choice::choice! {
    /// The exchange types the shipper can declare.
    pub enum ExchangeType: "an exchange type", default Topic {
        /// Routes by pattern on the routing key (the default).
        Topic = "topic",
        /// Routes by exact routing key.
        Direct = "direct",
        /// Routes to every bound queue.
        Fanout = "fanout",
        /// Routes by message headers.
        Headers = "headers",
    }
}

crate::choice::choice! {
    /// The SASL mechanism the shipper logs in with (`auth_mechanism`).
    pub enum AuthMechanism: "a SASL mechanism" {
        /// User name and password from the URI.
        Plain = "plain",
        /// The client certificate's identity (RabbitMQ plugin `rabbitmq_auth_mechanism_ssl`);
        /// no password.
        External = "external",
    }
}

impl AuthMechanism {
    pub(crate) fn sasl(self) -> SASLMechanism {
        match self {
            AuthMechanism::Plain => SASLMechanism::Plain,
            AuthMechanism::External => SASLMechanism::External,
        }
    }
}

/// The TLS material, read from its files at start: extra trusted roots, the client identity,
/// and the name the broker's certificate must carry.
#[derive(Clone, Default)]
pub(crate) struct Tls {
    config: OwnedTLSConfig,
    server_name: Option<String>,
}

impl fmt::Debug for Tls {
    /// Never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("extra_roots", &self.config.cert_chain.is_some())
            .field("client_certificate", &self.config.identity.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl Tls {
    /// Reads and checks the files the settings name, so that a missing, unreadable or
    /// malformed file fails `init` rather than every connection attempt later.
    pub(crate) fn load(config: &Config) -> Result<Tls, Error> {
        let cert_chain =
            match &config.tls_ca_file {
                Some(path) => {
                    let pem = read_pem("tls_ca_file", path)?;
                    certificates("tls_ca_file", path, &pem)?;
                    Some(String::from_utf8(pem).map_err(|_| {
                        tls_error("tls_ca_file", path, "is not PEM text (not UTF-8)")
                    })?)
                }
                None => None,
            };
        let identity = match (&config.tls_cert_file, &config.tls_key_file) {
            (Some(cert), Some(key)) => {
                let pem = read_pem("tls_cert_file", cert)?;
                certificates("tls_cert_file", cert, &pem)?;
                let key_pem = read_pem("tls_key_file", key)?;
                if String::from_utf8_lossy(&key_pem).contains("ENCRYPTED") {
                    return Err(tls_error(
                        "tls_key_file",
                        key,
                        "is an encrypted private key; give it unencrypted (e.g. `openssl pkey \
                         -in key.pem -out plain.pem`) and protect the file's permissions",
                    ));
                }
                PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                    tls_error(
                        "tls_key_file",
                        key,
                        &format!(
                            "holds no usable private key ({e}); expected a PEM `PRIVATE KEY`, \
                             `RSA PRIVATE KEY` or `EC PRIVATE KEY` block"
                        ),
                    )
                })?;
                Some(OwnedIdentity::PKCS8 { pem, key: key_pem })
            }
            // `Config::validate` requires both or neither.
            _ => None,
        };
        Ok(Tls {
            config: OwnedTLSConfig {
                identity,
                cert_chain,
            },
            server_name: config.tls_server_name.clone(),
        })
    }

    fn has_client_certificate(&self) -> bool {
        self.config.identity.is_some()
    }
}

fn tls_error(key: &str, path: &Path, what: &str) -> Error {
    Error::Tls(format!("`{key}` `{}` {what}", path.display()))
}

fn read_pem(key: &str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| tls_error(key, path, &format!("cannot be read: {e}")))
}

/// At least one certificate, all of them parseable.
fn certificates(key: &str, path: &Path, pem: &[u8]) -> Result<(), Error> {
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|e| tls_error(key, path, &format!("holds a malformed certificate ({e})")))?;
        n += 1;
    }
    if n == 0 {
        return Err(tls_error(
            key,
            path,
            "holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
        ));
    }
    Ok(())
}

/// How every client of the broker connects: the nodes of `broker_uri` in order (failover),
/// TLS with `tls_ca_file`, `tls_cert_file`/`tls_key_file` and `tls_server_name`, the SASL
/// mechanism (`auth_mechanism`, `EXTERNAL` logs in with the client certificate), a heartbeat
/// (10 s unless the URI sets one), a connection name, and the exchange declared exactly as the
/// shipper declares it. The shipper and the `logcollect` command (`check`, `tail`, `collect`)
/// all connect through it.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let config = logcollect::Config::from_env()?;
/// let connector = logcollect::broker::Connector::new(&config, "my reader")?;
/// let connected = connector.connect().await?; // the first node that answers
/// let channel = connected.connection.create_channel().await?;
/// connector.declare_exchange(&channel).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connector {
    /// The nodes, in the order of `broker_uri`; never empty.
    pub(crate) nodes: Vec<AMQPUri>,
    pub(crate) tls: Tls,
    pub(crate) exchange: ShortString,
    pub(crate) exchange_type: ExchangeType,
    /// Shown in the broker's management UI, to tell connections apart.
    pub(crate) connection_name: String,
    pub(crate) connect_timeout: Duration,
}

impl fmt::Debug for Connector {
    /// The nodes without credentials, never a password or the TLS key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(describe).collect();
        f.debug_struct("Connector")
            .field("nodes", &nodes)
            .field("tls", &self.tls)
            .field("exchange", &self.exchange)
            .field("exchange_type", &self.exchange_type)
            .field("connection_name", &self.connection_name)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// A connection opened by [`Connector::connect`].
#[derive(Debug)]
pub struct Connected {
    /// The open connection.
    pub connection: Connection,
    /// The index in `broker_uri` of the node it is with (0 is the first).
    pub node: usize,
    /// That node, without credentials (`amqps://host:port/vhost`).
    pub name: String,
}

impl Connector {
    /// The connector `config` describes; `connection_name` is shown in the broker's management
    /// UI. Fails like [`init`](crate::init) on an invalid configuration or an unusable TLS file.
    pub fn new(config: &Config, connection_name: impl Into<String>) -> Result<Connector, Error> {
        config.validate()?;
        Ok(Connector {
            nodes: config.amqp_uris()?,
            tls: Tls::load(config)?,
            exchange: ShortString::from(config.exchange.as_str()),
            exchange_type: config.exchange_type,
            connection_name: connection_name.into(),
            connect_timeout: config.connect_timeout,
        })
    }

    /// The nodes of `broker_uri`, in order, parsed, with the heartbeat and `auth_mechanism`
    /// applied. They hold the password: show them with [`describe`].
    pub fn nodes(&self) -> &[AMQPUri] {
        &self.nodes
    }

    /// Whether node `node` logs in with the client certificate (`EXTERNAL`).
    pub fn is_external(&self, node: usize) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|uri| uri.query.auth_mechanism == Some(SASLMechanism::External))
    }

    /// Whether a client certificate is configured.
    pub fn has_client_certificate(&self) -> bool {
        self.tls.has_client_certificate()
    }

    /// The exchange events are published to.
    pub fn exchange(&self) -> &str {
        self.exchange.as_str()
    }

    /// Its type, as declared.
    pub fn exchange_type(&self) -> ExchangeType {
        self.exchange_type
    }

    /// `connect_timeout_ms`: the bound on each step of connecting to one node.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Connects to the first node of the list that answers, in order; each node is bounded by
    /// the connect timeout. All failing is [`BrokerError::AllNodes`] listing each (or the one
    /// node's own error).
    pub async fn connect(&self) -> Result<Connected, BrokerError> {
        let (node, connection) = self
            .first_answering(0, |uri| async move {
                match tokio::time::timeout(self.connect_timeout, self.connect_uri(uri)).await {
                    Ok(Ok(connection)) => Ok(connection),
                    Ok(Err(e)) => Err(BrokerError::classify(Step::Connect, self, uri, &e)),
                    Err(_) => Err(BrokerError::Timeout {
                        broker: describe(uri),
                        after: self.connect_timeout,
                    }),
                }
            })
            .await?;
        Ok(Connected {
            connection,
            node,
            name: describe(&self.nodes[node]),
        })
    }

    /// Connects to node `node` alone, not bounded in time, with lapin's own error: for a
    /// caller that tells the causes apart itself (`logcollect check`). See
    /// [`classify`](Connector::classify) for the library's reading of it.
    pub async fn connect_node(&self, node: usize) -> lapin::Result<Connection> {
        match self.nodes.get(node) {
            Some(uri) => self.connect_uri(uri).await,
            None => {
                Err(lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Closed).into())
            }
        }
    }

    /// What a failure of [`connect_node`](Connector::connect_node) means, as the shipper
    /// reports it.
    pub fn classify(&self, node: usize, error: &lapin::Error) -> BrokerError {
        let uri = &self.nodes[node.min(self.nodes.len().saturating_sub(1))];
        BrokerError::classify(Step::Connect, self, uri, error)
    }

    /// A TLS handshake with node `node` at `addr`, with the configured roots, client
    /// certificate and server name, then the AMQP protocol header: under TLS 1.3 the broker
    /// checks the client certificate only after the client finished its handshake, so a refusal
    /// shows as the answer to the header. Bounded by the connect timeout. Plain `amqp://` nodes
    /// pass at once.
    pub async fn tls_handshake(&self, node: usize, addr: SocketAddr) -> Result<(), BrokerError> {
        use futures_util::{AsyncReadExt, AsyncWriteExt};
        let Some(uri) = self.nodes.get(node) else {
            return Ok(());
        };
        if uri.scheme != AMQPScheme::AMQPS {
            return Ok(());
        }
        let broker = describe(uri);
        let name = self
            .tls
            .server_name
            .clone()
            .unwrap_or_else(|| uri.authority.host.clone());
        let steps = async {
            let runtime = lapin::runtime::default_runtime().map_err(std::io::Error::other)?;
            let stream = AsyncTcpStream::connect(&runtime, vec![addr]).await?;
            let mut stream = stream.into_tls(&name, self.tls.config.as_ref()).await?;
            stream.write_all(b"AMQP\x00\x00\x09\x01").await?;
            stream.flush().await?;
            let mut first = [0u8; 1];
            match stream.read(&mut first).await? {
                0 => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
                _ => Ok(()),
            }
        };
        match tokio::time::timeout(self.connect_timeout, steps).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(io)) => Err(BrokerError::Tls {
                broker,
                problem: tls_problem_io(&io, self.tls.has_client_certificate())
                    .unwrap_or(TlsProblem::Other),
                detail: crate::encoding::redact::mask_uri_passwords(&error_chain(&io)).into_owned(),
            }),
            Err(_) => Err(BrokerError::Timeout {
                broker,
                after: self.connect_timeout,
            }),
        }
    }

    /// Declares the exchange as the shipper declares it: the configured type, durable, not
    /// auto-deleted. A mismatch with an existing exchange (PRECONDITION_FAILED) closes the
    /// channel, as the broker does.
    pub async fn declare_exchange(&self, channel: &Channel) -> lapin::Result<()> {
        channel
            .exchange_declare(
                self.exchange.clone(),
                ExchangeKind::from(self.exchange_type),
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
    }

    /// Tries `attempt` on each node from `first` around the list; the first success and its
    /// node's index, or every node's error. (A plain closure returning a future, not an async
    /// closure: the shipper needs the future to be `Send`, which an async closure borrowing
    /// its argument cannot promise yet.)
    async fn first_answering<'a, T, F>(
        &'a self,
        first: usize,
        attempt: impl Fn(&'a AMQPUri) -> F,
    ) -> Result<(usize, T), BrokerError>
    where
        F: Future<Output = Result<T, BrokerError>>,
    {
        let n = self.nodes.len();
        if n == 0 {
            return Err(BrokerError::Unreachable {
                broker: "(no broker_uri)".to_string(),
                detail: "no broker URI is configured".to_string(),
            });
        }
        let mut errors = Vec::new();
        for k in 0..n {
            let i = (first % n + k) % n;
            match attempt(&self.nodes[i]).await {
                Ok(t) => return Ok((i, t)),
                Err(e) => errors.push(e),
            }
        }
        match errors.len() {
            1 => Err(errors.remove(0)),
            _ => Err(BrokerError::AllNodes { errors }),
        }
    }

    async fn connect_uri(&self, uri: &AMQPUri) -> lapin::Result<Connection> {
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(self.connection_name.as_str()));
        connect(uri, &self.tls, properties).await
    }
}

/// The shipper's target: the connector, and where in the node list it is.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub connector: Connector,
    /// The node of the current (or last) session.
    pub current: Arc<AtomicUsize>,
    /// The node to try first when connecting: the one after the node of the last session.
    pub next: Arc<AtomicUsize>,
}

impl Target {
    pub fn new(connector: Connector) -> Target {
        Target {
            connector,
            current: Default::default(),
            next: Default::default(),
        }
    }

    /// The URI of the node of the current (or last) session.
    pub fn uri(&self) -> &AMQPUri {
        let nodes = &self.connector.nodes;
        let i = self.current.load(Relaxed);
        &nodes[i.min(nodes.len().saturating_sub(1))]
    }
}

/// An open connection with a confirm-mode channel and the exchange declared.
pub(crate) struct Session {
    pub connection: Connection,
    pub channel: Channel,
    /// The node connected to, without credentials (`amqps://host:port/vhost`).
    pub node: String,
}

/// Why a connection or session could not be opened, or ended: what went wrong, said so that an
/// operator can fix it (`Display` gives the cause, the broker's words and the fix, never a
/// password). The shipper keeps retrying with backoff whatever it is (the broker may be fixed
/// meanwhile), but reports the right cause.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerError {
    /// No TCP connection (refused, unresolvable host, network down), or it dropped while
    /// logging in.
    Unreachable {
        /// The node, without credentials.
        broker: String,
        /// What lapin or the socket said.
        detail: String,
    },
    /// The broker refused the login: wrong user name or password (ACCESS_REFUSED).
    LoginRefused {
        /// The node, without credentials.
        broker: String,
        /// The user name, or the certificate's subject with EXTERNAL.
        user: String,
        /// The broker's words.
        detail: String,
    },
    /// The virtual host does not exist, or the user may not use it (NOT_ALLOWED).
    VhostRefused {
        /// The node, without credentials.
        broker: String,
        /// The virtual host asked for.
        vhost: String,
        /// The user name, or the certificate's subject with EXTERNAL.
        user: String,
        /// The broker's words.
        detail: String,
    },
    /// The user may not declare or write the exchange (ACCESS_REFUSED on the exchange).
    PermissionDenied {
        /// The exchange.
        exchange: String,
        /// The user name, or the certificate's subject with EXTERNAL.
        user: String,
        /// The broker's words.
        detail: String,
    },
    /// The exchange exists with another type or durability (PRECONDITION_FAILED).
    ExchangeMismatch {
        /// The exchange.
        exchange: String,
        /// The type it was declared with.
        declared: ExchangeType,
        /// The broker's words.
        detail: String,
    },
    /// The TLS handshake failed: the cause as far as it can be told.
    Tls {
        /// The node, without credentials.
        broker: String,
        /// The cause.
        problem: TlsProblem,
        /// What rustls or the socket said.
        detail: String,
    },
    /// Every node of the list failed: each one's error, in the order tried.
    AllNodes {
        /// One error per node.
        errors: Vec<BrokerError>,
    },
    /// A step of opening the session took longer than the connect timeout.
    Timeout {
        /// The node, without credentials.
        broker: String,
        /// The connect timeout.
        after: Duration,
    },
    /// The broker confirmed nothing for the confirm timeout while not blocking us.
    Silent {
        /// The confirm timeout.
        after: Duration,
    },
    /// The connection or channel failed while publishing.
    Lost {
        /// What lapin said.
        detail: String,
    },
    /// The destination refused what the shipper sends, for a reason to fix there or in the
    /// settings (Redis: `WRONGPASS`, `NOAUTH`, `WRONGTYPE`, `NOPERM`).
    Refused {
        /// The node, without credentials.
        broker: String,
        /// The destination's words.
        detail: String,
        /// What to change.
        fix: String,
    },
    /// The broker nacked and acked nothing for this long: the session was given up.
    Nacking {
        /// How long only nacks came.
        after: Duration,
    },
}

/// What went wrong in a TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsProblem {
    /// The broker's certificate is not signed by a trusted CA (or is otherwise invalid).
    UntrustedServer,
    /// The broker's certificate does not carry the name connected to.
    NameMismatch,
    /// The broker refused the client certificate, or its absence.
    ClientCertificateRefused {
        /// Whether a client certificate was shown.
        had_one: bool,
    },
    /// Anything else.
    Other,
}

/// Reply codes of AMQP 0-9-1 that say who is at fault.
const ACCESS_REFUSED: u16 = 403;
const NOT_ALLOWED: u16 = 530;
const PRECONDITION_FAILED: u16 = 406;

/// The steps of opening a session, for classifying what the broker answered.
#[derive(Debug, Clone, Copy)]
enum Step {
    Connect,
    Channel,
    Declare,
}

impl BrokerError {
    /// One line naming the cause, for the stderr headline.
    pub fn headline(&self) -> &'static str {
        match self {
            BrokerError::Unreachable { .. } => "broker unreachable, retrying",
            BrokerError::LoginRefused { .. } => "the broker refused the login (wrong user or password), retrying",
            BrokerError::VhostRefused { .. } => "the broker refused the virtual host (unknown, or no access), retrying",
            BrokerError::PermissionDenied { .. } => "the broker refused access to the exchange (permissions), retrying",
            BrokerError::ExchangeMismatch { .. } => "the exchange exists with another type or durability (PRECONDITION_FAILED), retrying",
            BrokerError::Tls { problem, .. } => match problem {
                TlsProblem::UntrustedServer => "the broker's TLS certificate is not trusted, retrying",
                TlsProblem::NameMismatch => "the broker's TLS certificate does not match its name, retrying",
                TlsProblem::ClientCertificateRefused { .. } => "the broker refused the client certificate, retrying",
                TlsProblem::Other => "the TLS handshake with the broker failed, retrying",
            },
            BrokerError::AllNodes { .. } => "no broker node could be used, retrying",
            BrokerError::Timeout { .. } => "connecting to the broker timed out, retrying",
            BrokerError::Silent { .. } => "the broker stopped confirming, reconnecting",
            BrokerError::Lost { .. } => "delivery interrupted, reconnecting",
            BrokerError::Nacking { .. } => "the broker nacks every message on this session, reconnecting",
            BrokerError::Refused { .. } => "the destination refused the events, retrying",
        }
    }

    /// What lapin reported at `step` with node `uri`, classified by the broker's reply code.
    fn classify(
        step: Step,
        target: &Connector,
        uri: &AMQPUri,
        error: &lapin::Error,
    ) -> BrokerError {
        let broker = describe(uri);
        let user = if uri.query.auth_mechanism == Some(SASLMechanism::External) {
            "the client certificate's subject, EXTERNAL".to_string()
        } else {
            uri.authority.userinfo.username.clone()
        };
        let detail = mask_uri_passwords(&error.to_string()).into_owned();
        if let (Step::Connect, Some(problem)) = (step, tls_problem(uri, &target.tls, error)) {
            return BrokerError::Tls {
                broker,
                problem,
                detail,
            };
        }
        let code = match error.kind() {
            lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
            _ => None,
        };
        match (step, code) {
            (Step::Connect, Some(ACCESS_REFUSED)) => BrokerError::LoginRefused {
                broker,
                user,
                detail,
            },
            (Step::Connect, Some(NOT_ALLOWED)) => BrokerError::VhostRefused {
                broker,
                vhost: uri.vhost.clone(),
                user,
                detail,
            },
            (Step::Connect, _) => BrokerError::Unreachable { broker, detail },
            (_, Some(ACCESS_REFUSED)) => BrokerError::PermissionDenied {
                exchange: target.exchange.to_string(),
                user,
                detail,
            },
            (Step::Declare, Some(PRECONDITION_FAILED)) => BrokerError::ExchangeMismatch {
                exchange: target.exchange.to_string(),
                declared: target.exchange_type,
                detail,
            },
            (Step::Channel | Step::Declare, _) => BrokerError::Lost { detail },
        }
    }

    /// A publish, a confirm or the connection failed during a session.
    pub(crate) fn lost(error: &lapin::Error, target: &Target) -> BrokerError {
        match error.kind() {
            lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == ACCESS_REFUSED => {
                BrokerError::classify(Step::Declare, &target.connector, target.uri(), error)
            }
            _ => BrokerError::Lost {
                detail: mask_uri_passwords(&error.to_string()).into_owned(),
            },
        }
    }
}

impl std::error::Error for BrokerError {}

impl fmt::Display for BrokerError {
    /// The cause, the broker's words, and the fix; never a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerError::Refused {
                broker,
                detail,
                fix,
            } => write!(f, "{broker} refused: {detail}; {fix}"),
            BrokerError::Unreachable { broker, detail } => write!(
                f,
                "cannot connect to {broker}: {detail}; check that it runs and that the host and \
                 port of its URI are right (`broker_uri`, or `redis.uri` / `mongodb.uri` with that \
                 transport)"
            ),
            BrokerError::LoginRefused {
                broker,
                user,
                detail,
            } => write!(
                f,
                "{broker} refused the login of user `{user}` (ACCESS_REFUSED): {detail}; fix the \
                 user name or password in `broker_uri`, or create the user \
                 (`rabbitmqctl add_user`)"
            ),
            BrokerError::VhostRefused {
                broker,
                vhost,
                user,
                detail,
            } => write!(
                f,
                "{broker} refused virtual host `{vhost}` to user `{user}` (NOT_ALLOWED): {detail}; \
                 create it (`rabbitmqctl add_vhost`) and grant the user access \
                 (`rabbitmqctl set_permissions -p <vhost> <user> ...`), or fix the vhost in \
                 `broker_uri` (`/` is written `%2f`)"
            ),
            BrokerError::PermissionDenied {
                exchange,
                user,
                detail,
            } => write!(
                f,
                "user `{user}` may not declare or write exchange `{exchange}` (ACCESS_REFUSED): \
                 {detail}; grant configure and write permissions on it \
                 (`rabbitmqctl set_permissions`)"
            ),
            BrokerError::ExchangeMismatch {
                exchange,
                declared,
                detail,
            } => write!(
                f,
                "exchange `{exchange}` exists with another type or durability than the shipper \
                 declares ({declared}, durable) (PRECONDITION_FAILED): {detail}; set \
                 `exchange_type` to the existing exchange's type, use another `exchange`, or \
                 delete the existing exchange"
            ),
            BrokerError::Tls {
                broker,
                problem,
                detail,
            } => match problem {
                TlsProblem::UntrustedServer => write!(
                    f,
                    "{broker} presented a TLS certificate that is not trusted: {detail}; set \
                     `tls_ca_file` to the CA certificate that signed the broker's certificate"
                ),
                TlsProblem::NameMismatch => write!(
                    f,
                    "{broker} presented a TLS certificate not valid for the name connected to: \
                     {detail}; use the host name the certificate carries in `broker_uri`, or set \
                     `tls_server_name`"
                ),
                TlsProblem::ClientCertificateRefused { had_one: false } => write!(
                    f,
                    "{broker} refused the TLS connection without a client certificate: \
                     {detail}; the broker requires one (fail_if_no_peer_cert): set \
                     `tls_cert_file` and `tls_key_file`"
                ),
                TlsProblem::ClientCertificateRefused { had_one: true } => write!(
                    f,
                    "{broker} refused the client certificate: {detail}; check that \
                     `tls_cert_file` is signed by a CA the broker trusts \
                     (ssl_options.cacertfile), is valid now and matches `tls_key_file`"
                ),
                TlsProblem::Other => write!(f, "TLS with {broker} failed: {detail}"),
            },
            BrokerError::AllNodes { errors } => {
                write!(f, "no node of `broker_uri` could be used: ")?;
                for (i, error) in errors.iter().enumerate() {
                    if i > 0 {
                        write!(f, " | ")?;
                    }
                    write!(f, "node {}: {error}", i + 1)?;
                }
                Ok(())
            }
            BrokerError::Timeout { broker, after } => write!(
                f,
                "connecting to {broker} timed out after {after:?}; check the network path to \
                 the broker, or raise `connect_timeout_ms`"
            ),
            BrokerError::Silent { after } => write!(
                f,
                "no confirm from the broker for {after:?} while it was not blocking us; the \
                 connection is replaced and unconfirmed messages are published again"
            ),
            BrokerError::Lost { detail } => write!(f, "the connection failed: {detail}"),
            BrokerError::Nacking { after } => write!(
                f,
                "the broker nacked every message for {after:?} and acked none; the session is \
                 replaced (sessions_replaced), on the next node of `broker_uri` if there is one, \
                 and the nacked messages are published again"
            ),
        }
    }
}

/// What a TLS failure at connect time says, if it is one (only for `amqps://`).
fn tls_problem(uri: &AMQPUri, tls: &Tls, error: &lapin::Error) -> Option<TlsProblem> {
    if uri.scheme != AMQPScheme::AMQPS {
        return None;
    }
    let lapin::ErrorKind::IOError(io) = error.kind() else {
        return None;
    };
    tls_problem_io(io, tls.has_client_certificate())
}

/// What an I/O error of a TLS connection says about TLS, if anything.
fn tls_problem_io(io: &std::io::Error, had_one: bool) -> Option<TlsProblem> {
    let text = format!("{io} {io:?}");
    Some(
        if text.contains("NotValidForName") || text.contains("not valid for name") {
            TlsProblem::NameMismatch
        } else if text.contains("invalid peer certificate") || text.contains("InvalidCertificate") {
            TlsProblem::UntrustedServer
        } else if text.contains("CertificateRequired")
            || text.contains("UnknownCA")
            || text.contains("BadCertificate")
            || text.contains("CertificateUnknown")
            || text.contains("AccessDenied")
            || text.contains("DecryptError")
        {
            TlsProblem::ClientCertificateRefused { had_one }
        } else if matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::BrokenPipe
        ) {
            // TLS 1.3: the client's handshake is done before the broker checks its
            // certificate; a refusal is the connection closing under the first read.
            TlsProblem::ClientCertificateRefused { had_one }
        } else if text.contains("tls") || text.contains("TLS") || text.contains("alert") {
            TlsProblem::Other
        } else {
            return None;
        },
    )
}

/// Connects to one node: TCP, then for `amqps://` TLS with our roots, client identity and
/// server name (the URI's host unless `tls_server_name` is set). Plain AMQP only for
/// `amqp://` URIs (which `Config::validate` forbids when TLS settings are set).
async fn connect(
    uri: &AMQPUri,
    tls: &Tls,
    properties: ConnectionProperties,
) -> lapin::Result<Connection> {
    let runtime = lapin::runtime::default_runtime()?;
    let config = tls.config.clone();
    let server_name = tls.server_name.clone();
    Connection::connector(
        uri.clone(),
        runtime,
        async move |uri: AMQPUri, runtime| {
            let host = uri.authority.host.as_str();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, uri.authority.port))
                .await?
                .collect();
            let stream = AsyncTcpStream::connect(&runtime, addrs).await?;
            match uri.scheme {
                AMQPScheme::AMQP => Ok(stream),
                AMQPScheme::AMQPS => {
                    let name = server_name.as_deref().unwrap_or(host);
                    Ok(stream.into_tls(name, config.as_ref()).await?)
                }
            }
        },
        properties,
    )
    .await
}

/// Opens a session with the first node that answers, starting from the one after the last
/// session's node; every node tried is bounded by the connect timeout. All failing is one error
/// listing each (the shipper then backs off before the next round).
pub(crate) async fn open(target: &Target) -> Result<Session, BrokerError> {
    let connector = &target.connector;
    let first = target.next.load(Relaxed);
    let (i, session) = connector
        .first_answering(first, |uri| open_node(connector, uri))
        .await?;
    target.current.store(i, Relaxed);
    target.next.store((i + 1) % connector.nodes.len(), Relaxed);
    Ok(session)
}

/// Connects to one node, opens a channel in confirm mode and declares the exchange. Every
/// step is bounded by the connect timeout.
async fn open_node(target: &Connector, uri: &AMQPUri) -> Result<Session, BrokerError> {
    let steps = async {
        let connection = target
            .connect_uri(uri)
            .await
            .map_err(|e| BrokerError::classify(Step::Connect, target, uri, &e))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| BrokerError::classify(Step::Channel, target, uri, &e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| BrokerError::classify(Step::Channel, target, uri, &e))?;
        target
            .declare_exchange(&channel)
            .await
            .map_err(|e| BrokerError::classify(Step::Declare, target, uri, &e))?;
        Ok::<_, BrokerError>(Session {
            connection,
            channel,
            node: describe(uri),
        })
    };
    match tokio::time::timeout(target.connect_timeout, steps).await {
        Ok(result) => result,
        Err(_) => Err(BrokerError::Timeout {
            broker: describe(uri),
            after: target.connect_timeout,
        }),
    }
}

/// An error and its sources, `: `-joined (rustls puts the cause in the source).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// The AMQP client's name for an exchange type, e.g. to declare the exchange as the shipper does.
impl From<ExchangeType> for ExchangeKind {
    fn from(exchange_type: ExchangeType) -> ExchangeKind {
        match exchange_type {
            ExchangeType::Topic => ExchangeKind::Topic,
            ExchangeType::Direct => ExchangeKind::Direct,
            ExchangeType::Fanout => ExchangeKind::Fanout,
            ExchangeType::Headers => ExchangeKind::Headers,
        }
    }
}

/// Closes politely, but never waits long for a broker that is going away.
pub(crate) async fn close(session: Session) {
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        session
            .connection
            .close(200, ShortString::from("logcollect shutting down")),
    )
    .await;
}

/// A node as messages show it: `amqps://host:port/vhost`, without credentials.
pub fn describe(uri: &AMQPUri) -> String {
    format!(
        "{}://{}:{}/{}",
        match uri.scheme {
            lapin::uri::AMQPScheme::AMQP => "amqp",
            lapin::uri::AMQPScheme::AMQPS => "amqps",
        },
        uri.authority.host,
        uri.authority.port,
        uri.vhost.replace('/', "%2f")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_about_nodes_never_show_a_password() {
        let a: AMQPUri = "amqps://app:pw-a@rabbit-1:5671/%2f".parse().unwrap();
        let b: AMQPUri = "amqp://app:pw-b@rabbit-2/logs".parse().unwrap();
        assert_eq!(describe(&a), "amqps://rabbit-1:5671/%2f");
        assert_eq!(describe(&b), "amqp://rabbit-2:5672/logs");
        let target = Target::new(Connector {
            nodes: vec![a.clone(), b.clone()],
            tls: Tls::default(),
            exchange: ShortString::from("logs"),
            exchange_type: ExchangeType::Topic,
            connection_name: "x".into(),
            connect_timeout: Duration::from_secs(1),
        });
        let error = BrokerError::AllNodes {
            errors: vec![
                BrokerError::Unreachable {
                    broker: describe(&a),
                    detail: mask_uri_passwords("dns failed for amqps://app:pw-a@rabbit-1")
                        .into_owned(),
                },
                BrokerError::LoginRefused {
                    broker: describe(&b),
                    user: "app".into(),
                    detail: "ACCESS_REFUSED".into(),
                },
            ],
        };
        for shown in [
            format!("{target:?}"),
            error.to_string(),
            format!("{error:?}"),
            error.headline().to_string(),
        ] {
            assert!(
                !shown.contains("pw-a") && !shown.contains("pw-b"),
                "{shown}"
            );
        }
        assert!(error
            .to_string()
            .contains("node 2: amqp://rabbit-2:5672/logs refused the login"));
    }
}
