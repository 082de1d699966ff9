//! Delivery: the bounded queue, the shipper thread, publishing with confirms, retries.
//!
//! Data flows one way: the layer pushes [`CapturedEvent`](crate::capture::CapturedEvent)s into
//! the queue; the shipper thread pops them, packs them into messages of several events and
//! publishes them; a message leaves its custody only when the broker confirms it.
//!
//! One owner per rule: `batch` packs events into messages, `order` decides what is published
//! next and what goes back or to disk, `window` holds what awaits a confirm, `flow` says when
//! publishing may go on, `publisher` runs one session with them, `shipper` the thread and its
//! reconnect loop. Imports go one way, down that list.

mod batch;
mod diag;
mod flow;
mod message;
mod order;
mod publisher;
mod queue;
mod shipper;
mod spool;
mod stats;
mod time;
mod window;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub(crate) use message::{BatchLimits, Encoder, Message, Meta};
pub(crate) use publisher::Limits;
pub use queue::Overflow;
pub(crate) use queue::{Handoff, Shared};
pub(crate) use shipper::ShipperConfig;
pub use spool::WhenFull;
pub(crate) use spool::{Spool, SpoolSettings};
#[cfg(feature = "metrics")]
pub(crate) use stats::Counters;
pub use stats::{Dropped, Latency, Stats};

/// A handle on the shipper: read its [`Stats`], or [`flush`](Shipper::flush) it. Cheap to clone.
#[derive(Clone)]
pub struct Shipper {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Shipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipper")
            .field("stats", &self.stats())
            .finish()
    }
}

/// What a flush or a shutdown left undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub struct Flush {
    /// Events accepted before the flush that the broker had not confirmed by the deadline.
    pub undelivered: u64,
}

impl Flush {
    /// Every event accepted before the flush was confirmed (or dropped as oversize).
    pub fn is_complete(&self) -> bool {
        self.undelivered == 0
    }
}

impl Shipper {
    /// The counters, now.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Waits until every event accepted before this call is confirmed by the broker, or
    /// `timeout` passes; returns how many were still undelivered. Never called on the hot path:
    /// logging itself never waits.
    pub fn flush(&self, timeout: Duration) -> Flush {
        Flush {
            undelivered: self.shared.wait_settled(timeout),
        }
    }

    /// [`flush`](Shipper::flush) for async code: the wait runs on a helper thread and the
    /// future completes when it ends, so no runtime worker is blocked (any executor). Dropping
    /// the future abandons the result, not the flush (which ends by `timeout`).
    pub async fn flush_async(&self, timeout: Duration) -> Flush {
        let shared = self.shared.clone();
        let target = shared.counters.accepted.load(Relaxed);
        off_thread("logcollect-flush", move || Flush {
            undelivered: shared.wait_settled(timeout),
        })
        .await
        .unwrap_or_else(|| Flush {
            // No thread to wait on: report what is unsettled now rather than block.
            undelivered: target.saturating_sub(self.shared.counters.settled()),
        })
    }
}

/// Runs `work` on a thread of its own; its result, or `None` if no thread could be started
/// or it panicked.
async fn off_thread<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .ok()?;
    rx.await.ok()
}

impl Shipper {
    /// Queues an event built at run time (an [`ExternalEvent`](crate::capture::ExternalEvent):
    /// a line from a pipe, a record from another language) as the layer queues a `tracing`
    /// event: the same overflow policy, encoding, limits, identity and delivery. Like logging,
    /// it never waits on the broker (only `overflow = block` waits, for room in the queue).
    pub fn ship(&self, event: crate::capture::ExternalEvent) {
        Handoff::new(self.shared.clone()).offer(event.into_captured());
    }
}

/// Keeps the shipper running. Dropping it (or calling [`shutdown`](Guard::shutdown)) delivers
/// what is queued within the shutdown timeout, then stops the shipper thread; what could not
/// be delivered is reported on stderr.
///
/// In async code, prefer [`shutdown_async`](Guard::shutdown_async) (and
/// [`flush_async`](Guard::flush_async)): they wait without blocking a runtime worker. A guard
/// dropped on a worker of a multi-thread tokio runtime waits through `block_in_place` (the
/// worker's other tasks move to other workers); on a current-thread runtime, dropping it
/// blocks that runtime for up to the shutdown timeout.
#[must_use = "dropping the guard shuts the shipper down"]
#[derive(Debug)]
pub struct Guard {
    shipper: Shipper,
    thread: Option<JoinHandle<()>>,
    shutdown_timeout: Duration,
    /// The level filters [`init`](crate::init) installed.
    pub(crate) levels: Option<crate::LevelHandle>,
}

