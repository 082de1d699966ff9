//! Capture: the `tracing` [`Layer`](tracing_subscriber::Layer) and the `log` bridge.
//!
//! The layer snapshots each event into a [`CapturedEvent`] and hands it to the delivery queue;
//! it never formats JSON, touches the network or blocks.

mod event;
mod layer;
mod visitor;

pub use event::{CapturedEvent, ErrorValue, FieldValue, SpanSnapshot};
pub(crate) use layer::mark_shipper_thread;
pub use layer::LogcollectLayer;

/// Route records of the `log` crate into `tracing`, so the layer captures them too, keeping
/// their target. [`init`](crate::init) calls this for you; call it yourself when you compose
/// your own subscriber. Fails if another `log` logger is already installed.
pub fn init_log_bridge() -> Result<(), crate::Error> {
    tracing_log::LogTracer::init().map_err(|e| crate::Error::LogBridge(e.to_string()))
}
