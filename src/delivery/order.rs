//! The shipper's custody order: what is published next, what goes back, what goes to disk.
//!
//! Oldest first: messages to publish again (`pending`), then what the spool holds (everything
//! spooled is older than what is still queued), then the queue, drained in passes that pack
//! its events into messages. A message leaves custody only when the broker confirms it.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use super::batch;
use super::message::Message;
use super::queue::Shared;
use super::stats::Counters;

/// Messages in the shipper's hands and not in flight, and the rule for draining the queue.
#[derive(Debug)]
pub(crate) struct Order {
    /// Encoded, not yet published (or to be published again), oldest first.
    pending: VecDeque<Message>,
    /// `batch.linger_ms`: how long a queue holding less than a full batch may wait for more.
    linger: Duration,
    /// Since when the queue has held events that lingered.
    waiting_since: Option<Instant>,
}

impl Order {
    pub fn new(linger: Duration) -> Self {
        Order {
            pending: VecDeque::new(),
            linger,
            waiting_since: None,
        }
    }

    /// The next message to publish, oldest first; `room` is how many the window takes now,
    /// which bounds how much one pass drains from the queue.
    pub fn next(&mut self, shared: &Shared, room: usize, now: Instant) -> Option<Message> {
        if let Some(message) = self.pending.pop_front() {
            return Some(message);
        }
        if let Some(message) = shared
            .spool()
            .and_then(|mut spool| spool.next(&shared.counters))
        {
            return Some(message);
        }
        shared.draining();
        let max_events = shared.encoder.batch.max_events.max(1);
        let mut budget = room.max(1).saturating_mul(max_events);
        if self.lingering(shared, now) {
            // Only whole batches leave; the rest lingers on.
            budget = budget.min(shared.queue.len() / max_events * max_events);
            if budget == 0 {
                return None;
            }
        }
        // Sized once: grown event by event, a pass of thousands reallocated and copied it.
        let mut drained = Vec::with_capacity(budget.min(shared.queue.len()));
        while drained.len() < budget {
            let Some(event) = shared.queue.pop() else {
                break;
            };
            drained.push(event);
        }
        if drained.is_empty() {
            return None;
        }
        let (messages, oversize) = batch::pack(&shared.encoder, drained.iter().map(|e| &**e));
        shared.recycle(drained);
        if oversize > 0 {
            Counters::add(&shared.counters.dropped_oversize, oversize);
            shared.signal_progress();
        }
        self.pending.extend(messages);
        self.pending.pop_front()
    }

    /// Whether the queue's partial batch waits for more (`batch.linger_ms`) before a pass
    /// drains it: never with a linger of 0, nor after the linger, nor during a flush or at
    /// shutdown.
    fn lingering(&mut self, shared: &Shared, now: Instant) -> bool {
        let queued = shared.queue.len();
        let partial = queued % shared.encoder.batch.max_events.max(1);
        if self.linger.is_zero()
            || partial == 0
            || shared.closed.load(Relaxed)
            || shared.flushing.load(Relaxed) > 0
        {
            self.waiting_since = None;
            return false;
        }
        let since = *self.waiting_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.linger {
            self.waiting_since = None;
            return false;
        }
        true
    }

    /// When lingering events must be drained, if some linger.
    pub fn linger_deadline(&self) -> Option<Instant> {
        self.waiting_since
            .and_then(|since| since.checked_add(self.linger))
    }

    /// A returned or nacked message: published again, same bytes, after what is pending.
    pub fn retry(&mut self, shared: &Shared, message: Message) {
        Counters::add(&shared.counters.retried, message.events);
        self.pending.push_back(message);
    }

    /// What a session left unconfirmed (oldest first) goes back in front of everything: to be
    /// published again, or spooled if the shipper is stopping (then it is not a retry).
    pub fn unconfirmed(
        &mut self,
        shared: &Shared,
        messages: impl DoubleEndedIterator<Item = Message>,
        retry: bool,
    ) {
        for message in messages.rev() {
            if retry {
                Counters::add(&shared.counters.retried, message.events);
            }
            self.pending.push_front(message);
        }
    }

