//! The `classic` document: the flat layout python-logstash and the Python logcollect write.
//!
//! Identity entries and user fields share the top level with the reserved keys. A name that
//! is already taken is written as `field_<name>` (again, until it is free), so a document never
//! holds a key twice — Elasticsearch rejects duplicate keys.

use std::borrow::Cow;

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::known::{self, Known, KnownValue};
use super::value::{bounded, first_error, merged_fields, Json};
use super::Envelope;
use crate::capture::{CapturedEvent, FieldValue};
use crate::identity::Identity;

/// Keys the classic document itself writes; user data never takes them.
pub const RESERVED: &[&str] = &[
    "@timestamp",
    "@version",
    "message",
    "host",
    "levelname",
    "logger",
    "type",
    "tags",
    "process",
    "event_id",
    "path",
    "lineno",
    "thread_name",
    "spans",
    "stack_trace",
    // correlation and what produced the event (flat equivalents of the ECS fields)
    "trace_id",
    "span_id",
    "transaction_id",
    "service_version",
    "service_environment",
    "event_dataset",
    "container_id",
    "kubernetes_pod_name",
    "kubernetes_namespace",
    "kubernetes_node_name",
    // known ECS fields logged by name (encoding::known; `path`, `lineno`, `stack_trace` and
    // `event_dataset` are above)
    "http_request_method",
    "http_request_id",
    "http_request_body_bytes",
    "http_response_status_code",
    "http_response_body_bytes",
    "http_version",
    "http_route",
    "url_path",
    "url_query",
    "client_ip",
    "user_agent",
    "event_duration",
    "error_type",
    "error_message",
];

/// The value of the `type` key.
pub const TYPE: &str = "logstash";

/// A top-level key taken by an identity entry or a user field.
pub(crate) enum Extra<'a> {
    Identity(&'a str),
    Field(&'a FieldValue),
}

/// The fields of a classic document: known ECS fields (under their reserved flat keys) and
/// the other top-level keys.
pub(crate) struct Fields<'a> {
    known: Vec<(&'static Known, KnownValue<'a>)>,
    extras: Vec<(Cow<'a, str>, Extra<'a>)>,
}

impl Fields<'_> {
    fn known(&self, classic: &str) -> Option<&KnownValue<'_>> {
        self.known
            .iter()
            .find(|(k, _)| k.classic == classic)
            .map(|(_, v)| v)
    }
}

/// Event fields first (they win over identity entries of the same name), then identity entries,
/// each under a name no other key has; known ECS fields apart.
pub(crate) fn top_level_fields<'a>(event: &'a CapturedEvent, identity: &'a Identity) -> Fields<'a> {
    let mut out: Vec<(Cow<'a, str>, Extra<'a>)> = Vec::new();
    let (known, user) = known::split(merged_fields(event));
    let fields = user
        .into_iter()
        .map(|(name, value)| (name, Extra::Field(value)));
    let entries = identity
        .entries
        .iter()
        .map(|(k, v)| (k.as_str(), Extra::Identity(v.as_str())));
    for (name, value) in fields.chain(entries) {
        let mut key = Cow::Borrowed(name);
        while RESERVED.contains(&key.as_ref()) || out.iter().any(|(k, _)| *k == key) {
            key = Cow::Owned(format!("field_{key}"));
        }
        out.push((key, value));
    }
    Fields { known, extras: out }
}

pub(crate) struct Document<'a> {
    event: &'a CapturedEvent,
    envelope: &'a Envelope<'a>,
    fields: &'a Fields<'a>,
}

impl<'a> Document<'a> {
    pub(crate) fn build(
        event: &'a CapturedEvent,
        envelope: &'a Envelope<'a>,
        fields: &'a Fields<'a>,
    ) -> Self {
        Document {
            event,
            envelope,
            fields,
        }
    }
}

/// A known field's value with the string limit applied.
struct KnownJson<'a>(&'a KnownValue<'a>, usize);

