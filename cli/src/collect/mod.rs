//! `logcollect collect`: a durable queue of its own, every event written to its facility's
//! file, a message acked only once all its events are written and synced.

mod compress;
mod facilities;
mod fast;
mod file;
mod format;
pub(crate) mod from_redis;
mod metrics;
mod status;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection};
use logcollect::{Config, Connector};
use tokio::signal::unix::{signal, SignalKind};

use crate::exit;
use crate::render::View;
use facilities::Facilities;
use facilities::LineFormat;
use file::{Modes, Synced, Syncer, Writers};
use serde::de::{self, SeqAccess, Visitor};
use serde_json::value::RawValue;
use status::{Access, Status};

/// Attempts at writing a message before it goes to `DIR/_rejected/`.
const MAX_ATTEMPTS: u32 = 3;
/// Descriptors kept for everything but the files (standard streams, the runtime, the broker
/// connection, signals, the compressor, the dead-letter file), besides the status page's own.
const RESERVED_FDS: u64 = 32;
/// Open files at most when the descriptor limit allows more (each holds up to 128 KiB of
/// lines in memory).
const DEFAULT_MAX_OPEN: u64 = 256;

pub const AFTER_HELP: &str = "\
At-least-once: a message is acked once every event it holds is written and synced (per the
facility's flush_every); killed at any moment, what was not acked is delivered again (an
event may then appear twice, with the same event.id). Memory is bounded by --prefetch.
Signals: SIGHUP syncs and reopens every file (after an external logrotate) and reloads the
facilities file; SIGTERM or Ctrl-C stops consuming, syncs, acks what was written, and exits.
A message that is not a JSON document is written raw to DIR/_raw/root.log; one that still
cannot be written after 3 attempts goes whole, with the reason, to DIR/_rejected/rejected.log
and is acked. See cli/README.md, \"Central files\", for the facilities file and the file names.
With --from redis://: a list item is trimmed from the collector's processing list, a stream
entry acknowledged (XACK), only once written and synced; see cli/README.md, \"From Redis\".

