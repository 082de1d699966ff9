//! Redis behind the seam: every document of a message pushed to a list in one `RPUSH` (what
//! Logstash's `redis` input reads), or appended to a stream, one `XADD` per document (fields
//! `doc`, `format`, `service`) in one `MULTI`/`EXEC`.
//!
//! The reply is the confirm. Messages are written in the order they were published by one
//! writer task per link, which takes whatever waits and sends it as one pipeline: pipelined
//! up to the window, and never reordered (futures polled in any order could not promise that).
//!
//! A list at `redis.max_length` or longer holds the shipper back, as a blocked broker does,
//! until its readers shrink it: Redis never runs out of memory because of us. A stream is
//! trimmed instead (`MAXLEN ~`): its entries stay after they are read, so its length says
//! nothing about its readers.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, RedisError};
use bytes::Bytes;
use tokio::sync::oneshot;

use super::writer::{documents, Queued, Signals, WriterLink};
use super::{Outcome, RedisDataType, Signal, Transport};
use crate::broker::BrokerError;
use crate::delivery::Message;
use crate::encoding::redact::mask_uri_passwords;
use crate::{Config, Error};

/// How often a held-back link looks at the list's length again.
const HOLD_POLL: Duration = Duration::from_millis(250);
/// The most messages one pipeline carries.
const PIPELINE_MESSAGES: usize = 64;

/// Connects to the Redis nodes of `redis.uri` with the `tls_*` files and the connect timeout:
/// the one place that does, for the shipper and for `logcollect check`. Errors name the node
/// without its password, and the fix.
#[derive(Debug, Clone)]
pub struct RedisConnector {
    /// Each node's URI (it may hold a password: never shown) and its description.
    nodes: Vec<(String, String)>,
    connect_timeout: Duration,
    /// How long an answer may take; `None` for the shipper, whose confirm timeout bounds it.
    response_timeout: Option<Duration>,
    /// `tls_ca_file`, and `tls_cert_file` with `tls_key_file`, read when made.
    ca: Option<Vec<u8>>,
    cert_and_key: Option<(Vec<u8>, Vec<u8>)>,
}

impl RedisConnector {
    /// Reads the TLS files; an unreadable one is a configuration error.
    pub fn new(config: &Config) -> Result<RedisConnector, Error> {
        let read = |key: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| {
                Error::Config(format!("`{key}` `{}` cannot be read: {e}", path.display()))
            })
        };
        let ca = config
            .tls_ca_file
            .as_deref()
            .map(|p| read("tls_ca_file", p))
            .transpose()?;
        let cert_and_key = match (&config.tls_cert_file, &config.tls_key_file) {
            (Some(cert), Some(key)) => {
                Some((read("tls_cert_file", cert)?, read("tls_key_file", key)?))
            }
            _ => None,
        };
        let nodes = config
            .redis
            .uri
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| (u.to_string(), describe(u)))
            .collect();
        Ok(RedisConnector {
            nodes,
            connect_timeout: config.connect_timeout,
            response_timeout: None,
            ca,
            cert_and_key,
        })
    }

    /// The same for a node list given apart from `redis.uri` (the command's `--from`), with
    /// the settings' connect timeout and, for `rediss://`, their TLS files (set for another
    /// transport, they do not apply to a plain `redis://` node).
    pub fn with_uri(config: &Config, uri: &str) -> Result<RedisConnector, Error> {
        let mut config = config.clone();
        config.redis.uri = uri.to_string();
        if !uri.trim_start().starts_with("rediss://") {
            config.tls_ca_file = None;
            config.tls_cert_file = None;
            config.tls_key_file = None;
        }
        RedisConnector::new(&config)
    }

    /// Bounds every answer by `timeout` (a reader's blocking reads wait less than that).
    pub fn response_timeout(mut self, timeout: Duration) -> RedisConnector {
        self.response_timeout = Some(timeout);
        self
    }

    /// The nodes as they are shown: `redis://host:port/db`, without credentials.
    pub fn nodes(&self) -> Vec<String> {
        self.nodes.iter().map(|(_, shown)| shown.clone()).collect()
    }

    /// Connects to node `i` (0 is the first), logging in as its URI says; bounded by the
    /// connect timeout.
    pub async fn connect(&self, i: usize) -> Result<MultiplexedConnection, BrokerError> {
        let Some((uri, node)) = self.nodes.get(i) else {
            return Err(BrokerError::Unreachable {
                broker: "(no redis.uri)".into(),
                detail: format!("no Redis node {}", i + 1),
            });
        };
        let client = match (&self.ca, &self.cert_and_key) {
            (None, None) => Client::open(uri.as_str()),
            (ca, cert_and_key) => Client::build_with_tls(
                uri.as_str(),
                ::redis::TlsCertificates {
                    client_tls: cert_and_key
                        .as_ref()
                        .map(|(cert, key)| ::redis::ClientTlsConfig {
                            client_cert: cert.clone(),
                            client_key: key.clone(),
                        }),
                    root_cert: ca.clone(),
                },
            ),
        }
        .map_err(|e| error(node, &e))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            // The shipper's confirm timeout bounds an answer.
            .set_response_timeout(self.response_timeout);
        let connecting = client.get_multiplexed_async_connection_with_config(&config);
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(e)) => Err(error(node, &e)),
            Err(_) => Err(BrokerError::Timeout {
                broker: node.clone(),
                after: self.connect_timeout,
            }),
        }
    }

    /// What an error reply to a command on node `i` means, named with its fix
    /// (`WRONGTYPE`, `NOPERM`, …).
    pub fn refusal(&self, i: usize, e: &RedisError) -> BrokerError {
        let node = self
            .nodes
            .get(i)
            .map_or("redis", |(_, shown)| shown.as_str());
        error(node, e)
    }
}

