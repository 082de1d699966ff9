//! `logcollect tail`: a server-named, exclusive, auto-delete queue of its own, bound to the
//! exchange, and each event printed as it arrives.

use std::io::Write;
use std::time::Duration;

use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection};
use logcollect::{Config, Connector};
use regex::Regex;

use crate::collect::from_redis;
use crate::diagnose::{self, describe, Diagnosis};
use crate::exit;
use crate::levels::Level;
use crate::render::{self, Filters, View};
use crate::KeyValue;

#[cfg(feature = "mongodb")]
mod mongodb;

pub const AFTER_HELP: &str = "\
The queue is tail's own: server-named, exclusive, auto-delete, gone when tail exits; it takes a
copy of what the exchange routes, and never takes anything from another consumer's queue. It
holds at most 100000 messages (256 MiB) waiting to be printed; past that the oldest are
dropped, so a slow terminal cannot fill the broker. A line reading `listening on …` is written
to standard error once the queue is bound: events published after it are shown.

--from mongodb://…: the collection (--key, else mongodb.collection) of database
mongodb.database. On a capped collection, a tailable cursor shows documents in the order they
were inserted; on another, the collection is polled every 500 ms for documents whose
(@timestamp, _id) comes after the newest one seen, 500 at most per query (a document that
arrives late with an older @timestamp is not shown). Documents above 1 MiB are named on
standard error, not printed.

Line format: TIME LEVEL SERVICE@HOST[PID] LOGGER: MESSAGE KEY=VALUE... error=\"ERROR (caused
by: FIRST CAUSE)\". Colour on a terminal unless NO_COLOR is set or --color never.

Exit status:
  0    --count events were printed
  1    the connection could not be opened or was lost (run `logcollect check`)
  2    usage or configuration error; --from names a Redis list
  130  interrupted (Ctrl-C)";

#[derive(Args, Debug)]
pub struct TailArgs {
    /// Binding key for the queue: `#` is everything on a topic exchange, `logstash.billing.#`
    /// one application's targets; repeat to bind several (default `#`). With --from
    /// redis://, the stream read (default `logstash`); with --from mongodb://, the collection
    /// of database `mongodb.database` (default `mongodb.collection`)
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,

    /// Read a Redis stream instead of the broker: redis://[:PASSWORD@]HOST[:PORT][/DB], or
    /// rediss:// for TLS. Entries added after tail starts are shown (XREAD from `$`); nothing
    /// is taken or acknowledged. A list cannot be tailed without taking from it: refused.
    /// Or a MongoDB collection: mongodb://[USER:PASSWORD@]HOST[:PORT][,HOST…][/?OPTIONS] or
    /// mongodb+srv://; documents written after tail starts are shown (a tailable cursor on a
    /// capped collection, else polled by @timestamp and _id)
    #[arg(long, value_name = "URI")]
    pub from: Option<String>,

    /// Show events of this level or above: trace, debug, info, warn, error
    #[arg(long, value_name = "LEVEL")]
    pub level: Option<Level>,

    /// Show only events of this service (service.name; the message's app_id for classic)
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,

    /// Show only events from this host (host.hostname)
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,

    /// Show only events whose message matches REGEX
    #[arg(long, value_name = "REGEX")]
    pub grep: Option<Regex>,

    /// Show only events whose field KEY has VALUE (a field of the event, else a dotted
    /// document path such as labels.project); repeat: all must match
    #[arg(long = "field", value_name = "KEY=VALUE")]
    pub fields: Vec<KeyValue>,

    /// Print each document as one JSON line, as it arrived
    #[arg(long)]
    pub json: bool,

    /// Exit after printing N events
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,

    /// Colour the level and dim the rest: auto (on a terminal, unless NO_COLOR is set),
    /// always, never
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub color: ColorWhen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

/// What ended the tail.
enum End {
    Counted,
    Interrupted,
    StdoutClosed,
    Failed(Diagnosis),
}

pub fn run(config: &Config, args: TailArgs) -> u8 {
    let filters = Filters {
        min_level: args.level,
        service: args.service.clone(),
        host: args.host.clone(),
        grep: args.grep.clone(),
        fields: args.fields.clone(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("logcollect tail: cannot start a runtime: {e}");
            return exit::FAILED;
        }
    };
    if let Some(uri) = &args.from {
        if uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://") {
            #[cfg(feature = "mongodb")]
            return runtime.block_on(mongodb::tail(uri, config, &args, &filters));
            #[cfg(not(feature = "mongodb"))]
            {
                eprintln!(
                    "logcollect tail: --from mongodb://: this logcollect was built without its \
                     `mongodb` feature (`cargo install logcollect-cli` has it by default)"
                );
                return exit::USAGE;
            }
        }
        return runtime.block_on(tail_redis(config, uri, &args, &filters));
    }
    match runtime.block_on(tail(config, &args, &filters)) {
        End::Counted | End::StdoutClosed => exit::OK,
        End::Interrupted => exit::INTERRUPTED,
        End::Failed(d) => {
            eprintln!("logcollect tail: {}", d.headline);
            eprintln!("  detail: {}", d.detail);
            eprintln!("  fix:    {}", d.fix);
            eprintln!("  (`logcollect check` walks the whole path)");
            exit::FAILED
        }
    }
}

