//! MongoDB behind the seam: each message is one unordered `insert_many` of its documents into
//! the collection of its route, the write concern's reply its confirm.
//!
//! Each document becomes BSON as it is, with two changes: its event time (`@timestamp`) is a
//! BSON date, so TTL indexes, range queries and sorting work, and its event id (`event.id`, or
//! `event_id` in the classic format) is its `_id`. A message published again after a lost
//! reply is then absorbed: its documents already stored fail with a duplicate key (11000),
//! which counts as delivered. A document the server refuses for good (too large, failing the
//! collection's validation) is counted dropped and reported; the rest of its message is
//! delivered. Network errors and "not primary" end the link: the engine reconnects and
//! publishes the message again.
//!
//! A link prepares each collection before its first insert: created (capped when
//! `mongodb.capped_bytes` is set) if it does not exist, and the indexes created with explicit
//! names (time; service + time; level + time; the time index expiring documents when
//! `mongodb.expire_after_ms` is set).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::borrow::Cow;

use ::mongodb::bson::{doc, Document, RawArrayBuf, RawBsonRef, RawDocumentBuf};
use ::mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use ::mongodb::options::{
    ClientOptions, CollectionOptions, IndexOptions, WriteConcern as DriverWriteConcern,
};
use ::mongodb::{Client, Collection, Database, IndexModel};
use bytes::Bytes;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use tokio::sync::oneshot;

use super::writer::{Queued, Signals, WriterLink};
use super::{MongoWriteConcern, Outcome, Signal, Transport, MAX_BSON_BYTES};
use crate::broker::BrokerError;
use crate::delivery::Message;
use crate::encoding::redact::mask_uri_passwords;
use crate::{Config, Error, Format};

/// The duplicate-key error: the document is already there.
const DUPLICATE_KEY: i32 = 11000;
/// Errors that say the node cannot take writes now (not primary, recovering, shutting down):
/// another link, maybe to another node, will.
const STATE_CHANGE: &[i32] = &[91, 189, 10107, 11600, 11602, 13435, 13436];
/// `NamespaceExists`: a collection created meanwhile.
const NAMESPACE_EXISTS: i32 = 48;
/// `InvalidNamespace`: a collection name the server never takes.
const INVALID_NAMESPACE: i32 = 73;

/// Why MongoDB would refuse `name` as a collection of `database`, checked before asking it (its
/// naming rules): a name from a template may be anything an event carries.
fn bad_collection_name(name: &str, database: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("the name is empty")
    } else if name.contains(['$', '\0']) {
        Some("a name may not contain `$` or NUL")
    } else if name.starts_with("system.") {
        Some("`system.` names are the server's own")
    } else if database.len().saturating_add(1).saturating_add(name.len()) > 255 {
        Some("`database.collection` is longer than 255 bytes")
    } else {
        None
    }
}

/// The fields a format names its time, id, service and level with.
#[derive(Debug, Clone, Copy)]
struct Fields {
    time: &'static str,
    /// The id's path: one key, or an object and its key.
    id: (&'static str, Option<&'static str>),
    service: &'static str,
    level: &'static str,
}

impl Fields {
    fn of(format: Format) -> Fields {
        match format {
            Format::Classic => Fields {
                time: "@timestamp",
                id: ("event_id", None),
                service: "application",
                level: "levelname",
            },
            _ => Fields {
                time: "@timestamp",
                id: ("event", Some("id")),
                service: "service.name",
                level: "log.level",
            },
        }
    }
}

/// What every link of the transport shares.
#[derive(Debug)]
struct Settings {
    database: String,
    fields: Fields,
    capped_bytes: u64,
    capped_max: u64,
    expire_after: Duration,
    write_concern: DriverWriteConcern,
    /// Collections already prepared, by any link of this transport.
    prepared: Mutex<HashSet<String>>,
}

/// Opens links: one driver client each (its own connection pool), checked with a `ping`.
#[derive(Debug)]
pub(crate) struct Mongodb {
    uri: String,
    /// The URI without its password, as messages show it.
    node: String,
    connect_timeout: Duration,
    settings: Arc<Settings>,
}

