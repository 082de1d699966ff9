//! Redaction: secrets taken out of an event before it is encoded, on the shipper thread.
//!
//! A pure step, like the rest of encoding: an event and the rules in, the same event (borrowed,
//! when nothing matched) or a redacted copy out. Two kinds of rules:
//!
//! - **by field name** (event fields, span fields, identity entries): the whole value is
//!   replaced when the name, split into words (`_`, `-`, `.`, blanks and camelCase boundaries,
//!   any case), contains an entry's words in a row: `password` matches `password`,
//!   `DB_PASSWORD`, `user.password` and `passwordHash`; `api_key` matches `X-Api-Key` and
//!   `apiKey`.
//! - **by value** (the message, string fields, error messages): detectors find bearer tokens,
//!   JWTs, passwords in URIs (`scheme://user:pass@`), AWS access key ids and card numbers that
//!   pass the Luhn check and have a card's prefix and length; only the secret part is replaced.
//!
//! The replacement is `[REDACTED]`, or `[REDACTED:<12 hex digits>]`, the start of an
//! HMAC-SHA-256 of the secret under a key, so equal secrets can be correlated without being
//! revealed.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::capture::{CapturedEvent, ErrorValue, FieldValue};
use crate::identity::Identity;

/// What replaces a secret when `redact_with = mask`.
pub const REDACTED: &str = "[REDACTED]";

/// The field names redacted by default (`redact_fields`).
pub const DEFAULT_FIELDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "authorization",
    "cookie",
    "set_cookie",
    "private_key",
    "session",
    "credit_card",
    "card_number",
    "cvv",
    "cvc",
    "pin",
];

crate::choice::choice! {
    /// A detector of secrets in values (`redact_detectors`): each is on by default.
    pub enum Detector: "a detector" {
        /// `Bearer <token>` (an `Authorization` header's value).
        Bearer = "bearer",
        /// A JSON Web Token: `eyJ….eyJ….<signature>`.
        Jwt = "jwt",
        /// The password of a URI: `scheme://user:password@host`.
        UriPassword = "uri_password",
        /// An AWS access key id (`AKIA…`, `ASIA…`, 20 characters).
        AwsAccessKey = "aws_access_key",
        /// A card number: 13 to 19 digits (blanks or dashes between groups allowed) with a
        /// card's prefix and length, passing the Luhn check.
        CardNumber = "card_number",
    }
}

crate::choice::choice! {
    /// What replaces a redacted secret (`redact_with`).
    pub enum RedactWith: "a replacement", default Mask {
        /// `[REDACTED]`.
        Mask = "mask",
        /// `[REDACTED:<12 hex digits>]`: a keyed hash (HMAC-SHA-256) of the secret, equal for
        /// equal secrets under the same `redact_hash_key`.
        Hash = "hash",
    }
}

/// The rules, built once at start.
#[derive(Clone)]
pub struct Redactor {
    /// Each entry's words, lower case.
    names: Vec<Vec<String>>,
    bearer: bool,
    jwt: bool,
    uri_password: bool,
    aws: bool,
    card: bool,
    /// `None`: `[REDACTED]`; `Some(key)`: the keyed hash.
    key: Option<Arc<[u8]>>,
    /// Tells these rules apart in the per-thread cache of field-name answers (clones share it:
    /// same rules, same answers).
    id: u64,
}

/// Field names are `&'static str`: the answer for one is the same for every event, so the
/// shipper looks it up by address instead of splitting it into words again (the split was a
/// tenth of the shipper's time). A small direct-mapped table per thread; a miss recomputes.
mod name_cache {
    use std::cell::Cell;

    const SLOTS: usize = 128;

    /// (rules id, address, length, secret?); id 0 marks an empty slot.
    type Slot = (u64, usize, usize, bool);

    thread_local! {
        static TABLE: [Cell<Slot>; SLOTS] = const { [const { Cell::new((0, 0, 0, false)) }; SLOTS] };
    }

