//! The facilities file (loghogd's model, in TOML): which file an event goes to, and how that
//! file is rotated, compressed, pruned and synced.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use croner::Cron;
use serde::Deserialize;

/// The settings of one facility as written in the file: every key optional, so a
/// sub-facility can inherit from its service's root and a root from `[default]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    rotate: Option<String>,
    max_size: Option<u64>,
    backup_count: Option<u32>,
    compress: Option<Compression>,
    compress_level: Option<i32>,
    flush_every: Option<u64>,
    format: Option<LineFormat>,
    file_per_host: Option<bool>,
}

impl Raw {
    /// `self`, with what it leaves out taken from `parent`.
    fn over(&self, parent: &Raw) -> Raw {
        Raw {
            rotate: self.rotate.clone().or_else(|| parent.rotate.clone()),
            max_size: self.max_size.or(parent.max_size),
            backup_count: self.backup_count.or(parent.backup_count),
            compress: self.compress.or(parent.compress),
            compress_level: self.compress_level.or(parent.compress_level),
            flush_every: self.flush_every.or(parent.flush_every),
            format: self.format.or(parent.format),
            file_per_host: self.file_per_host.or(parent.file_per_host),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The extension a compressed file gets.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
        }
    }
}

/// Events between fsyncs when the facilities file does not say. Acks follow syncs whatever the
/// value, so it trades no safety: it bounds what a crash hands back for redelivery (and the
/// 200 ms timer syncs an idle file sooner). 1 would cost an fsync per event (~240 events/s).
pub const DEFAULT_FLUSH_EVERY: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    /// One human-readable line per event, the stack trace indented below it.
    Text,
    /// The document as shipped, one JSON object per line.
    Ndjson,
}

/// A rotation schedule: a cron expression (5 fields, or 6 with seconds first), with the
/// text it was written as.
#[derive(Clone)]
pub struct Schedule {
    pub text: String,
    pub cron: Cron,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({})", self.text)
    }
}

impl Schedule {
    /// loghogd's names, or a cron expression. `None` for `never`/`size` (size only).
    pub fn parse(text: &str) -> Result<Option<Schedule>, String> {
        let pattern = match text.trim().to_ascii_lowercase().as_str() {
            "never" | "size" | "none" => return Ok(None),
            "hourly" | "@hourly" => "0 * * * *",
            "daily" | "midnight" | "@daily" | "@midnight" => "0 0 * * *",
            "weekly" | "@weekly" => "0 0 * * 1",
            "monthly" | "@monthly" => "0 0 1 * *",
            "yearly" | "annually" | "@yearly" | "@annually" => "0 0 1 1 *",
            other if other.starts_with('@') => {
                return Err(format!(
                    "`{text}` is not a schedule: use hourly, daily, weekly, monthly, yearly, \
                     never, or a cron expression"
                ))
            }
            _ => text.trim(),
        };
        let fields = pattern.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "`{text}` is not a cron expression: it needs 5 fields (minute hour day month \
                 weekday) or 6 (seconds first); it has {fields}"
            ));
        }
        let cron = Cron::from_str(pattern)
            .map_err(|e| format!("`{text}` is not a cron expression: {e}"))?;
        // An expression that never fires (30 February) would never rotate: refused.
        let now = chrono::Local::now();
        cron.find_next_occurrence(&now, false)
            .map_err(|e| format!("`{text}` never fires: {e}"))?;
        Ok(Some(Schedule {
            text: text.to_string(),
            cron,
        }))
    }

    /// The first time after `t` the schedule fires.
    pub fn next_after(
        &self,
        t: &chrono::DateTime<chrono::Local>,
    ) -> Option<chrono::DateTime<chrono::Local>> {
        self.cron.find_next_occurrence(t, false).ok()
    }
}

/// A facility's settings, complete and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub rotate: Option<Schedule>,
    pub max_size: Option<u64>,
    /// Rotated files kept; `None` only where nothing is ever rotated.
    pub backup_count: Option<u32>,
    pub compress: Compression,
    pub compress_level: i32,
    pub flush_every: u64,
    pub format: LineFormat,
    pub file_per_host: bool,
}

