//! The broker: connecting, and declaring the topology the shipper publishes into.

use std::fmt;
use std::time::Duration;

use lapin::options::{ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

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

/// Where and how to publish.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub uri: AMQPUri,
    pub exchange: ShortString,
    pub exchange_type: ExchangeType,
    /// Shown in the broker's management UI, to tell connections apart.
    pub connection_name: String,
    pub connect_timeout: Duration,
}

/// An open connection with a confirm-mode channel and the exchange declared.
pub(crate) struct Session {
    pub connection: Connection,
    pub channel: Channel,
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
    /// A step of opening the session took longer than the connect timeout.
    Timeout { broker: String, after: Duration },
    /// The broker confirmed nothing for the confirm timeout while not blocking us.
    Silent { after: Duration },
    /// The connection or channel failed while publishing.
    Lost { detail: String },
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
            BrokerError::Timeout { .. } => "connecting to the broker timed out, retrying",
            BrokerError::Silent { .. } => "the broker stopped confirming, reconnecting",
            BrokerError::Lost { .. } => "delivery interrupted, reconnecting",
        }
    }

    /// What lapin reported at `step`, classified by the broker's reply code.
    fn classify(step: Step, target: &Target, error: &lapin::Error) -> BrokerError {
        let broker = describe(&target.uri);
        let user = target.uri.authority.userinfo.username.clone();
        let detail = error.to_string();
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
                vhost: target.uri.vhost.clone(),
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
                BrokerError::classify(Step::Declare, target, error)
            }
            _ => BrokerError::Lost {
                detail: error.to_string(),
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
        }
    }
}

/// Connects, opens a channel in confirm mode and declares the exchange (durable, not
/// auto-deleted). Every step is bounded by the connect timeout.
pub(crate) async fn open(target: &Target) -> Result<Session, BrokerError> {
    let steps = async {
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(target.connection_name.as_str()));
        let connection = Connection::connect_uri(target.uri.clone(), properties)
            .await
            .map_err(|e| BrokerError::classify(Step::Connect, target, &e))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| BrokerError::classify(Step::Channel, target, &e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| BrokerError::classify(Step::Channel, target, &e))?;
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
            .map_err(|e| BrokerError::classify(Step::Declare, target, &e))?;
        Ok::<_, BrokerError>(Session {
            connection,
            channel,
        })
    };
    match tokio::time::timeout(target.connect_timeout, steps).await {
        Ok(result) => result,
        Err(_) => Err(BrokerError::Timeout {
            broker: describe(&target.uri),
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
