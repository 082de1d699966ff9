//! The `tracing_subscriber::Layer` that captures events for shipping.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::SystemTime;

use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use super::event::{CapturedEvent, SpanSnapshot};
use super::visitor::FieldCollector;
use crate::delivery::Handoff;

/// Crates whose events are never shipped: the AMQP client and the runtime under the shipper
/// log about the shipping itself, and shipping those would feed back into the queue. Exact
/// crate names, so an application crate such as `tokio_billing` is not mistaken for them.
const OWN_STACK_CRATES: &[&str] = &[
    "lapin",
    "amq_protocol",
    "amq_protocol_tcp",
    "amq_protocol_uri",
    "amq_protocol_types",
    "tcp_stream",
    "async_rs",
    "tokio",
    "mio",
    "flume",
    "rustls",
    "rustls_connector",
    "hickory_proto",
    "hickory_resolver",
];

/// Threads the AMQP client starts for itself (its I/O loop) are the shipper's too.
const OWN_STACK_THREADS: &[&str] = &["logcollect-shipper", "lapin-"];

thread_local! {
    static ON_SHIPPER_THREAD: Cell<bool> = const { Cell::new(false) };
    static THREAD_INFO: RefCell<Option<(Option<Arc<str>>, u64)>> = const { RefCell::new(None) };
}

/// Marks the current thread as one of the shipper's: nothing logged on it is captured.
pub(crate) fn mark_shipper_thread() {
    ON_SHIPPER_THREAD.with(|f| f.set(true));
}

/// A [`Layer`] that captures every event it sees and hands it to a [`Shipper`](crate::Shipper).
///
/// Compose it with any other layers (an `EnvFilter`, a `fmt` layer…):
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
///
/// let (layer, guard) = logcollect::builder()
///     .identity("project", "billing")
///     .identity("application", "worker")
///     .build()?;
/// tracing_subscriber::registry()
///     .with(tracing_subscriber::EnvFilter::new("info"))
///     .with(tracing_subscriber::fmt::layer())
///     .with(layer)
///     .init();
/// tracing::info!(order = 42, "started");
/// drop(guard); // delivers what is queued, within the shutdown timeout
/// # Ok::<(), logcollect::Error>(())
/// ```
pub struct LogcollectLayer {
    handoff: Handoff,
}

impl LogcollectLayer {
    pub(crate) fn new(handoff: Handoff) -> Self {
        LogcollectLayer { handoff }
    }
}

/// The snapshot of a span's fields, kept in the span's extensions and shared (not copied) by
/// every event inside it.
struct SpanFields(Arc<SpanSnapshot>);

impl<S> Layer<S> for LogcollectLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut snapshot = SpanSnapshot {
            name: attrs.metadata().name(),
            fields: Vec::new(),
        };
        attrs.record(&mut FieldCollector {
            fields: &mut snapshot.fields,
            message: None,
            skip_log_fields: false,
        });
        span.extensions_mut().insert(SpanFields(Arc::new(snapshot)));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(snapshot)) = extensions.get_mut::<SpanFields>() {
            // Copy-on-write: events already captured keep the values they saw.
            let snapshot = Arc::make_mut(snapshot);
            values.record(&mut FieldCollector {
                fields: &mut snapshot.fields,
                message: None,
                skip_log_fields: false,
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if ON_SHIPPER_THREAD.with(|f| f.get()) {
            return;
        }
        let (thread_name, thread_id) = current_thread_info();
        if thread_name
            .as_deref()
            .is_some_and(|name| OWN_STACK_THREADS.iter().any(|p| name.starts_with(p)))
        {
            return;
        }
        let normalized = event.normalized_metadata();
        let is_log = normalized.is_some();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let target = meta.target();
        if is_own_stack(target) {
            return;
        }
        if self.handoff.would_refuse() {
            // Do not pay for a snapshot that cannot be queued.
            self.handoff.reject_full();
            return;
        }

        // Normalized `log` metadata borrows from the event, so it must be copied; native
        // `tracing` metadata is `'static` and is not.
        let (target, module_path, file): (Cow<'static, str>, _, _) = if is_log {
            (
                Cow::Owned(target.to_owned()),
                meta.module_path().map(|s| Cow::Owned(s.to_owned())),
                meta.file().map(|s| Cow::Owned(s.to_owned())),
            )
        } else {
            let m = event.metadata();
            (
                Cow::Borrowed(m.target()),
                m.module_path().map(Cow::Borrowed),
                m.file().map(Cow::Borrowed),
            )
        };

        let mut message = String::new();
        let mut fields = Vec::new();
        event.record(&mut FieldCollector {
            fields: &mut fields,
            message: Some(&mut message),
            skip_log_fields: is_log,
        });

        let spans = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .from_root()
                    .filter_map(|span| span.extensions().get::<SpanFields>().map(|s| s.0.clone()))
                    .collect()
            })
            .unwrap_or_default();

        self.handoff.offer(CapturedEvent {
            timestamp: SystemTime::now(),
            level: *meta.level(),
            target,
            module_path,
            file,
            line: meta.line(),
            thread_name,
            thread_id,
            message,
            fields,
            spans,
        });
    }
}

fn is_own_stack(target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    OWN_STACK_CRATES.contains(&krate)
}

/// The thread's name and numeric id, computed once per thread.
fn current_thread_info() -> (Option<Arc<str>>, u64) {
    THREAD_INFO.with(|cell| {
        cell.borrow_mut()
            .get_or_insert_with(|| {
                let thread = std::thread::current();
                // `ThreadId::as_u64` is unstable; its Debug form is `ThreadId(N)`.
                let id = format!("{:?}", thread.id())
                    .trim_start_matches("ThreadId(")
                    .trim_end_matches(')')
                    .parse()
                    .unwrap_or(0);
                (thread.name().map(Arc::from), id)
            })
            .clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_stack_targets_match_whole_path_segments() {
        assert!(is_own_stack("lapin"));
        assert!(is_own_stack("lapin::channel"));
        assert!(is_own_stack("tokio::runtime"));
        assert!(is_own_stack("amq_protocol_tcp"));
        assert!(is_own_stack("amq_protocol_uri::x"));
        assert!(!is_own_stack("lapinator"));
        assert!(!is_own_stack("tokio_billing::jobs"));
        assert!(!is_own_stack("billing::lapin"));
    }
}
