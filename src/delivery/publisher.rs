//! Publishing over one session with a window of unconfirmed messages.
//!
//! Awaiting each confirm in turn would cap throughput at one round trip per message, so up to
//! `window` messages are in flight at once. A message leaves the shipper's custody only when
//! the broker acks it *and* did not return it as unroutable; everything else goes back to
//! `pending` and is published again.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::options::BasicPublishOptions;
use lapin::{Confirmation, Event};

use super::diag::Diagnostics;
use super::message::Message;
use super::queue::Shared;
use super::shipper::spill;
use super::stats::Counters;
use crate::broker::{BrokerError, Session, Target};

/// Limits for one session.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Messages published and not yet confirmed, at most.
    pub window: usize,
    /// A broker that confirms nothing for this long (while not blocking us) is presumed gone.
    pub confirm_timeout: Duration,
    /// Pause before publishing again after a return or a nack; it doubles while they go on,
    /// up to `retry_delay_max`.
    pub retry_delay: Duration,
    pub retry_delay_max: Duration,
}

/// How a session ended.
pub(crate) enum End {
    /// Shutdown: everything was delivered, or the shipper was told to stop now.
    Stopped,
    /// The session failed; reconnect.
    Failed(BrokerError),
}

type ConfirmFuture = Pin<Box<dyn Future<Output = (u64, lapin::Result<Confirmation>)> + Send>>;

/// Messages between the queue and the broker's confirm.
pub(crate) struct Publisher<'a> {
    pub shared: &'a Arc<Shared>,
    pub limits: &'a Limits,
    pub diag: &'a mut Diagnostics,
    /// Encoded, not yet published (or to be published again), oldest first.
    pub pending: &'a mut VecDeque<Message>,
}

