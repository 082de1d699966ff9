//! The `tracing_subscriber::Layer` that captures events for shipping.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::SystemTime;

use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use super::context::SpanState;
use super::event::CapturedEvent;
use super::rate_limit::RateLimiter;
use super::visitor::FieldCollector;
use crate::delivery::Handoff;
use crate::own_threads;

thread_local! {
    static THREAD_INFO: RefCell<Option<(Option<Arc<str>>, u64)>> = const { RefCell::new(None) };
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
    /// `false` with `enabled = false`: the layer captures nothing (it never disables events,
    /// which would hide them from the other layers too).
    on: bool,
    /// `rate_limit.*`: `None` when off (the default), so the off path is one branch.
    /// Shared with the guard, which has it summarise the running window at shutdown.
    rate_limit: Option<Arc<RateLimiter>>,
    /// The subscriber the layer is part of, for tracing-opentelemetry's context lookups
    /// (`get_default` inside a dispatch gives the no-op one).
    #[cfg(feature = "otel")]
    dispatch: std::sync::OnceLock<tracing_core::dispatcher::WeakDispatch>,
}

impl std::fmt::Debug for LogcollectLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogcollectLayer").finish_non_exhaustive()
    }
}

impl LogcollectLayer {
    pub(crate) fn new(handoff: Handoff) -> Self {
        LogcollectLayer {
            handoff,
            on: true,
            rate_limit: None,
            #[cfg(feature = "otel")]
            dispatch: std::sync::OnceLock::new(),
        }
    }

    /// With the rate limit these settings ask for (none when they limit nothing).
    pub(crate) fn with_rate_limit(mut self, config: &crate::config::RateLimitConfig) -> Self {
        self.rate_limit = RateLimiter::new(&super::rate_limit::Settings {
            events: config.events,
            window: config.window,
            burst: config.burst,
            exempt_level: config.exempt_level,
            targets: &config.targets,
        })
        .map(Arc::new);
        if let Some(limiter) = &self.rate_limit {
            let limiter = Arc::clone(limiter);
            self.handoff
                .before_close(Box::new(move |handoff| limiter.sweep(handoff)));
        }
        self
    }

    /// Moves the rate limiter to a clock the caller advances by hand (feature `internals`,
    /// for tests: windows then roll over only when told). Not a stable API.
    #[cfg(feature = "internals")]
    pub fn with_manual_rate_limit_clock(self) -> (Self, super::rate_limit::ManualClock) {
        let clock = match self.rate_limit.as_deref() {
            Some(limiter) => limiter.manual_clock(),
            None => RateLimiter::detached_clock(),
        };
        (self, clock)
    }

    /// A layer that captures nothing (`enabled = false`).
    pub(crate) fn off(handoff: Handoff) -> Self {
        LogcollectLayer {
            on: false,
            ..LogcollectLayer::new(handoff)
        }
    }
}

impl<S> Layer<S> for LogcollectLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    #[cfg(feature = "otel")]
    fn on_register_dispatch(&self, subscriber: &tracing_core::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !self.on || own_threads::is_current() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        // A snapshot the shipper gave back (its only holder), or a new one.
        let mut shared = self.handoff.span_snapshot();
        if let Some(snapshot) = Arc::get_mut(&mut shared) {
            snapshot.name = attrs.metadata().name();
            // A new list is sized to the span's fields, not to the four a first push reserves:
            // in a burst every event's memory is fresh, and less of it is less to fault in.
            snapshot
                .fields
                .reserve_exact(attrs.metadata().fields().len());
            attrs.record(&mut FieldCollector {
                fields: &mut snapshot.fields,
                message: None,
                skip_log_fields: false,
                new_string: &|| self.handoff.string(),
            });
        }
        let trace = super::context::for_new_span(&span);
        // The snapshot is shared (not copied) by every event inside the span.
        span.extensions_mut().insert(SpanState {
            trace,
            fields: Some(shared),
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(snapshot) = extensions
            .get_mut::<SpanState>()
            .and_then(|state| state.fields.as_mut())
        {
            // Copy-on-write: events already captured keep the values they saw.
            let snapshot = Arc::make_mut(snapshot);
            values.record(&mut FieldCollector {
                fields: &mut snapshot.fields,
                message: None,
                skip_log_fields: false,
                new_string: &String::new,
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if !self.on || own_threads::is_current() {
            return;
        }
        let normalized = event.normalized_metadata();
        let is_log = normalized.is_some();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let target = meta.target();
        let now = SystemTime::now();
        if let Some(limiter) = &self.rate_limit {
            if !limiter.admit(event.metadata(), meta, is_log, now, &self.handoff) {
                return;
            }
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

        // Filled in place: a blank the shipper gave back keeps its buffers' capacity.
        let mut captured = self.handoff.blank();
        let CapturedEvent {
            message,
            fields,
            spans,
            ..
        } = &mut *captured;
        fields.reserve_exact(meta.fields().len());
        event.record(&mut FieldCollector {
            fields,
            message: Some(message),
            skip_log_fields: is_log,
            new_string: &|| self.handoff.string(),
        });

        let mut trace = None;
        if let Some(scope) = ctx.event_scope(event) {
            spans.extend(scope.from_root().filter_map(|span| {
                let extensions = span.extensions();
                let state = extensions.get::<SpanState>()?;
                trace = Some(state.trace.ids());
                state.fields.clone()
            }));
        }
        #[cfg(feature = "otel")]
        if let Some(ids) = ctx.event_span(event).and_then(|leaf| {
            let dispatch = self.dispatch.get().and_then(|d| d.upgrade());
            super::context::otel::event_ids(&leaf, &dispatch)
        }) {
            trace = Some(ids);
        }

        captured.timestamp = now;
        captured.level = *meta.level();
        captured.target = target;
        captured.module_path = module_path;
        captured.file = file;
        captured.line = meta.line();
        set_thread_info(&mut captured);
        captured.trace = trace;
        self.handoff.offer_boxed(captured);
    }
}

/// Sets the event's thread name and numeric id, computed once per thread. A reused event
/// usually comes back from this same thread and still holds its name: then the name's
/// reference count is left alone (it is shared with the shipper's thread, which would
/// otherwise take it back and forth once per event).
fn set_thread_info(event: &mut CapturedEvent) {
    THREAD_INFO.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (name, id) = cell.get_or_insert_with(|| {
            let thread = std::thread::current();
            // `ThreadId::as_u64` is unstable; its Debug form is `ThreadId(N)`.
            let id = format!("{:?}", thread.id())
                .trim_start_matches("ThreadId(")
                .trim_end_matches(')')
                .parse()
                .unwrap_or(0);
            (thread.name().map(Arc::from), id)
        });
        event.thread_id = *id;
        let same = match (&*name, &event.thread_name) {
            (Some(ours), Some(held)) => Arc::ptr_eq(ours, held),
            (None, None) => true,
            _ => false,
        };
        if !same {
            event.thread_name = name.clone();
        }
    })
}