impl Serialize for KnownJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            KnownValue::Str(v) => s.serialize_str(&bounded(v, self.1)),
            KnownValue::Long(v) => s.serialize_i64(*v),
        }
    }
}

/// Python's name for a level: WARN is `WARNING`.
fn levelname(level: tracing_core::Level) -> &'static str {
    match level {
        tracing_core::Level::WARN => "WARNING",
        other => other.as_str(),
    }
}

impl Serialize for Document<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (event, env) = (self.event, self.envelope);
        let max = env.max_field_bytes;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("@timestamp", &super::timestamp(event))?;
        map.serialize_entry("@version", "1")?;
        map.serialize_entry("message", &bounded(&event.message, max))?;
        map.serialize_entry("host", &env.identity.hostname)?;
        map.serialize_entry("levelname", levelname(event.level))?;
        map.serialize_entry("logger", event.target.as_ref())?;
        map.serialize_entry("type", TYPE)?;
        map.serialize_entry("tags", &[] as &[&str])?;
        map.serialize_entry("process", &env.identity.pid)?;
        map.serialize_entry("event_id", &env.id.to_string())?;
        let fields = self.fields;
        // An event that names its origin file (a panic's location) replaces the whole origin.
        match fields.known("path") {
            Some(path) => {
                map.serialize_entry("path", &KnownJson(path, max))?;
                if let Some(line) = fields.known("lineno") {
                    map.serialize_entry("lineno", &KnownJson(line, max))?;
                }
            }
            None => {
                if let Some(file) = &event.file {
                    map.serialize_entry("path", file.as_ref())?;
                }
                if let Some(line) = event.line {
                    map.serialize_entry("lineno", &line)?;
                }
            }
        }
        if let Some(name) = &event.thread_name {
            map.serialize_entry("thread_name", name.as_ref())?;
        }
        if !event.spans.is_empty() {
            let names: Vec<&str> = event.spans.iter().map(|s| s.name).collect();
            map.serialize_entry("spans", &names)?;
        }
        match (fields.known("stack_trace"), first_error(event)) {
            (Some(trace), _) => map.serialize_entry("stack_trace", &KnownJson(trace, max))?,
            (None, Some(error)) => {
                map.serialize_entry("stack_trace", &bounded(&error.stack_trace(), max))?
            }
            (None, None) => {}
        }
        if let Some(trace) = &event.trace {
            map.serialize_entry("trace_id", &trace.trace_id.to_string())?;
            map.serialize_entry("span_id", &trace.span_id.to_string())?;
            map.serialize_entry("transaction_id", &trace.transaction_id.to_string())?;
        }
        let identity = env.identity;
        if let Some(v) = &identity.service_version {
            map.serialize_entry("service_version", v)?;
        }
        if let Some(v) = &identity.service_environment {
            map.serialize_entry("service_environment", v)?;
        }
        if fields.known("event_dataset").is_none() {
            map.serialize_entry("event_dataset", identity.dataset())?;
        }
        if let Some(v) = &identity.container_id {
            map.serialize_entry("container_id", v)?;
        }
        if let Some(k8s) = &identity.kubernetes {
            if let Some(v) = &k8s.pod_name {
                map.serialize_entry("kubernetes_pod_name", v)?;
            }
            if let Some(v) = &k8s.namespace {
                map.serialize_entry("kubernetes_namespace", v)?;
            }
            if let Some(v) = &k8s.node_name {
                map.serialize_entry("kubernetes_node_name", v)?;
            }
        }
        for (k, v) in &fields.known {
            if !matches!(k.classic, "path" | "lineno" | "stack_trace") {
                map.serialize_entry(k.classic, &KnownJson(v, max))?;
            }
        }
        for (key, value) in &fields.extras {
            match value {
                Extra::Identity(v) => map.serialize_entry(key.as_ref(), v)?,
                Extra::Field(v) => map.serialize_entry(key.as_ref(), &Json(v, max))?,
            }
        }
        map.end()
    }
}
