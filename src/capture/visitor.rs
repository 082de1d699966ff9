//! Records `tracing` field values into owned [`FieldValue`]s, keeping their JSON types.

use std::fmt::{self, Write as _};

use tracing_core::field::{Field, Visit};

use super::event::{ErrorValue, FieldValue};

/// Collects the fields of one event or span.
pub(crate) struct FieldCollector<'a> {
    pub fields: &'a mut Vec<(&'static str, FieldValue)>,
    /// Where the `message` field goes; `None` for spans, whose `message` is an ordinary field.
    pub message: Option<&'a mut String>,
    /// `log` records carry their metadata as `log.*` fields; those are skipped.
    pub skip_log_fields: bool,
    /// Where string values are written: an empty string with capacity, reused when the
    /// shipper gave one back ([`Handoff::string`](crate::delivery::Handoff::string)).
    pub new_string: &'a dyn Fn() -> String,
}

impl FieldCollector<'_> {
    fn put(&mut self, field: &Field, value: FieldValue) {
        let name = field.name();
        if self.skip_log_fields && name.starts_with("log.") {
            return;
        }
        if name == "message" {
            if let Some(message) = self.message.as_deref_mut() {
                if let FieldValue::Str(s) = value {
                    *message = s;
                } else {
                    message.clear();
                    let _ = write!(message, "{}", DisplayValue(&value));
                }
                return;
            }
        }
        // A span field recorded twice (`Span::record`) keeps only its latest value. An event's
        // fields are recorded once each (the encoders merge any repeated name), so only spans
        // pay for the scan.
        if self.message.is_none() {
            if let Some(slot) = self.fields.iter_mut().find(|(n, _)| *n == name) {
                slot.1 = value;
                return;
            }
        }
        self.fields.push((name, value));
    }

    /// The event's message buffer when `field` is its `message`, emptied: text is written
    /// straight into it (it may be a reused buffer), not into a new string first.
    fn message_for(&mut self, field: &Field) -> Option<&mut String> {
        if field.name() != "message" {
            return None;
        }
        let message = self.message.as_deref_mut()?;
        message.clear();
        Some(message)
    }
}

impl Visit for FieldCollector<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, FieldValue::F64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, FieldValue::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, FieldValue::U64(value));
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.put(field, FieldValue::I128(value));
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        self.put(field, FieldValue::U128(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, FieldValue::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(message) = self.message_for(field) {
            return message.push_str(value);
        }
        let mut owned = (self.new_string)();
        owned.push_str(value);
        self.put(field, FieldValue::Str(owned));
    }
    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.put(
            field,
            FieldValue::Str(String::from_utf8_lossy(value).into_owned()),
        );
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, FieldValue::Error(ErrorValue::from_error(value)));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if let Some(message) = self.message_for(field) {
            let _ = write!(message, "{value:?}");
            return;
        }
        let mut owned = (self.new_string)();
        let _ = write!(owned, "{value:?}");
        self.put(field, FieldValue::Str(owned));
    }
}

/// A field value as plain text (used when a non-string value is logged as `message`).
struct DisplayValue<'a>(&'a FieldValue);

impl fmt::Display for DisplayValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            FieldValue::I64(v) => write!(f, "{v}"),
            FieldValue::U64(v) => write!(f, "{v}"),
            FieldValue::I128(v) => write!(f, "{v}"),
            FieldValue::U128(v) => write!(f, "{v}"),
            FieldValue::F64(v) => write!(f, "{v}"),
            FieldValue::Bool(v) => write!(f, "{v}"),
            FieldValue::Str(v) => f.write_str(v),
            FieldValue::Error(e) => f.write_str(&e.message),
        }
    }
}
