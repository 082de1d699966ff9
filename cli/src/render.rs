//! Documents as `tail` shows them: one line each, from either format, and the filters.

use std::fmt::Write as _;

use crate::json::Json;
use anstyle::{AnsiColor, Style};
use regex::Regex;

use crate::levels::Level;
use crate::KeyValue;

// The keys a `classic` document writes itself (the library's list); every other top-level key
// is a field or an identity entry.
use logcollect::CLASSIC_RESERVED_KEYS as CLASSIC_RESERVED;

/// The documents a message body holds: an object is one, an array one per element (as
/// Logstash's `json` codec reads it). `Err` when the body is not JSON.
pub fn documents(body: &[u8]) -> Result<Vec<Json>, serde_json::Error> {
    Ok(match serde_json::from_slice::<Json>(body)? {
        Json::Array(items) => items,
        doc => vec![doc],
    })
}

/// What a line shows of one document, whichever its format.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub time: String,
    pub level_text: String,
    pub level: Option<Level>,
    pub service: String,
    pub host: String,
    pub pid: String,
    pub logger: String,
    pub message: String,
    /// The event's own fields, flattened to dotted names, values as text.
    pub fields: Vec<(String, String)>,
    /// The error and its first cause.
    pub error: Option<String>,
}

fn text(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A document is `classic` when it has the keys only that layout writes.
pub fn is_classic(doc: &Json) -> bool {
    doc.get("@version").is_some()
        || doc.get("levelname").is_some()
        || doc.get("event_id").is_some()
        || doc.get("host").is_some_and(Json::is_string)
}

impl View {
    /// `app_id` is the message's `app_id` property (the shipper's service name), the service
    /// of a `classic` document, which does not carry one itself.
    pub fn of(doc: &Json, app_id: Option<&str>) -> View {
        let (mut view, error_message) = if is_classic(doc) {
            let message = doc
                .get("stack_trace")
                .and_then(Json::as_str)
                .and_then(|t| t.lines().next())
                .map(str::to_string);
            (View::classic(doc, app_id), message)
        } else {
            (View::ecs(doc, app_id), text(doc.pointer("/error/message")))
        };
        // The field that holds the error is shown once, as `error=` with its cause.
        if let Some(message) = error_message {
            if let Some(i) = view.fields.iter().position(|(_, v)| *v == message) {
                view.fields.remove(i);
            }
        }
        view
    }

    fn ecs(doc: &Json, app_id: Option<&str>) -> View {
        let level_text = text(doc.pointer("/log/level")).unwrap_or_default();
        let mut fields = Vec::new();
        if let Some(Json::Object(map)) = doc.get("fields") {
            flatten("", map, &mut fields);
        }
        let error = text(doc.pointer("/error/message")).map(|message| {
            with_first_cause(
                message,
                doc.pointer("/error/stack_trace").and_then(Json::as_str),
            )
        });
        View {
            time: text(doc.get("@timestamp")).unwrap_or_default(),
            level: Level::parse(&level_text),
            level_text,
            service: text(doc.pointer("/service/name"))
                .or_else(|| app_id.map(str::to_string))
                .unwrap_or_else(|| "-".to_string()),
            host: text(doc.pointer("/host/hostname"))
                .or_else(|| text(doc.pointer("/host/name")))
                .unwrap_or_else(|| "-".to_string()),
            pid: text(doc.pointer("/process/pid")).unwrap_or_else(|| "-".to_string()),
            logger: text(doc.pointer("/log/logger")).unwrap_or_else(|| "-".to_string()),
            message: text(doc.get("message")).unwrap_or_default(),
            fields,
            error,
        }
    }

    fn classic(doc: &Json, app_id: Option<&str>) -> View {
        let level_text = text(doc.get("levelname")).unwrap_or_default();
        let mut fields = Vec::new();
        if let Json::Object(map) = doc {
            for (key, value) in map {
                if !CLASSIC_RESERVED.contains(&key.as_str()) {
                    flatten_value(key.clone(), value, &mut fields);
                }
            }
        }
        let error = doc.get("stack_trace").and_then(Json::as_str).map(|trace| {
            let first = trace.lines().next().unwrap_or_default().to_string();
            with_first_cause(first, Some(trace))
        });
        View {
            time: text(doc.get("@timestamp")).unwrap_or_default(),
            level: Level::parse(&level_text),
            level_text,
            service: app_id
                .map(str::to_string)
                .or_else(|| text(doc.get("application")))
                .unwrap_or_else(|| "-".to_string()),
            host: text(doc.get("host")).unwrap_or_else(|| "-".to_string()),
            pid: text(doc.get("process")).unwrap_or_else(|| "-".to_string()),
            logger: text(doc.get("logger")).unwrap_or_else(|| "-".to_string()),
            message: text(doc.get("message")).unwrap_or_default(),
            fields,
            error,
        }
    }

    /// The value of `--field KEY=…`: the event's field `KEY`, else the document's value at the
    /// dotted path `KEY` (`labels.project`, `log.logger`, `process.pid`).
    pub fn lookup<'a>(&'a self, doc: &'a Json, key: &str) -> Option<String> {
        if let Some((_, v)) = self.fields.iter().find(|(k, _)| k == key) {
            return Some(v.clone());
        }
        let mut node = doc;
        for part in key.split('.') {
            node = node.get(part)?;
        }
        text(Some(node))
    }

    /// One line: time, level, service@host[pid], logger: message, fields, error.
    pub fn line(&self, color: bool) -> String {
        let mut out = String::with_capacity(160 + self.message.len());
        // Normalised (`WARNING` → `WARN`) when known, as written when not.
        let level = match (self.level, self.level_text.as_str()) {
            (Some(level), _) => level.as_str(),
            (None, "") => "-",
            (None, text) => text,
        };
        let (lstyle, dim) = if color {
            (level_style(self.level), Style::new().dimmed())
        } else {
            (Style::new(), Style::new())
        };
        // Every field escaped: a newline or an escape sequence in any of them (the time, the
        // host…) can neither forge a line nor drive the terminal.
        let level = escape(level);
        let _ = write!(
            out,
            "{dim}{}{dim:#} {lstyle}{level:<5}{lstyle:#} {}@{}[{}] {dim}{}:{dim:#} {}",
            escape(&self.time),
            escape(&self.service),
            escape(&self.host),
            escape(&self.pid),
            escape(&self.logger),
            escape(&self.message)
        );
        for (key, value) in &self.fields {
            let _ = write!(out, " {dim}{}={dim:#}{}", escape(key), quote(value));
        }
        if let Some(error) = &self.error {
            let red = if color {
                Style::new().fg_color(Some(AnsiColor::Red.into()))
            } else {
                Style::new()
            };
            let _ = write!(out, " {red}error={}{red:#}", quote(error));
        }
        out
    }
}

