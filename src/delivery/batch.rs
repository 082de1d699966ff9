//! Packing events into messages: one JSON array of documents per message, grouped by routing
//! key (every event of a message shares its key).
//!
//! A pass packs what the shipper drained from the queue at once; no batch waits for more
//! events (that is `batch.linger_ms`, applied before the queue is drained). Each event is
//! encoded straight into the body of its key's open batch; an event that does not fit closes
//! that batch and starts the next one, so a batch never exceeds its byte ceiling.

use std::time::SystemTime;

use bytes::Bytes;
use uuid::Uuid;

use super::message::{Encoder, Message};
use crate::capture::CapturedEvent;

/// Open batches (routing keys) one pass keeps at once; an event with yet another key closes
/// the oldest. Bounds the memory of a pass whatever the number of targets.
pub(crate) const MAX_OPEN: usize = 32;

/// One message being filled: `[` then documents separated by `,`.
struct Open {
    routing_key: String,
    body: Vec<u8>,
    born: Vec<SystemTime>,
    /// Where each document ends in `body`.
    ends: Vec<u32>,
    first_id: Option<Uuid>,
}

impl Open {
    fn new(routing_key: String, capacity: usize, max_events: usize) -> Self {
        let mut body = Vec::with_capacity(capacity);
        body.push(b'[');
        Open {
            routing_key,
            body,
            born: Vec::with_capacity(max_events.min(4096)),
            ends: Vec::with_capacity(max_events.min(4096)),
            first_id: None,
        }
    }
}

/// Packs one pass of events into messages.
pub(crate) struct Packer<'a> {
    encoder: &'a Encoder,
    max_events: usize,
    /// Body bytes of a batch, brackets included.
    max_bytes: usize,
    open: Vec<Open>,
    done: Vec<Message>,
    oversize: u64,
    /// The routing key of the last event's target and level: consecutive events of one call
    /// site (the common case) reuse it instead of expanding the template again.
    last_key: Option<(String, tracing::Level, String)>,
}

impl<'a> Packer<'a> {
    /// A packer whose batches also stay within `max_bytes` (a spool segment's size).
    pub fn within(encoder: &'a Encoder, max_bytes: usize) -> Self {
        Packer {
            encoder,
            max_events: encoder.batch.max_events.max(1),
            max_bytes: encoder.batch_bytes().min(max_bytes.max(1)),
            open: Vec::new(),
            done: Vec::new(),
            oversize: 0,
            last_key: None,
        }
    }

    /// Adds one event to its key's batch (after the events of that key added before it).
    pub fn add(&mut self, event: &CapturedEvent) {
        let key = key_of(&mut self.last_key, self.encoder, event);
        let i = match self.open.iter().position(|o| o.routing_key == key) {
            Some(i) => i,
            None => {
                let key = key.to_string();
                if self.open.len() >= MAX_OPEN {
                    let oldest = self.open.remove(0);
                    self.close(oldest);
                }
                // About the batch's final size (an eighth more than recent documents need),
                // never more than its ceiling.
                let doc = self.encoder.doc_bytes.get().saturating_add(1);
                let guess = self.max_events.saturating_mul(doc.saturating_add(doc / 8));
                let capacity = self.max_bytes.min(guess).saturating_add(2);
                self.open
                    .push(Open::new(key, capacity.min(1 << 20), self.max_events));
                self.open.len() - 1
            }
        };
        let open = &mut self.open[i];
        let mark = open.body.len();
        let first = open.born.is_empty();
        if !first {
            open.body.push(b',');
        }
        let start = open.body.len();
        let id = self.encoder.encode_into(event, &mut open.body);
        if self.encoder.oversize(open.body.len() - start) {
            open.body.truncate(mark);
            self.oversize += 1;
            return;
        }
        // `+ 1`: the closing bracket.
        if !first && open.body.len() + 1 > self.max_bytes {
            // It does not fit: it starts the next batch of its key.
            let mut next = Open::new(
                open.routing_key.clone(),
                open.body.capacity(),
                self.max_events,
            );
            next.body.extend_from_slice(&open.body[start..]);
            open.body.truncate(mark);
            let full = std::mem::replace(open, next);
            self.close(full);
        }
        let open = &mut self.open[i];
        open.born.push(event.timestamp);
        open.ends
            .push(u32::try_from(open.body.len()).unwrap_or(u32::MAX));
        open.first_id.get_or_insert(id);
        // Full: no further event could join it.
        if open.born.len() >= self.max_events || open.body.len() + 2 >= self.max_bytes {
            let full = self.open.remove(i);
            self.close(full);
        }
    }

