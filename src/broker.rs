//! The broker: connecting, and declaring the topology the shipper publishes into.

use std::time::Duration;

use lapin::options::{ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

/// Where and how to publish.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub uri: AMQPUri,
    pub exchange: ShortString,
    pub exchange_kind: ExchangeKind,
    /// Shown in the broker's management UI, to tell connections apart.
    pub connection_name: String,
    pub connect_timeout: Duration,
}

/// An open connection with a confirm-mode channel and the exchange declared.
pub(crate) struct Session {
    pub connection: Connection,
    pub channel: Channel,
}

/// Connects, opens a channel in confirm mode and declares the exchange (durable, not
/// auto-deleted). Every step is bounded by the connect timeout.
pub(crate) async fn open(target: &Target) -> Result<Session, String> {
    let steps = async {
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(target.connection_name.as_str()));
        let connection = Connection::connect_uri(target.uri.clone(), properties)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", describe(&target.uri)))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| format!("cannot open a channel: {e}"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("cannot enable publisher confirms: {e}"))?;
        channel
            .exchange_declare(
                target.exchange.clone(),
                target.exchange_kind.clone(),
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| {
                format!(
                    "cannot declare exchange `{}` ({:?}, durable): {e}; an exchange of that name \
                     with another type or durability makes the broker refuse (PRECONDITION_FAILED)",
                    target.exchange, target.exchange_kind
                )
            })?;
        Ok::<_, String>(Session {
            connection,
            channel,
        })
    };
    match tokio::time::timeout(target.connect_timeout, steps).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "connecting to {} timed out after {:?}",
            describe(&target.uri),
            target.connect_timeout
        )),
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
