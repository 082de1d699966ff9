//! A transport that answers as a test scripts it: the engine's loop (window, retries, flow
//! control, link replacement) tested without a broker.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Answer, Link, Outcome, Signal, Transport};
use crate::broker::BrokerError;
use crate::delivery::Message;

/// How the destination answers one publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    Ack,
    Unroutable,
    Nack,
    /// Never answers.
    Silence,
    /// The link fails before answering.
    Lose,
    /// Taken, but this many of its documents refused for good.
    PartlyRefused(u64),
}

/// The script, shared by the test and the shipper's links.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scripted(Arc<Mutex<Script>>);

#[derive(Debug, Default)]
struct Script {
    /// Answers to the next publishes, in order; `Ack` once they run out.
    replies: VecDeque<Reply>,
    /// The body of every publish, in order.
    published: Vec<Bytes>,
    opens: usize,
    /// While set, opening a link waits (so a test can queue events first).
    gated: bool,
    /// Where the current link reads its signals.
    signals: Option<mpsc::UnboundedSender<Signal>>,
}

impl Scripted {
    fn script(&self) -> MutexGuard<'_, Script> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn reply(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script().replies.extend(replies);
    }

    pub fn published(&self) -> Vec<Bytes> {
        self.script().published.clone()
    }

    /// Opening waits until [`open_gate`](Self::open_gate).
    pub fn close_gate(&self) {
        self.script().gated = true;
    }

    pub fn open_gate(&self) {
        self.script().gated = false;
    }

    pub fn opens(&self) -> usize {
        self.script().opens
    }

    /// Sends `signal` to the current link; `false` if none is open.
    pub fn signal(&self, signal: Signal) -> bool {
        self.script()
            .signals
            .as_ref()
            .is_some_and(|s| s.send(signal).is_ok())
    }
}

impl Transport for Scripted {
    type Link = ScriptedLink;

    async fn open(&self) -> Result<ScriptedLink, BrokerError> {
        while self.script().gated {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut script = self.script();
        script.opens += 1;
        script.signals = Some(tx);
        Ok(ScriptedLink {
            script: self.clone(),
            signals: rx,
        })
    }
}

pub(crate) struct ScriptedLink {
    script: Scripted,
    signals: mpsc::UnboundedReceiver<Signal>,
}

impl Link for ScriptedLink {
    fn node(&self) -> &str {
        "scripted://test"
    }

    fn publish(&self, message: &Message) -> Answer {
        let reply = {
            let mut script = self.script.script();
            script.published.push(message.body.clone());
            script.replies.pop_front().unwrap_or(Reply::Ack)
        };
        Box::pin(async move {
            match reply {
                Reply::Ack => Outcome::Delivered,
                Reply::Unroutable => Outcome::Unroutable {
                    why: "no queue is bound (scripted)".into(),
                },
                Reply::Nack => Outcome::Refused,
                Reply::PartlyRefused(refused) => Outcome::PartlyRefused {
                    refused,
                    why: "document 4 failed validation (scripted)".into(),
                },
                Reply::Silence => std::future::pending().await,
                Reply::Lose => Outcome::Failed(BrokerError::Lost {
                    detail: "scripted loss".into(),
                }),
            }
        })
    }

    fn broken(&self) -> Option<BrokerError> {
        None
    }

    async fn signal(&mut self) -> Option<Signal> {
        self.signals.recv().await
    }

    async fn close(self) {}
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::delivery::{
        BatchLimits, Encoder, Guard, Handoff, Limits, Overflow, Shared, ShipperConfig,
    };
    use crate::encoding::{test_support, Format};

    const EVENTS: usize = 25;