/// Opens links on the node list, the next node first after a failure.
#[derive(Debug)]
pub(crate) struct Redis {
    connector: RedisConnector,
    data_type: RedisDataType,
    max_length: u64,
    next: AtomicUsize,
}

impl Redis {
    pub fn new(config: &Config) -> Result<Redis, Error> {
        Ok(Redis {
            connector: RedisConnector::new(config)?,
            data_type: config.redis.data_type,
            max_length: config.redis.max_length,
            next: AtomicUsize::new(0),
        })
    }
}

impl Transport for Redis {
    type Link = WriterLink<Job>;

    /// The writer task and the client's connection task, beside the encoding.
    fn io_threads(&self) -> usize {
        1
    }

    async fn open(&self) -> Result<WriterLink<Job>, BrokerError> {
        let nodes = self.connector.nodes();
        if nodes.is_empty() {
            return Err(BrokerError::Unreachable {
                broker: "(no redis.uri)".into(),
                detail: "no Redis URI is configured".into(),
            });
        }
        let first = self.next.load(Relaxed);
        let mut errors = Vec::new();
        for k in 0..nodes.len() {
            let i = (first % nodes.len() + k) % nodes.len();
            match self.connector.connect(i).await {
                Ok(connection) => {
                    self.next.store((i + 1) % nodes.len(), Relaxed);
                    let (node, data_type, max_length) =
                        (nodes[i].clone(), self.data_type, self.max_length);
                    let writer = move |queued, signal| {
                        Writer {
                            connection,
                            node,
                            data_type,
                            max_length,
                            signal,
                        }
                        .run(queued)
                    };
                    return Ok(WriterLink::start(nodes[i].clone(), "Redis", writer));
                }
                Err(e) => errors.push(e),
            }
        }
        self.next.store((first + 1) % nodes.len(), Relaxed);
        match errors.len() {
            1 => Err(errors.remove(0)),
            _ => Err(BrokerError::AllNodes { errors }),
        }
    }
}

/// A message handed to the writer task, and where its answer goes.
pub(crate) struct Job {
    key: String,
    events: u64,
    body: Bytes,
    ends: Vec<u32>,
    app: String,
    format: String,
    answer: oneshot::Sender<Outcome>,
}

impl super::writer::Job for Job {
    fn new(message: &Message, answer: oneshot::Sender<Outcome>) -> Job {
        Job {
            key: message.route.clone(),
            events: message.events,
            body: message.body.clone(),
            ends: message.ends.clone(),
            app: message.meta.app.clone(),
            format: message.meta.format.clone(),
            answer,
        }
    }
}

