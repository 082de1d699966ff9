//! Rate limiting per callsite (`rate_limit.*` settings): at most `events` per callsite per
//! window, unused allowance carried over up to `burst` more, levels at `exempt_level` and above
//! never limited, per-target overrides. Suppressed events are counted (`dropped.rate_limited`)
//! and summarised: one WARN event per callsite and window, target `logcollect::rate_limit`,
//! queued like any event, at the first event (from any callsite) of a later window, and at
//! shutdown for the window then running (the guard asks before it stops accepting events).
//!
//! Off (the default), the layer holds no limiter: one branch per event. On, an event costs a
//! division, a probe of a fixed table and one compare-and-swap; no lock, no allocation after a
//! callsite's first event.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(feature = "internals")]
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_core::{Level, LevelFilter, Metadata};

use super::event::FieldValue;
use crate::delivery::Handoff;

/// The target of the summary events.
pub const SUMMARY_TARGET: &str = "logcollect::rate_limit";

/// Callsites tracked; events of callsites beyond these are not limited. Callsites are places in
/// the code, so a program rarely has this many that log at limited levels.
const SLOTS: usize = 4096;
/// How far a callsite's slot may be from its hash's place.
const MAX_PROBE: usize = 64;

crate::choice::choice! {
    /// The least severe level that is never rate limited (`rate_limit.exempt_level`).
    pub enum ExemptLevel: "a level", default Error {
        /// ERROR events always pass.
        Error = "error",
        /// WARN and ERROR events always pass.
        Warn = "warn",
        /// INFO and more severe events always pass.
        Info = "info",
        /// Everything but TRACE always passes.
        Debug = "debug",
        /// Every event passes: nothing is limited.
        Trace = "trace",
        /// No level is exempt.
        None = "none",
    }
}

impl ExemptLevel {
    fn filter(self) -> LevelFilter {
        match self {
            ExemptLevel::Error => LevelFilter::ERROR,
            ExemptLevel::Warn => LevelFilter::WARN,
            ExemptLevel::Info => LevelFilter::INFO,
            ExemptLevel::Debug => LevelFilter::DEBUG,
            ExemptLevel::Trace => LevelFilter::TRACE,
            ExemptLevel::None => LevelFilter::OFF,
        }
    }
}

/// A per-target limit (`rate_limit.targets`): callsites whose target starts with `target` may
/// log `events` per window (0: not limited). The longest matching prefix wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetLimit {
    /// A target prefix, e.g. `sqlx` or `my_app::db`.
    pub target: String,
    /// Events per callsite per window; 0 = no limit.
    pub events: u64,
}

impl TargetLimit {
    /// `target=events`, as a variable or a list entry gives it.
    pub(crate) fn parse(s: &str) -> Result<TargetLimit, String> {
        let (target, events) = s
            .rsplit_once('=')
            .ok_or_else(|| format!("`{s}` is not `target=events`"))?;
        let target = target.trim();
        if target.is_empty() {
            return Err(format!("`{s}` has no target before `=`"));
        }
        let events = events
            .trim()
            .parse()
            .map_err(|e| format!("`{s}`: the number of events is invalid ({e})"))?;
        Ok(TargetLimit {
            target: target.to_string(),
            events,
        })
    }
}

impl std::fmt::Display for TargetLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.target, self.events)
    }
}

/// The `rate_limit.*` settings the limiter needs.
pub(crate) struct Settings<'a> {
    pub events: u64,
    pub window: Duration,
    pub burst: u64,
    pub exempt_level: ExemptLevel,
    pub targets: &'a [TargetLimit],
}

/// A clock the test moves by hand (feature `internals`): windows roll over only when it is
/// advanced, so counts never depend on how fast the machine is.
#[cfg(feature = "internals")]
#[derive(Debug, Clone)]
pub struct ManualClock {
    millis: Arc<AtomicU64>,
}

#[cfg(feature = "internals")]
impl ManualClock {
    /// Moves the limiter's time forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let _ = self
            .millis
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(ms))
            });
    }
}

/// What the summary of a callsite names.
struct Site {
    name: String,
    target: String,
    file: Option<String>,
    line: Option<u32>,
    /// Events per window (0: not limited).
    limit: u64,
    /// The most a window can allow: `limit + burst`, at most `u32::MAX`.
    capacity: u32,
}

/// One callsite's state. `state` packs the window number (high half; 0 = never used) and the
/// events still allowed in it (low half), so one compare-and-swap takes an event's place.
#[repr(align(64))] // a flood on one callsite does not slow its neighbours (false sharing)
#[derive(Default)]
struct Slot {
    key: AtomicU64,
    state: AtomicU64,
    suppressed: AtomicU64,
    site: OnceLock<Box<Site>>,
}

