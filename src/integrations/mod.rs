//! Integrations: correlation across the boundaries of a process.
//!
//! - [`amqp`]: the trace context in AMQP message headers, and the span of a job consumed from a
//!   queue (always available: it only uses the AMQP client logcollect ships with).
//! - `http` (cargo feature `http`): a tower [`Layer`](tower_layer::Layer) for web services
//!   (axum or any tower HTTP stack): one span and one access event per request, `x-request-id`
//!   and `traceparent` in and out.

pub mod amqp;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
