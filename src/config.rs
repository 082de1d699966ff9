//! Configuration: defaults, a file named by `LOGCOLLECT_CONFIG`, and `LOGCOLLECT_*` variables.
//!
//! Variables map to keys by dropping the prefix and lower-casing, `__` nesting:
//! `LOGCOLLECT_QUEUE_CAPACITY` → `queue_capacity`, `LOGCOLLECT_IDENTITY__PROJECT` →
//! `identity.project`. Variables win over the file. An unknown key or an invalid value is an
//! error naming the key and what is allowed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::encoding::Format;
use crate::Error;

/// The exchange types the shipper can declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExchangeType {
    #[default]
    Topic,
    Direct,
    Fanout,
    Headers,
}

impl ExchangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeType::Topic => "topic",
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Headers => "headers",
        }
    }

    /// The matching lapin exchange kind.
    pub fn kind(self) -> lapin::ExchangeKind {
        match self {
            ExchangeType::Topic => lapin::ExchangeKind::Topic,
            ExchangeType::Direct => lapin::ExchangeKind::Direct,
            ExchangeType::Fanout => lapin::ExchangeKind::Fanout,
            ExchangeType::Headers => lapin::ExchangeKind::Headers,
        }
    }
}

impl FromStr for ExchangeType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "topic" => Ok(ExchangeType::Topic),
            "direct" => Ok(ExchangeType::Direct),
            "fanout" => Ok(ExchangeType::Fanout),
            "headers" => Ok(ExchangeType::Headers),
            other => Err(format!(
                "`{other}` is not an exchange type; allowed: topic, direct, fanout, headers"
            )),
        }
    }
}

/// What the application's logging call does when the in-memory queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Write the event to the disk spool from the logging thread (needs `spool.dir`; the
    /// default when a spool is set). The shipper already moves queued events to the spool long
    /// before the queue fills, so this is the rare case of a disk slower than the log rate.
    Spill,
    /// Refuse the new event and count it (the default without a spool).
    DropNewest,
    /// Push the oldest queued event out to make room, and count it.
    DropOldest,
    /// Wait up to `block_timeout_ms` for room, then refuse the event and count it.
    Block,
}

impl FromStr for Overflow {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "spill" => Ok(Overflow::Spill),
            "drop_newest" => Ok(Overflow::DropNewest),
            "drop_oldest" => Ok(Overflow::DropOldest),
            "block" => Ok(Overflow::Block),
            other => Err(format!(
                "`{other}` is not an overflow policy; allowed: spill, drop_newest, drop_oldest, block"
            )),
        }
    }
}

/// What a full spool drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Refuse the event being written, keep what is on disk.
    #[default]
    DropNewest,
    /// Delete the oldest segment file (its unsent events are counted) to make room.
    DropOldest,
}

impl FromStr for WhenFull {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "drop_newest" => Ok(WhenFull::DropNewest),
            "drop_oldest" => Ok(WhenFull::DropOldest),
            other => Err(format!(
                "`{other}` is not a spool policy; allowed: drop_newest, drop_oldest"
            )),
        }
    }
}

/// The disk spool (`spool.*` keys, variables `LOGCOLLECT_SPOOL__*`). Off unless `dir` is set.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SpoolConfig {
    /// `spool.dir`: the directory of segment files (created if missing; locked while in use).
    pub dir: Option<PathBuf>,
    /// `spool.max_bytes`: the most the segment files may hold together.
    pub max_bytes: u64,
    /// `spool.when_full`: `drop_newest` or `drop_oldest`.
    pub when_full: WhenFull,
    /// `spool.fsync_interval_ms`: how often written records are forced to disk (0 = after
    /// every write). Only a machine crash or power loss can lose what was not yet forced.
    pub fsync_interval: Duration,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: None,
            max_bytes: defaults::SPOOL_MAX_BYTES,
            when_full: WhenFull::DropNewest,
            fsync_interval: Duration::from_secs(1),
        }
    }
}

/// The keys of the `spool` table.
pub const SPOOL_KEYS: &[&str] = &["dir", "max_bytes", "when_full", "fsync_interval_ms"];

