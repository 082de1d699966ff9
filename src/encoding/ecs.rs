//! The `ecs` document: Elastic Common Schema names as nested objects.
//!
//! User data (event and span fields) lives under `fields`, so no user field can collide with an
//! ECS object such as `host` or `log` (a string `host` would make Elasticsearch reject the
//! document).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;

use super::value::{bounded, first_error, merged_fields, FieldMap};
use super::Envelope;
use crate::capture::CapturedEvent;

/// The ECS version whose field names the document follows.
pub const ECS_VERSION: &str = "8.11.0";

#[derive(Serialize)]
pub(crate) struct Document<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: String,
    message: Cow<'a, str>,
    log: Log<'a>,
    process: Process<'a>,
    host: Host<'a>,
    service: Service<'a>,
    event: EventMeta,
    ecs: Ecs,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    spans: Vec<&'static str>,
    #[serde(skip_serializing_if = "is_empty_map")]
    fields: FieldMap<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Error<'a>>,
}

fn is_empty_map(map: &FieldMap<'_>) -> bool {
    map.fields.is_empty()
}

#[derive(Serialize)]
struct Log<'a> {
    level: &'static str,
    logger: &'a str,
    #[serde(skip_serializing_if = "Origin::is_empty")]
    origin: Origin<'a>,
}

#[derive(Serialize)]
struct Origin<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<File<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    module: Option<&'a str>,
}

impl Origin<'_> {
    fn is_empty(&self) -> bool {
        self.file.is_none() && self.module.is_none()
    }
}

#[derive(Serialize)]
struct File<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
}

#[derive(Serialize)]
struct Process<'a> {
    pid: u32,
    thread: Thread<'a>,
}

#[derive(Serialize)]
struct Thread<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    id: u64,
}

#[derive(Serialize)]
struct Host<'a> {
    hostname: &'a str,
}

#[derive(Serialize)]
struct Service<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct EventMeta {
    id: String,
}

#[derive(Serialize)]
struct Ecs {
    version: &'static str,
}

#[derive(Serialize)]
struct Error<'a> {
    message: Cow<'a, str>,
    #[serde(rename = "type")]
    kind: &'a str,
    stack_trace: String,
}

impl<'a> Document<'a> {
    /// Borrows what it can from the event; `fields` must outlive the document.
    pub(crate) fn build(
        event: &'a CapturedEvent,
        envelope: &'a Envelope<'a>,
        fields: &'a [(Cow<'a, str>, &'a crate::capture::FieldValue)],
    ) -> Self {
        let max = envelope.max_field_bytes;
        let identity = envelope.identity;
        Document {
            timestamp: super::timestamp(event),
            message: bounded(&event.message, max),
            log: Log {
                level: event.level.as_str(),
                logger: &event.target,
                origin: Origin {
                    file: event.file.as_deref().map(|name| File {
                        name,
                        line: event.line,
                    }),
                    module: event.module_path.as_deref(),
                },
            },
            process: Process {
                pid: identity.pid,
                thread: Thread {
                    name: event.thread_name.as_deref(),
                    id: event.thread_id,
                },
            },
            host: Host {
                hostname: &identity.hostname,
            },
            service: Service {
                name: &identity.service_name,
            },
            event: EventMeta {
                id: envelope.id.to_string(),
            },
            ecs: Ecs {
                version: ECS_VERSION,
            },
            labels: &identity.entries,
            spans: event.spans.iter().map(|s| s.name).collect(),
            fields: FieldMap { fields, max },
            error: first_error(event).map(|e| Error {
                message: bounded(&e.message, max),
                kind: &e.type_name,
                stack_trace: bounded(&e.stack_trace(), max).into_owned(),
            }),
        }
    }
}

/// The field list an `ecs` document serialises under `fields`.
pub(crate) fn user_fields(
    event: &CapturedEvent,
) -> Vec<(Cow<'_, str>, &crate::capture::FieldValue)> {
    merged_fields(event)
        .into_iter()
        .map(|(name, value)| (Cow::Borrowed(name), value))
        .collect()
}
