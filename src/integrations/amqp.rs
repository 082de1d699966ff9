//! Background jobs over AMQP: the producer puts its trace context in the headers of the
//! message that queues a job; the worker opens the job's span from them, so the job's events
//! carry the `trace.id` of the request that queued it.
//!
//! ```no_run
//! # async fn demo(channel: lapin::Channel, delivery: lapin::message::Delivery) -> lapin::Result<()> {
//! use logcollect::integrations::amqp;
//! use tracing::Instrument;
//! // producer, inside the request's span:
//! let properties = amqp::with_trace_context(amqp::BasicProperties::default().with_delivery_mode(2));
//! // channel.basic_publish(exchange, routing_key, options, payload, properties).await?;
//!
//! // worker, for each delivery:
//! let span = amqp::job_span("invoices", &delivery.properties);
//! async {
//!     tracing::info!("job started"); // same trace.id as the request
//! }
//! .instrument(span)
//! .await;
//! # Ok(()) }
//! ```

use lapin::types::{AMQPValue, LongString, ShortString};

/// The AMQP client's types these functions take, re-exported so that callers name the same
/// version of them that logcollect was built with.
pub use lapin::{types::FieldTable, BasicProperties};

use crate::trace::{self, SpanContext, TraceContext, TRACEPARENT, TRACESTATE};

/// Writes `traceparent` (and `tracestate`) for `context` into AMQP headers.
pub fn inject_context(context: &SpanContext, headers: &mut FieldTable) {
    context.inject(|name, value| {
        headers.insert(
            ShortString::from(name),
            AMQPValue::LongString(LongString::from(value)),
        );
    });
}

/// Writes the current span's trace context into AMQP headers; `false` (nothing written) when
/// there is no current span known to logcollect.
pub fn inject(headers: &mut FieldTable) -> bool {
    match trace::current() {
        Some(context) => {
            inject_context(&context, headers);
            true
        }
        None => false,
    }
}

/// `properties` with the current span's trace context added to its headers (the other
/// headers kept).
pub fn with_trace_context(properties: BasicProperties) -> BasicProperties {
    let mut headers = properties.headers().clone().unwrap_or_default();
    if inject(&mut headers) {
        properties.with_headers(headers)
    } else {
        properties
    }
}

/// A header's text, whether sent as a long or a short string (or bytes).
fn header<'a>(headers: &'a FieldTable, name: &str) -> Option<&'a str> {
    headers
        .inner()
        .iter()
        .find(|(k, _)| k.as_str().eq_ignore_ascii_case(name))
        .and_then(|(_, v)| match v {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
            AMQPValue::ShortString(s) => Some(s.as_str()),
            AMQPValue::ByteArray(b) => std::str::from_utf8(b.as_slice()).ok(),
            _ => None,
        })
}

/// The trace context in AMQP headers; `None` (start a new trace) when there is none or it is
/// malformed.
pub fn extract(headers: Option<&FieldTable>) -> Option<TraceContext> {
    let headers = headers?;
    TraceContext::extract(|name| header(headers, name))
}

/// The span of one job: `job` (target `logcollect::job`, INFO) with `job.queue` and, when the
/// message has one, `job.message_id`, continuing the trace in the message's headers (or
/// starting one). Instrument the job's work with it.
pub fn job_span(queue: &str, properties: &BasicProperties) -> tracing::Span {
    let span = tracing::info_span!(
        target: "logcollect::job",
        "job",
        job.queue = queue,
        job.message_id = tracing::field::Empty,
    );
    if let Some(id) = properties.message_id() {
        span.record("job.message_id", id.as_str());
    }
    if let Some(parent) = extract(properties.headers().as_ref()) {
        trace::set_parent(&span, &parent);
    }
    span
}

/// The header names used (lower case).
pub const HEADERS: [&str; 2] = [TRACEPARENT, TRACESTATE];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_bad_ones_are_ignored() {
        let remote = TraceContext::parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("rojo=1"),
        )
        .unwrap();
        let context = SpanContext::continuing(&remote);
        let mut headers = FieldTable::default();
        inject_context(&context, &mut headers);
        let back = extract(Some(&headers)).unwrap();
        assert_eq!(back.trace_id, remote.trace_id);
        assert_eq!(back.parent_id, context.span_id);
        assert_eq!(back.tracestate.as_deref(), Some("rojo=1"));

        let mut bad = FieldTable::default();
        bad.insert(
            ShortString::from("traceparent"),
            AMQPValue::LongString(LongString::from("00-zz")),
        );
        assert_eq!(extract(Some(&bad)), None);
        assert_eq!(extract(None), None);
        let mut short = FieldTable::default();
        short.insert(
            ShortString::from("traceparent"),
            AMQPValue::ShortString(ShortString::from(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            )),
        );
        assert!(!extract(Some(&short)).unwrap().is_sampled());
    }
}
