//! MongoDB's ceiling for logcollect's traffic: the plain driver inserting the documents
//! `loadgen` ships (its event, encoded by the crate's own encoder, made BSON before the clock
//! starts: `@timestamp` a date, `_id` a fresh event id, `seq_no` counting), as many per
//! unordered `insert_many` as the shipper's batch, with the shipper's write concern and as
//! many inserts in flight as its writer has (one) — no capture, no encoding, no JSON → BSON
//! conversion, no queue. Run it and `loadgen` with `LOGCOLLECT_TRANSPORT=mongodb` back to back
//! against the same server (BENCHMARKS.md, "MongoDB as the transport").
//!
//! ```text
//! cargo run --release --example mongodb_ceiling -- --events 100000 [--batch 256] [--in-flight 1]
//!     [--write-concern majority|1] [--uri mongodb://127.0.0.1:27017] [--database logcollect]
//!     [--collection ceiling]
//! ```
//!
//! The collection is dropped before and after the run; the documents in it are counted
//! before it is dropped (the run fails unless all of them are there).
//!
//! `--verify COLLECTION --expect N` inserts nothing: it reads the collection loadgen filled
//! (`mongodb.collection`, default `logs`) and says how many documents, distinct `_id`s and
//! distinct `fields.seq_no` in 0..N it holds, and whether each is N (exit code 0 only then);
//! `--drop` then drops it.

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures_util::stream::{self, TryStreamExt};
use logcollect::internals::{
    encode, event_id, CapturedEvent, Envelope, FieldValue, Identity, SpanSnapshot,
};
use logcollect::Format;
use mongodb::bson::{doc, Bson, DateTime, Document, RawDocumentBuf};
use mongodb::options::{ClientOptions, CollectionOptions, WriteConcern};
use mongodb::{Client, Collection};

struct Args {
    events: u64,
    batch: u64,
    in_flight: usize,
    majority: bool,
    uri: String,
    database: String,
    collection: String,
    verify: Option<String>,
    expect: u64,
    drop: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        events: 100_000,
        batch: logcollect::defaults::BATCH_MAX_EVENTS as u64,
        in_flight: 1,
        majority: true,
        uri: "mongodb://127.0.0.1:27017".into(),
        database: "logcollect".into(),
        collection: "ceiling".into(),
        verify: None,
        expect: 0,
        drop: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|_| format!("`{v}`: not a number"));
        match flag.as_str() {
            "--events" => a.events = number(value()?)?,
            "--batch" => a.batch = number(value()?)?.max(1),
            "--in-flight" => a.in_flight = number(value()?)?.clamp(1, 1024) as usize,
            "--write-concern" => {
                a.majority = match value()?.as_str() {
                    "majority" => true,
                    "1" => false,
                    other => return Err(format!("--write-concern `{other}`: majority or 1")),
                }
            }
            "--uri" => a.uri = value()?,
            "--database" => a.database = value()?,
            "--collection" => a.collection = value()?,
            "--verify" => a.verify = Some(value()?),
            "--expect" => a.expect = number(value()?)?,
            "--drop" => a.drop = true,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(a)
}

/// loadgen's event (`info!(seq_no, worker, payload, "load event")` in span `loadgen_batch`).
fn loadgen_event(seq_no: u64) -> CapturedEvent {
    CapturedEvent {
        timestamp: SystemTime::now(),
        level: tracing::Level::INFO,
        target: "loadgen".into(),
        module_path: Some("loadgen".into()),
        file: Some("tools/loadgen.rs".into()),
        line: Some(134),
        thread_name: None,
        thread_id: 2,
        message: "load event".into(),
        fields: vec![
            ("seq_no", FieldValue::U64(seq_no)),
            ("worker", FieldValue::U64(0)),
            ("payload", FieldValue::Str("x".repeat(64))),
        ],
        spans: vec![Arc::new(SpanSnapshot {
            name: "loadgen_batch",
            fields: vec![("worker", FieldValue::U64(0))],
        })],
        trace: Some(logcollect::trace::SpanContext::new_root().ids()),
    }
}

/// loadgen's document `seq_no` as the shipper stores it, made with the plain `bson` API.
fn document(identity: &Identity, seq_no: u64) -> Result<RawDocumentBuf, String> {
    let event = loadgen_event(seq_no);
    let id = event_id(&event);
    let envelope = Envelope {
        id,
        identity,
        max_field_bytes: 1 << 20,
    };
    let json: serde_json::Value = serde_json::from_slice(&encode(Format::Ecs, &event, &envelope))
        .map_err(|e| format!("the encoder's document: {e}"))?;
    let mut doc: Document =
        mongodb::bson::to_document(&json).map_err(|e| format!("as BSON: {e}"))?;
    let time = doc
        .get_str("@timestamp")
        .ok()
        .and_then(|t| DateTime::parse_rfc3339_str(t).ok())
        .ok_or("the document has no @timestamp")?;
    doc.insert("@timestamp", time);
    let mut with_id = doc! { "_id": Bson::String(id.to_string()) };
    with_id.extend(doc);
    RawDocumentBuf::from_document(&with_id).map_err(|e| format!("as raw BSON: {e}"))
}