impl Mongodb {
    pub fn new(config: &Config) -> Result<Mongodb, Error> {
        let m = &config.mongodb;
        let write_concern = match m.write_concern {
            MongoWriteConcern::Majority => DriverWriteConcern::majority(),
            MongoWriteConcern::Primary => DriverWriteConcern::nodes(1),
        };
        Ok(Mongodb {
            uri: m.uri.clone(),
            node: describe(&m.uri),
            connect_timeout: config.connect_timeout,
            settings: Arc::new(Settings {
                database: m.database.clone(),
                fields: Fields::of(config.format),
                capped_bytes: m.capped_bytes,
                capped_max: m.capped_max,
                expire_after: m.expire_after,
                write_concern,
                prepared: Mutex::new(HashSet::new()),
            }),
        })
    }

    async fn client(&self) -> Result<Client, BrokerError> {
        let mut options = ClientOptions::parse(&self.uri)
            .await
            .map_err(|e| error(&self.node, &e))?;
        options.server_selection_timeout = Some(self.connect_timeout);
        options.connect_timeout = Some(self.connect_timeout);
        // The engine publishes again what was not confirmed; a second try inside the driver
        // would only hide the outage from the stats.
        options.retry_writes = Some(false);
        options.app_name.get_or_insert_with(|| "logcollect".into());
        Client::with_options(options).map_err(|e| error(&self.node, &e))
    }
}

impl Transport for Mongodb {
    type Link = WriterLink<Job>;

    /// The writer task and the driver's own tasks, beside the encoding.
    fn io_threads(&self) -> usize {
        1
    }

    async fn open(&self) -> Result<WriterLink<Job>, BrokerError> {
        let client = self.client().await?;
        let db = client.database(&self.settings.database);
        let ping = db.run_command(doc! { "ping": 1 });
        match tokio::time::timeout(self.connect_timeout.saturating_mul(2), ping).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(error(&self.node, &e)),
            Err(_) => {
                return Err(BrokerError::Timeout {
                    broker: self.node.clone(),
                    after: self.connect_timeout,
                })
            }
        }
        let (node, settings) = (self.node.clone(), self.settings.clone());
        let writer = move |queued, signal| {
            Writer {
                client,
                db,
                node,
                settings,
                signal,
            }
            .run(queued)
        };
        Ok(WriterLink::start(self.node.clone(), "MongoDB", writer))
    }
}

/// A message handed to the writer task, and where its answer goes.
pub(crate) struct Job {
    collection: String,
    body: Bytes,
    ends: Vec<u32>,
    answer: oneshot::Sender<Outcome>,
}

impl super::writer::Job for Job {
    fn new(message: &Message, answer: oneshot::Sender<Outcome>) -> Job {
        Job {
            collection: message.route.clone(),
            body: message.body.clone(),
            ends: message.ends.clone(),
            answer,
        }
    }
}

/// The writer task of one link: one insert at a time, in the order published.
struct Writer {
    client: Client,
    db: Database,
    node: String,
    settings: Arc<Settings>,
    signal: Signals,
}

impl Writer {
    async fn run(self, mut queued: Queued<Job>) {
        while let Some(job) = queued.recv().await {
            let outcome = self.write(&job).await;
            let lost = match &outcome {
                Outcome::Failed(e) => Some(e.clone()),
                _ => None,
            };
            let _ = job.answer.send(outcome);
            if let Some(e) = lost {
                let _ = self.signal.send(Signal::Lost(e));
                break;
            }
        }
        self.client.shutdown().immediate(true).await;
    }