/// The limiter: a fixed table of callsites, lock-free.
pub(crate) struct RateLimiter {
    events: u64,
    window_ms: u64,
    burst: u64,
    exempt: LevelFilter,
    /// Longest prefix first.
    targets: Vec<TargetLimit>,
    /// A clock a test moves by hand, when set; else the event's timestamp.
    #[cfg(feature = "internals")]
    manual: OnceLock<Arc<AtomicU64>>,
    slots: Box<[Slot]>,
    /// Indexes (+1) of the slots in use, for the sweep; `claimed_len` of them are taken.
    claimed: Box<[AtomicU32]>,
    claimed_len: AtomicUsize,
    /// The window whose summaries were last sent.
    swept: AtomicU64,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("events", &self.events)
            .field("window_ms", &self.window_ms)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// The limiter these settings ask for, `None` when they limit nothing (the default).
    pub(crate) fn new(settings: &Settings<'_>) -> Option<RateLimiter> {
        let limits_something = settings.events > 0 || settings.targets.iter().any(|t| t.events > 0);
        if !limits_something || settings.exempt_level == ExemptLevel::Trace {
            return None;
        }
        let mut targets = settings.targets.to_vec();
        targets.sort_by_key(|t| std::cmp::Reverse(t.target.len()));
        Some(RateLimiter {
            events: settings.events,
            window_ms: u64::try_from(settings.window.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            burst: settings.burst,
            exempt: settings.exempt_level.filter(),
            targets,
            #[cfg(feature = "internals")]
            manual: OnceLock::new(),
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
            claimed: (0..SLOTS).map(|_| AtomicU32::new(0)).collect(),
            claimed_len: AtomicUsize::new(0),
            swept: AtomicU64::new(0),
        })
    }

    /// A clock that moves nothing (rate limiting is off).
    #[cfg(feature = "internals")]
    pub(crate) fn detached_clock() -> ManualClock {
        ManualClock {
            millis: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Switches to a clock moved by hand, starting at 0.
    #[cfg(feature = "internals")]
    pub(crate) fn manual_clock(&self) -> ManualClock {
        let millis = self
            .manual
            .get_or_init(|| Arc::new(AtomicU64::new(0)))
            .clone();
        self.swept.store(0, Ordering::SeqCst);
        ManualClock { millis }
    }

    fn window_at(&self, now: SystemTime) -> u64 {
        #[cfg(feature = "internals")]
        if let Some(ms) = self.manual.get() {
            return ms.load(Ordering::SeqCst) / self.window_ms;
        }
        let ms = now.duration_since(UNIX_EPOCH).map_or(0, |d| {
            d.as_secs()
                .saturating_mul(1000)
                .saturating_add(u64::from(d.subsec_millis()))
        });
        ms / self.window_ms
    }

    /// Whether the event may be captured. `callsite` is the event's own (static) metadata,
    /// `meta` the one to describe it by (a `log` record's, when bridged). A suppressed event is
    /// counted; summaries of past windows are queued through `handoff`.
    pub(crate) fn admit(
        &self,
        callsite: &'static Metadata<'static>,
        meta: &Metadata<'_>,
        is_log: bool,
        now: SystemTime,
        handoff: &Handoff,
    ) -> bool {
        let window = self.window_at(now);
        let swept = self.swept.load(Ordering::Relaxed);
        if swept != window
            && self
                .swept
                .compare_exchange(swept, window, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sweep(handoff);
        }
        if *meta.level() <= self.exempt {
            return true;
        }
        let key = if is_log {
            log_key(meta)
        } else {
            // A callsite's metadata is a static of its own: its address names the callsite
            // (aligned, so never 0 and never odd like a `log` key).
            callsite as *const Metadata<'static> as usize as u64
        };
        let Some(slot) = self.slot(key) else {
            return true;
        };
        // Window numbers start at 1: 0 marks a slot never used.
        let current = (window as u32).wrapping_add(1).max(1);
        let mut state = slot.state.load(Ordering::Acquire);
        loop {
            let (seen, left) = ((state >> 32) as u32, state as u32);
            let (at, left) = if seen == current {
                (seen, left)
            } else {
                let site = slot.site.get_or_init(|| self.site(meta));
                if site.limit == 0 {
                    return true;
                }
                if seen == 0 {
                    (current, site.capacity)
                } else if (current.wrapping_sub(seen) as i32) < 0 {
                    // The wall clock went back: stay in the later window.
                    (seen, left)
                } else {
                    let passed = u64::from(current.wrapping_sub(seen));
                    let refill = u64::from(left)
                        .saturating_add(passed.saturating_mul(site.limit))
                        .min(u64::from(site.capacity));
                    (current, refill as u32)
                }
            };
            let admitted = left > 0;
            let next = (u64::from(at) << 32) | u64::from(left.saturating_sub(1));
            if next != state {
                if let Err(now) = slot.state.compare_exchange_weak(
                    state,
                    next,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    state = now;
                    continue;
                }
            }
            if !admitted {
                slot.suppressed.fetch_add(1, Ordering::Relaxed);
                handoff.reject_rate_limited();
            }
            return admitted;
        }
    }

    /// The slot of `key`, claimed if new; `None` when the table has no room near its place.
    fn slot(&self, key: u64) -> Option<&Slot> {
        let mask = SLOTS - 1;
        let home = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize & mask;
        for probe in 0..MAX_PROBE {
            let index = (home + probe) & mask;
            let slot = &self.slots[index];
            match slot.key.load(Ordering::Acquire) {
                k if k == key => return Some(slot),
                0 => match slot
                    .key
                    .compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        let n = self.claimed_len.fetch_add(1, Ordering::AcqRel);
                        if let Some(entry) = self.claimed.get(n) {
                            entry.store(index as u32 + 1, Ordering::Release);
                        }
                        return Some(slot);
                    }
                    Err(k) if k == key => return Some(slot),
                    Err(_) => {}
                },
                _ => {}
            }
        }
        None
    }

    fn site(&self, meta: &Metadata<'_>) -> Box<Site> {
        let target = meta.target();
        let limit = self
            .targets
            .iter()
            .find(|t| target.starts_with(t.target.as_str()))
            .map_or(self.events, |t| t.events);
        let capacity = u32::try_from(limit.saturating_add(self.burst)).unwrap_or(u32::MAX);
        Box::new(Site {
            name: meta.name().to_string(),
            target: target.to_string(),
            file: meta.file().map(str::to_string),
            line: meta.line(),
            limit,
            capacity,
        })
    }

    /// Queues one summary per callsite that suppressed events since the last sweep (at a
    /// window's end, and at shutdown for the window then running).
    pub(crate) fn sweep(&self, handoff: &Handoff) {
        let claimed = self.claimed_len.load(Ordering::Acquire).min(SLOTS);
        for entry in &self.claimed[..claimed] {
            let Some(index) = (entry.load(Ordering::Acquire) as usize).checked_sub(1) else {
                continue;
            };
            let slot = &self.slots[index];
            if slot.suppressed.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let suppressed = slot.suppressed.swap(0, Ordering::Relaxed);
            if let (Some(site), true) = (slot.site.get(), suppressed > 0) {
                self.summarise(site, suppressed, handoff);
            }
        }
    }

    fn summarise(&self, site: &Site, suppressed: u64, handoff: &Handoff) {
        let mut event = handoff.blank();
        event.timestamp = SystemTime::now();
        event.level = Level::WARN;
        event.target = Cow::Borrowed(SUMMARY_TARGET);
        event.module_path = Some(Cow::Borrowed(module_path!()));
        event.file = None;
        event.line = None;
        event.thread_name = None;
        event.thread_id = 0;
        event.trace = None;
        let place = match (&site.file, site.line) {
            (Some(file), Some(line)) => format!(" at {file}:{line}"),
            (Some(file), None) => format!(" at {file}"),
            _ => String::new(),
        };
        event.message = format!(
            "rate limit: {suppressed} events suppressed from {}{place} (at most {} per {} ms)",
            site.target, site.limit, self.window_ms
        );
        let fields = &mut event.fields;
        fields.push(("suppressed", FieldValue::U64(suppressed)));
        fields.push(("window_ms", FieldValue::U64(self.window_ms)));
        fields.push(("limit", FieldValue::U64(site.limit)));
        fields.push(("callsite", FieldValue::Str(site.name.clone())));
        fields.push(("callsite_target", FieldValue::Str(site.target.clone())));
        if let Some(file) = &site.file {
            fields.push(("callsite_file", FieldValue::Str(file.clone())));
        }
        if let Some(line) = site.line {
            fields.push(("callsite_line", FieldValue::U64(line.into())));
        }
        handoff.offer_boxed(event);
    }
}

/// The key of a `log` record's callsite: its target, file, line and level hashed (FNV-1a),
/// odd so it never equals a static metadata's address.
fn log_key(meta: &Metadata<'_>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(meta.target().as_bytes());
    eat(&[0xff]);
    eat(meta.file().unwrap_or("").as_bytes());
    eat(&meta.line().unwrap_or(0).to_le_bytes());
    eat(meta.level().as_str().as_bytes());
    hash | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_limit_reads_as_written_and_shows_the_same() {
        let limit = TargetLimit::parse(" my_app::db = 10 ").unwrap();
        assert_eq!((limit.target.as_str(), limit.events), ("my_app::db", 10));
        assert_eq!(limit.to_string(), "my_app::db=10");
        // The last `=` separates: a target never holds one, but the error stays clear.
        assert!(TargetLimit::parse("a=b=3").is_ok());
        assert!(TargetLimit::parse("sqlx")
            .unwrap_err()
            .contains("target=events"));
        assert!(TargetLimit::parse("=3").unwrap_err().contains("no target"));
        assert!(TargetLimit::parse("sqlx=-1").is_err());
    }

    #[test]
    fn settings_that_limit_nothing_build_no_limiter() {
        let settings = |events, targets: &'static [TargetLimit], exempt_level| Settings {
            events,
            window: Duration::from_secs(1),
            burst: 0,
            exempt_level,
            targets,
        };
        static ZERO: [TargetLimit; 0] = [];
        assert!(RateLimiter::new(&settings(0, &ZERO, ExemptLevel::Error)).is_none());
        assert!(RateLimiter::new(&settings(5, &ZERO, ExemptLevel::Trace)).is_none());
        assert!(RateLimiter::new(&settings(5, &ZERO, ExemptLevel::None)).is_some());
    }
}