    /// The messages of the pass, every batch closed; and how many events were dropped as
    /// larger than `max_message_bytes`.
    pub fn finish(mut self) -> (Vec<Message>, u64) {
        for open in std::mem::take(&mut self.open) {
            self.close(open);
        }
        (self.done, self.oversize)
    }

    fn close(&mut self, mut open: Open) {
        if open.born.len() > 1 {
            self.encoder
                .doc_bytes
                .observe(open.body.len(), open.born.len());
        }
        let (body, ends, id) = match open.born.len() {
            0 => return,
            // One event: a plain JSON object, identified by its event.
            1 => (Bytes::from(open.body).slice(1..), Vec::new(), open.first_id),
            _ => {
                open.body.push(b']');
                // A body past 4 GiB has no offsets: a transport splits it itself.
                let ends = match open.ends.last() {
                    Some(&u32::MAX) => Vec::new(),
                    _ => open.ends,
                };
                (Bytes::from(open.body), ends, None)
            }
        };
        self.done.push(
            self.encoder
                .seal(open.routing_key, body, open.born, ends, id),
        );
    }
}

/// The routing key of `event`'s batch (the template expanded for its target and level),
/// cached in `last` for the next event of the same target and level.
fn key_of<'k>(
    last: &'k mut Option<(String, tracing::Level, String)>,
    encoder: &Encoder,
    event: &CapturedEvent,
) -> &'k str {
    let hit = matches!(&*last,
        Some((target, level, _)) if *level == event.level && *target == *event.target);
    if !hit {
        let key = encoder.routing_key_of(event);
        *last = Some((event.target.to_string(), event.level, key));
    }
    last.as_ref().map_or("", |(_, _, key)| key)
}

/// Packs `events` in one pass.
pub(crate) fn pack<'e>(
    encoder: &Encoder,
    events: impl IntoIterator<Item = &'e CapturedEvent>,
) -> (Vec<Message>, u64) {
    pack_within(encoder, events, usize::MAX)
}