    async fn write(&self, job: &Job) -> Outcome {
        let converted = documents(&job.body, &job.ends, self.settings.fields);
        let collection = job.collection.as_str();
        let never_taken = |why: String| {
            let n = converted.docs.len() + converted.refused.len();
            refused(
                n as u64,
                format!(
                    "collection `{collection}` refused: {why}; set `mongodb.collection` to a \
                     valid collection name"
                ),
            )
        };
        if let Some(why) = bad_collection_name(collection, &self.settings.database) {
            return never_taken(why.to_string());
        }
        if let Err(e) = self.prepare(collection).await {
            // A name the server refuses is the events' route, not the link: sending them again
            // would be refused again, forever.
            if code_of(&e) == Some(INVALID_NAMESPACE) {
                return never_taken(format!("by MongoDB: {}", words(&e)));
            }
            return Outcome::Failed(error(&self.node, &e));
        }
        let refused_here = converted.refused.len() as u64;
        if converted.docs.is_empty() {
            return refused(refused_here, converted.refused.join("; "));
        }
        let options = CollectionOptions::builder()
            .write_concern(self.settings.write_concern.clone())
            .build();
        let coll: Collection<RawDocumentBuf> = self.db.collection_with_options(collection, options);
        let result = coll.insert_many(&converted.docs).ordered(false).await;
        let Err(e) = result else {
            return refused(refused_here, converted.refused.join("; "));
        };
        match e.kind.as_ref() {
            ErrorKind::InsertMany(failure) => {
                if let Some(concern) = &failure.write_concern_error {
                    if STATE_CHANGE.contains(&concern.code) {
                        return Outcome::Failed(lost(&self.node, &e));
                    }
                    // Written, not yet acknowledged as asked: publish again (absorbed by `_id`).
                    return Outcome::Refused;
                }
                let mut why: Vec<String> = converted.refused;
                let mut refused_there = 0u64;
                for w in failure.write_errors.iter().flatten() {
                    match w.code {
                        DUPLICATE_KEY => {}
                        code if STATE_CHANGE.contains(&code) => {
                            return Outcome::Failed(lost(&self.node, &e))
                        }
                        code => {
                            refused_there += 1;
                            if why.len() < 3 {
                                why.push(format!(
                                    "document {} refused by MongoDB (code {code}): {}",
                                    w.index, w.message
                                ));
                            }
                        }
                    }
                }
                refused(refused_here + refused_there, why.join("; "))
            }
            ErrorKind::Write(WriteFailure::WriteConcernError(concern))
                if !STATE_CHANGE.contains(&concern.code) =>
            {
                Outcome::Refused
            }
            _ => Outcome::Failed(error(&self.node, &e)),
        }
    }

    /// Creates the collection (capped as set) unless it exists, and its indexes, once.
    async fn prepare(&self, name: &str) -> Result<(), MongoError> {
        let done = self
            .settings
            .prepared
            .lock()
            .map(|p| p.contains(name))
            .unwrap_or(false);
        if done {
            return Ok(());
        }
        let s = &self.settings;
        let existing = self
            .db
            .list_collection_names()
            .filter(doc! { "name": name })
            .await?;
        // Compared here too: a server that ignores the filter lists every collection.
        if !existing.iter().any(|n| n == name) {
            let mut create = self.db.create_collection(name);
            if s.capped_bytes > 0 {
                create = create.capped(true).size(s.capped_bytes);
                if s.capped_max > 0 {
                    create = create.max(s.capped_max);
                }
            }
            if let Err(e) = create.await {
                if code_of(&e) != Some(NAMESPACE_EXISTS) {
                    return Err(e);
                }
            }
        }
        let coll: Collection<Document> = self.db.collection(name);
        // One at a time: an index the server refuses (a clash with an existing one, a server
        // that cannot index the field) is reported, and neither stops the others nor the logs.
        let mut refused = Vec::new();
        for index in index_models(s) {
            let index_name = index
                .options
                .as_ref()
                .and_then(|o| o.name.clone())
                .unwrap_or_default();
            if let Err(e) = coll.create_index(index).await {
                refused.push(format!("index `{index_name}`: {}", words(&e)));
            }
        }
        if !refused.is_empty() {
            let _ = self.signal.send(Signal::Trouble(format!(
                "{}: collection `{name}` is used without {} of its indexes ({}); an index of \
                 the same name or keys made with other options (another \
                 mongodb.expire_after_ms?) is replaced only by dropping it",
                self.node,
                refused.len(),
                refused.join("; ")
            )));
        }
        if let Ok(mut prepared) = self.settings.prepared.lock() {
            prepared.insert(name.to_string());
        }
        Ok(())
    }
}

