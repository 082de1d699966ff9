//! Events from outside `tracing`: level, logger, message and fields known only at run time.
//!
//! `tracing`'s macros need a level, a target and field names fixed at compile time, and `log`
//! records lose their key/value fields on the way through the `log` bridge. A program that
//! forwards what others log (a line read from a pipe, a record from another language) builds
//! an [`ExternalEvent`] instead and hands it to [`Shipper::ship`](crate::Shipper::ship). It
//! then takes the same path as a `tracing` event: the same queue and overflow policy, the same
//! encoding (`max_field_bytes` cutting, identity, host and PID), the same delivery.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use tracing_core::Level;

use super::event::{CapturedEvent, FieldValue};

/// One event built at run time, for [`Shipper::ship`](crate::Shipper::ship).
///
/// ```no_run
/// use logcollect::capture::ExternalEvent;
///
/// let (_layer, guard) = logcollect::builder().identity("application", "backup").build()?;
/// let event = ExternalEvent::new(tracing::Level::WARN, "cron.backup", "disk 91% full")
///     .field("mount", "/var")
///     .field("percent", 91);
/// guard.shipper().ship(event);
/// let _ = guard.flush(std::time::Duration::from_secs(5));
/// # Ok::<(), logcollect::Error>(())
/// ```
///
/// The document carries no source file, line or module, and no thread (`process.thread.id` is
/// 0) unless [`thread`](ExternalEvent::thread) sets one. Field names are interned: each distinct
/// name is kept once for the life of the process, as `tracing`'s static names are, so use a
/// fixed set of names (such as command-line options), not data, as names.
#[derive(Debug, Clone)]
pub struct ExternalEvent {
    level: Level,
    target: String,
    message: String,
    fields: Vec<(&'static str, FieldValue)>,
    timestamp: SystemTime,
    thread_name: Option<String>,
    thread_id: u64,
}

impl ExternalEvent {
    /// An event at `level` from logger `target` (the document's `log.logger`, and `{target}` in
    /// the routing key) with `message`, stamped now.
    pub fn new(level: Level, target: impl Into<String>, message: impl Into<String>) -> Self {
        ExternalEvent {
            level,
            target: target.into(),
            message: message.into(),
            fields: Vec::new(),
            timestamp: SystemTime::now(),
            thread_name: None,
            thread_id: 0,
        }
    }

    /// Adds a field (`fields.<name>` in `ecs`, a top-level key in `classic`); a later field of
    /// the same name wins. The value keeps its JSON type: `.field("n", 3)` is a number.
    pub fn field(mut self, name: &str, value: impl Into<FieldValue>) -> Self {
        self.fields.push((intern(name), value.into()));
        self
    }

    /// When the event happened (default: when [`new`](ExternalEvent::new) was called).
    pub fn timestamp(mut self, at: SystemTime) -> Self {
        self.timestamp = at;
        self
    }

    /// The thread it happened on (`process.thread.name` / `.id`; default: none, id 0).
    pub fn thread(mut self, name: Option<String>, id: u64) -> Self {
        self.thread_name = name;
        self.thread_id = id;
        self
    }

    /// The snapshot the queue carries, as the layer would have captured it.
    pub(crate) fn into_captured(self) -> CapturedEvent {
        CapturedEvent {
            timestamp: self.timestamp,
            level: self.level,
            target: Cow::Owned(self.target),
            module_path: None,
            file: None,
            line: None,
            thread_name: self.thread_name.map(Into::into),
            thread_id: self.thread_id,
            message: self.message,
            fields: self.fields,
            spans: Vec::new(),
            trace: None,
        }
    }
}

impl crate::Builder {
    /// Overrides `process.pid` in every document (default: this process's PID), e.g. for a
    /// forwarder that ships another process's logs on its behalf.
    pub fn pid(mut self, pid: u32) -> Self {
        self.pid = Some(pid);
        self
    }
}

/// The `'static` copy of a field name, made once per distinct name.
fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let names = NAMES.get_or_init(Default::default);
    // A panic elsewhere while the lock was held leaves the set intact: keep using it.
    let mut names = names.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(&known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::Str(v.to_owned())
    }
}

impl From<String> for FieldValue {
    fn from(v: String) -> Self {
        FieldValue::Str(v)
    }
}

impl From<i64> for FieldValue {
    fn from(v: i64) -> Self {
        FieldValue::I64(v)
    }
}

impl From<i32> for FieldValue {
    fn from(v: i32) -> Self {
        FieldValue::I64(v.into())
    }
}

impl From<u64> for FieldValue {
    fn from(v: u64) -> Self {
        FieldValue::U64(v)
    }
}

impl From<f64> for FieldValue {
    fn from(v: f64) -> Self {
        FieldValue::F64(v)
    }
}

impl From<bool> for FieldValue {
    fn from(v: bool) -> Self {
        FieldValue::Bool(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::test_support::identity;
    use crate::encoding::{encode, Envelope, Format};

    #[test]
    fn names_are_interned_once() {
        let a = intern("external-test-name");
        let b = intern(&String::from("external-test-name"));
        assert!(std::ptr::eq(a, b));
    }

    #[test]
    fn an_external_event_encodes_like_a_captured_one_with_limits_applied() {
        let event = ExternalEvent::new(Level::WARN, "cron.backup", "x".repeat(40))
            .field("mount", "/var")
            .field("percent", 91)
            .field("host", true)
            .into_captured();
        let identity = identity();
        let envelope = Envelope {
            id: uuid::Uuid::nil(),
            identity: &identity,
            max_field_bytes: 16,
        };
        let ecs: serde_json::Value =
            serde_json::from_slice(&encode(Format::Ecs, &event, &envelope)).unwrap();
        assert_eq!(ecs["message"], "xxxxxxxxxxxxxxxx…[truncated 24 bytes]");
        assert_eq!(ecs["log"]["level"], "WARN");
        assert_eq!(ecs["log"]["logger"], "cron.backup");
        assert!(ecs["log"].get("origin").is_none());
        assert_eq!(ecs["process"]["pid"], 4242);
        assert_eq!(ecs["process"]["thread"]["id"], 0);
        assert_eq!(
            ecs["fields"],
            serde_json::json!({"mount": "/var", "percent": 91, "host": true})
        );
        let classic: serde_json::Value =
            serde_json::from_slice(&encode(Format::Classic, &event, &envelope)).unwrap();
        assert_eq!(classic["levelname"], "WARNING");
        assert_eq!(classic["logger"], "cron.backup");
        assert_eq!(classic["percent"], 91);
        assert_eq!(classic["field_host"], true);
        assert!(classic.get("path").is_none());
    }
}