/// Defaults shared with the Logstash pipeline in `logstash/` (tests check they agree).
pub mod defaults {
    pub const BROKER_URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
    pub const EXCHANGE: &str = "logstash";
    pub const EXCHANGE_TYPE: &str = "topic";
    pub const ROUTING_KEY: &str = "logstash.{target}";
    /// A binding key that matches every routing key the default template produces.
    pub const BINDING_KEY: &str = "logstash.#";
    pub const QUEUE_CAPACITY: usize = 65_536;
    pub const LEVEL: &str = "info";
    pub const SPOOL_MAX_BYTES: u64 = 1 << 30;
}

/// Every setting, with its default. Build one in code, or read it with [`Config::from_env`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// `broker_uri`: `amqp://` or `amqps://` URI; `heartbeat` and `connection_timeout` query
    /// parameters are honoured.
    pub broker_uri: String,
    /// `exchange`: the exchange to publish to (declared durable by the shipper).
    pub exchange: String,
    /// `exchange_type`: topic, direct, fanout or headers.
    pub exchange_type: ExchangeType,
    /// `routing_key`: template with `{target}`, `{level}`, `{service}`.
    pub routing_key: String,
    /// `format`: `ecs` or `classic`.
    pub format: Format,
    /// `level`: an `EnvFilter` directive; unset means `RUST_LOG`, else `info`.
    pub level: Option<String>,
    /// `console`: also print events on stdout (a `fmt` layer).
    pub console: bool,
    /// `identity.<key>`: activity identity entries (`project`, `application`, …).
    pub identity: BTreeMap<String, String>,
    /// `hostname`: overrides the detected host name.
    pub hostname: Option<String>,
    /// `hostname_fqdn`: use the fully qualified host name.
    pub hostname_fqdn: bool,
    /// `service_name`: overrides `service.name` (else the `application` entry, else the
    /// executable name).
    pub service_name: Option<String>,
    /// `queue_capacity`: events held in memory before the overflow policy applies.
    pub queue_capacity: usize,
    /// `overflow`: spill, drop_newest, drop_oldest or block; unset means `spill` with a spool,
    /// `drop_newest` without.
    pub overflow: Option<Overflow>,
    /// `block_timeout_ms`: how long `overflow = block` waits for room.
    pub block_timeout: Duration,
    /// `spool.*`: the disk spool.
    pub spool: SpoolConfig,
    /// `max_field_bytes`: longer strings are cut and marked (0 = no limit).
    pub max_field_bytes: usize,
    /// `max_message_bytes`: a larger encoded event is dropped and counted (0 = no limit).
    pub max_message_bytes: usize,
    /// `confirm_window`: messages in flight awaiting the broker's confirm.
    pub confirm_window: usize,
    /// `connect_timeout_ms`.
    pub connect_timeout: Duration,
    /// `confirm_timeout_ms`: no confirm for this long (unless the broker blocks us) means the
    /// connection is presumed dead and is replaced.
    pub confirm_timeout: Duration,
    /// `shutdown_timeout_ms`: how long dropping the guard waits for delivery.
    pub shutdown_timeout: Duration,
    /// `backoff_min_ms` / `backoff_max_ms`: reconnect delays.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// `retry_delay_ms`: pause after a message is returned unroutable or nacked.
    pub retry_delay: Duration,
    /// `diagnostics_interval_ms`: at most one stderr message of a kind per interval.
    pub diagnostics_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            broker_uri: defaults::BROKER_URI.to_string(),
            exchange: defaults::EXCHANGE.to_string(),
            exchange_type: ExchangeType::Topic,
            routing_key: defaults::ROUTING_KEY.to_string(),
            format: Format::Ecs,
            level: None,
            console: false,
            identity: BTreeMap::new(),
            hostname: None,
            hostname_fqdn: false,
            service_name: None,
            queue_capacity: defaults::QUEUE_CAPACITY,
            overflow: None,
            block_timeout: Duration::from_millis(100),
            spool: SpoolConfig::default(),
            max_field_bytes: 1 << 20,
            max_message_bytes: 16 << 20,
            confirm_window: 1024,
            connect_timeout: Duration::from_secs(10),
            confirm_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            retry_delay: Duration::from_secs(1),
            diagnostics_interval: Duration::from_secs(10),
        }
    }
}