    pub(super) fn get_or(id: u64, name: &'static str, compute: impl FnOnce() -> bool) -> bool {
        let key = (id, name.as_ptr() as usize, name.len());
        let slot = (key.1 >> 3 ^ key.2.wrapping_mul(31) ^ key.0 as usize) % SLOTS;
        let cached = TABLE
            .try_with(|table| {
                let (i, p, n, secret) = table[slot].get();
                ((i, p, n) == key).then_some(secret)
            })
            .ok()
            .flatten();
        if let Some(secret) = cached {
            return secret;
        }
        let secret = compute();
        // Ignored when the thread is being torn down: no cache, same answer.
        let _ = TABLE.try_with(|table| table[slot].set((key.0, key.1, key.2, secret)));
        secret
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("names", &self.names.len())
            .field("bearer", &self.bearer)
            .field("jwt", &self.jwt)
            .field("uri_password", &self.uri_password)
            .field("aws", &self.aws)
            .field("card", &self.card)
            .field("hash", &self.key.is_some())
            .finish()
    }
}

impl Redactor {
    /// Rules from the settings: field names (any case), detectors, and the replacement; `key`
    /// is the hash key (`None`: a random one, so hashes correlate within this process only).
    pub fn new<'a>(
        names: impl IntoIterator<Item = &'a str>,
        detectors: &[Detector],
        with: RedactWith,
        key: Option<&str>,
    ) -> Redactor {
        let names = names
            .into_iter()
            .map(|n| words(n).map(|w| w.to_lowercase()).collect::<Vec<_>>())
            .filter(|w| !w.is_empty())
            .collect();
        let key = match with {
            RedactWith::Mask => None,
            RedactWith::Hash => Some(match key {
                Some(k) => Arc::from(k.as_bytes()),
                None => {
                    let random = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()];
                    let bytes: Vec<u8> = random.iter().flat_map(|u| *u.as_bytes()).collect();
                    Arc::from(bytes)
                }
            }),
        };
        Redactor {
            names,
            bearer: detectors.contains(&Detector::Bearer),
            jwt: detectors.contains(&Detector::Jwt),
            uri_password: detectors.contains(&Detector::UriPassword),
            aws: detectors.contains(&Detector::AwsAccessKey),
            card: detectors.contains(&Detector::CardNumber),
            key,
            id: {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        }
    }

    /// Redacts nothing.
    #[cfg(any(test, feature = "internals"))] // the tests' and the CLI's
    pub fn none() -> Redactor {
        Redactor::new([], &[], RedactWith::Mask, None)
    }

    /// The defaults: [`DEFAULT_FIELDS`], every detector, `[REDACTED]`.
    #[cfg(any(test, feature = "internals"))] // the tests' and the CLI's
    pub fn defaults() -> Redactor {
        Redactor::new(
            DEFAULT_FIELDS.iter().copied(),
            Detector::ALL,
            RedactWith::Mask,
            None,
        )
    }

    fn detects(&self) -> bool {
        self.bearer || self.jwt || self.uri_password || self.aws || self.card
    }

    /// True when a field of this name is redacted whole.
    pub fn is_secret_name(&self, name: &str) -> bool {
        if self.names.is_empty() {
            return false;
        }
        // The words on the stack: no allocation unless the name has more than 32 of them.
        let mut few = [""; 32];
        let mut n = 0;
        let mut many = Vec::new();
        for word in words(name) {
            if n < few.len() {
                few[n] = word;
                n += 1;
            } else {
                if many.is_empty() {
                    many.extend_from_slice(&few);
                }
                many.push(word);
            }
        }
        let name: &[&str] = if many.is_empty() { &few[..n] } else { &many };
        self.names.iter().any(|entry| {
            name.windows(entry.len())
                .any(|w| w.iter().zip(entry).all(|(a, b)| a.eq_ignore_ascii_case(b)))
        })
    }

    /// [`is_secret_name`](Self::is_secret_name) for an event's or span's field name, cached.
    fn is_secret_field(&self, name: &'static str) -> bool {
        if self.names.is_empty() {
            return false;
        }
        name_cache::get_or(self.id, name, || self.is_secret_name(name))
    }

    /// The event with its secrets replaced; borrowed when it has none.
    pub fn event<'a>(&self, event: &'a CapturedEvent) -> Cow<'a, CapturedEvent> {
        if self.names.is_empty() && !self.detects() {
            return Cow::Borrowed(event);
        }
        let mut out: Option<CapturedEvent> = None;
        if let Cow::Owned(message) = self.text(&event.message) {
            out.get_or_insert_with(|| event.clone()).message = message;
        }
        for (i, (name, value)) in event.fields.iter().enumerate() {
            if let Some(value) = self.value(self.is_secret_field(name), value) {
                out.get_or_insert_with(|| event.clone()).fields[i].1 = value;
            }
        }
        for (s, span) in event.spans.iter().enumerate() {
            for (i, (name, value)) in span.fields.iter().enumerate() {
                if let Some(value) = self.value(self.is_secret_field(name), value) {
                    let copy = out.get_or_insert_with(|| event.clone());
                    Arc::make_mut(&mut copy.spans[s]).fields[i].1 = value;
                }
            }
        }
        match out {
            Some(event) => Cow::Owned(event),
            None => Cow::Borrowed(event),
        }
    }

    /// A field's value redacted, or `None` when it holds no secret.
    #[cfg(feature = "internals")] // the CLI's
    pub fn field(&self, name: &str, value: &FieldValue) -> Option<FieldValue> {
        self.value(self.is_secret_name(name), value)
    }

    /// A value redacted whole (`secret_name`) or by the detectors; `None` when unchanged.
    fn value(&self, secret_name: bool, value: &FieldValue) -> Option<FieldValue> {
        if secret_name {
            let secret = match value {
                FieldValue::I64(v) => v.to_string(),
                FieldValue::U64(v) => v.to_string(),
                FieldValue::I128(v) => v.to_string(),
                FieldValue::U128(v) => v.to_string(),
                FieldValue::F64(v) => v.to_string(),
                FieldValue::Bool(v) => v.to_string(),
                FieldValue::Str(v) => v.clone(),
                FieldValue::Error(e) => e.message.clone(),
            };
            return Some(FieldValue::Str(self.replacement(&secret)));
        }
        match value {
            FieldValue::Str(s) => match self.text(s) {
                Cow::Owned(s) => Some(FieldValue::Str(s)),
                Cow::Borrowed(_) => None,
            },
            FieldValue::Error(e) => {
                let message = self.text(&e.message);
                let causes: Vec<Cow<'_, str>> = e.causes.iter().map(|c| self.text(c)).collect();
                let changed = matches!(message, Cow::Owned(_))
                    || causes.iter().any(|c| matches!(c, Cow::Owned(_)));
                changed.then(|| {
                    FieldValue::Error(ErrorValue {
                        message: message.into_owned(),
                        type_name: e.type_name.clone(),
                        causes: causes.into_iter().map(Cow::into_owned).collect(),
                    })
                })
            }
            _ => None,
        }
    }

    /// An identity entry's value, redacted by its key's name and by the detectors.
    pub fn entry<'a>(&self, key: &str, value: &'a str) -> Cow<'a, str> {
        if self.is_secret_name(key) {
            return Cow::Owned(self.replacement(value));
        }
        self.text(value)
    }

    /// The identity with its entries redacted (by key name and by value), once at start.
    pub fn identity(&self, mut identity: Identity) -> Identity {
        for (key, value) in identity.entries.iter_mut() {
            if let Cow::Owned(redacted) = self.entry(key, value) {
                *value = redacted;
            }
        }
        identity
    }

    /// `text` with what the detectors find replaced; borrowed when they find nothing.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.detects() || text.len() < 8 {
            return Cow::Borrowed(text);
        }
        // One pass the compiler vectorises tells which byte-by-byte detectors can match at all
        // (most text has no card-length digit count, no `A`, or no `b`).
        // One simple reduction per question, each of which the compiler turns into a loop over
        // whole vector registers (a single loop answering all five did not vectorise well).
        let bytes = text.as_bytes();
        let any = |hit: fn(u8) -> bool| bytes.iter().fold(false, |seen, &b| seen | hit(b));
        let digits: usize = bytes
            .chunks(128)
            .map(|c| usize::from(c.iter().fold(0u8, |n, &b| n + u8::from(b.is_ascii_digit()))))
            .sum();
        let has_a = any(|b| b == b'A');
        let has_b = any(|b| b | 0x20 == b'b');
        let has_colon = any(|b| b == b':');
        let has_j = any(|b| b == b'J');
        let mut spans = Vec::new();
        if self.uri_password && has_colon {
            uri_passwords(text, &mut spans);
        }
        if self.bearer && has_b {
            bearer_tokens(text, &mut spans);
        }
        if self.jwt && has_j {
            jwts(text, &mut spans);
        }
        if self.aws && has_a {
            aws_key_ids(text, &mut spans);
        }
        if self.card && digits >= 13 {
            card_numbers(text, &mut spans);
        }
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        Cow::Owned(replace_spans(text, spans, |s| self.replacement(s)))
    }

    /// `[REDACTED]`, or the keyed hash of `secret`.
    fn replacement(&self, secret: &str) -> String {
        match &self.key {
            None => REDACTED.to_string(),
            Some(key) => {
                let mut out = String::with_capacity(24);
                out.push_str("[REDACTED:");
                // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
                if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) {
                    mac.update(secret.as_bytes());
                    for byte in &mac.finalize().into_bytes()[..6] {
                        out.push_str(&format!("{byte:02x}"));
                    }
                }
                out.push(']');
                out
            }
        }
    }
}

