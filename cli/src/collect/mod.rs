//! `logcollect collect`: a durable queue of its own, every event written to its facility's
//! file, a message acked only once all its events are written and synced.

mod compress;
mod facilities;
mod fast;
mod file;
mod format;
mod status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection};
use logcollect::{Config, Connector};
use tokio::signal::unix::{signal, SignalKind};

use crate::exit;
use crate::render::View;
use facilities::Facilities;
use facilities::LineFormat;
use file::Writers;
use serde_json::value::RawValue;
use status::Status;

pub const AFTER_HELP: &str = "\
At-least-once: a message is acked once every event it holds is written and synced (per the
facility's flush_every); killed at any moment, what was not acked is delivered again (an
event may then appear twice, with the same event.id). Memory is bounded by --prefetch.
Signals: SIGHUP syncs and reopens every file (after an external logrotate) and reloads the
facilities file; SIGTERM or Ctrl-C stops consuming, syncs, acks what was written, and exits.
A message that is not a JSON document is written raw to DIR/_raw/root.log. See README.md,
\"Central files\", for the facilities file.

Exit status:
  0    stopped by SIGTERM or Ctrl-C after syncing
  1    the connection could not be opened or was lost
  2    usage or configuration error (the facilities file, --dir)";

#[derive(Args, Debug)]
pub struct CollectArgs {
    /// Directory the files are written under: DIR/<service>/<facility>.log
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    /// The collector's own durable queue (shared by collectors that split the work)
    #[arg(long, value_name = "NAME", default_value = "logcollect-files")]
    pub queue: String,

