//! Trace correlation: W3C trace context (`traceparent`, `tracestate`) in and out, and the ids
//! logcollect keeps for every span.
//!
//! Every span gets a [`SpanContext`] when it is created: a root span starts a new trace (a
//! random 128-bit trace id) and is the *transaction* (the request or job); a child inherits its
//! parent's trace and transaction and gets a span id of its own. Every event inside a span is
//! shipped with `trace.id`, `span.id` and `transaction.id` (ECS). With the `otel` feature and a
//! `tracing-opentelemetry` layer in the subscriber, the ids are OpenTelemetry's instead (events,
//! [`current`], [`span_context`]), and [`set_parent`] sets the OpenTelemetry parent too.
//!
//! To continue a trace that started elsewhere, parse the incoming headers with
//! [`TraceContext::extract`] and [`set_parent`] the span that handles the work; to carry it on,
//! [`current`]`()` gives the ids of the current span and [`SpanContext::inject`] writes them as
//! headers. A malformed header is ignored (`extract` returns `None` and a new trace starts):
//! never an error.
//!
//! ```
//! use logcollect::trace::TraceContext;
//! let headers = [("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")];
//! let get = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
//! let parent = TraceContext::extract(get).expect("a valid traceparent");
//! assert_eq!(parent.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! assert!(TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None).is_none());
//! ```

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

/// The `traceparent` header name (lower case, as sent).
pub const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header name.
pub const TRACESTATE: &str = "tracestate";

/// The sampled flag of `trace-flags`.
pub const FLAG_SAMPLED: u8 = 0x01;
/// The flags this crate knows (sampled, and Level 2's random-trace-id); others are sent as 0.
const KNOWN_FLAGS: u8 = 0x03;

/// A W3C / OpenTelemetry trace id: 16 bytes, never all zero; shown as 32 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(u128);

/// A span (or parent) id: 8 bytes, never all zero; shown as 16 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(u64);

impl TraceId {
    /// `None` for zero, which W3C declares invalid.
    pub fn new(value: u128) -> Option<TraceId> {
        (value != 0).then_some(TraceId(value))
    }
    /// A new random trace id.
    pub fn random() -> TraceId {
        let hi = u128::from(random_u64());
        let lo = u128::from(random_u64());
        TraceId((hi << 64) | lo)
    }
    /// The id as a number.
    pub fn to_u128(self) -> u128 {
        self.0
    }
    /// Parses exactly 32 lower-case hex digits, not all zero.
    pub fn from_hex(hex: &str) -> Option<TraceId> {
        parse_lower_hex(hex.as_bytes(), 32).and_then(TraceId::new)
    }
}

impl SpanId {
    /// `None` for zero, which W3C declares invalid.
    pub fn new(value: u64) -> Option<SpanId> {
        (value != 0).then_some(SpanId(value))
    }
    /// A new random span id.
    pub fn random() -> SpanId {
        SpanId(random_u64())
    }
    /// The id as a number.
    pub fn to_u64(self) -> u64 {
        self.0
    }
    /// Parses exactly 16 lower-case hex digits, not all zero.
    pub fn from_hex(hex: &str) -> Option<SpanId> {
        parse_lower_hex(hex.as_bytes(), 16).and_then(|v| SpanId::new(v as u64))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}
impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}
impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}
impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// `len` lower-case hex digits as a number; `None` for anything else (upper case included, as
/// W3C requires).
fn parse_lower_hex(bytes: &[u8], len: usize) -> Option<u128> {
    if bytes.len() != len {
        return None;
    }
    let mut value: u128 = 0;
    for &b in bytes {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        value = (value << 4) | u128::from(digit);
    }
    Some(value)
}

