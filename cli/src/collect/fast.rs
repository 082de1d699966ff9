//! The `text` line of an ECS document read straight from its JSON text: the fields the line
//! shows, borrowed, no tree built. A document this reader does not take (the `classic`
//! layout, floats or arrays in its fields, a repeated key, anything unusual) is read by the
//! general path (`Json` and `View`), which writes the same line; a unit test holds the two
//! to the same output.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use crate::levels::Level;
use crate::render::{escape, quote};

/// A value the line shows as text: a string, an integer, a boolean.
pub enum Scalar<'a> {
    Str(Cow<'a, str>),
    U(u64),
    I(i64),
    Bool(bool),
}

impl Scalar<'_> {
    fn write(&self, out: &mut String) {
        match self {
            Scalar::Str(s) => out.push_str(s),
            Scalar::U(n) => {
                let _ = fmt::Write::write_fmt(out, format_args!("{n}"));
            }
            Scalar::I(n) => {
                let _ = fmt::Write::write_fmt(out, format_args!("{n}"));
            }
            Scalar::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }

    fn text(&self) -> Cow<'_, str> {
        match self {
            Scalar::Str(s) => Cow::Borrowed(s),
            other => {
                let mut s = String::new();
                other.write(&mut s);
                Cow::Owned(s)
            }
        }
    }
}

struct ScalarVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ScalarVisitor<'a> {
    type Value = Scalar<'a>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, integer or boolean")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::U(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::I(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor(std::marker::PhantomData))
    }
}

/// An event field: a scalar, `null`, or an object of fields (keys in document order).
pub enum Field<'a> {
    Null,
    Scalar(Scalar<'a>),
    Object(Vec<(Cow<'a, str>, Field<'a>)>),
}

struct FieldVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for FieldVisitor<'a> {
    type Value = Field<'a>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Scalar(Scalar::Str(Cow::Borrowed(v))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Field::Scalar(Scalar::Str(Cow::Owned(v.to_string()))))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Field::Scalar(Scalar::Str(Cow::Owned(v))))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Field::Scalar(Scalar::U(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Field::Scalar(Scalar::I(v)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Field::Scalar(Scalar::Bool(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Scalar<'a>>()? {
            let Scalar::Str(key) = key else {
                return Err(de::Error::custom("a key that is not a string"));
            };
            let value = map.next_value::<Field<'a>>()?;
            entries.push((key, value));
        }
        Ok(Field::Object(entries))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldVisitor(std::marker::PhantomData))
    }
}

/// A key whose presence alone matters (the `classic` layout's markers).
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de::IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

#[derive(serde::Deserialize)]
struct Log<'a> {
    #[serde(borrow)]
    level: Option<Scalar<'a>>,
    #[serde(borrow)]
    logger: Option<Scalar<'a>>,
}

#[derive(serde::Deserialize)]
struct Named<'a> {
    #[serde(borrow)]
    name: Option<Scalar<'a>>,
}

#[derive(serde::Deserialize)]
struct Host<'a> {
    #[serde(borrow)]
    hostname: Option<Scalar<'a>>,
    #[serde(borrow)]
    name: Option<Scalar<'a>>,
}

#[derive(serde::Deserialize)]
struct Process<'a> {
    #[serde(borrow)]
    pid: Option<Scalar<'a>>,
}

#[derive(serde::Deserialize)]
struct Error<'a> {
    #[serde(borrow)]
    message: Option<Scalar<'a>>,
    #[serde(borrow)]
    stack_trace: Option<Field<'a>>,
}

/// The fields of an ECS document its `text` line shows.
#[derive(serde::Deserialize)]
pub struct Event<'a> {
    #[serde(rename = "@timestamp", borrow)]
    time: Option<Scalar<'a>>,
    #[serde(borrow)]
    log: Option<Log<'a>>,
    #[serde(borrow)]
    service: Option<Named<'a>>,
    #[serde(borrow)]
    host: Option<Host<'a>>,
    #[serde(borrow)]
    process: Option<Process<'a>>,
    #[serde(borrow)]
    message: Option<Scalar<'a>>,
    #[serde(borrow)]
    fields: Option<Field<'a>>,
    #[serde(borrow)]
    error: Option<Error<'a>>,
    #[serde(rename = "@version", default)]
    version: Present,
    #[serde(default)]
    levelname: Present,
    #[serde(default)]
    event_id: Present,
}

impl<'a> Event<'a> {
    /// `None` when the general path must read the document.
    pub fn parse(json: &'a str) -> Option<Event<'a>> {
        let event: Event<'a> = serde_json::from_str(json).ok()?;
        if event.version.0 || event.levelname.0 || event.event_id.0 {
            return None;
        }
        Some(event)
    }

    pub fn service<'s>(&'s self, app_id: Option<&'s str>) -> Cow<'s, str> {
        match self.service.as_ref().and_then(|s| s.name.as_ref()) {
            Some(name) => name.text(),
            None => Cow::Borrowed(app_id.unwrap_or("-")),
        }
    }

    pub fn logger(&self) -> Cow<'_, str> {
        match self.log.as_ref().and_then(|l| l.logger.as_ref()) {
            Some(l) => l.text(),
            None => Cow::Borrowed("-"),
        }
    }