async fn client(a: &Args) -> Result<Client, String> {
    let mut options = ClientOptions::parse(&a.uri)
        .await
        .map_err(|e| e.to_string())?;
    options.retry_writes = Some(false);
    Client::with_options(options).map_err(|e| e.to_string())
}

/// Documents, distinct `_id`s and distinct `fields.seq_no` below `a.expect` in `collection`.
async fn verify(a: &Args, collection: &str) -> Result<(u64, usize, usize), String> {
    let client = client(a).await?;
    let coll: Collection<Document> = client.database(&a.database).collection(collection);
    let mut cursor = coll.find(doc! {}).await.map_err(|e| e.to_string())?;
    let (mut docs, mut ids, mut seqs) = (0u64, HashSet::new(), HashSet::new());
    while cursor.advance().await.map_err(|e| e.to_string())? {
        let d = cursor.deserialize_current().map_err(|e| e.to_string())?;
        docs += 1;
        ids.insert(d.get("_id").map(ToString::to_string).unwrap_or_default());
        let seq = match d.get_document("fields").ok().and_then(|f| f.get("seq_no")) {
            Some(Bson::Int32(n)) => u64::try_from(*n).ok(),
            Some(Bson::Int64(n)) => u64::try_from(*n).ok(),
            _ => None,
        };
        if let Some(seq) = seq.filter(|s| *s < a.expect) {
            seqs.insert(seq);
        }
    }
    // `shutdown` waits for every cursor to be gone.
    drop(cursor);
    if a.drop {
        coll.drop().await.map_err(|e| e.to_string())?;
    }
    client.shutdown().await;
    Ok((docs, ids.len(), seqs.len()))
}

async fn run(a: &Args) -> Result<(f64, usize, u64), String> {
    let identity = Identity::detect(BTreeMap::new(), None, false, Some("loadgen".into()));
    let mut batches: Vec<Vec<RawDocumentBuf>> = Vec::new();
    let mut bytes = 0;
    for seq_no in 0..a.events {
        if seq_no % a.batch == 0 {
            batches.push(Vec::with_capacity(a.batch as usize));
        }
        let doc = document(&identity, seq_no)?;
        bytes += doc.as_bytes().len();
        batches.last_mut().ok_or("no batch")?.push(doc);
    }
    let doc_bytes = bytes / (a.events.max(1) as usize);

    let client = client(a).await?;
    let db = client.database(&a.database);
    let concern = if a.majority {
        WriteConcern::majority()
    } else {
        WriteConcern::nodes(1)
    };
    let coll: Collection<RawDocumentBuf> = db.collection_with_options(
        &a.collection,
        CollectionOptions::builder().write_concern(concern).build(),
    );
    coll.drop().await.map_err(|e| e.to_string())?;
    db.create_collection(&a.collection)
        .await
        .map_err(|e| e.to_string())?;

    let start = Instant::now();
    stream::iter(batches.iter().map(Ok))
        .try_for_each_concurrent(a.in_flight, |batch| {
            let coll = coll.clone();
            async move {
                coll.insert_many(batch)
                    .ordered(false)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .await?;
    let elapsed = start.elapsed().as_secs_f64();

    let stored = coll
        .count_documents(doc! {})
        .await
        .map_err(|e| e.to_string())?;
    coll.drop().await.map_err(|e| e.to_string())?;
    client.shutdown().await;
    Ok((elapsed, doc_bytes, stored))
}

fn main() -> ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mongodb_ceiling: {e}");
            return ExitCode::from(2);
        }
    };
    // One thread: the driver's tasks and the inserts, as on the shipper's I/O thread.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mongodb_ceiling: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(collection) = &a.verify {
        return match runtime.block_on(verify(&a, collection)) {
            Ok((docs, ids, seqs)) => {
                let ok = docs == a.expect && ids as u64 == a.expect && seqs as u64 == a.expect;
                println!(
                    "mongodb_ceiling verify collection={collection} documents={docs} \
                     distinct_ids={ids} distinct_seq_no={seqs} expected={} ok={ok}",
                    a.expect
                );
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("mongodb_ceiling: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(run(&a)) {
        Ok((secs, doc_bytes, stored)) => {
            println!(
                "mongodb_ceiling events={} batch={} in_flight={} write_concern={} \
                 bson_doc_bytes={doc_bytes} stored={stored} total_s={secs:.3} events_per_s={:.0}",
                a.events,
                a.batch,
                a.in_flight,
                if a.majority { "majority" } else { "1" },
                a.events as f64 / secs.max(1e-9)
            );
            if stored == a.events {
                ExitCode::SUCCESS
            } else {
                eprintln!("mongodb_ceiling: {stored} documents stored of {}", a.events);
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("mongodb_ceiling: {e}");
            ExitCode::FAILURE
        }
    }
}
