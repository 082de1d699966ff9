//! Deadlines from user durations, which may be as large as `Duration::MAX`.

use std::time::{Duration, Instant};

/// The instant `after` from now, or `None` when that is beyond what `Instant` can hold: a
/// user's `Duration::MAX` means "no deadline", never an overflow.
pub(crate) fn deadline_after(after: Duration) -> Option<Instant> {
    Instant::now().checked_add(after)
}

/// How long until `deadline` (`None`: forever, saturated), never negative.
pub(crate) fn until(deadline: Option<Instant>, now: Instant) -> Duration {
    deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(now))
}