/// The indexes of a collection, named explicitly: time (a TTL index with `expire_after`),
/// service + time, level + time.
fn index_models(s: &Settings) -> Vec<IndexModel> {
    let f = s.fields;
    let time_options = IndexOptions::builder()
        .name("logcollect_time".to_string())
        .expire_after((!s.expire_after.is_zero()).then_some(s.expire_after))
        .build();
    let named = |n: &str| IndexOptions::builder().name(n.to_string()).build();
    vec![
        IndexModel::builder()
            .keys(doc! { f.time: 1 })
            .options(time_options)
            .build(),
        IndexModel::builder()
            .keys(doc! { f.service: 1, f.time: 1 })
            .options(named("logcollect_service_time"))
            .build(),
        IndexModel::builder()
            .keys(doc! { f.level: 1, f.time: 1 })
            .options(named("logcollect_level_time"))
            .build(),
    ]
}

/// Delivered, with `n` documents refused for good.
fn refused(n: u64, why: String) -> Outcome {
    match n {
        0 => Outcome::Delivered,
        refused => Outcome::PartlyRefused { refused, why },
    }
}

/// A body's documents as BSON, and why some could not be.
struct Converted {
    docs: Vec<RawDocumentBuf>,
    refused: Vec<String>,
}

/// Cuts a body into its documents (at the packer's offsets, or parsed) and converts each.
fn documents(body: &[u8], ends: &[u32], fields: Fields) -> Converted {
    let texts = super::writer::documents(body, ends);
    let mut converted = Converted {
        docs: Vec::with_capacity(texts.len()),
        refused: Vec::new(),
    };
    for (i, text) in texts.into_iter().enumerate() {
        match document(text, fields) {
            Ok(doc) => converted.docs.push(doc),
            Err(why) => converted.refused.push(format!("document {i}: {why}")),
        }
    }
    converted
}

/// One JSON document as BSON, read straight from its text (no `serde_json::Value` between):
/// the event time a date, the event id the `_id`, first.
fn document(text: &[u8], fields: Fields) -> Result<RawDocumentBuf, String> {
    use serde::de::Deserializer as _;
    let mut top = Top {
        fields,
        body: RawDocumentBuf::new(),
        id: None,
    };
    let mut reader = serde_json::Deserializer::from_slice(text);
    let read = reader.deserialize_any(&mut top).and_then(|()| reader.end());
    if let Err(e) = read {
        return Err(match e.classify() {
            serde_json::error::Category::Data => "not a JSON object".into(),
            _ => format!("not JSON ({e})"),
        });
    }
    // `_id` first, as MongoDB keeps it: its element, then the body's elements.
    let mut head = RawDocumentBuf::new();
    if let Some(id) = &top.id {
        head.append_ref("_id", RawBsonRef::String(id));
    }
    let mut bytes = head.into_bytes();
    bytes.pop();
    bytes.extend_from_slice(top.body.as_bytes().get(4..).unwrap_or_default());
    let len = bytes.len();
    let Some(header) = i32::try_from(len).ok().filter(|_| len <= MAX_BSON_BYTES) else {
        return Err(format!(
            "{len} bytes as BSON, above MongoDB's limit of {MAX_BSON_BYTES}"
        ));
    };
    bytes[..4].copy_from_slice(&header.to_le_bytes());
    RawDocumentBuf::from_bytes(bytes).map_err(|e| format!("not BSON ({e})"))
}

/// The top level of a document: its elements go to `body`, its event id to `id`.
struct Top {
    fields: Fields,
    body: RawDocumentBuf,
    id: Option<String>,
}

impl<'de> Visitor<'de> for &mut Top {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let f = self.fields;
        while let Some(key) = map.next_key_seed(Key)? {
            // The event id is the `_id`: a field of that name would be a second one.
            if key == "_id" {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let role = match (key.as_ref(), f.id) {
                (k, _) if k == f.time => Role::Time,
                (k, (id, None)) if k == id => Role::Id,
                (k, (object, Some(id))) if k == object => Role::IdIn(id),
                _ => Role::Plain,
            };
            map.next_value_seed(Put {
                slot: Slot::Key(&mut self.body, &key),
                role,
                id: Some(&mut self.id),
            })?;
        }
        Ok(())
    }
}

/// What a value is to the document.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    Plain,
    /// The event time: a date when it reads as one.
    Time,
    /// The event id.
    Id,
    /// The object holding the event id under this key.
    IdIn(&'static str),
}