Exit status:
  0    stopped by SIGTERM or Ctrl-C after syncing
  1    the connection could not be opened or was lost
  2    usage or configuration error (the facilities file, --dir, the status page's access)";

/// `x-queue-type` of the collector's queue. (A stream is left out: its consumers each read
/// everything, where collectors on one queue split the work.)
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueType {
    Classic,
    Quorum,
}

#[derive(Args, Debug)]
pub struct CollectArgs {
    /// Directory the files are written under: DIR/<service>/<facility>.log
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    /// The collector's own durable queue (shared by collectors that split the work)
    #[arg(long, value_name = "NAME", default_value = "logcollect-files")]
    pub queue: String,

    /// The type the queue is declared with: `quorum` (replicated on a cluster's nodes) or
    /// `classic`. Default: the virtual host's default queue type. A queue's type cannot change
    /// once it exists: declared as another, the broker refuses (PRECONDITION_FAILED)
    #[arg(long, value_name = "TYPE", value_enum)]
    pub queue_type: Option<QueueType>,

    /// Binding key for the queue (default `#`); repeat to bind several. With --from
    /// redis://, the list or stream read (default `logstash`)
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,

    /// Read a Redis list or stream instead of the broker: redis://[:PASSWORD@]HOST[:PORT][/DB],
    /// or rediss:// for TLS
    #[arg(long, value_name = "URI")]
    pub from: Option<String>,

    /// With --from: `list` (items moved into this collector's processing list
    /// KEY:processing:CONSUMER, trimmed once synced) or `stream` (a consumer group, XACK once
    /// synced)
    #[arg(long, value_name = "TYPE", value_enum, default_value = "list")]
    pub data_type: from_redis::DataType,

    /// With --from and a stream: the consumer group collectors share
    #[arg(long, value_name = "NAME", default_value = "logcollect")]
    pub group: String,

    /// With --from: this collector's name (its processing list, its group consumer); keep it
    /// the same across restarts. Default: the host's name
    #[arg(long, value_name = "NAME")]
    pub consumer: Option<String>,

    /// With --from and a stream: seconds another consumer's entry stays pending before this
    /// one claims it (XAUTOCLAIM), as that consumer is taken for dead
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub claim_idle: u64,

    /// Facilities file (TOML): files, rotation, compression, retention, fsync cadence.
    /// Without one: DIR/<service>/root.log, text lines, synced every 1000 events (and every
    /// 200 ms), never rotated
    #[arg(long, value_name = "FILE")]
    pub facilities: Option<PathBuf>,

    /// Serve the status page on ADDR (127.0.0.1:9021 when given without a value)
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9021")]
    pub http: Option<SocketAddr>,

    /// The status page's stylesheet, instead of the built-in one
    #[arg(long, value_name = "FILE", requires = "http")]
    pub css: Option<PathBuf>,

    /// Messages delivered and not yet acked at most (the memory bound: N × the largest body)
    #[arg(long, value_name = "N", default_value_t = 500,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,

    /// A host name the status page also answers to (besides localhost, 127.0.0.1, [::1]);
    /// repeat for several. Requests naming any other Host are refused (DNS rebinding)
    #[arg(long = "http-allow-host", value_name = "NAME", requires = "http")]
    pub http_allow_hosts: Vec<String>,

    /// Bearer token the status page's /api/* require (`Authorization: Bearer TOKEN` or
    /// `?token=TOKEN`); required when --http binds anything but loopback
    #[arg(
        long,
        value_name = "TOKEN",
        requires = "http",
        conflicts_with = "http_token_file"
    )]
    pub http_token: Option<String>,

    /// --http-token, read from FILE (its first line), so it is not in the process list
    #[arg(long, value_name = "FILE", requires = "http")]
    pub http_token_file: Option<PathBuf>,

    /// /healthz answers 503 once every write has been failing for longer than SECONDS (a
    /// full disk, a directory made unwritable), besides while the broker connection is down
    #[arg(long, value_name = "SECONDS", default_value_t = 60, requires = "http",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub unhealthy_after: u64,

    /// Live connections to the status page at most; one more is answered 503
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub http_max_connections: u16,

    /// Files open at most (least recently used ones are synced and closed past it); by
    /// default 256, or fewer when the descriptor limit (ulimit -n) asks
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_open_files: Option<u64>,

    /// A document longer than this is written cut to it, with a marker
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_document_bytes: u64,

    /// Mode of the files created (octal; set as given, the umask does not apply)
    #[arg(long, value_name = "MODE", default_value = "640", value_parser = parse_mode)]
    pub file_mode: u32,

    /// Mode of the directories created (octal)
    #[arg(long, value_name = "MODE", default_value = "750", value_parser = parse_mode)]
    pub dir_mode: u32,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.trim_start_matches("0o");
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(format!("`{s}` is not an octal mode such as 640")),
    }
}

/// The status page's access rule, checked before anything starts.
fn http_access(args: &CollectArgs) -> Result<Access, String> {
    let token = match (&args.http_token, &args.http_token_file) {
        (Some(t), _) => Some(t.trim().to_string()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --http-token-file {}: {e}", path.display()))?;
            Some(text.lines().next().unwrap_or_default().trim().to_string())
        }
        (None, None) => None,
    };
    if token.as_deref() == Some("") {
        return Err("the status page's token is empty".into());
    }
    if let Some(addr) = args.http {
        if !addr.ip().is_loopback() && token.is_none() {
            return Err(format!(
                "--http {addr} is not a loopback address: whoever reaches it could read the \
                 logs; give a token (--http-token-file FILE, or --http-token TOKEN), or bind \
                 127.0.0.1"
            ));
        }
    }
    Ok(Access {
        allow_hosts: args
            .http_allow_hosts
            .iter()
            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
            .collect(),
        token,
    })
}

/// The cap on open files: what the descriptor limit leaves once the rest is set aside.
fn max_open_files(args: &CollectArgs) -> Result<usize, String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        1024
    };
    let http = if args.http.is_some() {
        u64::from(args.http_max_connections) + status::REFUSING as u64 + 1
    } else {
        0
    };
    let room = soft.saturating_sub(RESERVED_FDS).saturating_sub(http);
    if room < 4 {
        return Err(format!(
            "the descriptor limit ({soft}, ulimit -n) leaves {room} for files once \
             {RESERVED_FDS} are set aside, and {http} for the status page: raise it, or lower \
             --http-max-connections"
        ));
    }
    let cap = match args.max_open_files {
        Some(n) if n > room => {
            eprintln!(
                "logcollect collect: --max-open-files {n} lowered to {room}: the descriptor \
                 limit is {soft}"
            );
            room
        }
        Some(n) => n,
        None => room.min(DEFAULT_MAX_OPEN),
    };
    Ok(usize::try_from(cap).unwrap_or(usize::MAX))
}

