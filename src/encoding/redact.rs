//! Redaction: secrets taken out of an event before it is encoded, on the shipper thread.
//!
//! A pure step, like the rest of encoding: an event and the rules in, the same event (borrowed,
//! when nothing matched) or a redacted copy out. Two kinds of rules:
//!
//! - **by field name** (event fields, span fields, identity entries): the whole value is
//!   replaced when the name, split into words (`_`, `-`, `.`, blanks and camelCase boundaries,
//!   any case), holds an entry:
//!   - as whole words in a row: `password` matches `DB_PASSWORD`, `user.password`,
//!     `passwordHash`; `api_key` matches `X-Api-Key` and `apiKey`;
//!   - or, for an entry of more than four letters, inside words: `newpassword`, `PGPASSWORD`,
//!     `clientsecret`, `accesstoken`, `sessionid`, `Cookies`, `privatekey` (the entry's words run
//!     together), `X-Api-Keys` (the first word may end with the entry's first, the last begin
//!     with its last). People fuse and pluralise secret names, so a stem anywhere in a word
//!     counts, except in [`LOOK_ALIKES`], words known to hold a stem and name no secret
//!     (`tokenizer`, `secretary`, `possession`). Entries of four letters or fewer (`pin`, `pwd`,
//!     `auth`, `pass`, `cvv`) sit inside too many words (`spin`, `author`, `passenger`,
//!     `bypass`), so they match whole words only.
//!
//!   A name holding a secret word is redacted whatever else it says (`session_count`,
//!   `token_type`): redacting a count by mistake is the safe side of the rule.
//! - **by value** (the message, string fields, error messages): detectors find bearer tokens,
//!   `Basic` credentials, JWTs, passwords in URIs (`scheme://user:pass@`), pairs whose key is a
//!   secret name by the rule above (`password=hunter2`, `"token": "abc"`, `PGPASSWORD: x`), AWS
//!   access key ids and card numbers that pass the Luhn check and have a card's prefix and length;
//!   only the secret part is replaced (a pair's value, never its key).
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
    "pass",
    "passphrase",
    "secret",
    "credential",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "authorization",
    "auth",
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

/// Words that hold a secret entry's stem inside them but name no secret: a stem found inside
/// one of these words is not a match (the word itself, as an entry, still is).
pub const LOOK_ALIKES: &[&str] = &[
    "tokenize",
    "tokenizer",
    "tokenizers",
    "tokenized",
    "tokenizes",
    "tokenizing",
    "tokenization",
    "tokenise",
    "tokeniser",
    "tokenised",
    "tokenisation",
    "detokenize",
    "detokenizer",
    "tokenomics",
    "secretary",
    "secretaries",
    "secretariat",
    "secrete",
    "secreted",
    "secretes",
    "secretion",
    "secretions",
    "secretive",
    "secretly",
    "obsession",
    "obsessions",
    "possession",
    "possessions",
    "repossession",
    "dispossession",
    "keyboard",
    "keyboards",
    "keyword",
    "keywords",
    "keystroke",
    "keystrokes",
    "keypad",
];

