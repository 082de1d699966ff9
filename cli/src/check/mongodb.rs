//! `check` with `transport = mongodb`: each host of `mongodb.uri` answers and lets us in, the
//! collection has the configured options (capped size and count, or none) and the named
//! indexes (the time index expiring documents with `mongodb.expire_after_ms`), and a test
//! document is inserted as the shipper inserts it and read back.
//!
//! A collection that does not exist yet is created as the shipper creates it, and missing
//! indexes are made as it makes them: inserting the test document into a missing collection
//! would create it without its options, and the shipper uses an existing collection as it is.

use std::time::Duration;

use logcollect::{mask_uri_passwords, Config, Format, MongoWriteConcern, Probe};
use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::error::{Error as MongoError, ErrorKind};
use mongodb::options::{ClientOptions, IndexOptions, ServerAddress, WriteConcern};
use mongodb::{Client, Database, IndexModel};

use super::{CheckArgs, Report};
use crate::diagnose::{Diagnosis, NodeResult};

/// The index names the shipper gives (src/transport/mongodb.rs, docs/formats.md).
const TIME_INDEX: &str = "logcollect_time";
const SERVICE_INDEX: &str = "logcollect_service_time";
const LEVEL_INDEX: &str = "logcollect_level_time";

const LOGIN_FIX: &str = "set the user name and password of `mongodb.uri` (and its \
                         `authSource`, the database the user is defined in) to the server's";

/// The steps; `Err` at the first break. Every host is connected and logged in on its own (a
/// host that fails is reported and the next tried); then the collection, its indexes and the
/// test document go through the client of the whole URI, as the shipper's do.
pub async fn walk(config: &Config, args: &CheckArgs, report: &mut Report) -> Result<(), Diagnosis> {
    let m = &config.mongodb;
    let timeout = config.connect_timeout.max(Duration::from_millis(100));
    let shown = mask_uri_passwords(&m.uri).into_owned();
    let mut options = match tokio::time::timeout(timeout, ClientOptions::parse(&m.uri)).await {
        Ok(Ok(options)) => options,
        Ok(Err(e)) => {
            return Err(Diagnosis {
                step: "config",
                code: "uri_invalid",
                headline: format!("`mongodb.uri` ({shown}) cannot be used"),
                detail: words(&e),
                fix: "correct `mongodb.uri` (for mongodb+srv://, its DNS SRV and TXT records)"
                    .into(),
            })
        }
        Err(_) => return Err(super::step_timeout("config", "DNS SRV lookup", timeout)),
    };
    options.server_selection_timeout = Some(timeout);
    options.connect_timeout = Some(timeout);
    options.retry_writes = Some(false);
    options.app_name = Some("logcollect check".into());
    let probe = Probe::new(config, &args.logger, "logcollect check: test event");
    let collection = probe.routing_key.clone();
    let hosts: Vec<String> = options.hosts.iter().map(ServerAddress::to_string).collect();
    let several = hosts.len() > 1;
    let order = if several {
        format!(" ({} hosts)", hosts.len())
    } else {
        String::new()
    };
    report.ok(
        "config",
        format!(
            "mongodb {}{order}, collection `{}.{collection}` ({}), write concern {}, format {}",
            hosts.join(", "),
            m.database,
            retention(config),
            m.write_concern.as_str(),
            config.format.as_str()
        ),
    );

    // Each host on its own: it answers, and lets the URI's user in.
    let mut answering = 0;
    for (i, host) in options.hosts.iter().enumerate() {
        report.node = several.then_some(i + 1);
        let outcome = host_steps(&options, host, timeout, report).await;
        report.node = None;
        match outcome {
            Ok(()) => {
                answering += 1;
                if several {
                    report.nodes.push(NodeResult {
                        broker: host.to_string(),
                        failure: None,
                    });
                }
            }
            Err(d) if !several => return Err(d),
            Err(d) => {
                report.failed_node(i + 1, &d);
                report.nodes.push(NodeResult {
                    broker: host.to_string(),
                    failure: Some(d),
                });
            }
        }
    }
    if answering == 0 {
        return Err(hosts_down(&report.nodes, true));
    }

    let client = Client::with_options(options).map_err(|e| failure("connect", &e))?;
    let db = client.database(&m.database);
    let result = on_the_server(config, &db, &probe, timeout, report).await;
    client.shutdown().immediate(true).await;
    result?;
    if several {
        if answering < hosts.len() {
            return Err(hosts_down(&report.nodes, false));
        }
        report.ok("nodes", format!("all {} hosts answer", hosts.len()));
    }
    Ok(())
}

