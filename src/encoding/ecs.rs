//! The `ecs` document: Elastic Common Schema names as nested objects.
//!
//! User data (event and span fields) lives under `fields`, so no user field can collide with an
//! ECS object such as `host` or `log` (a string `host` would make Elasticsearch reject the
//! document). The only fields that leave `fields` are the known ECS names of
//! [`known`](super::known) (`http.request.method`, `event.duration`, …), typed for their place.
//!
//! The general form is a list of dotted paths and values, written as nested objects: every
//! path is written once, and a later entry for the same path replaces the earlier one (so an
//! event that logs `error.type` overrides the type taken from its error field). Most events
//! carry no known ECS field, and their layout is fixed: [`write`] writes those straight into
//! the buffer, same bytes, with no allocation (the shipper's cost per event is the ceiling of
//! the whole path).

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::known::{self, Known, KnownValue};
use super::value::{bounded, first_error, merged_fields, write_str, FieldMap, Json};
use super::Envelope;
use crate::capture::{CapturedEvent, FieldValue};
use crate::identity::Identity;

/// The ECS version whose field names the document follows.
pub const ECS_VERSION: &str = "8.11.0";

/// Appends the `ecs` document of `event` to `out`.
pub(crate) fn write(
    event: &CapturedEvent,
    envelope: &Envelope<'_>,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    let any_known = event
        .spans
        .iter()
        .flat_map(|span| span.fields.iter())
        .chain(event.fields.iter())
        .any(|(name, _)| known::lookup(name).is_some());
    if any_known {
        let fields = split_fields(event);
        serde_json::to_writer(out, &Document::build(event, envelope, &fields))
    } else {
        write_plain(event, envelope, out)
    }
}

/// Any JSON value appended to `out` (strings escaped as serde_json does).
fn json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> serde_json::Result<()> {
    value.serialize(&mut serde_json::Serializer::new(out))
}

/// The document of an event without known ECS fields, in [`Document`]'s order and nesting
/// (`tests::plain_and_general_forms_write_the_same_bytes` holds the two together).
fn write_plain(
    event: &CapturedEvent,
    envelope: &Envelope<'_>,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    let max = envelope.max_field_bytes;
    let parts = identity_parts(envelope.identity)?;
    out.extend_from_slice(b"{\"@timestamp\":\"");
    super::timestamp_into(event.timestamp, out);
    out.extend_from_slice(b"\",\"log\":{\"level\":");
    write_str(out, event.level.as_str());
    out.extend_from_slice(b",\"logger\":");
    write_str(out, &event.target);
    let module = event.module_path.as_deref();
    if event.file.is_some() || module.is_some() {
        out.extend_from_slice(b",\"origin\":{");
        if let Some(file) = event.file.as_deref() {
            out.extend_from_slice(b"\"file\":{\"name\":");
            write_str(out, file);
            if let Some(line) = event.line {
                out.extend_from_slice(b",\"line\":");
                json(out, &line)?;
            }
            out.push(b'}');
            if module.is_some() {
                out.push(b',');
            }
        }
        if let Some(module) = module {
            out.extend_from_slice(b"\"module\":");
            write_str(out, module);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"},\"message\":");
    write_str(out, &bounded(&event.message, max));
    out.extend_from_slice(&parts.process);
    if let Some(name) = event.thread_name.as_deref() {
        out.extend_from_slice(b"\"name\":");
        write_str(out, name);
        out.push(b',');
    }
    out.extend_from_slice(b"\"id\":");
    json(out, &event.thread_id)?;
    out.extend_from_slice(&parts.host_to_id);
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.extend_from_slice(envelope.id.hyphenated().encode_lower(&mut id).as_bytes());
    out.extend_from_slice(&parts.dataset_ecs);
    if let Some(trace) = &event.trace {
        out.extend_from_slice(b",\"trace\":{\"id\":\"");
        hex(out, trace.trace_id.to_u128(), 32);
        out.extend_from_slice(b"\"},\"span\":{\"id\":\"");
        hex(out, u128::from(trace.span_id.to_u64()), 16);
        out.extend_from_slice(b"\"},\"transaction\":{\"id\":\"");
        hex(out, u128::from(trace.transaction_id.to_u64()), 16);
        out.extend_from_slice(b"\"}");
    }
    out.extend_from_slice(&parts.rest);
    if !event.spans.is_empty() {
        out.extend_from_slice(b",\"spans\":[");
        for (i, span) in event.spans.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, span.name);
        }
        out.push(b']');
    }
    if let Some(e) = first_error(event) {
        out.extend_from_slice(b",\"error\":{\"message\":");
        write_str(out, &bounded(&e.message, max));
        out.extend_from_slice(b",\"type\":");
        write_str(out, &e.type_name);
        out.extend_from_slice(b",\"stack_trace\":");
        write_str(out, &bounded(&e.stack_trace(), max));
        out.push(b'}');
    }
    write_fields(event, max, out)?;
    out.push(b'}');
    Ok(())
}

