//! Boot: one call to configure, install and start everything.

use std::time::Duration;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::broker::Target;
use crate::capture::LogcollectLayer;
use crate::config::{Config, ExchangeType};
use crate::delivery::{Encoder, Guard, Handoff, Limits, Shared, ShipperConfig, Spool};
use crate::encoding::Format;
use crate::identity::Identity;
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

/// Configuration in code; see [`builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder {
    config: Config,
}

impl Builder {
    /// Starts from a given configuration (e.g. [`Config::from_env`] to layer code on top).
    pub fn from_config(config: Config) -> Self {
        Builder { config }
    }

    pub fn broker_uri(mut self, uri: impl Into<String>) -> Self {
        self.config.broker_uri = uri.into();
        self
    }
    pub fn exchange(mut self, name: impl Into<String>) -> Self {
        self.config.exchange = name.into();
        self
    }
    pub fn exchange_type(mut self, kind: ExchangeType) -> Self {
        self.config.exchange_type = kind;
        self
    }
    /// A routing-key template: `{target}`, `{level}`, `{service}` are replaced.
    pub fn routing_key(mut self, template: impl Into<String>) -> Self {
        self.config.routing_key = template.into();
        self
    }
    pub fn format(mut self, format: Format) -> Self {
        self.config.format = format;
        self
    }
    /// An `EnvFilter` directive for [`init`](Builder::init)'s subscriber.
    pub fn level(mut self, directive: impl Into<String>) -> Self {
        self.config.level = Some(directive.into());
        self
    }
    pub fn console(mut self, on: bool) -> Self {
        self.config.console = on;
        self
    }
    /// Adds an activity identity entry, e.g. `("project", "billing")`.
    pub fn identity(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.identity.insert(key.into(), value.into());
        self
    }
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.config.service_name = Some(name.into());
        self
    }
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.config.hostname = Some(name.into());
        self
    }
    pub fn queue_capacity(mut self, events: usize) -> Self {
        self.config.queue_capacity = events;
        self
    }
    /// Turns the disk spool on, in `dir` (see [`SpoolConfig`](crate::SpoolConfig) for its other
    /// settings, through [`configure`](Builder::configure)).
    pub fn spool_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.config.spool.dir = Some(dir.into());
        self
    }
    /// What a logging call does when the in-memory queue is full.
    pub fn overflow(mut self, policy: crate::Overflow) -> Self {
        self.config.overflow = Some(policy);
        self
    }
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }
    /// Any other setting.
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts the shipper and returns the layer, for a subscriber you compose yourself.
    /// `level` and `console` are not applied here: add your own filter and layers. Call
    /// [`init_log_bridge`](crate::capture::init_log_bridge) to capture `log` records too.
    pub fn build(self) -> Result<(LogcollectLayer, Guard), Error> {
        let config = self.config;
        config.validate()?;
        let identity = Identity::detect(
            config.identity.clone(),
            config.hostname.clone(),
            config.hostname_fqdn,
            config.service_name.clone(),
        );
        let target = Target {
            uri: config.amqp_uri()?,
            exchange: lapin::types::ShortString::from(config.exchange.as_str()),
            exchange_kind: config.exchange_type.kind(),
            connection_name: format!("logcollect {}@{}", identity.service_name, identity.hostname),
            connect_timeout: config.connect_timeout,
        };
        let encoder = Encoder {
            format: config.format,
            identity,
            routing_key: config.routing_key.clone(),
            max_field_bytes: config.max_field_bytes,
            max_message_bytes: config.max_message_bytes,
        };
        let spool = match &config.spool.dir {
            Some(_) => Some(Spool::open(&config.spool).map_err(Error::Spool)?),
            None => None,
        };
        let shipper = ShipperConfig {
            target,
            limits: Limits {
                window: config.confirm_window,
                confirm_timeout: config.confirm_timeout,
                retry_delay: config.retry_delay,
                retry_delay_max: config.backoff_max.max(config.retry_delay),
            },
            backoff_min: config.backoff_min,
            backoff_max: config.backoff_max,
            diagnostics_interval: config.diagnostics_interval,
        };
        let shared = Shared::new(
            config.queue_capacity,
            encoder,
            spool,
            config.overflow_policy(),
            config.block_timeout,
        );
        let guard =
            Guard::start(shared.clone(), shipper, config.shutdown_timeout).map_err(Error::Spawn)?;
        Ok((LogcollectLayer::new(Handoff::new(shared)), guard))
    }

    /// Installs the global subscriber (filter, optional console, logcollect layer) and the
    /// `log` bridge, and starts the shipper.
    pub fn init(self) -> Result<Guard, Error> {
        let directive = self
            .config
            .level
            .clone()
            .unwrap_or_else(|| crate::config::defaults::LEVEL.to_string());
        let filter = EnvFilter::try_new(&directive).map_err(|e| {
            Error::Config(format!("`level` `{directive}` is not a valid filter: {e}"))
        })?;
        let console = self
            .config
            .console
            .then(|| tracing_subscriber::fmt::layer().boxed());
        let (layer, guard) = self.build()?;
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(console)
            .with(layer);
        subscriber
            .try_init()
            .map_err(|e| Error::AlreadyInitialized(e.to_string()))?;
        // `try_init` also routes `log` records into tracing (tracing-subscriber's `tracing-log`
        // feature, via `LogTracer`), and fails if another `log` logger is already set.
        Ok(guard)
    }
}
