//! `collect --from redis://…`: a Redis list or stream written to the same files, by the same
//! writer, as the AMQP queue; an item leaves Redis only once the files holding it are synced.
//!
//! - list: items move atomically (`BLMOVE`/`LMOVE`) into this collector's own processing list
//!   `KEY:processing:CONSUMER`, are written, and are trimmed from it after the sync; at start
//!   the processing list is finished first, so a kill loses nothing and repeats at most what
//!   was taken and not yet trimmed (one batch).
//! - stream: a consumer group; `XACK` after the sync; this consumer's own pending entries are
//!   read first at start, and entries another consumer left pending longer than
//!   `--claim-idle` are taken over with `XAUTOCLAIM`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use ::redis::{Client, Value};
use logcollect::{Config, RedisConnector};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use super::facilities::Facilities;
use super::file::Writers;
use super::status::Status;
use super::{deliver, CollectArgs, End, Msg};

/// What `--data-type` names.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    List,
    Stream,
}

/// The key Logstash's `redis` input and the library's Redis transport use by default.
pub const DEFAULT_KEY: &str = "logstash";

/// `uri` with its password masked, for every message.
pub fn masked(uri: &str) -> String {
    logcollect::mask_uri_passwords(uri).into_owned()
}

/// The connector for `--from` (the library's, so `rediss://` trusts `tls_ca_file` and presents
/// `tls_cert_file` as the shipper does), checked before anything starts (`Err` is a usage
/// error).
pub fn connector(config: &Config, uri: &str) -> Result<RedisConnector, String> {
    if !(uri.starts_with("redis://") || uri.starts_with("rediss://")) {
        return Err(format!(
            "--from {}: not a redis:// or rediss:// URI",
            masked(uri)
        ));
    }
    // Parsed here, so that a malformed URI is a usage error before anything starts.
    Client::open(uri).map_err(|e| format!("--from {}: {}", masked(uri), masked(&e.to_string())))?;
    RedisConnector::with_uri(config, uri)
        .map(|c| c.response_timeout(RESPONSE_TIMEOUT))
        .map_err(|e| format!("--from {}: {e}", masked(uri)))
}

/// Longer than the blocking reads (which wait at most `BLOCK`).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the `--from` node.
pub async fn connect(connector: &RedisConnector) -> Result<MultiplexedConnection, String> {
    connector
        .connect(0)
        .await
        .map_err(|e| format!("cannot connect: {e}"))
}

/// How long a read waits for new items before the loop looks at its timers again.
const BLOCK: Duration = Duration::from_millis(200);

/// The key named by `--key` (one), or the default.
pub fn key(args: &CollectArgs) -> Result<String, String> {
    match args.keys.as_slice() {
        [] => Ok(DEFAULT_KEY.to_string()),
        [k] => Ok(k.clone()),
        _ => Err("--from redis:// reads one key: give --key once".into()),
    }
}

/// This collector's name among several: `--consumer`, else the host's name.
pub fn consumer(args: &CollectArgs) -> String {
    if let Some(c) = &args.consumer {
        return c.clone();
    }
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer it is given.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if ok && !name.is_empty() => name.to_string(),
        _ => "logcollect".to_string(),
    }
}

/// Stop (SIGTERM, Ctrl-C) and reopen (SIGHUP) requests, as flags the loop looks at between
/// reads: a read in flight is never cancelled, since Redis may already have moved its items.
struct Signals {
    stop: watch::Receiver<bool>,
    hup: Arc<AtomicBool>,
}