    /// The broker confirmed `message`: it leaves our custody (and the spool, if it was there).
    pub fn delivered(&mut self, shared: &Shared, message: &Message, now: SystemTime) {
        let counters = &shared.counters;
        let recovered = message.origin.is_some_and(|segment| {
            shared
                .spool()
                .is_some_and(|mut spool| spool.confirmed(segment, counters))
        });
        let counter = if recovered {
            &counters.recovered
        } else {
            &counters.confirmed
        };
        Counters::add(counter, message.events);
        Counters::add(&counters.messages_confirmed, 1);
        counters.record_latency(&message.born, now);
        shared.signal_progress();
    }

    /// Nothing waits to be published: no pending message, no queued event, no unread spool.
    pub fn nothing_left(&self, shared: &Shared) -> bool {
        self.pending.is_empty()
            && shared.queue.is_empty()
            && shared.spool().is_none_or(|spool| !spool.has_unread())
    }

    /// With a spool, moves what waits in memory to it, oldest first: the pending messages not
    /// already there (if `with_pending`), then the queued events. Returns the events written.
    ///
    /// Pending messages are older than anything the spool has not yet handed out, so they are
    /// moved only when it has nothing unread (appending them then keeps the logging order) —
    /// except at exit, when keeping them beats their order on the next start.
    pub fn spill(&mut self, shared: &Shared, with_pending: bool) -> u64 {
        self.spill_as(shared, with_pending, false)
    }

    /// At exit: everything in memory goes to the spool, whatever it still holds.
    pub fn spill_all(&mut self, shared: &Shared) -> u64 {
        self.spill_as(shared, true, true)
    }

    fn spill_as(&mut self, shared: &Shared, with_pending: bool, exiting: bool) -> u64 {
        let counters = &shared.counters;
        let before = counters.spooled.load(Relaxed);
        let in_memory: u64 = self
            .pending
            .iter()
            .filter(|m| m.origin.is_none())
            .map(|m| m.events)
            .sum();
        let move_pending = with_pending
            && in_memory > 0
            && shared.spool().is_some_and(|spool| {
                spool.has_room_for(in_memory) && (exiting || !spool.has_unread())
            });
        if move_pending {
            let (on_disk, in_memory): (VecDeque<_>, VecDeque<_>) =
                self.pending.drain(..).partition(|m| m.origin.is_some());
            self.pending = on_disk;
            if let Some(mut spool) = shared.spool() {
                self.pending
                    .extend(spool.append(in_memory.into(), &shared.counters));
            }
        }
        // What is queued now, in chunks, so a logging thread that spills too never waits long
        // for the lock (and a producer faster than the disk cannot keep this loop going
        // forever). A chunk the spool cannot take stays queued.
        let mut left = shared.queue.len();
        while left > 0 {
            let chunk = left.min(SPILL_CHUNK);
            if shared
                .spool()
                .is_none_or(|spool| !spool.has_room_for(chunk as u64))
            {
                break;
            }
            let lost = shared.spill_queue(chunk);
            // Handed back only if another thread filled the room meanwhile: newer than what
            // the spool holds, they cannot be published before it, so they are lost (counted).
            Counters::add(&counters.evicted, lost.iter().map(|m| m.events).sum());
            left -= chunk;
        }
        shared.signal_progress();
        counters.spooled.load(Relaxed) - before
    }
}