impl Guard {
    pub(crate) fn start<T: crate::transport::Transport>(
        shared: Arc<Shared>,
        config: ShipperConfig<T>,
        shutdown_timeout: Duration,
    ) -> std::io::Result<Guard> {
        let thread = shipper::spawn(shared.clone(), config)?;
        #[cfg(feature = "metrics")]
        if let Err(e) = crate::metrics::spawn(&shared) {
            diag::emit(&format!("metrics are not published: no thread ({e})"));
        }
        Ok(Guard {
            shipper: Shipper { shared },
            thread: Some(thread),
            shutdown_timeout,
            levels: None,
        })
    }

    /// A guard with no shipper (`enabled = false`): flushing and shutting down return at once.
    pub(crate) fn idle(shared: Arc<Shared>, shutdown_timeout: Duration) -> Guard {
        Guard {
            shipper: Shipper { shared },
            thread: None,
            shutdown_timeout,
            levels: None,
        }
    }

    /// The handle to change the level filters while running, when [`init`](crate::init)
    /// installed them (`None` after [`Builder::build`](crate::Builder::build): the filters are
    /// yours).
    pub fn levels(&self) -> Option<crate::LevelHandle> {
        self.levels.clone()
    }

    /// See [`Shipper::flush_async`].
    pub async fn flush_async(&self, timeout: Duration) -> Flush {
        self.shipper.flush_async(timeout).await
    }

    /// [`shutdown`](Guard::shutdown) for async code: it runs on a helper thread, and the
    /// future completes when it ends, without blocking a runtime worker.
    pub async fn shutdown_async(mut self, timeout: Duration) -> Flush {
        let shipper = self.shipper.clone();
        let target = shipper.shared.counters.accepted.load(Relaxed);
        let thread = self.thread.take();
        let mut owned = Guard {
            shipper: shipper.clone(),
            thread,
            shutdown_timeout: timeout,
            levels: None,
        };
        off_thread("logcollect-shutdown", move || owned.stop(timeout))
            .await
            .unwrap_or_else(|| Flush {
                undelivered: target.saturating_sub(shipper.shared.counters.settled()),
            })
    }

    /// A clonable handle for reading stats or flushing from elsewhere.
    pub fn shipper(&self) -> Shipper {
        self.shipper.clone()
    }

    /// See [`Shipper::stats`].
    pub fn stats(&self) -> Stats {
        self.shipper.stats()
    }

    /// See [`Shipper::flush`].
    pub fn flush(&self, timeout: Duration) -> Flush {
        self.shipper.flush(timeout)
    }

    /// Stops accepting events, delivers what is queued within `timeout`, stops the shipper.
    pub fn shutdown(mut self, timeout: Duration) -> Flush {
        self.stop(timeout)
    }

    fn stop(&mut self, timeout: Duration) -> Flush {
        let Some(thread) = self.thread.take() else {
            return Flush { undelivered: 0 };
        };
        let shared = &self.shipper.shared;
        shared.run_before_close();
        shared.closed.store(true, Relaxed);
        let flushed = self.shipper.flush(timeout);
        shared.abort.store(true, Relaxed);
        shared.wake.notify_one();
        // The shipper notices the abort within a tick and closes its connection within 1 s;
        // do not hang the exiting application if it cannot.
        let deadline = Instant::now() + Duration::from_secs(3);
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
        shared.release_spool();
        #[cfg(feature = "metrics")]
        crate::metrics::publish(shared);
        if !flushed.is_complete() {
            let kept = if shared.spooling() {
                "; those in the spool are sent on the next start"
            } else {
                " and lost (no spool is set)"
            };
            diag::emit(&format!(
                "{} events undelivered at shutdown (timeout {:?}){kept}; stats: {}",
                flushed.undelivered,
                timeout,
                shared.stats()
            ));
        }
        flushed
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.thread.is_none() {
            return;
        }
        let timeout = self.shutdown_timeout;
        let on_multi_thread_runtime = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if on_multi_thread_runtime {
            // The worker's other tasks move to other workers while this one waits.
            let _ = tokio::task::block_in_place(|| self.stop(timeout));
        } else {
            let _ = self.stop(timeout);
        }
    }
}
