//! Boot: one call to configure, install and start everything.

use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tracing_log::AsLog;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer};

use crate::broker::ExchangeType;
use crate::broker::{Connector, Target};
use crate::capture::LogcollectLayer;
use crate::config::Config;
use crate::delivery::{
    BatchLimits, Encoder, Guard, Handoff, Limits, Shared, ShipperConfig, Spool, SpoolSettings,
};
use crate::encoding::Format;
use crate::identity::Identity;
use crate::transport::amqp::Amqp;
use crate::transport::TransportKind;
use crate::Error;

/// Reads the configuration from the environment (and the file named by `LOGCOLLECT_CONFIG`),
/// installs a global subscriber with the logcollect layer, a level filter and the optional
/// console layer, routes `log` records into it, and starts the shipper.
///
/// Returns at once, whether or not the broker is up: the shipper connects in the background.
/// Keep the guard for the life of the program; dropping it delivers what is queued.
///
/// ```no_run
/// fn main() -> Result<(), logcollect::Error> {
///     let _guard = logcollect::init()?;
///     tracing::info!(user = "ada", "logged in");
///     Ok(())
/// }
/// ```
pub fn init() -> Result<Guard, Error> {
    Builder::from_config(Config::from_env()?).init()
}

/// A builder starting from the configuration in the environment (as [`init`] reads it), to
/// add or override settings in code.
pub fn builder_from_env() -> Result<Builder, Error> {
    Ok(Builder::from_config(Config::from_env()?))
}

/// A builder starting from the defaults (no environment): configure in code.
///
/// ```no_run
/// let _guard = logcollect::builder()
///     .broker_uri("amqp://app:secret@rabbit.internal:5672/%2f")
///     .identity("project", "billing")
///     .identity("application", "invoicer")
///     .format(logcollect::Format::Classic)
///     .init()?;
/// # Ok::<(), logcollect::Error>(())
/// ```
pub fn builder() -> Builder {
    Builder::from_config(Config::default())
}

/// A crate's name and version, as [`cargo_package!`](crate::cargo_package) reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CargoPackage {
    /// The package's name (`service.name`).
    pub name: &'static str,
    /// The package's version (`service.version`).
    pub version: &'static str,
}

/// The calling crate's [`CargoPackage`] (`CARGO_PKG_NAME`, `CARGO_PKG_VERSION` at its build),
/// for [`Builder::cargo_package`]:
///
/// ```no_run
/// let _guard = logcollect::builder_from_env()?
///     .cargo_package(logcollect::cargo_package!())
///     .init()?;
/// # Ok::<(), logcollect::Error>(())
/// ```
#[macro_export]
macro_rules! cargo_package {
    () => {
        $crate::CargoPackage {
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
        }
    };
}

/// Configuration in code; see [`builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder {
    config: Config,
    /// `process.pid` override (see [`Builder::pid`], in `capture/external.rs`).
    pub(crate) pid: Option<u32>,
}

impl Builder {
    /// Starts from a given configuration (e.g. [`Config::from_env`] to layer code on top).
    pub fn from_config(config: Config) -> Self {
        Builder { config, pid: None }
    }