    /// A shipper on the scripted transport, 10 events per message, and its handoff.
    fn start(scripted: &Scripted, confirm_timeout: Duration) -> (Guard, Handoff) {
        let encoder = Encoder {
            redactor: crate::encoding::redact::Redactor::none(),
            format: Format::Ecs,
            identity: test_support::identity(),
            routing_key: "logstash.{target}".into(),
            max_field_bytes: 0,
            max_message_bytes: 0,
            batch: BatchLimits {
                max_events: 10,
                max_bytes: 1 << 20,
            },
            doc_bytes: Default::default(),
        };
        let shared = Shared::new(1000, encoder, None, Overflow::DropNewest, Duration::ZERO);
        let config = ShipperConfig {
            transport: scripted.clone(),
            limits: Limits {
                window: 4,
                confirm_timeout,
                retry_delay: Duration::from_millis(5),
                retry_delay_max: Duration::from_millis(20),
            },
            linger: Duration::ZERO,
            backoff_min: Duration::from_millis(5),
            backoff_max: Duration::from_millis(20),
            diagnostics_interval: Duration::from_secs(3600),
        };
        let handoff = Handoff::new(shared.clone());
        let guard = Guard::start(shared, config, Duration::from_secs(5)).expect("shipper");
        (guard, handoff)
    }

    /// [`start`], with `EVENTS` events queued before the first link opens: whole batches.
    fn start_logged(scripted: &Scripted, confirm_timeout: Duration) -> Guard {
        scripted.close_gate();
        let (guard, handoff) = start(scripted, confirm_timeout);
        log(&handoff, EVENTS);
        scripted.open_gate();
        guard
    }

    /// Logs `n` events whose messages are their numbers.
    fn log(handoff: &Handoff, n: usize) {
        for i in 0..n {
            let mut event = test_support::event(Vec::new());
            event.message = i.to_string();
            handoff.offer(event);
        }
    }

    /// The message of every document published, in publishing order.
    fn documents(scripted: &Scripted) -> Vec<String> {
        let mut out = Vec::new();
        for body in scripted.published() {
            let value: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
            let docs = match value {
                serde_json::Value::Array(docs) => docs,
                doc => vec![doc],
            };
            out.extend(
                docs.iter()
                    .map(|d| d["message"].as_str().unwrap_or("").to_owned()),
            );
        }
        out
    }

    fn all() -> Vec<String> {
        (0..EVENTS).map(|i| i.to_string()).collect()
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "waited 10 s for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn acked_messages_are_delivered_once_each_in_logging_order() {
        let scripted = Scripted::default();
        let guard = start_logged(&scripted, Duration::from_secs(30));
        assert!(guard.flush(Duration::from_secs(10)).is_complete());
        assert_eq!(documents(&scripted), all());
        let stats = guard.stats();
        assert_eq!((stats.confirmed, stats.retried), (EVENTS as u64, 0));
        assert_eq!(stats.messages_confirmed, 3, "10 + 10 + 5 events");
    }

    #[test]
    fn unroutable_and_refused_messages_are_published_again_with_the_same_bytes() {
        let scripted = Scripted::default();
        scripted.reply([Reply::Unroutable, Reply::Nack]);
        let guard = start_logged(&scripted, Duration::from_secs(30));
        assert!(guard.flush(Duration::from_secs(10)).is_complete());
        let stats = guard.stats();
        assert_eq!(stats.confirmed, EVENTS as u64, "{stats}");
        assert_eq!((stats.returned, stats.nacked), (10, 10), "{stats}");
        assert_eq!(stats.retried, 20, "{stats}");
        let published = scripted.published();
        assert_eq!(published.len(), 5, "3 messages, 2 of them twice");
        for refused in &published[..2] {
            let again = published[2..].iter().filter(|b| *b == refused).count();
            assert_eq!(again, 1, "a refused message goes again, byte for byte");
        }
        let mut delivered = documents(&scripted);
        delivered.sort_by_key(|m| m.parse::<usize>().unwrap_or(usize::MAX));
        delivered.dedup();
        assert_eq!(delivered, all());
        assert!(
            stats.last_error.unwrap_or_default().contains("nacked"),
            "the latest refusal"
        );
    }

