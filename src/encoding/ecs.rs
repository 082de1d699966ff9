//! The `ecs` document: Elastic Common Schema names as nested objects.
//!
//! User data (event and span fields) lives under `fields`, so no user field can collide with an
//! ECS object such as `host` or `log` (a string `host` would make Elasticsearch reject the
//! document). The only fields that leave `fields` are the known ECS names of
//! [`known`](super::known) (`http.request.method`, `event.duration`, …), typed for their place.
//!
//! The document is a list of dotted paths and values, written as nested objects: every path
//! is written once, and a later entry for the same path replaces the earlier one (so an event
//! that logs `error.type` overrides the type taken from its error field).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::known::{self, Known, KnownValue};
use super::value::{bounded, first_error, merged_fields, FieldMap};
use super::Envelope;
use crate::capture::{CapturedEvent, FieldValue};

/// The ECS version whose field names the document follows.
pub const ECS_VERSION: &str = "8.11.0";

/// One value of the document.
enum V<'a> {
    Str(Cow<'a, str>),
    I64(i64),
    U64(u64),
    Labels(&'a BTreeMap<String, String>),
    Names(Vec<&'static str>),
    Fields(FieldMap<'a>),
}

impl Serialize for V<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            V::Str(v) => s.serialize_str(v),
            V::I64(v) => s.serialize_i64(*v),
            V::U64(v) => s.serialize_u64(*v),
            V::Labels(v) => v.serialize(s),
            V::Names(v) => v.serialize(s),
            V::Fields(v) => v.serialize(s),
        }
    }
}

pub(crate) struct Document<'a> {
    entries: Vec<(&'a str, V<'a>)>,
}

impl<'a> Document<'a> {
    fn put(&mut self, path: &'a str, value: V<'a>) {
        match self.entries.iter_mut().find(|(p, _)| *p == path) {
            Some(slot) => slot.1 = value,
            None => self.entries.push((path, value)),
        }
    }

    fn put_opt(&mut self, path: &'a str, value: Option<&'a str>) {
        if let Some(v) = value {
            self.put(path, V::Str(Cow::Borrowed(v)));
        }
    }

    /// Borrows what it can from the event; `fields` (from [`split_fields`]) must outlive the
    /// document.
    pub(crate) fn build(
        event: &'a CapturedEvent,
        envelope: &'a Envelope<'a>,
        fields: &'a Fields<'a>,
    ) -> Self {
        let max = envelope.max_field_bytes;
        let identity = envelope.identity;
        let mut d = Document {
            entries: Vec::with_capacity(32),
        };
        d.put("@timestamp", V::Str(Cow::Owned(super::timestamp(event))));
        d.put("log.level", V::Str(Cow::Borrowed(event.level.as_str())));
        d.put("message", V::Str(bounded(&event.message, max)));
        d.put("log.logger", V::Str(Cow::Borrowed(&event.target)));
        // An event that names its origin file (a panic's location) replaces the whole origin.
        let origin_given = fields
            .known
            .iter()
            .any(|(k, _)| k.path == "log.origin.file.name");
        if !origin_given {
            if let Some(file) = event.file.as_deref() {
                d.put("log.origin.file.name", V::Str(Cow::Borrowed(file)));
                if let Some(line) = event.line {
                    d.put("log.origin.file.line", V::U64(u64::from(line)));
                }
            }
            d.put_opt("log.origin.module", event.module_path.as_deref());
        }
        d.put("process.pid", V::U64(u64::from(identity.pid)));
        d.put_opt("process.thread.name", event.thread_name.as_deref());
        d.put("process.thread.id", V::U64(event.thread_id));
        d.put("host.hostname", V::Str(Cow::Borrowed(&identity.hostname)));
        d.put(
            "service.name",
            V::Str(Cow::Borrowed(&identity.service_name)),
        );
        d.put_opt("service.version", identity.service_version.as_deref());
        d.put_opt(
            "service.environment",
            identity.service_environment.as_deref(),
        );
        d.put("event.id", V::Str(Cow::Owned(envelope.id.to_string())));
        d.put("event.dataset", V::Str(Cow::Borrowed(identity.dataset())));
        d.put("ecs.version", V::Str(Cow::Borrowed(ECS_VERSION)));
        if let Some(trace) = &event.trace {
            d.put("trace.id", V::Str(Cow::Owned(trace.trace_id.to_string())));
            d.put("span.id", V::Str(Cow::Owned(trace.span_id.to_string())));
            d.put(
                "transaction.id",
                V::Str(Cow::Owned(trace.transaction_id.to_string())),
            );
        }
        d.put_opt("container.id", identity.container_id.as_deref());
        // The names Elastic's Kubernetes integrations use (not ECS; `orchestrator.*` would be).
        if let Some(k8s) = &identity.kubernetes {
            d.put_opt("kubernetes.pod.name", k8s.pod_name.as_deref());
            d.put_opt("kubernetes.namespace", k8s.namespace.as_deref());
            d.put_opt("kubernetes.node.name", k8s.node_name.as_deref());
        }
        if !identity.entries.is_empty() {
            d.put("labels", V::Labels(&identity.entries));
        }
        if !event.spans.is_empty() {
            d.put(
                "spans",
                V::Names(event.spans.iter().map(|s| s.name).collect()),
            );
        }
        if let Some(e) = first_error(event) {
            d.put("error.message", V::Str(bounded(&e.message, max)));
            d.put("error.type", V::Str(Cow::Borrowed(&e.type_name)));
            d.put(
                "error.stack_trace",
                V::Str(Cow::Owned(bounded(&e.stack_trace(), max).into_owned())),
            );
        }
        for (k, value) in &fields.known {
            let value = match value {
                KnownValue::Str(s) => V::Str(bounded(s, max)),
                KnownValue::Long(n) => V::I64(*n),
            };
            d.put(k.path, value);
        }
        if !fields.user.is_empty() {
            d.put(
                "fields",
                V::Fields(FieldMap {
                    fields: &fields.user,
                    max,
                }),
            );
        }
        d
    }
}

