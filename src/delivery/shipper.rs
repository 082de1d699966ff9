//! The shipper thread: its own tokio runtime, and the loop that owns the connection.
//!
//! A dedicated thread with a current-thread runtime works in programs without async, and
//! outlives the application's runtime, so events logged while that runtime shuts down still
//! go out. The loop connects, publishes until the session fails, then tears everything down
//! and reconnects with capped exponential backoff and jitter; it does not rely on lapin's
//! automatic recovery.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::diag::{self, Diagnostics};
use super::message::Message;
use super::publisher::{nothing_left, End, Limits, Publisher};
use super::queue::Shared;
use super::stats::Counters;
use crate::broker::{self, Target};
use crate::own_threads;

/// Everything the shipper thread needs.
#[derive(Debug, Clone)]
pub(crate) struct ShipperConfig {
    pub target: Target,
    pub limits: Limits,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub diagnostics_interval: Duration,
}

/// Starts the shipper thread. Fails only if the OS refuses a thread or a runtime.
pub(crate) fn spawn(shared: Arc<Shared>, config: ShipperConfig) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("logcollect-shipper".to_string())
        .spawn(move || {
            own_threads::mark_current();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_start(own_threads::mark_current)
                .build();
            match runtime {
                Ok(runtime) => runtime.block_on(run(shared, config)),
                Err(e) => diag::emit(&format!("cannot start the shipper's runtime: {e}")),
            }
        })
}

async fn run(shared: Arc<Shared>, config: ShipperConfig) {
    let mut diag = Diagnostics::new(config.diagnostics_interval);
    let mut pending = VecDeque::new();
    let mut backoff = Backoff::new(config.backoff_min, config.backoff_max);
    let mut connected_before = false;
    loop {
        if shared.abort.load(Relaxed) {
            return exit(&shared, &mut pending);
        }
        if shared.closed.load(Relaxed) && nothing_left(&shared, &pending) {
            return;
        }
        let Some(opened) = while_away(
            &shared,
            &mut pending,
            &mut diag,
            broker::open(&config.target),
        )
        .await
        else {
            return exit(&shared, &mut pending);
        };
        match opened {
            Ok(session) => {
                if connected_before {
                    Counters::add(&shared.counters.reconnects, 1);
                }
                connected_before = true;
                backoff.reset();
                shared.counters.set_node(Some(&session.node));
                let end = Publisher {
                    shared: &shared,
                    limits: &config.limits,
                    diag: &mut diag,
                    pending: &mut pending,
                }
                .serve(&session, &config.target)
                .await;
                if let End::Stopped = end {
                    // Spool what is left before the (bounded, but slow) close.
                    exit(&shared, &mut pending);
                    broker::close(session).await;
                    return;
                }
                broker::close(session).await;
                shared.counters.set_node(None);
                if let End::Failed(reason) = end {
                    shared.counters.set_error(&reason);
                    diag.error(reason.headline(), &reason.to_string());
                }
            }
            Err(reason) => {
                shared.counters.set_error(&reason);
                diag.error(reason.headline(), &reason.to_string());
            }
        }
        diag.drops(&shared.stats());
        let delay = backoff.next();
        if while_away(&shared, &mut pending, &mut diag, tokio::time::sleep(delay))
            .await
            .is_none()
        {
            return exit(&shared, &mut pending);
        }
    }
}

/// Runs `work` (connecting, or waiting to reconnect) while no broker takes events: with a
/// spool, what waits in memory goes to disk meanwhile. `None` if told to stop first.
async fn while_away<T>(
    shared: &Shared,
    pending: &mut VecDeque<Message>,
    diag: &mut Diagnostics,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::pin!(work);
    loop {
        if shared.abort.load(Relaxed) {
            return None;
        }
        spill(shared, pending, true);
        if let Some(mut spool) = shared.spool() {
            spool.sync(false);
        }
        diag.drops(&shared.stats());
        tokio::select! {
            out = &mut work => return Some(out),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// The shipper stops: with a spool, what was not delivered is kept there for the next start.
fn exit(shared: &Shared, pending: &mut VecDeque<Message>) {
    let kept = spill(shared, pending, true);
    if let Some(mut spool) = shared.spool() {
        spool.sync(true);
        if kept > 0 {
            diag::emit(&format!(
                "{kept} undelivered events written to the spool at shutdown; they will be sent \
                 on the next start"
            ));
        }
    }
}

/// With a spool, moves what waits in memory to disk, oldest first: the pending messages not
/// already there (if `with_pending`), then the queued events. Returns the events written.
pub(super) fn spill(shared: &Shared, pending: &mut VecDeque<Message>, with_pending: bool) -> u64 {
    if shared.spool().is_none_or(|spool| !spool.writable()) {
        return 0;
    }
    let counters = &shared.counters;
    let before = counters.spooled.load(Relaxed);
    if with_pending && pending.iter().any(|m| m.origin.is_none()) {
        let (on_disk, in_memory): (VecDeque<_>, VecDeque<_>) =
            pending.drain(..).partition(|m| m.origin.is_some());
        *pending = on_disk;
        append(shared, pending, in_memory.into());
    }
    // What is queued now, in chunks, so a logging thread that spills too never waits long for
    // the lock (and a producer faster than the disk cannot keep this loop going forever).
    let mut left = shared.queue.len();
    while left > 0 {
        let chunk = left.min(256);
        pending.extend(shared.spill_queue(chunk));
        left -= chunk;
    }
    shared.signal_progress();
    counters.spooled.load(Relaxed) - before
}

/// Appends to the spool; what an I/O error kept off the disk stays in memory.
fn append(shared: &Shared, pending: &mut VecDeque<Message>, messages: Vec<Message>) {
    if messages.is_empty() {
        return;
    }
    if let Some(mut spool) = shared.spool() {
        pending.extend(spool.append(messages, &shared.counters));
    }
}

/// Capped exponential backoff with jitter: min, 2·min, 4·min… up to max, each delay scaled by a
/// random factor in [0.5, 1.0] so many restarted apps do not reconnect in lockstep.
struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            current: min,
        }
    }

    fn reset(&mut self) {
        self.current = self.min;
    }

    fn next(&mut self) -> Duration {
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
