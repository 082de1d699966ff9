//! The `otel` feature: with a tracing-opentelemetry layer in the subscriber, the shipped
//! `trace.id`, `span.id` and `transaction.id` are those of the OpenTelemetry context, so logs
//! join traces in APM tools; `trace::set_parent` continues a W3C trace in both. Real broker.
//!
//! `cargo test --features otel --test otel`

mod common;

use std::time::Duration;

use common::Capture;
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use serde_json::Value;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The OpenTelemetry (trace id, span id) of a span, as hex.
fn otel_ids(span: &tracing::Span) -> (String, String) {
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    assert!(
        sc.is_valid(),
        "the OpenTelemetry layer gave the span a context"
    );
    (sc.trace_id().to_string(), sc.span_id().to_string())
}

#[test]
fn events_carry_the_opentelemetry_ids_and_set_parent_continues_a_w3c_trace() {
    let mut capture = Capture::fresh();
    let (layer, guard) = logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(capture.exchange.clone())
        .build()
        .expect("build");
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("logcollect-test")))
        .with(layer);

    let (request, handler, own) = tracing::subscriber::with_default(subscriber, || {
        // A request continuing a remote trace: OpenTelemetry and logcollect agree on its id.
        let request = tracing::info_span!("request");
        let remote = logcollect::trace::TraceContext::parse(TRACEPARENT, None).expect("valid");
        assert!(logcollect::trace::set_parent(&request, &remote));
        let _r = request.enter();
        tracing::info!("in the request");
        let handler = tracing::info_span!("handler");
        let _h = handler.enter();
        tracing::info!("in the handler");
        let current = logcollect::trace::current().expect("a context");
        let ids = (otel_ids(&request), otel_ids(&handler));
        assert_eq!(
            current.trace_id.to_string(),
            ids.1 .0,
            "current() is OpenTelemetry's"
        );
        assert_eq!(current.span_id.to_string(), ids.1 .1);
        assert_eq!(current.transaction_id.to_string(), ids.0 .1);
        // A span of its own trace.
        drop(_h);
        drop(_r);
        let other = tracing::info_span!("other");
        let _o = other.enter();
        tracing::info!("elsewhere");
        (ids.0, ids.1, otel_ids(&other))
    });
    assert!(guard.flush(Duration::from_secs(20)).is_complete());
    let docs = common::documents(&capture.receive(3, Duration::from_secs(10)));
    assert_eq!(docs.len(), 3);
    let doc = |message: &str| -> &Value {
        docs.iter()
            .find(|d| d["message"] == message)
            .unwrap_or_else(|| panic!("{message} not in {docs:#?}"))
    };

    assert_eq!(request.0, "4bf92f3577b34da6a3ce929d0e0e4736");
    let r = doc("in the request");
    assert_eq!(r["trace"]["id"], request.0.as_str());
    assert_eq!(r["span"]["id"], request.1.as_str());
    assert_eq!(r["transaction"]["id"], request.1.as_str());
    let h = doc("in the handler");
    assert_eq!(handler.0, request.0);
    assert_eq!(h["trace"]["id"], handler.0.as_str());
    assert_eq!(h["span"]["id"], handler.1.as_str());
    assert_eq!(
        h["transaction"]["id"],
        request.1.as_str(),
        "the local root span"
    );
    let o = doc("elsewhere");
    assert_ne!(own.0, request.0);
    assert_eq!(o["trace"]["id"], own.0.as_str());
    assert_eq!(o["span"]["id"], own.1.as_str());
}
