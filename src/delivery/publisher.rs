//! Publishing over one session: the loop that feeds the confirm window from the custody
//! order, settles confirms, and follows the broker's flow control.
//!
//! A message leaves the shipper's custody only when the broker acks it *and* did not return it
//! as unroutable; everything else goes back to the order and is published again, same bytes.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Confirmation, Event};

use super::diag::Diagnostics;
use super::flow::Flow;
use super::message::{Message, Meta};
use super::order::Order;
use super::queue::Shared;
use super::stats::Counters;
use super::window::Window;
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

/// With a spool, the most events the queue holds before the shipper moves them to disk. When
/// logging outpaces encoding and writing the queue fills all the same, up to its capacity
/// (`SPOOLED_QUEUE_CAPACITY` with a spool), and the logging thread spills.
const SPILL_AT_MOST: usize = 4096;

type ConfirmFuture = Pin<Box<dyn Future<Output = (u64, lapin::Result<Confirmation>)> + Send>>;

/// One session's publishing.
pub(crate) struct Publisher<'a> {
    pub shared: &'a Arc<Shared>,
    pub limits: &'a Limits,
    pub diag: &'a mut Diagnostics,
    pub order: &'a mut Order,
}

impl Publisher<'_> {
    pub async fn serve(&mut self, session: &Session, target: &Target) -> End {
        let mut window = Window::new(self.limits.window, Instant::now());
        let mut flow = Flow::new(self.limits.retry_delay, self.limits.retry_delay_max);
        let mut confirms: FuturesUnordered<ConfirmFuture> = FuturesUnordered::new();
        let end = self
            .publish_until_done(session, target, &mut window, &mut flow, &mut confirms)
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
        session: &Session,
        target: &Target,
        window: &mut Window,
        flow: &mut Flow,
        confirms: &mut FuturesUnordered<ConfirmFuture>,
    ) -> End {
        let shared = self.shared;
        let counters = &shared.counters;
        let mut events = session.connection.events_listener();
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
            if session.connection.status().blocked() && flow.block() {
                // lapin knows before its event reaches us; it writes nothing while blocked.
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
                confirms.push(publish(
                    session,
                    &target.connector.exchange,
                    message,
                    window,
                    now,
                ));
            }
            if !session.channel.status().connected() {
                return End::Failed(BrokerError::Lost {
                    detail: "the channel was closed".to_string(),
                });
            }
            if shared.closed.load(Relaxed) && window.is_empty() && self.order.nothing_left(shared) {
                return End::Stopped;
            }
            let linger = self.order.linger_deadline();

            tokio::select! {
                Some((seq, result)) = confirms.next(), if !confirms.is_empty() => {
                    let Some(message) = window.settle(seq, Instant::now()) else { continue };
                    if let Err(e) = self.settle((seq, message, result), target, flow) {
                        let (seq, message, e) = *e;
                        window.restore(seq, message);
                        return End::Failed(BrokerError::lost(&e, target));
                    }
                    if let Some(after) = flow.nacks_persist(Instant::now()) {
                        return nacks_persist(counters, after);
                    }
                }
                event = events.next() => match event {
                    Some(Event::ConnectionBlocked(reason)) => {
                        if flow.block() {
                            counters.block_started();
                        }
                        counters.set_error(format!("the broker blocked publishing: {reason}"));
                        self.diag.error("the broker blocked publishing (resource alarm)", &reason);
                    }
                    Some(Event::ConnectionUnblocked) => {
                        if flow.unblock() {
                            counters.block_ended();
                        }
                        window.progress(Instant::now());
                    }
                    Some(Event::Error(e)) => return End::Failed(BrokerError::lost(&e, target)),
                    Some(_) => {}
                    None => return End::Failed(BrokerError::Lost {
                        detail: "the connection's event stream ended".to_string(),
                    }),
                },
                _ = shared.wake.notified(),
                    if spooling || (!flow.blocked() && window.room() > 0) => {}
                _ = sleep_until(linger), if linger.is_some() => {}
                _ = tick.tick() => {
                    if session.connection.status().blocked() && flow.block() {
                        counters.block_started();
                    }
                    if let Some(mut spool) = shared.spool() {
                        spool.sync(false);
                    }
                    self.diag.drops(&shared.stats());
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

    /// Settles the broker's answer for one message: delivered, or back to the order (returned
    /// or nacked, with a hold). A failed publish or confirm ends the session: the message is
    /// handed back to go into the window again.
    #[allow(clippy::type_complexity)]
    fn settle(
        &mut self,
        answer: (u64, Message, lapin::Result<Confirmation>),
        target: &Target,
        flow: &mut Flow,
    ) -> Result<(), Box<(u64, Message, lapin::Error)>> {
        let (seq, message, result) = answer;
        let shared = self.shared;
        let counters = &shared.counters;
        let exchange = &target.connector.exchange;
        match result {
            Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => {
                self.order.delivered(shared, &message, SystemTime::now());
                flow.accepted();
            }
            Ok(Confirmation::Ack(Some(_returned))) => {
                Counters::add(&counters.returned, message.events);
                counters.set_error(format!(
                    "message returned as unroutable (routing key `{}`): no queue is bound to \
                     exchange `{exchange}` for it; will retry",
                    message.route
                ));
                self.diag.error(
                    "events returned unroutable, retrying",
                    &format!(
                        "no queue bound to exchange `{exchange}` matches routing key `{}`",
                        message.route
                    ),
                );
                self.order.retry(shared, message);
                flow.refused();
            }
            Ok(Confirmation::Nack(_)) => {
                Counters::add(&counters.nacked, message.events);
                counters.set_error("the broker nacked a message; will retry");
                self.order.retry(shared, message);
                flow.nacked(Instant::now());
            }
            Err(e) => return Err(Box::new((seq, message, e))),
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

/// Takes `message` into the window and returns the future of its publish and confirm. The
/// body is shared with the window's copy (a reference count, not a copy of the bytes).
fn publish(
    session: &Session,
    exchange: &ShortString,
    message: Message,
    window: &mut Window,
    now: Instant,
) -> ConfirmFuture {
    let channel = session.channel.clone();
    let (exchange, routing_key) = (exchange.clone(), ShortString::from(message.route.as_str()));
    let (body, properties) = (message.body.clone(), properties(&message.meta));
    let seq = window.open(message, now);
    Box::pin(async move {
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
    })
}

/// The properties of every message: persistent JSON, identified, stamped, typed by format
/// (the `type` is what the Logstash pipeline tells the formats apart by).
fn properties(meta: &Meta) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(ShortString::from("application/json"))
        .with_message_id(ShortString::from(meta.id.as_str()))
        .with_app_id(ShortString::from(meta.app.as_str()))
        .with_timestamp(meta.timestamp)
        .with_type(ShortString::from(meta.format.as_str()))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
