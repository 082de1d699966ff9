//! The `classic` document: the flat layout python-logstash and the Python logcollect write.
//!
//! Identity entries and user fields share the top level with the reserved keys. A name that
//! is already taken is written as `field_<name>` (again, until it is free), so a document never
//! holds a key twice — Elasticsearch rejects duplicate keys.

use std::borrow::Cow;

use serde::ser::{Serialize, SerializeMap, Serializer};

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
];

/// The value of the `type` key.
pub const TYPE: &str = "logstash";

/// A top-level key taken by an identity entry or a user field.
pub(crate) enum Extra<'a> {
    Identity(&'a str),
    Field(&'a FieldValue),
}

/// Event fields first (they win over identity entries of the same name), then identity entries,
/// each under a name no other key has.
pub(crate) fn top_level_fields<'a>(
    event: &'a CapturedEvent,
    identity: &'a Identity,
) -> Vec<(Cow<'a, str>, Extra<'a>)> {
    let mut out: Vec<(Cow<'a, str>, Extra<'a>)> = Vec::new();
    let fields = merged_fields(event)
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
    out
}

pub(crate) struct Document<'a> {
    event: &'a CapturedEvent,
    envelope: &'a Envelope<'a>,
    extras: &'a [(Cow<'a, str>, Extra<'a>)],
}

impl<'a> Document<'a> {
    pub(crate) fn build(
        event: &'a CapturedEvent,
        envelope: &'a Envelope<'a>,
        extras: &'a [(Cow<'a, str>, Extra<'a>)],
    ) -> Self {
        Document {
            event,
            envelope,
            extras,
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
        if let Some(file) = &event.file {
            map.serialize_entry("path", file.as_ref())?;
        }
        if let Some(line) = event.line {
            map.serialize_entry("lineno", &line)?;
        }
        if let Some(name) = &event.thread_name {
            map.serialize_entry("thread_name", name.as_ref())?;
        }
        if !event.spans.is_empty() {
            let names: Vec<&str> = event.spans.iter().map(|s| s.name).collect();
            map.serialize_entry("spans", &names)?;
        }
        if let Some(error) = first_error(event) {
            map.serialize_entry("stack_trace", &bounded(&error.stack_trace(), max))?;
        }
        for (key, value) in self.extras {
            match value {
                Extra::Identity(v) => map.serialize_entry(key.as_ref(), v)?,
                Extra::Field(v) => map.serialize_entry(key.as_ref(), &Json(v, max))?,
            }
        }
        map.end()
    }
}