/// Why the consume loop ended.
enum End {
    Stopped,
    Failed(String),
}

pub fn run(config: &Config, args: CollectArgs) -> u8 {
    let facilities = match &args.facilities {
        Some(path) => match Facilities::load(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("logcollect collect: {e}");
                return exit::USAGE;
            }
        },
        None => Facilities::default(),
    };
    let access = match http_access(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("logcollect collect: {e}");
            return exit::USAGE;
        }
    };
    let max_open = match max_open_files(&args) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("logcollect collect: {e}");
            return exit::USAGE;
        }
    };
    let modes = Modes {
        file: args.file_mode,
        dir: args.dir_mode,
    };
    if let Err(e) = file::create_dirs(&args.dir, modes.dir) {
        eprintln!(
            "logcollect collect: cannot create --dir {}: {e}",
            args.dir.display()
        );
        return exit::USAGE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("logcollect collect: cannot start a runtime: {e}");
            return exit::FAILED;
        }
    };
    let redis = match args
        .from
        .as_deref()
        .map(|uri| from_redis::connector(config, uri))
        .transpose()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("logcollect collect: {e}");
            return exit::USAGE;
        }
    };
    let source = match &args.from {
        Some(uri) => format!(
            "{} `{}`",
            from_redis::masked(uri),
            from_redis::key(&args).unwrap_or_default()
        ),
        None => args.queue.clone(),
    };
    let mut status = Status::new(
        source,
        args.dir.clone(),
        args.css.clone(),
        args.http.is_some(),
        access,
    );
    status.unhealthy_after = Duration::from_secs(args.unhealthy_after);
    let status = Arc::new(status);
    let (compressor, compress_thread) = compress::Compressor::start(status.clone());
    let writers = Writers::new(
        args.dir.clone(),
        facilities,
        modes,
        max_open,
        compressor,
        status.clone(),
    );
    let end = runtime.block_on(async {
        if let Some(addr) = args.http {
            let cap = usize::from(args.http_max_connections);
            match status::bind(addr, cap, status.connections.clone()).await {
                Ok(listener) => {
                    eprintln!("logcollect collect: status page on http://{addr}/");
                    tokio::spawn(status::serve(status.clone(), listener));
                }
                Err(e) => {
                    return Err(format!("cannot serve the status page on {addr}: {e}"));
                }
            }
        }
        tokio::spawn(status.clone().measure_rate());
        Ok(match redis {
            Some(connector) => from_redis::collect(&args, connector, writers, status.clone()).await,
            None => collect(config, &args, writers, status.clone()).await,
        })
    });
    // The compressor finishes the files already rotated before the process exits.
    let _ = compress_thread.join();
    runtime.shutdown_timeout(Duration::from_secs(1));
    match end {
        Ok(End::Stopped) => exit::OK,
        Ok(End::Failed(e)) => {
            eprintln!("logcollect collect: {e}");
            if args.from.is_none() {
                eprintln!("  (`logcollect check` walks the whole path to the broker)");
            }
            exit::FAILED
        }
        Err(e) => {
            eprintln!("logcollect collect: {e}");
            exit::USAGE
        }
    }
}

async fn collect(
    config: &Config,
    args: &CollectArgs,
    writers: Writers,
    status: Arc<Status>,
) -> End {
    // The nodes of `broker_uri` in order, with the TLS settings: the library's connector.
    let connector = match Connector::new(config, format!("logcollect collect {}", args.queue)) {
        Ok(connector) => connector,
        Err(e) => return End::Failed(e.to_string()),
    };
    let connection = match connector.connect().await {
        Err(e) => return End::Failed(format!("cannot connect to the broker: {e}")),
        Ok(c) => c.connection,
    };
    let keys = amqp_keys(args);
    let (channel, consumer) = match subscribe(&connection, &connector, config, args, &keys).await {
        Ok(x) => x,
        Err(e) => return End::Failed(e),
    };
    status.connected.store(true, Ordering::Relaxed);
    eprintln!(
        "logcollect collect: consuming queue `{}` (bound to `{}` with {}), writing under {}",
        args.queue,
        config.exchange,
        keys.iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", "),
        args.dir.display()
    );
    match connection.create_channel().await {
        Ok(ch) => {
            tokio::spawn(watch_backlog(ch, args.queue.clone(), status.clone()));
        }
        Err(e) => status.error(format!("cannot open a channel for the backlog figure: {e}")),
    }
    let end = consume(&channel, consumer, args, writers, status.clone()).await;
    status.connected.store(false, Ordering::Relaxed);
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        connection.close(200, ShortString::from("logcollect collect done")),
    )
    .await;
    end
}

