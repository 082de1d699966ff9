//! The bounded hand-off between the application's threads and the shipper thread.
//!
//! Pushing is lock-free. When the queue is full, the overflow policy decides: refuse the new
//! event, push the oldest out, wait a bounded time for room, or write the event to the spool.
//! Each drop is counted.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use tokio::sync::Notify;

use super::batch;
use super::message::{Encoder, Message};
use super::spool::Spool;
use super::stats::{Counters, Stats};
use super::time::{deadline_after, until};
use crate::capture::{CapturedEvent, FieldValue, SpanSnapshot};

crate::choice::choice! {
    /// What the application's logging call does when the in-memory queue is full.
    pub enum Overflow: "an overflow policy" {
        /// Write the event to the disk spool from the logging thread (needs `spool.dir`; the
        /// default when a spool is set). The shipper already moves queued events to the spool
        /// long before the queue fills, so this is the rare case of a disk slower than the log
        /// rate.
        Spill = "spill",
        /// Refuse the new event and count it (the default without a spool).
        DropNewest = "drop_newest",
        /// Push the oldest queued event out to make room, and count it.
        DropOldest = "drop_oldest",
        /// Wait up to `block_timeout_ms` for room, then refuse the event and count it.
        Block = "block",
    }
}

/// State shared by the layer, the guard and the shipper thread.
pub(crate) struct Shared {
    /// Boxed: `ArrayQueue` allocates every slot up front, and a pointer per slot keeps an idle
    /// 65536-event queue at 512 KiB instead of ~13 MiB.
    pub queue: ArrayQueue<Box<CapturedEvent>>,
    /// What the shipper gave back for reuse, in bundles ([`Spares`]).
    spares: ArrayQueue<Spares>,
    /// Tells this queue's spares from another's in a logging thread's stash.
    id: u64,
    pub counters: Counters,
    /// Wakes the shipper: an event arrived, or shutdown was asked for.
    pub wake: Notify,
    /// Set by the logging call that wakes the shipper, cleared by the shipper when it wakes and
    /// before it looks at the queue: while set, the shipper is sure to look again, so the calls that find it
    /// set neither wake it nor touch `wake` (one load of a line that stays in their cache,
    /// instead of a compare-and-swap on a line the shipper reads, or a wake-up, per event).
    wake_pending: AtomicBool,
    /// No more events are accepted.
    pub closed: AtomicBool,
    /// The shipper must stop now, abandoning what it still holds.
    pub abort: AtomicBool,
    /// Flushes waiting now: nothing lingers while one waits.
    pub flushing: AtomicUsize,
    /// Signalled by the shipper whenever events settle, for `flush` to wait on.
    progress: (Mutex<()>, Condvar),
    /// Turns events into messages (the shipper's job; a logging thread's only when it spills).
    pub encoder: Encoder,
    /// The disk spool, when one is configured, until the guard releases it at shutdown.
    spool: Mutex<Option<Spool>>,
    spooling: bool,
    pub overflow: Overflow,
    pub block_timeout: Duration,
    /// What the capture side queues at shutdown while events are still accepted (the rate
    /// limiter's summaries of the running window).
    before_close: Mutex<Vec<BeforeClose>>,
}

type BeforeClose = Box<dyn Fn(&Handoff) + Send + Sync>;

/// Emptied events kept for reuse. A captured event is built on a logging thread and freed on
/// the shipper's: its box, message, field list and span list made four malloc/free pairs
/// across threads per event, which glibc serves slowly (arena locks, heap trimmed and grown
/// again). Reused, they cost nothing in the steady state; so do string field values (up to four
/// per kept event) and span snapshots whose span has closed. Bounds what is kept: at most this
/// many events and snapshots, each with small buffers, and four times as many strings of at
/// most 1 KiB (`Shared::recycle`), plus a logging thread's stash (`STASH_MAX`).
const BLANKS: usize = 1024;