crate::choice::choice! {
    /// A detector of secrets in values (`redact_detectors`): each is on by default.
    pub enum Detector: "a detector" {
        /// `Bearer <token>` (an `Authorization` header's value).
        Bearer = "bearer",
        /// `Basic <credentials>`: base64 that decodes to `user:password` text.
        Basic = "basic",
        /// A JSON Web Token: `eyJ….eyJ….<signature>`.
        Jwt = "jwt",
        /// The password of a URI: `scheme://user:password@host`.
        UriPassword = "uri_password",
        /// The value of a pair whose key is a secret field name (`redact_fields`): `key=value`,
        /// `key: value`, `"key": "value"`, `key => value`.
        SecretPair = "secret_pair",
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
    names: Vec<Entry>,
    /// The letter pairs that start the entries' first words, in any case, as a bit per byte
    /// pair (one load and test per pair of a name): a name with none of them holds no entry
    /// (the check that makes the keys of `key=value` messages cheap). `None`: an entry starts
    /// otherwise, every name is checked.
    openings: Option<Arc<[u64; 1024]>>,
    bearer: bool,
    basic: bool,
    jwt: bool,
    uri_password: bool,
    /// Secret pairs: only with names to match their keys against.
    pairs: bool,
    aws: bool,
    card: bool,
    /// Shorter text cannot hold a secret any detector finds.
    min_len: usize,
    /// `None`: `[REDACTED]`; `Some(key)`: the keyed hash.
    key: Option<Arc<[u8]>>,
    /// Tells these rules apart in the per-thread cache of field-name answers (clones share it:
    /// same rules, same answers).
    id: u64,
}

/// An entry of `redact_fields`, ready to match.
#[derive(Clone)]
struct Entry {
    /// Its words, lower case.
    words: Vec<String>,
    /// Its words run together (`privatekey`), lower case.
    fused: String,
    /// More than four letters: matched inside words too.
    inside: bool,
}

impl Entry {
    fn new(name: &str) -> Option<Entry> {
        let words: Vec<String> = words(name).map(|w| w.to_lowercase()).collect();
        let fused = words.concat();
        let inside = fused.chars().count() > 4;
        (!words.is_empty()).then_some(Entry {
            words,
            fused,
            inside,
        })
    }

    /// Whether a name, split into `name` words, holds this entry (the rule is in the module's
    /// documentation).
    fn matches(&self, name: &[&str]) -> bool {
        let k = self.words.len();
        let same = |a: &str, b: &String| a.as_bytes().eq_ignore_ascii_case(b.as_bytes());
        let in_a_row = |w: &[&str]| w.iter().zip(&self.words).all(|(a, b)| same(a, b));
        if name.windows(k).any(in_a_row) {
            return true;
        }
        if !self.inside {
            return false;
        }
        // Inside one word: `newpassword`, `Cookies`, `privatekey`.
        if name
            .iter()
            .any(|w| contains_ignore_case(w, &self.fused) && !is_look_alike(w))
        {
            return true;
        }
        // Across words, the outer ones partly: `X-Api-Keys`, `aws_secretaccess_key`.
        let (first, last) = (&self.words[0], &self.words[k - 1]);
        k > 1
            && name.windows(k).any(|w| {
                let (a, z) = (w[0].as_bytes(), w[k - 1].as_bytes());
                a.len() >= first.len()
                    && a[a.len() - first.len()..].eq_ignore_ascii_case(first.as_bytes())
                    && z.len() >= last.len()
                    && z[..last.len()].eq_ignore_ascii_case(last.as_bytes())
                    && w[1..k - 1]
                        .iter()
                        .zip(&self.words[1..k - 1])
                        .all(|(a, b)| same(a, b))
                    && !is_look_alike(w[0])
                    && !is_look_alike(w[k - 1])
            })
    }
}

/// `needle` (lower case) in `haystack`, ASCII letters in any case.
fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let needle = needle.as_bytes();
    let Some(&first) = needle.first() else {
        return true;
    };
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w[0].to_ascii_lowercase() == first && w.eq_ignore_ascii_case(needle))
}

/// Two ASCII letters (any case) as a number below 676.
fn letter_pair(a: u8, b: u8) -> Option<usize> {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    (a.is_ascii_lowercase() && b.is_ascii_lowercase())
        .then(|| usize::from(a - b'a') * 26 + usize::from(b - b'a'))
}

/// Two bytes as a number below 65536.
fn byte_pair(a: u8, b: u8) -> usize {
    usize::from(a) << 8 | usize::from(b)
}

fn is_look_alike(word: &str) -> bool {
    LOOK_ALIKES.iter().any(|l| word.eq_ignore_ascii_case(l))
}

/// A name's answer is the same for every event, so the shipper looks it up instead of splitting
/// the name into words again (the split was a tenth of the shipper's time; a pair's key went
/// through it once per separator). Small direct-mapped tables per thread, two kinds of key:
/// a field name is `&'static str`, known by its address; a pair's key is a slice of the
/// message, known by its bytes (up to [`KEY_BYTES`] of them; longer keys are not cached). A
/// miss, or a thread being torn down, recomputes: same answer, no cache.
mod answers {
    use std::cell::Cell;
    use std::thread::LocalKey;

    const SLOTS: usize = 128;

    /// The longest pair key cached.
    pub(super) const KEY_BYTES: usize = 32;

    /// Rules id, address, length.
    type FieldKey = (u64, usize, usize);
    /// Rules id, length, bytes (zero-padded; in words, compared without a call to memcmp).
    type PairKey = (u64, usize, [u64; KEY_BYTES / 8]);

    type Table<K> = [Cell<Option<(K, bool)>>; SLOTS];

    thread_local! {
        static FIELDS: Table<FieldKey> = const { [const { Cell::new(None) }; SLOTS] };
        static PAIR_KEYS: Table<PairKey> = const { [const { Cell::new(None) }; SLOTS] };
    }