impl Settings {
    fn check(name: &str, raw: &Raw) -> Result<Settings, String> {
        let err = |m: String| format!("facility `{name}`: {m}");
        let rotate = match &raw.rotate {
            Some(text) => Schedule::parse(text).map_err(|e| err(format!("`rotate`: {e}")))?,
            None => None,
        };
        if raw.max_size == Some(0) {
            return Err(err("`max_size` must be at least 1 byte".into()));
        }
        let rotates = rotate.is_some() || raw.max_size.is_some();
        let backup_count = match raw.backup_count {
            Some(0) => {
                return Err(err(
                    "`backup_count` must be at least 1 (rotated files kept)".into(),
                ))
            }
            Some(n) => Some(n),
            None if rotates => {
                return Err(err(
                    "`backup_count` is required where files are rotated \
                     (`rotate` or `max_size`): how many rotated files to keep is never guessed"
                        .into(),
                ))
            }
            None => None,
        };
        let compress = raw.compress.unwrap_or(Compression::None);
        let compress_level = match (compress, raw.compress_level) {
            (Compression::Gzip, Some(l)) if !(0..=9).contains(&l) => {
                return Err(err(format!("`compress_level` {l}: gzip takes 0 to 9")))
            }
            (Compression::Zstd, Some(l)) if !(1..=22).contains(&l) => {
                return Err(err(format!("`compress_level` {l}: zstd takes 1 to 22")))
            }
            (Compression::Gzip, None) => 6,
            (Compression::Zstd, None) => 3,
            (_, l) => l.unwrap_or(0),
        };
        let flush_every = match raw.flush_every {
            Some(0) => return Err(err("`flush_every` must be at least 1 (events)".into())),
            Some(n) => n,
            None => DEFAULT_FLUSH_EVERY,
        };
        Ok(Settings {
            rotate,
            max_size: raw.max_size,
            backup_count,
            compress,
            compress_level,
            flush_every,
            format: raw.format.unwrap_or(LineFormat::Text),
            file_per_host: raw.file_per_host.unwrap_or(false),
        })
    }
}

/// A service's root table and its sub-facilities' tables, as written.
type RawService = (Option<Raw>, Vec<(String, Raw)>);

/// A service's facilities: its root, and its sub-facilities by logger prefix, longest first.
#[derive(Debug, Clone)]
struct Service {
    root: Settings,
    subs: Vec<(String, String, Settings)>,
}

/// Every facility of the file, and the default for services it does not name.
#[derive(Debug, Clone)]
pub struct Facilities {
    default: Settings,
    services: HashMap<String, Service>,
}

/// Where an event goes: the facility's name (`service:facility`) and its settings.
pub struct Route<'a> {
    /// `root` or the sub-facility's name (its logger prefix).
    pub facility: &'a str,
    pub settings: &'a Settings,
}

impl Default for Facilities {
    /// Without a facilities file: one file per service, never rotated, so never deleted.
    fn default() -> Facilities {
        Facilities {
            default: Settings {
                rotate: None,
                max_size: None,
                backup_count: None,
                compress: Compression::None,
                compress_level: 0,
                flush_every: DEFAULT_FLUSH_EVERY,
                format: LineFormat::Text,
                file_per_host: false,
            },
            services: HashMap::new(),
        }
    }
}

impl Facilities {
    pub fn load(path: &Path) -> Result<Facilities, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the facilities file {}: {e}", path.display()))?;
        Facilities::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Facilities, String> {
        // Errors quote the line and name the key (unknown keys included).
        let tables: std::collections::BTreeMap<String, Raw> =
            toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        let mut raws: Vec<(String, Raw)> = Vec::new();
        let mut default_raw = None;
        for (name, raw) in tables {
            if name == "default" {
                default_raw = Some(raw);
            } else {
                raws.push((name, raw));
            }
        }
        let default_raw = default_raw.ok_or(
            "no `[default]` table: it gives the settings of every service the file does not \
             name (at least `backup_count` where it rotates)",
        )?;
        let default = Settings::check("default", &default_raw)?;
        let mut services: HashMap<String, RawService> = HashMap::new();
        for (name, raw) in raws {
            let (service, sub) = match name.split_once(':') {
                Some((s, sub)) => (s.to_string(), Some(sub.to_string())),
                None => (name.clone(), None),
            };
            if service.is_empty() || sub.as_deref().is_some_and(|s| s.is_empty() || s == "root") {
                return Err(format!(
                    "[{name}]: a facility is `service` or `service:logger.prefix`"
                ));
            }
            let entry = services.entry(service).or_default();
            match sub {
                None => entry.0 = Some(raw),
                Some(sub) => entry.1.push((sub.replace("::", "."), raw)),
            }
        }
        let mut out = HashMap::new();
        for (service, (root_raw, subs_raw)) in services {
            let root_raw = root_raw.unwrap_or_default().over(&default_raw);
            let root = Settings::check(&service, &root_raw)?;
            let mut subs = Vec::new();
            for (prefix, raw) in subs_raw {
                let settings =
                    Settings::check(&format!("{service}:{prefix}"), &raw.over(&root_raw))?;
                subs.push((prefix.clone(), prefix, settings));
            }
            subs.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
            out.insert(service, Service { root, subs });
        }
        Ok(Facilities {
            default,
            services: out,
        })
    }

