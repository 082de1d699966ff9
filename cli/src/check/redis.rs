//! `check` with `transport = redis`: each node of `redis.uri` connected and logged in, the key's
//! type against `redis.data_type`, its length against `redis.max_length`, and a test document
//! pushed and seen — the path the shipper's events take.

use std::time::Duration;

use logcollect::{BrokerError, Config, Probe, RedisConnector, RedisDataType};
use redis::aio::MultiplexedConnection;
use redis::RedisError;

use super::{CheckArgs, Report};
use crate::diagnose::{self, Diagnosis, NodeResult};

/// The steps; `Err` at the first break. Every node is connected (a node that fails is reported
/// and the next tried); the first that answers carries the key, length and publish steps.
pub async fn walk(config: &Config, args: &CheckArgs, report: &mut Report) -> Result<(), Diagnosis> {
    let connector =
        RedisConnector::new(config).map_err(|e| diagnose::config_invalid(e.to_string()))?;
    let nodes = connector.nodes();
    let several = nodes.len() > 1;
    let probe = Probe::new(config, &args.logger, "logcollect check: test event");
    let key = probe.routing_key.clone();
    let data_type = config.redis.data_type;
    let cap = config.redis.max_length;
    let order = if several {
        format!(" ({} nodes, tried in order)", nodes.len())
    } else {
        String::new()
    };
    report.ok(
        "config",
        format!(
            "redis {}{order}, key `{key}` ({}), max_length {}, format {}",
            nodes.join(", "),
            data_type.as_str(),
            if cap == 0 {
                "none".to_string()
            } else {
                cap.to_string()
            },
            config.format.as_str()
        ),
    );

    let mut answering: Option<(usize, MultiplexedConnection)> = None;
    for (i, node) in nodes.iter().enumerate() {
        report.node = several.then_some(i + 1);
        let outcome = connector.connect(i).await;
        report.node = None;
        match outcome {
            Ok(connection) => {
                report.node = several.then_some(i + 1);
                report.ok("connect", format!("{node} answers and let us in"));
                report.node = None;
                if several {
                    report.nodes.push(NodeResult {
                        broker: node.clone(),
                        failure: None,
                    });
                }
                answering.get_or_insert((i, connection));
            }
            Err(e) if !several => return Err(diagnosis("connect", &e)),
            Err(e) => {
                let d = diagnosis("connect", &e);
                report.failed_node(i + 1, &d);
                report.nodes.push(NodeResult {
                    broker: node.clone(),
                    failure: Some(d),
                });
            }
        }
    }
    let Some((i, mut connection)) = answering else {
        return Err(diagnose::no_node_answers(&report.nodes, "redis.uri"));
    };
    let timeout = config.connect_timeout.max(Duration::from_millis(100));
    let refused = |step: &'static str, e: &RedisError| diagnosis(step, &connector.refusal(i, e));

    // The key holds what the shipper writes, or nothing yet.
    let kind: String = bounded(
        timeout,
        "key",
        redis::cmd("TYPE").arg(&key).query_async(&mut connection),
    )
    .await?
    .map_err(|e| refused("key", &e))?;
    let wanted = data_type.as_str();
    match kind.as_str() {
        "none" => report.ok("key", format!("`{key}` does not exist yet: the first push creates it as a {wanted}")),
        k if k == wanted => report.ok("key", format!("`{key}` is a {wanted}")),
        other => {
            return Err(Diagnosis {
                step: "key",
                code: "wrong_type",
                headline: format!("`{key}` holds a {other}, not a {wanted}"),
                detail: format!("TYPE {key} answered `{other}`; the shipper writes a {wanted} (redis.data_type) and every push would be refused (WRONGTYPE)"),
                fix: "use another `redis.key`, set `redis.data_type` to what the key holds, or delete the key".into(),
            })
        }
    }

    // Its length against the cap: a full list holds the shipper back.
    let length_command = match data_type {
        RedisDataType::List => "LLEN",
        _ => "XLEN",
    };
    let length: u64 = bounded(
        timeout,
        "length",
        redis::cmd(length_command)
            .arg(&key)
            .query_async(&mut connection),
    )
    .await?
    .map_err(|e| refused("length", &e))?;
    match (data_type, cap) {
        (_, 0) => report.ok("length", format!("{length} entries (no cap)")),
        (RedisDataType::List, cap) if length >= cap => {
            return Err(Diagnosis {
                step: "length",
                code: "list_full",
                headline: format!("`{key}` holds {length} values, at or above redis.max_length ({cap})"),
                detail: "the shipper holds back while the list is this long: its readers (Logstash's redis input, `logcollect collect --from`) are not taking values, or not fast enough".into(),
                fix: "start or scale the list's readers, or raise `redis.max_length` if Redis has the memory".into(),
            })
        }
        (RedisDataType::List, cap) => report.ok("length", format!("{length} values, below redis.max_length ({cap})")),
        (_, cap) => report.ok("length", format!("{length} entries (trimmed to about {cap})")),
    }

    // A real document, pushed as the shipper pushes it, then looked for.
    let body = String::from_utf8_lossy(&probe.body).into_owned();
    match data_type {
        RedisDataType::List => {
            let after: u64 = bounded(
                timeout,
                "publish",
                redis::cmd("RPUSH")
                    .arg(&key)
                    .arg(&body)
                    .query_async(&mut connection),
            )
            .await?
            .map_err(|e| refused("publish", &e))?;
            report.ok(
                "publish",
                format!(
                    "the test event (event.id {}) was pushed: the list holds {after}",
                    probe.id
                ),
            );
            let at: Option<u64> = bounded(
                timeout,
                "seen",
                redis::cmd("LPOS")
                    .arg(&key)
                    .arg(&body)
                    .query_async(&mut connection),
            )
            .await?
            .map_err(|e| refused("seen", &e))?;
            match at {
                Some(at) => report.ok(
                    "seen",
                    format!("the test event is in `{key}` at index {at}, waiting for its readers"),
                ),
                None => report.ok(
                    "seen",
                    format!("the test event has already left `{key}`: a reader took it"),
                ),
            }
        }
        _ => {
            let mut add = redis::cmd("XADD");
            add.arg(&key);
            if cap > 0 {
                add.arg("MAXLEN").arg("~").arg(cap);
            }
            add.arg("*")
                .arg("doc")
                .arg(&body)
                .arg("format")
                .arg(probe.format.as_str())
                .arg("service")
                .arg(&probe.service);
            let id: String = bounded(timeout, "publish", add.query_async(&mut connection))
                .await?
                .map_err(|e| refused("publish", &e))?;
            report.ok(
                "publish",
                format!(
                    "the test event (event.id {}) was added as entry {id}",
                    probe.id
                ),
            );
            let found: redis::streams::StreamRangeReply = bounded(
                timeout,
                "seen",
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(&id)
                    .arg(&id)
                    .query_async(&mut connection),
            )
            .await?
            .map_err(|e| refused("seen", &e))?;
            if found.ids.is_empty() {
                return Err(Diagnosis {
                    step: "seen",
                    code: "trimmed",
                    headline: format!("entry {id} is no longer in `{key}`"),
                    detail: "the stream was trimmed past it at once: redis.max_length is smaller than what is added between two reads".into(),
                    fix: "raise `redis.max_length`".into(),
                });
            }
            report.ok("seen", format!("entry {id} is in `{key}`"));
        }
    }
    if several {
        match diagnose::some_nodes_down(&report.nodes, i + 1, "redis.uri") {
            Some(d) => return Err(d),
            None => report.ok(
                "nodes",
                format!(
                    "all {} nodes answer; the test event went through node {}",
                    nodes.len(),
                    i + 1
                ),
            ),
        }
    }
    Ok(())
}

/// A command bounded by the connect timeout.
async fn bounded<T>(
    timeout: Duration,
    step: &'static str,
    command: impl std::future::Future<Output = T>,
) -> Result<T, Diagnosis> {
    tokio::time::timeout(timeout, command)
        .await
        .map_err(|_| super::step_timeout(step, "Redis", timeout))
}

/// The library's error as check's diagnosis: its words, and the fix it names.
fn diagnosis(step: &'static str, e: &BrokerError) -> Diagnosis {
    let code = match e {
        BrokerError::Unreachable { .. } => "unreachable",
        BrokerError::Timeout { .. } => "timeout",
        BrokerError::Refused { .. } => "refused",
        _ => "failed",
    };
    let fix = match e {
        BrokerError::Refused { fix, .. } => fix.clone(),
        _ => "check that Redis runs and that the host, port and scheme (rediss:// for TLS) of \
              `redis.uri` are right"
            .into(),
    };
    Diagnosis {
        step,
        code,
        headline: e.headline().to_string(),
        detail: e.to_string(),
        fix,
    }
}
