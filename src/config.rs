//! Configuration: defaults, a file named by `LOGCOLLECT_CONFIG`, and `LOGCOLLECT_*` variables.
//!
//! Variables map to keys by dropping the prefix and lower-casing, `__` nesting:
//! `LOGCOLLECT_QUEUE_CAPACITY` → `queue_capacity`, `LOGCOLLECT_IDENTITY__PROJECT` →
//! `identity.project`. Variables win over the file. An unknown key or an invalid value is an
//! error naming the key, its variable and what is allowed.
//!
//! Every setting is declared once, in the `settings!` block below: field, type, default, what is
//! allowed, a one-line doc and an optional check. That declaration is the `Config` (and
//! `SpoolConfig`) field, its default, its key in the key lists, how it is read from a file or a
//! variable, its error messages and its per-value validation; [`Config::SETTINGS`] lists them
//! (docs/configuration.md's table is tested against it). Adding a setting is one declaration
//! there, plus the code that uses it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::broker::{AuthMechanism, ExchangeType};
use crate::capture::{ExemptLevel, TargetLimit};
use crate::choice::{self, Choice};
use crate::delivery::{Overflow, WhenFull};
use crate::encoding::redact::{mask_uri_passwords, DEFAULT_FIELDS as DEFAULT_REDACT_FIELDS};
use crate::encoding::Format;
use crate::encoding::{Detector, RedactWith};
use crate::transport::{MongoWriteConcern, RedisDataType, TransportKind};
use crate::Error;

/// Defaults shared with the Logstash pipeline in `logstash/` (tests check they agree).
pub mod defaults {
    /// `broker_uri`: the local broker, as guest.
    pub const BROKER_URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
    /// `exchange`.
    pub const EXCHANGE: &str = "logstash";
    /// `exchange_type`.
    pub const EXCHANGE_TYPE: &str = super::ExchangeType::DEFAULT.as_str();
    /// `routing_key`: the routing key template.
    pub const ROUTING_KEY: &str = "logstash.{target}";
    /// A binding key that matches every routing key the default template produces.
    pub const BINDING_KEY: &str = "logstash.#";
    /// `queue_capacity`, in events.
    pub const QUEUE_CAPACITY: usize = 65_536;
    /// The level filter `init` installs when neither `level` nor `RUST_LOG` is set.
    pub const LEVEL: &str = "info";
    /// `spool.max_bytes`.
    pub const SPOOL_MAX_BYTES: u64 = 1 << 30;
    /// `batch.max_events`: see docs/batches.md for the measurement behind it.
    pub const BATCH_MAX_EVENTS: usize = 256;
    /// `batch.max_bytes`.
    pub const BATCH_MAX_BYTES: usize = 256 << 10;
    /// `redis.uri`: the local server, database 0.
    pub const REDIS_URI: &str = "redis://127.0.0.1:6379/0";
    /// `redis.key`: the list Logstash's redis input reads (logstash/pipeline/redis/input.conf).
    pub const REDIS_KEY: &str = "logstash";
    /// `redis.max_length`, in entries.
    pub const REDIS_MAX_LENGTH: u64 = 1_000_000;
    /// `mongodb.uri`: the local server.
    pub const MONGODB_URI: &str = "mongodb://127.0.0.1:27017";
    /// `mongodb.database`.
    pub const MONGODB_DATABASE: &str = "logcollect";
    /// `mongodb.collection`.
    pub const MONGODB_COLLECTION: &str = "logs";
}

/// The smallest spool worth having: a few segments of a few records.
pub const MIN_SPOOL_BYTES: u64 = 16 * 1024;

const LEVEL_ALLOWED: &str = "a level (error, warn, info, debug, trace) or EnvFilter directives \
                             such as `info,billing=debug`";