/// Events per bundle of spares. The shipper hands spares back, and a logging thread takes
/// them, a bundle at a time: one operation on the shared queue per bundle instead of one per
/// event, string and snapshot (each moves cache lines between the two threads' cores).
const BUNDLE: usize = 16;

/// A logging thread's stash keeps at most this many of each kind (more from a bundle is
/// freed): two bundles' worth, four strings per event.
const STASH_MAX: usize = 2 * BUNDLE;

/// Emptied parts of encoded events, for the logging threads to fill again.
#[derive(Default)]
struct Spares {
    /// Boxed: each goes back into the queue as it is, a pointer.
    #[allow(clippy::vec_box)]
    events: Vec<Box<CapturedEvent>>,
    strings: Vec<String>,
    snapshots: Vec<Arc<SpanSnapshot>>,
}

impl Spares {
    /// Keeps the small string values among `values` for reuse; the rest is freed.
    fn keep_strings(&mut self, values: impl Iterator<Item = (&'static str, FieldValue)>) {
        for (_, value) in values {
            if let FieldValue::Str(mut s) = value {
                if s.capacity() <= 1024 && self.strings.len() < 4 * BUNDLE {
                    s.clear();
                    self.strings.push(s);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.strings.is_empty() && self.snapshots.is_empty()
    }

    /// Moves `bundle`'s parts into this stash, up to [`STASH_MAX`] (strings: four times that).
    fn absorb(&mut self, bundle: Spares) {
        fn fill<T>(into: &mut Vec<T>, from: Vec<T>, max: usize) {
            let room = max.saturating_sub(into.len());
            into.extend(from.into_iter().take(room));
        }
        fill(&mut self.events, bundle.events, STASH_MAX);
        fill(&mut self.strings, bundle.strings, 4 * STASH_MAX);
        fill(&mut self.snapshots, bundle.snapshots, STASH_MAX);
    }
}

/// Numbers each queue, for [`Shared::id`].
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This logging thread's spares, and the id of the queue they came from (a thread that
    /// logs to another queue drops them).
    static STASH: RefCell<(u64, Spares)> = RefCell::new((0, Spares::default()));
}

/// With a spool, the most events held in memory whatever `queue_capacity` says: beyond this
/// they go to disk (`overflow = spill`), so memory stays bounded (~1.2 KiB per captured event:
/// 8192 events ≈ 10 MiB) while logging outpaces the broker or the broker blocks us.
pub(crate) const SPOOLED_QUEUE_CAPACITY: usize = 8192;

impl Shared {
    /// `capacity` is `queue_capacity`; with a spool, at most [`SPOOLED_QUEUE_CAPACITY`].
    pub fn new(
        capacity: usize,
        encoder: Encoder,
        spool: Option<Spool>,
        overflow: Overflow,
        block_timeout: Duration,
    ) -> Arc<Shared> {
        let counters = Counters::default();
        if let Some(spool) = &spool {
            Counters::store(&counters.spool_bytes, spool.bytes());
        }
        let capacity = match spool {
            Some(_) => capacity.min(SPOOLED_QUEUE_CAPACITY),
            None => capacity,
        };
        Arc::new(Shared {
            queue: ArrayQueue::new(capacity.max(1)),
            spares: ArrayQueue::new(BLANKS / BUNDLE),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            counters,
            wake: Notify::new(),
            wake_pending: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            flushing: AtomicUsize::new(0),
            progress: (Mutex::new(()), Condvar::new()),
            encoder,
            spooling: spool.is_some(),
            spool: Mutex::new(spool),
            overflow,
            block_timeout,
            before_close: Mutex::new(Vec::new()),
        })
    }

    /// Runs what the capture side asked to run before the queue closes (once each).
    pub fn run_before_close(self: &Arc<Self>) {
        let hooks =
            std::mem::take(&mut *self.before_close.lock().unwrap_or_else(|e| e.into_inner()));
        let handoff = Handoff::new(self.clone());
        for hook in hooks {
            hook(&handoff);
        }
    }

    /// Gives encoded events back, emptied, for the logging threads to fill again; events
    /// whose buffers grew large are freed instead, so what is kept stays small.
    pub fn recycle(&self, events: impl IntoIterator<Item = Box<CapturedEvent>>) {
        let mut bundle = Spares::default();
        for mut event in events {
            if bundle.events.is_empty() && self.spares.is_full() {
                return;
            }
            if event.message.capacity() > 1024
                || event.fields.capacity() > 32
                || event.spans.capacity() > 32
            {
                continue;
            }
            bundle.keep_strings(event.fields.drain(..));
            for mut span in event.spans.drain(..) {
                // Only a snapshot no span or other event holds any more.
                let Some(snapshot) = Arc::get_mut(&mut span) else {
                    continue;
                };
                if snapshot.fields.capacity() > 32 || bundle.snapshots.len() >= BUNDLE {
                    continue;
                }
                bundle.keep_strings(snapshot.fields.drain(..));
                bundle.snapshots.push(span);
            }
            event.empty();
            bundle.events.push(event);
            if bundle.events.len() == BUNDLE {
                // Full meanwhile (another thread recycled): the rest is simply freed.
                if self.spares.push(std::mem::take(&mut bundle)).is_err() {
                    return;
                }
            }
        }
        if !bundle.is_empty() {
            let _ = self.spares.push(bundle);
        }
    }

    pub fn stats(&self) -> Stats {
        self.counters.snapshot(self.queue.len())
    }

    /// Waits to be woken (by the first event since the shipper last looked at the queue or
    /// was woken, a flush, shutdown); the next event after this wakes the shipper again, so a
    /// shipper that does not drain (held back, spilling) still sees the queue grow.
    pub async fn woken(&self) {
        self.wake.notified().await;
        self.wake_pending.store(false, Ordering::Relaxed);
    }

    /// The shipper is about to look at the queue: an event pushed from now on wakes it again.
    pub fn draining(&self) {
        self.wake_pending.store(false, Ordering::Relaxed);
        // Pairs with the fence in `Handoff::accepted`: either this look finds the event, or
        // its call finds the flag clear and wakes the shipper.
        fence(Ordering::SeqCst);
    }

    /// Whether a spool is configured.
    pub fn spooling(&self) -> bool {
        self.spooling
    }

    /// The spool, locked, if there is one; a panic elsewhere while it was held does not make
    /// it unusable.
    pub fn spool(&self) -> Option<SpoolGuard<'_>> {
        if !self.spooling {
            return None;
        }
        let guard = self.spool.lock().unwrap_or_else(|p| p.into_inner());
        guard.is_some().then_some(SpoolGuard(guard))
    }

    /// Moves up to `limit` of the oldest queued events to the spool, in order. Returns the
    /// messages an I/O error kept off the disk.
    pub fn spill_queue(&self, limit: usize) -> Vec<Message> {
        // Popped and written under the spool's lock: two threads spilling at once must not
        // interleave their events on disk.
        let Some(mut spool) = self.spool() else {
            return Vec::new();
        };
        let mut events = Vec::with_capacity(limit.min(1024));
        while events.len() < limit {
            let Some(event) = self.queue.pop() else {
                break;
            };
            events.push(event);
        }
        // Spooled in batches, one record each, no larger than a segment: a small spool keeps
        // its byte bound and its drop policy at a few events' grain.
        let (messages, oversize) = batch::pack_within(
            &self.encoder,
            events.iter().map(|e| &**e),
            spool.record_bytes(),
        );
        self.recycle(events);
        Counters::add(&self.counters.dropped_oversize, oversize);
        if messages.is_empty() {
            return messages;
        }
        spool.append(messages, &self.counters)
    }

    /// Closes the spool (and unlocks its directory) for good.
    pub fn release_spool(&self) {
        let spool = self.spool.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(spool);
    }

    pub fn signal_progress(&self) {
        self.progress.1.notify_all();
    }

    /// Waits until every event accepted so far has settled, or `timeout` passes.
    /// Returns how many were still undelivered.
    pub fn wait_settled(&self, timeout: Duration) -> u64 {
        self.flushing.fetch_add(1, Ordering::Relaxed);
        let undelivered = self.wait_settled_inner(timeout);
        self.flushing.fetch_sub(1, Ordering::Relaxed);
        undelivered
    }

    fn wait_settled_inner(&self, timeout: Duration) -> u64 {
        let target = self.counters.accepted.load(Ordering::Relaxed);
        let deadline = deadline_after(timeout);
        self.wake.notify_one();
        let Ok(mut guard) = self.progress.0.lock() else {
            return target.saturating_sub(self.counters.settled());
        };
        loop {
            let settled = self.counters.settled();
            let now = Instant::now();
            let left = until(deadline, now);
            if settled >= target || left.is_zero() {
                return target.saturating_sub(settled);
            }
            // The timeout bounds a missed signal; the shipper signals after each confirm batch.
            let wait = left.min(Duration::from_millis(20));
            guard = match self.progress.1.wait_timeout(guard, wait) {
                Ok((g, _)) => g,
                Err(_) => return target.saturating_sub(self.counters.settled()),
            };
        }
    }
}

/// How many queued events a logging thread moves to the spool when it finds the queue full:
/// enough to make room for a while, few enough to keep that call short.
const SPILL_CHUNK: usize = 256;

/// The spool, locked; it exists (checked when the guard is made).
pub(crate) struct SpoolGuard<'a>(MutexGuard<'a, Option<Spool>>);

impl Deref for SpoolGuard<'_> {
    type Target = Spool;
    fn deref(&self) -> &Spool {
        self.0.as_ref().expect("SpoolGuard holds a spool")
    }
}

