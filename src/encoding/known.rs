//! Event and span fields named like ECS fields (`http.request.method`, `event.duration`, …):
//! the integrations log them by these names, and the encoders put them where ECS (or, in
//! `classic`, a flat key) says, with the type the Elasticsearch mapping expects. A value of the
//! wrong type (a status code that is not a number, a `client.ip` that is not an address) is not
//! moved: it stays an ordinary user field, so a document is never rejected for it.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::capture::FieldValue;

/// What a known field holds in Elasticsearch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A string (numbers and booleans are written as strings).
    Keyword,
    /// A signed 64-bit integer (a string holding one is accepted).
    Long,
    /// An IPv4 or IPv6 address, as a string.
    Ip,
}

/// A field name the encoders recognise.
#[derive(Debug)]
pub(crate) struct Known {
    /// The ECS path, also the field's name when logged.
    pub path: &'static str,
    pub kind: Kind,
    /// The key a `classic` document writes it under.
    pub classic: &'static str,
}

macro_rules! known {
    ($($path:literal $kind:ident $classic:literal,)*) => {
        /// Every known field. Keep `docs/formats.md` and the Logstash pipeline's classic rewrite
        /// (`logstash/pipeline/shared/filter-output.conf`) in step with this list.
        pub(crate) const KNOWN: &[Known] = &[
            $(Known { path: $path, kind: Kind::$kind, classic: $classic },)*
        ];
    };
}

known! {
    "http.request.method" Keyword "http_request_method",
    "http.request.id" Keyword "http_request_id",
    "http.request.body.bytes" Long "http_request_body_bytes",
    "http.response.status_code" Long "http_response_status_code",
    "http.response.body.bytes" Long "http_response_body_bytes",
    "http.version" Keyword "http_version",
    "http.route" Keyword "http_route",
    "url.path" Keyword "url_path",
    "url.query" Keyword "url_query",
    "client.ip" Ip "client_ip",
    "user_agent.original" Keyword "user_agent",
    "event.duration" Long "event_duration",
    "event.dataset" Keyword "event_dataset",
    "error.type" Keyword "error_type",
    "error.message" Keyword "error_message",
    "error.stack_trace" Keyword "stack_trace",
    "log.origin.file.name" Keyword "path",
    "log.origin.file.line" Long "lineno",
}

/// A known field's value, typed for its place.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum KnownValue<'a> {
    Str(Cow<'a, str>),
    Long(i64),
}

/// The entry of `KNOWN` named `name`.
pub(crate) fn lookup(name: &str) -> Option<&'static Known> {
    // Cheap reject: every known name has a dot.
    if !name.contains('.') {
        return None;
    }
    KNOWN.iter().find(|k| k.path == name)
}

/// The typed value of `value` for `known`, or `None` when it has the wrong type.
pub(crate) fn typed<'a>(known: &Known, value: &'a FieldValue) -> Option<KnownValue<'a>> {
    match known.kind {
        Kind::Keyword => Some(KnownValue::Str(match value {
            FieldValue::Str(s) => Cow::Borrowed(s.as_str()),
            FieldValue::Error(e) => Cow::Borrowed(e.message.as_str()),
            FieldValue::I64(v) => Cow::Owned(v.to_string()),
            FieldValue::U64(v) => Cow::Owned(v.to_string()),
            FieldValue::I128(v) => Cow::Owned(v.to_string()),
            FieldValue::U128(v) => Cow::Owned(v.to_string()),
            FieldValue::F64(v) if v.is_finite() => Cow::Owned(v.to_string()),
            FieldValue::Bool(v) => Cow::Owned(v.to_string()),
            FieldValue::F64(_) => return None,
        })),
        Kind::Long => match value {
            FieldValue::I64(v) => Some(*v),
            FieldValue::U64(v) => i64::try_from(*v).ok(),
            FieldValue::I128(v) => i64::try_from(*v).ok(),
            FieldValue::U128(v) => i64::try_from(*v).ok(),
            FieldValue::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
        .map(KnownValue::Long),
        Kind::Ip => match value {
            FieldValue::Str(s) => s
                .trim()
                .parse::<IpAddr>()
                .ok()
                .map(|ip| KnownValue::Str(Cow::Owned(ip.to_string()))),
            _ => None,
        },
    }
}

/// Splits merged fields into known ones (typed, in `KNOWN`'s sense) and the rest.
#[allow(clippy::type_complexity)]
pub(crate) fn split<'a>(
    fields: Vec<(&'static str, &'a FieldValue)>,
) -> (
    Vec<(&'static Known, KnownValue<'a>)>,
    Vec<(&'static str, &'a FieldValue)>,
) {
    let mut known = Vec::new();
    let mut rest = Vec::with_capacity(fields.len());
    for (name, value) in fields {
        match lookup(name).and_then(|k| typed(k, value).map(|v| (k, v))) {
            Some(kv) => known.push(kv),
            None => rest.push((name, value)),
        }
    }
    (known, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_typed_or_left_alone() {
        let status = lookup("http.response.status_code").unwrap();
        assert_eq!(
            typed(status, &FieldValue::U64(200)),
            Some(KnownValue::Long(200))
        );
        assert_eq!(
            typed(status, &FieldValue::Str("404".into())),
            Some(KnownValue::Long(404))
        );
        assert_eq!(typed(status, &FieldValue::Str("ok".into())), None);
        assert_eq!(typed(status, &FieldValue::U64(u64::MAX)), None);
        let ip = lookup("client.ip").unwrap();
        assert_eq!(
            typed(ip, &FieldValue::Str("::1".into())),
            Some(KnownValue::Str("::1".into()))
        );
        assert_eq!(typed(ip, &FieldValue::Str("localhost".into())), None);
        let method = lookup("http.request.method").unwrap();
        assert_eq!(
            typed(method, &FieldValue::Str("GET".into())),
            Some(KnownValue::Str("GET".into()))
        );
        assert!(lookup("method").is_none() && lookup("http.unknown").is_none());
        let paths: Vec<&str> = KNOWN.iter().map(|k| k.path).collect();
        let classic: Vec<&str> = KNOWN.iter().map(|k| k.classic).collect();
        for (i, p) in paths.iter().enumerate() {
            assert!(!paths[..i].contains(p) && !classic[..i].contains(&classic[i]));
        }
    }
}