/// Declares the settings: see the module docs. Each setting is
///
/// ```text
/// /// One line of doc.
/// field: Type = default [, key "file_key"] [, allowed "…"] [, default_doc "…"] [, check fn];
/// ```
///
/// - `key`: the key when it is not the field's name (durations are `<field>_ms`);
/// - `allowed`: what a value may be, when the type's own description is not enough;
/// - `default_doc`: what an unset default (`None`, no entries) means, as docs/configuration.md says it;
/// - `check`: `fn(&T) -> Result<(), String>`, run by [`Config::validate`].
///
/// `Type` is one with a [`Kind`]: text, numbers, bools, durations (milliseconds), paths, the
/// [`choice!`] enums, `Option`s of those, and a table of entries. A table of settings
/// (`spool: pub struct SpoolConfig { … }`) follows the top-level ones.
macro_rules! settings {
    (
        $(#[doc = $config_doc:literal])*
        pub struct Config {
            $(
                #[doc = $doc:literal]
                $field:ident : $ty:ty = $default:expr
                $(, key $key:literal)?
                $(, allowed $allowed:expr)?
                $(, default_doc $default_doc:expr)?
                $(, check $check:expr)?
                $(, read $read:expr)?
                ;
            )*
        }
        $(
            $(#[doc = $table_doc:literal])*
            $table:ident : pub struct $Table:ident {
                $(
                    #[doc = $tdoc:literal]
                    $tfield:ident : $tty:ty = $tdefault:expr
                    $(, key $tkey:literal)?
                    $(, allowed $tallowed:expr)?
                    $(, default_doc $tdefault_doc:expr)?
                    $(, check $tcheck:expr)?
                    $(, read $tread:expr)?
                    ;
                )*
            }
        )*
    ) => {
        $(#[doc = $config_doc])*
        #[derive(Clone, PartialEq)]
        #[non_exhaustive]
        pub struct Config {
            $(
                #[doc = $doc]
                #[doc = ""]
                #[doc = concat!("Key `", full_key!(; $($key)?; $field), "`.")]
                pub $field: $ty,
            )*
            $(
                $(#[doc = $table_doc])*
                pub $table: $Table,
            )*
        }

        /// Every setting, with the passwords of broker URIs and the redaction hash key masked.
        impl fmt::Debug for Config {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("Config")
                    $(.field(stringify!($field), &Masked(stringify!($field), &self.$field)))*
                    $(.field(stringify!($table), &Masked(stringify!($table), &self.$table)))*
                    .finish()
            }
        }

        impl Default for Config {
            fn default() -> Self {
                Config {
                    $($field: $default,)*
                    $($table: $Table::default(),)*
                }
            }
        }

        impl Config {
            /// The top-level keys: settings, then tables (`spool`).
            pub const KEYS: &'static [&'static str] = &[
                $(full_key!(; $($key)?; $field),)*
                $(stringify!($table),)*
            ];

            /// Every setting, those of tables included (`spool.dir`, …), in declaration order.
            pub const SETTINGS: &'static [Setting] = &[
                $(
                    setting!(
                        [$field] $field: $ty, $doc,
                        table [], key [$($key)?], allowed [$($allowed)?],
                        default_doc [$($default_doc)?], check [$($check)?],
                        read [$($read)?]
                    ),
                )*
                $($(
                    setting!(
                        [$table . $tfield] $tfield: $tty, $tdoc,
                        table [$table], key [$($tkey)?], allowed [$($tallowed)?],
                        default_doc [$($tdefault_doc)?], check [$($tcheck)?],
                        read [$($tread)?]
                    ),
                )*)*
            ];
        }

        $(
            $(#[doc = $table_doc])*
            #[derive(Debug, Clone, PartialEq)]
            #[non_exhaustive]
            pub struct $Table {
                $(
                    #[doc = $tdoc]
                    #[doc = ""]
                    #[doc = concat!("Key `", full_key!($table; $($tkey)?; $tfield), "`.")]
                    pub $tfield: $tty,
                )*
            }

            impl Default for $Table {
                fn default() -> Self {
                    $Table {
                        $($tfield: $tdefault,)*
                    }
                }
            }

            impl $Table {
                /// The keys of this table.
                pub const KEYS: &'static [&'static str] = &[$(full_key!(; $($tkey)?; $tfield),)*];
            }
        )*
    };
}

/// A setting's key: `[table.]key`, the key being the field's name unless given.
macro_rules! full_key {
    (; $key:literal; $field:ident) => {
        $key
    };
    (; ; $field:ident) => {
        stringify!($field)
    };
    ($table:ident; $key:literal; $field:ident) => {
        concat!(stringify!($table), ".", $key)
    };
    ($table:ident; ; $field:ident) => {
        concat!(stringify!($table), ".", stringify!($field))
    };
}

/// `Some(x)`, or `None` for nothing.
macro_rules! some {
    () => {
        None
    };
    ($x:expr) => {
        Some($x)
    };
}

/// The given check, or none.
macro_rules! check_or_none {
    () => {
        no_check
    };
    ($check:expr) => {
        $check
    };
}

/// The given reader, or the type's.
macro_rules! read_or_kind {
    ($ty:ty;) => {
        <$ty as Kind>::read
    };
    ($ty:ty; $read:expr) => {
        $read
    };
}

/// One [`Setting`]: `[path . to . field] field: Type, doc, …`.
macro_rules! setting {
    (
        [$($path:ident).+] $field:ident : $ty:ty, $doc:literal,
        table [$($table:ident)?], key [$($key:literal)?], allowed [$($allowed:expr)?],
        default_doc [$($default_doc:expr)?], check [$($check:expr)?],
        read [$($read:expr)?]
    ) => {
        Setting {
            key: full_key!($($table)?; $($key)?; $field),
            doc: $doc,
            allowed: some!($($allowed)?),
            default_doc: some!($($default_doc)?),
            entries: <$ty as Kind>::ENTRIES,
            type_allowed: <$ty as Kind>::allowed,
            read: |c: &mut Config, value: config::Value| {
                (read_or_kind!($ty; $($read)?))(&mut c.$($path).+, value)
            },
            show: |c: &Config| <$ty as Kind>::show(&c.$($path).+),
            check: |c: &Config| (check_or_none!($($check)?))(&c.$($path).+),
        }
    };
}

settings! {
    /// Every setting, with its default. Build one in code, or read it with [`Config::from_env`].
    pub struct Config {
        /// `false`: nothing is shipped, `init` starts no thread and opens no connection (the console still prints when `console` is set).
        enabled: bool = true;
        /// Where events go: `amqp` (RabbitMQ: `broker_uri`, `exchange`, …), `redis` (`redis.*`; needs the crate's `redis` feature) or `mongodb` (`mongodb.*`; needs the crate's `mongodb` feature).
        transport: TransportKind = TransportKind::DEFAULT,
            check transport_built;
        /// The broker, or a cluster's nodes tried in order (failover); query `heartbeat` (default 10 s), `connection_timeout` and `auth_mechanism` honoured.
        broker_uri: String = defaults::BROKER_URI.to_string(),
            allowed "an amqp:// or amqps:// URI, e.g. amqp://user:password@host:5672/%2f; several separated by commas (a list in a file)",
            check amqp_uris,
            read read_uri_list;
        /// PEM file of the CA certificate(s) that sign the broker's certificate, trusted besides the system's roots.
        tls_ca_file: Option<PathBuf> = None,
            allowed "a PEM file path",
            default_doc "the system's roots only";
        /// PEM file of the client certificate (chain, leaf first) shown to the broker: mutual TLS.
        tls_cert_file: Option<PathBuf> = None,
            allowed "a PEM file path (with `tls_key_file`)",
            default_doc "none (no client certificate)";
        /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1; not encrypted).
        tls_key_file: Option<PathBuf> = None,
            allowed "a PEM file path (with `tls_cert_file`)",
            default_doc "none";
        /// The name the broker's certificate must carry, when it is not the host of the URI.
        tls_server_name: Option<String> = None,
            allowed "a DNS name or IP address",
            default_doc "the host of each URI";
        /// The SASL mechanism: `external` logs in as the client certificate's subject, with no password.
        auth_mechanism: Option<AuthMechanism> = None,
            default_doc "the URI's `auth_mechanism` parameter, else `plain`";
        /// The exchange to publish to, declared durable by the shipper.
        exchange: String = defaults::EXCHANGE.to_string(),
            allowed "an exchange name of at most 255 bytes",
            check short_string;
        /// The type the exchange is declared with.
        exchange_type: ExchangeType = ExchangeType::DEFAULT;
        /// The routing key template: `{target}`, `{level}` and `{service}` are replaced.
        routing_key: String = defaults::ROUTING_KEY.to_string(),
            allowed "a routing key template, e.g. `logstash.{target}`";
        /// The document format.
        format: Format = Format::DEFAULT;
        /// `EnvFilter` directives for `init`'s subscriber; unset means `RUST_LOG`, else `info`.
        level: Option<String> = None,
            allowed LEVEL_ALLOWED,
            default_doc "`RUST_LOG`, else `info`",
            check level_filter;
        /// Also print events on stdout (a `fmt` layer).
        console: bool = false;
        /// `EnvFilter` directives for the console alone; unset means the console shows what `level` lets through.
        console_level: Option<String> = None,
            allowed LEVEL_ALLOWED,
            default_doc "`level`",
            check level_filter;
        /// Activity identity entries (`identity.project`, `identity.application`, …).
        identity: BTreeMap<String, String> = BTreeMap::new(),
            default_doc "none",
            check identity_keys;
        /// Overrides `service.name` (else the `application` identity entry, else the executable name).
        service_name: Option<String> = None,
            default_doc "`identity.application`, else the executable name";
        /// `service.version`, e.g. the crate's version (see `cargo_package!`).
        service_version: Option<String> = None,
            default_doc "none";
        /// `service.environment`, e.g. `production` or `staging`.
        service_environment: Option<String> = None,
            default_doc "none";
        /// `event.dataset` of every event (ECS: `module.dataset`, no `-` if it names a data stream).
        event_dataset: Option<String> = None,
            default_doc "the service name";
        /// `init` installs a panic hook that logs a panic as an ERROR event and flushes before the previous hook runs.
        panic_hook: bool = true;
        /// Overrides the detected host name.
        hostname: Option<String> = None,
            default_doc "detected";
        /// Use the fully qualified host name.
        hostname_fqdn: bool = false;
        /// Events held in memory before the overflow policy applies.
        queue_capacity: usize = defaults::QUEUE_CAPACITY,
            allowed "a positive integer",
            check at_least_one;
        /// What a logging call does when the queue is full; unset means `spill` with a spool, else `drop_newest`.
        overflow: Option<Overflow> = None,
            default_doc "`spill` with a spool, else `drop_newest`";
        /// How long a logging call waits for room under `overflow = block`.
        block_timeout: Duration = Duration::from_millis(100), key "block_timeout_ms";
        /// Longer strings are cut at a character boundary and marked (0 = no limit).
        max_field_bytes: usize = 1 << 20,
            allowed "a number of bytes (0 = no limit)";
        /// A larger encoded event is dropped and counted (0 = no limit).
        max_message_bytes: usize = 16 << 20,
            allowed "a number of bytes (0 = no limit)";
        /// Messages (each one event or a batch) in flight awaiting the broker's confirm.
        confirm_window: usize = 64,
            allowed "a positive integer",
            check at_least_one;
        /// Bounds connecting, opening the channel, enabling confirms and declaring the exchange.
        connect_timeout: Duration = Duration::from_secs(10), key "connect_timeout_ms";
        /// No confirm for this long (unless the broker blocks us): the connection is replaced.
        confirm_timeout: Duration = Duration::from_secs(30), key "confirm_timeout_ms";
        /// How long dropping the guard waits for delivery.
        shutdown_timeout: Duration = Duration::from_secs(5), key "shutdown_timeout_ms";
        /// The first reconnect delay (it doubles up to `backoff_max_ms`).
        backoff_min: Duration = Duration::from_millis(100), key "backoff_min_ms";
        /// The longest reconnect delay, and the longest retry delay.
        backoff_max: Duration = Duration::from_secs(30), key "backoff_max_ms";
        /// The pause after a message is returned unroutable or nacked (it doubles while they go on).
        retry_delay: Duration = Duration::from_secs(1), key "retry_delay_ms";
        /// Field names whose values are replaced whole (event, span and identity fields; any case; matched as words, and inside words when longer than four letters); replaces the default list.
        redact_fields: Vec<String> = DEFAULT_REDACT_FIELDS.iter().map(|s| s.to_string()).collect(),
            allowed "field names separated by commas (a list in a file); empty for none";
        /// More field names to redact, added to `redact_fields`.
        redact_fields_extra: Vec<String> = Vec::new(),
            allowed "field names separated by commas (a list in a file)",
            default_doc "none";
        /// The detectors of secrets in messages and string values; leave one out to switch it off.
        redact_detectors: Vec<Detector> = Detector::ALL.to_vec(),
            allowed "detectors separated by commas (a list in a file), of bearer, basic, jwt, uri_password, secret_pair, aws_access_key, card_number; empty for none";
        /// What replaces a secret: `mask` (`[REDACTED]`) or `hash` (`[REDACTED:<keyed hash>]`, equal for equal secrets).
        redact_with: RedactWith = RedactWith::DEFAULT;
        /// The key of `redact_with = hash` (never printed); processes sharing it give equal hashes.
        redact_hash_key: Option<String> = None,
            default_doc "a random key per process";
        /// At most one stderr message of a kind per interval.
        diagnostics_interval: Duration = Duration::from_secs(10), key "diagnostics_interval_ms";
    }

    /// The disk spool (`spool.*` keys, variables `LOGCOLLECT_SPOOL__*`). Off unless `dir` is set.
    spool: pub struct SpoolConfig {
        /// The directory of segment files (created if missing; locked while in use); setting it turns the spool on.
        dir: Option<PathBuf> = None,
            allowed "a directory path",
            default_doc "none (no spool)";
        /// The most the segment files may hold together.
        max_bytes: u64 = defaults::SPOOL_MAX_BYTES,
            allowed "a number of bytes";
        /// What a full spool drops.
        when_full: WhenFull = WhenFull::DEFAULT;
        /// How often written records are forced to disk (0 = after every write).
        fsync_interval: Duration = Duration::from_secs(1), key "fsync_interval_ms";
    }

    /// Many events per AMQP message (`batch.*` keys, variables `LOGCOLLECT_BATCH__*`).
    batch: pub struct BatchConfig {
        /// The most events one message holds.
        max_events: usize = defaults::BATCH_MAX_EVENTS,
            allowed "a positive integer",
            check at_least_one;
        /// The most body bytes one message of several events holds; a larger event travels alone.
        max_bytes: usize = defaults::BATCH_MAX_BYTES,
            allowed "a number of bytes from 1 to 134217728 (RabbitMQ's default max_message_size)",
            check batch_bytes;
        /// How long a queue holding less than a full batch waits for more before it is sent (0 = never waits).
        linger: Duration = Duration::ZERO, key "linger_ms";
    }

    /// Redis as the transport (`redis.*` keys, variables `LOGCOLLECT_REDIS__*`), with `transport = redis`.
    redis: pub struct RedisConfig {
        /// The Redis server, or several tried in order (failover); `rediss://` for TLS (`tls_ca_file`, `tls_cert_file` and `tls_key_file` apply).
        uri: String = defaults::REDIS_URI.to_string(),
            allowed "a redis:// or rediss:// URI, e.g. redis://:password@host:6379/0; several separated by commas (a list in a file)",
            check redis_uris,
            read read_uri_list;
        /// The list or stream: a key, or a template where `{target}`, `{level}` and `{service}` are replaced.
        key: String = defaults::REDIS_KEY.to_string(),
            allowed "a key or a key template, e.g. `logstash` or `logs.{service}`",
            check non_empty;
        /// `list`: one value per document (`RPUSH`), what Logstash's redis input reads; `stream`: one entry per document (`XADD`).
        data_type: RedisDataType = RedisDataType::DEFAULT;
        /// A list this long holds the shipper back until it shrinks; a stream is trimmed to about this many entries (0 = no cap).
        max_length: u64 = defaults::REDIS_MAX_LENGTH,
            allowed "a number of entries (0 = no cap)";
    }

    /// MongoDB as the transport (`mongodb.*` keys, variables `LOGCOLLECT_MONGODB__*`), with `transport = mongodb`.
    mongodb: pub struct MongodbConfig {
        /// The server or replica set; its options (`tls=true`, `tlsCAFile`, `authSource`, `replicaSet`, …) are the driver's.
        uri: String = defaults::MONGODB_URI.to_string(),
            allowed "a mongodb:// or mongodb+srv:// URI, e.g. mongodb://user:password@host:27017/?authSource=admin",
            check mongodb_uri;
        /// The database of the collection.
        database: String = defaults::MONGODB_DATABASE.to_string(),
            allowed "a database name",
            check non_empty;
        /// The collection: a name, or a template where `{target}`, `{level}` and `{service}` are replaced; created at start if missing.
        collection: String = defaults::MONGODB_COLLECTION.to_string(),
            allowed "a collection name or template, e.g. `logs` or `logs.{service}`",
            check non_empty;
        /// A collection the shipper creates is capped at this many bytes (0 = not capped); an existing one is used as it is.
        capped_bytes: u64 = 0,
            allowed "a number of bytes (0 = not capped)";
        /// A capped collection also keeps at most this many documents (0 = no count limit; needs `capped_bytes`).
        capped_max: u64 = 0,
            allowed "a number of documents (0 = no count limit)";
        /// Documents are removed this long after their event time, by a TTL index on it (0 = no TTL index; whole seconds; not with `capped_bytes`).
        expire_after: Duration = Duration::ZERO, key "expire_after_ms",
            allowed "a whole number of milliseconds, a multiple of 1000 (0 = kept)",
            check whole_seconds;
        /// Whose acknowledgement an insert waits for: `majority` of the replica set, or `1` (the primary).
        write_concern: MongoWriteConcern = MongoWriteConcern::DEFAULT;
    }

    /// Rate limiting per callsite (`rate_limit.*` keys, variables `LOGCOLLECT_RATE_LIMIT__*`).
    /// Off unless `events` or a `targets` entry is above 0.
    rate_limit: pub struct RateLimitConfig {
        /// Events each callsite may ship per window; the rest are suppressed, counted (`dropped.rate_limited`) and summarised (0 = no limit).
        events: u64 = 0,
            allowed "a whole number of events (0 = no limit)";
        /// The window `events` counts in, and of the summaries.
        window: Duration = Duration::from_secs(1), key "window_ms",
            allowed "a whole number of milliseconds, at least 1",
            check at_least_one_ms;
        /// Allowance a callsite left unused, carried into later windows up to this many events above `events`.
        burst: u64 = 0;
        /// The least severe level never limited (`none`: every level may be).
        exempt_level: ExemptLevel = ExemptLevel::DEFAULT;
        /// Per-target limits, `target=events` (0 = no limit for that target); the longest matching target prefix wins over `events`.
        targets: Vec<TargetLimit> = Vec::new(),
            allowed "`target=events` entries separated by commas (a list, or a table of target = events, in a file)",
            default_doc "none",
            read read_target_limits;
    }
}