impl DerefMut for SpoolGuard<'_> {
    fn deref_mut(&mut self) -> &mut Spool {
        self.0.as_mut().expect("SpoolGuard holds a spool")
    }
}

/// The layer's side of the queue.
#[derive(Clone)]
pub(crate) struct Handoff {
    shared: Arc<Shared>,
}

impl Handoff {
    pub fn new(shared: Arc<Shared>) -> Self {
        Handoff { shared }
    }

    /// Has `hook` run at shutdown, before the queue stops accepting events.
    pub fn before_close(&self, hook: BeforeClose) {
        self.shared
            .before_close
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }

    /// Whether an event offered now would surely be refused (so the layer need not capture
    /// it): only under `drop_newest` with a full queue.
    pub fn would_refuse(&self) -> bool {
        self.shared.overflow == Overflow::DropNewest && self.shared.queue.is_full()
    }

    /// Counts an event refused because the queue is full.
    pub fn reject_full(&self) {
        Counters::add(&self.shared.counters.dropped_queue_full, 1);
    }

    /// Counts an event the rate limit suppressed (never accepted).
    pub fn reject_rate_limited(&self) {
        Counters::add(&self.shared.counters.dropped_rate_limited, 1);
    }

    /// An empty event to fill and [`offer_boxed`](Self::offer_boxed): one the shipper gave
    /// back, or a new one.
    pub fn blank(&self) -> Box<CapturedEvent> {
        self.spare(|s| s.events.pop())
            .unwrap_or_else(|| Box::new(CapturedEvent::blank()))
    }