/// Events moved to the spool under one hold of its lock.
const SPILL_CHUNK: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::message::{BatchLimits, Encoder};
    use crate::delivery::queue::Overflow;
    use crate::encoding::{test_support, Format};

    fn shared(max_events: usize, capacity: usize) -> std::sync::Arc<Shared> {
        let encoder = Encoder {
            redactor: crate::encoding::redact::Redactor::none(),
            format: Format::Ecs,
            identity: test_support::identity(),
            routing_key: "logstash.{target}".into(),
            max_field_bytes: 0,
            max_message_bytes: 0,
            batch: BatchLimits {
                max_events,
                max_bytes: 1 << 20,
            },
            doc_bytes: Default::default(),
        };
        Shared::new(
            capacity,
            encoder,
            None,
            Overflow::DropNewest,
            Duration::ZERO,
        )
    }

    fn push(shared: &Shared, n: usize) {
        for _ in 0..n {
            let _ = shared.queue.push(Box::new(test_support::event(Vec::new())));
        }
    }

    #[test]
    fn a_pass_drains_what_the_window_can_take_and_retries_come_first() {
        let s = shared(10, 1000);
        let mut order = Order::new(Duration::ZERO);
        let now = Instant::now();
        assert!(order.next(&s, 4, now).is_none());
        push(&s, 55);
        let first = order.next(&s, 2, now).expect("a batch");
        assert_eq!(first.events, 10);
        assert_eq!(s.queue.len(), 35, "two messages' worth drained");
        order.retry(&s, first);
        let second = order.next(&s, 2, now).expect("pending");
        assert_eq!(second.events, 10);
        let again = order.next(&s, 2, now).expect("the retried one");
        assert_eq!(again.events, 10);
        assert_eq!(s.stats().retried, 10);
        order.unconfirmed(&s, vec![second, again].into_iter(), false);
        assert!(!order.nothing_left(&s));
        let mut events = 0;
        while let Some(m) = order.next(&s, 100, now) {
            events += m.events;
        }
        assert_eq!(events, 20 + 35);
        assert!(order.nothing_left(&s));
    }

    #[test]
    fn encoded_events_come_back_emptied_with_their_strings_and_closed_spans() {
        use crate::capture::{FieldValue, SpanSnapshot};
        use crate::delivery::Handoff;
        use std::sync::Arc;
        let s = shared(10, 1000);
        let closed = Arc::new(SpanSnapshot {
            name: "closed",
            fields: vec![("w", FieldValue::Str("span value".into()))],
        });
        let open = Arc::new(SpanSnapshot {
            name: "open",
            fields: vec![("x", FieldValue::Str("still open".into()))],
        });
        let still_held = open.clone();
        let mut a = test_support::event(vec![
            ("s", FieldValue::Str("value of a".into())),
            ("n", FieldValue::I64(1)),
        ]);
        a.spans = vec![closed];
        let mut b = test_support::event(vec![("s", FieldValue::Str("value of b".into()))]);
        b.spans = vec![open];
        let mut big = test_support::event(Vec::new());
        big.message = "m".repeat(2000);
        for event in [a, b, big] {
            let _ = s.queue.push(Box::new(event));
        }
        let message = Order::new(Duration::ZERO)
            .next(&s, 1, Instant::now())
            .expect("a batch");
        assert_eq!(message.events, 3);

        let handoff = Handoff::new(s.clone());
        for _ in 0..2 {
            let blank = handoff.blank();
            assert!(blank.message.is_empty() && blank.fields.is_empty() && blank.spans.is_empty());
            assert!(
                blank.fields.capacity() >= 1,
                "the field list's buffer is kept"
            );
            assert!(blank.trace.is_none() && blank.file.is_none() && blank.target.is_empty());
        }
        let fresh = handoff.blank();
        assert_eq!(
            fresh.message.capacity(),
            0,
            "the event with a 2000-byte message was freed"
        );

        // Two event strings and the closed span's string; not the open span's.
        let strings: Vec<String> = (0..4).map(|_| handoff.string()).collect();
        assert!(strings.iter().all(String::is_empty));
        assert_eq!(strings.iter().filter(|s| s.capacity() >= 10).count(), 3);

        let reused = handoff.span_snapshot();
        assert_eq!(Arc::strong_count(&reused), 1);
        assert!(reused.fields.is_empty() && reused.fields.capacity() >= 1);
        let new = handoff.span_snapshot();
        assert_eq!(
            new.fields.capacity(),
            0,
            "the open span's snapshot was not taken"
        );
        assert_eq!(still_held.fields.len(), 1, "and is untouched");
    }

    #[test]
    fn linger_holds_a_partial_batch_until_it_fills_or_the_time_is_up() {
        let s = shared(10, 1000);
        let mut order = Order::new(Duration::from_millis(50));
        let t0 = Instant::now();
        push(&s, 3);
        assert!(order.next(&s, 1, t0).is_none(), "lingers");
        assert_eq!(
            order.linger_deadline(),
            Some(t0 + Duration::from_millis(50))
        );
        push(&s, 9);
        assert_eq!(order.next(&s, 1, t0).map(|m| m.events), Some(10), "full");
        assert_eq!(s.queue.len(), 2, "only whole batches leave while lingering");
        assert!(order.next(&s, 1, t0).is_none());
        let late = t0 + Duration::from_millis(60);
        assert_eq!(order.next(&s, 1, late).map(|m| m.events), Some(2));
        push(&s, 1);
        s.closed.store(true, Relaxed);
        assert_eq!(
            order.next(&s, 1, late).map(|m| m.events),
            Some(1),
            "shutdown"
        );
    }
}
