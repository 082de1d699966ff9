//! Capture: the `tracing` [`Layer`](tracing_subscriber::Layer) and the `log` bridge.
//!
//! The layer snapshots each event into a [`CapturedEvent`] and hands it to the delivery queue;
//! it never formats JSON, touches the network or blocks.

mod context;
mod event;
mod external;
mod layer;
mod visitor;

#[cfg(feature = "otel")]
pub(crate) use context::otel::set_parent as otel_set_parent;
pub(crate) use context::{set_span_context, span_context};
#[cfg(feature = "internals")]
pub use event::{CapturedEvent, ErrorValue, FieldValue, SpanSnapshot};
#[cfg(not(feature = "internals"))]
#[allow(unused_imports)] // what the `internals` feature exposes is not all used inside
pub(crate) use event::{CapturedEvent, ErrorValue, FieldValue, SpanSnapshot};
pub use external::ExternalEvent;
pub use layer::LogcollectLayer;

/// Route records of the `log` crate into `tracing`, so the layer captures them too, keeping
/// their target. [`init`](crate::init) calls this for you; call it yourself when you compose
/// your own subscriber. Fails if another `log` logger is already installed.
pub fn init_log_bridge() -> Result<(), crate::Error> {
    tracing_log::LogTracer::init().map_err(|e| crate::Error::LogBridge(e.to_string()))
}