async fn tail(config: &Config, args: &TailArgs, filters: &Filters) -> End {
    let connector = match Connector::new(config, "logcollect tail") {
        Ok(connector) => connector,
        Err(e) => return End::Failed(diagnose::config_invalid(e.to_string())),
    };
    let timeout = config.connect_timeout.max(Duration::from_millis(100));
    let (connection, uri) = match connector.connect().await {
        Err(e) => return End::Failed(diagnose::broker_error(&e)),
        Ok(c) => (c.connection, connector.nodes()[c.node].clone()),
    };
    let end = match tokio::time::timeout(
        timeout,
        subscribe(&connection, &connector, config, args, &uri),
    )
    .await
    {
        Err(_) => End::Failed(Diagnosis {
            step: "tail",
            code: "broker_timeout",
            headline: "the broker did not answer while the queue was being set up".to_string(),
            detail: format!("no answer within {}", diagnose::secs(timeout)),
            fix: "check the broker's health (`rabbitmq-diagnostics status`)".to_string(),
        }),
        Ok(Err(d)) => End::Failed(d),
        Ok(Ok((channel, queue, consumer))) => {
            eprintln!(
                "logcollect tail: listening on exchange `{}` of {} with {} (queue `{queue}`)",
                config.exchange,
                describe(&uri),
                amqp_keys(args)
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            print_loop(&channel, consumer, args, filters).await
        }
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        connection.close(200, ShortString::from("logcollect tail done")),
    )
    .await;
    end
}

/// The exchange (declared if missing), tail's own queue, its bindings, a consumer.
async fn subscribe(
    connection: &Connection,
    connector: &Connector,
    config: &Config,
    args: &TailArgs,
    uri: &AMQPUri,
) -> Result<(Channel, String, lapin::Consumer), Diagnosis> {
    let exchange = ShortString::from(config.exchange.as_str());
    let kind = config.exchange_type.as_str();
    let failed = |what: &str, e: lapin::Error| -> Diagnosis {
        let (code, detail) = match diagnose::broker_reply(&e) {
            Some((code, text)) => (code, format!("{code} {text}")),
            None => (0, e.to_string()),
        };
        let fix = if code == 403 {
            format!(
                "tail needs the read permission on exchange `{}` and the configure, write and \
                 read permissions on the server-named queues `amq.gen-.*`",
                config.exchange
            )
        } else {
            "the broker's log names the reason".to_string()
        };
        Diagnosis {
            step: "tail",
            code: "subscribe_failed",
            headline: format!("cannot {what}"),
            detail,
            fix,
        }
    };
    // The exchange as it is; declared as the shipper would if it does not exist yet, so
    // tail can start before any application.
    let mut channel = connection
        .create_channel()
        .await
        .map_err(|e| failed("open a channel", e))?;
    let passive = diagnose::find_exchange(&channel, &config.exchange).await;
    if let Err(e) = passive {
        if !matches!(diagnose::broker_reply(&e), Some((404, _))) {
            return Err(failed(&format!("find exchange `{exchange}`"), e));
        }
        channel = connection
            .create_channel()
            .await
            .map_err(|e| failed("open a channel", e))?;
        connector
            .declare_exchange(&channel)
            .await
            .map_err(|e| diagnose::exchange_failure(&config.exchange, kind, uri, &e, None))?;
        eprintln!(
            "logcollect tail: exchange `{exchange}` did not exist; declared it ({kind}, durable) \
             as the shipper would"
        );
    }
    let mut arguments = FieldTable::default();
    arguments.insert(
        ShortString::from("x-max-length"),
        AMQPValue::LongInt(100_000),
    );
    arguments.insert(
        ShortString::from("x-max-length-bytes"),
        AMQPValue::LongLongInt(256 << 20),
    );
    let queue = channel
        .queue_declare(
            ShortString::from(""),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                durable: false,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await
        .map_err(|e| failed("declare tail's queue", e))?;
    let name = queue.name().to_string();
    for key in &amqp_keys(args) {
        channel
            .queue_bind(
                ShortString::from(name.as_str()),
                exchange.clone(),
                ShortString::from(key.as_str()),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| {
                failed(
                    &format!("bind tail's queue to `{exchange}` with `{key}`"),
                    e,
                )
            })?;
    }
    channel
        .basic_qos(1000, BasicQosOptions::default())
        .await
        .map_err(|e| failed("set the prefetch", e))?;
    let consumer = channel
        .basic_consume(
            ShortString::from(name.as_str()),
            ShortString::from("logcollect-tail"),
            BasicConsumeOptions {
                exclusive: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| failed("consume tail's queue", e))?;
    Ok((channel, name, consumer))
}

/// Standard output, buffered, and whether lines are coloured.
fn output(
    args: &TailArgs,
) -> (
    std::io::BufWriter<anstream::AutoStream<std::io::Stdout>>,
    bool,
) {
    let choice = match args.color {
        ColorWhen::Auto => anstream::ColorChoice::Auto,
        ColorWhen::Always => anstream::ColorChoice::Always,
        ColorWhen::Never => anstream::ColorChoice::Never,
    };
    let stdout = anstream::AutoStream::new(std::io::stdout(), choice);
    let color = !args.json
        && matches!(
            stdout.current_choice(),
            anstream::ColorChoice::Always | anstream::ColorChoice::AlwaysAnsi
        );
    (std::io::BufWriter::with_capacity(64 * 1024, stdout), color)
}

/// The binding keys: `--key`, or every routing key.
fn amqp_keys(args: &TailArgs) -> Vec<String> {
    if args.keys.is_empty() {
        vec!["#".to_string()]
    } else {
        args.keys.clone()
    }
}

const LIST_REFUSED: &str = "cannot tail a list without taking its items from the reader that \
needs them (a list has no copy for a second reader); ship to a stream instead \
(LOGCOLLECT_REDIS__DATA_TYPE=stream, read by `collect --from ... --data-type stream`) and tail that";

/// `tail --from redis://…`: the stream's entries added from now on, read with XREAD (no group,
/// nothing taken or acknowledged).
async fn tail_redis(config: &Config, uri: &str, args: &TailArgs, filters: &Filters) -> u8 {
    let connector = match from_redis::connector(config, uri) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("logcollect tail: {e}");
            return exit::USAGE;
        }
    };
    let key = match args.keys.as_slice() {
        [] => from_redis::DEFAULT_KEY,
        [k] => k.as_str(),
        _ => {
            eprintln!("logcollect tail: --from redis:// reads one key: give --key once");
            return exit::USAGE;
        }
    };
    let shown_uri = from_redis::masked(uri);
    let mut conn = match from_redis::connect(&connector).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("logcollect tail: {e}");
            return exit::FAILED;
        }
    };
    let kind: Result<String, _> = redis::cmd("TYPE").arg(key).query_async(&mut conn).await;
    match kind.as_deref() {
        Ok("stream") | Ok("none") => {}
        Ok("list") => {
            eprintln!("logcollect tail: `{key}` on {shown_uri} is a list: {LIST_REFUSED}");
            return exit::USAGE;
        }
        Ok(other) => {
            eprintln!("logcollect tail: `{key}` on {shown_uri} is a {other}, not a stream");
            return exit::USAGE;
        }
        Err(e) => {
            eprintln!(
                "logcollect tail: TYPE `{key}` on {shown_uri}: {}",
                from_redis::masked(&e.to_string())
            );
            return exit::FAILED;
        }
    }
    // `$` resolved once: each later read starts after the last entry seen, so none added
    // between two reads is missed.
    let newest: Result<Vec<redis::streams::StreamId>, _> = redis::cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async::<redis::streams::StreamRangeReply>(&mut conn)
        .await
        .map(|r| r.ids);
    let mut last = match newest {
        Ok(ids) => ids
            .first()
            .map_or_else(|| "0-0".to_string(), |e| e.id.clone()),
        Err(e) => {
            eprintln!(
                "logcollect tail: XREVRANGE `{key}` on {shown_uri}: {}",
                from_redis::masked(&e.to_string())
            );
            return exit::FAILED;
        }
    };
    eprintln!("logcollect tail: listening on stream `{key}` of {shown_uri}");
    let (mut out, color) = output(args);
    let mut shown = 0u64;
    if args.count == Some(0) {
        return exit::OK;
    }
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        // XREAD changes nothing on the server: a read cut short by Ctrl-C loses nothing.
        let mut xread = redis::cmd("XREAD");
        xread
            .arg("COUNT")
            .arg(500)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(key)
            .arg(&last);
        let read = tokio::select! {
            _ = &mut interrupt => return exit::INTERRUPTED,
            r = xread.query_async::<Option<redis::streams::StreamReadReply>>(&mut conn) => r,
        };
        let reply = match read {
            Ok(r) => r,
            Err(e) if e.code() == Some("WRONGTYPE") => {
                eprintln!("logcollect tail: `{key}` on {shown_uri} became a list: {LIST_REFUSED}");
                return exit::USAGE;
            }
            Err(e) => {
                eprintln!(
                    "logcollect tail: the connection to {shown_uri} was lost: {}",
                    from_redis::masked(&e.to_string())
                );
                return exit::FAILED;
            }
        };
        for entry in from_redis::entries(reply) {
            last = entry.id.clone();
            let item = from_redis::Item::entry(entry);
            match show(
                &mut out,
                &item.body,
                item.service.as_deref(),
                key,
                args,
                filters,
                color,
                &mut shown,
            ) {
                Ok(false) => {}
                Ok(true) => {
                    let _ = out.flush();
                    return exit::OK;
                }
                Err(_) => return exit::OK,
            }
        }
        if out.flush().is_err() {
            return exit::OK;
        }
    }
}