/// The keys a file or the environment may set at the top level (`identity` and `spool` are
/// tables); [`Config::SETTINGS`] has every setting.
pub const KEYS: &[&str] = Config::KEYS;

/// The keys of the `spool` table.
pub const SPOOL_KEYS: &[&str] = SpoolConfig::KEYS;

/// The keys of the `batch` table.
pub const BATCH_KEYS: &[&str] = BatchConfig::KEYS;

/// The keys of the `redis` table.
pub const REDIS_KEYS: &[&str] = RedisConfig::KEYS;
/// The keys of the `mongodb` table.
pub const MONGODB_KEYS: &[&str] = MongodbConfig::KEYS;
/// The keys of the `rate_limit` table.
pub const RATE_LIMIT_KEYS: &[&str] = RateLimitConfig::KEYS;

/// One setting, as declared: its key, what it holds, its default and what is allowed.
/// [`Config::SETTINGS`] lists them all.
pub struct Setting {
    key: &'static str,
    doc: &'static str,
    allowed: Option<&'static str>,
    default_doc: Option<&'static str>,
    entries: bool,
    type_allowed: fn() -> String,
    read: fn(&mut Config, config::Value) -> Result<(), Bad>,
    show: fn(&Config) -> Option<String>,
    check: fn(&Config) -> Result<(), String>,
}