/// The parts of a document that depend only on the identity, rendered once per identity (and
/// thread): escaping the host, service and labels again for every event was a tenth of the
/// writer's instructions. Held with the identity they were rendered from, compared on each use.
struct IdentityParts {
    identity: Identity,
    /// `,"process":{"pid":…,"thread":{`
    process: Vec<u8>,
    /// `}},"host":{…},"service":{…},"event":{"id":"`
    host_to_id: Vec<u8>,
    /// `","dataset":…},"ecs":{…}`
    dataset_ecs: Vec<u8>,
    /// `container`, `kubernetes` and `labels`, when set.
    rest: Vec<u8>,
}

impl IdentityParts {
    fn render(identity: &Identity) -> serde_json::Result<Self> {
        let mut process = b",\"process\":{\"pid\":".to_vec();
        json(&mut process, &identity.pid)?;
        process.extend_from_slice(b",\"thread\":{");

        let mut host_to_id = Vec::new();
        {
            let out = &mut host_to_id;
            out.extend_from_slice(b"}},\"host\":{\"hostname\":");
            write_str(out, &identity.hostname);
            out.extend_from_slice(b"},\"service\":{\"name\":");
            write_str(out, &identity.service_name);
            if let Some(version) = &identity.service_version {
                out.extend_from_slice(b",\"version\":");
                write_str(out, version);
            }
            if let Some(environment) = &identity.service_environment {
                out.extend_from_slice(b",\"environment\":");
                write_str(out, environment);
            }
            out.extend_from_slice(b"},\"event\":{\"id\":\"");
        }

        let mut dataset_ecs = Vec::new();
        {
            let out = &mut dataset_ecs;
            out.extend_from_slice(b"\",\"dataset\":");
            write_str(out, identity.dataset());
            out.extend_from_slice(b"},\"ecs\":{\"version\":");
            write_str(out, ECS_VERSION);
            out.push(b'}');
        }

        let mut rest = Vec::new();
        {
            let out = &mut rest;
            if let Some(container) = &identity.container_id {
                out.extend_from_slice(b",\"container\":{\"id\":");
                write_str(out, container);
                out.push(b'}');
            }
            if let Some(k8s) = &identity.kubernetes {
                let parts = [
                    (&k8s.pod_name, &b"\"pod\":{\"name\":"[..], &b"}"[..]),
                    (&k8s.namespace, &b"\"namespace\":"[..], &b""[..]),
                    (&k8s.node_name, &b"\"node\":{\"name\":"[..], &b"}"[..]),
                ];
                let mut first = true;
                for (value, open, close) in parts {
                    if let Some(value) = value {
                        out.extend_from_slice(if first { b",\"kubernetes\":{" } else { b"," });
                        first = false;
                        out.extend_from_slice(open);
                        write_str(out, value);
                        out.extend_from_slice(close);
                    }
                }
                if !first {
                    out.push(b'}');
                }
            }
            if !identity.entries.is_empty() {
                out.extend_from_slice(b",\"labels\":");
                json(out, &identity.entries)?;
            }
        }
        Ok(IdentityParts {
            identity: identity.clone(),
            process,
            host_to_id,
            dataset_ecs,
            rest,
        })
    }
}

thread_local! {
    static PARTS: RefCell<Option<Rc<IdentityParts>>> = const { RefCell::new(None) };
}

/// The rendered parts of `identity`: this thread's last ones if they were rendered from an
/// equal identity, else new ones.
fn identity_parts(identity: &Identity) -> serde_json::Result<Rc<IdentityParts>> {
    PARTS.with(|cell| {
        if let Some(parts) = &*cell.borrow() {
            if parts.identity == *identity {
                return Ok(parts.clone());
            }
        }
        let parts = Rc::new(IdentityParts::render(identity)?);
        *cell.borrow_mut() = Some(parts.clone());
        Ok(parts)
    })
}

/// The low `digits` hex digits of `value`, lower case, zero-padded (as W3C trace context and
/// the ids' `Display` write them).
fn hex(out: &mut Vec<u8>, value: u128, digits: u32) {
    for i in (0..digits).rev() {
        let nibble = (value >> (i * 4)) & 0xf;
        out.push(b"0123456789abcdef"[nibble as usize]);
    }
}

