//! A message as the shipper holds it until its destination confirms it: what any transport
//! publishes (AMQP builds its properties from [`Meta`] when it publishes).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use uuid::Uuid;

use crate::capture::CapturedEvent;
use crate::encoding::{self, Envelope, Format};
use crate::identity::Identity;

/// What turns captured events into documents, and documents into messages.
#[derive(Debug, Clone)]
pub(crate) struct Encoder {
    /// Secrets out before encoding (on the shipper thread, like encoding).
    pub redactor: crate::encoding::redact::Redactor,
    pub format: Format,
    pub identity: Identity,
    pub routing_key: String,
    pub max_field_bytes: usize,
    pub max_message_bytes: usize,
    /// How many events, and bytes, one message may hold.
    pub batch: BatchLimits,
    /// The size of recent documents, so a new batch's body is allocated once at about its final
    /// size instead of growing (and copying) as events join it.
    pub doc_bytes: DocBytes,
}

/// The mean document size of the last batch closed, shared by the clones of one encoder.
#[derive(Debug, Clone, Default)]
pub(crate) struct DocBytes(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl DocBytes {
    /// Before any batch: a guess a little above the usual document (docs/formats.md).
    const FIRST_GUESS: usize = 640;

    pub fn get(&self) -> usize {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            0 => Self::FIRST_GUESS,
            n => n,
        }
    }

    pub fn observe(&self, body_bytes: usize, events: usize) {
        if let Some(mean) = body_bytes.checked_div(events) {
            self.0
                .store(mean.max(1), std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The most one message holds (`batch.*` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchLimits {
    /// Events per message, at least 1.
    pub max_events: usize,
    /// Body bytes per message of several events; an event larger than this travels alone.
    pub max_bytes: usize,
}

/// One message: one event (a JSON object) or several (a JSON array), encoded once and kept
/// byte for byte until confirmed, so a republished event carries the same `event.id`. The body
/// is shared: publishing it again, or handing it to the client, never copies it here.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// Where it goes: the routing key template expanded (at most 255 bytes).
    pub route: String,
    pub body: Bytes,
    pub meta: Meta,
    /// Where each document of an array body ends (exclusive byte offsets; the next starts
    /// after the comma), so a transport that writes documents one by one never parses the body
    /// again. Empty for a one-document body, and for one read from the spool.
    #[cfg_attr(not(any(feature = "redis", feature = "mongodb")), allow(dead_code))]
    pub ends: Vec<u32>,
    /// How many events the body holds.
    pub events: u64,
    /// The spool segment it was read from, if it was replayed from disk.
    pub origin: Option<u64>,
    /// When each event was logged, for the delivery latency (empty when read from the spool).
    pub born: Vec<SystemTime>,
}

/// What travels beside the body (each at most 255 bytes, as the spool stores them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    /// The `event.id` of a one-event message; a batch's own id.
    pub id: String,
    /// The service that logged the events.
    pub app: String,
    /// The documents' format (`ecs`, `classic`): how a consumer tells them apart.
    pub format: String,
    /// When the first event was logged, in seconds since the epoch (0 if unknown).
    pub timestamp: u64,
}

impl Encoder {
    /// The routing key of an event: all events of one message share it.
    pub fn routing_key_of(&self, event: &CapturedEvent) -> String {
        encoding::routing_key(
            &self.routing_key,
            &event.target,
            event.level.as_str(),
            &self.identity.service_name,
        )
    }

    /// Appends one event's document to `out`; returns its `event.id`.
    pub fn encode_into(&self, event: &CapturedEvent, out: &mut Vec<u8>) -> Uuid {
        let id = encoding::event_id(event);
        let envelope = Envelope {
            id,
            identity: &self.identity,
            max_field_bytes: self.max_field_bytes,
        };
        let event = self.redactor.event(event);
        encoding::encode_into(self.format, &event, &envelope, out);
        id
    }

    /// Whether a document of `len` bytes is too big to ship at all (`max_message_bytes`).
    pub fn oversize(&self, len: usize) -> bool {
        self.max_message_bytes > 0 && len > self.max_message_bytes
    }

    /// The body bytes a message of several events may hold: `batch.max_bytes`, and never more
    /// than `max_message_bytes`.
    pub fn batch_bytes(&self) -> usize {
        let cap = self.batch.max_bytes.max(1);
        if self.max_message_bytes > 0 {
            cap.min(self.max_message_bytes)
        } else {
            cap
        }
    }

    /// Seals a finished body into a message. `id` is the `event.id` of a one-event message; a
    /// batch gets a message id of its own.
    pub fn seal(
        &self,
        routing_key: String,
        body: Bytes,
        born: Vec<SystemTime>,
        ends: Vec<u32>,
        id: Option<Uuid>,
    ) -> Message {
        let timestamp = born
            .first()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let message_id = id.unwrap_or_else(Uuid::new_v4);
        Message {
            route: short(routing_key),
            body,
            meta: Meta {
                id: message_id.to_string(),
                app: short(self.identity.service_name.clone()),
                format: self.format.as_str().to_owned(),
                timestamp,
            },
            ends,
            events: born.len() as u64,
            origin: None,
            born,
        }
    }
}

/// `s` cut to 255 bytes at a character boundary (an AMQP short string; never a panic).
pub(crate) fn short(mut s: String) -> String {
    if s.len() > encoding::MAX_ROUTING_KEY_BYTES {
        let mut end = encoding::MAX_ROUTING_KEY_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}
