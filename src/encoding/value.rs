//! Field values as JSON: native types kept, strings bounded, nothing Elasticsearch would reject.

use std::borrow::Cow;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::capture::{CapturedEvent, FieldValue};

/// Cuts `s` to at most `max` bytes at a character boundary, marking what was cut.
/// `max == 0` means no limit.
pub(crate) fn bounded(s: &str, max: usize) -> Cow<'_, str> {
    if max == 0 || s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…[truncated {} bytes]", &s[..end], s.len() - end))
}

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes it (`\"`, `\\`, the
/// short escapes `\b \f \n \r \t`, other control characters as `\u00xx`). Each run of up to
/// 16 bytes is checked in one vectorised step; runs with nothing to escape (nearly all text)
/// are copied whole, only the others byte by byte.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    fn plain(b: u8) -> bool {
        b >= 0x20 && b != b'"' && b != b'\\'
    }
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Nearly every string has nothing to escape: told in whole 16-byte steps (the tail
    // padded), then copied in one piece.
    let mut chunks = bytes.chunks_exact(16);
    let full_clean = chunks.by_ref().fold(true, |all, c| {
        all & c.iter().fold(true, |all, &b| all & plain(b))
    });
    let tail = chunks.remainder();
    let mut padded = [b' '; 16];
    padded[..tail.len()].copy_from_slice(tail);
    if full_clean && padded.iter().fold(true, |all, &b| all & plain(b)) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (n, chunk) in bytes.chunks(16).enumerate() {
        if chunk.iter().fold(true, |all, &b| all & plain(b)) {
            continue;
        }
        for (j, &b) in chunk.iter().enumerate() {
            if plain(b) {
                continue;
            }
            let i = n * 16 + j;
            out.extend_from_slice(&bytes[start..i]);
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                _ => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
            }
            start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A field value with the string limit applied.
pub(crate) struct Json<'a>(pub &'a FieldValue, pub usize);

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let max = self.1;
        match self.0 {
            FieldValue::I64(v) => s.serialize_i64(*v),
            FieldValue::U64(v) => match i64::try_from(*v) {
                Ok(v) => s.serialize_i64(v),
                // Elasticsearch's `long` is signed: larger values would be rejected as numbers.
                Err(_) => s.serialize_str(&v.to_string()),
            },
            FieldValue::I128(v) => match i64::try_from(*v) {
                Ok(v) => s.serialize_i64(v),
                Err(_) => s.serialize_str(&v.to_string()),
            },
            FieldValue::U128(v) => match i64::try_from(*v) {
                Ok(v) => s.serialize_i64(v),
                Err(_) => s.serialize_str(&v.to_string()),
            },
            // JSON has no NaN or infinity.
            FieldValue::F64(v) if v.is_finite() => s.serialize_f64(*v),
            FieldValue::F64(_) => s.serialize_none(),
            FieldValue::Bool(v) => s.serialize_bool(*v),
            FieldValue::Str(v) => s.serialize_str(&bounded(v, max)),
            FieldValue::Error(e) => s.serialize_str(&bounded(&e.message, max)),
        }
    }
}

/// The fields of an event and its spans, merged by name: spans root to leaf (innermost wins),
/// then the event's own fields (which win over all spans).
pub(crate) fn merged_fields(event: &CapturedEvent) -> Vec<(&'static str, &FieldValue)> {
    let mut merged: Vec<(&'static str, &FieldValue)> = Vec::with_capacity(event.fields.len());
    let all = event
        .spans
        .iter()
        .flat_map(|span| span.fields.iter())
        .chain(event.fields.iter());
    for (name, value) in all {
        match merged.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => merged.push((name, value)),
        }
    }
    merged
}

/// A JSON object of already-merged fields.
pub(crate) struct FieldMap<'a> {
    pub fields: &'a [(Cow<'a, str>, &'a FieldValue)],
    pub max: usize,
}

impl Serialize for FieldMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.fields.len()))?;
        for (name, value) in self.fields {
            map.serialize_entry(name.as_ref(), &Json(value, self.max))?;
        }
        map.end()
    }
}

/// The first error-valued field, if any: it feeds `error.*` / `stack_trace`.
pub(crate) fn first_error(event: &CapturedEvent) -> Option<&crate::capture::ErrorValue> {
    event.fields.iter().find_map(|(_, v)| match v {
        FieldValue::Error(e) => Some(e),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn strings_are_escaped_as_serde_json_escapes_them(s in "\\PC*|[\\x00-\\x7f]{0,80}") {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            proptest::prop_assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&s).unwrap()
            );
        }
    }

    #[test]
    fn every_control_character_and_quote_is_escaped_in_long_and_short_runs() {
        let all: String = (0u8..0x80).map(char::from).collect();
        for s in [
            all.clone(),
            all.repeat(3),
            format!("{}\"{}\\", "x".repeat(31), "é".repeat(9)),
        ] {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&s).unwrap()
            );
        }
    }

    #[test]
    fn bounded_cuts_at_a_char_boundary_and_says_how_much() {
        assert_eq!(bounded("héllo", 0), "héllo");
        // "é" is two bytes: a cut inside it backs off to the character before.
        assert_eq!(bounded("héllo", 2), "h…[truncated 5 bytes]");
        assert_eq!(bounded("héllo", 5), "héll…[truncated 1 bytes]");
        assert_eq!(bounded("abc", 3), "abc");
        assert_eq!(bounded("abcd", 2), "ab…[truncated 2 bytes]");
    }
}