impl Signals {
    fn install() -> Result<Self, String> {
        let (mut hup, mut term) = match (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(h), Ok(t)) => (h, t),
            _ => return Err("cannot install the SIGHUP/SIGTERM handlers".into()),
        };
        let (tx, stop) = watch::channel(false);
        let flag = Arc::new(AtomicBool::new(false));
        let hup_flag = flag.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => { let _ = tx.send(true); return; }
                    _ = term.recv() => { let _ = tx.send(true); return; }
                    _ = hup.recv() => hup_flag.store(true, Ordering::Relaxed),
                }
            }
        });
        Ok(Self { stop, hup: flag })
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves once a stop is asked for.
    fn wait(&self) -> impl std::future::Future<Output = ()> {
        let mut rx = self.stop.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

/// What differs between a list and a stream: taking items and letting them go.
enum Source {
    List {
        key: String,
        processing: String,
        /// Items in the processing list, written and not yet trimmed.
        pending: usize,
        /// Items read from the processing list at start and not yet written.
        recovering: bool,
    },
    Stream {
        key: String,
        group: String,
        consumer: String,
        claim_idle: Duration,
        /// Entries written and not yet acked.
        pending: Vec<String>,
        /// Reading this consumer's own pending entries (from `0`) before new ones (`>`).
        own_from: Option<String>,
        last_claim: Instant,
    },
}

/// One item taken: its document and who sent it.
pub(crate) struct Item {
    pub body: Vec<u8>,
    pub service: Option<String>,
    /// A stream entry's id.
    pub id: Option<String>,
}

fn failed(what: &str, uri: &str, e: ::redis::RedisError) -> String {
    format!("{what} on {}: {}", masked(uri), masked(&e.to_string()))
}

impl Source {
    fn pending(&self) -> usize {
        match self {
            Source::List { pending, .. } => *pending,
            Source::Stream { pending, .. } => pending.len(),
        }
    }

    /// Up to `n` items: waits up to BLOCK for the first when `wait`.
    async fn take(
        &mut self,
        conn: &mut MultiplexedConnection,
        uri: &str,
        n: usize,
        wait: bool,
    ) -> Result<Vec<Item>, String> {
        match self {
            Source::List {
                key,
                processing,
                pending,
                recovering,
            } => {
                if *recovering {
                    // What a previous run took and did not trim: finished first.
                    let left: Vec<Vec<u8>> = ::redis::cmd("LRANGE")
                        .arg(&*processing)
                        .arg(*pending)
                        .arg(-1)
                        .query_async(conn)
                        .await
                        .map_err(|e| failed("LRANGE", uri, e))?;
                    *recovering = false;
                    if !left.is_empty() {
                        eprintln!(
                            "logcollect collect: finishing {} item(s) left in `{processing}` by \
                             the last run",
                            left.len()
                        );
                        return Ok(left.into_iter().map(Item::value).collect());
                    }
                }
                let mut items = Vec::new();
                if wait {
                    let first: Option<Vec<u8>> = ::redis::cmd("BLMOVE")
                        .arg(&*key)
                        .arg(&*processing)
                        .arg("LEFT")
                        .arg("RIGHT")
                        .arg(BLOCK.as_secs_f64())
                        .query_async(conn)
                        .await
                        .map_err(|e| failed("BLMOVE", uri, e))?;
                    match first {
                        Some(v) => items.push(Item::value(v)),
                        None => return Ok(items),
                    }
                }
                // The rest of the batch in one round trip; each LMOVE is atomic, and one
                // that finds the list empty answers nil.
                let more = n.saturating_sub(items.len());
                if more > 0 {
                    let mut pipe = ::redis::pipe();
                    for _ in 0..more {
                        pipe.cmd("LMOVE")
                            .arg(&*key)
                            .arg(&*processing)
                            .arg("LEFT")
                            .arg("RIGHT");
                    }
                    let moved: Vec<Option<Vec<u8>>> = pipe
                        .query_async(conn)
                        .await
                        .map_err(|e| failed("LMOVE", uri, e))?;
                    items.extend(moved.into_iter().flatten().map(Item::value));
                }
                Ok(items)
            }
            Source::Stream {
                key,
                group,
                consumer,
                claim_idle,
                own_from,
                last_claim,
                ..
            } => {
                if let Some(from) = own_from.clone() {
                    let reply: Option<StreamReadReply> = ::redis::cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg(&*group)
                        .arg(&*consumer)
                        .arg("COUNT")
                        .arg(n)
                        .arg("STREAMS")
                        .arg(&*key)
                        .arg(&from)
                        .query_async(conn)
                        .await
                        .map_err(|e| failed("XREADGROUP", uri, e))?;
                    let ids = entries(reply);
                    match ids.last() {
                        Some(last) => *own_from = Some(last.id.clone()),
                        None => *own_from = None,
                    }
                    if !ids.is_empty() {
                        return Ok(ids.into_iter().map(Item::entry).collect());
                    }
                }
                // A dead consumer's entries, once they have waited long enough.
                if last_claim.elapsed() >= (*claim_idle / 2).max(Duration::from_millis(500)) {
                    *last_claim = Instant::now();
                    let idle = u64::try_from(claim_idle.as_millis()).unwrap_or(u64::MAX);
                    let claimed: StreamAutoClaimReply = ::redis::cmd("XAUTOCLAIM")
                        .arg(&*key)
                        .arg(&*group)
                        .arg(&*consumer)
                        .arg(idle)
                        .arg("0-0")
                        .arg("COUNT")
                        .arg(n)
                        .query_async(conn)
                        .await
                        .map_err(|e| failed("XAUTOCLAIM", uri, e))?;
                    if !claimed.claimed.is_empty() {
                        eprintln!(
                            "logcollect collect: claimed {} entries another consumer of group \
                             `{group}` left pending",
                            claimed.claimed.len()
                        );
                        return Ok(claimed.claimed.into_iter().map(Item::entry).collect());
                    }
                }
                let mut cmd = ::redis::cmd("XREADGROUP");
                cmd.arg("GROUP")
                    .arg(&*group)
                    .arg(&*consumer)
                    .arg("COUNT")
                    .arg(n);
                if wait {
                    cmd.arg("BLOCK").arg(BLOCK.as_millis() as u64);
                }
                let reply: Option<StreamReadReply> = cmd
                    .arg("STREAMS")
                    .arg(&*key)
                    .arg(">")
                    .query_async(conn)
                    .await
                    .map_err(|e| failed("XREADGROUP", uri, e))?;
                Ok(entries(reply).into_iter().map(Item::entry).collect())
            }
        }
    }

    fn written(&mut self, item: Item) {
        match self {
            Source::List { pending, .. } => *pending += 1,
            Source::Stream { pending, .. } => pending.extend(item.id),
        }
    }

    /// Lets go of what is written: call only once the files are synced.
    async fn release(&mut self, conn: &mut MultiplexedConnection, uri: &str) -> Result<(), String> {
        match self {
            Source::List {
                processing,
                pending,
                ..
            } => {
                if *pending == 0 {
                    return Ok(());
                }
                let () = ::redis::cmd("LTRIM")
                    .arg(&*processing)
                    .arg(*pending)
                    .arg(-1)
                    .query_async(conn)
                    .await
                    .map_err(|e| failed("LTRIM", uri, e))?;
                *pending = 0;
            }
            Source::Stream {
                key,
                group,
                pending,
                ..
            } => {
                if pending.is_empty() {
                    return Ok(());
                }
                let _: i64 = ::redis::cmd("XACK")
                    .arg(&*key)
                    .arg(&*group)
                    .arg(&*pending)
                    .query_async(conn)
                    .await
                    .map_err(|e| failed("XACK", uri, e))?;
                pending.clear();
            }
        }
        Ok(())
    }
}

pub(crate) fn entries(reply: Option<StreamReadReply>) -> Vec<StreamId> {
    reply
        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
        .unwrap_or_default()
}

fn text(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    }
}