    fn get_or<K: Copy + PartialEq + 'static>(
        table: &'static LocalKey<Table<K>>,
        hash: u64,
        key: K,
        compute: impl FnOnce() -> bool,
    ) -> bool {
        let slot = (hash >> 32) as usize % SLOTS;
        let cached = table
            .try_with(|t| match t[slot].get() {
                Some((k, secret)) if k == key => Some(secret),
                _ => None,
            })
            .ok()
            .flatten();
        if let Some(secret) = cached {
            return secret;
        }
        let secret = compute();
        let _ = table.try_with(|t| t[slot].set(Some((key, secret))));
        secret
    }

    fn mix(h: u64, word: u64) -> u64 {
        (h.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95)
    }

    /// The answer for a field name under the rules `id`.
    pub(super) fn field(id: u64, name: &'static str, compute: impl FnOnce() -> bool) -> bool {
        let key = (id, name.as_ptr() as usize, name.len());
        let hash = mix(mix(id, key.1 as u64), key.2 as u64);
        get_or(&FIELDS, hash, key, compute)
    }

    /// The answer for a pair's key under the rules `id`.
    pub(super) fn pair_key(id: u64, name: &str, compute: impl FnOnce() -> bool) -> bool {
        let bytes = name.as_bytes();
        if bytes.len() > KEY_BYTES {
            return compute();
        }
        // Only the words the key fills (most keys are one or two): no padded copy.
        let mut words = [0u64; KEY_BYTES / 8];
        let mut hash = mix(id, bytes.len() as u64);
        for (word, chunk) in words.iter_mut().zip(bytes.chunks(8)) {
            let mut le = [0u8; 8];
            le[..chunk.len()].copy_from_slice(chunk);
            *word = u64::from_le_bytes(le);
            hash = mix(hash, *word);
        }
        get_or(&PAIR_KEYS, hash, (id, bytes.len(), words), compute)
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("names", &self.names.len())
            .field("bearer", &self.bearer)
            .field("basic", &self.basic)
            .field("jwt", &self.jwt)
            .field("uri_password", &self.uri_password)
            .field("pairs", &self.pairs)
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
        let names: Vec<Entry> = names.into_iter().filter_map(Entry::new).collect();
        let openings = names
            .iter()
            .try_fold(Box::new([0u64; 1024]), |mut set, entry| {
                let (a, b) = match entry.words[0].as_bytes() {
                    [a, b, ..] if letter_pair(*a, *b).is_some() => (*a, *b),
                    _ => return None,
                };
                for x in [a.to_ascii_lowercase(), a.to_ascii_uppercase()] {
                    for y in [b.to_ascii_lowercase(), b.to_ascii_uppercase()] {
                        let i = byte_pair(x, y);
                        set[i / 64] |= 1 << (i % 64);
                    }
                }
                Some(set)
            })
            .map(Arc::from);
        let pairs = detectors.contains(&Detector::SecretPair) && !names.is_empty();
        // `pin=1`: the shortest key, a separator and one character.
        let min_len = match names.iter().map(|e| e.fused.len()).min() {
            Some(shortest) if pairs => (shortest + 2).min(8),
            _ => 8,
        };
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
            openings,
            bearer: detectors.contains(&Detector::Bearer),
            basic: detectors.contains(&Detector::Basic),
            jwt: detectors.contains(&Detector::Jwt),
            uri_password: detectors.contains(&Detector::UriPassword),
            pairs,
            aws: detectors.contains(&Detector::AwsAccessKey),
            card: detectors.contains(&Detector::CardNumber),
            min_len,
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
        self.bearer
            || self.basic
            || self.jwt
            || self.uri_password
            || self.pairs
            || self.aws
            || self.card
    }

    /// True when a field of this name is redacted whole.
    pub fn is_secret_name(&self, name: &str) -> bool {
        self.may_hold_entry(name) && self.holds_entry(name)
    }

    /// False when `name` cannot hold an entry: no entries, or none of their opening letter
    /// pairs (the check that makes most keys of `key=value` messages cheap).
    fn may_hold_entry(&self, name: &str) -> bool {
        if self.names.is_empty() {
            return false;
        }
        let Some(set) = &self.openings else {
            return true;
        };
        name.as_bytes().windows(2).any(|w| {
            let i = byte_pair(w[0], w[1]);
            set[i / 64] & (1 << (i % 64)) != 0
        })
    }

    /// Whether `name`, split into words, holds an entry.
    fn holds_entry(&self, name: &str) -> bool {
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
        self.names.iter().any(|entry| entry.matches(name))
    }

    /// [`is_secret_name`](Self::is_secret_name) for an event's or span's field name, cached.
    fn is_secret_field(&self, name: &'static str) -> bool {
        if self.names.is_empty() {
            return false;
        }
        answers::field(self.id, name, || self.is_secret_name(name))
    }

    /// [`is_secret_name`](Self::is_secret_name) for a pair's key in a message, cached when it
    /// passes the opening check (`user`, `tokenizer`, `passenger` do).
    fn is_secret_key(&self, key: &str) -> bool {
        self.may_hold_entry(key) && answers::pair_key(self.id, key, || self.holds_entry(key))
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
        if !self.detects() || text.len() < self.min_len {
            return Cow::Borrowed(text);
        }
        // One pass the compiler vectorises tells which byte-by-byte detectors can match at all
        // (most text has no card-length digit count, no `A`, no `b`, no `=`).
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
        let has_equals = any(|b| b == b'=');
        let mut spans = Vec::new();
        if self.uri_password && has_colon {
            uri_passwords(text, &mut spans);
        }
        if self.pairs && (has_colon || has_equals) {
            self.secret_pairs(text, &mut spans);
        }
        if self.bearer && has_b {
            bearer_tokens(text, &mut spans);
        }
        if self.basic && has_b {
            basic_credentials(text, &mut spans);
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

    /// The value of every pair in `text` whose key is a secret name: `key=value`, `key: value`,
    /// `"key": "value"` (quotes escaped or not), `key => value`, `key := value`.
    fn secret_pairs(&self, text: &str, spans: &mut Vec<(usize, usize)>) {
        let bytes = text.as_bytes();
        let mut from = 0;
        while let Some(found) = memchr::memchr2(b'=', b':', &bytes[from..]) {
            let sep = from + found;
            from = sep + 1;
            let Some(value_from) = separator_end(bytes, sep) else {
                continue;
            };
            let Some(key) = key_before(text, sep) else {
                continue;
            };
            if !self.is_secret_key(key) {
                continue;
            }
            // A cookie header is a list of pairs, any of which may be a session: all of it.
            let whole_line = contains_ignore_case(key, "cookie");
            if let Some((start, end)) = pair_value(bytes, value_from, whole_line) {
                spans.push((start, end));
                from = from.max(end);
            }
        }
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
    // `://` where a `:` stands (found a register at a time) and `//` follows.
    while let Some(found) = memchr::memchr(b':', &bytes[from..]) {
        let sep = from + found;
        from = sep + 1;
        if !(bytes.get(sep + 1) == Some(&b'/') && bytes.get(sep + 2) == Some(&b'/')) {
            continue;
        }
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

/// Where the value of a pair separated at `sep` (`=` or `:`) starts, blanks skipped; `None`
/// when the byte there separates no pair: `::` (a path), `://` (a URI), `==`, `!=`, `<=`, `>=`.
fn separator_end(bytes: &[u8], sep: usize) -> Option<usize> {
    let before = sep.checked_sub(1).map(|i| bytes[i]);
    let after = bytes.get(sep + 1).copied();
    let end = match (bytes[sep], after) {
        (b':', Some(b':')) | (b':', Some(b'/')) | (b'=', Some(b'=')) => return None,
        _ if matches!(before, Some(b':' | b'=' | b'!' | b'<' | b'>')) => return None,
        (b':', Some(b'=')) | (b'=', Some(b'>')) => sep + 2,
        _ => sep + 1,
    };
    Some(skip_blanks(bytes, end))
}

fn skip_blanks(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
        i += 1;
    }
    i
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// The key of a pair separated at `sep`: letters, digits, `_`, `-`, `.` right before it (blanks
/// between allowed), quoted (`"key"`, `'key'`, `\"key\"`) or not.
fn key_before(text: &str, sep: usize) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut end = sep;
    while end > 0 && matches!(bytes[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    let quote = match end.checked_sub(1).map(|i| bytes[i]) {
        Some(q @ (b'"' | b'\'')) => {
            end -= 1;
            if end > 0 && bytes[end - 1] == b'\\' {
                end -= 1;
            }
            Some(q)
        }
        _ => None,
    };
    // One pass back over the key, noting whether it has a letter.
    let mut start = end;
    let mut letter = false;
    while start > 0 && is_key_byte(bytes[start - 1]) {
        start -= 1;
        letter |= bytes[start].is_ascii_alphabetic();
    }
    // No key, or not a name (`12:30`, a long run that is no field name).
    if end - start > 128 || !letter {
        return None;
    }
    if quote.is_some() && (start == 0 || Some(bytes[start - 1]) != quote) {
        return None;
    }
    text.get(start..end)
}

/// Authorization schemes: after a secret key, the credential follows the scheme.
const SCHEMES: &[&[u8]] = &[
    b"basic",
    b"bearer",
    b"digest",
    b"negotiate",
    b"ntlm",
    b"token",
];

/// The value starting at `at`: inside its quotes (`"…"`, `'…'`, `\"…\"`), else up to a blank or
/// `,;&)]}<>"'` (with `whole_line`, up to the end of the line); after an authorization scheme,
/// the credential. `None` for no value or a nested one (`{`, `[`).
fn pair_value(bytes: &[u8], at: usize, whole_line: bool) -> Option<(usize, usize)> {
    let escaped = bytes.get(at) == Some(&b'\\');
    let open = if escaped { at + 1 } else { at };
    let span = match bytes.get(open) {
        None | Some(b'{' | b'[') => return None,
        Some(&q @ (b'"' | b'\'')) => {
            let start = open + 1;
            let mut j = start;
            while j < bytes.len() && bytes[j] != b'\n' {
                if escaped && bytes[j] == b'\\' && bytes.get(j + 1) == Some(&q) {
                    break;
                }
                if !escaped && bytes[j] == q {
                    break;
                }
                // An escaped character belongs to the value.
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            (start, j.min(bytes.len()))
        }
        Some(_) if whole_line => {
            let end = bytes[at..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
                .map_or(bytes.len(), |p| at + p);
            (at, end)
        }
        Some(_) => {
            let run = |from: usize| {
                from + bytes[from..]
                    .iter()
                    .take_while(|&&b| {
                        !b.is_ascii_whitespace()
                            && !matches!(
                                b,
                                b',' | b';'
                                    | b'&'
                                    | b')'
                                    | b']'
                                    | b'}'
                                    | b'<'
                                    | b'>'
                                    | b'"'
                                    | b'\''
                            )
                    })
                    .count()
            };
            let end = run(at);
            let scheme = &bytes[at..end];
            let credential = skip_blanks(bytes, end);
            if credential > end && SCHEMES.iter().any(|s| scheme.eq_ignore_ascii_case(s)) {
                let credential_end = run(credential);
                if credential_end > credential {
                    return Some((credential, credential_end));
                }
            }
            (at, end)
        }
    };
    (span.1 > span.0).then_some(span)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

fn is_base64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// `<scheme> <credential>`, the scheme (lower case) in any case at a word start, then blanks,
/// then bytes of `credential` and `=` padding: the credential, when `accept` takes it.
fn scheme_credentials(
    text: &str,
    scheme: &[u8],
    credential: fn(u8) -> bool,
    accept: fn(&[u8]) -> bool,
    spans: &mut Vec<(usize, usize)>,
) {
    let bytes = text.as_bytes();
    let n = scheme.len();
    // Only where the scheme's first letter stands (either case), found a register at a time.
    let mut next = 0;
    for i in memchr::memchr2_iter(scheme[0], scheme[0].to_ascii_uppercase(), bytes) {
        if i + n >= bytes.len() {
            break;
        }
        if i < next || !bytes[i..i + n].eq_ignore_ascii_case(scheme) || !starts_word(bytes, i) {
            continue;
        }
        let start = skip_blanks(bytes, i + n);
        let mut j = start;
        while j < bytes.len() && credential(bytes[j]) {
            j += 1;
        }
        while j < bytes.len() && bytes[j] == b'=' {
            j += 1;
        }
        if start > i + n && j > start && accept(&bytes[start..j]) {
            spans.push((start, j));
            next = j;
        }
    }
}

/// `Bearer <token>` (any case): the token, when it is at least 8 characters long.
fn bearer_tokens(text: &str, spans: &mut Vec<(usize, usize)>) {
    scheme_credentials(text, b"bearer", is_token_byte, |t| t.len() >= 8, spans);
}

/// `Basic <base64>` (any case): the credential, when it decodes to `user:password` text.
fn basic_credentials(text: &str, spans: &mut Vec<(usize, usize)>) {
    scheme_credentials(text, b"basic", is_base64_byte, is_basic_credential, spans);
}

/// Base64 (padded or not) of UTF-8 text with a `:` and no control characters: what a `Basic`
/// credential holds, and what a word after "basic" in prose almost never decodes to.
fn is_basic_credential(b64: &[u8]) -> bool {
    let data = b64.iter().take_while(|&&b| b != b'=').count();
    let padding = b64.len() - data;
    if data % 4 == 1 || padding > 2 || (padding > 0 && !b64.len().is_multiple_of(4)) {
        return false;
    }
    let mut decoded = Vec::with_capacity(data / 4 * 3 + 2);
    let (mut bits, mut nbits) = (0u32, 0u32);
    for &b in &b64[..data] {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            _ => 63,
        };
        bits = (bits << 6 | u32::from(v)) & 0xff_ffff;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            decoded.push((bits >> nbits) as u8);
        }
    }
    std::str::from_utf8(&decoded).is_ok_and(|s| s.contains(':') && !s.chars().any(char::is_control))
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
    // The groups of a run: [start, end) of each (on the stack: most runs are one short number,
    // and no card spans more than 24 groups); filled afresh for each run.
    let mut groups = [(0usize, 0usize); 24];
    let mut i = 0;
    while let Some(digit) = next_digit(bytes, i) {
        i = digit;
        if !starts_word(bytes, i) {
            i += 1;
            continue;
        }
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

/// The first ASCII digit at or after `from`: text without digits is passed over 16 bytes at a
/// time (a test the compiler vectorises), the rest byte by byte.
fn next_digit(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(chunk) = bytes.get(i..).and_then(<[u8]>::first_chunk::<16>) {
        if chunk
            .iter()
            .fold(false, |seen, b| seen | b.is_ascii_digit())
        {
            break;
        }
        i += 16;
    }
    let rest = bytes.get(i..)?;
    rest.iter().position(u8::is_ascii_digit).map(|p| i + p)
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

    /// Secret names as people write them: the default entries in any case, run together,
    /// with prefixes and plurals.
    const SECRET_NAMES: &[&str] = &[
        "password",
        "PASSWORD",
        "db_password",
        "user.password",
        "passwordHash",
        "newpassword",
        "NewPassword",
        "PGPASSWORD",
        "MYSQL_ROOT_PASSWORD",
        "passwords",
        "passwordless",
        "db_pass",
        "SMTP_PASS",
        "pwd",
        "user-pwd",
        "passwd",
        "passphrase",
        "ssh_passphrase",
        "keyPassphrase",
        "secret",
        "clientsecret",
        "client_secret",
        "clientSecret",
        "secrets",
        "secret_key",
        "credential",
        "credentials",
        "aws.credentials",
        "token",
        "accesstoken",
        "access-token",
        "accessToken",
        "refresh_token",
        "csrftoken",
        "X-Auth-Token",
        "tokens",
        "api_key",
        "apikey",
        "X-Api-Key",
        "X-Api-Keys",
        "xapikey",
        "apiKey",
        "APIKEY",
        "access_key",
        "awsaccesskey",
        "aws_access_key_id",
        "authorization",
        "Proxy-Authorization",
        "http.request.headers.authorization",
        "auth",
        "basic_auth",
        "authHeader",
        "cookie",
        "cookies",
        "Cookies",
        "Set-Cookie",
        "setcookie",
        "session",
        "sessionid",
        "session_id",
        "JSESSIONID",
        "usersession",
        "private_key",
        "privatekey",
        "privateKey",
        "tls.private_key_pem",
        "credit_card",
        "creditcard",
        "card-number",
        "cardnumber",
        "card_numbers",
        "cvv",
        "CVC",
        "pin",
        "user_pin",
    ];

    /// Names that hold a stem and name no secret, and ordinary names.
    const PLAIN_NAMES: &[&str] = &[
        "user",
        "passport",
        "passenger",
        "passengers",
        "bypass",
        "compass",
        "pwdx",
        "order_id",
        "tokenizer",
        "Tokenizer",
        "hf_tokenizer",
        "tokenized",
        "tokenization",
        "author",
        "authors",
        "authority",
        "authorized",
        "authenticated",
        "oauthor",
        "keyboard",
        "keyboard_layout",
        "keyword",
        "spin",
        "spinner",
        "pinned",
        "shipping",
        "mapping",
        "secretary",
        "secretion",
        "possession",
        "obsessions",
        "cardinal",
        "credit",
        "card",
        "key",
        "cache_key",
        "routing_key",
        "accessibility",
        "access",
        "private",
        "cvvx",
        "status",
        "request_id",
        "duration_ms",
    ];

    #[test]
    fn secret_names_match_as_words_and_inside_words() {
        let r = Redactor::defaults();
        for name in SECRET_NAMES {
            assert!(r.is_secret_name(name), "{name} should be secret");
        }
        for name in PLAIN_NAMES {
            assert!(!r.is_secret_name(name), "{name} should stay");
        }
        assert!(!Redactor::none().is_secret_name("password"));
    }

    #[test]
    fn a_name_with_a_secret_word_is_secret_whatever_else_it_says() {
        let r = Redactor::defaults();
        for name in [
            "session_count",
            "token_type",
            "secrets_count",
            "password_policy",
        ] {
            assert!(r.is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn short_entries_match_whole_words_and_user_entries_follow_the_same_rule() {
        let r = Redactor::new(["ssn", "customer_ssn"], &[], RedactWith::Mask, None);
        for name in ["ssn", "SSN", "customer.ssn", "customerssn", "customer_ssns"] {
            assert!(r.is_secret_name(name), "{name}");
        }
        // `ssn` is too short to be looked for inside a word.
        for name in ["lessns", "assn", "ssnx"] {
            assert!(!r.is_secret_name(name), "{name}");
        }
        // A look-alike named as an entry matches itself.
        let r = Redactor::new(["tokenizer"], &[], RedactWith::Mask, None);
        assert!(r.is_secret_name("tokenizer"));
    }

    #[test]
    fn look_alikes_hold_a_stem() {
        // Each look-alike would be secret without the list: the list is no dead weight.
        let r = Redactor::defaults();
        let stems = [
            "token",
            "secret",
            "session",
            "api_key",
            "access_key",
            "private_key",
        ];
        for word in LOOK_ALIKES {
            assert!(!r.is_secret_name(word), "{word}");
            let lower = word.to_lowercase();
            assert!(
                stems.iter().any(|s| lower.contains(&s.replace('_', "")))
                    || lower.starts_with("key"),
                "{word} holds no stem"
            );
        }
        assert!(!r.is_secret_name("api_keyboard"));
        assert!(r.is_secret_name("api_keys"));
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
    fn pairs_with_a_secret_key_lose_their_value_and_keep_their_key() {
        for (text, want) in [
            ("login password=hunter2 ok", "login password=[REDACTED] ok"),
            ("PGPASSWORD=x psql", "PGPASSWORD=[REDACTED] psql"),
            ("pin=1", "pin=[REDACTED]"),
            ("token: abc", "token: [REDACTED]"),
            (
                r#"{"token": "abc", "user": "bob"}"#,
                r#"{"token": "[REDACTED]", "user": "bob"}"#,
            ),
            (
                r#"{"password":"hun\"ter2","user":"bob"}"#,
                r#"{"password":"[REDACTED]","user":"bob"}"#,
            ),
            (
                r#"body {\"password\":\"hunter2\",\"user\":\"bob\"}"#,
                r#"body {\"password\":\"[REDACTED]\",\"user\":\"bob\"}"#,
            ),
            (
                "config {password: 'a b c', user: x}",
                "config {password: '[REDACTED]', user: x}",
            ),
            (
                "clientsecret = s3cr3t;next",
                "clientsecret = [REDACTED];next",
            ),
            (
                "GET /cb?code=1&access_token=abc123&state=x",
                "GET /cb?code=1&access_token=[REDACTED]&state=x",
            ),
            (
                "Server=db;User Id=app;Password=p@ss;",
                "Server=db;User Id=app;Password=[REDACTED];",
            ),
            (
                "User{name=bob, password=hunter2}",
                "User{name=bob, password=[REDACTED]}",
            ),
            ("--db-password=hunter2", "--db-password=[REDACTED]"),
            ("opts :password => 'x'", "opts :password => '[REDACTED]'"),
            ("password := hunter2", "password := [REDACTED]"),
            ("password=a=b c", "password=[REDACTED] c"),
            (
                "sessionid=abc; csrftoken=xyz",
                "sessionid=[REDACTED]; csrftoken=[REDACTED]",
            ),
            (
                "Cookie: theme=dark; sid=abc123\nnext",
                "Cookie: [REDACTED]\nnext",
            ),
            (
                "Authorization: Basic dXNlcjpwYXNz",
                "Authorization: Basic [REDACTED]",
            ),
            ("authorization=Token abc", "authorization=Token [REDACTED]"),
            ("X-Api-Key: k-123", "X-Api-Key: [REDACTED]"),
        ] {
            assert_eq!(scrub(text), want, "{text}");
        }
    }

    #[test]
    fn basic_credentials_are_found_alone_and_prose_stays() {
        for (text, want) in [
            (
                "header Basic dXNlcjpwYXNz sent",
                "header Basic [REDACTED] sent",
            ),
            ("basic YTpi", "basic [REDACTED]"),
            // `alice:s3cret!` padded.
            ("Basic YWxpY2U6czNjcmV0IQ==.", "Basic [REDACTED]."),
        ] {
            assert_eq!(scrub(text), want, "{text}");
        }
        for same in [
            "the basic idea",
            "Basic information about basic auth",
            "Basic dXNlcnBhc3M",
            "Basic dXNlcjpwYXNz=",
            "basically dXNlcjpwYXNz",
        ] {
            assert_eq!(scrub(same), same);
        }
    }

    #[test]
    fn cached_key_answers_are_the_rules_answers() {
        // More keys than the cache has slots, under two sets of rules that answer differently
        // for the same key, twice over: every answer is the rules' own, whatever was evicted.
        let rules = [
            Redactor::defaults(),
            Redactor::new(["user", "ssn"], &[], RedactWith::Mask, None),
        ];
        let mut keys: Vec<String> = SECRET_NAMES
            .iter()
            .chain(PLAIN_NAMES)
            .map(|k| k.to_string())
            .collect();
        keys.extend((0..300).map(|i| format!("user_{i}")));
        keys.extend((0..300).map(|i| format!("token_{i}")));
        // Longer than the cache holds, and the same bytes in another case.
        keys.push(format!("{}_password", "x".repeat(40)));
        keys.push(format!("{}_user", "x".repeat(40)));
        keys.extend(["USER", "User", "userName", "username"].map(String::from));
        let mut differ = 0;
        for _ in 0..2 {
            for key in &keys {
                let answers = rules.each_ref().map(|r| r.is_secret_name(key));
                differ += usize::from(answers[0] != answers[1]);
                for (r, secret) in rules.iter().zip(answers) {
                    assert_eq!(r.is_secret_key(key), secret, "{key}");
                }
            }
        }
        assert!(
            differ > 600,
            "the rules should disagree on many keys: {differ}"
        );
        // Through the detector: a key cached as clean under one set of rules is still a
        // secret under another.
        let users = Redactor::new(["user"], &[Detector::SecretPair], RedactWith::Mask, None);
        for _ in 0..2 {
            assert_eq!(scrub("user=alice"), "user=alice");
            assert_eq!(users.text("user=alice"), "user=[REDACTED]");
        }
    }

    #[test]
    fn pairs_whose_key_is_no_secret_stay() {
        for same in [
            "tokenizer=fast passenger=3 author: bob keyboard=us",
            "order=4111111111111112 status=200",
            "id=550e8400-e29b-41d4-a716-446655440000",
            "at 2024-01-15T12:30:45.123Z ts: 12:30:45",
            "https://example.com:8443/path?page=2&sort=asc",
            "use myapp::auth::login",
            "if x == y and a != b, a <= b",
            "password:",
            "password=",
            "password= \nnext",
            "password={\"nested\": 1}",
            "time=12:30 zone: UTC",
        ] {
            assert_eq!(scrub(same), same);
        }
        // Switched off, or no names to match keys against: the pair stays.
        let only_bearer = Redactor::new(
            DEFAULT_FIELDS.iter().copied(),
            &[Detector::Bearer],
            RedactWith::Mask,
            None,
        );
        assert_eq!(only_bearer.text("password=hunter2"), "password=hunter2");
        let no_names = Redactor::new([], &[Detector::SecretPair], RedactWith::Mask, None);
        assert_eq!(no_names.text("password=hunter2"), "password=hunter2");
    }

    mod look_alikes {
        use super::*;
        use proptest::prelude::*;

        fn plain_name() -> impl Strategy<Value = String> {
            (proptest::sample::select(PLAIN_NAMES), 0..3u8).prop_map(|(n, case)| match case {
                0 => n.to_string(),
                1 => n.to_uppercase(),
                _ => n.to_lowercase(),
            })
        }

        /// Order numbers, UUIDs (starting with a letter, as v4 UUIDs often do: no digit run of
        /// a card's length), timestamps, words.
        fn plain_value() -> impl Strategy<Value = String> {
            prop_oneof![
                "[0-9]{1,12}",
                "[a-f][0-9a-f]{7}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]\\.[0-9]{3}Z",
                "[a-z]{1,10}",
            ]
        }

        fn pair() -> impl Strategy<Value = String> {
            (plain_name(), plain_value(), 0..4u8).prop_map(|(k, v, shape)| match shape {
                0 => format!("{k}={v}"),
                1 => format!("{k}: {v}"),
                2 => format!("\"{k}\": \"{v}\""),
                _ => format!("{k} => {v}"),
            })
        }

        proptest! {
            #[test]
            fn pairs_of_look_alikes_and_plain_values_are_unchanged(
                pairs in proptest::collection::vec(pair(), 1..6),
                comma in any::<bool>(),
            ) {
                let text = pairs.join(if comma { ", " } else { " " });
                prop_assert_eq!(scrub(&text), text);
            }

            #[test]
            fn look_alike_names_stay_in_any_case(name in plain_name()) {
                prop_assert!(!Redactor::defaults().is_secret_name(&name), "{}", name);
            }

            #[test]
            fn a_secret_pair_loses_exactly_its_value(
                key in proptest::sample::select(SECRET_NAMES),
                value in "[A-Za-z0-9]{1,24}",
                shape in 0..3u8,
            ) {
                let (text, want) = match shape {
                    0 => (format!("{key}={value}"), format!("{key}=[REDACTED]")),
                    1 => (format!("{key}: {value}"), format!("{key}: [REDACTED]")),
                    _ => (
                        format!("\"{key}\": \"{value}\""),
                        format!("\"{key}\": \"[REDACTED]\""),
                    ),
                };
                prop_assert_eq!(scrub(&text), want);
            }
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