    /// An empty span snapshot held only by the caller: one the shipper gave back, or a new one.
    pub fn span_snapshot(&self) -> Arc<SpanSnapshot> {
        self.spare(|s| {
            while let Some(snapshot) = s.snapshots.pop() {
                if Arc::strong_count(&snapshot) == 1 && Arc::weak_count(&snapshot) == 0 {
                    return Some(snapshot);
                }
            }
            None
        })
        .unwrap_or_default()
    }

    /// An empty string for a field value: one the shipper gave back, or a new one.
    pub fn string(&self) -> String {
        self.spare(|s| s.strings.pop()).unwrap_or_default()
    }

    /// A spare part from this thread's stash, refilled with a bundle the shipper gave back
    /// when it has none of the kind.
    fn spare<T>(&self, take: impl Fn(&mut Spares) -> Option<T>) -> Option<T> {
        let id = self.shared.id;
        STASH
            .try_with(|stash| {
                let mut stash = stash.try_borrow_mut().ok()?;
                if stash.0 != id {
                    *stash = (id, Spares::default());
                }
                if let Some(part) = take(&mut stash.1) {
                    return Some(part);
                }
                let bundle = self.shared.spares.pop()?;
                stash.1.absorb(bundle);
                take(&mut stash.1)
            })
            .ok()
            .flatten()
    }

