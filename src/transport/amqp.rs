//! AMQP behind the seam: a confirm-mode channel on one connection of the node list.
//!
//! Connecting, TLS, declaring the exchange and naming errors live in [`crate::broker`], which
//! the command shares; this module turns lapin's confirms and connection events into the
//! engine's outcomes and signals.

use std::pin::Pin;

use futures_util::stream::{Stream, StreamExt};
use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Confirmation, Event};

use super::{Answer, Link, Outcome, Signal, Transport};
use crate::broker::{self, BrokerError, Session, Target};
use crate::delivery::{Message, Meta};

/// Opens sessions on the node list, in turn after a failure.
#[derive(Debug, Clone)]
pub(crate) struct Amqp {
    pub target: Target,
}

impl Transport for Amqp {
    type Link = AmqpLink;

    async fn open(&self) -> Result<AmqpLink, BrokerError> {
        let session = broker::open(&self.target).await?;
        let events = Box::pin(session.connection.events_listener());
        Ok(AmqpLink {
            session,
            events,
            target: self.target.clone(),
        })
    }
}

pub(crate) struct AmqpLink {
    session: Session,
    events: Pin<Box<dyn Stream<Item = Event> + Send>>,
    target: Target,
}

impl Link for AmqpLink {
    fn node(&self) -> &str {
        &self.session.node
    }

    fn publish(&self, message: &Message) -> Answer {
        let channel = self.session.channel.clone();
        let exchange = self.target.connector.exchange.clone();
        let routing_key = ShortString::from(message.route.as_str());
        // The body is shared (a reference count, not a copy of the bytes).
        let body = message.body.clone();
        let properties = properties(&message.meta);
        let target = self.target.clone();
        Box::pin(async move {
            let options = BasicPublishOptions {
                mandatory: true,
                immediate: false,
            };
            let confirm = match channel
                .basic_publish(
                    exchange.clone(),
                    routing_key.clone(),
                    options,
                    &body,
                    properties,
                )
                .await
            {
                Ok(confirm) => confirm.await,
                Err(e) => Err(e),
            };
            match confirm {
                Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => Outcome::Delivered,
                Ok(Confirmation::Ack(Some(_returned))) => Outcome::Unroutable {
                    why: format!(
                        "no queue is bound to exchange `{exchange}` for routing key \
                         `{routing_key}`"
                    ),
                },
                Ok(Confirmation::Nack(_)) => Outcome::Refused,
                Err(e) => Outcome::Failed(BrokerError::lost(&e, &target)),
            }
        })
    }

    fn blocked(&self) -> bool {
        // lapin knows before its event reaches us; it writes nothing while blocked.
        self.session.connection.status().blocked()
    }

    fn broken(&self) -> Option<BrokerError> {
        (!self.session.channel.status().connected()).then(|| BrokerError::Lost {
            detail: "the channel was closed".to_string(),
        })
    }

    async fn signal(&mut self) -> Option<Signal> {
        loop {
            match self.events.next().await? {
                Event::ConnectionBlocked(reason) => {
                    return Some(Signal::Blocked(format!(
                        "the broker blocked publishing (resource alarm): {reason}"
                    )))
                }
                Event::ConnectionUnblocked => return Some(Signal::Unblocked),
                Event::Error(e) => {
                    return Some(Signal::Lost(BrokerError::lost(&e, &self.target)));
                }
                _ => {}
            }
        }
    }

    async fn close(self) {
        broker::close(self.session).await;
    }
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