thread_local! {
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// A non-zero random 64-bit number: splitmix64 over a per-thread state seeded from the
/// operating system's randomness (a UUID v4) on first use. Cheap enough for every span.
fn random_u64() -> u64 {
    RNG.with(|state| {
        let mut s = state.get();
        if s == 0 {
            let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
            s = a ^ b.rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15;
        }
        loop {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            if z != 0 {
                state.set(s);
                return z;
            }
        }
    })
}

/// An incoming (remote) trace context: what a `traceparent` / `tracestate` pair carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace this request or job belongs to.
    pub trace_id: TraceId,
    /// The caller's span: the parent of the span that continues the trace here.
    pub parent_id: SpanId,
    /// `trace-flags`, known bits only (0x01 sampled, 0x02 random trace id).
    pub flags: u8,
    /// The `tracestate` list, validated (invalid members dropped), or `None`.
    pub tracestate: Option<Arc<str>>,
}

impl TraceContext {
    /// Parses a `traceparent` value (and the `tracestate` that came with it) as W3C Trace
    /// Context says: version `00` is exactly 55 characters of lower-case hex and dashes; a
    /// higher version is read at the same offsets (a `-…` suffix allowed) and continued as
    /// version 00; version `ff`, an all-zero trace id or parent id, upper-case or missing
    /// digits make it invalid: `None`, and the `tracestate` is dropped with it.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<TraceContext> {
        let s = traceparent
            .trim_matches(|c| c == ' ' || c == '\t')
            .as_bytes();
        if s.len() < 55 {
            return None;
        }
        let version = parse_lower_hex(&s[0..2], 2)?;
        if version == 0xff || (version == 0 && s.len() != 55) {
            return None;
        }
        if s.len() > 55 && s[55] != b'-' {
            return None;
        }
        if s[2] != b'-' || s[35] != b'-' || s[52] != b'-' {
            return None;
        }
        let trace_id = TraceId::new(parse_lower_hex(&s[3..35], 32)?)?;
        let parent_id = SpanId::new(parse_lower_hex(&s[36..52], 16)? as u64)?;
        let flags = parse_lower_hex(&s[53..55], 2)? as u8;
        Some(TraceContext {
            trace_id,
            parent_id,
            flags: flags & KNOWN_FLAGS,
            tracestate: tracestate.and_then(clean_tracestate).map(Arc::from),
        })
    }

    /// Reads `traceparent` and `tracestate` through `get` (a header lookup by lower-case
    /// name). `None` when there is no valid `traceparent`: start a new trace.
    pub fn extract<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<TraceContext> {
        TraceContext::parse(get(TRACEPARENT)?, get(TRACESTATE))
    }

    /// The `traceparent` value for this context, version 00.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.parent_id, self.flags)
    }

    /// Writes `traceparent` (and `tracestate`, when there is one) through `set`.
    pub fn inject(&self, mut set: impl FnMut(&'static str, String)) {
        set(TRACEPARENT, self.traceparent());
        if let Some(state) = &self.tracestate {
            set(TRACESTATE, state.to_string());
        }
    }

    /// Whether the caller sampled this trace.
    pub fn is_sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }
}

/// Keeps the valid members of a `tracestate` list, at most 32, dropping whole entries
/// (longest over 128 characters first) until it fits in 512 characters. `None` if nothing is
/// left.
fn clean_tracestate(value: &str) -> Option<String> {
    let mut members: Vec<&str> = Vec::new();
    for member in value.split(',') {
        let member = member.trim_matches(|c| c == ' ' || c == '\t');
        if member.is_empty() {
            continue;
        }
        let Some((key, val)) = member.split_once('=') else {
            continue;
        };
        if !valid_tracestate_key(key) || !valid_tracestate_value(val) {
            continue;
        }
        if members
            .iter()
            .any(|m| m.split_once('=').map(|(k, _)| k) == Some(key))
        {
            continue;
        }
        members.push(member);
        if members.len() == 32 {
            break;
        }
    }
    let total = |m: &[&str]| m.iter().map(|s| s.len()).sum::<usize>() + m.len().saturating_sub(1);
    while total(&members) > 512 {
        match members.iter().rposition(|m| m.len() > 128) {
            Some(i) => {
                members.remove(i);
            }
            None => {
                members.pop();
            }
        }
    }
    (!members.is_empty()).then(|| members.join(","))
}

