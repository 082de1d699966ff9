//! The broker: connecting, and declaring the topology the shipper publishes into.

use std::fmt;
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

/// Where and how to publish.
#[derive(Clone)]
pub(crate) struct Target {
    /// The nodes, tried in order from `next` (failover); never empty.
    pub nodes: Vec<AMQPUri>,
    /// The node of the current (or last) session.
    pub current: Arc<AtomicUsize>,
    /// The node to try first when connecting: the one after the node of the last session.
    pub next: Arc<AtomicUsize>,
    pub tls: Tls,
    pub exchange: ShortString,
    pub exchange_type: ExchangeType,
    /// Shown in the broker's management UI, to tell connections apart.
    pub connection_name: String,
    pub connect_timeout: Duration,
}

impl fmt::Debug for Target {
    /// The nodes without credentials, never a password or the TLS key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(describe).collect();
        f.debug_struct("Target")
            .field("nodes", &nodes)
            .field("tls", &self.tls)
            .field("exchange", &self.exchange)
            .field("exchange_type", &self.exchange_type)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl Target {
    /// The URI of the node of the current (or last) session.
    pub fn uri(&self) -> &AMQPUri {
        let i = self.current.load(Relaxed);
        &self.nodes[i.min(self.nodes.len().saturating_sub(1))]
    }
}

/// An open connection with a confirm-mode channel and the exchange declared.
pub(crate) struct Session {
    pub connection: Connection,
    pub channel: Channel,
    /// The node connected to, without credentials (`amqps://host:port/vhost`).
    pub node: String,
}

/// Why a session could not be opened, or ended: what went wrong, said so that an operator can
/// fix it. The shipper keeps retrying with backoff whatever it is (the broker may be fixed
/// meanwhile), but reports the right cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BrokerError {
    /// No TCP connection (refused, unresolvable host, network down), or it dropped while
    /// logging in.
    Unreachable { broker: String, detail: String },
    /// The broker refused the login: wrong user name or password (ACCESS_REFUSED).
    LoginRefused {
        broker: String,
        user: String,
        detail: String,
    },
    /// The virtual host does not exist, or the user may not use it (NOT_ALLOWED).
    VhostRefused {
        broker: String,
        vhost: String,
        user: String,
        detail: String,
    },
    /// The user may not declare or write the exchange (ACCESS_REFUSED on the exchange).
    PermissionDenied {
        exchange: String,
        user: String,
        detail: String,
    },
    /// The exchange exists with another type or durability (PRECONDITION_FAILED).
    ExchangeMismatch {
        exchange: String,
        declared: ExchangeType,
        detail: String,
    },
    /// The TLS handshake failed: the cause as far as it can be told.
    Tls {
        broker: String,
        problem: TlsProblem,
        detail: String,
    },
    /// Every node of the list failed: each one's error, in the order tried.
    AllNodes { errors: Vec<BrokerError> },
    /// A step of opening the session took longer than the connect timeout.
    Timeout { broker: String, after: Duration },
    /// The broker confirmed nothing for the confirm timeout while not blocking us.
    Silent { after: Duration },
    /// The connection or channel failed while publishing.
    Lost { detail: String },
    /// The broker nacked and acked nothing for this long: the session was given up.
    Nacking { after: Duration },
}

/// What went wrong in a TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsProblem {
    /// The broker's certificate is not signed by a trusted CA (or is otherwise invalid).
    UntrustedServer,
    /// The broker's certificate does not carry the name connected to.
    NameMismatch,
    /// The broker refused the client certificate, or its absence.
    ClientCertificateRefused { had_one: bool },
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
        }
    }

    /// What lapin reported at `step` with node `uri`, classified by the broker's reply code.
    fn classify(step: Step, target: &Target, uri: &AMQPUri, error: &lapin::Error) -> BrokerError {
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
    pub fn lost(error: &lapin::Error, target: &Target) -> BrokerError {
        match error.kind() {
            lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == ACCESS_REFUSED => {
                BrokerError::classify(Step::Declare, target, target.uri(), error)
            }
            _ => BrokerError::Lost {
                detail: mask_uri_passwords(&error.to_string()).into_owned(),
            },
        }
    }
}

impl fmt::Display for BrokerError {
    /// The cause, the broker's words, and the fix; never a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerError::Unreachable { broker, detail } => write!(
                f,
                "cannot connect to {broker}: {detail}; check that the broker runs and that the \
                 host and port of `broker_uri` are right"
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
    let text = format!("{io} {io:?}");
    let had_one = tls.has_client_certificate();
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

/// Connects to the first node that answers, starting from the one after the last session's
/// node; every node tried is bounded by the connect timeout. All failing is one error listing
/// each (the shipper then backs off before the next round).
pub(crate) async fn open(target: &Target) -> Result<Session, BrokerError> {
    let n = target.nodes.len();
    if n == 0 {
        return Err(BrokerError::Unreachable {
            broker: "(no broker_uri)".to_string(),
            detail: "no broker URI is configured".to_string(),
        });
    }
    let first = target.next.load(Relaxed) % n;
    let mut errors = Vec::new();
    for k in 0..n {
        let i = (first + k) % n;
        match open_node(target, &target.nodes[i]).await {
            Ok(session) => {
                target.current.store(i, Relaxed);
                target.next.store((i + 1) % n, Relaxed);
                return Ok(session);
            }
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        1 => Err(errors.remove(0)),
        _ => Err(BrokerError::AllNodes { errors }),
    }
}

/// Connects to one node, opens a channel in confirm mode and declares the exchange (durable,
/// not auto-deleted). Every step is bounded by the connect timeout.
async fn open_node(target: &Target, uri: &AMQPUri) -> Result<Session, BrokerError> {
    let steps = async {
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(target.connection_name.as_str()));
        let connection = connect(uri, &target.tls, properties)
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
        channel
            .exchange_declare(
                target.exchange.clone(),
                exchange_kind(target.exchange_type),
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
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

/// lapin's name for an exchange type.
fn exchange_kind(exchange_type: ExchangeType) -> ExchangeKind {
    match exchange_type {
        ExchangeType::Topic => ExchangeKind::Topic,
        ExchangeType::Direct => ExchangeKind::Direct,
        ExchangeType::Fanout => ExchangeKind::Fanout,
        ExchangeType::Headers => ExchangeKind::Headers,
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

/// `host:port/vhost` without credentials, for messages.
pub(crate) fn describe(uri: &AMQPUri) -> String {
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
        let target = Target {
            nodes: vec![a.clone(), b.clone()],
            current: Default::default(),
            next: Default::default(),
            tls: Tls::default(),
            exchange: ShortString::from("logs"),
            exchange_type: ExchangeType::Topic,
            connection_name: "x".into(),
            connect_timeout: Duration::from_secs(1),
        };
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
