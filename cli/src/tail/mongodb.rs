//! `tail --from mongodb://…`: the documents written to a collection after tail starts.
//!
//! On a capped collection, a tailable await cursor follows the insertions; on any other, the
//! collection is polled in (`@timestamp`, `_id`) order from the newest document at start, a
//! bounded batch at a time (the shipper's `logcollect_time` index serves the sort). Nothing
//! is written to the server.

use std::future::IntoFuture;
use std::io::Write;
use std::time::Duration;

use logcollect::{mask_uri_passwords, Config};
use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::options::{ClientOptions, CursorType};
use mongodb::{Client, Collection};

use super::{output, show_documents, TailArgs};
use crate::exit;
use crate::json::Json;
use crate::render::{self, Filters};

/// Documents per query (polling) or per batch (tailable cursor).
const BATCH: u32 = 500;
/// How long a poll that found nothing waits before the next.
const POLL: Duration = Duration::from_millis(500);
/// A document larger than this is named on standard error, not converted nor printed.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Where the documents shown so far end: the largest (`@timestamp`, `_id`) seen.
type Key = Option<(Bson, Bson)>;

pub async fn tail(uri: &str, config: &Config, args: &TailArgs, filters: &Filters) -> u8 {
    let shown_uri = mask_uri_passwords(uri).into_owned();
    let say = |e: &dyn std::fmt::Display| mask_uri_passwords(&e.to_string()).into_owned();
    let name = match args.keys.as_slice() {
        [] if config.mongodb.collection.contains('{') => {
            eprintln!(
                "logcollect tail: mongodb.collection `{}` is a template: name the collection \
                 with --key",
                config.mongodb.collection
            );
            return exit::USAGE;
        }
        [] => config.mongodb.collection.clone(),
        [k] => k.clone(),
        _ => {
            eprintln!("logcollect tail: --from mongodb:// reads one collection: give --key once");
            return exit::USAGE;
        }
    };
    let timeout = config.connect_timeout.max(Duration::from_millis(100));
    let mut options = match tokio::time::timeout(timeout, ClientOptions::parse(uri)).await {
        Ok(Ok(options)) => options,
        Ok(Err(e)) => {
            eprintln!("logcollect tail: --from {shown_uri}: {}", say(&e));
            return exit::USAGE;
        }
        Err(_) => {
            eprintln!("logcollect tail: --from {shown_uri}: no DNS answer within {timeout:?}");
            return exit::FAILED;
        }
    };
    options.server_selection_timeout = Some(timeout);
    options.connect_timeout = Some(timeout);
    options.app_name = Some("logcollect tail".into());
    let client = match Client::with_options(options) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("logcollect tail: --from {shown_uri}: {}", say(&e));
            return exit::USAGE;
        }
    };
    let db = client.database(&config.mongodb.database);
    let full = format!("{}.{name}", config.mongodb.database);
    let coll: Collection<RawDocumentBuf> = db.collection(&name);
    let start = async {
        let listed = db
            .run_command(doc! { "listCollections": 1, "filter": { "name": &name } })
            .await?;
        let capped = listed
            .get_document("cursor")
            .and_then(|c| c.get_array("firstBatch"))
            .ok()
            .and_then(|b| {
                b.iter()
                    .filter_map(Bson::as_document)
                    .find(|c| c.get_str("name") == Ok(name.as_str()))
            })
            .and_then(|i| i.get_document("options").ok())
            .is_some_and(|o| o.get_bool("capped") == Ok(true));
        let newest = coll
            .find_one(doc! {})
            .sort(doc! { "@timestamp": -1, "_id": -1 })
            .projection(doc! { "@timestamp": 1 })
            .await?;
        let newest = newest.and_then(|d| d.to_document().ok());
        Ok::<_, mongodb::error::Error>((capped, newest.as_ref().and_then(key_of)))
    };
    let (capped, mut last) = match tokio::time::timeout(timeout.saturating_mul(2), start).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            eprintln!("logcollect tail: {full} on {shown_uri}: {}", say(&e));
            eprintln!("  (`logcollect check` walks the whole path)");
            return exit::FAILED;
        }
        Err(_) => {
            eprintln!("logcollect tail: {shown_uri} did not answer within {timeout:?}");
            return exit::FAILED;
        }
    };
    let how = if capped {
        "a tailable cursor on the capped collection"
    } else {
        "polling by @timestamp and _id"
    };
    eprintln!("logcollect tail: listening on collection `{full}` of {shown_uri} ({how})");
    let (mut out, color) = output(args);
    let mut shown = 0u64;
    if args.count == Some(0) {
        return exit::OK;
    }
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    // A whole batch of documents already shown (as many with one @timestamp): the next query
    // pages through that time by _id.
    let mut stuck = false;
    loop {
        let mut find = coll
            .find(after(&last, stuck))
            .batch_size(BATCH)
            .max_time(timeout.saturating_mul(2));
        find = if capped {
            find.cursor_type(CursorType::TailableAwait)
                .max_await_time(Duration::from_secs(1))
        } else {
            find.sort(doc! { "@timestamp": 1, "_id": 1 })
                .limit(i64::from(BATCH))
        };
        let opened = tokio::select! {
            _ = &mut interrupt => return exit::INTERRUPTED,
            c = find.into_future() => c,
        };
        let mut cursor = match opened {
            Ok(cursor) => cursor,
            Err(e) => return lost(&full, &shown_uri, &e),
        };
        let mut read = 0u32;
        let mut new = false;
        loop {
            let next = tokio::select! {
                _ = &mut interrupt => return exit::INTERRUPTED,
                n = cursor.advance() => n,
            };
            match next {
                Ok(true) => {}
                // A tailable cursor dies when the collection is empty or its place was
                // overwritten: opened again after the last document seen.
                Ok(false) => break,
                Err(e) => return lost(&full, &shown_uri, &e),
            }
            read += 1;
            let raw = cursor.current();
            // Those up to the last one shown come again (`$gte`): skipped.
            match Document::try_from(raw).ok().as_ref().and_then(key_of) {
                Some(key) if later(&key, &last) => last = Some(key),
                _ => continue,
            }
            new = true;
            let Some(doc) = document(raw.as_bytes()) else {
                let id = raw.get("_id").ok().flatten().map(|v| format!("{v:?}"));
                eprintln!(
                    "logcollect tail: a document of `{full}` ({} bytes, _id {}) is above 1 MiB \
                     or not readable: not shown",
                    raw.as_bytes().len(),
                    render::escape(&id.unwrap_or_else(|| "-".into()))
                );
                continue;
            };
            match show_documents(&mut out, vec![doc], None, args, filters, color, &mut shown) {
                Ok(false) => {}
                Ok(true) => {
                    let _ = out.flush();
                    return exit::OK;
                }
                Err(_) => return exit::OK,
            }
            if !capped && out.flush().is_err() {
                return exit::OK;
            }
        }
        if out.flush().is_err() {
            return exit::OK;
        }
        stuck = !capped && read == BATCH && !new;
        if capped || read < BATCH {
            tokio::select! {
                _ = &mut interrupt => return exit::INTERRUPTED,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

fn lost(full: &str, shown_uri: &str, e: &mongodb::error::Error) -> u8 {
    eprintln!(
        "logcollect tail: reading `{full}` on {shown_uri} failed: {}",
        mask_uri_passwords(&e.to_string())
    );
    eprintln!("  (`logcollect check` walks the whole path)");
    exit::FAILED
}

/// A document's (`@timestamp`, `_id`).
fn key_of(doc: &Document) -> Option<(Bson, Bson)> {
    Some((doc.get("@timestamp")?.clone(), doc.get("_id")?.clone()))
}

/// Whether `key` comes after `last` (dates and strings, as the server orders them).
fn later(key: &(Bson, Bson), last: &Key) -> bool {
    let Some((time, id)) = last else {
        return true;
    };
    let order = |a: &Bson, b: &Bson| match (a, b) {
        (Bson::DateTime(a), Bson::DateTime(b)) => a.cmp(b),
        (Bson::String(a), Bson::String(b)) => a.cmp(b),
        _ => std::cmp::Ordering::Equal,
    };
    order(&key.0, time).then_with(|| order(&key.1, id)) == std::cmp::Ordering::Greater
}

/// The documents from the time of `last` on (those up to `last` itself are skipped as they
/// come: `$gte` and one `$or` less, which nx-27017 answers as MongoDB does); those of its time
/// after its `_id` when `stuck`; all with a time when there was none.
fn after(last: &Key, stuck: bool) -> Document {
    match last {
        None => doc! { "@timestamp": { "$exists": true }, "_id": { "$exists": true } },
        Some((time, id)) if stuck => {
            doc! { "@timestamp": time.clone(), "_id": { "$gt": id.clone() } }
        }
        Some((time, _)) => doc! { "@timestamp": { "$gte": time.clone() } },
    }
}

/// A stored document as tail renders it: dates as RFC 3339 text, `_id` left out when it is the
/// event id (the shipper's). `None` above [`MAX_DOCUMENT_BYTES`].
fn document(bytes: &[u8]) -> Option<Json> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return None;
    }
    let doc = Document::from_reader(bytes).ok()?;
    let event_id = doc
        .get_document("event")
        .and_then(|e| e.get_str("id"))
        .or_else(|_| doc.get_str("event_id"))
        .ok()
        .map(str::to_string);
    let entries = doc
        .into_iter()
        .filter(|(k, v)| {
            !(k.as_str() == "_id"
                && matches!((v, &event_id), (Bson::String(id), Some(e)) if id == e))
        })
        .map(|(k, v)| (k, json(v)))
        .collect();
    Some(Json::Object(entries))
}

fn json(value: Bson) -> Json {
    match value {
        Bson::Null | Bson::Undefined => Json::Null,
        Bson::Boolean(b) => Json::Bool(b),
        Bson::Int32(n) => Json::Number(n.into()),
        Bson::Int64(n) => Json::Number(n.into()),
        Bson::Double(n) => serde_json::Number::from_f64(n)
            .map(Json::Number)
            .unwrap_or_else(|| Json::String(n.to_string())),
        Bson::String(s) => Json::String(s),
        Bson::DateTime(t) => Json::String(
            t.try_to_rfc3339_string()
                .unwrap_or_else(|_| t.timestamp_millis().to_string()),
        ),
        Bson::ObjectId(id) => Json::String(id.to_hex()),
        Bson::Array(items) => Json::Array(items.into_iter().map(json).collect()),
        Bson::Document(d) => Json::Object(d.into_iter().map(|(k, v)| (k, json(v))).collect()),
        other => from_value(other.into_relaxed_extjson()),
    }
}

fn from_value(value: serde_json::Value) -> Json {
    use serde_json::Value as V;
    match value {
        V::Null => Json::Null,
        V::Bool(b) => Json::Bool(b),
        V::Number(n) => Json::Number(n),
        V::String(s) => Json::String(s),
        V::Array(items) => Json::Array(items.into_iter().map(from_value).collect()),
        V::Object(map) => Json::Object(map.into_iter().map(|(k, v)| (k, from_value(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::DateTime;

    #[test]
    fn a_stored_document_renders_with_its_date_as_text_and_without_the_event_id_as_id() {
        let stored = doc! {
            "_id": "e-1",
            "@timestamp": DateTime::from_millis(1_795_251_212_123),
            "message": "m\u{1b}[31m",
            "event": { "id": "e-1" },
            "fields": { "n": 7_i64, "x": 1.5, "none": Bson::Null, "list": [1, "a"] },
        };
        let mut bytes = Vec::new();
        stored.to_writer(&mut bytes).expect("BSON");
        let Some(Json::Object(entries)) = document(&bytes) else {
            panic!("an object");
        };
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["@timestamp", "message", "event", "fields"]);
        assert_eq!(
            entries[0].1,
            Json::String("2026-11-21T08:53:32.123Z".into())
        );
        let doc = Json::Object(entries);
        assert_eq!(
            doc.to_string(),
            r#"{"@timestamp":"2026-11-21T08:53:32.123Z","message":"m\u001b[31m","event":{"id":"e-1"},"fields":{"n":7,"x":1.5,"none":null,"list":[1,"a"]}}"#
        );
    }

    #[test]
    fn another_id_is_kept_and_a_large_document_is_not_converted() {
        let mut bytes = Vec::new();
        doc! { "_id": 5, "message": "m" }
            .to_writer(&mut bytes)
            .expect("BSON");
        assert_eq!(
            document(&bytes).map(|d| d.to_string()),
            Some(r#"{"_id":5,"message":"m"}"#.to_string())
        );
        let mut big = Vec::new();
        doc! { "message": "x".repeat(MAX_DOCUMENT_BYTES) }
            .to_writer(&mut big)
            .expect("BSON");
        assert_eq!(document(&big), None);
    }

    #[test]
    fn keys_are_ordered_by_time_then_id() {
        let t = |ms| Bson::DateTime(DateTime::from_millis(ms));
        let s = |v: &str| Bson::String(v.into());
        assert!(later(&(t(2), s("a")), &Some((t(1), s("z")))));
        assert!(later(&(t(1), s("b")), &Some((t(1), s("a")))));
        assert!(!later(&(t(1), s("a")), &Some((t(1), s("a")))));
        assert!(!later(&(t(0), s("z")), &Some((t(1), s("a")))));
        assert!(later(&(t(0), s("a")), &None));
    }
}