    /// The broker to publish to: an `amqp://` or `amqps://` URI.
    ///
    /// Sets `broker_uri` (`LOGCOLLECT_BROKER_URI`); default `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub fn broker_uri(mut self, uri: impl Into<String>) -> Self {
        self.config.broker_uri = uri.into();
        self
    }
    /// The exchange to publish to (declared durable by the shipper).
    ///
    /// Sets `exchange` (`LOGCOLLECT_EXCHANGE`); default `logstash`.
    pub fn exchange(mut self, name: impl Into<String>) -> Self {
        self.config.exchange = name.into();
        self
    }
    /// The type the exchange is declared with.
    ///
    /// Sets `exchange_type` (`LOGCOLLECT_EXCHANGE_TYPE`); default `topic`.
    pub fn exchange_type(mut self, kind: ExchangeType) -> Self {
        self.config.exchange_type = kind;
        self
    }
    /// A routing-key template: `{target}`, `{level}`, `{service}` are replaced.
    ///
    /// Sets `routing_key` (`LOGCOLLECT_ROUTING_KEY`); default `logstash.{target}`.
    pub fn routing_key(mut self, template: impl Into<String>) -> Self {
        self.config.routing_key = template.into();
        self
    }
    /// The document format.
    ///
    /// Sets `format` (`LOGCOLLECT_FORMAT`); default `ecs`.
    pub fn format(mut self, format: Format) -> Self {
        self.config.format = format;
        self
    }
    /// An `EnvFilter` directive for [`init`](Builder::init)'s subscriber.
    ///
    /// Sets `level` (`LOGCOLLECT_LEVEL`); default `RUST_LOG`, else `info`.
    /// ([`builder`] reads no environment, so from it the default is `info`.)
    pub fn level(mut self, directive: impl Into<String>) -> Self {
        self.config.level = Some(directive.into());
        self
    }
    /// Also print events on stdout (a `fmt` layer), with [`init`](Builder::init).
    ///
    /// Sets `console` (`LOGCOLLECT_CONSOLE`); default `false`.
    pub fn console(mut self, on: bool) -> Self {
        self.config.console = on;
        self
    }
    /// An `EnvFilter` directive for the console alone, e.g. `warn` while `level` ships `debug`.
    ///
    /// Sets `console_level` (`LOGCOLLECT_CONSOLE_LEVEL`); default `level`.
    pub fn console_level(mut self, directive: impl Into<String>) -> Self {
        self.config.console_level = Some(directive.into());
        self
    }
    /// `false` ships nothing: no shipper thread, no connection (e.g. in local runs and tests).
    ///
    /// Sets `enabled` (`LOGCOLLECT_ENABLED`); default `true`.
    pub fn enabled(mut self, on: bool) -> Self {
        self.config.enabled = on;
        self
    }
    /// Adds an activity identity entry, e.g. `("project", "billing")`.
    ///
    /// Adds to `identity` (`LOGCOLLECT_IDENTITY__<KEY>`); default none.
    pub fn identity(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.identity.insert(key.into(), value.into());
        self
    }
    /// The documents' `service.name`.
    ///
    /// Sets `service_name` (`LOGCOLLECT_SERVICE_NAME`); default `identity.application`, else the executable name.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.config.service_name = Some(name.into());
        self
    }
    /// The documents' `service.version`.
    ///
    /// Sets `service_version` (`LOGCOLLECT_SERVICE_VERSION`); default none.
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.config.service_version = Some(version.into());
        self
    }
    /// The documents' `service.environment` (`production`, `staging`…).
    ///
    /// Sets `service_environment` (`LOGCOLLECT_SERVICE_ENVIRONMENT`); default none.
    pub fn service_environment(mut self, environment: impl Into<String>) -> Self {
        self.config.service_environment = Some(environment.into());
        self
    }
    /// The documents' `event.dataset`.
    ///
    /// Sets `event_dataset` (`LOGCOLLECT_EVENT_DATASET`); default the service name.
    pub fn event_dataset(mut self, dataset: impl Into<String>) -> Self {
        self.config.event_dataset = Some(dataset.into());
        self
    }
    /// Whether [`init`](Builder::init) installs the panic hook (see
    /// [`install_panic_hook`](crate::install_panic_hook)).
    ///
    /// Sets `panic_hook` (`LOGCOLLECT_PANIC_HOOK`); default `true`.
    pub fn panic_hook(mut self, on: bool) -> Self {
        self.config.panic_hook = on;
        self
    }
    /// Service name and version from Cargo, where not already given (by the environment, a
    /// file or an earlier call): `builder.cargo_package(logcollect::cargo_package!())` names
    /// the service after the calling crate unless `service_name` or the `application` identity
    /// entry names it, and sets `service.version` unless `service_version` is set. Call it
    /// after the other settings.
    pub fn cargo_package(self, package: CargoPackage) -> Self {
        self.configure(|c| {
            if c.service_name.is_none() && !c.identity.contains_key("application") {
                c.service_name = Some(package.name.to_string());
            }
            c.service_version
                .get_or_insert_with(|| package.version.to_string());
        })
    }
    /// The documents' `host.hostname`.
    ///
    /// Sets `hostname` (`LOGCOLLECT_HOSTNAME`); default detected.
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.config.hostname = Some(name.into());
        self
    }
    /// Events held in memory; when full, the overflow policy decides.
    ///
    /// Sets `queue_capacity` (`LOGCOLLECT_QUEUE_CAPACITY`); default `65536`.
    pub fn queue_capacity(mut self, events: usize) -> Self {
        self.config.queue_capacity = events;
        self
    }
    /// Turns the disk spool on, in `dir` (see [`SpoolConfig`](crate::SpoolConfig) for its other
    /// settings, through [`configure`](Builder::configure)).
    ///
    /// Sets `spool.dir` (`LOGCOLLECT_SPOOL__DIR`); default none (no spool).
    pub fn spool_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.config.spool.dir = Some(dir.into());
        self
    }
    /// What a logging call does when the in-memory queue is full.
    ///
    /// Sets `overflow` (`LOGCOLLECT_OVERFLOW`); default `spill` with a spool, else `drop_newest`.
    pub fn overflow(mut self, policy: crate::Overflow) -> Self {
        self.config.overflow = Some(policy);
        self
    }
    /// How long dropping the guard waits for delivery.
    ///
    /// Sets `shutdown_timeout_ms` (`LOGCOLLECT_SHUTDOWN_TIMEOUT_MS`); default `5000`.
    /// (Files and variables give it in milliseconds.)
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }
    /// Any other setting: `|c| c.confirm_window = 256` (see [`Config`] for every field, its key
    /// and its default).
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }
    /// The configuration so far.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts the shipper and returns the layer, for a subscriber you compose yourself.
    /// `level` and `console` are not applied here: add your own filter and layers.
    /// `log` records reach the layer through the `log` bridge: tracing-subscriber's
    /// `init()`/`try_init()` install it (its default `tracing-log` feature); otherwise call
    /// [`init_log_bridge`](crate::capture::init_log_bridge) after installing the subscriber.
    /// With `enabled = false` the layer captures nothing and no thread is started.
    pub fn build(self) -> Result<(LogcollectLayer, Guard), Error> {
        let config = self.config;
        config.validate()?;
        let redactor = config.redactor();
        let identity = Identity::detect(
            config.identity.clone(),
            config.hostname.clone(),
            config.hostname_fqdn,
            config.service_name.clone(),
        )
        .with_service(
            config.service_version.clone(),
            config.service_environment.clone(),
            config.event_dataset.clone(),
        );
        let identity = Identity {
            pid: self.pid.unwrap_or(identity.pid),
            ..identity
        };
        let identity = redactor.identity(identity);
        let destination = Destination::from_config(
            &config,
            format!("logcollect {}@{}", identity.service_name, identity.hostname),
        )?;
        let encoder = Encoder {
            redactor,
            format: config.format,
            identity,
            routing_key: match config.transport {
                TransportKind::Amqp => config.routing_key.clone(),
                TransportKind::Redis => config.redis.key.clone(),
                TransportKind::Mongodb => config.mongodb.collection.clone(),
            },
            max_field_bytes: config.max_field_bytes,
            max_message_bytes: match config.transport {
                // A larger document would be refused by every MongoDB server.
                TransportKind::Mongodb => match config.max_message_bytes {
                    0 => crate::transport::MAX_BSON_BYTES,
                    n => n.min(crate::transport::MAX_BSON_BYTES),
                },
                _ => config.max_message_bytes,
            },
            batch: BatchLimits {
                max_events: config.batch.max_events,
                max_bytes: config.batch.max_bytes,
            },
            doc_bytes: Default::default(),
        };
        if !config.enabled {
            // No spool (it would be locked), no thread, no connection; a queue of one slot that
            // refuses everything (only `Shipper::ship` could offer an event).
            let shared = Shared::new(
                1,
                encoder,
                None,
                crate::Overflow::DropNewest,
                Duration::ZERO,
            );
            shared.closed.store(true, Ordering::Relaxed);
            let layer = LogcollectLayer::off(Handoff::new(shared.clone()));
            return Ok((layer, Guard::idle(shared, config.shutdown_timeout)));
        }
        let spool = match &config.spool.dir {
            Some(dir) => Some(
                Spool::open(&SpoolSettings {
                    dir: dir.clone(),
                    max_bytes: config.spool.max_bytes,
                    when_full: config.spool.when_full,
                    fsync_interval: config.spool.fsync_interval,
                })
                .map_err(Error::Spool)?,
            ),
            None => None,
        };
        let shared = Shared::new(
            config.queue_capacity,
            encoder,
            spool,
            config.overflow_policy(),
            config.block_timeout,
        );
        let _ = shared.counters.transport.set(config.transport.as_str());
        let started = match destination {
            Destination::Amqp(amqp) => Guard::start(
                shared.clone(),
                shipper(amqp, &config),
                config.shutdown_timeout,
            ),
            #[cfg(feature = "redis")]
            Destination::Redis(redis) => Guard::start(
                shared.clone(),
                shipper(redis, &config),
                config.shutdown_timeout,
            ),
            #[cfg(feature = "mongodb")]
            Destination::Mongodb(mongodb) => Guard::start(
                shared.clone(),
                shipper(mongodb, &config),
                config.shutdown_timeout,
            ),
        };
        let guard = started.map_err(Error::Spawn)?;
        let layer = LogcollectLayer::new(Handoff::new(shared)).with_rate_limit(&config.rate_limit);
        Ok((layer, guard))
    }

    /// Installs the global subscriber (the logcollect layer and the optional console, each
    /// with its level filter) and the `log` bridge, and starts the shipper. The guard's
    /// [`levels`](Guard::levels) changes the filters while running.
    pub fn init(self) -> Result<Guard, Error> {
        let level = self
            .config
            .level
            .clone()
            .unwrap_or_else(|| crate::config::defaults::LEVEL.to_string());
        let console_level = self.config.console_level.clone();
        let shipper_filter = filter("level", &level)?;
        let console_filter = match self.config.console {
            true => Some(filter(
                "console_level",
                console_level.as_deref().unwrap_or(&level),
            )?),
            false => None,
        };
        let enabled = self.config.enabled;
        let panic_hook = self.config.panic_hook;
        let (layer, mut guard) = self.build()?;
        let layer = enabled.then_some(layer);
        let installed = match console_filter {
            // One layer: its filter is global, as fast as a filter gets (callsites it disables
            // are never asked again).
            None => {
                let (filter, handle) = reload::Layer::new(shipper_filter);
                let installed = tracing_subscriber::registry()
                    .with(filter)
                    .with(layer)
                    .try_init();
                installed.map(|()| (enabled.then(|| setter(handle)), None))
            }
            // Per-layer filters: the console and the shipper each let through their own level.
            Some(console_filter) => {
                let (console_filter, console_handle) = reload::Layer::new(console_filter);
                let (shipper_filter, shipper_handle) = reload::Layer::new(shipper_filter);
                let installed = tracing_subscriber::registry()
                    .with(tracing_subscriber::fmt::layer().with_filter(console_filter))
                    .with(layer.map(|layer| layer.with_filter(shipper_filter)))
                    .try_init();
                installed.map(|()| {
                    (
                        enabled.then(|| setter(shipper_handle)),
                        Some(setter(console_handle)),
                    )
                })
            }
        };
        let (shipper, console) = installed.map_err(|e| Error::AlreadyInitialized(e.to_string()))?;
        // `try_init` also routes `log` records into tracing (tracing-subscriber's `tracing-log`
        // feature, via `LogTracer`), and fails if another `log` logger is already set.
        guard.levels = Some(LevelHandle {
            shipper,
            console,
            console_follows: Arc::new(AtomicBool::new(console_level.is_none())),
        });
        if panic_hook && enabled {
            crate::panic::install_panic_hook(guard.shipper());
        }
        Ok(guard)
    }
}