/// Hosts of `mongodb.uri` that do not answer: all of them, or some.
fn hosts_down(nodes: &[NodeResult], all: bool) -> Diagnosis {
    let down: Vec<(usize, &NodeResult, &Diagnosis)> = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| Some((i + 1, n, n.failure.as_ref()?)))
        .collect();
    let detail = down
        .iter()
        .map(|(i, n, f)| {
            format!(
                "host {i} {}: {} ({}): {}",
                n.broker, f.headline, f.code, f.detail
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let fix = down
        .first()
        .map(|(_, _, f)| f.fix.clone())
        .unwrap_or_default();
    if all {
        Diagnosis {
            step: "nodes",
            code: "no_node_answers",
            headline: format!(
                "none of the {} hosts of `mongodb.uri` answers: nothing can be delivered",
                nodes.len()
            ),
            detail,
            fix,
        }
    } else {
        Diagnosis {
            step: "nodes",
            code: "node_unreachable",
            headline: format!(
                "{} of {} hosts of `mongodb.uri` do not answer; the test document got through",
                down.len(),
                nodes.len()
            ),
            detail,
            fix: format!("a replica set missing members may lose its majority: {fix}; or remove the host from `mongodb.uri`"),
        }
    }
}

/// What the configuration keeps, in words.
fn retention(config: &Config) -> String {
    let m = &config.mongodb;
    if m.capped_bytes > 0 {
        let max = if m.capped_max > 0 {
            format!(", at most {} documents", m.capped_max)
        } else {
            String::new()
        };
        format!("capped at {} bytes{max}", m.capped_bytes)
    } else if !m.expire_after.is_zero() {
        format!(
            "documents expire {} s after their time",
            m.expire_after.as_secs()
        )
    } else {
        "not capped, kept".into()
    }
}

/// One host: `hello` without credentials, then a `ping` as the URI's user.
async fn host_steps(
    options: &ClientOptions,
    host: &ServerAddress,
    timeout: Duration,
    report: &mut Report,
) -> Result<(), Diagnosis> {
    let mut one = options.clone();
    one.hosts = vec![host.clone()];
    one.direct_connection = Some(true);
    let credential = one.credential.take();
    let client = Client::with_options(one.clone()).map_err(|e| failure("connect", &e))?;
    let hello = bounded(
        timeout,
        "connect",
        client.database("admin").run_command(doc! { "hello": 1 }),
    )
    .await;
    client.shutdown().immediate(true).await;
    let at = |step, e: &MongoError| {
        let mut d = failure(step, e);
        d.headline = format!("{host}: {}", d.headline);
        d
    };
    let hello = hello?.map_err(|e| at("connect", &e))?;
    let role = if hello.get_bool("isWritablePrimary") == Ok(true)
        || hello.get_bool("ismaster") == Ok(true)
    {
        "primary"
    } else if hello.get_bool("secondary") == Ok(true) {
        "secondary"
    } else {
        "not writable"
    };
    let set = match hello.get_str("setName") {
        Ok(set) => format!(" of replica set `{set}`"),
        Err(_) if hello.get_str("msg") == Ok("isdbgrid") => " (mongos)".into(),
        Err(_) => String::new(),
    };
    report.ok("connect", format!("{host} answers: {role}{set}"));

    let Some(credential) = credential else {
        report.skip(
            "login",
            "no user in `mongodb.uri`: the server is used without logging in".into(),
        );
        return Ok(());
    };
    let user = credential.username.clone().unwrap_or_default();
    let source = credential
        .source
        .clone()
        .or_else(|| options.default_database.clone())
        .unwrap_or_else(|| "admin".into());
    one.credential = Some(credential);
    let client = Client::with_options(one).map_err(|e| failure("login", &e))?;
    let ping = bounded(
        timeout,
        "login",
        client.database("admin").run_command(doc! { "ping": 1 }),
    )
    .await;
    client.shutdown().immediate(true).await;
    ping?.map_err(|e| at("login", &e))?;
    report.ok(
        "login",
        format!("logged in as `{user}` (defined in database `{source}`)"),
    );
    Ok(())
}

/// The collection, its indexes, the test document.
async fn on_the_server(
    config: &Config,
    db: &Database,
    probe: &Probe,
    timeout: Duration,
    report: &mut Report,
) -> Result<(), Diagnosis> {
    let m = &config.mongodb;
    let name = probe.routing_key.as_str();
    let full = format!("{}.{name}", m.database);
    let listed = bounded(
        timeout,
        "collection",
        db.run_command(doc! { "listCollections": 1, "filter": { "name": name } }),
    )
    .await?
    .map_err(|e| failure("collection", &e))?;
    // Looked for by name in the answer: a server may answer more than the filter asks.
    let info = listed
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .ok()
        .and_then(|b| {
            b.iter()
                .filter_map(Bson::as_document)
                .find(|c| c.get_str("name") == Ok(name))
        })
        .cloned();
    match info {
        None => {
            let mut create = db.create_collection(name);
            if m.capped_bytes > 0 {
                create = create.capped(true).size(m.capped_bytes);
                if m.capped_max > 0 {
                    create = create.max(m.capped_max);
                }
            }
            bounded(timeout, "collection", create)
                .await?
                .map_err(|e| failure("collection", &e))?;
            report.ok(
                "collection",
                format!(
                    "`{full}` did not exist: created as the shipper creates it ({})",
                    retention(config)
                ),
            );
        }
        Some(info) => report.ok("collection", collection_options(config, &full, &info)?),
    }
    indexes(config, db, name, timeout, report).await?;

    // A real document, inserted as the shipper inserts it, then read back.
    let document = test_document(probe)?;
    let concern = match m.write_concern {
        MongoWriteConcern::Primary => WriteConcern::nodes(1),
        _ => WriteConcern::majority(),
    };
    let coll = db.collection_with_options::<Document>(
        name,
        mongodb::options::CollectionOptions::builder()
            .write_concern(concern)
            .build(),
    );
    bounded(timeout, "publish", coll.insert_one(&document))
        .await?
        .map_err(|e| failure("publish", &e))?;
    report.ok(
        "publish",
        format!(
            "the test document (_id = event.id {}) was inserted into `{full}`, acknowledged \
             with write concern {}",
            probe.id,
            m.write_concern.as_str()
        ),
    );
    let found = bounded(
        timeout,
        "seen",
        coll.find_one(doc! { "_id": probe.id.as_str() }),
    )
    .await?
    .map_err(|e| failure("seen", &e))?;
    let Some(found) = found else {
        return Err(Diagnosis {
            step: "seen",
            code: "not_found",
            headline: format!("the test document is not in `{full}`"),
            detail: format!(
                "no document with _id {} after its insert was acknowledged",
                probe.id
            ),
            fix: "a capped collection this small drops documents at once: raise \
                  `mongodb.capped_bytes` (and recreate the collection)"
                .into(),
        });
    };
    let time = match found.get("@timestamp") {
        Some(Bson::DateTime(t)) => t.try_to_rfc3339_string().unwrap_or_default(),
        other => {
            return Err(Diagnosis {
                step: "seen",
                code: "not_a_date",
                headline: "the test document's @timestamp came back as something else than a date"
                    .into(),
                detail: format!("@timestamp: {other:?}"),
                fix: "the collection's validator or a trigger rewrites documents; see the \
                      collection's options"
                    .into(),
            })
        }
    };
    report.ok(
        "seen",
        format!("the test document is in `{full}`, its @timestamp a date ({time})"),
    );
    Ok(())
}

/// The existing collection's options against the configured ones: its summary, or what
/// differs.
fn collection_options(config: &Config, full: &str, info: &Document) -> Result<String, Diagnosis> {
    let m = &config.mongodb;
    if info.get_str("type").is_ok_and(|t| t != "collection") {
        return Err(wrong_options(
            full,
            format!(
                "it is a {}, not a collection",
                info.get_str("type").unwrap_or("?")
            ),
            info,
        ));
    }
    let empty = Document::new();
    let options = info.get_document("options").unwrap_or(&empty);
    let capped = options.get_bool("capped") == Ok(true);
    let size = options.get("size").and_then(number).unwrap_or(0);
    let max = options.get("max").and_then(number).unwrap_or(0);
    let has = if capped {
        let max = if max > 0 {
            format!(", at most {max} documents")
        } else {
            String::new()
        };
        format!("capped at {size} bytes{max}")
    } else {
        "not capped".into()
    };
    let want = m.capped_bytes as i64;
    // The server rounds a capped size up to a multiple of 256 bytes.
    let same_size = size >= want && size - want < 256;
    if m.capped_bytes > 0 && (!capped || !same_size || max != m.capped_max as i64) {
        return Err(wrong_options(
            full,
            format!("it is {has}; the configuration says {}", retention(config)),
            info,
        ));
    }
    if capped && !m.expire_after.is_zero() {
        return Err(wrong_options(
            full,
            format!(
                "it is {has}: a capped collection takes no TTL index, so documents would not \
                 expire after mongodb.expire_after_ms"
            ),
            info,
        ));
    }
    let note = if capped && m.capped_bytes == 0 {
        " (mongodb.capped_bytes is 0: the shipper uses it as it is)"
    } else {
        ""
    };
    Ok(format!("`{full}` exists: {has}{note}"))
}

fn wrong_options(full: &str, why: String, info: &Document) -> Diagnosis {
    Diagnosis {
        step: "collection",
        code: "wrong_options",
        headline: format!("`{full}` is not the collection the configuration asks for"),
        detail: format!("{why} (listCollections: {info})"),
        fix: "the shipper uses an existing collection as it is: drop it (or rename it) so the \
              shipper creates it as configured, or make mongodb.capped_bytes, \
              mongodb.capped_max and mongodb.expire_after_ms say what it is"
            .into(),
    }
}

/// The shipper's indexes: (name, keys, seconds to expire).
fn intended(config: &Config) -> Vec<(&'static str, Document, Option<i64>)> {
    let (service, level) = match config.format {
        Format::Classic => ("application", "levelname"),
        _ => ("service.name", "log.level"),
    };
    let ttl = config.mongodb.expire_after.as_secs();
    vec![
        (
            TIME_INDEX,
            doc! { "@timestamp": 1 },
            (ttl > 0).then_some(ttl as i64),
        ),
        (SERVICE_INDEX, doc! { service: 1, "@timestamp": 1 }, None),
        (LEVEL_INDEX, doc! { level: 1, "@timestamp": 1 }, None),
    ]
}

/// Each named index as intended (a missing one made as the shipper makes it); one with the
/// same name and other keys or expiry fails; one the server refuses to make is a warning, as
/// the shipper reports it and delivers without it.
async fn indexes(
    config: &Config,
    db: &Database,
    name: &str,
    timeout: Duration,
    report: &mut Report,
) -> Result<(), Diagnosis> {
    let listed = bounded(
        timeout,
        "indexes",
        db.run_command(doc! { "listIndexes": name }),
    )
    .await?
    .map_err(|e| failure("indexes", &e))?;
    let existing: Vec<Document> = listed
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .map(|b| b.iter().filter_map(|i| i.as_document().cloned()).collect())
        .unwrap_or_default();
    let mut present = Vec::new();
    let mut made = Vec::new();
    let mut refused = Vec::new();
    let coll = db.collection::<Document>(name);
    for (index, keys, ttl) in intended(config) {
        if let Some(found) = existing.iter().find(|i| i.get_str("name") == Ok(index)) {
            if let Some(want) = differs(found, &keys, ttl) {
                return Err(Diagnosis {
                    step: "indexes",
                    code: "wrong_index",
                    headline: format!("index `{index}` of `{name}` is not the shipper's"),
                    detail: format!("it is {found}; the shipper's is {want}"),
                    fix: format!(
                        "drop it (`db.getCollection(\"{name}\").dropIndex(\"{index}\")`): the \
                         shipper makes it again as configured at its start"
                    ),
                });
            }
            present.push(index);
            continue;
        }
        let options = IndexOptions::builder()
            .name(index.to_string())
            .expire_after(ttl.map(|s| Duration::from_secs(s as u64)))
            .build();
        let model = IndexModel::builder().keys(keys).options(options).build();
        match bounded(timeout, "indexes", coll.create_index(model)).await? {
            Ok(_) => made.push(index),
            Err(e) => refused.push(format!("`{index}`: {}", words(&e))),
        }
    }
    let mut summary = Vec::new();
    if !present.is_empty() {
        summary.push(format!("{} as the shipper makes them", present.join(", ")));
    }
    if !made.is_empty() {
        summary.push(format!(
            "{} made as the shipper makes them",
            made.join(", ")
        ));
    }
    if refused.is_empty() {
        report.ok("indexes", summary.join("; "));
    } else {
        summary.push(format!(
            "refused by the server: {}; the shipper delivers without them (and reports it)",
            refused.join("; ")
        ));
        report.warn("indexes", summary.join("; "));
    }
    Ok(())
}

/// The shipper's index (`keys`, expiring after `ttl` seconds) in words when `found` is
/// another (other keys, in another order, or another expiry); `None` when it is the same.
fn differs(found: &Document, keys: &Document, ttl: Option<i64>) -> Option<String> {
    let empty = Document::new();
    let found_keys = found.get_document("key").unwrap_or(&empty);
    let found_ttl = found.get("expireAfterSeconds").and_then(number);
    let same_keys = found_keys.len() == keys.len()
        && found_keys
            .iter()
            .zip(keys.iter())
            .all(|((a, x), (b, y))| a == b && number(x) == number(y));
    if same_keys && found_ttl == ttl {
        return None;
    }
    Some(match ttl {
        Some(s) => format!("{keys}, expiring after {s} s"),
        None => format!("{keys}, no expiry"),
    })
}

/// The probe as the shipper stores it: `_id` its event id, `@timestamp` a date.
fn test_document(probe: &Probe) -> Result<Document, Diagnosis> {
    let parsed: Document = serde_json::from_slice(&probe.body).map_err(|e| Diagnosis {
        step: "publish",
        code: "encoding",
        headline: "the test document could not be made BSON".into(),
        detail: e.to_string(),
        fix: "report this as a bug of logcollect".into(),
    })?;
    let mut document = doc! { "_id": probe.id.as_str() };
    for (key, value) in parsed {
        let value = match (key.as_str(), value) {
            ("@timestamp", Bson::String(s)) => DateTime::parse_rfc3339_str(&s)
                .map(Bson::DateTime)
                .unwrap_or(Bson::String(s)),
            (_, value) => value,
        };
        document.insert(key, value);
    }
    Ok(document)
}

/// A number of any BSON type, as the server may store it.
fn number(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(n) if n.fract() == 0.0 => Some(*n as i64),
        _ => None,
    }
}

/// A command bounded by the connect timeout (twice it: server selection takes one).
async fn bounded<T>(
    timeout: Duration,
    step: &'static str,
    command: impl std::future::IntoFuture<Output = T>,
) -> Result<T, Diagnosis> {
    tokio::time::timeout(timeout.saturating_mul(2), command.into_future())
        .await
        .map_err(|_| super::step_timeout(step, "MongoDB", timeout))
}

/// What the server said (`errmsg`), else the driver's words; never a password.
fn words(e: &MongoError) -> String {
    let said = e
        .server_response()
        .and_then(|r| r.get_str("errmsg").ok())
        .map(str::to_string);
    mask_uri_passwords(&said.unwrap_or_else(|| e.to_string())).into_owned()
}

/// The driver's error at `step` as check's diagnosis.
fn failure(step: &'static str, e: &MongoError) -> Diagnosis {
    let detail = words(e);
    let code = match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    };
    let (code, headline, fix): (&str, String, String) = match (e.kind.as_ref(), code) {
        (ErrorKind::Authentication { .. }, _) | (_, Some(18)) => (
            "refused",
            "the server refused the login".into(),
            LOGIN_FIX.into(),
        ),
        (_, Some(13)) => (
            "unauthorized",
            "the user of `mongodb.uri` may not do this".into(),
            "grant the user of `mongodb.uri` the readWrite role on `mongodb.database` (and \
             createCollection and createIndex, which readWrite includes)"
                .into(),
        ),
        (
            ErrorKind::ServerSelection { .. }
            | ErrorKind::Io(_)
            | ErrorKind::DnsResolve { .. }
            | ErrorKind::ConnectionPoolCleared { .. },
            _,
        ) => (
            "unreachable",
            "MongoDB does not answer".into(),
            "check that MongoDB runs and that the hosts and ports of `mongodb.uri` (and its \
             `tls` options) are right"
                .into(),
        ),
        (ErrorKind::InvalidArgument { .. } | ErrorKind::InvalidTlsConfig { .. }, _) => (
            "uri_invalid",
            "`mongodb.uri` cannot be used".into(),
            "correct `mongodb.uri` and its options".into(),
        ),
        _ => (
            "failed",
            "MongoDB refused".into(),
            "see MongoDB's words above".into(),
        ),
    };
    Diagnosis {
        step,
        code,
        headline,
        detail,
        fix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_differs_by_its_keys_their_order_or_its_expiry() {
        let keys = doc! { "service.name": 1, "@timestamp": 1 };
        let same =
            doc! { "v": 2, "key": { "service.name": 1.0, "@timestamp": 1_i64 }, "name": "n" };
        assert_eq!(differs(&same, &keys, None), None);
        let other = doc! { "key": { "message": 1 }, "name": "n" };
        assert_eq!(
            differs(&other, &keys, None).as_deref(),
            Some(r#"{ "service.name": 1, "@timestamp": 1 }, no expiry"#)
        );
        let reversed = doc! { "key": { "@timestamp": 1, "service.name": 1 } };
        assert!(differs(&reversed, &keys, None).is_some());
        let descending = doc! { "key": { "service.name": -1, "@timestamp": 1 } };
        assert!(differs(&descending, &keys, None).is_some());
        let time = doc! { "@timestamp": 1 };
        let ttl = doc! { "key": { "@timestamp": 1 }, "expireAfterSeconds": 86_400 };
        assert_eq!(differs(&ttl, &time, Some(86_400)), None);
        assert_eq!(
            differs(&ttl, &time, Some(604_800)).as_deref(),
            Some(r#"{ "@timestamp": 1 }, expiring after 604800 s"#)
        );
        assert_eq!(
            differs(&ttl, &time, None).as_deref(),
            Some(r#"{ "@timestamp": 1 }, no expiry"#)
        );
        let plain = doc! { "key": { "@timestamp": 1 } };
        assert!(differs(&plain, &time, Some(60)).is_some());
    }

    #[test]
    fn an_existing_collection_is_compared_with_the_configured_retention() {
        let mut config = Config::default();
        let capped = |size: i64, max: i64| {
            doc! { "name": "logs", "type": "collection",
            "options": { "capped": true, "size": size, "max": max } }
        };
        let plain = doc! { "name": "logs", "type": "collection", "options": {} };
        let check = |config: &Config, info: &Document| {
            collection_options(config, "logcollect.logs", info).map_err(|d| d.detail)
        };
        assert_eq!(
            check(&config, &plain).as_deref(),
            Ok("`logcollect.logs` exists: not capped")
        );
        assert_eq!(
            check(&config, &capped(4096, 0)).as_deref(),
            Ok(
                "`logcollect.logs` exists: capped at 4096 bytes (mongodb.capped_bytes is 0: \
                the shipper uses it as it is)"
            )
        );
        config.mongodb.capped_bytes = 1000;
        config.mongodb.capped_max = 10;
        // The server rounds the size up to a multiple of 256.
        assert_eq!(
            check(&config, &capped(1024, 10)).as_deref(),
            Ok("`logcollect.logs` exists: capped at 1024 bytes, at most 10 documents")
        );
        let other_max = check(&config, &capped(1024, 0)).expect_err("another max");
        assert!(
            other_max.starts_with(
                "it is capped at 1024 bytes; the configuration says capped at 1000 bytes, at \
                 most 10 documents"
            ),
            "{other_max}"
        );
        assert!(check(&config, &capped(8192, 10)).is_err(), "another size");
        assert!(check(&config, &plain).is_err(), "not capped");
        config.mongodb.capped_bytes = 0;
        config.mongodb.capped_max = 0;
        config.mongodb.expire_after = Duration::from_secs(60);
        let ttl = check(&config, &capped(4096, 0)).expect_err("a TTL on a capped collection");
        assert!(ttl.contains("takes no TTL index"), "{ttl}");
        let view = doc! { "name": "logs", "type": "view", "options": {} };
        assert!(check(&config, &view).is_err());
    }

    #[test]
    fn the_test_document_has_the_event_id_as_id_and_its_time_as_a_date() {
        let mut config = Config::default();
        config.transport = logcollect::TransportKind::Mongodb;
        let probe = Probe::new(&config, "logcollect::check", "m");
        let document = test_document(&probe).expect("BSON");
        assert_eq!(document.keys().next().map(String::as_str), Some("_id"));
        assert_eq!(document.get_str("_id"), Ok(probe.id.as_str()));
        assert!(matches!(
            document.get("@timestamp"),
            Some(Bson::DateTime(_))
        ));
        assert_eq!(
            document
                .get_document("fields")
                .and_then(|f| f.get_bool("check")),
            Ok(true)
        );
    }
}
