//! An AMQP message as the shipper holds it until the broker confirms it.

use std::time::UNIX_EPOCH;

use lapin::types::ShortString;
use lapin::BasicProperties;

use crate::capture::CapturedEvent;
use crate::encoding::{self, Envelope, Format};
use crate::identity::Identity;

/// What turns captured events into messages.
#[derive(Debug, Clone)]
pub(crate) struct Encoder {
    /// Secrets out before encoding (on the shipper thread, like encoding).
    pub redactor: crate::encoding::redact::Redactor,
    pub format: Format,
    pub identity: Identity,
    pub routing_key: String,
    pub max_field_bytes: usize,
    pub max_message_bytes: usize,
}

/// One message: one event (a JSON object) or several (a JSON array), encoded once and kept
/// byte for byte until confirmed, so a republished event carries the same `event.id`.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub routing_key: ShortString,
    pub body: Vec<u8>,
    pub properties: BasicProperties,
    /// How many events the body holds.
    pub events: u64,
    /// The spool segment it was read from, if it was replayed from disk.
    pub origin: Option<u64>,
}

impl Encoder {
    /// Encodes events into one message. A single event is a JSON object, several a JSON array
    /// (the Logstash `json` codec splits arrays into events). The routing key is the first
    /// event's. `Err(n)` when the body would exceed `max_message_bytes`.
    pub fn message(&self, events: &[CapturedEvent]) -> Result<Message, u64> {
        let n = events.len() as u64;
        let first = events.first().ok_or(0u64)?;
        let mut body = Vec::with_capacity(512 * events.len());
        let mut first_id = None;
        if events.len() > 1 {
            body.push(b'[');
        }
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            let id = encoding::event_id(event);
            first_id.get_or_insert(id);
            let envelope = Envelope {
                id,
                identity: &self.identity,
                max_field_bytes: self.max_field_bytes,
            };
            let event = self.redactor.event(event);
            encoding::encode_into(self.format, &event, &envelope, &mut body);
        }
        // A one-event message is identified by its event; a batch gets an id of its own.
        let message_id = match first_id {
            Some(id) if events.len() == 1 => id,
            _ => {
                body.push(b']');
                uuid::Uuid::new_v4()
            }
        };
        if self.max_message_bytes > 0 && body.len() > self.max_message_bytes {
            return Err(n);
        }
        let routing_key = encoding::routing_key(
            &self.routing_key,
            &first.target,
            first.level.as_str(),
            &self.identity.service_name,
        );
        let timestamp = first
            .timestamp
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(Message {
            routing_key: short(routing_key),
            body,
            properties: properties(
                short(message_id.to_string()),
                short(self.identity.service_name.clone()),
                timestamp,
                ShortString::from(self.format.as_str()),
            ),
            events: n,
            origin: None,
        })
    }
}

/// The properties of every message: persistent JSON, identified, stamped, typed by format.
pub(crate) fn properties(
    message_id: ShortString,
    app_id: ShortString,
    timestamp: u64,
    format: ShortString,
) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(ShortString::from("application/json"))
        .with_message_id(message_id)
        .with_app_id(app_id)
        .with_timestamp(timestamp)
        .with_type(format)
}

/// An AMQP short string, cut to 255 bytes at a character boundary (never a panic).
pub(crate) fn short(mut s: String) -> ShortString {
    if s.len() > encoding::MAX_ROUTING_KEY_BYTES {
        let mut end = encoding::MAX_ROUTING_KEY_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    ShortString::try_new(s).unwrap_or_else(|_| ShortString::from(""))
}