/// The binding keys: `--key`, or every routing key.
fn amqp_keys(args: &CollectArgs) -> Vec<String> {
    if args.keys.is_empty() {
        vec!["#".to_string()]
    } else {
        args.keys.clone()
    }
}

async fn subscribe(
    connection: &Connection,
    connector: &Connector,
    config: &Config,
    args: &CollectArgs,
    keys: &[String],
) -> Result<(Channel, lapin::Consumer), String> {
    let exchange = ShortString::from(config.exchange.as_str());
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| format!("cannot open a channel: {e}"))?;
    // Declared as the shipper declares it, so the collector can start first.
    connector
        .declare_exchange(&channel)
        .await
        .map_err(|e| format!("cannot declare exchange `{exchange}`: {e}"))?;
    let channel = if channel.status().connected() {
        channel
    } else {
        connection
            .create_channel()
            .await
            .map_err(|e| format!("cannot open a channel: {e}"))?
    };
    let mut queue_arguments = FieldTable::default();
    if let Some(kind) = args.queue_type {
        let kind = match kind {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        };
        queue_arguments.insert(
            ShortString::from("x-queue-type"),
            lapin::types::AMQPValue::LongString(kind.into()),
        );
    }
    channel
        .queue_declare(
            ShortString::from(args.queue.as_str()),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            queue_arguments,
        )
        .await
        .map_err(|e| format!("cannot declare queue `{}`: {e}", args.queue))?;
    for key in keys {
        channel
            .queue_bind(
                ShortString::from(args.queue.as_str()),
                exchange.clone(),
                ShortString::from(key.as_str()),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| {
                format!(
                    "cannot bind `{}` to `{exchange}` with `{key}`: {e}",
                    args.queue
                )
            })?;
    }
    channel
        .basic_qos(args.prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| format!("cannot set the prefetch: {e}"))?;
    let consumer = channel
        .basic_consume(
            ShortString::from(args.queue.as_str()),
            ShortString::from("logcollect-collect"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("cannot consume `{}`: {e}", args.queue))?;
    Ok((channel, consumer))
}