    /// Queues an event for shipping; when the queue is full the overflow policy applies.
    pub fn offer(&self, event: CapturedEvent) {
        self.offer_boxed(Box::new(event));
    }

    /// [`offer`](Self::offer) for an event already boxed (from [`blank`](Self::blank)).
    pub fn offer_boxed(&self, event: Box<CapturedEvent>) {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Relaxed) {
            Counters::add(&shared.counters.dropped_closed, 1);
            return;
        }
        if shared.overflow == Overflow::DropOldest {
            if shared.queue.force_push(event).is_some() {
                Counters::add(&shared.counters.evicted, 1);
            }
            return self.accepted();
        }
        let Err(event) = shared.queue.push(event) else {
            return self.accepted();
        };
        match shared.overflow {
            Overflow::Block => self.wait_for_room(event),
            Overflow::Spill => self.spill(event),
            Overflow::DropNewest | Overflow::DropOldest => self.reject_full(),
        }
    }

    fn accepted(&self) {
        let shared = &self.shared;
        Counters::add(&shared.counters.accepted, 1);
        fence(Ordering::SeqCst);
        if !shared.wake_pending.load(Ordering::Relaxed)
            && !shared.wake_pending.swap(true, Ordering::Relaxed)
        {
            shared.wake.notify_one();
        }
    }

    /// `block`: retries with short, growing sleeps until there is room or the timeout passes.
    fn wait_for_room(&self, mut event: Box<CapturedEvent>) {
        let shared = &self.shared;
        let deadline = deadline_after(shared.block_timeout);
        let mut pause = Duration::from_micros(50);
        shared.wake.notify_one();
        loop {
            let left = until(deadline, Instant::now());
            if left.is_zero() || shared.closed.load(Ordering::Relaxed) {
                return self.reject_full();
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(2));
            match shared.queue.push(event) {
                Ok(()) => return self.accepted(),
                Err(back) => event = back,
            }
        }
    }

    /// `spill`: the queue is full even though the shipper moves events to disk as it fills.
    /// This thread makes room the way the shipper does, moving the oldest queued events to the
    /// spool, so the spool only ever holds events older than the queued ones and replay keeps
    /// their order; then it queues its own.
    fn spill(&self, event: Box<CapturedEvent>) {
        let shared = &self.shared;
        let counters = &shared.counters;
        if shared.spool().is_none_or(|spool| !spool.writable()) {
            return self.reject_full();
        }
        let unwritten = shared.spill_queue(SPILL_CHUNK);
        // Accepted events an I/O error kept off the disk: lost, and counted.
        Counters::add(&counters.evicted, unwritten.iter().map(|m| m.events).sum());
        shared.signal_progress();
        match shared.queue.push(event) {
            Ok(()) => self.accepted(),
            // Other threads took the room first: this one goes to disk directly.
            Err(event) => {
                let (messages, oversize) = batch::pack(&shared.encoder, [&*event]);
                // Counted as accepted first, so a flush never sees it settled before it was
                // accepted.
                Counters::add(&counters.accepted, 1);
                if oversize > 0 {
                    return Counters::add(&counters.dropped_oversize, oversize);
                }
                let Some(mut spool) = shared.spool() else {
                    return Counters::add(&counters.evicted, 1);
                };
                if !spool.append(messages, counters).is_empty() {
                    Counters::add(&counters.evicted, 1);
                }
            }
        }
    }
}