impl Setting {
    /// The key, dotted when in a table: `queue_capacity`, `spool.max_bytes`, `identity`.
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// The environment variable: `LOGCOLLECT_SPOOL__MAX_BYTES`, `LOGCOLLECT_IDENTITY__<KEY>`.
    pub fn variable(&self) -> String {
        let variable = variable_of(self.key);
        if self.entries {
            variable + "__<KEY>"
        } else {
            variable
        }
    }

    /// True when the setting is a table of free entries (`identity.<key> = value`).
    pub fn has_entries(&self) -> bool {
        self.entries
    }

    /// What it does, in one line.
    pub fn doc(&self) -> &'static str {
        self.doc.trim()
    }

    /// What a value may be: `ecs, classic`, `a positive integer`, …
    pub fn allowed(&self) -> String {
        match self.allowed {
            Some(allowed) => allowed.to_string(),
            None => (self.type_allowed)(),
        }
    }

    /// Its value in `config`, as a file or variable would give it (durations in milliseconds);
    /// `None` when unset.
    pub fn value(&self, config: &Config) -> Option<String> {
        (self.show)(config)
    }

    /// The default value, as a file or variable would give it; `None` when the default is to
    /// leave it unset (then [`default_doc`](Setting::default_doc) says what that means).
    pub fn default_value(&self) -> Option<String> {
        self.value(&Config::default())
    }

    /// The default as docs/configuration.md's table shows it: the default value in backticks, or, for a
    /// setting unset by default, the declared description (e.g. "none (no spool)").
    pub fn default_doc(&self) -> String {
        match (self.default_value(), self.default_doc) {
            (Some(value), _) => format!("`{value}`"),
            (None, Some(doc)) => doc.to_string(),
            (None, None) => "none".to_string(),
        }
    }

    /// The error for a bad value: it names the key, the variable, the value when it was
    /// read as written (never for a check, which could echo a password in a URI) and what is
    /// allowed.
    fn invalid(&self, bad: Bad) -> Error {
        // A URI given to the wrong setting keeps its password out of the error too.
        let value = bad
            .value
            .map(|v| format!(" = `{}`", mask_uri_passwords(&v)))
            .unwrap_or_default();
        let reason = bad.reason.map(|r| format!(": {r}")).unwrap_or_default();
        Error::Config(format!(
            "`{}` (variable {}){value} is invalid{reason}; allowed: {}",
            self.key,
            self.variable(),
            self.allowed()
        ))
    }
}

impl fmt::Debug for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Setting")
            .field("key", &self.key)
            .field("allowed", &self.allowed())
            .field("default", &self.default_doc())
            .field("doc", &self.doc())
            .finish()
    }
}

/// Why a value could not be read: the value as written, if it is worth repeating, and a reason.
pub(crate) struct Bad {
    value: Option<String>,
    reason: Option<String>,
}

impl Bad {
    fn because(reason: impl Into<String>) -> Bad {
        Bad {
            value: None,
            reason: Some(reason.into()),
        }
    }
}

/// A type a setting can have: how a value is read, shown and described.
pub(crate) trait Kind: Sized {
    /// A table of free entries (`identity.<key>`) rather than one value.
    const ENTRIES: bool = false;
    /// What values are allowed, unless the setting says more.
    fn allowed() -> String;
    /// Parses a value, blanks already trimmed; the error is a reason, if any is worth giving.
    fn parse(s: &str) -> Result<Self, Option<String>>;
    /// The value as a file or variable gives it; `None` when unset.
    fn show(&self) -> Option<String>;
    /// Reads the value a file or variable holds (a string, number or bool).
    fn read(slot: &mut Self, value: config::Value) -> Result<(), Bad> {
        let s = value
            .into_string()
            .map_err(|e| Bad::because(e.to_string()))?;
        *slot = Self::parse(s.trim()).map_err(|reason| Bad {
            value: Some(s),
            reason,
        })?;
        Ok(())
    }
}

