//! The bounded hand-off between the application's threads and the shipper thread.
//!
//! Pushing is lock-free and never blocks: when the queue is full the event is dropped and
//! counted, so logging can never stall the application.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use tokio::sync::Notify;

use super::stats::{Counters, Stats};
use crate::capture::CapturedEvent;

/// State shared by the layer, the guard and the shipper thread.
pub(crate) struct Shared {
    /// Boxed: `ArrayQueue` allocates every slot up front, and a pointer per slot keeps an idle
    /// 65536-event queue at 512 KiB instead of ~13 MiB.
    pub queue: ArrayQueue<Box<CapturedEvent>>,
    pub counters: Counters,
    /// Wakes the shipper: an event arrived, or shutdown was asked for.
    pub wake: Notify,
    /// No more events are accepted.
    pub closed: AtomicBool,
    /// The shipper must stop now, abandoning what it still holds.
    pub abort: AtomicBool,
    /// Signalled by the shipper whenever events settle, for `flush` to wait on.
    progress: (Mutex<()>, Condvar),
}

impl Shared {
    pub fn new(capacity: usize) -> Arc<Shared> {
        Arc::new(Shared {
            queue: ArrayQueue::new(capacity.max(1)),
            counters: Counters::default(),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            progress: (Mutex::new(()), Condvar::new()),
        })
    }

    pub fn stats(&self) -> Stats {
        self.counters.snapshot(self.queue.len())
    }

    pub fn signal_progress(&self) {
        self.progress.1.notify_all();
    }

    /// Waits until every event accepted so far has settled, or `timeout` passes.
    /// Returns how many were still undelivered.
    pub fn wait_settled(&self, timeout: Duration) -> u64 {
        let target = self.counters.accepted.load(Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        self.wake.notify_one();
        let Ok(mut guard) = self.progress.0.lock() else {
            return target.saturating_sub(self.counters.settled());
        };
        loop {
            let settled = self.counters.settled();
            let now = Instant::now();
            if settled >= target || now >= deadline {
                return target.saturating_sub(settled);
            }
            // The timeout bounds a missed signal; the shipper signals after each confirm batch.
            let wait = (deadline - now).min(Duration::from_millis(20));
            guard = match self.progress.1.wait_timeout(guard, wait) {
                Ok((g, _)) => g,
                Err(_) => return target.saturating_sub(self.counters.settled()),
            };
        }
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

    /// Whether an event offered now would be accepted (a hint, checked again by `offer`).
    pub fn has_room(&self) -> bool {
        !self.shared.queue.is_full()
    }

    /// Counts an event refused because the queue is full.
    pub fn reject_full(&self) {
        Counters::add(&self.shared.counters.dropped_queue_full, 1);
    }

    /// Queues an event for shipping; drops and counts it if the queue is full or closed.
    pub fn offer(&self, event: CapturedEvent) {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Relaxed) {
            Counters::add(&shared.counters.dropped_closed, 1);
            return;
        }
        match shared.queue.push(Box::new(event)) {
            Ok(()) => {
                Counters::add(&shared.counters.accepted, 1);
                shared.wake.notify_one();
            }
            Err(_) => self.reject_full(),
        }
    }
}