/// Masks the password of every URI in `text` (`scheme://user:***@host`): for messages about
/// the broker, `Debug` output and errors, whatever the redaction settings.
pub fn mask_uri_passwords(text: &str) -> Cow<'_, str> {
    let mut spans = Vec::new();
    uri_passwords(text, &mut spans);
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    Cow::Owned(replace_spans(text, spans, |_| "***".to_string()))
}

/// Replaces the byte ranges `spans` (merged where they overlap) of `text`.
fn replace_spans(
    text: &str,
    mut spans: Vec<(usize, usize)>,
    replace: impl Fn(&str) -> String,
) -> String {
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in merged {
        // Spans come from ASCII matches, so they sit on character boundaries; `get` keeps a
        // mistake from ever panicking.
        match (text.get(at..start), text.get(start..end)) {
            (Some(before), Some(secret)) => {
                out.push_str(before);
                out.push_str(&replace(secret));
                at = end;
            }
            _ => continue,
        }
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}

/// The words of a field name: split at anything not alphanumeric and where a lower-case letter
/// or digit is followed by an upper-case one.
fn words(name: &str) -> impl Iterator<Item = &str> {
    let mut rest = name;
    std::iter::from_fn(move || {
        let start = rest.find(|c: char| c.is_alphanumeric())?;
        rest = &rest[start..];
        let mut prev_lower = false;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            if !c.is_alphanumeric() || (prev_lower && c.is_uppercase()) {
                end = i;
                break;
            }
            prev_lower = c.is_lowercase() || c.is_numeric();
        }
        let (word, after) = rest.split_at(end);
        rest = after;
        Some(word)
    })
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// True when the byte before `i` is not a letter or digit (or there is none).
fn starts_word(bytes: &[u8], i: usize) -> bool {
    i == 0 || !is_word_byte(bytes[i - 1])
}

/// True when the byte at `i` is not a letter or digit (or there is none).
fn ends_word(bytes: &[u8], i: usize) -> bool {
    i >= bytes.len() || !is_word_byte(bytes[i])
}

/// `scheme://user:password@`: the password.
fn uri_passwords(text: &str, spans: &mut Vec<(usize, usize)>) {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let sep = from + found;
        from = sep + 3;
        // A scheme: a letter, then letters, digits, `+`, `-`, `.`.
        let scheme_start = bytes[..sep]
            .iter()
            .rposition(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
            .map_or(0, |p| p + 1);
        if scheme_start == sep || !bytes[scheme_start].is_ascii_alphabetic() {
            continue;
        }
        // The authority ends at `/`, `?`, `#` or a blank; the user info at its last `@`.
        let authority_end = bytes[from..]
            .iter()
            .position(|b| matches!(b, b'/' | b'?' | b'#') || b.is_ascii_whitespace())
            .map_or(bytes.len(), |p| from + p);
        let Some(at) = bytes[from..authority_end].iter().rposition(|b| *b == b'@') else {
            continue;
        };
        let at = from + at;
        if let Some(colon) = bytes[from..at].iter().position(|b| *b == b':') {
            let start = from + colon + 1;
            if start < at {
                spans.push((start, at));
            }
        }
        from = at + 1;
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

/// `Bearer <token>` (any case): the token, when it is at least 8 characters long.
fn bearer_tokens(text: &str, spans: &mut Vec<(usize, usize)>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i + 6 < bytes.len() {
        // The first byte alone rejects almost every position.
        if bytes[i] | 0x20 == b'b'
            && bytes[i..i + 6].eq_ignore_ascii_case(b"bearer")
            && starts_word(bytes, i)
        {
            let mut j = i + 6;
            let blanks = j;
            while j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'\t') {
                j += 1;
            }
            let start = j;
            while j < bytes.len() && is_token_byte(bytes[j]) {
                j += 1;
            }
            while j < bytes.len() && bytes[j] == b'=' {
                j += 1;
            }
            if start > blanks && j - start >= 8 {
                spans.push((start, j));
                i = j;
                continue;
            }
        }
        i += 1;
    }
}

fn is_base64url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// `eyJ<header>.eyJ<payload>.<signature>`: the whole token.
fn jwts(text: &str, spans: &mut Vec<(usize, usize)>) {
    let bytes = text.as_bytes();
    let segment = |from: usize| {
        from + bytes[from..]
            .iter()
            .take_while(|b| is_base64url_byte(**b))
            .count()
    };
    let mut from = 0;
    while let Some(found) = text[from..].find("eyJ") {
        let start = from + found;
        from = start + 3;
        if start > 0 && is_base64url_byte(bytes[start - 1]) {
            continue;
        }
        let header_end = segment(start);
        if header_end - start < 10 || bytes.get(header_end) != Some(&b'.') {
            continue;
        }
        let payload = header_end + 1;
        if !bytes[payload..].starts_with(b"eyJ") {
            continue;
        }
        let payload_end = segment(payload);
        if payload_end - payload < 10 || bytes.get(payload_end) != Some(&b'.') {
            continue;
        }
        let end = segment(payload_end + 1);
        spans.push((start, end));
        from = end;
    }
}

/// The prefixes of AWS access key ids (IAM "unique identifiers").
const AWS_PREFIXES: &[&[u8; 4]] = &[
    b"AKIA", b"ASIA", b"ABIA", b"ACCA", b"AGPA", b"AIDA", b"AIPA", b"ANPA", b"ANVA", b"APKA",
    b"AROA", b"ASCA",
];

/// `AKIA` and 16 upper-case letters or digits, standing alone.
fn aws_key_ids(text: &str, spans: &mut Vec<(usize, usize)>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i + 20 <= bytes.len() {
        let candidate = &bytes[i..i + 20];
        if bytes[i] == b'A'
            && AWS_PREFIXES.iter().any(|p| candidate.starts_with(*p))
            && candidate[4..]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            && starts_word(bytes, i)
            && ends_word(bytes, i + 20)
        {
            spans.push((i, i + 20));
            i += 20;
        } else {
            i += 1;
        }
    }
}

/// Runs of digit groups (separated by one blank or dash) standing alone; any run of whole
/// groups with a card's prefix, length and Luhn check digit is a card number.
fn card_numbers(text: &str, spans: &mut Vec<(usize, usize)>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || !starts_word(bytes, i) {
            i += 1;
            continue;
        }
        // The groups of this run: [start, end) of each (on the stack: most runs are one short
        // number, and no card spans more than 24 groups).
        let mut groups = [(0usize, 0usize); 24];
        let mut count = 0;
        let mut digits = 0;
        let mut j = i;
        loop {
            let start = j;
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            groups[count] = (start, j);
            count += 1;
            digits += j - start;
            let separated = j + 1 < bytes.len()
                && matches!(bytes[j], b' ' | b'-')
                && bytes[j + 1].is_ascii_digit();
            if !separated || count >= groups.len() {
                break;
            }
            j += 1;
        }
        let run_end = j;
        // A card has at least 13 digits.
        if digits >= 13 && ends_word(bytes, run_end) {
            find_cards(bytes, &groups[..count], spans);
        }
        i = run_end.max(i + 1);
    }
}

/// Of consecutive groups, the longest windows that are card numbers.
fn find_cards(bytes: &[u8], groups: &[(usize, usize)], spans: &mut Vec<(usize, usize)>) {
    let mut a = 0;
    while a < groups.len() {
        let mut found = None;
        let mut digits = 0;
        for (b, group) in groups.iter().enumerate().skip(a) {
            digits += group.1 - group.0;
            if digits > 19 {
                break;
            }
            if digits >= 13 {
                let window = (groups[a].0, group.1);
                if is_card(bytes, window) {
                    found = Some((b, window));
                }
            }
        }
        match found {
            Some((b, window)) => {
                spans.push(window);
                a = b + 1;
            }
            None => a += 1,
        }
    }
}

/// A card's prefix and length, and a valid Luhn check digit.
fn is_card(bytes: &[u8], (start, end): (usize, usize)) -> bool {
    let digits: Vec<u8> = bytes[start..end]
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| b - b'0')
        .collect();
    let n = digits.len();
    let prefix = |k: usize| {
        digits[..k]
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(*d))
    };
    let issued = match digits[0] {
        4 => matches!(n, 13 | 16 | 19),
        5 => (51..=55).contains(&prefix(2)) && n == 16,
        2 => (2221..=2720).contains(&prefix(4)) && n == 16,
        3 => match prefix(2) {
            34 | 37 => n == 15,
            35 => (16..=19).contains(&n),
            30 | 36 | 38 | 39 => (14..=19).contains(&n),
            _ => false,
        },
        6 => matches!(prefix(2), 60 | 62 | 64 | 65) && (16..=19).contains(&n),
        _ => false,
    };
    issued && luhn(&digits)
}