impl Kind for String {
    fn allowed() -> String {
        "text".into()
    }
    fn parse(s: &str) -> Result<Self, Option<String>> {
        Ok(s.to_string())
    }
    fn show(&self) -> Option<String> {
        Some(self.clone())
    }
}

impl Kind for PathBuf {
    fn allowed() -> String {
        "a path".into()
    }
    fn parse(s: &str) -> Result<Self, Option<String>> {
        Ok(PathBuf::from(s))
    }
    fn show(&self) -> Option<String> {
        Some(self.display().to_string())
    }
}

impl Kind for bool {
    fn allowed() -> String {
        "true or false".into()
    }
    fn parse(s: &str) -> Result<Self, Option<String>> {
        s.parse().map_err(|_| None)
    }
    fn show(&self) -> Option<String> {
        Some(self.to_string())
    }
}

macro_rules! integer_kind {
    ($($t:ty),*) => {$(
        impl Kind for $t {
            fn allowed() -> String {
                "a whole number".into()
            }
            fn parse(s: &str) -> Result<Self, Option<String>> {
                s.parse().map_err(|e: std::num::ParseIntError| Some(e.to_string()))
            }
            fn show(&self) -> Option<String> {
                Some(self.to_string())
            }
        }
    )*};
}
integer_kind!(usize, u64);

/// Durations are whole milliseconds (keys end in `_ms`).
impl Kind for Duration {
    fn allowed() -> String {
        "a whole number of milliseconds".into()
    }
    fn parse(s: &str) -> Result<Self, Option<String>> {
        u64::parse(s).map(Duration::from_millis)
    }
    fn show(&self) -> Option<String> {
        Some(self.as_millis().to_string())
    }
}

impl<T: Choice> Kind for T {
    fn allowed() -> String {
        choice::allowed::<T>()
    }
    fn parse(s: &str) -> Result<Self, Option<String>> {
        choice::find(s).ok_or(None)
    }
    fn show(&self) -> Option<String> {
        Some(self.name().to_string())
    }
}

/// Unset by default; an empty value unsets it.
impl<T: Kind> Kind for Option<T> {
    fn allowed() -> String {
        T::allowed()
    }
    fn parse(s: &str) -> Result<Self, Option<String>> {
        if s.is_empty() {
            Ok(None)
        } else {
            T::parse(s).map(Some)
        }
    }
    fn show(&self) -> Option<String> {
        self.as_ref().and_then(T::show)
    }
}

/// A table of free entries, each a string (`identity.project = "billing"`).
impl Kind for BTreeMap<String, String> {
    const ENTRIES: bool = true;
    fn allowed() -> String {
        "a table of entries, each a string".into()
    }
    fn parse(_: &str) -> Result<Self, Option<String>> {
        Err(Some("must be a table of entries".into()))
    }
    fn show(&self) -> Option<String> {
        (!self.is_empty()).then(|| {
            self.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
    fn read(slot: &mut Self, value: config::Value) -> Result<(), Bad> {
        let entries = value
            .into_table()
            .map_err(|_| Bad::because("must be a table of entries, not one value"))?;
        for (key, value) in entries {
            let value = value
                .into_string()
                .map_err(|e| Bad::because(format!("entry `{key}`: {e}")))?;
            slot.insert(key, value);
        }
        Ok(())
    }
}

/// What a list holds: names, or the words of a [`choice!`] enum.
pub(crate) trait Item: Sized {
    fn allowed_item() -> String;
    fn parse_item(s: &str) -> Result<Self, Option<String>>;
    fn show_item(&self) -> String;
}

impl Item for String {
    fn allowed_item() -> String {
        "text".into()
    }
    fn parse_item(s: &str) -> Result<Self, Option<String>> {
        Ok(s.to_string())
    }
    fn show_item(&self) -> String {
        self.clone()
    }
}

impl<T: Choice> Item for T {
    fn allowed_item() -> String {
        choice::allowed::<T>()
    }
    fn parse_item(s: &str) -> Result<Self, Option<String>> {
        choice::find(s)
            .ok_or_else(|| Some(format!("`{s}` is not one of {}", choice::allowed::<T>())))
    }
    fn show_item(&self) -> String {
        self.name().to_string()
    }
}

impl Item for TargetLimit {
    fn allowed_item() -> String {
        "`target=events`".into()
    }
    fn parse_item(s: &str) -> Result<Self, Option<String>> {
        TargetLimit::parse(s).map_err(Some)
    }
    fn show_item(&self) -> String {
        self.to_string()
    }
}

/// `rate_limit.targets`: `target=events` entries (a list, or comma-separated text), or in a
/// file a table of `target = events`.
fn read_target_limits(slot: &mut Vec<TargetLimit>, value: config::Value) -> Result<(), Bad> {
    let Ok(table) = value.clone().into_table() else {
        return <Vec<TargetLimit> as Kind>::read(slot, value);
    };
    let mut limits = Vec::with_capacity(table.len());
    for (target, events) in table {
        let events = events
            .into_string()
            .map_err(|e| Bad::because(format!("entry `{target}`: {e}")))?;
        let limit = TargetLimit::parse(&format!("{target}={events}")).map_err(|reason| Bad {
            value: Some(format!("{target} = {events}")),
            reason: Some(reason),
        })?;
        limits.push(limit);
    }
    *slot = limits;
    Ok(())
}

/// A list: an array in a file, comma-separated text in a variable; an empty value is an empty
/// list, an empty entry an error.
impl<T: Item> Kind for Vec<T> {
    fn allowed() -> String {
        format!("a list of {} separated by commas", T::allowed_item())
    }
    fn parse(s: &str) -> Result<Self, Option<String>> {
        if s.is_empty() {
            return Ok(Vec::new());
        }
        s.split(',')
            .enumerate()
            .map(|(i, entry)| match entry.trim() {
                "" => Err(Some(format!("entry {} of the list is empty", i + 1))),
                entry => T::parse_item(entry),
            })
            .collect()
    }
    fn show(&self) -> Option<String> {
        (!self.is_empty()).then(|| self.iter().map(T::show_item).collect::<Vec<_>>().join(", "))
    }
    fn read(slot: &mut Self, value: config::Value) -> Result<(), Bad> {
        match value.clone().into_array() {
            Ok(entries) => {
                let mut list = Vec::with_capacity(entries.len());
                for (i, entry) in entries.into_iter().enumerate() {
                    let entry = entry
                        .into_string()
                        .map_err(|e| Bad::because(format!("entry {}: {e}", i + 1)))?;
                    match entry.trim() {
                        "" => {
                            return Err(Bad::because(format!(
                                "entry {} of the list is empty",
                                i + 1
                            )))
                        }
                        item => list.push(T::parse_item(item).map_err(|reason| Bad {
                            value: Some(entry.clone()),
                            reason,
                        })?),
                    }
                }
                *slot = list;
                Ok(())
            }
            Err(_) => {
                let s = value
                    .into_string()
                    .map_err(|e| Bad::because(e.to_string()))?;
                *slot = Self::parse(s.trim()).map_err(|reason| Bad {
                    value: Some(s),
                    reason,
                })?;
                Ok(())
            }
        }
    }
}

/// `broker_uri`: one URI, comma-separated URIs, or (in a file) a list of URIs, kept as
/// comma-separated text. Never repeats the value (it may hold a password).
fn read_uri_list(slot: &mut String, value: config::Value) -> Result<(), Bad> {
    match value.clone().into_array() {
        Ok(entries) => {
            let mut uris = Vec::with_capacity(entries.len());
            for (i, entry) in entries.into_iter().enumerate() {
                let entry = entry
                    .into_string()
                    .map_err(|_| Bad::because(format!("entry {} is not a string", i + 1)))?;
                uris.push(entry.trim().to_string());
            }
            if uris.is_empty() {
                return Err(Bad::because("the list is empty"));
            }
            *slot = uris.join(",");
        }
        Err(_) => {
            *slot = value
                .into_string()
                .map_err(|_| Bad::because("must be text"))?
                .trim()
                .to_string();
        }
    }
    Ok(())
}

/// A field in `Config`'s `Debug`: passwords in URIs and the hash key masked.
struct Masked<'a, T: fmt::Debug>(&'static str, &'a T);

impl<T: fmt::Debug> fmt::Debug for Masked<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = if f.alternate() {
            format!("{:#?}", self.1)
        } else {
            format!("{:?}", self.1)
        };
        if self.0 == "redact_hash_key" && shown != "None" {
            return f.write_str("Some(\"***\")");
        }
        f.write_str(&mask_uri_passwords(&shown))
    }
}

/// The entries of a `broker_uri` list, parsed; an error names the entry, never its text.
pub(crate) fn split_uris(s: &str) -> Result<Vec<lapin::uri::AMQPUri>, String> {
    let entries: Vec<&str> = s.split(',').map(str::trim).collect();
    let several = entries.len() > 1;
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let which = if several {
                format!("entry {} ", i + 1)
            } else {
                String::new()
            };
            if entry.is_empty() {
                return Err(if several {
                    format!("{which}of the list is empty")
                } else {
                    "is empty".to_string()
                });
            }
            entry.parse::<lapin::uri::AMQPUri>().map_err(|e| {
                format!(
                    "{which}is not a valid AMQP URI ({})",
                    mask_uri_passwords(&e.to_string())
                )
            })
        })
        .collect()
}