/// `message (caused by: first cause)` from a `Caused by:` stack trace.
fn with_first_cause(message: String, trace: Option<&str>) -> String {
    let cause = trace.and_then(|t| {
        t.lines()
            .find_map(|line| line.strip_prefix("Caused by: "))
            .map(str::to_string)
    });
    match cause {
        Some(cause) => format!("{message} (caused by: {cause})"),
        None => message,
    }
}

fn flatten(prefix: &str, map: &[(String, Json)], out: &mut Vec<(String, String)>) {
    for (key, value) in map {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        flatten_value(name, value, out);
    }
}

fn flatten_value(name: String, value: &Json, out: &mut Vec<(String, String)>) {
    match value {
        Json::Object(inner) if !inner.is_empty() => flatten(&name, inner, out),
        Json::String(s) => out.push((name, s.clone())),
        Json::Null => out.push((name, "null".to_string())),
        other => out.push((name, other.to_string())),
    }
}

fn level_style(level: Option<Level>) -> Style {
    let color = |c: AnsiColor| Style::new().fg_color(Some(c.into()));
    match level {
        Some(Level::Trace) => color(AnsiColor::Magenta),
        Some(Level::Debug) => color(AnsiColor::Blue),
        Some(Level::Info) => color(AnsiColor::Green),
        Some(Level::Warn) => color(AnsiColor::Yellow).bold(),
        Some(Level::Error) | Some(Level::Critical) => color(AnsiColor::Red).bold(),
        None => Style::new(),
    }
}