async fn print_loop(
    channel: &Channel,
    mut consumer: lapin::Consumer,
    args: &TailArgs,
    filters: &Filters,
) -> End {
    let (mut out, color) = output(args);
    let mut shown = 0u64;
    if args.count == Some(0) {
        return End::Counted;
    }
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        let delivery = tokio::select! {
            _ = &mut interrupt => return End::Interrupted,
            next = consumer.next() => next,
        };
        let delivery = match delivery {
            Some(Ok(delivery)) => delivery,
            Some(Err(e)) => return End::Failed(lost(&e)),
            None => {
                return End::Failed(Diagnosis {
                    step: "tail",
                    code: "consumer_cancelled",
                    headline: "the broker ended tail's subscription".to_string(),
                    detail: "the consumer was cancelled (the queue was deleted, or the \
                             connection closed)"
                        .to_string(),
                    fix: "start tail again".to_string(),
                })
            }
        };
        let app_id = delivery
            .properties
            .app_id()
            .as_ref()
            .map(|s| s.as_str().to_string());
        let done = match show(
            &mut out,
            &delivery.data,
            app_id.as_deref(),
            delivery.routing_key.as_str(),
            args,
            filters,
            color,
            &mut shown,
        ) {
            Ok(done) => done,
            Err(end) => return end,
        };
        if out.flush().is_err() {
            return End::StdoutClosed;
        }
        // Acked on tail's own queue only: nobody else reads it.
        let _ = channel
            .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
            .await;
        if done {
            return End::Counted;
        }
    }
}