/// The keys a file or the environment may set (besides `identity.<key>`).
pub const KEYS: &[&str] = &[
    "broker_uri",
    "exchange",
    "exchange_type",
    "routing_key",
    "format",
    "level",
    "console",
    "identity",
    "hostname",
    "hostname_fqdn",
    "service_name",
    "queue_capacity",
    "overflow",
    "block_timeout_ms",
    "spool",
    "max_field_bytes",
    "max_message_bytes",
    "confirm_window",
    "connect_timeout_ms",
    "confirm_timeout_ms",
    "shutdown_timeout_ms",
    "backoff_min_ms",
    "backoff_max_ms",
    "retry_delay_ms",
    "diagnostics_interval_ms",
];

/// Environment variables with the prefix that are not configuration keys.
fn is_reserved_variable(name: &str) -> bool {
    name == "LOGCOLLECT_CONFIG" || name.starts_with("LOGCOLLECT_TEST_")
}

impl Config {
    /// Reads the process environment (`LOGCOLLECT_*`, `LOGCOLLECT_CONFIG`, `RUST_LOG`).
    pub fn from_env() -> Result<Config, Error> {
        Config::from_vars(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// Like [`from_env`](Config::from_env), from the given variables instead of the process's.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, Error> {
        let vars: BTreeMap<String, String> = vars.into_iter().collect();
        let file = vars
            .get("LOGCOLLECT_CONFIG")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        let ours: config::Map<String, String> = vars
            .iter()
            .filter(|(k, _)| k.starts_with("LOGCOLLECT_") && !is_reserved_variable(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();

        let mut builder = config::Config::builder();
        if let Some(path) = &file {
            if !path.exists() {
                return Err(Error::Config(format!(
                    "LOGCOLLECT_CONFIG names `{}`, which does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(config::File::from(path.clone()));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("LOGCOLLECT")
                .prefix_separator("_")
                .separator("__")
                .source(Some(ours)),
        );
        let raw = builder.build().map_err(|e| Error::Config(e.to_string()))?;
        let mut config = Config::from_raw(&raw)?;
        if config.level.is_none() {
            config.level = vars
                .get("RUST_LOG")
                .filter(|v| !v.trim().is_empty())
                .cloned();
        }
        config.validate()?;
        Ok(config)
    }

    fn from_raw(raw: &config::Config) -> Result<Config, Error> {
        let table: config::Map<String, config::Value> = raw
            .clone()
            .try_deserialize()
            .map_err(|e| Error::Config(e.to_string()))?;
        for key in table.keys() {
            if !KEYS.contains(&key.as_str()) {
                return Err(Error::Config(format!(
                    "unknown key `{key}` (variable LOGCOLLECT_{}); allowed keys: {}",
                    key.to_uppercase(),
                    KEYS.join(", ")
                )));
            }
        }
        let mut c = Config::default();
        let r = Reader { raw };
        r.set(
            &mut c.broker_uri,
            "broker_uri",
            "an amqp:// or amqps:// URI",
        )?;
        r.set(&mut c.exchange, "exchange", "an exchange name")?;
        r.set(
            &mut c.exchange_type,
            "exchange_type",
            "topic, direct, fanout or headers",
        )?;
        r.set(&mut c.routing_key, "routing_key", "a routing key template")?;
        r.set(&mut c.format, "format", "ecs or classic")?;
        r.set_opt(&mut c.level, "level")?;
        r.set(&mut c.console, "console", "true or false")?;
        r.set_opt(&mut c.hostname, "hostname")?;
        r.set(&mut c.hostname_fqdn, "hostname_fqdn", "true or false")?;
        r.set_opt(&mut c.service_name, "service_name")?;
        r.set(
            &mut c.queue_capacity,
            "queue_capacity",
            "a positive integer",
        )?;
        r.set(
            &mut c.max_field_bytes,
            "max_field_bytes",
            "an integer (0 = no limit)",
        )?;
        r.set(
            &mut c.max_message_bytes,
            "max_message_bytes",
            "an integer (0 = no limit)",
        )?;
        r.set(
            &mut c.confirm_window,
            "confirm_window",
            "a positive integer",
        )?;
        r.set_ms(&mut c.connect_timeout, "connect_timeout_ms")?;
        r.set_ms(&mut c.confirm_timeout, "confirm_timeout_ms")?;
        r.set_ms(&mut c.shutdown_timeout, "shutdown_timeout_ms")?;
        r.set_ms(&mut c.backoff_min, "backoff_min_ms")?;
        r.set_ms(&mut c.backoff_max, "backoff_max_ms")?;
        r.set_ms(&mut c.retry_delay, "retry_delay_ms")?;
        r.set_ms(&mut c.diagnostics_interval, "diagnostics_interval_ms")?;
        r.set_opt_parsed(
            &mut c.overflow,
            "overflow",
            "spill, drop_newest, drop_oldest or block",
        )?;
        r.set_ms(&mut c.block_timeout, "block_timeout_ms")?;
        if table.contains_key("spool") {
            let entries = raw.get_table("spool").map_err(|_| {
                Error::Config(
                    "`spool` must be a table: spool.dir, spool.max_bytes, … \
                     (variables LOGCOLLECT_SPOOL__DIR, …)"
                        .to_string(),
                )
            })?;
            for key in entries.keys() {
                if !SPOOL_KEYS.contains(&key.as_str()) {
                    return Err(Error::Config(format!(
                        "unknown key `spool.{key}` (variable LOGCOLLECT_SPOOL__{}); allowed keys: {}",
                        key.to_uppercase(),
                        SPOOL_KEYS.join(", ")
                    )));
                }
            }
            let mut dir = None;
            r.set_opt(&mut dir, "spool.dir")?;
            c.spool.dir = dir.map(PathBuf::from);
            r.set(
                &mut c.spool.max_bytes,
                "spool.max_bytes",
                "a number of bytes",
            )?;
            r.set(
                &mut c.spool.when_full,
                "spool.when_full",
                "drop_newest or drop_oldest",
            )?;
            r.set_ms(&mut c.spool.fsync_interval, "spool.fsync_interval_ms")?;
        }
        if table.contains_key("identity") {
            let entries = raw.get_table("identity").map_err(|_| {
                Error::Config(
                    "`identity` must be a table of entries: identity.<key> = value \
                     (variables LOGCOLLECT_IDENTITY__<KEY>)"
                        .to_string(),
                )
            })?;
            for (key, value) in entries {
                let value = value
                    .into_string()
                    .map_err(|_| Error::Config(format!("`identity.{key}` must be a string")))?;
                c.identity.insert(key, value);
            }
        }
        Ok(c)
    }

    /// Checks what the types alone do not: a URI that parses, names AMQP accepts, sizes > 0.
    pub fn validate(&self) -> Result<(), Error> {
        self.amqp_uri()?;
        let bad = |key: &str, what: &str| Err(Error::Config(format!("`{key}` {what}")));
        if self.exchange.len() > 255 {
            return bad("exchange", "is longer than AMQP's 255 bytes");
        }
        if self.routing_key.is_empty() && self.exchange_type == ExchangeType::Direct {
            return bad("routing_key", "is empty; a direct exchange needs one");
        }
        if self.queue_capacity == 0 {
            return bad("queue_capacity", "must be at least 1");
        }
        if self.overflow == Some(Overflow::Spill) && self.spool.dir.is_none() {
            return bad(
                "overflow",
                "is `spill` but no spool is set; set spool.dir (LOGCOLLECT_SPOOL__DIR) or \
                 choose drop_newest, drop_oldest or block",
            );
        }
        if self.spool.dir.is_some() && self.spool.max_bytes < MIN_SPOOL_BYTES {
            return bad(
                "spool.max_bytes",
                &format!("must be at least {MIN_SPOOL_BYTES} bytes"),
            );
        }
        if self.confirm_window == 0 {
            return bad("confirm_window", "must be at least 1");
        }
        if let Some(level) = &self.level {
            tracing_subscriber::EnvFilter::try_new(level).map_err(|e| {
                Error::Config(format!(
                    "`level` `{level}` is not a valid filter ({e}); allowed: a level (error, warn, \
                     info, debug, trace) or EnvFilter directives such as `info,billing=debug`"
                ))
            })?;
        }
        for key in self.identity.keys() {
            if key.is_empty() {
                return bad("identity", "has an empty key");
            }
        }
        Ok(())
    }

    /// The overflow policy in force: the one set, else `spill` with a spool, `drop_newest`
    /// without.
    pub fn overflow_policy(&self) -> Overflow {
        self.overflow.unwrap_or(if self.spool.dir.is_some() {
            Overflow::Spill
        } else {
            Overflow::DropNewest
        })
    }

    /// The broker URI, parsed; a heartbeat of 10 s is asked for unless the URI sets one.
    pub(crate) fn amqp_uri(&self) -> Result<lapin::uri::AMQPUri, Error> {
        let mut uri: lapin::uri::AMQPUri = self.broker_uri.parse().map_err(|e| {
            Error::Config(format!(
                "`broker_uri` is not a valid AMQP URI ({e}); expected e.g. \
                 amqp://user:password@host:5672/%2f or amqps://…"
            ))
        })?;
        uri.query.heartbeat.get_or_insert(10);
        Ok(uri)
    }
}

/// The smallest spool worth having: a few segments of a few records.
pub const MIN_SPOOL_BYTES: u64 = 16 * 1024;

/// Reads typed values out of the merged sources, with errors that name the key.
struct Reader<'a> {
    raw: &'a config::Config,
}

impl Reader<'_> {
    fn string(&self, key: &str) -> Result<Option<String>, Error> {
        match self.raw.get::<config::Value>(key) {
            Err(config::ConfigError::NotFound(_)) => Ok(None),
            Err(e) => Err(Error::Config(format!("`{key}`: {e}"))),
            Ok(v) => v
                .into_string()
                .map(Some)
                .map_err(|e| Error::Config(format!("`{key}`: {e}"))),
        }
    }

    fn set<T: FromStr>(&self, slot: &mut T, key: &str, allowed: &str) -> Result<(), Error>
    where
        T::Err: std::fmt::Display,
    {
        if let Some(s) = self.string(key)? {
            *slot = parse(key, &s, allowed)?;
        }
        Ok(())
    }

    fn set_opt(&self, slot: &mut Option<String>, key: &str) -> Result<(), Error> {
        if let Some(s) = self.string(key)? {
            *slot = Some(s).filter(|s| !s.trim().is_empty());
        }
        Ok(())
    }

    fn set_opt_parsed<T: FromStr>(
        &self,
        slot: &mut Option<T>,
        key: &str,
        allowed: &str,
    ) -> Result<(), Error>
    where
        T::Err: std::fmt::Display,
    {
        if let Some(s) = self.string(key)?.filter(|s| !s.trim().is_empty()) {
            *slot = Some(parse(key, &s, allowed)?);
        }
        Ok(())
    }

    fn set_ms(&self, slot: &mut Duration, key: &str) -> Result<(), Error> {
        let mut ms = slot.as_millis() as u64;
        self.set(&mut ms, key, "a whole number of milliseconds")?;
        *slot = Duration::from_millis(ms);
        Ok(())
    }
}

/// Parses one value; the error names the key, its variable, the value and what is allowed.
fn parse<T: FromStr>(key: &str, value: &str, allowed: &str) -> Result<T, Error>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|e: T::Err| {
        let e = e.to_string();
        let allowed = if e.contains("allowed") {
            String::new()
        } else {
            format!("; allowed: {allowed}")
        };
        Error::Config(format!(
            "`{key}` (variable LOGCOLLECT_{}) = `{value}` is invalid: {e}{allowed}",
            key.to_uppercase().replace('.', "__")
        ))
    })
}