/// Packs `events` in one pass into batches of at most `max_bytes` too.
pub(crate) fn pack_within<'e>(
    encoder: &Encoder,
    events: impl IntoIterator<Item = &'e CapturedEvent>,
    max_bytes: usize,
) -> (Vec<Message>, u64) {
    let mut packer = Packer::within(encoder, max_bytes);
    for event in events {
        packer.add(event);
    }
    packer.finish()
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde_json::Value;

    use super::*;
    use crate::delivery::message::BatchLimits;
    use crate::encoding::test_support;
    use crate::encoding::Format;

    fn encoder(max_events: usize, max_bytes: usize, max_message_bytes: usize) -> Encoder {
        Encoder {
            redactor: crate::encoding::redact::Redactor::none(),
            format: Format::Ecs,
            identity: test_support::identity(),
            routing_key: "logstash.{target}".into(),
            max_field_bytes: 0,
            max_message_bytes,
            batch: BatchLimits {
                max_events,
                max_bytes,
            },
            doc_bytes: Default::default(),
        }
    }

    fn event(target: &'static str, message: &str) -> CapturedEvent {
        let mut e = test_support::event(vec![]);
        e.target = Cow::Borrowed(target);
        e.message = message.to_string();
        e
    }

    fn docs(m: &Message) -> Vec<Value> {
        match serde_json::from_slice(&m.body).expect("valid JSON") {
            Value::Array(items) => items,
            doc => vec![doc],
        }
    }

    fn messages_of(m: &[Message]) -> Vec<Vec<String>> {
        m.iter()
            .map(|m| {
                docs(m)
                    .iter()
                    .map(|d| d["message"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn events_of_one_key_go_in_one_array_in_order_and_one_event_is_an_object() {
        let e = encoder(100, 1 << 20, 0);
        let events: Vec<_> = (0..5).map(|i| event("app", &format!("m{i}"))).collect();
        let (messages, oversize) = pack(&e, &events);
        assert_eq!((messages.len(), oversize), (1, 0));
        assert_eq!(messages[0].events, 5);
        assert_eq!(messages[0].born.len(), 5);
        assert!(messages[0].body.starts_with(b"[{"));
        // The offsets cut the body into its documents, as a parse would.
        let mut start = 1;
        let mut cut = Vec::new();
        for &end in &messages[0].ends {
            cut.push(
                serde_json::from_slice::<serde_json::Value>(&messages[0].body[start..end as usize])
                    .expect("a document"),
            );
            start = end as usize + 1;
        }
        assert_eq!(cut, docs(&messages[0]));
        assert_eq!(messages_of(&messages), [["m0", "m1", "m2", "m3", "m4"]]);
        let (one, _) = pack(&e, &events[..1]);
        assert!(one[0].body.starts_with(b"{") && one[0].body.ends_with(b"}"));
        let id = docs(&one[0])[0]["event"]["id"].as_str().map(str::to_owned);
        assert_eq!(
            Some(one[0].meta.id.clone()),
            id,
            "a one-event message is identified by its event"
        );
    }

    #[test]
    fn batches_are_grouped_by_routing_key_keeping_each_keys_order() {
        let e = encoder(100, 1 << 20, 0);
        let events: Vec<_> = (0..9)
            .map(|i| event(["a", "b", "c"][i % 3], &format!("m{i}")))
            .collect();
        let (messages, _) = pack(&e, &events);
        let keys: Vec<&str> = messages.iter().map(|m| m.route.as_str()).collect();
        assert_eq!(keys, ["logstash.a", "logstash.b", "logstash.c"]);
        assert_eq!(
            messages_of(&messages),
            [["m0", "m3", "m6"], ["m1", "m4", "m7"], ["m2", "m5", "m8"]]
        );
    }

    #[test]
    fn many_keys_keep_a_bounded_number_of_batches_open() {
        let e = encoder(1000, 1 << 20, 0);
        let targets: Vec<&'static str> = (0..MAX_OPEN + 8)
            .map(|i| &*Box::leak(format!("t{i}").into_boxed_str()))
            .collect();
        let events: Vec<_> = (0..3)
            .flat_map(|round| {
                targets
                    .iter()
                    .map(move |t| event(t, &format!("{t}-{round}")))
            })
            .collect();
        let (messages, _) = pack(&e, &events);
        let total: u64 = messages.iter().map(|m| m.events).sum();
        assert_eq!(total, events.len() as u64);
        for t in &targets {
            let key = format!("logstash.{t}");
            let of_key: Vec<String> = messages
                .iter()
                .filter(|m| m.route.as_str() == key)
                .flat_map(|m| messages_of(std::slice::from_ref(m)).concat())
                .collect();
            assert_eq!(of_key, [0, 1, 2].map(|r| format!("{t}-{r}")), "{key}");
        }
    }

    #[test]
    fn a_batch_never_exceeds_max_bytes_nor_max_events() {
        let one = pack(&encoder(1, 1 << 20, 0), &[event("app", "x")]).0[0]
            .body
            .len();
        let max_bytes = one * 3 + one / 2;
        let e = encoder(1000, max_bytes, 0);
        let events: Vec<_> = (0..20).map(|i| event("app", &format!("m{i:02}"))).collect();
        let (messages, _) = pack(&e, &events);
        assert!(messages.iter().all(|m| m.body.len() <= max_bytes));
        let sizes: Vec<u64> = messages.iter().map(|m| m.events).collect();
        assert_eq!(sizes, [3, 3, 3, 3, 3, 3, 2]);
        assert_eq!(messages_of(&messages).concat().len(), 20);

        let (messages, _) = pack(&encoder(4, 1 << 20, 0), &events);
        assert_eq!(
            messages.iter().map(|m| m.events).collect::<Vec<_>>(),
            [4, 4, 4, 4, 4]
        );
    }

    #[test]
    fn an_event_larger_than_max_bytes_travels_alone_and_an_oversize_one_is_dropped() {
        let e = encoder(100, 10, 0);
        let events: Vec<_> = (0..3).map(|i| event("app", &format!("m{i}"))).collect();
        let (messages, _) = pack(&e, &events);
        assert_eq!(messages_of(&messages), [["m0"], ["m1"], ["m2"]]);

        let small = pack(&encoder(1, 1 << 20, 0), &[event("app", "x")]).0[0]
            .body
            .len();
        let e = encoder(100, 1 << 20, 2 * small + 100);
        let big = event("app", &"y".repeat(5000));
        let (messages, oversize) = pack(&e, [&events[0], &big, &events[1]]);
        assert_eq!(oversize, 1);
        assert_eq!(messages_of(&messages), [["m0", "m1"]]);
        assert!(messages.iter().all(|m| m.body.len() <= 2 * small + 100));
    }
}
