//! Publishing over one link: the loop that feeds the confirm window from the custody order,
//! settles the destination's answers, and follows its flow control. Written once, for every
//! transport.
//!
//! A message leaves the shipper's custody only when the destination delivered it (AMQP: acked
//! *and* not returned as unroutable); everything else goes back to the order and is published
//! again, same bytes.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::stream::{FuturesUnordered, StreamExt};

use super::diag::Diagnostics;
use super::flow::Flow;
use super::message::Message;
use super::order::Order;
use super::queue::Shared;
use super::stats::Counters;
use super::window::Window;
use crate::broker::BrokerError;
use crate::transport::{Link, Outcome, Signal};

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

/// With a spool, the most events the queue holds before the shipper moves them to disk. When
/// logging outpaces encoding and writing the queue fills all the same, up to its capacity
/// (`SPOOLED_QUEUE_CAPACITY` with a spool), and the logging thread spills.
const SPILL_AT_MOST: usize = 4096;

type ConfirmFuture = Pin<Box<dyn Future<Output = (u64, Outcome)> + Send>>;

/// One session's publishing.
pub(crate) struct Publisher<'a> {
    pub shared: &'a Arc<Shared>,
    pub limits: &'a Limits,
    pub diag: &'a mut Diagnostics,
    pub order: &'a mut Order,
}

