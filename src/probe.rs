//! One document built as the shipper builds it, without a shipper: what `logcollect check`
//! publishes to prove the path end to end.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::capture::{CapturedEvent, FieldValue};
use crate::encoding::{self, Envelope};
use crate::identity::Identity;
use crate::{Config, Format};

/// An INFO document of the configured format and identity, with the routing key and message
/// metadata the shipper would give it. Its one field, `check = true`, tells it apart.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Probe {
    /// Where it goes: the `routing_key` template expanded for `logger` (with `transport =
    /// redis`, the `redis.key` template: the list or stream).
    pub routing_key: String,
    /// The encoded document (one JSON object).
    pub body: Vec<u8>,
    /// Its `event.id`, also the message id.
    pub id: String,
    /// The service name (the message's app id).
    pub service: String,
    /// The format it is encoded in (the message's type).
    pub format: Format,
    /// The event time, in seconds since the Unix epoch (the message's timestamp).
    pub timestamp: u64,
}

impl Probe {
    /// Builds the document `logger` would ship with `message` under `config`.
    pub fn new(config: &Config, logger: &str, message: &str) -> Probe {
        let identity = Identity::detect(
            config.identity.clone(),
            config.hostname.clone(),
            config.hostname_fqdn,
            config.service_name.clone(),
        );
        let event = CapturedEvent {
            timestamp: SystemTime::now(),
            level: tracing::Level::INFO,
            target: Cow::Owned(logger.to_string()),
            module_path: None,
            file: None,
            line: None,
            thread_name: None,
            thread_id: 0,
            message: message.to_string(),
            fields: vec![("check", FieldValue::Bool(true))],
            spans: Vec::new(),
            trace: None,
        };
        let id = encoding::event_id(&event);
        let envelope = Envelope {
            id,
            identity: &identity,
            max_field_bytes: config.max_field_bytes,
        };
        let body = encoding::encode(config.format, &event, &envelope);
        let template = match config.transport {
            crate::TransportKind::Amqp => &config.routing_key,
            crate::TransportKind::Redis => &config.redis.key,
            crate::TransportKind::Mongodb => &config.mongodb.collection,
        };
        let routing_key = encoding::routing_key(template, logger, "INFO", &identity.service_name);
        let timestamp = event
            .timestamp
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Probe {
            routing_key,
            body,
            id: id.to_string(),
            service: identity.service_name.clone(),
            format: config.format,
            timestamp,
        }
    }
}