/// Where a value goes: under a key of a document, or at the end of an array.
enum Slot<'a> {
    Key(&'a mut RawDocumentBuf, &'a str),
    Item(&'a mut RawArrayBuf),
}

impl Slot<'_> {
    fn put(self, value: RawBsonRef<'_>) {
        match self {
            Slot::Key(doc, key) => doc.append_ref(key, value),
            // Arrays (spans, tags) are small: their items are copied.
            Slot::Item(array) => array.push(value.to_raw_bson()),
        }
    }
}

/// Reads one JSON value into its slot.
struct Put<'a> {
    slot: Slot<'a>,
    role: Role,
    id: Option<&'a mut Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Put<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Put<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.slot.put(RawBsonRef::Null);
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<(), E> {
        self.slot.put(RawBsonRef::Boolean(b));
        Ok(())
    }

    /// The smallest BSON integer that holds it.
    fn visit_i64<E: serde::de::Error>(self, i: i64) -> Result<(), E> {
        self.slot.put(match i32::try_from(i) {
            Ok(small) => RawBsonRef::Int32(small),
            Err(_) => RawBsonRef::Int64(i),
        });
        Ok(())
    }

    /// Above `i64::MAX`: a double.
    fn visit_u64<E: serde::de::Error>(self, u: u64) -> Result<(), E> {
        match i64::try_from(u) {
            Ok(i) => self.visit_i64(i),
            Err(_) => self.visit_f64(u as f64),
        }
    }

    fn visit_f64<E: serde::de::Error>(self, x: f64) -> Result<(), E> {
        self.slot.put(RawBsonRef::Double(x));
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<(), E> {
        if self.role == Role::Time {
            if let Ok(date) = ::mongodb::bson::DateTime::parse_rfc3339_str(s) {
                self.slot.put(RawBsonRef::DateTime(date));
                return Ok(());
            }
        }
        if let (Role::Id, Some(id)) = (self.role, self.id) {
            *id = Some(s.to_string());
        }
        self.slot.put(RawBsonRef::String(s));
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut inner = RawDocumentBuf::new();
        while let Some(key) = map.next_key_seed(Key)? {
            let role = match self.role {
                Role::IdIn(id) if key == id => Role::Id,
                _ => Role::Plain,
            };
            map.next_value_seed(Put {
                slot: Slot::Key(&mut inner, &key),
                role,
                id: self.id.as_deref_mut(),
            })?;
        }
        self.slot.put(RawBsonRef::Document(&inner));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut array = RawArrayBuf::new();
        while seq
            .next_element_seed(Put {
                slot: Slot::Item(&mut array),
                role: Role::Plain,
                id: None,
            })?
            .is_some()
        {}
        self.slot.put(RawBsonRef::Array(&array));
        Ok(())
    }
}

/// A key BSON can hold: without NUL bytes; borrowed from the text when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(match s.contains('\0') {
            true => Cow::Owned(s.replace('\0', "")),
            false => Cow::Borrowed(s),
        })
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.replace('\0', "")))
    }
}

/// `document` for the benchmarks: one JSON document in `format` as the transport stores it.
#[cfg(feature = "internals")]
pub fn bson_document(text: &[u8], format: Format) -> Result<RawDocumentBuf, String> {
    document(text, Fields::of(format))
}

/// What the server said, when its reply has an `errmsg` (a reply the driver cannot read, e.g.
/// without a `code`, otherwise shows only as bytes), else the driver's words.
fn words(e: &MongoError) -> String {
    let said = e
        .server_response()
        .and_then(|r| r.get_str("errmsg").ok())
        .map(str::to_string);
    mask_uri_passwords(&said.unwrap_or_else(|| e.to_string())).into_owned()
}

/// The server's error code, when it gave one.
fn code_of(e: &MongoError) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        _ => None,
    }
}

/// A node as messages show it: its URI without user name or password, nor options.
fn describe(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return mask_uri_passwords(uri).into_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let hosts = &rest[..end];
    let hosts = match hosts.rfind('@') {
        Some(at) => &hosts[at + 1..],
        None => hosts,
    };
    format!("{scheme}://{hosts}")
}