impl Publisher<'_> {
    pub async fn serve(&mut self, link: &mut impl Link) -> End {
        let mut window = Window::new(self.limits.window, Instant::now());
        let mut flow = Flow::new(self.limits.retry_delay, self.limits.retry_delay_max);
        let mut confirms: FuturesUnordered<ConfirmFuture> = FuturesUnordered::new();
        let end = self
            .publish_until_done(link, &mut window, &mut flow, &mut confirms)
            .await;
        if flow.blocked() {
            self.shared.counters.block_ended();
        }
        // Unconfirmed messages go back in front, oldest first: to be published again, or
        // spooled if the shipper is stopping.
        let retry = !matches!(end, End::Stopped);
        self.order
            .unconfirmed(self.shared, window.into_unconfirmed(), retry);
        end
    }

    async fn publish_until_done(
        &mut self,
        link: &mut impl Link,
        window: &mut Window,
        flow: &mut Flow,
        confirms: &mut FuturesUnordered<ConfirmFuture>,
    ) -> End {
        let shared = self.shared;
        let counters = &shared.counters;
        // With a spool, events go to disk once the queue is half full or holds SPILL_AT_MOST
        // events, long before it overflows, and all the time while the broker blocks us. A
        // broker that blocks us before saying so (its alarm set before we connected) looks
        // merely slow until the confirm timeout: the fixed bound spills meanwhile too.
        let spill_at = (shared.queue.capacity() / 2).clamp(1, SPILL_AT_MOST);
        let spooling = shared.spooling();
        let mut tick = tokio::time::interval(Duration::from_millis(250));

        loop {
            if shared.abort.load(Relaxed) {
                return End::Stopped;
            }
            if spooling && (flow.blocked() || shared.queue.len() >= spill_at) {
                self.order.spill(shared, flow.blocked());
            }
            if link.blocked() && flow.block() {
                counters.block_started();
            }
            // Fill the window. The publish itself is awaited with its confirm, never here: a
            // blocked connection holds publishes back, and this loop must keep watching for
            // the unblock, for shutdown, and keep spilling.
            let now = Instant::now();
            while flow.open(now) && window.room() > 0 {
                let Some(message) = self.order.next(shared, window.room(), now) else {
                    break;
                };
                Counters::add(&counters.published, message.events);
                Counters::add(&counters.messages_published, 1);
                confirms.push(publish(link, message, window, now));
            }
            if let Some(broken) = link.broken() {
                return End::Failed(broken);
            }
            if shared.closed.load(Relaxed) && window.is_empty() && self.order.nothing_left(shared) {
                return End::Stopped;
            }
            let linger = self.order.linger_deadline();

            tokio::select! {
                Some((seq, result)) = confirms.next(), if !confirms.is_empty() => {
                    let Some(message) = window.settle(seq, Instant::now()) else { continue };
                    if let Err(failed) = self.settle(message, result, flow) {
                        let (message, e) = *failed;
                        window.restore(seq, message);
                        return End::Failed(e);
                    }
                    if let Some(after) = flow.nacks_persist(Instant::now()) {
                        return nacks_persist(counters, after);
                    }
                }
                signal = link.signal() => match signal {
                    Some(Signal::Blocked(reason)) => {
                        if flow.block() {
                            counters.block_started();
                        }
                        counters.set_error(format!("publishing is held back: {reason}"));
                        self.diag.error(
                            "publishing is held back (a broker's resource alarm, a full Redis list)",
                            &reason,
                        );
                    }
                    Some(Signal::Unblocked) => {
                        if flow.unblock() {
                            counters.block_ended();
                        }
                        window.progress(Instant::now());
                    }
                    Some(Signal::Trouble(why)) => {
                        counters.set_error(why.clone());
                        self.diag.error("the destination needs attention", &why);
                    }
                    Some(Signal::Lost(e)) => return End::Failed(e),
                    None => return End::Failed(BrokerError::Lost {
                        detail: "the connection's event stream ended".to_string(),
                    }),
                },
                _ = shared.woken(),
                    if spooling || (!flow.blocked() && window.room() > 0) => {}
                _ = sleep_until(linger), if linger.is_some() => {}
                _ = tick.tick() => {
                    if link.blocked() && flow.block() {
                        counters.block_started();
                    }
                    if let Some(mut spool) = shared.spool() {
                        spool.sync(false);
                    }
                    self.diag.drops(|| shared.stats());
                    if let Some(after) = flow.nacks_persist(Instant::now()) {
                        return nacks_persist(counters, after);
                    }
                    if !flow.blocked() && window.stalled(Instant::now(), self.limits.confirm_timeout) {
                        return End::Failed(BrokerError::Silent {
                            after: self.limits.confirm_timeout,
                        });
                    }
                }
            }
        }
    }

    /// Settles the destination's answer for one message: delivered, or back to the order
    /// (unroutable or refused, with a hold). A failed link ends the session: the message is
    /// handed back to go into the window again.
    fn settle(
        &mut self,
        message: Message,
        outcome: Outcome,
        flow: &mut Flow,
    ) -> Result<(), Box<(Message, BrokerError)>> {
        let shared = self.shared;
        let counters = &shared.counters;
        match outcome {
            Outcome::Delivered => {
                self.order.delivered(shared, &message, SystemTime::now());
                flow.accepted();
            }
            Outcome::PartlyRefused { refused, why } => {
                let refused = refused.min(message.events);
                Counters::add(&counters.dropped_refused, refused);
                counters.set_error(format!("{refused} events refused for good: {why}"));
                self.diag.error("events refused for good, dropped", &why);
                let mut kept = message;
                kept.events -= refused;
                self.order.delivered(shared, &kept, SystemTime::now());
                flow.accepted();
            }
            Outcome::Unroutable { why } => {
                Counters::add(&counters.returned, message.events);
                counters.set_error(format!("message returned as unroutable: {why}; will retry"));
                self.diag
                    .error("events returned unroutable, retrying", &why);
                self.order.retry(shared, message);
                flow.refused();
            }
            Outcome::Refused => {
                Counters::add(&counters.nacked, message.events);
                counters.set_error("the broker nacked a message; will retry");
                self.order.retry(shared, message);
                flow.nacked(Instant::now());
            }
            Outcome::Failed(e) => return Err(Box::new((message, e))),
        }
        Ok(())
    }
}

/// The broker has nacked for `after` and acked nothing: this session is broken (its channel may
/// stay so after a quorum queue's leader moved); a new connection, on the next node, replaces it.
fn nacks_persist(counters: &Counters, after: Duration) -> End {
    Counters::add(&counters.sessions_replaced, 1);
    End::Failed(BrokerError::Nacking { after })
}

/// Takes `message` into the window and returns the future of its answer. The body is shared
/// with the window's copy (a reference count, not a copy of the bytes).
fn publish(link: &impl Link, message: Message, window: &mut Window, now: Instant) -> ConfirmFuture {
    let answer = link.publish(&message);
    let seq = window.open(message, now);
    Box::pin(async move { (seq, answer.await) })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