    /// The facility of an event of `service` logged by `logger` (a target such as
    /// `web::requests::handler`, or a dotted Python-style name).
    pub fn route<'a>(&'a self, service: &str, logger: &str) -> Route<'a> {
        let Some(s) = self.services.get(service) else {
            return Route {
                facility: "root",
                settings: &self.default,
            };
        };
        for (prefix, name, settings) in &s.subs {
            if logger_under(logger, prefix) {
                return Route {
                    facility: name,
                    settings,
                };
            }
        }
        Route {
            facility: "root",
            settings: &s.root,
        }
    }
}

/// `web::requests::x` and `web.requests.x` are under `web.requests`; `web::requestsx` is not.
fn logger_under(logger: &str, prefix: &str) -> bool {
    let mut rest = logger;
    for part in prefix.split('.') {
        let Some(after) = rest.strip_prefix(part) else {
            return false;
        };
        rest = after;
        if rest.is_empty() {
            return true;
        }
        rest = match rest.strip_prefix("::").or_else(|| rest.strip_prefix('.')) {
            Some(r) => r,
            None => return false,
        };
    }
    true
}

/// Longest encoded name kept whole; longer ones are cut and end with a hash. Two of them, a
/// `-`, `.log` and a rotated suffix (`.<span>.zst.tmp`, 48 bytes) stay under 255 bytes.
const MAX_COMPONENT: usize = 100;
/// `~` + 16 hex digits.
const HASH_SUFFIX: usize = 17;

/// A name from the network as one path component, one-to-one: bytes `a-z 0-9 . _ -` are kept
/// (upper-case letters lower-cased), every other byte, `%`, and a leading `.`, `_` or `-` are
/// percent-encoded (`%2f`, lower-case hex). A name that had upper-case letters, or whose
/// encoding is longer than 100 bytes (cut there), ends with `~` and 64 bits of the SHA-256 of
/// the name as it came. No two names share a component, on case-folding file systems too (no
/// output holds an upper-case letter; `~` never appears unencoded); none is `.`, `..`, empty,
/// or starts with `-` or `_` (the collector's own `_raw`, `_rejected`).
pub fn path_component(name: &str) -> String {
    encode_name(name, false)
}

/// `path_component`, with `-` encoded too: the facility of `<host>-<facility>.log`, so the
/// last `-` of such a name is always the separator.
pub fn path_component_no_dash(name: &str) -> String {
    encode_name(name, true)
}

