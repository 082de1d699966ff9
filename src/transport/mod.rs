//! The seam between the delivery engine and a destination.
//!
//! The engine (custody order, confirm window, flow control, retries, spool, stats) is written
//! once, against [`Transport`] and [`Link`]; each destination is one module that opens links
//! and turns its own answers into [`Outcome`]s. A message crosses the seam as the engine holds
//! it ([`Message`]: a route, a body of one or more documents, neutral metadata), and each
//! transport builds its own wire form at publish time.

pub(crate) mod amqp;
#[cfg(feature = "mongodb")]
pub mod mongodb;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(test)]
pub(crate) mod scripted;
#[cfg(any(feature = "redis", feature = "mongodb"))]
mod writer;

use std::future::Future;
use std::pin::Pin;

use crate::broker::BrokerError;
use crate::delivery::Message;

crate::choice::choice! {
    /// Where events go (`transport`).
    pub enum TransportKind: "a transport", default Amqp {
        /// RabbitMQ, or any AMQP 0-9-1 broker (`broker_uri`, `exchange`, …).
        Amqp = "amqp",
        /// A Redis list or stream (`redis.*`; the `redis` cargo feature).
        Redis = "redis",
        /// A MongoDB collection (`mongodb.*`; the `mongodb` cargo feature).
        Mongodb = "mongodb",
    }
}

crate::choice::choice! {
    /// Whose acknowledgement a MongoDB insert waits for (`mongodb.write_concern`).
    pub enum MongoWriteConcern: "a write concern", default Majority {
        /// A majority of the replica set's data-bearing members (`w: "majority"`).
        Majority = "majority",
        /// The primary alone (`w: 1`).
        Primary = "1",
    }
}

crate::choice::choice! {
    /// What a Redis key holds (`redis.data_type`).
    pub enum RedisDataType: "a Redis data type", default List {
        /// A list, one value per document (`RPUSH`): what Logstash's `redis` input reads.
        List = "list",
        /// A stream, one entry per document (`XADD`, fields `doc`, `format` and `service`).
        Stream = "stream",
    }
}

/// The largest document MongoDB stores (BSON's 16 MiB): `max_message_bytes` is capped to it
/// with `transport = mongodb`.
pub(crate) const MAX_BSON_BYTES: usize = 16 << 20;

/// A destination's answer for one message.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Taken for good (AMQP: acked and not returned): the message leaves our custody.
    Delivered,
    /// Taken but routed nowhere (AMQP: returned as unroutable); `why` says what to fix. It is
    /// published again after a pause.
    Unroutable { why: String },
    /// Taken, except `refused` of its documents that the destination refuses for good (MongoDB:
    /// too large, failing validation): those are counted dropped, `why` says what was refused.
    #[cfg_attr(not(feature = "mongodb"), allow(dead_code))]
    PartlyRefused { refused: u64, why: String },
    /// Refused for now (AMQP: nacked): published again after a pause; refusals that go on
    /// replace the link.
    Refused,
    /// The link failed before it answered: the session ends and the message goes back.
    Failed(BrokerError),
}

/// What a link says by itself, between answers.
#[derive(Debug)]
pub(crate) enum Signal {
    /// The destination holds publishing back (AMQP: `connection.blocked`, a resource alarm).
    Blocked(String),
    /// It takes messages again.
    Unblocked,
    /// Something to fix that does not stop publishing (MongoDB: an index that could not be
    /// created): reported, and publishing goes on.
    #[cfg_attr(not(feature = "mongodb"), allow(dead_code))]
    Trouble(String),
    /// The link is gone.
    Lost(BrokerError),
}

/// The answer to one publish, to be awaited.
pub(crate) type Answer = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Opens links to a destination (walking its node list, preparing it: the exchange, a key, a
/// collection).
pub(crate) trait Transport: Send + Sync + 'static {
    type Link: Link;

    /// A new link, or why none could be opened.
    fn open(&self) -> impl Future<Output = Result<Self::Link, BrokerError>> + Send;

    /// Worker threads for the tasks the transport spawns (0: they share the shipper's thread).
    fn io_threads(&self) -> usize {
        0
    }
}

/// One open session with a destination.
pub(crate) trait Link: Send {
    /// The node, without credentials (stats and diagnostics show it).
    fn node(&self) -> &str;

    /// Publishes `message`; the future is the destination's answer. Nothing is awaited before
    /// the answer: a blocked link holds the publish back, and the engine keeps serving.
    fn publish(&self, message: &Message) -> Answer;

    /// Whether the link knows it is blocked before its signal arrives.
    fn blocked(&self) -> bool {
        false
    }

    /// Why the link can no longer publish, if it cannot.
    fn broken(&self) -> Option<BrokerError>;

    /// The next signal (cancel-safe: the engine polls it in a `select!`); `None` when the link
    /// ended. A link without signals never answers.
    fn signal(&mut self) -> impl Future<Output = Option<Signal>> + Send;

    /// Closes politely, in bounded time.
    fn close(self) -> impl Future<Output = ()> + Send;
}