    /// Binding key for the queue; repeat to bind several
    #[arg(long = "key", value_name = "KEY", default_value = "#")]
    pub keys: Vec<String>,

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
    if let Err(e) = std::fs::create_dir_all(&args.dir) {
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
    let status = Arc::new(Status::new(
        args.queue.clone(),
        args.dir.clone(),
        args.css.clone(),
    ));
    let (compressor, compress_thread) = compress::Compressor::start(status.clone());
    let writers = Writers::new(args.dir.clone(), facilities, compressor, status.clone());
    let end = runtime.block_on(async {
        if let Some(addr) = args.http {
            match status::bind(addr).await {
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
        Ok(collect(config, &args, writers, status.clone()).await)
    });
    // The compressor finishes the files already rotated before the process exits.
    let _ = compress_thread.join();
    runtime.shutdown_timeout(Duration::from_secs(1));
    match end {
        Ok(End::Stopped) => exit::OK,
        Ok(End::Failed(e)) => {
            eprintln!("logcollect collect: {e}");
            eprintln!("  (`logcollect check` walks the whole path to the broker)");
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
    let (channel, consumer) = match subscribe(&connection, &connector, config, args).await {
        Ok(x) => x,
        Err(e) => return End::Failed(e),
    };
    status.connected.store(true, Ordering::Relaxed);
    eprintln!(
        "logcollect collect: consuming queue `{}` (bound to `{}` with {}), writing under {}",
        args.queue,
        config.exchange,
        args.keys
            .iter()
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

async fn subscribe(
    connection: &Connection,
    connector: &Connector,
    config: &Config,
    args: &CollectArgs,
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
    channel
        .queue_declare(
            ShortString::from(args.queue.as_str()),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("cannot declare queue `{}`: {e}", args.queue))?;
    for key in &args.keys {
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

/// Acks written messages, or hands them back after a write failure.
struct Acks {
    /// Delivery tag of the newest message written and not yet acked.
    last: Option<u64>,
    pending: usize,
}

impl Acks {
    /// Everything up to `last`, in one `multiple` ack, once the files are synced.
    async fn ack(&mut self, channel: &Channel, writers: &mut Writers) -> Result<(), String> {
        let Some(tag) = self.last else {
            return Ok(());
        };
        writers
            .sync_all()
            .map_err(|e| format!("cannot sync the files: {e}"))?;
        channel
            .basic_ack(tag, BasicAckOptions { multiple: true })
            .await
            .map_err(|e| format!("cannot ack: {e}"))?;
        self.last = None;
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
    // Rotation schedules and idle acks: a timer, not only arriving messages.
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut acks = Acks {
        last: None,
        pending: 0,
    };
    let mut backoff = Duration::from_millis(500);
    let prefetch = usize::from(args.prefetch);
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
                if let Err(e) = acks.ack(channel, &mut writers).await {
                    break End::Failed(e);
                }
                if let Err(e) = writers.reopen(reloaded) {
                    status.error(format!("SIGHUP: cannot close the files: {e}"));
                }
                eprintln!("logcollect collect: SIGHUP: files reopened, facilities reloaded");
                continue;
            }
            _ = tick.tick() => {
                let now = chrono::Local::now();
                if let Err(e) = writers.rotate_due(now) {
                    status.error(format!("rotation failed: {e}"));
                }
                if let Err(e) = acks.ack(channel, &mut writers).await {
                    break End::Failed(e);
                }
                if let Err(e) = writers.close_if_too_many(512) {
                    status.error(format!("cannot close idle files: {e}"));
                }
                status.open_files.store(writers.open_files() as u64, Ordering::Relaxed);
                continue;
            }
            next = consumer.next() => next,
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
        let now = chrono::Local::now();
        let written = write_message(&delivery, &mut writers, &status, now, &mut line);
        match written {
            Ok(()) => {
                backoff = Duration::from_millis(500);
                acks.last = Some(delivery.delivery_tag);
                acks.pending += 1;
                if writers.ack_point() || acks.pending >= prefetch / 2 {
                    if let Err(e) = acks.ack(channel, &mut writers).await {
                        break End::Failed(e);
                    }
                }
            }
            Err(e) => {
                // Nothing is acked that is not on disk: this message and those written since
                // the last ack go back to the queue; a pause keeps a full disk from spinning.
                status.error(format!(
                    "cannot write: {e}; the message goes back to the queue"
                ));
                let _ = writers.reopen(None);
                let _ = channel
                    .basic_nack(
                        delivery.delivery_tag,
                        BasicNackOptions {
                            multiple: true,
                            requeue: true,
                        },
                    )
                    .await;
                acks.last = None;
                acks.pending = 0;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    // Stop consuming, then sync and ack what was written; the rest is redelivered.
    let _ = channel
        .basic_cancel(
            ShortString::from("logcollect-collect"),
            BasicCancelOptions::default(),
        )
        .await;
    if let Err(e) = acks.ack(channel, &mut writers).await {
        status.error(e);
    }
    if let Err(e) = writers.reopen(None) {
        status.error(format!("cannot close the files: {e}"));
    }
    if matches!(end, End::Stopped) {
        eprintln!("logcollect collect: stopped; every written event synced and acked");
    }
    drop(writers);
    end
}

/// One document of a message: read for its `text` line alone, or as a whole. Unboxed: the
/// vector lives for one message, and a box would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Doc<'a> {
    Fast(fast::Event<'a>),
    Whole(crate::json::Json),
}

/// The documents' JSON texts of a body (an object, or an array of objects); `None` when the
/// body is not documents.
fn split(body: &[u8]) -> Option<Vec<&RawValue>> {
    let text = std::str::from_utf8(body).ok()?;
    let docs = if text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('[')
    {
        serde_json::from_str::<Vec<&RawValue>>(text).ok()?
    } else {
        vec![serde_json::from_str::<&RawValue>(text).ok()?]
    };
    docs.iter()
        .all(|d| d.get().starts_with('{'))
        .then_some(docs)
}

/// Writes every event of one message (an object, or an array of documents); a body that is
/// not documents is written raw, never dropped. Only the newest `RECENT` events of a message
/// are handed to the status page's ring (the older ones would leave it at once).
fn write_message(
    delivery: &lapin::message::Delivery,
    writers: &mut Writers,
    status: &Status,
    now: chrono::DateTime<chrono::Local>,
    line: &mut String,
) -> std::io::Result<()> {
    status.messages.fetch_add(1, Ordering::Relaxed);
    let app_id = delivery.properties.app_id().as_ref().map(|s| s.as_str());
    let raw = |writers: &mut Writers| {
        status.raw_messages.fetch_add(1, Ordering::Relaxed);
        writers.write_raw(delivery.routing_key.as_str(), &delivery.data, now)
    };
    let Some(texts) = split(&delivery.data) else {
        return raw(writers);
    };
    // Every document is read before any is written: a body with one unreadable document is
    // written raw as a whole, as before.
    let mut docs = Vec::with_capacity(texts.len());
    for text in &texts {
        let doc = match fast::Event::parse(text.get()) {
            Some(e) if writers.format_of(&e.service(app_id), &e.logger()) == LineFormat::Text => {
                Doc::Fast(e)
            }
            _ => match serde_json::from_str(text.get()) {
                Ok(json) => Doc::Whole(json),
                Err(_) => return raw(writers),
            },
        };
        docs.push(doc);
    }
    let keep_from = texts.len().saturating_sub(status::RECENT);
    let app: Option<Arc<str>> = app_id.map(Arc::from);
    let mut recent = Vec::new();
    for (i, (text, doc)) in texts.iter().zip(&docs).enumerate() {
        let label = match doc {
            Doc::Fast(e) => {
                let (service, logger) = (e.service(app_id), e.logger());
                line.clear();
                e.text(line);
                writers.write_line(&service, &logger, &e.host(), line.as_bytes(), now)?;
                (i >= keep_from).then(|| writers.label(&service, &logger))
            }
            Doc::Whole(json) => {
                let view = View::of(json, app_id);
                let facility = writers.write(&view, json, now)?;
                (i >= keep_from).then(|| format!("{}:{facility}", view.service))
            }
        };
        status.events.fetch_add(1, Ordering::Relaxed);
        if let Some(facility) = label {
            recent.push(status::RecentEvent {
                doc: text.get().into(),
                facility,
                app_id: app.clone(),
            });
        }
    }
    status.recent(keep_from as u64, recent);
    Ok(())
}