fn encode_name(name: &str, encode_dash: bool) -> String {
    use std::fmt::Write as _;
    if name.is_empty() {
        // `%` alone is no encoding of any name.
        return "%".to_string();
    }
    let mut out = String::with_capacity(name.len() + 8);
    let mut upper = false;
    for (i, b) in name.bytes().enumerate() {
        let keep = match b {
            b'a'..=b'z' | b'0'..=b'9' => true,
            b'A'..=b'Z' => {
                upper = true;
                true
            }
            b'.' | b'_' => i > 0,
            b'-' => i > 0 && !encode_dash,
            _ => false,
        };
        if keep {
            out.push(char::from(b.to_ascii_lowercase()));
        } else {
            let _ = write!(out, "%{b:02x}");
        }
    }
    if upper || out.len() > MAX_COMPONENT {
        let mut cut = out.len().min(MAX_COMPONENT - HASH_SUFFIX);
        // Never in the middle of a `%xx`.
        if let Some(p) = out[..cut].rfind('%') {
            if cut - p < 3 {
                cut = p;
            }
        }
        out.truncate(cut);
        let digest = <sha2::Sha256 as sha2::Digest>::digest(name.as_bytes());
        out.push('~');
        for b in &digest[..8] {
            let _ = write!(out, "{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[default]
rotate = "daily"
backup_count = 7

[billing]
max_size = 1000
compress = "zstd"
flush_every = 100

["billing:web.requests"]
rotate = "*/2 * * * * *"
format = "ndjson"

["billing:web"]
backup_count = 3
"#;

    #[test]
    fn sub_facilities_take_their_prefix_and_inherit_from_the_root() {
        let f = Facilities::parse(FILE).unwrap();
        let r = f.route("billing", "web::requests::handler");
        assert_eq!(r.facility, "web.requests");
        assert_eq!(r.settings.format, LineFormat::Ndjson);
        assert_eq!(r.settings.max_size, Some(1000));
        assert_eq!(r.settings.compress, Compression::Zstd);
        assert_eq!(r.settings.backup_count, Some(7));
        assert_eq!(r.settings.flush_every, 100);
        assert_eq!(f.route("billing", "web::other").facility, "web");
        assert_eq!(
            f.route("billing", "web::other").settings.backup_count,
            Some(3)
        );
        assert_eq!(f.route("billing", "webx").facility, "root");
        assert_eq!(f.route("billing", "web.requests").facility, "web.requests");
        let other = f.route("shop", "web::requests");
        assert_eq!(other.facility, "root");
        assert_eq!(other.settings.rotate.as_ref().unwrap().text, "daily");
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let e = Facilities::parse("[default]\nrotate = \"daily\"\n").unwrap_err();
        assert!(e.contains("`backup_count` is required"), "{e}");
        let e = Facilities::parse("[default]\nbackup_count = 1\nrotat = \"daily\"\n").unwrap_err();
        assert!(e.contains("unknown field `rotat`"), "{e}");
        let e = Facilities::parse("[default]\nbackup_count = 1\nrotate = \"61 * * * *\"\n")
            .unwrap_err();
        assert!(e.contains("not a cron expression"), "{e}");
        let e =
            Facilities::parse("[default]\nbackup_count = 1\nrotate = \"@reboot\"\n").unwrap_err();
        assert!(e.contains("not a schedule"), "{e}");
        let e = Facilities::parse("[default]\nbackup_count = 1\nrotate = \"* *\"\n").unwrap_err();
        assert!(e.contains("5 fields"), "{e}");
        let e = Facilities::parse("[x]\nbackup_count = 1\n").unwrap_err();
        assert!(e.contains("no `[default]`"), "{e}");
        let e = Facilities::parse("[default]\nbackup_count = 0\n").unwrap_err();
        assert!(e.contains("at least 1"), "{e}");
        let e = Facilities::parse("[default]\ncompress = \"xz\"\n").unwrap_err();
        assert!(e.contains("xz"), "{e}");
        let e =
            Facilities::parse("[default]\ncompress = \"gzip\"\ncompress_level = 12\n").unwrap_err();
        assert!(e.contains("0 to 9"), "{e}");
        let e = Facilities::parse("[default]\nmax_size = -1\n").unwrap_err();
        assert!(e.contains("max_size"), "{e}");
        assert!(Facilities::parse("not toml [").is_err());
    }

    #[test]
    fn names_from_the_network_stay_one_path_component() {
        assert_eq!(path_component("../../etc"), "%2e.%2f..%2fetc");
        assert_eq!(path_component(".."), "%2e.");
        assert_eq!(path_component("."), "%2e");
        assert_eq!(path_component(""), "%");
        assert_eq!(path_component("a/b c"), "a%2fb%20c");
        assert_eq!(path_component("-rf"), "%2drf");
        assert_eq!(path_component("_raw"), "%5fraw");
        assert_eq!(path_component("a\0b"), "a%00b");
        assert_eq!(path_component("50%"), "50%25");
        assert_eq!(path_component("web-1.example_x"), "web-1.example_x");
        assert_eq!(path_component_no_dash("web-1"), "web%2d1");
        let upper = path_component("My_App");
        assert!(
            upper.starts_with("my_app~") && upper.len() == 6 + 17,
            "{upper}"
        );
        // Long names are cut, never inside an escape, and stay distinct.
        let long = "é".repeat(300);
        let a = path_component(&long);
        let b = path_component(&format!("{long}x"));
        assert!(a.len() <= MAX_COMPONENT && b.len() <= MAX_COMPONENT, "{a}");
        assert_ne!(a, b);
        // Whole `%xx` escapes only.
        let kept = &a[..a.len() - HASH_SUFFIX];
        assert!(
            kept.len().is_multiple_of(3) && kept.starts_with("%c3%a9"),
            "{a}"
        );
    }

    #[test]
    fn different_names_never_share_a_component_even_folded() {
        let names = [
            "my_app",
            "my app",
            "My_App",
            "MY_APP",
            "my%app",
            "my%20app",
            "my/app",
            "my\u{0}app",
            "my.app",
            "my-app",
            "_my_app",
            ".my_app",
            "my_app ",
            "my_äpp",
            "my_Äpp",
            "",
            "%",
            "~",
            "my_app~",
            "my_app%7e",
        ];
        let mut seen = std::collections::HashMap::new();
        for name in names {
            let c = path_component(name).to_lowercase();
            assert!(
                !c.is_empty() && c != "." && c != ".." && !c.contains('/'),
                "{c}"
            );
            assert!(!c.starts_with(['-', '.', '_']), "{c}");
            if let Some(other) = seen.insert(c.clone(), name) {
                panic!("`{name}` and `{other}` share `{c}`");
            }
        }
    }
}