/// The writer task of one link.
struct Writer {
    connection: MultiplexedConnection,
    node: String,
    data_type: RedisDataType,
    max_length: u64,
    signal: Signals,
}

impl Writer {
    async fn run(mut self, mut queued: Queued<Job>) {
        // Taken from the channel but not yet sent (a capped list's room ran out), oldest first.
        let mut waiting: VecDeque<Job> = VecDeque::new();
        // The longest capped list after the last pipeline.
        let mut longest = 0;
        loop {
            if waiting.is_empty() {
                let Some(job) = queued.recv().await else {
                    return;
                };
                waiting.push_back(job);
            }
            while waiting.len() < PIPELINE_MESSAGES {
                match queued.try_recv() {
                    Ok(job) => waiting.push_back(job),
                    Err(_) => break,
                }
            }
            // Under a length cap a pipeline carries what the list has room for (at least one
            // message), so the shipper holds at most one message past the cap.
            let room = match (self.data_type, self.max_length) {
                (RedisDataType::List, cap) if cap > 0 => cap.saturating_sub(longest),
                _ => u64::MAX,
            };
            let mut jobs = Vec::new();
            let mut events = 0u64;
            while let Some(job) = waiting.front() {
                if !jobs.is_empty() && events.saturating_add(job.events) > room {
                    break;
                }
                events = events.saturating_add(job.events);
                jobs.extend(waiting.pop_front());
            }
            let written = match self.write(jobs).await {
                Ok(written) => written,
                Err(e) => {
                    let _ = self.signal.send(Signal::Lost(e));
                    return;
                }
            };
            longest = written.iter().map(|(_, len)| *len).max().unwrap_or(0);
            match self.hold_while_full(&written).await {
                Ok(Some(len)) => longest = len,
                Ok(None) => {}
                Err(e) => {
                    let _ = self.signal.send(Signal::Lost(e));
                    return;
                }
            }
        }
    }

    /// Sends `jobs` as one pipeline and answers each. Returns the lists written to, with
    /// their length after the writes; an error when the connection failed.
    async fn write(&mut self, jobs: Vec<Job>) -> Result<Vec<(String, u64)>, BrokerError> {
        let mut pipe = ::redis::pipe();
        // One answer per command, errors included, instead of one error for the pipeline.
        pipe.ignore_errors();
        if self.data_type == RedisDataType::Stream {
            pipe.atomic();
        }
        let mut commands = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let documents = documents(&job.body, &job.ends);
            match self.data_type {
                RedisDataType::List => {
                    let push = pipe.cmd("RPUSH").arg(&job.key);
                    for doc in &documents {
                        push.arg(*doc);
                    }
                    commands.push(1);
                }
                RedisDataType::Stream => {
                    for doc in &documents {
                        let add = pipe.cmd("XADD").arg(&job.key);
                        if self.max_length > 0 {
                            add.arg("MAXLEN").arg("~").arg(self.max_length);
                        }
                        add.arg("*").arg("doc").arg(*doc);
                        add.arg("format").arg(&job.format);
                        add.arg("service").arg(&job.app);
                    }
                    commands.push(documents.len());
                }
            }
        }
        let capped: Vec<String> = if self.data_type == RedisDataType::List && self.max_length > 0 {
            let keys: BTreeSet<&str> = jobs.iter().map(|j| j.key.as_str()).collect();
            keys.into_iter().map(str::to_owned).collect()
        } else {
            Vec::new()
        };
        for key in &capped {
            pipe.cmd("LLEN").arg(key);
        }
        let replies: Vec<::redis::RedisResult<::redis::Value>> =
            match pipe.query_async(&mut self.connection).await {
                Ok(replies) => replies,
                Err(e) => {
                    let lost = lost(&e);
                    for job in jobs {
                        let _ = job.answer.send(Outcome::Failed(lost.clone()));
                    }
                    return Err(lost);
                }
            };
        let mut replies = replies.into_iter();
        for (job, n) in jobs.into_iter().zip(commands) {
            let mut outcome = Outcome::Delivered;
            for reply in replies.by_ref().take(n) {
                if let (Outcome::Delivered, Err(e)) = (&outcome, reply) {
                    outcome = self.refusal(&e);
                }
            }
            let _ = job.answer.send(outcome);
        }
        let lengths = capped
            .into_iter()
            .zip(replies)
            .map(|(key, reply)| {
                let len = match reply {
                    Ok(::redis::Value::Int(n)) => u64::try_from(n).unwrap_or(0),
                    _ => 0,
                };
                (key, len)
            })
            .collect();
        Ok(lengths)
    }

    /// What an error reply means for the message: refused for now (retried after a pause, and a
    /// link that only gets refusals is replaced), or a failure that ends the link and is
    /// reported with its fix.
    fn refusal(&self, e: &RedisError) -> Outcome {
        match e.code() {
            // Memory full, a replica, loading, failing over: retrying, or another node, helps.
            Some("OOM" | "READONLY" | "LOADING" | "MASTERDOWN" | "TRYAGAIN" | "BUSY") => {
                Outcome::Refused
            }
            _ => Outcome::Failed(error(&self.node, e)),
        }
    }

    /// While a list is at `redis.max_length` or longer, signals the engine to hold and waits
    /// for it to shrink; then returns the longest length seen (`None` if it never held).
    async fn hold_while_full(
        &mut self,
        written: &[(String, u64)],
    ) -> Result<Option<u64>, BrokerError> {
        let full: Vec<&(String, u64)> = written
            .iter()
            .filter(|(_, len)| *len >= self.max_length)
            .collect();
        let Some((key, len)) = full.first() else {
            return Ok(None);
        };
        let _ = self.signal.send(Signal::Blocked(format!(
            "Redis list `{key}` holds {len} entries, at least redis.max_length ({}): waiting for \
             its readers",
            self.max_length
        )));
        let keys: Vec<String> = full.iter().map(|(k, _)| k.clone()).collect();
        loop {
            tokio::time::sleep(HOLD_POLL).await;
            let mut pipe = ::redis::pipe();
            for key in &keys {
                pipe.cmd("LLEN").arg(key);
            }
            let lengths: Vec<u64> = pipe
                .query_async(&mut self.connection)
                .await
                .map_err(|e| lost(&e))?;
            if lengths.iter().all(|len| *len < self.max_length) {
                let _ = self.signal.send(Signal::Unblocked);
                return Ok(lengths.into_iter().max());
            }
        }
    }
}

