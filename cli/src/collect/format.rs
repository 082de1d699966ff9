//! The lines a facility's file holds: `text` (for people) or `ndjson` (the document).

use std::fmt::Write as _;

use crate::json::Json;
use crate::render::{escape, escape_c1_bytes, is_classic, quote, View};

use super::facilities::LineFormat;

/// Appends the event's line(s), newline included, to `out`.
pub fn line(out: &mut Vec<u8>, format: LineFormat, view: &View, doc: &Json) {
    match format {
        LineFormat::Ndjson => {
            // Json's keys keep their order; serialising it cannot fail. C0 controls are
            // escaped by serde_json, DEL and C1 here: still the same JSON.
            let from = out.len();
            let _ = serde_json::to_writer(&mut *out, doc);
            escape_c1_bytes(out, from);
            out.push(b'\n');
        }
        LineFormat::Text => {
            let mut s = String::with_capacity(128 + view.message.len());
            text(&mut s, view, doc);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// `TIME LEVEL HOST[PID] LOGGER: MESSAGE KEY=VALUE… error="…"`, then the stack trace, each
/// line indented by four spaces, so `grep` finds the event and the trace stays readable.
fn text(out: &mut String, view: &View, doc: &Json) {
    let level = match (view.level, view.level_text.as_str()) {
        (Some(level), _) => level.as_str(),
        (None, "") => "-",
        (None, text) => text,
    };
    let _ = write!(
        out,
        "{} {:<5} {}[{}] {}: {}",
        if view.time.is_empty() {
            std::borrow::Cow::Borrowed("-")
        } else {
            escape(&view.time)
        },
        escape(level),
        escape(&view.host),
        escape(&view.pid),
        escape(&view.logger),
        escape(&view.message)
    );
    for (key, value) in &view.fields {
        let _ = write!(out, " {}={}", escape(key), quote(value));
    }
    if let Some(error) = &view.error {
        let _ = write!(out, " error={}", quote(error));
    }
    out.push('\n');
    let trace = if is_classic(doc) {
        doc.get("stack_trace")
    } else {
        doc.pointer("/error/stack_trace")
    };
    if let Some(trace) = trace.and_then(Json::as_str) {
        for l in trace.lines() {
            out.push_str("    ");
            out.push_str(&escape(l));
            out.push('\n');
        }
    }
}

/// A document longer than `limit` bytes: one line in its facility's file that says so and
/// keeps its first `limit` bytes (as text, escaped; in `ndjson`, a valid document with the
/// head as a string).
pub fn cut(
    out: &mut Vec<u8>,
    format: LineFormat,
    head: &super::fast::Head<'_>,
    app_id: Option<&str>,
    doc: &str,
    limit: usize,
) {
    let mut end = limit.min(doc.len());
    while !doc.is_char_boundary(end) {
        end -= 1;
    }
    let kept = &doc[..end];
    let note = format!("[document of {} bytes cut to its first {end}]", doc.len());
    match format {
        LineFormat::Ndjson => {
            let from = out.len();
            let cut = serde_json::json!({
                "@timestamp": head.time(),
                "log": {"level": head.level(), "logger": head.logger()},
                "service": {"name": head.service(app_id)},
                "host": {"hostname": head.host()},
                "message": note,
                "logcollect": {"cut": {"bytes": doc.len(), "kept": end, "head": kept}},
            });
            let _ = serde_json::to_writer(&mut *out, &cut);
            escape_c1_bytes(out, from);
            out.push(b'\n');
        }
        LineFormat::Text => {
            let level = head.level();
            let _ = writeln!(
                Adapter(out),
                "{} {:<5} {}[-] {}: {note} {}",
                escape(&head.time()),
                escape(&level),
                escape(&head.host()),
                escape(&head.logger()),
                escape(kept)
            );
        }
    }
}

/// A message that is not a document, kept as one line (control characters escaped).
pub fn raw(out: &mut Vec<u8>, routing_key: &str, body: &[u8]) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let text = String::from_utf8_lossy(body);
    let _ = writeln!(
        Adapter(out),
        "{now} RAW   routing_key={} {}",
        quote(routing_key),
        escape(&text)
    );
}

struct Adapter<'a>(&'a mut Vec<u8>);
impl std::fmt::Write for Adapter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_carry_fields_and_an_indented_trace() {
        let doc: Json = serde_json::from_str(
            r#"{"@timestamp":"2026-11-21T19:00:00.000Z","log":{"level":"ERROR","logger":"billing::pay"},
            "message":"payment failed","service":{"name":"billing"},"host":{"hostname":"h1"},
            "process":{"pid":42},"fields":{"seq_no":7,"user":"a b"},
            "error":{"message":"card declined","stack_trace":"card declined\nCaused by: gateway timeout"}}"#,
        )
        .unwrap();
        let view = View::of(&doc, None);
        let mut out = Vec::new();
        line(&mut out, LineFormat::Text, &view, &doc);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-11-21T19:00:00.000Z ERROR h1[42] billing::pay: payment failed seq_no=7 \
             user=\"a b\" error=\"card declined (caused by: gateway timeout)\"\n    card declined\n    \
             Caused by: gateway timeout\n"
        );
        let mut out = Vec::new();
        line(&mut out, LineFormat::Ndjson, &view, &doc);
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back["fields"]["seq_no"], 7);
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
    }

    #[test]
    fn raw_bodies_stay_on_one_line() {
        let mut out = Vec::new();
        raw(&mut out, "logstash.x", b"not json\n\x1b[31m");
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.ends_with("RAW   routing_key=logstash.x not json\\n\\u{1b}[31m\n"),
            "{s}"
        );
    }
}