// Checks of single values (a rule involving two settings is in `Config::validate`).

fn no_check<T>(_: &T) -> Result<(), String> {
    Ok(())
}

fn at_least_one_ms(d: &Duration) -> Result<(), String> {
    if d.as_millis() == 0 {
        return Err("must be at least 1 ms".into());
    }
    Ok(())
}

fn at_least_one(n: &usize) -> Result<(), String> {
    if *n == 0 {
        return Err("must be at least 1".into());
    }
    Ok(())
}

/// The broker refuses larger messages by default (RabbitMQ's `max_message_size`).
const MAX_BATCH_BYTES: usize = 128 << 20;

fn batch_bytes(n: &usize) -> Result<(), String> {
    if *n == 0 || *n > MAX_BATCH_BYTES {
        return Err(format!("must be from 1 to {MAX_BATCH_BYTES}"));
    }
    Ok(())
}

fn short_string(s: &str) -> Result<(), String> {
    if s.len() > 255 {
        return Err(format!("is {} bytes long; AMQP allows 255", s.len()));
    }
    Ok(())
}

fn amqp_uris(s: &str) -> Result<(), String> {
    split_uris(s).map(drop)
}

fn transport_built(transport: &TransportKind) -> Result<(), String> {
    let built = match transport {
        TransportKind::Amqp => true,
        TransportKind::Redis => cfg!(feature = "redis"),
        TransportKind::Mongodb => cfg!(feature = "mongodb"),
    };
    if !built {
        let name = transport.as_str();
        return Err(format!(
            "is `{name}`, but logcollect was built without its `{name}` feature; enable it \
             (`features = [\"{name}\"]` in Cargo.toml)"
        ));
    }
    Ok(())
}

/// A mongodb:// or mongodb+srv:// URI the driver parses; never repeats it (it may hold a
/// password).
fn mongodb_uri(s: &str) -> Result<(), String> {
    if !(s.starts_with("mongodb://") || s.starts_with("mongodb+srv://")) {
        return Err("is not a mongodb:// or mongodb+srv:// URI".into());
    }
    #[cfg(feature = "mongodb")]
    if let Err(e) = ::mongodb::options::ConnectionString::parse(s) {
        return Err(format!(
            "is not a valid MongoDB URI ({})",
            mask_uri_passwords(&e.to_string())
        ));
    }
    Ok(())
}

/// A TTL index counts whole seconds.
fn whole_seconds(d: &Duration) -> Result<(), String> {
    if d.subsec_nanos() != 0 {
        return Err("must be whole seconds (a TTL index counts seconds)".into());
    }
    Ok(())
}

/// Each entry a redis:// or rediss:// URI; an error names the entry, never its text.
fn redis_uris(s: &str) -> Result<(), String> {
    let entries: Vec<&str> = s.split(',').map(str::trim).collect();
    for (i, entry) in entries.iter().enumerate() {
        let n = i + 1;
        if !(entry.starts_with("redis://") || entry.starts_with("rediss://")) {
            return Err(format!("entry {n} is not a redis:// or rediss:// URI"));
        }
        #[cfg(feature = "redis")]
        if let Err(e) = ::redis::IntoConnectionInfo::into_connection_info(*entry) {
            return Err(format!(
                "entry {n} is not a valid Redis URI ({})",
                mask_uri_passwords(&e.to_string())
            ));
        }
    }
    Ok(())
}

fn non_empty(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("is empty".into());
    }
    Ok(())
}

fn env_filter(directives: &str) -> Result<(), String> {
    tracing_subscriber::EnvFilter::try_new(directives)
        .map(drop)
        .map_err(|e| format!("`{directives}` is not a valid filter ({e})"))
}

fn level_filter(level: &Option<String>) -> Result<(), String> {
    level.as_deref().map_or(Ok(()), env_filter)
}

fn identity_keys(identity: &BTreeMap<String, String>) -> Result<(), String> {
    if identity.keys().any(|k| k.trim().is_empty()) {
        return Err("has an empty key".into());
    }
    Ok(())
}

/// `spool.max_bytes` → `LOGCOLLECT_SPOOL__MAX_BYTES`.
fn variable_of(key: &str) -> String {
    format!("LOGCOLLECT_{}", key.to_ascii_uppercase().replace('.', "__"))
}

/// Environment variables with the prefix that are not configuration keys.
fn is_reserved_variable(name: &str) -> bool {
    name == "LOGCOLLECT_CONFIG" || name.starts_with("LOGCOLLECT_TEST_")
}