/// A node as messages show it: its URI without user name or password.
fn describe(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return mask_uri_passwords(uri).into_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    format!("{scheme}://{rest}")
}

/// The connection failed while publishing.
fn lost(e: &RedisError) -> BrokerError {
    BrokerError::Lost {
        detail: mask_uri_passwords(&e.to_string()).into_owned(),
    }
}

const LOGIN_FIX: &str =
    "set the password (and, with ACL users, the user name) of `redis.uri` to the server's";

/// What Redis said at `node`, named with its fix.
fn error(node: &str, e: &RedisError) -> BrokerError {
    let detail = mask_uri_passwords(&e.to_string()).into_owned();
    let refused = |fix: &str| BrokerError::Refused {
        broker: node.to_string(),
        detail: detail.clone(),
        fix: fix.to_string(),
    };
    match e.code() {
        Some("NOAUTH" | "WRONGPASS") => refused(LOGIN_FIX),
        Some("WRONGTYPE") => refused(
            "the key holds another type than `redis.data_type`: use another `redis.key`, set \
             `redis.data_type` to what it holds, or delete the key",
        ),
        Some("NOPERM") => refused(
            "the user's ACL does not allow the command or the key: grant it (ACL SETUSER … \
             +rpush +xadd +llen ~<key>)",
        ),
        _ if e.kind() == ::redis::ErrorKind::AuthenticationFailed => refused(LOGIN_FIX),
        _ if e.is_timeout() => BrokerError::Lost { detail },
        _ if e.is_io_error() || e.is_connection_refusal() => BrokerError::Unreachable {
            broker: node.to_string(),
            detail,
        },
        _ => refused("see Redis's words above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_shown_without_its_credentials() {
        assert_eq!(
            describe("redis://user:s3cret@cache:6379/2"),
            "redis://cache:6379/2"
        );
        assert_eq!(describe("rediss://:s3cret@cache"), "rediss://cache");
        assert_eq!(describe("redis://cache:6379"), "redis://cache:6379");
    }
}