/// `"fields":{…}`: span fields root to leaf, then the event's, merged by name as
/// [`merged_fields`] does (first place, last value), without building the merged list. Up to
/// [`FLAT`] fields are looked over in an array on the stack (walking the spans' lists again for
/// each field cost more than writing them).
fn write_fields(event: &CapturedEvent, max: usize, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let all = || {
        event
            .spans
            .iter()
            .flat_map(|span| span.fields.iter())
            .chain(event.fields.iter())
    };
    let mut flat: [(&str, Option<&FieldValue>); FLAT] = [("", None); FLAT];
    let mut n = 0;
    for (name, value) in all() {
        let Some(slot) = flat.get_mut(n) else {
            return write_many_fields(event, max, out);
        };
        *slot = (name, Some(value));
        n += 1;
    }
    let flat = &flat[..n];
    // Names of one call site are the same `&'static str`: equal pointers answer at once.
    let same = |a: &str, b: &str| a.len() == b.len() && (a.as_ptr() == b.as_ptr() || a == b);
    let mut first = true;
    for (i, &(name, _)) in flat.iter().enumerate() {
        if flat[..i].iter().any(|&(earlier, _)| same(earlier, name)) {
            continue;
        }
        let last = flat[i..]
            .iter()
            .rev()
            .find(|&&(other, _)| same(other, name));
        if let Some(&(_, Some(value))) = last {
            write_field(out, &mut first, name, value, max)?;
        }
    }
    if !first {
        out.push(b'}');
    }
    Ok(())
}

/// Fields an event and its spans hold at most for [`write_fields`]'s array.
const FLAT: usize = 32;

/// [`write_fields`] for events with more than [`FLAT`] fields.
fn write_many_fields(
    event: &CapturedEvent,
    max: usize,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    let all = || {
        event
            .spans
            .iter()
            .flat_map(|span| span.fields.iter())
            .chain(event.fields.iter())
    };
    let mut first = true;
    for (i, (name, _)) in all().enumerate() {
        if all().take(i).any(|(earlier, _)| earlier == name) {
            continue;
        }
        let value = all()
            .skip(i)
            .filter(|(other, _)| other == name)
            .last()
            .map(|(_, v)| v);
        let Some(value) = value else { continue };
        write_field(out, &mut first, name, value, max)?;
    }
    if !first {
        out.push(b'}');
    }
    Ok(())
}

