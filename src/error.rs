//! The one error type `init` and the builder return.

use std::fmt;

/// Why logcollect could not start. Logging itself never returns errors.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid or a key is unknown; the message names the key and
    /// what is allowed.
    Config(String),
    /// A global subscriber was already installed.
    AlreadyInitialized(String),
    /// The `log` bridge cannot be installed now (see
    /// [`init_log_bridge`](crate::capture::init_log_bridge)).
    LogBridge(String),
    /// The shipper thread could not be started.
    Spawn(std::io::Error),
    /// The spool directory cannot be used: not creatable, not readable, or locked by another
    /// process.
    Spool(String),
    /// A TLS file (`tls_ca_file`, `tls_cert_file`, `tls_key_file`) is missing, unreadable or
    /// not what it should be; the message names the setting and the file.
    Tls(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m) => write!(f, "logcollect configuration: {m}"),
            Error::AlreadyInitialized(m) => write!(
                f,
                "logcollect: a global tracing subscriber is already set: {m}"
            ),
            Error::LogBridge(m) => write!(f, "logcollect: cannot capture `log` records: {m}"),
            Error::Spawn(e) => write!(f, "logcollect: cannot start the shipper thread: {e}"),
            Error::Spool(m) => write!(f, "logcollect spool: {m}"),
            Error::Tls(m) => write!(f, "logcollect TLS: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Spawn(e) => Some(e),
            _ => None,
        }
    }
}
