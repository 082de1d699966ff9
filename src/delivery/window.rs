//! The confirm window: messages published and awaiting the broker's confirm.
//!
//! Awaiting each confirm in turn would cap throughput at one round trip per message, so up to
//! `limit` messages are in flight at once, each under a sequence number of this session. A
//! broker that settles nothing for the confirm timeout while messages are in flight is
//! presumed gone (the caller suspends that clock while the broker blocks us).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::message::Message;

/// Messages in flight in one session.
#[derive(Debug)]
pub(crate) struct Window {
    limit: usize,
    in_flight: BTreeMap<u64, Message>,
    next_seq: u64,
    /// The last time the broker showed progress (or the window started to wait).
    last_progress: Instant,
}

impl Window {
    pub fn new(limit: usize, now: Instant) -> Self {
        Window {
            limit: limit.max(1),
            in_flight: BTreeMap::new(),
            next_seq: 0,
            last_progress: now,
        }
    }

    /// How many more messages may be published now.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.in_flight.len())
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Takes `message` into the window; returns its sequence number.
    pub fn open(&mut self, message: Message, now: Instant) -> u64 {
        if self.in_flight.is_empty() {
            // The silence clock starts with the first message awaited.
            self.last_progress = now;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.insert(seq, message);
        seq
    }

    /// The broker answered for `seq` (ack, nack, return or error): the message leaves the
    /// window, for the caller to settle. `None` if it was not in flight.
    pub fn settle(&mut self, seq: u64, now: Instant) -> Option<Message> {
        self.last_progress = now;
        self.in_flight.remove(&seq)
    }

    /// Puts a message back under its number (its publish failed with the session).
    pub fn restore(&mut self, seq: u64, message: Message) {
        self.in_flight.insert(seq, message);
    }

    /// Restarts the silence clock (the broker stopped blocking us).
    pub fn progress(&mut self, now: Instant) {
        self.last_progress = now;
    }

    /// Messages in flight and no answer for longer than `timeout`.
    pub fn stalled(&self, now: Instant, timeout: Duration) -> bool {
        !self.in_flight.is_empty() && now.saturating_duration_since(self.last_progress) > timeout
    }

    /// What is still unconfirmed, oldest first.
    pub fn into_unconfirmed(self) -> impl DoubleEndedIterator<Item = Message> {
        self.in_flight.into_values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(events: u64) -> Message {
        Message {
            route: "k".into(),
            body: bytes::Bytes::from_static(b"{}"),
            meta: crate::delivery::message::Meta {
                id: String::new(),
                app: String::new(),
                format: "ecs".into(),
                timestamp: 0,
            },
            events,
            ends: Vec::new(),
            origin: None,
            born: Vec::new(),
        }
    }

    #[test]
    fn the_window_holds_at_most_its_limit_and_settles_by_number() {
        let now = Instant::now();
        let mut w = Window::new(2, now);
        assert_eq!(w.room(), 2);
        let a = w.open(message(1), now);
        let b = w.open(message(2), now);
        assert_eq!((a, b, w.room()), (0, 1, 0));
        assert_eq!(w.settle(b, now).map(|m| m.events), Some(2));
        assert!(w.settle(b, now).is_none(), "settled once");
        assert_eq!(w.room(), 1);
        let c = w.open(message(3), now);
        let left: Vec<u64> = w.into_unconfirmed().map(|m| m.events).collect();
        assert_eq!((c, left), (2, vec![1, 3]));
    }

    #[test]
    fn silence_counts_only_while_messages_are_in_flight() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(30);
        let later = t0 + Duration::from_secs(31);
        let mut w = Window::new(0, t0);
        assert_eq!(w.room(), 1, "a window of 0 still lets one message through");
        assert!(!w.stalled(later, timeout), "nothing in flight");
        let seq = w.open(message(1), t0);
        assert!(w.stalled(later, timeout));
        w.progress(t0 + Duration::from_secs(20));
        assert!(!w.stalled(later, timeout));
        let m = w.settle(seq, later).expect("in flight");
        w.restore(seq, m);
        assert!(!w.stalled(later, timeout));
    }
}