impl Item {
    fn value(body: Vec<u8>) -> Self {
        Self {
            body,
            service: None,
            id: None,
        }
    }

    /// A stream entry: its `doc` (an entry without one is kept whole, as a raw line of its
    /// fields) and its `service`.
    pub(crate) fn entry(entry: StreamId) -> Self {
        let service = entry
            .map
            .get("service")
            .and_then(text)
            .and_then(|s| String::from_utf8(s).ok());
        let body = match entry.map.get("doc").and_then(text) {
            Some(doc) => doc,
            None => {
                let fields: HashMap<&str, String> = entry
                    .map
                    .iter()
                    .map(|(k, v)| {
                        let v = text(v)
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                            .unwrap_or_default();
                        (k.as_str(), v)
                    })
                    .collect();
                format!("stream entry {} without `doc`: {fields:?}", entry.id).into_bytes()
            }
        };
        Self {
            body,
            service,
            id: Some(entry.id),
        }
    }
}

/// Syncs the files, then lets Redis forget what they hold. A failed sync lets nothing go and
/// is tried again at the next point (the items stay with this collector, never lost).
async fn confirm(
    source: &mut Source,
    conn: &mut MultiplexedConnection,
    uri: &str,
    writers: &mut Writers,
    status: &Status,
) -> Result<bool, String> {
    if source.pending() == 0 {
        return Ok(true);
    }
    if let Err(e) = writers.sync_all() {
        status.error(format!(
            "cannot sync the files: {e}; nothing is released from Redis, trying again"
        ));
        return Ok(false);
    }
    source.release(conn, uri).await?;
    Ok(true)
}