/// The queue's backlog for the status page, every 2 s, on a channel of its own.
async fn watch_backlog(channel: Channel, queue: String, status: Arc<Status>) {
    loop {
        let declared = channel
            .queue_declare(
                ShortString::from(queue.as_str()),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(q) => status
                .backlog
                .store(i64::from(q.message_count()), Ordering::Relaxed),
            Err(_) => return,
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Acks written messages once the files they went to are synced. Syncs run in rounds on
/// the syncer thread while the next messages are read and written; a round's answer acks
/// every message written before it started.
struct Acks {
    /// Delivery tag of the newest message written (tags start at 1; 0: none).
    written: u64,
    /// The newest tag a round was sent for.
    sent: u64,
    /// The newest tag acked (a `multiple` ack: every one up to it).
    acked: u64,
    /// Messages written since the last round started.
    pending: usize,
    /// Rounds sent to the syncer and not answered yet.
    in_flight: usize,
    /// A background sync failed: no answer acks anything until every file is synced again
    /// here (`ack`).
    failed: bool,
    /// A sync failed: no message is taken until one succeeds, tried again after `pause`.
    stalled: bool,
    pause: Duration,
    syncer: Syncer,
    answers: tokio::sync::mpsc::UnboundedReceiver<Synced>,
}

impl Acks {
    /// Sends what is written so far to the syncer: acked once it answers.
    fn start_round(&mut self, writers: &mut Writers, status: &Status) {
        self.pending = 0;
        let tag = self.written;
        if tag == self.sent {
            return;
        }
        if self.failed || self.stalled {
            // The retry after the pause syncs and acks everything.
            return;
        }
        let sent = writers
            .start_sync()
            .and_then(|files| self.syncer.submit(files, tag));
        match sent {
            Ok(()) => {
                self.in_flight += 1;
                self.sent = tag;
            }
            Err(e) => self.fail(&e, writers, status),
        }
    }

    fn fail(&mut self, e: &std::io::Error, writers: &mut Writers, status: &Status) {
        status.error(format!(
            "cannot sync the files: {e}; nothing is acked, trying again in {:?}",
            self.pause
        ));
        self.failed = true;
        self.stalled = true;
        writers.mark_unsynced();
    }

    /// One answer of the syncer: its messages acked, or, after a failure, nothing until
    /// `ack` syncs every file again.
    async fn answered(
        &mut self,
        (rounds, tag, result): Synced,
        channel: &Channel,
        writers: &mut Writers,
        status: &Status,
    ) -> Result<(), String> {
        self.in_flight = self.in_flight.saturating_sub(rounds);
        match result {
            Ok(()) if !self.failed && tag > self.acked => {
                channel
                    .basic_ack(tag, BasicAckOptions { multiple: true })
                    .await
                    .map_err(|e| format!("cannot ack: {e}"))?;
                self.acked = tag;
            }
            Ok(()) => {}
            Err(e) => self.fail(&e, writers, status),
        }
        Ok(())
    }

    /// Everything up to `last`, in one `multiple` ack, once the rounds in flight are answered
    /// and every file is synced here. A failed sync is not fatal: nothing is acked, no new
    /// message is taken, and the sync is tried again after a pause (0.5 s, doubling to 30 s).
    /// `Err` only when the broker cannot take the ack.
    async fn ack(
        &mut self,
        channel: &Channel,
        writers: &mut Writers,
        status: &Status,
    ) -> Result<(), String> {
        while self.in_flight > 0 {
            match self.answers.recv().await {
                Some(answer) => self.answered(answer, channel, writers, status).await?,
                None => {
                    self.in_flight = 0;
                    let gone = std::io::Error::other("the sync thread is gone");
                    self.fail(&gone, writers, status);
                }
            }
        }
        let tag = self.written;
        if tag == self.acked {
            self.stalled = false;
            self.failed = false;
            return Ok(());
        }
        if let Err(e) = writers.sync_all() {
            status.error(format!(
                "cannot sync the files: {e}; nothing is acked, trying again in {:?}",
                self.pause
            ));
            self.stalled = true;
            return Ok(());
        }
        if self.stalled {
            eprintln!("logcollect collect: the files are synced again");
            self.stalled = false;
            self.pause = Duration::from_millis(500);
        }
        self.failed = false;
        channel
            .basic_ack(tag, BasicAckOptions { multiple: true })
            .await
            .map_err(|e| format!("cannot ack: {e}"))?;
        self.acked = tag;
        self.sent = tag;
        self.pending = 0;
        Ok(())
    }
}

async fn consume(
    channel: &Channel,
    mut consumer: lapin::Consumer,
    args: &CollectArgs,
    mut writers: Writers,
    status: Arc<Status>,
) -> End {
    let (mut hup, mut term) = match (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(h), Ok(t)) => (h, t),
        _ => return End::Failed("cannot install the SIGHUP/SIGTERM handlers".into()),
    };
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    // Rotation schedules, moved files and idle acks: a timer, not only arriving messages.
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (syncer, answers) = match Syncer::start() {
        Ok(s) => s,
        Err(e) => return End::Failed(format!("cannot start the sync thread: {e}")),
    };
    let mut acks = Acks {
        written: 0,
        sent: 0,
        acked: 0,
        pending: 0,
        in_flight: 0,
        failed: false,
        stalled: false,
        pause: Duration::from_millis(500),
        syncer,
        answers,
    };
    let prefetch = usize::from(args.prefetch);
    let max_doc = usize::try_from(args.max_document_bytes).unwrap_or(usize::MAX);
    let mut line = String::with_capacity(1024);
    let end = loop {
        let delivery = tokio::select! {
            _ = &mut interrupt => break End::Stopped,
            _ = term.recv() => break End::Stopped,
            _ = hup.recv() => {
                let reloaded = match &args.facilities {
                    Some(path) => match Facilities::load(path) {
                        Ok(f) => Some(f),
                        Err(e) => {
                            status.error(format!("SIGHUP: the facilities file is kept as it was: {e}"));
                            None
                        }
                    },
                    None => None,
                };
                if let Err(e) = acks.ack(channel, &mut writers, &status).await {
                    break End::Failed(e);
                }
                if let Err(e) = writers.reopen(reloaded) {
                    status.error(format!("SIGHUP: cannot close the files: {e}"));
                }
                eprintln!("logcollect collect: SIGHUP: files reopened, facilities reloaded");
                continue;
            }
            _ = tokio::time::sleep(acks.pause), if acks.stalled => {
                acks.pause = (acks.pause * 2).min(Duration::from_secs(30));
                if let Err(e) = acks.ack(channel, &mut writers, &status).await {
                    break End::Failed(e);
                }
                continue;
            }
            _ = tick.tick() => {
                let now = chrono::Local::now();
                if let Err(e) = writers.rotate_due(now) {
                    status.error(format!("rotation failed: {e}"));
                }
                writers.check_paths();
                if !acks.stalled {
                    acks.start_round(&mut writers, &status);
                }
                status.open_files.store(writers.open_files() as u64, Ordering::Relaxed);
                continue;
            }
            Some(answer) = acks.answers.recv(), if acks.in_flight > 0 => {
                if let Err(e) = acks.answered(answer, channel, &mut writers, &status).await {
                    break End::Failed(e);
                }
                continue;
            }
            next = consumer.next(), if !acks.stalled => next,
        };
        let delivery = match delivery {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                break End::Failed(format!("the connection to the broker was lost: {e}"))
            }
            None => {
                break End::Failed("the broker cancelled the subscription (queue deleted?)".into())
            }
        };
        let app_id = delivery.properties.app_id().as_ref().map(|s| s.as_str());
        let msg = Msg {
            body: &delivery.data,
            app_id,
            routing_key: delivery.routing_key.as_str(),
        };
        let stop = async {
            tokio::select! {
                _ = &mut interrupt => {}
                _ = term.recv() => {}
            }
        };
        let stopped = deliver(
            &msg,
            &mut writers,
            &status,
            &mut line,
            max_doc,
            &args.queue,
            stop,
        )
        .await;
        if stopped {
            break End::Stopped;
        }
        acks.written = delivery.delivery_tag;
        acks.pending += 1;
        if writers.ack_point() || acks.pending >= prefetch / 2 {
            acks.start_round(&mut writers, &status);
        }
    };
    // Stop consuming, then sync and ack what was written; the rest is redelivered.
    let _ = channel
        .basic_cancel(
            ShortString::from("logcollect-collect"),
            BasicCancelOptions::default(),
        )
        .await;
    acks.stalled = false;
    if let Err(e) = acks.ack(channel, &mut writers, &status).await {
        status.error(e);
    }
    if let Err(e) = writers.reopen(None) {
        status.error(format!("cannot close the files: {e}"));
    }
    if matches!(end, End::Stopped) {
        if acks.written == acks.acked {
            eprintln!("logcollect collect: stopped; every written event synced and acked");
        } else {
            eprintln!(
                "logcollect collect: stopped; the files could not be synced: the messages not \
                 acked are delivered again"
            );
        }
    }
    drop(writers);
    end
}

/// One message as the sources hand it over: an AMQP delivery's body, or a Redis list value or
/// stream entry's document.
pub(crate) struct Msg<'a> {
    pub body: &'a [u8],
    /// Who published it (AMQP `app_id`, a stream entry's `service`): the service of documents
    /// that do not name one.
    pub app_id: Option<&'a str>,
    /// Where it came from (the routing key, the Redis key): the raw file's name.
    pub routing_key: &'a str,
}

