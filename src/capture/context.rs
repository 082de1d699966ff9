//! The trace context of each span, kept in the span's extensions next to its field snapshot.
//!
//! Computed once when the span is created (a new root, or a child of its parent's); an event
//! copies the three ids of its innermost span, nothing more.

use tracing_subscriber::registry::{LookupSpan, SpanRef};
use tracing_subscriber::Registry;

use crate::trace::SpanContext;

/// What logcollect keeps in a span's extensions: its trace context and the snapshot of its
/// fields, in one entry (one allocation and one lookup per span, not two).
pub(crate) struct SpanState {
    pub trace: SpanContext,
    /// `None` for a span the layer did not capture (one given a context by
    /// [`set_span_context`] only).
    pub fields: Option<std::sync::Arc<crate::capture::SpanSnapshot>>,
}

/// The context of a new span: its parent's child, or the root of a new trace.
pub(crate) fn for_new_span<'a, R: LookupSpan<'a>>(span: &SpanRef<'a, R>) -> SpanContext {
    span.parent()
        .and_then(|parent| {
            parent
                .extensions()
                .get::<SpanState>()
                .map(|state| state.trace.new_child())
        })
        .unwrap_or_else(SpanContext::new_root)
}

/// The registry behind a span's subscriber, when it is tracing-subscriber's `Registry` (the
/// usual case: `registry().with(layers…)`).
fn with_registry<T>(
    span: &tracing::Span,
    f: impl FnOnce(SpanRef<'_, Registry>) -> Option<T>,
) -> Option<T> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        f(registry.span(id)?)
    })
    .flatten()
}

/// See [`crate::trace::span_context`].
pub(crate) fn span_context(span: &tracing::Span) -> Option<SpanContext> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let span = registry.span(id)?;
        let own = span
            .extensions()
            .get::<SpanState>()
            .map(|state| state.trace.clone());
        #[cfg(feature = "otel")]
        let own = otel::span_context(&span, dispatch, own);
        own
    })
    .flatten()
}

/// Replaces a span's context (its children created later inherit the new one).
pub(crate) fn set_span_context(span: &tracing::Span, context: SpanContext) -> bool {
    with_registry(span, |span| {
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<SpanState>() {
            Some(state) => state.trace = context,
            None => extensions.insert(SpanState {
                trace: context,
                fields: None,
            }),
        }
        Some(())
    })
    .is_some()
}

/// With the `otel` feature: the ids of tracing-opentelemetry's context, when a layer of it is
/// in the subscriber, in place of logcollect's own.
#[cfg(feature = "otel")]
pub(crate) mod otel {
    use opentelemetry::trace::{TraceContextExt, TraceState};
    use tracing_core::span::Id;
    use tracing_core::Dispatch;
    use tracing_subscriber::registry::{LookupSpan, SpanRef};

    use crate::trace::{SpanContext, SpanId, TraceContext, TraceId, TraceIds};

    /// A span's OpenTelemetry ids, cached in its extensions after the first event (`None`: the
    /// span has no valid OpenTelemetry context).
    struct OtelIds(Option<(TraceId, SpanId, u8)>);

    /// The OpenTelemetry trace id, span id and flags of a span. Must not be called while
    /// holding that span's extensions (tracing-opentelemetry locks them).
    fn lookup(id: &Id, dispatch: &Dispatch) -> Option<(TraceId, SpanId, u8)> {
        let cx = tracing_opentelemetry::get_otel_context(id, dispatch)?;
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return None;
        }
        Some((
            TraceId::new(u128::from_be_bytes(sc.trace_id().to_bytes()))?,
            SpanId::new(u64::from_be_bytes(sc.span_id().to_bytes()))?,
            sc.trace_flags().to_u8(),
        ))
    }

    /// Cached, else looked up in `dispatch` (the subscriber the span belongs to) and cached.
    fn ids_of<'a, R: LookupSpan<'a>>(
        span: &SpanRef<'a, R>,
        dispatch: &Option<Dispatch>,
    ) -> Option<(TraceId, SpanId, u8)> {
        if let Some(OtelIds(ids)) = span.extensions().get::<OtelIds>() {
            return *ids;
        }
        let ids = lookup(&span.id(), dispatch.as_ref()?);
        // Not cached while unknown: the OpenTelemetry span may get its parent later.
        if ids.is_some() {
            span.extensions_mut().replace(OtelIds(ids));
        }
        ids
    }

    /// The ids of the innermost span `leaf` (and of its local root, the transaction) from
    /// OpenTelemetry, when it knows them. `dispatch`: the subscriber the span belongs to.
    pub(crate) fn event_ids<'a, R: LookupSpan<'a>>(
        leaf: &SpanRef<'a, R>,
        dispatch: &Option<Dispatch>,
    ) -> Option<TraceIds> {
        let (trace_id, span_id, _) = ids_of(leaf, dispatch)?;
        let root = leaf.scope().from_root().next()?;
        let transaction_id = if root.id() == leaf.id() {
            span_id
        } else {
            ids_of(&root, dispatch).map_or(span_id, |(_, id, _)| id)
        };
        Some(TraceIds {
            trace_id,
            span_id,
            transaction_id,
        })
    }

    /// [`crate::trace::span_context`] with OpenTelemetry's ids, when it knows them.
    pub(crate) fn span_context<'a, R: LookupSpan<'a>>(
        span: &SpanRef<'a, R>,
        dispatch: &Dispatch,
        own: Option<SpanContext>,
    ) -> Option<SpanContext> {
        let dispatch = Some(dispatch.clone());
        let Some(ids) = event_ids(span, &dispatch) else {
            return own;
        };
        let flags = ids_of(span, &dispatch).map_or(crate::trace::FLAG_SAMPLED, |(_, _, f)| f);
        Some(SpanContext {
            trace_id: ids.trace_id,
            span_id: ids.span_id,
            transaction_id: ids.transaction_id,
            flags,
            tracestate: own.and_then(|c| c.tracestate),
        })
    }

    /// Makes the OpenTelemetry span of `span` continue `parent` too.
    pub(crate) fn set_parent(span: &tracing::Span, parent: &TraceContext) {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let state = parent
            .tracestate
            .as_deref()
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        let remote = opentelemetry::trace::SpanContext::new(
            opentelemetry::trace::TraceId::from_bytes(parent.trace_id.to_u128().to_be_bytes()),
            opentelemetry::trace::SpanId::from_bytes(parent.parent_id.to_u64().to_be_bytes()),
            opentelemetry::trace::TraceFlags::new(parent.flags),
            true,
            state,
        );
        // Without an OpenTelemetry layer there is nothing to set: not an error here.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}