impl Publisher<'_> {
    pub async fn serve(&mut self, session: &Session, target: &Target) -> End {
        let exchange = &target.exchange;
        let mut in_flight: BTreeMap<u64, Message> = BTreeMap::new();
        let mut confirms: FuturesUnordered<ConfirmFuture> = FuturesUnordered::new();
        let mut next_seq = 0u64;
        let mut events = session.connection.events_listener();
        let mut blocked = false;
        let mut hold_until: Option<Option<Instant>> = None;
        let mut hold = self.limits.retry_delay;
        // With a spool, events go to disk once the queue is half full, long before it
        // overflows, and all the time while the broker blocks us.
        let spill_at = (self.shared.queue.capacity() / 2).max(1);
        let spooling = self.shared.spooling();
        let mut last_progress = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let counters = &self.shared.counters;

        let end = loop {
            if self.shared.abort.load(Relaxed) {
                break End::Stopped;
            }
            if spooling && (blocked || self.shared.queue.len() >= spill_at) {
                spill(self.shared, self.pending, blocked);
            }
            // `Some(None)`: a hold too long for an `Instant`, i.e. for good.
            let holding = hold_until.is_some_and(|t| t.is_none_or(|t| Instant::now() < t));
            if !blocked && session.connection.status().blocked() {
                // lapin knows before its event reaches us; it writes nothing while blocked.
                blocked = true;
                counters.block_started();
            }
            // Fill the window. The publish itself is awaited with its confirm, never here: a
            // blocked connection holds publishes back, and this loop must keep watching for
            // the unblock, for shutdown, and keep spilling.
            while !blocked && !holding && in_flight.len() < self.limits.window {
                let Some(message) = self.next_message() else {
                    break;
                };
                let channel = session.channel.clone();
                let (exchange, routing_key) = (exchange.clone(), message.routing_key.clone());
                let (body, properties) = (message.body.clone(), message.properties.clone());
                Counters::add(&counters.published, message.events);
                let seq = next_seq;
                next_seq += 1;
                if in_flight.is_empty() {
                    last_progress = Instant::now();
                }
                in_flight.insert(seq, message);
                confirms.push(Box::pin(async move {
                    let options = BasicPublishOptions {
                        mandatory: true,
                        immediate: false,
                    };
                    let confirm = channel
                        .basic_publish(exchange, routing_key, options, &body, properties)
                        .await;
                    match confirm {
                        Ok(confirm) => (seq, confirm.await),
                        Err(e) => (seq, Err(e)),
                    }
                }));
            }
            if !session.channel.status().connected() {
                break End::Failed(BrokerError::Lost {
                    detail: "the channel was closed".to_string(),
                });
            }
            if self.shared.closed.load(Relaxed)
                && in_flight.is_empty()
                && nothing_left(self.shared, self.pending)
            {
                break End::Stopped;
            }

            tokio::select! {
                Some((seq, result)) = confirms.next(), if !confirms.is_empty() => {
                    last_progress = Instant::now();
                    let Some(message) = in_flight.remove(&seq) else { continue };
                    match result {
                        Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => {
                            self.delivered(&message);
                            hold = self.limits.retry_delay;
                        }
                        Ok(Confirmation::Ack(Some(_returned))) => {
                            Counters::add(&counters.returned, message.events);
                            counters.set_error(format!(
                                "message returned as unroutable (routing key `{}`): no queue is \
                                 bound to exchange `{exchange}` for it; will retry",
                                message.routing_key
                            ));
                            self.diag.error("events returned unroutable, retrying", &format!(
                                "no queue bound to exchange `{exchange}` matches routing key `{}`",
                                message.routing_key
                            ));
                            self.retry(message);
                            hold_until = Some(super::deadline_after(hold));
                            hold = hold.saturating_mul(2).min(self.limits.retry_delay_max);
                        }
                        Ok(Confirmation::Nack(_)) => {
                            Counters::add(&counters.nacked, message.events);
                            counters.set_error("the broker nacked a message; will retry");
                            self.retry(message);
                            hold_until = Some(super::deadline_after(hold));
                            hold = hold.saturating_mul(2).min(self.limits.retry_delay_max);
                        }
                        Err(e) => {
                            in_flight.insert(seq, message);
                            break End::Failed(BrokerError::lost(&e, target));
                        }
                    }
                }
                event = events.next() => match event {
                    Some(Event::ConnectionBlocked(reason)) => {
                        if !blocked {
                            counters.block_started();
                        }
                        blocked = true;
                        counters.set_error(format!("the broker blocked publishing: {reason}"));
                        self.diag.error("the broker blocked publishing (resource alarm)", &reason);
                    }
                    Some(Event::ConnectionUnblocked) => {
                        if blocked {
                            counters.block_ended();
                        }
                        blocked = false;
                        last_progress = Instant::now();
                    }
                    Some(Event::Error(e)) => break End::Failed(BrokerError::lost(&e, target)),
                    Some(_) => {}
                    None => break End::Failed(BrokerError::Lost {
                        detail: "the connection's event stream ended".to_string(),
                    }),
                },
                _ = self.shared.wake.notified(),
                    if spooling || (!blocked && in_flight.len() < self.limits.window) => {}
                _ = tick.tick() => {
                    if !blocked && session.connection.status().blocked() {
                        blocked = true;
                        counters.block_started();
                    }
                    if let Some(mut spool) = self.shared.spool() {
                        spool.sync(false);
                    }
                    self.diag.drops(&self.shared.stats());
                    if !blocked && !in_flight.is_empty()
                        && last_progress.elapsed() > self.limits.confirm_timeout
                    {
                        break End::Failed(BrokerError::Silent {
                            after: self.limits.confirm_timeout,
                        });
                    }
                }
            }
        };

        if blocked {
            counters.block_ended();
        }
        // Whatever is unconfirmed goes back in front of the pending messages, oldest first: to
        // be published again, or spooled if the shipper is stopping.
        let stopping = matches!(end, End::Stopped);
        for (_, message) in in_flight.into_iter().rev() {
            if !stopping {
                Counters::add(&counters.retried, message.events);
            }
            self.pending.push_front(message);
        }
        end
    }

    /// The next message to publish, oldest first: a pending one (to publish again), else one
    /// from the spool, else the next event from the queue (everything spooled is older than
    /// what is still queued).
    fn next_message(&mut self) -> Option<Message> {
        if let Some(message) = self.pending.pop_front() {
            return Some(message);
        }
        if let Some(message) = self
            .shared
            .spool()
            .and_then(|mut spool| spool.next(&self.shared.counters))
        {
            return Some(message);
        }
        loop {
            let event = self.shared.queue.pop()?;
            match self.shared.encoder.message(std::slice::from_ref(&event)) {
                Ok(message) => return Some(message),
                Err(n) => {
                    Counters::add(&self.shared.counters.dropped_oversize, n);
                    self.shared.signal_progress();
                }
            }
        }
    }

    /// The broker confirmed `message`: it leaves our custody (and the spool, if it was there).
    fn delivered(&mut self, message: &Message) {
        let counters = &self.shared.counters;
        let recovered = message.origin.is_some_and(|segment| {
            self.shared
                .spool()
                .is_some_and(|mut spool| spool.confirmed(segment, counters))
        });
        let counter = if recovered {
            &counters.recovered
        } else {
            &counters.confirmed
        };
        Counters::add(counter, message.events);
        self.shared.signal_progress();
    }

    fn retry(&mut self, message: Message) {
        Counters::add(&self.shared.counters.retried, message.events);
        self.pending.push_back(message);
    }
}

/// Nothing waits to be published: no pending message, no queued event, no unread spool.
pub(super) fn nothing_left(shared: &Shared, pending: &VecDeque<Message>) -> bool {
    pending.is_empty()
        && shared.queue.is_empty()
        && shared.spool().is_none_or(|spool| !spool.has_unread())
}