/// Writes one message in place, however many attempts it takes: an attempt starts after the
/// events the last one wrote, so none is written twice; after MAX_ATTEMPTS the message goes
/// whole to DIR/_rejected/, and it counts as done either way. `true` when `stop` ended it
/// before it was written (it is then not done: the source delivers it again).
pub(crate) async fn deliver(
    msg: &Msg<'_>,
    writers: &mut Writers,
    status: &Status,
    line: &mut String,
    max_doc: usize,
    source: &str,
    stop: impl std::future::Future<Output = ()>,
) -> bool {
    tokio::pin!(stop);
    let mut done = 0usize;
    let mut attempts = 0u32;
    let mut pause = Duration::from_millis(500);
    loop {
        let now = chrono::Local::now();
        let written = write_message(
            msg,
            writers,
            status,
            now,
            line,
            done,
            attempts == 0,
            max_doc,
        );
        let (at, e) = match written {
            Ok(()) => {
                status.write_succeeded();
                break false;
            }
            Err(failure) => failure,
        };
        status.write_failed();
        done = at;
        attempts = attempts.saturating_add(1);
        status.error(format!(
            "cannot write a message (attempt {attempts} of {MAX_ATTEMPTS}; {done} of its \
             events written, none twice): {e}"
        ));
        writers.abandon_all();
        if attempts >= MAX_ATTEMPTS {
            let record = rejection(msg, source, &e, attempts, done);
            match writers.reject(&record) {
                Ok(path) => {
                    status.rejected_messages.fetch_add(1, Ordering::Relaxed);
                    status.error(format!(
                        "message rejected after {attempts} attempts: kept whole in {} \
                         ({done} of its events were written to their files)",
                        path.display()
                    ));
                    break false;
                }
                Err(re) => status.error(format!(
                    "cannot keep the message in DIR/{}/ either: {re}; it stays unacked and \
                     is tried again",
                    file::REJECTED_DIR
                )),
            }
        }
        let slept = tokio::select! {
            _ = &mut stop => false,
            _ = tokio::time::sleep(pause) => true,
        };
        if !slept {
            break true;
        }
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

/// The dead-letter record of a message: the body whole (as text when it is UTF-8, else in
/// hex), where it came from, and why it was not written.
fn rejection(
    msg: &Msg<'_>,
    queue: &str,
    error: &std::io::Error,
    attempts: u32,
    written: usize,
) -> serde_json::Value {
    let mut record = serde_json::json!({
        "rejected_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "queue": queue,
        "routing_key": msg.routing_key,
        "app_id": msg.app_id,
        "reason": error.to_string(),
        "attempts": attempts,
        "events_written_before": written,
    });
    if let serde_json::Value::Object(map) = &mut record {
        match std::str::from_utf8(msg.body) {
            Ok(text) => map.insert("body".into(), text.into()),
            Err(_) => {
                let hex: String = msg.body.iter().map(|b| format!("{b:02x}")).collect();
                map.insert("body_hex".into(), hex.into())
            }
        };
    }
    record
}

/// What one message's documents need while they are written.
struct Ctx<'w, 'a> {
    writers: &'w mut Writers,
    status: &'w Status,
    now: chrono::DateTime<chrono::Local>,
    line: &'w mut String,
    app_id: Option<&'a str>,
    routing_key: &'a str,
    max_doc: usize,
    /// The newest documents written (text and `service:facility`), for the status page.
    recent: VecDeque<(&'a str, String)>,
    /// Written before those.
    skipped: u64,
}

impl<'a> Ctx<'_, 'a> {
    /// Writes one element of a body: a document to its facility's file, cut past
    /// `max_doc`; anything else raw.
    fn document(&mut self, text: &'a str) -> std::io::Result<()> {
        if !text.starts_with('{') {
            return self.raw(text);
        }
        let (service, logger);
        if text.len() > self.max_doc {
            let head = fast::Head::parse(text);
            (service, logger) = (head.service(self.app_id), head.logger());
            let format = self.writers.format_of(&service, &logger);
            let mut out = Vec::with_capacity(self.max_doc + 256);
            format::cut(&mut out, format, &head, self.app_id, text, self.max_doc);
            self.writers
                .write_line(&service, &logger, &head.host(), &out, self.now)?;
            self.status.cut_documents.fetch_add(1, Ordering::Relaxed);
            self.status.events.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let label = match fast::Event::parse(text) {
            Some(e)
                if self.writers.format_of(&e.service(self.app_id), &e.logger())
                    == LineFormat::Text =>
            {
                let (service, logger) = (e.service(self.app_id), e.logger());
                self.line.clear();
                e.text(self.line);
                self.writers.write_line(
                    &service,
                    &logger,
                    &e.host(),
                    self.line.as_bytes(),
                    self.now,
                )?;
                self.status
                    .keeps_recent()
                    .then(|| self.writers.label(&service, &logger))
            }
            _ => match serde_json::from_str::<crate::json::Json>(text) {
                Ok(json) => {
                    let view = View::of(&json, self.app_id);
                    let facility = self.writers.write(&view, &json, self.now)?;
                    Some(format!("{}:{facility}", view.service))
                }
                Err(_) => return self.raw(text),
            },
        };
        self.status.events.fetch_add(1, Ordering::Relaxed);
        if let (Some(label), true) = (label, self.status.keeps_recent()) {
            if self.recent.len() >= status::RECENT {
                self.recent.pop_front();
                self.skipped += 1;
            }
            self.recent.push_back((text, label));
        }
        Ok(())
    }

    /// Something that is not a document, kept as one raw line.
    fn raw(&mut self, text: &str) -> std::io::Result<()> {
        self.writers
            .write_raw(self.routing_key, text.as_bytes(), self.now)?;
        self.status.raw_messages.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Walks an array body element by element, as it is read (no list of its documents is
/// built), writing those from `skip` on.
struct Each<'c, 'w, 'a> {
    ctx: &'c mut Ctx<'w, 'a>,
    base: usize,
    skip: usize,
    /// Elements read so far.
    index: usize,
    /// Byte offset just past the last element read.
    end: usize,
    failed: Option<(usize, std::io::Error)>,
}

struct EachVisitor<'s, 'c, 'w, 'a>(&'s mut Each<'c, 'w, 'a>);

impl<'a> Visitor<'a> for EachVisitor<'_, '_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of documents")
    }

    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element::<&'a RawValue>()? {
            let each = &mut *self.0;
            let text = raw.get();
            each.end = (text.as_ptr() as usize).saturating_sub(each.base) + text.len();
            if each.index >= each.skip {
                if let Err(e) = each.ctx.document(text) {
                    each.failed = Some((each.index, e));
                    return Err(de::Error::custom("stopped by a write failure"));
                }
            }
            each.index += 1;
        }
        Ok(())
    }
}

/// Writes the events of one message (an object, or an array of documents) from its
/// `skip`-th on. A body that is not documents is written raw, never dropped; in an array,
/// an element that is not a document is written raw alone, and the rest of a body broken
/// part-way is written raw. `Err` gives how many events are written (an attempt after it
/// starts there) and why the next one was not.
#[allow(clippy::too_many_arguments)]
fn write_message(
    msg: &Msg<'_>,
    writers: &mut Writers,
    status: &Status,
    now: chrono::DateTime<chrono::Local>,
    line: &mut String,
    skip: usize,
    first: bool,
    max_doc: usize,
) -> Result<(), (usize, std::io::Error)> {
    if first {
        status.messages.fetch_add(1, Ordering::Relaxed);
    }
    let (app_id, body, routing_key) = (msg.app_id, msg.body, msg.routing_key);
    let raw_whole = |writers: &mut Writers| {
        if skip > 0 {
            return Ok(());
        }
        writers
            .write_raw(routing_key, body, now)
            .map_err(|e| (0, e))?;
        status.raw_messages.fetch_add(1, Ordering::Relaxed);
        Ok(())
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return raw_whole(writers);
    };
    let start = text.trim_start_matches([' ', '\t', '\n', '\r']);
    let mut ctx = Ctx {
        writers,
        status,
        now,
        line,
        app_id,
        routing_key,
        max_doc,
        recent: VecDeque::new(),
        skipped: 0,
    };
    if start.starts_with('{') {
        match serde_json::from_str::<&RawValue>(text) {
            Ok(doc) if skip == 0 => ctx.document(doc.get()).map_err(|e| (0, e))?,
            Ok(_) => {}
            Err(_) => return raw_whole(ctx.writers),
        }
    } else if start.starts_with('[') {
        let mut each = Each {
            ctx: &mut ctx,
            base: text.as_ptr() as usize,
            skip,
            index: 0,
            end: 0,
            failed: None,
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let read = de::Deserializer::deserialize_seq(&mut de, EachVisitor(&mut each))
            .and_then(|()| de.end());
        if let Some(failed) = each.failed.take() {
            return Err(failed);
        }
        if read.is_err() {
            let (index, end) = (each.index, each.end);
            if index == 0 {
                return raw_whole(ctx.writers);
            }
            if index >= skip {
                ctx.raw(&text[end..]).map_err(|e| (index, e))?;
            }
        }
    } else {
        return raw_whole(ctx.writers);
    }
    if status.keeps_recent() {
        let app: Option<Arc<str>> = app_id.map(Arc::from);
        let recent = std::mem::take(&mut ctx.recent);
        status.recent(
            ctx.skipped,
            recent
                .into_iter()
                .map(|(doc, facility)| status::RecentEvent {
                    doc: doc.into(),
                    facility,
                    app_id: app.clone(),
                }),
        );
    }
    Ok(())
}