/// An event's merged fields, split into known ECS ones and user ones (under `fields`).
pub(crate) struct Fields<'a> {
    known: Vec<(&'static Known, KnownValue<'a>)>,
    user: Vec<(Cow<'a, str>, &'a FieldValue)>,
}

/// The fields of an `ecs` document.
pub(crate) fn split_fields(event: &CapturedEvent) -> Fields<'_> {
    let (known, user) = known::split(merged_fields(event));
    Fields {
        known,
        user: user
            .into_iter()
            .map(|(name, value)| (Cow::Borrowed(name), value))
            .collect(),
    }
}

impl Serialize for Document<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let all: Vec<(usize, usize)> = (0..self.entries.len()).map(|i| (i, 0)).collect();
        Level {
            doc: self,
            items: all,
        }
        .serialize(s)
    }
}

/// One object of the document: entries (index, byte offset of the rest of their path) whose
/// paths share the prefix already written.
struct Level<'d, 'a> {
    doc: &'d Document<'a>,
    items: Vec<(usize, usize)>,
}

impl Serialize for Level<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rest = |&(i, off): &(usize, usize)| &self.doc.entries[i].0[off..];
        let mut map = s.serialize_map(None)?;
        let mut done = vec![false; self.items.len()];
        for n in 0..self.items.len() {
            if done[n] {
                continue;
            }
            done[n] = true;
            let item = self.items[n];
            match rest(&item).split_once('.') {
                None => map.serialize_entry(rest(&item), &self.doc.entries[item.0].1)?,
                Some((head, _)) => {
                    // Every later entry under the same head goes into this one object.
                    let mut children = vec![(item.0, item.1 + head.len() + 1)];
                    for (other, done) in self.items.iter().zip(done.iter_mut()).skip(n + 1) {
                        if *done {
                            continue;
                        }
                        if let Some((h, _)) = rest(other).split_once('.') {
                            if h == head {
                                *done = true;
                                children.push((other.0, other.1 + h.len() + 1));
                            }
                        }
                    }
                    map.serialize_entry(
                        head,
                        &Level {
                            doc: self.doc,
                            items: children,
                        },
                    )?;
                }
            }
        }
        map.end()
    }
}
