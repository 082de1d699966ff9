//! The owned snapshot of one event: everything the encoders need, nothing borrowed.
//!
//! Building this is the only work done on the application's thread; turning it into JSON happens
//! on the shipper thread.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use tracing_core::Level;

/// One captured `tracing` event (or `log` record), owned so it can cross to the shipper thread.
#[derive(Debug, Clone)]
pub struct CapturedEvent {
    /// When the event was captured (UTC wall clock).
    pub timestamp: SystemTime,
    /// The event's level.
    pub level: Level,
    /// The event's target; for `log` records, the record's own target.
    pub target: Cow<'static, str>,
    /// The module the event was logged in.
    pub module_path: Option<Cow<'static, str>>,
    /// The source file the event was logged in.
    pub file: Option<Cow<'static, str>>,
    /// The line of the logging call.
    pub line: Option<u32>,
    /// The logging thread's name, if it has one.
    pub thread_name: Option<Arc<str>>,
    /// The logging thread's numeric id.
    pub thread_id: u64,
    /// The `message` field, formatted.
    pub message: String,
    /// The event's own fields, in the order they were recorded (`message` excluded).
    pub fields: Vec<(&'static str, FieldValue)>,
    /// Enclosing spans, root first.
    pub spans: Vec<Arc<SpanSnapshot>>,
    /// The trace ids of the innermost enclosing span (`None` outside any span).
    pub trace: Option<crate::trace::TraceIds>,
}

impl CapturedEvent {
    /// An event with nothing in it, to be filled.
    pub(crate) fn blank() -> Self {
        CapturedEvent {
            timestamp: std::time::UNIX_EPOCH,
            level: Level::INFO,
            target: Cow::Borrowed(""),
            module_path: None,
            file: None,
            line: None,
            thread_name: None,
            thread_id: 0,
            message: String::new(),
            fields: Vec::new(),
            spans: Vec::new(),
            trace: None,
        }
    }

    /// Empties the event, keeping the capacity of its message, field and span lists, and its
    /// thread name (the logging thread that fills it next is most often the same one).
    pub(crate) fn empty(&mut self) {
        self.target = Cow::Borrowed("");
        self.module_path = None;
        self.file = None;
        self.message.clear();
        self.fields.clear();
        self.spans.clear();
        self.trace = None;
    }
}

/// A span's name and fields as they were when the event happened.
#[derive(Debug, Clone, Default)]
pub struct SpanSnapshot {
    /// The span's name.
    pub name: &'static str,
    /// The span's fields, in the order they were recorded.
    pub fields: Vec<(&'static str, FieldValue)>,
}

/// A field value with its native JSON type preserved.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A wide signed integer (a string in JSON when outside `i64`).
    I128(i128),
    /// A wide unsigned integer (a string in JSON when outside `i64`).
    U128(u128),
    /// A float (`null` in JSON when not finite).
    F64(f64),
    /// A bool.
    Bool(bool),
    /// A string, a `Debug` rendering, or bytes (decoded as lossy UTF-8).
    Str(String),
    /// A `dyn Error`.
    Error(ErrorValue),
}

/// A `dyn Error` field: its message, a best-effort type name and its `source()` chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorValue {
    /// The error's `Display`.
    pub message: String,
    /// A best-effort type name.
    pub type_name: String,
    /// The messages of `source()`, `source().source()`, … (the error itself excluded).
    pub causes: Vec<String>,
}

impl ErrorValue {
    /// Snapshot an error and walk its `source()` chain.
    pub fn from_error(err: &(dyn std::error::Error + 'static)) -> Self {
        let mut causes = Vec::new();
        let mut next = err.source();
        // A cyclic or absurdly deep chain must not hang the caller.
        while let Some(cause) = next {
            if causes.len() >= 64 {
                break;
            }
            causes.push(cause.to_string());
            next = cause.source();
        }
        ErrorValue {
            message: err.to_string(),
            type_name: type_name_of(err),
            causes,
        }
    }

    /// The error and its causes, one per line: `msg`, then `Caused by: cause` lines.
    pub fn stack_trace(&self) -> String {
        let mut out = self.message.clone();
        for cause in &self.causes {
            out.push_str("\nCaused by: ");
            out.push_str(cause);
        }
        out
    }
}

/// `dyn Error` has no type name at run time; the leading identifier of its `Debug` output
/// (`ParseIntError { kind: .. }` → `ParseIntError`) is the best available hint. Only that
/// identifier is formatted: the writer stops the `Debug` output at its first other character,
/// so a large error's whole `Debug` is never built on the logging thread.
fn type_name_of(err: &dyn std::error::Error) -> String {
    use std::fmt::Write as _;
    let mut ident = LeadingIdent(String::new());
    let _ = write!(ident, "{err:?}");
    type_name_from_debug(&ident.0)
}

/// Keeps the leading identifier of what is written, then refuses more (ending the write).
struct LeadingIdent(String);

impl std::fmt::Write for LeadingIdent {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for c in s.chars() {
            if !(c.is_alphanumeric() || c == '_' || c == ':') || self.0.len() >= 256 {
                return Err(std::fmt::Error);
            }
            self.0.push(c);
        }
        Ok(())
    }
}

fn type_name_from_debug(debug: &str) -> String {
    let ident: String = debug
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    match ident.chars().next() {
        Some(c) if c.is_uppercase() => ident,
        _ => "Error".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_name_is_the_leading_identifier_of_debug() {
        let err = "x".parse::<i32>().unwrap_err();
        assert_eq!(ErrorValue::from_error(&err).type_name, "ParseIntError");
        assert_eq!(type_name_from_debug("\"just a string\""), "Error");
        let io = std::io::Error::other("boom");
        assert_eq!(ErrorValue::from_error(&io).type_name, "Custom");
        assert_eq!(type_name_from_debug(""), "Error");
    }
}