fn filter(key: &str, directive: &str) -> Result<EnvFilter, Error> {
    EnvFilter::try_new(directive)
        .map_err(|e| Error::Config(format!("`{key}` `{directive}` is not a valid filter: {e}")))
}

type Setter = Arc<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

fn setter<S: 'static>(handle: reload::Handle<EnvFilter, S>) -> Setter {
    Arc::new(move |filter| handle.reload(filter).map_err(|e| e.to_string()))
}

/// Changes the level filters [`init`] installed, while the program runs (tracing-subscriber's
/// `reload`): e.g. `guard.levels()?.set_level("debug")` on a signal or an admin request.
/// Cheap to clone.
#[derive(Clone)]
pub struct LevelHandle {
    shipper: Option<Setter>,
    console: Option<Setter>,
    /// The console shows what `level` lets through until `console_level` is set.
    console_follows: Arc<AtomicBool>,
}

impl std::fmt::Debug for LevelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LevelHandle")
            .field("shipper", &self.shipper.is_some())
            .field("console", &self.console.is_some())
            .finish()
    }
}

impl LevelHandle {
    /// Replaces `level`: what is shipped (and what the console shows, unless
    /// [`set_console_level`](LevelHandle::set_console_level) was called or `console_level`
    /// is set). An invalid directive is an error and changes nothing.
    pub fn set_level(&self, directive: &str) -> Result<(), Error> {
        let console = match self.console_follows.load(Ordering::Relaxed) {
            true => self.console.as_ref(),
            false => None,
        };
        for setter in self.shipper.iter().chain(console) {
            setter(filter("level", directive)?).map_err(Error::Config)?;
        }
        sync_log_max_level();
        Ok(())
    }