/// `simple-key` or `tenant@system`: starts with a lower-case letter (or a digit for
/// multi-tenant keys), then `a-z0-9_-*/`, at most 256 characters.
fn valid_tracestate_key(key: &str) -> bool {
    let ok_char = |c: u8| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/');
    let part = |p: &str, first_digit_ok: bool| {
        let b = p.as_bytes();
        !b.is_empty()
            && (b[0].is_ascii_lowercase() || (first_digit_ok && b[0].is_ascii_digit()))
            && b.iter().all(|&c| ok_char(c))
    };
    if key.len() > 256 {
        return false;
    }
    match key.split_once('@') {
        None => part(key, true),
        Some((tenant, system)) => {
            tenant.len() <= 241 && system.len() <= 14 && part(tenant, true) && part(system, false)
        }
    }
}

/// Printable ASCII except `,` and `=`, at most 256 characters, not ending in a space.
fn valid_tracestate_value(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && b[b.len() - 1] != b' '
}

/// The ids logcollect keeps for a span, and ships with every event inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanContext {
    /// `trace.id`: shared by every span of the trace, across processes.
    pub trace_id: TraceId,
    /// `span.id`: this span.
    pub span_id: SpanId,
    /// `transaction.id`: the span id of the local root span (the request or job).
    pub transaction_id: SpanId,
    /// `trace-flags` to propagate.
    pub flags: u8,
    /// The `tracestate` to propagate, if one came in.
    pub tracestate: Option<Arc<str>>,
}

impl SpanContext {
    /// A new trace whose root (and transaction) is this span.
    pub fn new_root() -> SpanContext {
        let span_id = SpanId::random();
        SpanContext {
            trace_id: TraceId::random(),
            span_id,
            transaction_id: span_id,
            flags: FLAG_SAMPLED,
            tracestate: None,
        }
    }

    /// A child span in the same trace and transaction.
    pub fn new_child(&self) -> SpanContext {
        SpanContext {
            span_id: SpanId::random(),
            ..self.clone()
        }
    }

    /// A local root continuing a remote trace: the caller's trace id, flags and state, a new
    /// span id that is also the transaction id.
    pub fn continuing(remote: &TraceContext) -> SpanContext {
        let span_id = SpanId::random();
        SpanContext {
            trace_id: remote.trace_id,
            span_id,
            transaction_id: span_id,
            flags: remote.flags,
            tracestate: remote.tracestate.clone(),
        }
    }

    /// The context to send downstream: this span is the parent of the callee's.
    pub fn to_remote(&self) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id,
            parent_id: self.span_id,
            flags: self.flags,
            tracestate: self.tracestate.clone(),
        }
    }

    /// `traceparent` with this span as the parent.
    pub fn traceparent(&self) -> String {
        self.to_remote().traceparent()
    }

    /// Writes `traceparent` (and `tracestate`) with this span as the parent.
    pub fn inject(&self, set: impl FnMut(&'static str, String)) {
        self.to_remote().inject(set)
    }

    /// The three ids, as shipped.
    pub fn ids(&self) -> TraceIds {
        TraceIds {
            trace_id: self.trace_id,
            span_id: self.span_id,
            transaction_id: self.transaction_id,
        }
    }
}

/// The ids an event is shipped with (`trace.id`, `span.id`, `transaction.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceIds {
    /// `trace.id`.
    pub trace_id: TraceId,
    /// `span.id`: the innermost span.
    pub span_id: SpanId,
    /// `transaction.id`: the root span of the request or job.
    pub transaction_id: SpanId,
}

/// The trace context of the current span (`tracing::Span::current()`), if it is known to a
/// subscriber with the logcollect layer.
pub fn current() -> Option<SpanContext> {
    span_context(&tracing::Span::current())
}

