//! # logcollect
//!
//! Ships every `tracing` event and `log` record of an application to RabbitMQ as a Logstash
//! JSON document, through a buffered, durable, confirmed AMQP channel, for Logstash to index
//! into Elasticsearch.
//!
//! ```no_run
//! fn main() -> Result<(), logcollect::Error> {
//!     // LOGCOLLECT_IDENTITY__PROJECT=billing LOGCOLLECT_IDENTITY__APPLICATION=worker …
//!     let guard = logcollect::init()?;
//!     tracing::info!(invoice = 42, "invoice sent");
//!     log::warn!("records of the log crate are shipped too");
//!     let flushed = guard.flush(std::time::Duration::from_secs(5));
//!     assert!(flushed.is_complete());
//!     Ok(())
//! }
//! ```
//!
//! Modules follow the data: [`capture`] (the layer) → encoding (pure JSON functions) →
//! delivery (queue, shipper thread, confirms) → [`broker`] (connecting: [`Connector`], also for
//! other clients of the broker); [`Config`] and [`init`] at the edge.
//! [`trace`] is the trace context every span gets (W3C `traceparent` in and out);
//! [`integrations`] carries it across processes: `http` (cargo feature `http`, a tower/axum
//! layer) and `amqp` (job messages); [`install_panic_hook`] logs panics (`init` installs it).

#![warn(missing_docs, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod boot;
pub mod broker;
pub mod capture;
mod choice;
mod config;
mod delivery;
mod encoding;
mod error;
mod identity;
pub mod integrations;
#[cfg(feature = "metrics")]
mod metrics;
mod own_threads;
mod panic;
mod probe;
pub mod trace;
mod transport;

pub use boot::{builder, builder_from_env, init, Builder, CargoPackage, LevelHandle};
pub use broker::{AuthMechanism, BrokerError, Connector, ExchangeType};
pub use capture::{ExternalEvent, LogcollectLayer};
pub use config::{
    defaults, BatchConfig, Config, MongodbConfig, RateLimitConfig, RedisConfig, Setting,
    SpoolConfig, BATCH_KEYS, KEYS as CONFIG_KEYS, MONGODB_KEYS, RATE_LIMIT_KEYS, REDIS_KEYS,
    SPOOL_KEYS,
};
pub use delivery::{Dropped, Flush, Guard, Latency, Overflow, Shipper, Stats, WhenFull};
pub use encoding::redact::mask_uri_passwords;
pub use encoding::{Detector, Format, RedactWith};
pub use error::Error;
pub use identity::Kubernetes;
pub use panic::install_panic_hook;
pub use probe::Probe;
#[cfg(feature = "redis")]
pub use transport::redis::RedisConnector;
pub use transport::{MongoWriteConcern, RedisDataType, TransportKind};

/// The top-level keys the `classic` format reserves (docs/formats.md); every other top-level key
/// of a classic document is a user field.
pub const CLASSIC_RESERVED_KEYS: &[&str] = encoding::CLASSIC_RESERVED;

/// The encoder's building blocks (the captured event, the JSON encoders, the identity), for
/// this workspace's command-line tool, benchmarks and examples. Not a stable API: it exists only
/// with the `internals` feature and may change in any release.
#[cfg(feature = "internals")]
#[doc(hidden)]
#[allow(missing_docs)]
pub mod internals {
    pub use crate::capture::{CapturedEvent, ErrorValue, FieldValue, SpanSnapshot};
    pub use crate::encoding::redact::{
        mask_uri_passwords, Redactor, DEFAULT_FIELDS as REDACT_DEFAULT_FIELDS,
    };
    pub use crate::encoding::{
        encode, encode_ecs_general, encode_into, event_id, routing_key, Envelope, CLASSIC_RESERVED,
        MAX_ROUTING_KEY_BYTES,
    };
    pub use crate::identity::Identity;
    /// One JSON document as the MongoDB transport stores it (benches/mongodb.rs).
    #[cfg(feature = "mongodb")]
    pub use crate::transport::mongodb::bson_document;
}
