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
//! Modules follow the data: [`capture`] (the layer) → [`encoding`] (pure JSON functions) →
//! delivery (queue, shipper thread, confirms) → the broker; [`Config`] and [`init`] at the edge.

mod boot;
mod broker;
pub mod capture;
mod config;
mod delivery;
pub mod encoding;
mod error;
mod identity;

pub use boot::{builder, builder_from_env, init, Builder};
pub use capture::LogcollectLayer;
pub use config::{
    defaults, Config, ExchangeType, Overflow, SpoolConfig, WhenFull, KEYS as CONFIG_KEYS,
    SPOOL_KEYS,
};
pub use delivery::{Dropped, Flush, Guard, Shipper, Stats};
pub use encoding::Format;
pub use error::Error;
pub use identity::Identity;
