//! Levels as the command line and the documents spell them.

use std::fmt;
use std::str::FromStr;

/// A level, ordered by severity. `Critical` is what Python programs send above `ERROR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

impl Level {
    /// Reads a level as documents and people write it: `WARN`, `warning`, `Error`, `fatal`…
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "trace" => Level::Trace,
            "debug" => Level::Debug,
            "info" | "information" | "notice" => Level::Info,
            "warn" | "warning" => Level::Warn,
            "error" | "err" => Level::Error,
            "critical" | "crit" | "fatal" | "alert" | "emerg" | "emergency" => Level::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }

    /// The `tracing` level an event of this level is shipped with (`critical` ships as ERROR).
    pub fn tracing(self) -> tracing::Level {
        match self {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error | Level::Critical => tracing::Level::ERROR,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Level::parse(s).ok_or_else(|| {
            format!("`{s}` is not a level; allowed: trace, debug, info, warn, error, critical")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_in_any_case_and_order_by_severity() {
        assert_eq!(Level::parse("WARNING"), Some(Level::Warn));
        assert_eq!(Level::parse(" warn "), Some(Level::Warn));
        assert_eq!(Level::parse("Fatal"), Some(Level::Critical));
        assert_eq!(Level::parse("loud"), None);
        assert!(Level::Trace < Level::Debug && Level::Warn < Level::Error);
        assert_eq!(Level::Critical.tracing(), tracing::Level::ERROR);
        assert!("nope".parse::<Level>().unwrap_err().contains("allowed"));
    }
}