pub(super) async fn collect(
    args: &CollectArgs,
    connector: RedisConnector,
    mut writers: Writers,
    status: Arc<Status>,
) -> End {
    let uri = masked(args.from.as_deref().unwrap_or_default());
    let key = match key(args) {
        Ok(k) => k,
        Err(e) => return End::Failed(e),
    };
    let consumer = consumer(args);
    let mut conn = match connect(&connector).await {
        Ok(c) => c,
        Err(e) => return End::Failed(e),
    };
    let mut source = match args.data_type {
        DataType::List => Source::List {
            processing: format!("{key}:processing:{consumer}"),
            key: key.clone(),
            pending: 0,
            recovering: true,
        },
        DataType::Stream => {
            let created: Result<(), _> = ::redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&key)
                .arg(&args.group)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            if let Err(e) = created {
                if e.code() != Some("BUSYGROUP") {
                    return End::Failed(failed("XGROUP CREATE", &uri, e));
                }
            }
            Source::Stream {
                key: key.clone(),
                group: args.group.clone(),
                consumer: consumer.clone(),
                claim_idle: Duration::from_secs(args.claim_idle),
                pending: Vec::new(),
                own_from: Some("0".into()),
                last_claim: Instant::now(),
            }
        }
    };
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => return End::Failed(e),
    };
    status.connected.store(true, Ordering::Relaxed);
    eprintln!(
        "logcollect collect: reading {} `{key}` of {uri} as `{consumer}`{}, writing under {}",
        match args.data_type {
            DataType::List => "list",
            DataType::Stream => "stream",
        },
        match args.data_type {
            DataType::List => format!(" (processing list `{key}:processing:{consumer}`)"),
            DataType::Stream => format!(" of group `{}`", args.group),
        },
        args.dir.display()
    );
    tokio::spawn(watch_backlog(
        conn.clone(),
        key.clone(),
        args.data_type,
        status.clone(),
    ));
    let batch = usize::from(args.prefetch);
    let max_doc = usize::try_from(args.max_document_bytes).unwrap_or(usize::MAX);
    let mut line = String::with_capacity(1024);
    let mut last_tick = Instant::now();
    let mut stalled = false;
    let end = loop {
        if signals.stopped() {
            break End::Stopped;
        }
        if signals.hup.swap(false, Ordering::Relaxed) {
            let reloaded = match &args.facilities {
                Some(path) => match Facilities::load(path) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        status.error(format!(
                            "SIGHUP: the facilities file is kept as it was: {e}"
                        ));
                        None
                    }
                },
                None => None,
            };
            if let Err(e) = confirm(&mut source, &mut conn, &uri, &mut writers, &status).await {
                break End::Failed(e);
            }
            if let Err(e) = writers.reopen(reloaded) {
                status.error(format!("SIGHUP: cannot close the files: {e}"));
            }
            eprintln!("logcollect collect: SIGHUP: files reopened, facilities reloaded");
        }
        if last_tick.elapsed() >= Duration::from_millis(200) {
            last_tick = Instant::now();
            if let Err(e) = writers.rotate_due(chrono::Local::now()) {
                status.error(format!("rotation failed: {e}"));
            }
            writers.check_paths();
            status
                .open_files
                .store(writers.open_files() as u64, Ordering::Relaxed);
        }
        if stalled {
            // No new item while the files cannot be synced.
            tokio::time::sleep(Duration::from_millis(500)).await;
            match confirm(&mut source, &mut conn, &uri, &mut writers, &status).await {
                Ok(ok) => stalled = !ok,
                Err(e) => break End::Failed(e),
            }
            continue;
        }
        let room = batch.saturating_sub(source.pending()).max(1);
        let items = match source
            .take(&mut conn, &uri, room, source.pending() == 0)
            .await
        {
            Ok(items) => items,
            Err(e) => break End::Failed(e),
        };
        let idle = items.is_empty();
        let mut stopped = false;
        for item in items {
            let msg = Msg {
                body: &item.body,
                app_id: item.service.as_deref(),
                routing_key: &key,
            };
            if deliver(
                &msg,
                &mut writers,
                &status,
                &mut line,
                max_doc,
                &uri,
                signals.wait(),
            )
            .await
            {
                stopped = true;
                break;
            }
            source.written(item);
        }
        if stopped {
            break End::Stopped;
        }
        if idle || writers.ack_point() || source.pending() >= batch / 2 {
            match confirm(&mut source, &mut conn, &uri, &mut writers, &status).await {
                Ok(ok) => stalled = !ok,
                Err(e) => break End::Failed(e),
            }
        }
    };
    // What was written is synced and released; what was taken and not written stays in the
    // processing list (or pending in the group) for the next run.
    let released = confirm(&mut source, &mut conn, &uri, &mut writers, &status).await;
    if let Err(e) = writers.reopen(None) {
        status.error(format!("cannot close the files: {e}"));
    }
    status.connected.store(false, Ordering::Relaxed);
    if matches!(end, End::Stopped) {
        match released {
            Ok(true) => {
                eprintln!("logcollect collect: stopped; every written event synced and released")
            }
            Ok(false) => eprintln!(
                "logcollect collect: stopped; the files could not be synced: what was not \
                 released is read again by the next run"
            ),
            Err(e) => status.error(e),
        }
    }
    end
}

/// The backlog for the status page (items waiting in the list, entries in the stream), every
/// 2 s.
async fn watch_backlog(
    mut conn: MultiplexedConnection,
    key: String,
    data_type: DataType,
    status: Arc<Status>,
) {
    let command = match data_type {
        DataType::List => "LLEN",
        DataType::Stream => "XLEN",
    };
    loop {
        let len: Result<i64, _> = ::redis::cmd(command).arg(&key).query_async(&mut conn).await;
        match len {
            Ok(n) => status.backlog.store(n, Ordering::Relaxed),
            Err(_) => return,
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