/// The Luhn check: from the right, every second digit doubled (minus 9 above 9); the sum is a
/// multiple of 10.
fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(*d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub(s: &str) -> String {
        Redactor::defaults().text(s).into_owned()
    }

    #[test]
    fn names_match_by_words_in_any_case() {
        let r = Redactor::defaults();
        for name in [
            "password",
            "PASSWORD",
            "db_password",
            "user.password",
            "passwordHash",
            "X-Api-Key",
            "apiKey",
            "APIKEY",
            "Set-Cookie",
            "accessToken",
            "session_id",
            "http.request.headers.authorization",
            "card-number",
        ] {
            assert!(r.is_secret_name(name), "{name}");
        }
        for name in [
            "user",
            "passport",
            "pwdx",
            "secrets_count",
            "order_id",
            "tokenizer",
            "cookies",
        ] {
            assert!(!r.is_secret_name(name), "{name}");
        }
        assert!(!Redactor::none().is_secret_name("password"));
    }

    #[test]
    fn detectors_find_secrets_and_only_secrets() {
        assert_eq!(
            scrub("Authorization: Bearer abcDEF123456.xyz-_~+/=="),
            "Authorization: Bearer [REDACTED]"
        );
        assert_eq!(scrub("bearer short"), "bearer short");
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(scrub(&format!("token={jwt};")), "token=[REDACTED];");
        assert_eq!(
            scrub("connecting to amqps://app:s3cr%40t@rabbit:5671/%2f now"),
            "connecting to amqps://app:[REDACTED]@rabbit:5671/%2f now"
        );
        assert_eq!(
            scrub("see https://example.com/a@b"),
            "see https://example.com/a@b"
        );
        assert_eq!(
            scrub("key AKIAIOSFODNN7EXAMPLE used"),
            "key [REDACTED] used"
        );
        assert_eq!(scrub("AKIAIOSFODNN7EXAMPLEX"), "AKIAIOSFODNN7EXAMPLEX");
        assert_eq!(scrub("card 4111 1111 1111 1111 ok"), "card [REDACTED] ok");
        assert_eq!(scrub("card 4111-1111-1111-1111"), "card [REDACTED]");
        assert_eq!(scrub("pan=5500005555555559"), "pan=[REDACTED]");
        assert_eq!(scrub("amex 378282246310005."), "amex [REDACTED].");
        assert_eq!(scrub("order 12 4111 1111 1111 1111"), "order 12 [REDACTED]");
        // Look-alikes stay.
        for same in [
            "order 4111111111111112 shipped",
            "id 550e8400-e29b-41d4-a716-446655440000",
            "at 2024-01-15 12:30:45.123456Z",
            "ts 1700000000123456789",
            "ms 1700000000123",
            "phone +1 555 123 4567",
            "v1.2.3 build 20240115123045",
        ] {
            assert_eq!(scrub(same), same);
        }
    }

    #[test]
    fn the_hash_is_keyed_short_and_equal_for_equal_secrets() {
        let a = Redactor::new(["password"], Detector::ALL, RedactWith::Hash, Some("k1"));
        let b = Redactor::new(["password"], Detector::ALL, RedactWith::Hash, Some("k2"));
        let x = a.entry("password", "hunter2").into_owned();
        assert_eq!(x, a.entry("password", "hunter2"));
        assert_ne!(x, a.entry("password", "hunter3"));
        assert_ne!(x, b.entry("password", "hunter2"));
        assert!(
            x.starts_with("[REDACTED:") && x.len() == "[REDACTED:]".len() + 12,
            "{x}"
        );
        assert!(!x.contains("hunter2"));
    }

    #[test]
    fn uri_passwords_are_masked_for_messages() {
        assert_eq!(
            mask_uri_passwords("amqp://u:p@h:1/%2f, amqps://v:q@k/"),
            "amqp://u:***@h:1/%2f, amqps://v:***@k/"
        );
        assert_eq!(mask_uri_passwords("amqp://h:1/%2f"), "amqp://h:1/%2f");
        assert_eq!(mask_uri_passwords("amqp://u@h"), "amqp://u@h");
    }

    #[test]
    fn odd_text_never_panics() {
        let r = Redactor::defaults();
        for s in [
            "://",
            "a://",
            "1://x:y@",
            "bearer",
            "Bearer ",
            "eyJ",
            "eyJxxxxxxxxxx.",
            "AKIA",
            "4",
            "4-",
            "é://é:é@é",
            "\u{0}bearer \u{0}",
            "::://:@@",
        ] {
            let _ = r.text(s);
            let _ = mask_uri_passwords(s);
        }
    }
}