    pub fn host(&self) -> Cow<'_, str> {
        let host = self.host.as_ref();
        match host
            .and_then(|h| h.hostname.as_ref())
            .or_else(|| host.and_then(|h| h.name.as_ref()))
        {
            Some(h) => h.text(),
            None => Cow::Borrowed("-"),
        }
    }

    /// The `text` line, as `format::line` writes it from the document's `View`.
    pub fn text(&self, out: &mut String) {
        let level_text = self
            .log
            .as_ref()
            .and_then(|l| l.level.as_ref())
            .map(Scalar::text)
            .unwrap_or_default();
        let parsed = Level::parse(&level_text);
        let level = match (parsed, level_text.as_ref()) {
            (Some(level), _) => level.as_str(),
            (None, "") => "-",
            (None, text) => text,
        };
        match self.time.as_ref().map(Scalar::text) {
            Some(t) if !t.is_empty() => out.push_str(&escape(&t)),
            _ => out.push('-'),
        }
        out.push(' ');
        let level = escape(level);
        out.push_str(&level);
        for _ in level.chars().count()..5 {
            out.push(' ');
        }
        out.push(' ');
        out.push_str(&escape(&self.host()));
        out.push('[');
        match self.process.as_ref().and_then(|p| p.pid.as_ref()) {
            Some(pid) => out.push_str(&escape(&pid.text())),
            None => out.push('-'),
        }
        out.push_str("] ");
        out.push_str(&escape(&self.logger()));
        out.push_str(": ");
        if let Some(m) = &self.message {
            out.push_str(&escape(&m.text()));
        }
        let error = self.error.as_ref();
        let error_message = error.and_then(|e| e.message.as_ref()).map(Scalar::text);
        let trace = match error.and_then(|e| e.stack_trace.as_ref()) {
            Some(Field::Scalar(Scalar::Str(s))) => Some(s.as_ref()),
            _ => None,
        };
        // The field that holds the error is shown once, as `error=`.
        let mut hide = error_message.as_deref();
        if let Some(Field::Object(map)) = &self.fields {
            let mut name = String::new();
            let mut value = String::new();
            fields(out, &mut name, &mut value, map, &mut hide);
        }
        if let Some(message) = &error_message {
            let cause = trace.and_then(|t| t.lines().find_map(|l| l.strip_prefix("Caused by: ")));
            out.push_str(" error=");
            match cause {
                Some(cause) => out.push_str(&quote(&format!("{message} (caused by: {cause})"))),
                None => out.push_str(&quote(message)),
            }
        }
        out.push('\n');
        if let Some(trace) = trace {
            for l in trace.lines() {
                out.push_str("    ");
                out.push_str(&escape(l));
                out.push('\n');
            }
        }
    }
}

/// What a document too long to be written whole keeps: where it goes and the line's head,
/// read without building the rest (its other values are skipped, not copied).
#[derive(serde::Deserialize)]
pub struct Head<'a> {
    #[serde(rename = "@timestamp", borrow)]
    time: Option<Scalar<'a>>,
    #[serde(borrow)]
    log: Option<Log<'a>>,
    #[serde(borrow)]
    service: Option<Named<'a>>,
    #[serde(borrow)]
    host: Option<Field<'a>>,
    /// `classic`'s.
    #[serde(borrow)]
    logger: Option<Scalar<'a>>,
    #[serde(borrow)]
    levelname: Option<Scalar<'a>>,
}

/// A value of the head, at most 1 KiB of it.
fn short(s: Option<&Scalar<'_>>) -> Option<String> {
    let text = s?.text();
    let mut end = text.len().min(1024);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(text[..end].to_string())
}

