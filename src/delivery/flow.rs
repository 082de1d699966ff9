//! Flow control: when the shipper may publish. The broker may block us (a resource alarm);
//! after a return or a nack we hold back for a delay that doubles while they go on; nacks with
//! no ack among them for a while mean the session is broken; after a failed connection we wait a
//! capped, jittered, doubling backoff.

use std::time::{Duration, Instant};

use super::time::deadline_after;

/// Whether publishing may go on in this session.
#[derive(Debug)]
pub(crate) struct Flow {
    blocked: bool,
    /// `Some(None)`: a hold too long for an `Instant`, i.e. for good.
    hold_until: Option<Option<Instant>>,
    hold: Duration,
    retry_delay: Duration,
    retry_delay_max: Duration,
    /// When the first nack since the last ack (or since the session began) came.
    nacked_since: Option<Instant>,
}

/// Nacks and no ack for this long (at least; twice the retry delay if longer) end the session.
/// A channel can stay broken after its node lost a quorum queue's leader: the broker then nacks
/// everything on it for good while a new channel gets acks.
pub(crate) const NACKS_END_SESSION_AFTER: Duration = Duration::from_secs(1);

impl Flow {
    pub fn new(retry_delay: Duration, retry_delay_max: Duration) -> Self {
        Flow {
            blocked: false,
            hold_until: None,
            hold: retry_delay,
            retry_delay,
            retry_delay_max: retry_delay_max.max(retry_delay),
            nacked_since: None,
        }
    }

    pub fn blocked(&self) -> bool {
        self.blocked
    }

    /// The broker blocks publishing; `true` if this starts a block.
    pub fn block(&mut self) -> bool {
        !std::mem::replace(&mut self.blocked, true)
    }

    /// The broker unblocked us; `true` if a block ended.
    pub fn unblock(&mut self) -> bool {
        std::mem::replace(&mut self.blocked, false)
    }

    /// A message came back (returned or nacked): hold back, for longer each time in a row.
    pub fn refused(&mut self) {
        self.hold_until = Some(deadline_after(self.hold));
        self.hold = self.hold.saturating_mul(2).min(self.retry_delay_max);
    }

    /// The broker nacked a message at `now`: a refusal that may persist.
    pub fn nacked(&mut self, now: Instant) {
        self.nacked_since.get_or_insert(now);
        self.refused();
    }

    /// A message was confirmed: the next refusal waits the shortest delay again.
    pub fn accepted(&mut self) {
        self.hold = self.retry_delay;
        self.nacked_since = None;
    }

    /// How long nacks have persisted with no ack among them, if that is long enough to give up
    /// on the session: [`NACKS_END_SESSION_AFTER`], or twice the retry delay if longer.
    pub fn nacks_persist(&self, now: Instant) -> Option<Duration> {
        let since = self.nacked_since?;
        let limit = self
            .retry_delay
            .saturating_mul(2)
            .max(NACKS_END_SESSION_AFTER);
        let lasted = now.saturating_duration_since(since);
        (lasted >= limit).then_some(lasted)
    }

    /// Whether a refusal's hold is still on at `now`.
    pub fn holding(&self, now: Instant) -> bool {
        self.hold_until.is_some_and(|t| t.is_none_or(|t| now < t))
    }

    /// Publishing may go on: not blocked, not holding.
    pub fn open(&self, now: Instant) -> bool {
        !self.blocked && !self.holding(now)
    }
}