    #[test]
    fn documents_refused_for_good_are_counted_dropped_and_the_rest_delivered_once() {
        let scripted = Scripted::default();
        scripted.reply([Reply::PartlyRefused(3)]);
        let guard = start_logged(&scripted, Duration::from_secs(30));
        assert!(guard.flush(Duration::from_secs(10)).is_complete());
        let stats = guard.stats();
        assert_eq!(
            (
                stats.confirmed,
                stats.dropped.refused,
                stats.dropped.total()
            ),
            (EVENTS as u64 - 3, 3, 3),
            "{stats}"
        );
        assert_eq!(stats.retried, 0, "never published again: {stats}");
        assert_eq!(scripted.published().len(), 3, "{stats}");
        let error = stats.last_error.unwrap_or_default();
        assert!(
            error.contains("3 events refused for good") && error.contains("validation"),
            "{error}"
        );
    }

    #[test]
    fn trouble_is_reported_and_publishing_goes_on() {
        let scripted = Scripted::default();
        let (guard, handoff) = start(&scripted, Duration::from_secs(30));
        wait_for("a link", || scripted.opens() == 1);
        assert!(scripted.signal(Signal::Trouble("index `t` refused".into())));
        wait_for("the trouble to be reported", || {
            guard
                .stats()
                .last_error
                .is_some_and(|e| e.contains("index `t` refused"))
        });
        log(&handoff, EVENTS);
        assert!(guard.flush(Duration::from_secs(10)).is_complete());
        assert_eq!(documents(&scripted), all());
        assert_eq!(scripted.opens(), 1, "the same link");
    }

    #[test]
    fn a_lost_link_is_replaced_and_its_unconfirmed_messages_go_again() {
        let scripted = Scripted::default();
        scripted.reply([Reply::Ack, Reply::Lose]);
        let guard = start_logged(&scripted, Duration::from_secs(30));
        assert!(guard.flush(Duration::from_secs(10)).is_complete());
        let stats = guard.stats();
        assert_eq!(stats.confirmed, EVENTS as u64, "{stats}");
        assert_eq!((scripted.opens(), stats.reconnects), (2, 1), "{stats}");
        let delivered = documents(&scripted);
        assert!(delivered.len() > EVENTS, "the lost message went twice");
        assert!(stats
            .last_error
            .unwrap_or_default()
            .contains("scripted loss"));
    }

    #[test]
    fn a_silent_link_is_replaced_after_the_confirm_timeout() {
        let scripted = Scripted::default();
        scripted.reply([Reply::Silence]);
        let guard = start_logged(&scripted, Duration::from_millis(200));
        assert!(guard.flush(Duration::from_secs(10)).is_complete());
        let stats = guard.stats();
        assert_eq!(stats.confirmed, EVENTS as u64, "{stats}");
        assert_eq!(scripted.opens(), 2, "{stats}");
        assert!(stats.last_error.unwrap_or_default().contains("confirm"));
    }

    #[test]
    fn nacks_that_persist_replace_the_session() {
        let scripted = Scripted::default();
        // One message nacked again and again, past the time that ends a session.
        scripted.reply([Reply::Nack; 400]);
        let (guard, handoff) = start(&scripted, Duration::from_secs(30));
        log(&handoff, 5);
        wait_for("the session to be replaced", || {
            guard.stats().sessions_replaced >= 1
        });
        scripted.0.lock().expect("script").replies.clear();
        assert!(guard.flush(Duration::from_secs(10)).is_complete());
        assert!(scripted.opens() >= 2);
        assert_eq!(guard.stats().confirmed, 5);
    }

    #[test]
    fn a_blocked_link_publishes_nothing_until_unblocked() {
        let scripted = Scripted::default();
        let (guard, handoff) = start(&scripted, Duration::from_secs(30));
        wait_for("a link", || scripted.opens() == 1);
        assert!(scripted.signal(Signal::Blocked("low on memory".into())));
        wait_for("the block to be counted", || {
            guard
                .stats()
                .last_error
                .is_some_and(|e| e.contains("held back"))
        });
        log(&handoff, EVENTS);
        let flush = guard.flush(Duration::from_millis(300));
        assert_eq!(
            flush.undelivered, EVENTS as u64,
            "nothing goes while blocked"
        );
        assert!(scripted.published().is_empty());
        assert!(scripted.signal(Signal::Unblocked));
        assert!(guard.flush(Duration::from_secs(10)).is_complete());
        assert_eq!(documents(&scripted), all());
        assert!(guard.stats().blocked_time > Duration::ZERO);
    }
}
