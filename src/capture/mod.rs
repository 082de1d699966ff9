//! Capture: the `tracing` [`Layer`](tracing_subscriber::Layer) and the `log` bridge.
//!
//! The layer snapshots each event into a [`CapturedEvent`] and hands it to the delivery queue;
//! it never formats JSON, touches the network or blocks.

mod context;
mod event;
mod external;
mod layer;
mod rate_limit;
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
#[cfg(feature = "internals")]
pub use rate_limit::ManualClock;
pub use rate_limit::{ExemptLevel, TargetLimit, SUMMARY_TARGET};

/// Routes records of the `log` crate into `tracing`, so the layer captures them too, keeping
/// their target. Safe to call in any composition:
///
/// - [`init`](crate::init), and tracing-subscriber's `init()`/`try_init()` with its default
///   `tracing-log` feature, install the bridge themselves: calling this afterwards returns
///   [`LogBridge::AlreadySet`] and changes nothing.
/// - Call it after installing your subscriber when it does not (`set_global_default`, or
///   tracing-subscriber without `tracing-log`): [`LogBridge::Installed`].
/// - Called before any global subscriber is set, it installs nothing and returns
///   [`Error::LogBridge`](crate::Error::LogBridge): installed first, the bridge would make
///   tracing-subscriber's `init()` panic (its own bridge could not be set).
///
/// `AlreadySet` also means a logger of another kind may hold the place (`env_logger`, …): the
/// `log` crate cannot tell which, and its records then go there.
pub fn init_log_bridge() -> Result<LogBridge, crate::Error> {
    if !global_subscriber_set() {
        return Err(crate::Error::LogBridge(
            "no global subscriber is set yet: call init_log_bridge after installing yours, or \
             not at all when tracing-subscriber's init()/try_init() installs it"
                .into(),
        ));
    }
    Ok(match tracing_log::LogTracer::init() {
        Ok(()) => LogBridge::Installed,
        Err(_) => LogBridge::AlreadySet,
    })
}

/// Whether a global subscriber is set: what a thread without a scoped one (a new thread) sees.
/// (`dispatcher::has_been_set` also counts scoped subscribers.)
fn global_subscriber_set() -> bool {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .spawn_scoped(scope, || {
                !tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>())
            })
            .ok()
            .and_then(|thread| thread.join().ok())
            // No thread to look from: assume set, as before this check existed.
            .unwrap_or(true)
    })
}

/// What [`init_log_bridge`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogBridge {
    /// This call installed the bridge.
    Installed,
    /// A `log` logger was already set (normally the bridge, by the subscriber's `init`).
    AlreadySet,
}