/// Prints one message's documents that pass the filters; `Ok(true)` once --count is reached.
#[allow(clippy::too_many_arguments)]
fn show(
    out: &mut impl Write,
    data: &[u8],
    app_id: Option<&str>,
    source: &str,
    args: &TailArgs,
    filters: &Filters,
    color: bool,
    shown: &mut u64,
) -> Result<bool, End> {
    match render::documents(data) {
        Ok(docs) => show_documents(out, docs, app_id, args, filters, color, shown),
        Err(e) => {
            let preview: String = String::from_utf8_lossy(data).chars().take(200).collect();
            eprintln!(
                "logcollect tail: a message on `{}` is not JSON ({e}; {} bytes): {}",
                source,
                data.len(),
                render::escape(&preview)
            );
            Ok(false)
        }
    }
}

/// Prints the documents that pass the filters; `Ok(true)` once --count is reached.
fn show_documents(
    out: &mut impl Write,
    docs: Vec<crate::json::Json>,
    app_id: Option<&str>,
    args: &TailArgs,
    filters: &Filters,
    color: bool,
    shown: &mut u64,
) -> Result<bool, End> {
    for doc in docs {
        let view = View::of(&doc, app_id);
        if !filters.pass(&view, &doc) {
            continue;
        }
        let written = if args.json {
            writeln!(out, "{}", render::escape_c1(doc.to_string()))
        } else {
            writeln!(out, "{}", view.line(color))
        };
        if written.is_err() {
            return Err(End::StdoutClosed);
        }
        *shown += 1;
        if args.count.is_some_and(|n| *shown >= n) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn lost(e: &lapin::Error) -> Diagnosis {
    let detail = match diagnose::broker_reply(e) {
        Some((code, text)) => format!("{code} {text}"),
        None => e.to_string(),
    };
    Diagnosis {
        step: "tail",
        code: "connection_lost",
        headline: "the connection to the broker was lost".to_string(),
        detail,
        fix: "start tail again once the broker is back".to_string(),
    }
}