/// The link failed while writing.
fn lost(node: &str, e: &MongoError) -> BrokerError {
    BrokerError::Lost {
        detail: format!("{node}: {}", words(e)),
    }
}

fn refusal(node: &str, e: &MongoError, fix: &str) -> BrokerError {
    BrokerError::Refused {
        broker: node.to_string(),
        detail: words(e),
        fix: fix.to_string(),
    }
}

const LOGIN_FIX: &str = "set the user name and password of `mongodb.uri` (and its \
                         `authSource`, the database the user is defined in) to the server's";

/// What the driver said at `node`, named with its fix.
fn error(node: &str, e: &MongoError) -> BrokerError {
    let detail = words(e);
    match e.kind.as_ref() {
        ErrorKind::Authentication { .. } => refusal(node, e, LOGIN_FIX),
        ErrorKind::InvalidArgument { .. } | ErrorKind::InvalidTlsConfig { .. } => {
            refusal(node, e, "correct `mongodb.uri` and its options")
        }
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::ConnectionPoolCleared { .. } => BrokerError::Unreachable {
            broker: node.to_string(),
            detail,
        },
        _ => match code_of(e) {
            Some(code) if STATE_CHANGE.contains(&code) => lost(node, e),
            // Unauthorized
            Some(13) => refusal(
                node,
                e,
                "grant the user of `mongodb.uri` the readWrite role on `mongodb.database`",
            ),
            // AuthenticationFailed
            Some(18) => refusal(node, e, LOGIN_FIX),
            _ => refusal(node, e, "see MongoDB's words above"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::mongodb::bson::Bson;

    #[test]
    fn collection_names_mongodb_never_takes_are_known_before_asking() {
        assert_eq!(bad_collection_name("logs", "logcollect"), None);
        assert_eq!(bad_collection_name("logs.web-1", "logcollect"), None);
        for bad in ["", "logs$x", "a\0b", "system.profile"] {
            assert!(bad_collection_name(bad, "logcollect").is_some(), "{bad:?}");
        }
        let long = "x".repeat(255 - "logcollect.".len());
        assert_eq!(bad_collection_name(&long, "logcollect"), None);
        assert!(bad_collection_name(&format!("{long}x"), "logcollect").is_some());
    }

    fn ecs() -> Fields {
        Fields::of(Format::Ecs)
    }

    fn parsed(doc: &RawDocumentBuf) -> Document {
        doc.to_document().expect("valid BSON")
    }

    #[test]
    fn a_node_is_shown_without_its_credentials_or_options() {
        assert_eq!(
            describe("mongodb://app:s3cret@db1:27017,db2/?replicaSet=rs"),
            "mongodb://db1:27017,db2"
        );
        assert_eq!(
            describe("mongodb+srv://u:p@cluster.example"),
            "mongodb+srv://cluster.example"
        );
        assert_eq!(
            describe("mongodb://127.0.0.1:27017"),
            "mongodb://127.0.0.1:27017"
        );
    }

    #[test]
    fn the_event_time_is_a_date_and_the_event_id_the_id() {
        let text = br#"{"@timestamp":"2026-11-21T08:53:32.123456Z","message":"m","event":{"id":"abc"},"fields":{"n":7,"big":18446744073709551615,"x":1.5,"ok":true,"none":null,"list":[1,"a",{"b":2}]}}"#;
        let doc = parsed(&document(text, ecs()).expect("converted"));
        assert_eq!(doc.get_str("_id"), Ok("abc"));
        let date = doc.get_datetime("@timestamp").expect("a date");
        assert_eq!(date.timestamp_millis(), 1_795_251_212_123);
        let fields = doc.get_document("fields").expect("fields");
        assert_eq!(fields.get("n"), Some(&Bson::Int32(7)));
        assert_eq!(
            fields.get("big"),
            Some(&Bson::Double(18446744073709551615.0))
        );
        assert_eq!(fields.get("ok"), Some(&Bson::Boolean(true)));
        assert_eq!(fields.get("none"), Some(&Bson::Null));
        let list = fields.get_array("list").expect("list");
        assert_eq!(list.len(), 3);
        assert_eq!(
            doc.get_document("event").and_then(|e| e.get_str("id")),
            Ok("abc")
        );
    }

    #[test]
    fn the_id_comes_first_and_a_field_named_id_is_not_a_second_one() {
        let text = br#"{"_id":"theirs","a\"b":[{"c":null}],"event":{"kind":"x","id":"e-9"}}"#;
        let raw = document(text, ecs()).expect("converted");
        let keys: Vec<&str> = raw.iter().map(|e| e.expect("element").0).collect();
        assert_eq!(keys, ["_id", "a\"b", "event"]);
        let doc = parsed(&raw);
        assert_eq!(doc.get_str("_id"), Ok("e-9"));
        assert_eq!(
            doc.get_array("a\"b").map(|a| a.len()),
            Ok(1),
            "an escaped key, an array of an object"
        );
        assert!(document(br#"{"a":1} trailing"#, ecs()).is_err());
        assert!(document(br#"{"a":"#, ecs()).is_err());
    }

    #[test]
    fn an_unparsable_time_stays_a_string_and_classic_keeps_its_names() {
        let text = br#"{"@timestamp":"yesterday","event_id":"e-1","levelname":"INFO"}"#;
        let doc = parsed(&document(text, Fields::of(Format::Classic)).expect("converted"));
        assert_eq!(doc.get_str("@timestamp"), Ok("yesterday"));
        assert_eq!(doc.get_str("_id"), Ok("e-1"));
        assert_eq!(doc.get_str("event_id"), Ok("e-1"));
    }

    #[test]
    fn a_key_with_a_nul_byte_is_stored_without_it_and_a_non_object_is_refused() {
        let doc = parsed(&document(br#"{"a\u0000b":1}"#, ecs()).expect("converted"));
        assert_eq!(doc.get("ab"), Some(&Bson::Int32(1)));
        let converted = documents(br#"[{"a":1},2,{"b":2}]"#, &[], ecs());
        assert_eq!(converted.docs.len(), 2);
        assert_eq!(converted.refused.len(), 1, "{:?}", converted.refused);
    }

    fn settings(format: Format, expire_after: Duration) -> Settings {
        Settings {
            database: "logcollect".into(),
            fields: Fields::of(format),
            capped_bytes: 0,
            capped_max: 0,
            expire_after,
            write_concern: DriverWriteConcern::majority(),
            prepared: Mutex::new(HashSet::new()),
        }
    }

    fn shown(models: &[IndexModel]) -> Vec<(String, Document, Option<Duration>)> {
        models
            .iter()
            .map(|m| {
                let options = m.options.clone().unwrap_or_default();
                (
                    options.name.unwrap_or_default(),
                    m.keys.clone(),
                    options.expire_after,
                )
            })
            .collect()
    }

    #[test]
    fn the_indexes_are_named_and_the_time_index_expires_documents_when_set() {
        let week = Duration::from_secs(7 * 86_400);
        assert_eq!(
            shown(&index_models(&settings(Format::Ecs, week))),
            [
                (
                    "logcollect_time".into(),
                    doc! { "@timestamp": 1 },
                    Some(week)
                ),
                (
                    "logcollect_service_time".into(),
                    doc! { "service.name": 1, "@timestamp": 1 },
                    None
                ),
                (
                    "logcollect_level_time".into(),
                    doc! { "log.level": 1, "@timestamp": 1 },
                    None
                ),
            ]
        );
        let classic = shown(&index_models(&settings(Format::Classic, Duration::ZERO)));
        assert_eq!(classic[0].2, None, "no TTL unless set");
        assert_eq!(classic[1].1, doc! { "application": 1, "@timestamp": 1 });
        assert_eq!(classic[2].1, doc! { "levelname": 1, "@timestamp": 1 });
    }

    #[test]
    fn an_array_body_is_cut_at_the_packers_offsets_or_parsed() {
        let body = br#"[{"a":1},{"b":[2,3]}]"#;
        for ends in [&[][..], &[8, 20], &[8, 99]] {
            let converted = documents(body, ends, ecs());
            assert_eq!(converted.docs.len(), 2, "{ends:?}");
            assert!(converted.refused.is_empty());
        }
    }
}