    /// Replaces `console_level`; an error when the console is off.
    pub fn set_console_level(&self, directive: &str) -> Result<(), Error> {
        let Some(setter) = &self.console else {
            return Err(Error::Config(
                "`console_level` cannot change: the console is off (`console = false`)".into(),
            ));
        };
        setter(filter("console_level", directive)?).map_err(Error::Config)?;
        self.console_follows.store(false, Ordering::Relaxed);
        sync_log_max_level();
        Ok(())
    }
}

/// The `log` crate filters records before the bridge sees them, at the most verbose level of
/// the subscriber when it was installed: follow the new filters.
fn sync_log_max_level() {
    log::set_max_level(tracing::level_filters::LevelFilter::current().as_log());
}

/// The transport `transport` picks, opened by the shipper thread.
enum Destination {
    Amqp(Amqp),
    #[cfg(feature = "redis")]
    Redis(crate::transport::redis::Redis),
    #[cfg(feature = "mongodb")]
    Mongodb(crate::transport::mongodb::Mongodb),
}

impl Destination {
    /// Checks the transport's own settings (URIs, TLS files) before anything starts.
    fn from_config(config: &Config, connection_name: String) -> Result<Destination, Error> {
        match config.transport {
            TransportKind::Amqp => Ok(Destination::Amqp(Amqp {
                target: Target::new(Connector::new(config, connection_name)?),
            })),
            #[cfg(feature = "redis")]
            TransportKind::Redis => Ok(Destination::Redis(crate::transport::redis::Redis::new(
                config,
            )?)),
            // `validate` refuses it without the feature.
            #[cfg(not(feature = "redis"))]
            TransportKind::Redis => Err(Error::Config(
                "`transport` is `redis`, but logcollect was built without its `redis` feature"
                    .into(),
            )),
            #[cfg(feature = "mongodb")]
            TransportKind::Mongodb => Ok(Destination::Mongodb(
                crate::transport::mongodb::Mongodb::new(config)?,
            )),
            #[cfg(not(feature = "mongodb"))]
            TransportKind::Mongodb => Err(Error::Config(
                "`transport` is `mongodb`, but logcollect was built without its `mongodb` feature"
                    .into(),
            )),
        }
    }
}

/// The shipper's settings around `transport`.
fn shipper<T>(transport: T, config: &Config) -> ShipperConfig<T> {
    ShipperConfig {
        transport,
        limits: Limits {
            window: config.confirm_window,
            confirm_timeout: config.confirm_timeout,
            retry_delay: config.retry_delay,
            retry_delay_max: config.backoff_max.max(config.retry_delay),
        },
        linger: config.batch.linger,
        backoff_min: config.backoff_min,
        backoff_max: config.backoff_max,
        diagnostics_interval: config.diagnostics_interval,
    }
}