impl<'a> Head<'a> {
    pub fn parse(json: &'a str) -> Head<'a> {
        serde_json::from_str(json).unwrap_or(Head {
            time: None,
            log: None,
            service: None,
            host: None,
            logger: None,
            levelname: None,
        })
    }

    pub fn service(&self, app_id: Option<&str>) -> String {
        short(self.service.as_ref().and_then(|s| s.name.as_ref()))
            .or_else(|| app_id.map(str::to_string))
            .unwrap_or_else(|| "-".to_string())
    }

    pub fn logger(&self) -> String {
        short(self.log.as_ref().and_then(|l| l.logger.as_ref()))
            .or_else(|| short(self.logger.as_ref()))
            .unwrap_or_else(|| "-".to_string())
    }

    pub fn level(&self) -> String {
        short(self.log.as_ref().and_then(|l| l.level.as_ref()))
            .or_else(|| short(self.levelname.as_ref()))
            .unwrap_or_else(|| "-".to_string())
    }

    pub fn time(&self) -> String {
        short(self.time.as_ref()).unwrap_or_else(|| "-".to_string())
    }

    pub fn host(&self) -> String {
        let found = match &self.host {
            Some(Field::Scalar(s)) => short(Some(s)),
            Some(Field::Object(entries)) => ["hostname", "name"].iter().find_map(|k| {
                entries.iter().find_map(|(key, v)| match v {
                    Field::Scalar(s) if key == k => short(Some(s)),
                    _ => None,
                })
            }),
            _ => None,
        };
        found.unwrap_or_else(|| "-".to_string())
    }
}

/// `quote`, without a new string for the usual plain value.
fn push_quoted(out: &mut String, value: &str) {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=');
    if plain {
        out.push_str(value);
    } else {
        out.push_str(&quote(value));
    }
}

/// ` key=value` for every field, nested objects under dotted names, the first field whose
/// value is the error message left out.
fn fields(
    out: &mut String,
    name: &mut String,
    value: &mut String,
    map: &[(Cow<'_, str>, Field<'_>)],
    hide: &mut Option<&str>,
) {
    for (key, field) in map {
        let len = name.len();
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(key);
        value.clear();
        match field {
            Field::Object(inner) if !inner.is_empty() => {
                fields(out, name, value, inner, hide);
                name.truncate(len);
                continue;
            }
            Field::Object(_) => value.push_str("{}"),
            Field::Null => value.push_str("null"),
            Field::Scalar(s) => s.write(value),
        }
        if hide.is_some_and(|h| h == value.as_str()) {
            *hide = None;
        } else {
            out.push(' ');
            out.push_str(&escape(name));
            out.push('=');
            push_quoted(out, value);
        }
        name.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::facilities::LineFormat;
    use crate::collect::format;
    use crate::json::Json;
    use crate::render::View;

    /// The fast reader writes the line the general path writes, byte for byte.
    #[test]
    fn the_fast_line_is_the_general_line() {
        let docs = [
            r#"{"@timestamp":"2026-11-21T19:00:00.000Z","log":{"level":"ERROR","logger":"billing::pay"},"message":"payment failed","service":{"name":"billing"},"host":{"hostname":"h1"},"process":{"pid":42},"fields":{"seq_no":7,"user":"a b","card declined":"card declined","n":{"a":-3,"b":true,"c":null,"d":{}}},"error":{"message":"card declined","stack_trace":"card declined\nCaused by: gateway timeout"}}"#,
            r#"{"@timestamp":"","log":{"level":"warning"},"message":"a\u001b[31m\nb","host":{"name":"h2"},"fields":{"k=v":"x\"y","e":""}}"#,
            r#"{"log":{"level":"custom7"},"process":{"pid":"p1"},"service":null,"error":{"message":12}}"#,
            r#"{"@timestamp":"2026-11-21T19:00:00.123456Z","ecs":{"version":"8.11.0"},"event":{"dataset":"bench","id":"0190a000"},"host":{"hostname":"bench-host"},"log":{"level":"INFO","logger":"loadgen"},"message":"load event","process":{"pid":4242,"thread":{"id":1}},"service":{"name":"bench"},"spans":["loadgen_batch"],"fields":{"seq_no":5,"worker":0,"payload":"xxxx"}}"#,
            r#"{}"#,
            r#"{"@timestamp":"2026\r\n2026-01-01 FORGED\u0085\u009b","host":{"hostname":"h\nx"},"service":{"name":"s\u0007"},"log":{"level":"IN\nFO","logger":"l\u001b[2J"},"process":{"pid":"1\n2"},"message":"m\rn","fields":{"k\n":"v\u0085\n"}}"#,
        ];
        for text in docs {
            let doc: Json = serde_json::from_str(text).unwrap();
            let view = View::of(&doc, Some("app"));
            let mut general = Vec::new();
            format::line(&mut general, LineFormat::Text, &view, &doc);
            let event = Event::parse(text).expect("read by the fast reader");
            let mut fast = String::new();
            event.text(&mut fast);
            assert_eq!(fast, String::from_utf8(general).unwrap(), "{text}");
            assert_eq!(event.service(Some("app")), view.service);
            assert_eq!(event.logger(), view.logger);
            assert_eq!(event.host(), view.host);
        }
    }

    #[test]
    fn unusual_documents_go_the_general_way() {
        for text in [
            r#"{"@version":"1","message":"classic"}"#,
            r#"{"host":"h","message":"classic"}"#,
            r#"{"message":"m","message":"twice"}"#,
            r#"{"fields":{"f":1.5}}"#,
            r#"{"fields":{"a":[1]}}"#,
        ] {
            assert!(Event::parse(text).is_none(), "{text}");
        }
    }
}