/// Control characters (newlines, escape sequences) written as escapes, so one event stays on
/// one line and cannot drive the terminal.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A value as `key=value` shows it: bare when it is one plain word, JSON-quoted otherwise.
pub fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=');
    if plain {
        value.to_string()
    } else {
        escape_c1(serde_json::Value::String(value.to_string()).to_string())
    }
}

/// JSON text with DEL and the C1 controls (U+007F–U+009F, which serde_json leaves as they
/// are) written as `\u00XX` escapes: still the same JSON, and no terminal reads a control in
/// it. They can only occur inside strings, where the escape means the same character.
pub fn escape_c1(json: String) -> String {
    if !json.chars().any(is_c1) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_c1(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// The same on bytes (ndjson files); cheap when there is none: C1 controls and DEL are the
/// only ones that need the byte 0x7f or the lead byte 0xc2.
pub fn escape_c1_bytes(json: &mut Vec<u8>, from: usize) {
    if !json[from..].iter().any(|b| *b == 0x7f || *b == 0xc2) {
        return;
    }
    let Ok(text) = std::str::from_utf8(&json[from..]) else {
        return;
    };
    let escaped = escape_c1(text.to_string());
    json.truncate(from);
    json.extend_from_slice(escaped.as_bytes());
}

fn is_c1(c: char) -> bool {
    ('\u{7f}'..='\u{9f}').contains(&c)
}

/// `--level`, `--service`, `--host`, `--grep`, `--field`: an event is shown when it passes all.
#[derive(Debug, Default)]
pub struct Filters {
    pub min_level: Option<Level>,
    pub service: Option<String>,
    pub host: Option<String>,
    pub grep: Option<Regex>,
    pub fields: Vec<KeyValue>,
}

impl Filters {
    /// An event whose level is unknown passes `--level` (it is not hidden for being unusual).
    pub fn pass(&self, view: &View, doc: &Json) -> bool {
        if let (Some(min), Some(level)) = (self.min_level, view.level) {
            if level < min {
                return false;
            }
        }
        if self.service.as_ref().is_some_and(|s| *s != view.service) {
            return false;
        }
        if self.host.as_ref().is_some_and(|h| *h != view.host) {
            return false;
        }
        if self
            .grep
            .as_ref()
            .is_some_and(|re| !re.is_match(&view.message))
        {
            return false;
        }
        self.fields
            .iter()
            .all(|kv| view.lookup(doc, &kv.key).is_some_and(|v| v == kv.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn json(text: &str) -> Json {
        serde_json::from_str(text).unwrap()
    }

    fn ecs() -> Json {
        json(
            r#"{
            "@timestamp": "2026-11-21T08:53:32.123456Z",
            "message": "payment accepted",
            "log": {"level": "WARN", "logger": "billing::api"},
            "process": {"pid": 1234, "thread": {"id": 1}},
            "host": {"hostname": "web-1"},
            "service": {"name": "worker"},
            "event": {"id": "x"},
            "labels": {"project": "billing"},
            "fields": {"seq_no": 12, "customer": "c 1", "ok": true, "nested": {"a": 1},
                       "err": "card declined"},
            "error": {"message": "card declined", "type": "E",
                      "stack_trace": "card declined\nCaused by: gateway timeout\nCaused by: dns"}
        }"#,
        )
    }

    fn classic() -> Json {
        json(
            r#"{
            "@timestamp": "2026-11-21T08:53:32.123456Z", "@version": "1",
            "message": "payment accepted", "host": "web-1", "levelname": "WARNING",
            "logger": "billing::api", "type": "logstash", "tags": [], "process": 1234,
            "event_id": "x", "project": "billing", "seq_no": 12, "field_host": true,
            "err": "card declined",
            "stack_trace": "card declined\nCaused by: gateway timeout"
        }"#,
        )
    }

    #[test]
    fn both_formats_give_the_same_line() {
        let e = View::of(&ecs(), None);
        assert_eq!(
            e.line(false),
            "2026-11-21T08:53:32.123456Z WARN  worker@web-1[1234] billing::api: payment accepted \
             seq_no=12 customer=\"c 1\" ok=true nested.a=1 \
             error=\"card declined (caused by: gateway timeout)\""
        );
        let c = View::of(&classic(), Some("worker"));
        assert_eq!(
            c.line(false),
            "2026-11-21T08:53:32.123456Z WARN  worker@web-1[1234] billing::api: payment accepted \
             project=billing seq_no=12 field_host=true \
             error=\"card declined (caused by: gateway timeout)\""
        );
        assert_eq!(c.level, Some(Level::Warn));
    }

    #[test]
    fn colour_only_when_asked() {
        let e = View::of(&ecs(), None);
        assert!(!e.line(false).contains('\u{1b}'));
        assert!(e.line(true).contains('\u{1b}'));
    }

    #[test]
    fn control_characters_stay_on_one_line() {
        let mut doc = ecs();
        if let Json::Object(entries) = &mut doc {
            for (k, v) in entries.iter_mut() {
                if k == "message" {
                    *v = Json::String("two\nlines \u{1b}[31mred".into());
                }
            }
        }
        let line = View::of(&doc, None).line(false);
        assert!(line.contains("two\\nlines \\u{1b}[31mred"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn control_characters_in_every_field_are_escaped() {
        let forged = "x\r\ny\u{1b}[2J\u{7}\u{0}\u{7f}\u{85}\u{9b}z";
        let doc = json(&format!(
            r#"{{"@timestamp":{f},"message":{f},"log":{{"level":{f},"logger":{f}}},
               "host":{{"hostname":{f}}},"service":{{"name":{f}}},"process":{{"pid":{f}}},
               "fields":{{{f}:{f}}},"error":{{"message":{g}}}}}"#,
            f = serde_json::Value::String(forged.into()),
            g = serde_json::Value::String(format!("E{forged}"))
        ));
        let line = View::of(&doc, None).line(false);
        for c in line.chars() {
            assert!(!c.is_control(), "{c:?} in {line}");
        }
        assert_eq!(
            line.matches("x\\r\\ny\\u{1b}[2J\\u{7}\\u{0}\\u{7f}\\u{85}\\u{9b}z")
                .count(),
            8,
            "{line}"
        );
        assert_eq!(line.matches("\\u0085\\u009bz").count(), 2, "{line}");
        let json_text = escape_c1(doc.to_string());
        assert!(!json_text.chars().any(char::is_control), "{json_text}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json_text).unwrap()["message"],
            forged
        );
    }

    #[test]
    fn array_bodies_are_split_and_garbage_is_an_error() {
        assert_eq!(documents(br#"[{"a":1},{"a":2}]"#).unwrap().len(), 2);
        assert_eq!(documents(br#"{"a":1}"#).unwrap().len(), 1);
        assert!(documents(b"\xff not json").is_err());
    }

    #[test]
    fn filters() {
        let doc = ecs();
        let view = View::of(&doc, None);
        let pass = |f: Filters| f.pass(&view, &doc);
        assert!(pass(Filters::default()));
        assert!(pass(Filters {
            min_level: Some(Level::Warn),
            ..Default::default()
        }));
        assert!(!pass(Filters {
            min_level: Some(Level::Error),
            ..Default::default()
        }));
        assert!(pass(Filters {
            service: Some("worker".into()),
            host: Some("web-1".into()),
            ..Default::default()
        }));
        assert!(!pass(Filters {
            host: Some("web-2".into()),
            ..Default::default()
        }));
        assert!(pass(Filters {
            grep: Some(Regex::new("^pay.*ted$").unwrap()),
            ..Default::default()
        }));
        assert!(!pass(Filters {
            grep: Some(Regex::new("refund").unwrap()),
            ..Default::default()
        }));
        let field = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: v.into(),
        };
        assert!(pass(Filters {
            fields: vec![field("seq_no", "12"), field("labels.project", "billing")],
            ..Default::default()
        }));
        assert!(!pass(Filters {
            fields: vec![field("seq_no", "13")],
            ..Default::default()
        }));
        assert!(!pass(Filters {
            fields: vec![field("absent", "")],
            ..Default::default()
        }));
    }
}