/// A `Config` is read from any serde source with the keys and values of a configuration file
/// (durations in milliseconds, `spool` and `batch` as tables), e.g. a `[logcollect]` table of
/// the application's own TOML file; unknown keys and invalid values are errors naming the key.
/// The environment is not read: see [`Config::from_env`].
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct AppConfig {
///     logcollect: logcollect::Config,
/// }
/// # let app: AppConfig = serde_json::from_str(r#"{"logcollect": {"exchange": "apps", "spool": {"max_bytes": 1048576}}}"#).unwrap();
/// # assert_eq!(app.logcollect.exchange, "apps");
/// # assert_eq!(app.logcollect.spool.max_bytes, 1 << 20);
/// ```
impl<'de> serde::Deserialize<'de> for Config {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = config::Value::deserialize(deserializer)?;
        let table = value.into_table().map_err(|_| {
            serde::de::Error::custom("logcollect configuration: must be a table of settings")
        })?;
        Config::from_table(table).map_err(serde::de::Error::custom)
    }
}

impl Config {
    /// The defaults with the settings of `table` (as a file gives them), validated.
    fn from_table(table: config::Map<String, config::Value>) -> Result<Config, Error> {
        let mut config = Config::default();
        read_table(&mut config, "", table)?;
        config.validate()?;
        Ok(config)
    }

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
        let table: config::Map<String, config::Value> = raw
            .try_deserialize()
            .map_err(|e| Error::Config(e.to_string()))?;
        let mut config = Config::default();
        read_table(&mut config, "", table)?;
        if config.level.is_none() {
            if let Some(directives) = vars
                .get("RUST_LOG")
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
            {
                env_filter(directives).map_err(|reason| {
                    Error::Config(format!(
                        "`RUST_LOG` (the level, LOGCOLLECT_LEVEL being unset) is invalid: \
                         {reason}; allowed: {LEVEL_ALLOWED}"
                    ))
                })?;
                config.level = Some(directives.to_string());
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// The declaration of the setting with this key (`queue_capacity`, `spool.dir`, …).
    pub fn setting(key: &str) -> Option<&'static Setting> {
        Config::SETTINGS.iter().find(|s| s.key == key)
    }

    /// Checks what the types alone do not: a URI that parses, names AMQP accepts, sizes > 0,
    /// and the settings that depend on each other.
    pub fn validate(&self) -> Result<(), Error> {
        for setting in Config::SETTINGS {
            (setting.check)(self).map_err(|reason| setting.invalid(Bad::because(reason)))?;
        }
        self.validate_tls()?;
        if self.routing_key.is_empty() && self.exchange_type == ExchangeType::Direct {
            return Err(rule(
                "routing_key",
                "is empty; a direct exchange (exchange_type = direct) needs one",
            ));
        }
        if self.overflow == Some(Overflow::Spill) && self.spool.dir.is_none() {
            let others: Vec<&str> = Overflow::ALL
                .iter()
                .filter(|o| **o != Overflow::Spill)
                .map(|o| o.as_str())
                .collect();
            return Err(rule(
                "overflow",
                &format!(
                    "is `spill` but no spool is set; set spool.dir ({}) or choose {}",
                    variable_of("spool.dir"),
                    others.join(", ")
                ),
            ));
        }
        if self.mongodb.capped_max > 0 && self.mongodb.capped_bytes == 0 {
            return Err(rule(
                "mongodb.capped_max",
                "is set without mongodb.capped_bytes; a capped collection needs its size",
            ));
        }
        if self.mongodb.capped_bytes > 0 && !self.mongodb.expire_after.is_zero() {
            return Err(rule(
                "mongodb.expire_after_ms",
                "is set with mongodb.capped_bytes; a capped collection takes no TTL index: \
                 choose one",
            ));
        }
        if self.spool.dir.is_some() && self.spool.max_bytes < MIN_SPOOL_BYTES {
            return Err(rule(
                "spool.max_bytes",
                &format!("must be at least {MIN_SPOOL_BYTES} bytes when a spool is set"),
            ));
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

    /// The TLS rules: a client certificate comes with its key, TLS settings mean every node
    /// is `amqps://` (never a silent fall back to plain AMQP), EXTERNAL needs a certificate.
    /// With `transport = redis`, the TLS files apply to `rediss://` URIs only: never a silent
    /// fall back to plain text (the AMQP settings are not used).
    fn validate_redis_tls(&self) -> Result<(), Error> {
        let tls_set = [
            ("tls_ca_file", self.tls_ca_file.is_some()),
            ("tls_cert_file", self.tls_cert_file.is_some()),
            ("tls_key_file", self.tls_key_file.is_some()),
        ];
        let Some((key, _)) = tls_set.iter().find(|(_, set)| *set) else {
            return Ok(());
        };
        let plain = self
            .redis
            .uri
            .split(',')
            .position(|u| u.trim().starts_with("redis://"));
        match (plain, Config::setting(key)) {
            (Some(i), Some(setting)) => Err(setting.invalid(Bad::because(format!(
                "is set but `redis.uri` node {} is redis://: TLS settings need rediss:// URIs, \
                 logcollect never falls back to plain text",
                i + 1
            )))),
            _ => Ok(()),
        }
    }

    /// With `transport = mongodb`, TLS is the URI's (`tls=true&tlsCAFile=…`, the driver's own
    /// options): the `tls_*` settings are refused rather than silently ignored.
    fn validate_mongodb_tls(&self) -> Result<(), Error> {
        let tls_set = [
            ("tls_ca_file", self.tls_ca_file.is_some()),
            ("tls_cert_file", self.tls_cert_file.is_some()),
            ("tls_key_file", self.tls_key_file.is_some()),
            ("tls_server_name", self.tls_server_name.is_some()),
        ];
        match tls_set.iter().find(|(_, set)| *set) {
            Some((key, _)) => Err(rule(
                key,
                "is set but `transport` is mongodb: give TLS in `mongodb.uri` \
                 (`?tls=true&tlsCAFile=…&tlsCertificateKeyFile=…`)",
            )),
            None => Ok(()),
        }
    }

    fn validate_tls(&self) -> Result<(), Error> {
        // Each error names the setting that is set, with what it allows.
        let invalid = |key: &str, reason: String| match Config::setting(key) {
            Some(setting) => setting.invalid(Bad::because(reason)),
            None => rule(key, &reason),
        };
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => {
                return Err(invalid(
                    "tls_cert_file",
                    "is set without tls_key_file; a client certificate needs its key".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "tls_key_file",
                    "is set without tls_cert_file; set the client certificate too".into(),
                ))
            }
            _ => {}
        }
        if self.transport == TransportKind::Redis {
            return self.validate_redis_tls();
        }
        if self.transport == TransportKind::Mongodb {
            return self.validate_mongodb_tls();
        }
        let uris = split_uris(&self.broker_uri).map_err(|reason| {
            Error::Config(format!(
                "`broker_uri` (variable LOGCOLLECT_BROKER_URI) {reason}"
            ))
        })?;
        let tls_set = [
            ("tls_ca_file", self.tls_ca_file.is_some()),
            ("tls_cert_file", self.tls_cert_file.is_some()),
            ("tls_key_file", self.tls_key_file.is_some()),
            ("tls_server_name", self.tls_server_name.is_some()),
        ];
        let external = |uri: &lapin::uri::AMQPUri| match self.auth_mechanism {
            Some(mechanism) => mechanism == AuthMechanism::External,
            None => uri.query.auth_mechanism == Some(lapin::uri::SASLMechanism::External),
        };
        for (i, uri) in uris.iter().enumerate() {
            let plain = uri.scheme == lapin::uri::AMQPScheme::AMQP;
            if let (true, Some((key, _))) = (plain, tls_set.iter().find(|(_, set)| *set)) {
                return Err(invalid(
                    key,
                    format!(
                        "is set but `broker_uri` node {} is amqp://: TLS settings need amqps:// \
                         URIs, logcollect never falls back to plain AMQP",
                        i + 1
                    ),
                ));
            }
            if external(uri) && self.tls_cert_file.is_none() {
                return Err(invalid(
                    "auth_mechanism",
                    "is EXTERNAL, which logs in with the client certificate: set \
                     tls_cert_file and tls_key_file, and use amqps://"
                        .into(),
                ));
            }
            if external(uri) && plain {
                return Err(invalid(
                    "auth_mechanism",
                    "is EXTERNAL, which needs TLS: use amqps:// URIs".into(),
                ));
            }
        }
        Ok(())
    }

    /// The broker URIs, parsed, in order; a heartbeat of 10 s is asked for unless a URI sets
    /// one, and `auth_mechanism`, when set, applies to every one.
    pub(crate) fn amqp_uris(&self) -> Result<Vec<lapin::uri::AMQPUri>, Error> {
        let mut uris = split_uris(&self.broker_uri).map_err(|reason| {
            Error::Config(format!(
                "`broker_uri` {reason}; expected e.g. amqp://user:password@host:5672/%2f or \
                 amqps://…, several separated by commas"
            ))
        })?;
        for uri in &mut uris {
            uri.query.heartbeat.get_or_insert(10);
            if let Some(mechanism) = self.auth_mechanism {
                uri.query.auth_mechanism = Some(mechanism.sasl());
            }
        }
        Ok(uris)
    }

    /// The redaction rules these settings give.
    pub(crate) fn redactor(&self) -> crate::encoding::redact::Redactor {
        crate::encoding::redact::Redactor::new(
            self.redact_fields
                .iter()
                .chain(&self.redact_fields_extra)
                .map(String::as_str),
            &self.redact_detectors,
            self.redact_with,
            self.redact_hash_key.as_deref(),
        )
    }
}

/// An error for a rule involving two settings, naming the first.
fn rule(key: &str, what: &str) -> Error {
    Error::Config(format!("`{key}` (variable {}) {what}", variable_of(key)))
}

/// Reads one table of the merged sources into `config`: the top level (`prefix` "") or a
/// nested table (`prefix` "spool."). Unknown keys are errors listing the known ones.
fn read_table(
    config: &mut Config,
    prefix: &str,
    table: config::Map<String, config::Value>,
) -> Result<(), Error> {
    let names = names_under(prefix);
    // Sorted, so that of several mistakes the same one is reported every time.
    let mut table: BTreeMap<String, config::Value> = table.into_iter().collect();
    if let Some(unknown) = table.keys().find(|k| !names.contains(&k.as_str())) {
        let key = format!("{prefix}{unknown}");
        return Err(Error::Config(format!(
            "unknown key `{key}` (variable {}); allowed keys: {}",
            variable_of(&key),
            names.join(", ")
        )));
    }
    for name in names {
        let Some(value) = table.remove(name) else {
            continue;
        };
        let key = format!("{prefix}{name}");
        match Config::setting(&key) {
            Some(setting) => (setting.read)(config, value).map_err(|bad| setting.invalid(bad))?,
            None => {
                let entries = value.into_table().map_err(|_| not_a_table(&key))?;
                read_table(config, &format!("{key}."), entries)?;
            }
        }
    }
    Ok(())
}

/// The names directly under `prefix` ("" or "spool."): settings and tables, in declaration
/// order.
fn names_under(prefix: &str) -> Vec<&'static str> {
    let mut names = Vec::new();
    for setting in Config::SETTINGS {
        if let Some(rest) = setting.key.strip_prefix(prefix) {
            let name = rest.split_once('.').map_or(rest, |(table, _)| table);
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

fn not_a_table(key: &str) -> Error {
    let settings: Vec<String> = names_under(&format!("{key}."))
        .iter()
        .map(|name| format!("{key}.{name}"))
        .collect();
    Error::Config(format!(
        "`{key}` must be a table of settings: {} (variables {}__<KEY>)",
        settings.join(", "),
        variable_of(key)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_lists_come_from_the_declarations() {
        assert_eq!(names_under(""), KEYS);
        assert_eq!(names_under("spool."), SPOOL_KEYS);
        assert_eq!(names_under("batch."), BATCH_KEYS);
        assert_eq!(BATCH_KEYS, ["max_events", "max_bytes", "linger_ms"]);
        assert!(KEYS.contains(&"identity") && KEYS.contains(&"spool") && KEYS.contains(&"batch"));
        assert!(KEYS.contains(&"block_timeout_ms") && !KEYS.contains(&"block_timeout"));
        assert_eq!(
            SPOOL_KEYS,
            ["dir", "max_bytes", "when_full", "fsync_interval_ms"]
        );
        let keys: Vec<&str> = Config::SETTINGS.iter().map(Setting::key).collect();
        for (i, key) in keys.iter().enumerate() {
            assert!(!keys[..i].contains(key), "`{key}` is declared twice");
        }
    }

    #[test]
    fn a_default_is_a_value_or_a_declared_description_never_both() {
        for setting in Config::SETTINGS {
            assert_eq!(
                setting.default_value().is_some(),
                setting.default_doc.is_none(),
                "`{}`: a default that is a value is shown as that value; only an unset \
                 default is described (default_doc)",
                setting.key()
            );
            assert!(!setting.doc().is_empty(), "`{}` has no doc", setting.key());
        }
        let level = Config::setting("level").expect("level");
        assert!(level
            .default_doc()
            .contains(&format!("`{}`", defaults::LEVEL)));
    }

    #[test]
    fn settings_show_their_values_as_a_file_would_give_them() {
        let c = Config::default();
        let show = |key: &str| Config::setting(key).expect(key).value(&c);
        assert_eq!(show("shutdown_timeout_ms").as_deref(), Some("5000"));
        assert_eq!(show("spool.max_bytes").as_deref(), Some("1073741824"));
        assert_eq!(show("exchange_type").as_deref(), Some("topic"));
        assert_eq!(show("overflow"), None);
        assert_eq!(show("identity"), None);
        assert_eq!(
            Config::setting("identity")
                .map(Setting::variable)
                .as_deref(),
            Some("LOGCOLLECT_IDENTITY__<KEY>")
        );
        assert_eq!(
            Config::setting("spool.when_full")
                .map(Setting::variable)
                .as_deref(),
            Some("LOGCOLLECT_SPOOL__WHEN_FULL")
        );
        assert_eq!(defaults::EXCHANGE_TYPE, "topic");
    }
}