/// One `name:value` of `fields`, opening the object before the first.
fn write_field(
    out: &mut Vec<u8>,
    first: &mut bool,
    name: &str,
    value: &FieldValue,
    max: usize,
) -> serde_json::Result<()> {
    out.extend_from_slice(if *first { b",\"fields\":{" } else { b"," });
    *first = false;
    write_str(out, name);
    out.push(b':');
    match value {
        FieldValue::Str(v) => write_str(out, &bounded(v, max)),
        _ => json(out, &Json(value, max))?,
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::capture::{ErrorValue, SpanSnapshot};
    use crate::encoding::test_support;
    use crate::identity::{Identity, Kubernetes};
    use crate::trace::{SpanId, TraceId, TraceIds};
    use uuid::Uuid;

    fn general(event: &CapturedEvent, envelope: &Envelope<'_>) -> Vec<u8> {
        let fields = split_fields(event);
        serde_json::to_vec(&Document::build(event, envelope, &fields)).unwrap()
    }

    fn plain(event: &CapturedEvent, envelope: &Envelope<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        write_plain(event, envelope, &mut out).unwrap();
        out
    }

    fn value() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            any::<i64>().prop_map(FieldValue::I64),
            any::<u64>().prop_map(FieldValue::U64),
            any::<i128>().prop_map(FieldValue::I128),
            any::<f64>().prop_map(FieldValue::F64),
            any::<bool>().prop_map(FieldValue::Bool),
            ".{0,40}".prop_map(FieldValue::Str),
            (
                ".{0,20}",
                "[A-Za-z]{1,8}",
                proptest::collection::vec(".{0,10}", 0..3)
            )
                .prop_map(|(message, type_name, causes)| FieldValue::Error(
                    ErrorValue {
                        message,
                        type_name,
                        causes,
                    }
                )),
        ]
    }

    /// Names that collide across spans and the event, none of them a known ECS field.
    fn fields() -> impl Strategy<Value = Vec<(&'static str, FieldValue)>> {
        let name = prop::sample::select(vec!["a", "b", "req", "depth", "wei\"rd\n", "é", "x.y"]);
        proptest::collection::vec((name, value()), 0..6)
    }

    fn opt(s: &'static str) -> impl Strategy<Value = Option<String>> {
        proptest::option::of(Just(s.to_string()))
    }

    prop_compose! {
        fn identity()(
            entries in proptest::collection::btree_map("[a-z\"]{1,6}", ".{0,8}", 0..3),
            version in opt("1.2.3"),
            environment in opt("prod"),
            dataset in opt("billing.api"),
            container in opt("abc123"),
            k8s in proptest::option::of((opt("pod-1"), opt("ns"), opt("node-\"7"))),
        ) -> Identity {
            let mut identity = test_support::identity();
            identity.entries = entries;
            identity.service_version = version;
            identity.service_environment = environment;
            identity.event_dataset = dataset;
            identity.container_id = container;
            identity.kubernetes = k8s.map(|(pod_name, namespace, node_name)| Kubernetes {
                pod_name,
                namespace,
                node_name,
            });
            identity
        }
    }

    prop_compose! {
        fn event()(
            fields in fields(),
            spans in proptest::collection::vec(("[a-z_]{1,8}", fields()), 0..3),
            message in ".{0,60}",
            file in proptest::option::of(Just("src/a.rs")),
            line in proptest::option::of(any::<u32>()),
            module in proptest::option::of(Just("app::m")),
            thread in proptest::option::of(Just("worker \"1\"")),
            traced in any::<bool>(),
        ) -> CapturedEvent {
            let mut e = test_support::event(fields);
            e.message = message;
            e.file = file.map(Cow::Borrowed);
            e.line = line;
            e.module_path = module.map(Cow::Borrowed);
            e.thread_name = thread.map(Arc::from);
            e.spans = spans
                .into_iter()
                .map(|(name, fields)| {
                    Arc::new(SpanSnapshot { name: Box::leak(name.into_boxed_str()), fields })
                })
                .collect();
            e.trace = traced.then(|| TraceIds {
                trace_id: TraceId::new(0x4bf92f3577b34da6a3ce929d0e0e4736).unwrap(),
                span_id: SpanId::new(0x3ff9a8981b7ccd5a).unwrap(),
                transaction_id: SpanId::new(0x00f067aa0ba902b7).unwrap(),
            });
            e
        }
    }

    proptest! {
        #[test]
        fn plain_and_general_forms_write_the_same_bytes(
            event in event(),
            identity in identity(),
            max in prop::sample::select(vec![0usize, 4, 1 << 20]),
        ) {
            let envelope = Envelope { id: Uuid::now_v7(), identity: &identity, max_field_bytes: max };
            let bytes = plain(&event, &envelope);
            let expected = general(&event, &envelope);
            prop_assert_eq!(String::from_utf8_lossy(&bytes), String::from_utf8_lossy(&expected));
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap();
        }
    }

    #[test]
    fn many_fields_and_equal_names_at_other_addresses_merge_as_the_general_form_does() {
        let identity = test_support::identity();
        let envelope = Envelope {
            id: Uuid::nil(),
            identity: &identity,
            max_field_bytes: 0,
        };
        // The same name as the span's `req`, from another allocation.
        let req: &'static str = Box::leak(String::from("req").into_boxed_str());
        for count in [3, FLAT, FLAT + 5] {
            let names: Vec<&'static str> = (0..count)
                .map(|i| &*Box::leak(format!("f{}", i % 7).into_boxed_str()))
                .collect();
            let mut fields: Vec<_> = names
                .iter()
                .enumerate()
                .map(|(i, name)| (*name, FieldValue::I64(i as i64)))
                .collect();
            fields.push((req, FieldValue::Str("event's".into())));
            let e = test_support::event(fields);
            let bytes = plain(&e, &envelope);
            assert_eq!(
                String::from_utf8_lossy(&bytes),
                String::from_utf8_lossy(&general(&e, &envelope)),
                "{count} fields"
            );
            let d: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(d["fields"]["req"], "event's");
        }
    }

    #[test]
    fn events_with_known_fields_take_the_general_form() {
        let identity = test_support::identity();
        let envelope = Envelope {
            id: Uuid::nil(),
            identity: &identity,
            max_field_bytes: 0,
        };
        let e = test_support::event(vec![("http.response.status_code", FieldValue::U64(200))]);
        let mut out = Vec::new();
        write(&e, &envelope, &mut out).unwrap();
        assert_eq!(out, general(&e, &envelope));
        let d: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(d["http"]["response"]["status_code"], 200);
        let e = test_support::event(vec![("n", FieldValue::U64(1))]);
        out.clear();
        write(&e, &envelope, &mut out).unwrap();
        assert_eq!(out, plain(&e, &envelope));
    }
}