/// Capped exponential backoff with jitter: min, 2·min, 4·min… up to max, each delay scaled by a
/// random factor in [0.5, 1.0] so many restarted apps do not reconnect in lockstep.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            current: min,
        }
    }

    pub fn reset(&mut self) {
        self.current = self.min;
    }

    pub fn next(&mut self) -> Duration {
        let delay = self.current;
        self.current = self.current.saturating_mul(2).min(self.max);
        // uuid's random bits are a ready source of jitter without another dependency.
        let r = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
        let factor = 0.5 + f64::from(r) / 2000.0;
        // `mul_f64` panics when the product does not fit; a user's `Duration::MAX` must not.
        Duration::try_from_secs_f64(delay.as_secs_f64() * factor).unwrap_or(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let delays: Vec<_> = (0..6).map(|_| b.next()).collect();
        for (d, nominal) in delays.iter().zip([100u64, 200, 400, 800, 800, 800]) {
            assert!(
                *d >= Duration::from_millis(nominal / 2) && *d <= Duration::from_millis(nominal),
                "{d:?} vs {nominal}"
            );
        }
        b.reset();
        assert!(b.next() <= Duration::from_millis(100));
    }

    /// Refuses once; the instants just before and just after, between which the hold began.
    fn refuse(f: &mut Flow) -> (Instant, Instant) {
        let before = Instant::now();
        f.refused();
        (before, Instant::now())
    }

    /// The hold after a refusal lasts `hold`: still on just short of `hold` after the call
    /// began, over `hold` after it returned, however long the call and the test take.
    fn assert_holds_for(f: &Flow, (before, after): (Instant, Instant), hold: Duration) {
        let tick = Duration::from_millis(1);
        assert!(f.holding(before) && !f.open(before));
        assert!(f.holding(before + hold - tick), "{f:?}: {hold:?}");
        assert!(
            !f.holding(after + hold) && f.open(after + hold),
            "{f:?}: {hold:?}"
        );
    }

    #[test]
    fn refusals_hold_publishing_for_a_doubling_delay_that_an_ack_resets() {
        let mut f = Flow::new(Duration::from_secs(1), Duration::from_secs(3));
        assert!(f.open(Instant::now()));
        let secs = Duration::from_secs;
        let refused = refuse(&mut f);
        assert_holds_for(&f, refused, secs(1));
        let refused = refuse(&mut f);
        assert_holds_for(&f, refused, secs(2));
        let refused = refuse(&mut f);
        assert_holds_for(&f, refused, secs(3)); // the cap
        let refused = refuse(&mut f);
        assert_holds_for(&f, refused, secs(3));
        f.accepted();
        let refused = refuse(&mut f);
        assert_holds_for(&f, refused, secs(1));
    }

    #[test]
    fn nacks_with_no_ack_among_them_end_the_session_after_twice_the_retry_delay() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut f = Flow::new(s(2), s(30));
        assert_eq!(f.nacks_persist(t0 + s(100)), None, "no nack yet");
        f.nacked(t0);
        f.nacked(t0 + s(1));
        assert_eq!(
            f.nacks_persist(t0 + s(3)),
            None,
            "not yet twice the retry delay"
        );
        assert_eq!(
            f.nacks_persist(t0 + s(4)),
            Some(s(4)),
            "counted from the first nack"
        );
        f.accepted();
        assert_eq!(f.nacks_persist(t0 + s(10)), None, "an ack ends the streak");
        f.nacked(t0 + s(10));
        assert_eq!(f.nacks_persist(t0 + s(13)), None, "a new streak starts");
        assert_eq!(f.nacks_persist(t0 + s(14)), Some(s(4)));
        // A short retry delay still gives the broker the floor; a huge one never overflows.
        let mut f = Flow::new(Duration::from_millis(20), s(1));
        f.nacked(t0);
        assert_eq!(f.nacks_persist(t0 + Duration::from_millis(999)), None);
        assert!(f.nacks_persist(t0 + s(1)).is_some());
        let mut f = Flow::new(Duration::MAX, Duration::MAX);
        f.nacked(t0);
        assert_eq!(f.nacks_persist(t0 + s(1 << 40)), None);
    }

    #[test]
    fn a_block_is_reported_once_and_a_huge_delay_holds_for_good() {
        let mut f = Flow::new(Duration::MAX, Duration::MAX);
        assert!(f.block() && !f.block());
        assert!(!f.open(Instant::now()));
        assert!(f.unblock() && !f.unblock());
        f.refused();
        assert!(f.holding(Instant::now() + Duration::from_secs(1 << 40)));
    }

    #[test]
    fn huge_backoffs_saturate_instead_of_panicking() {
        let mut b = Backoff::new(Duration::MAX, Duration::MAX);
        for _ in 0..100 {
            assert!(b.next() >= Duration::MAX / 2);
        }
        let mut b = Backoff::new(Duration::from_secs(u64::MAX / 3), Duration::MAX);
        for _ in 0..100 {
            let _ = b.next();
        }
    }
}