/// The trace context logcollect keeps for `span`; `None` for a disabled span or a subscriber
/// without the logcollect layer.
pub fn span_context(span: &tracing::Span) -> Option<SpanContext> {
    crate::capture::span_context(span)
}

/// Makes `span` continue the remote trace `parent` (same trace id; `span` becomes the local
/// root: its id is the `transaction.id`). Call it right after creating the span, before
/// entering it or creating children. Returns whether the span was found.
pub fn set_parent(span: &tracing::Span, parent: &TraceContext) -> bool {
    #[cfg(feature = "otel")]
    crate::capture::otel_set_parent(span, parent);
    crate::capture::set_span_context(span, SpanContext::continuing(parent))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_round_trips() {
        let c = TraceContext::parse(TP, None).unwrap();
        assert_eq!(c.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.parent_id.to_string(), "00f067aa0ba902b7");
        assert!(c.is_sampled());
        assert_eq!(c.traceparent(), TP);
        let padded = format!(" {TP}\t");
        assert_eq!(TraceContext::parse(&padded, None).unwrap(), c);
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        let bad = [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01é",
            "é0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for tp in bad {
            assert_eq!(TraceContext::parse(tp, Some("a=b")), None, "{tp:?}");
        }
    }

    #[test]
    fn future_versions_are_read_at_fixed_offsets_and_continued_as_00() {
        let c = TraceContext::parse(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0b-what-the-future-holds",
            None,
        )
        .unwrap();
        assert_eq!(c.flags, 0x03, "unknown flags are dropped");
        assert!(c
            .traceparent()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(TraceContext::parse(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            None
        )
        .is_none());
    }

    #[test]
    fn tracestate_keeps_valid_members_only() {
        let c = TraceContext::parse(
            TP,
            Some("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE,BAD=x,,a@b=c"),
        )
        .unwrap();
        assert_eq!(
            c.tracestate.as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,a@b=c")
        );
        let c = TraceContext::parse(TP, Some("=,,")).unwrap();
        assert_eq!(c.tracestate, None);
        let long: Vec<String> = (0..40)
            .map(|i| format!("k{i}={}", "v".repeat(20)))
            .collect();
        let c = TraceContext::parse(TP, Some(&long.join(","))).unwrap();
        let state = c.tracestate.unwrap();
        assert!(
            state.len() <= 512 && state.split(',').count() <= 32,
            "{state}"
        );
    }

    #[test]
    fn ids_are_random_and_never_zero() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = SpanId::random();
            assert_ne!(id.to_u64(), 0);
            assert!(seen.insert(id));
        }
        let a = SpanContext::new_root();
        let b = a.new_child();
        assert_eq!(
            (a.trace_id, a.transaction_id),
            (b.trace_id, b.transaction_id)
        );
        assert_ne!(a.span_id, b.span_id);
        assert_eq!(a.transaction_id, a.span_id);
        assert_eq!(a.trace_id.to_string().len(), 32);
        assert_eq!(TraceId::from_hex(&a.trace_id.to_string()), Some(a.trace_id));
        assert_eq!(SpanId::from_hex(&a.span_id.to_string()), Some(a.span_id));
    }

    #[test]
    fn continuing_a_remote_trace_keeps_its_id_and_starts_a_transaction() {
        let remote = TraceContext::parse(TP, Some("rojo=1")).unwrap();
        let local = SpanContext::continuing(&remote);
        assert_eq!(local.trace_id, remote.trace_id);
        assert_eq!(local.transaction_id, local.span_id);
        assert_ne!(local.span_id, remote.parent_id);
        let mut headers = Vec::new();
        local.inject(|k, v| headers.push((k, v)));
        assert_eq!(headers[0].0, "traceparent");
        assert_eq!(
            headers[0].1,
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", local.span_id)
        );
        assert_eq!(headers[1], ("tracestate", "rojo=1".to_string()));
    }
}
