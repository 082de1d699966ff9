//! The shipper thread: its own tokio runtime, and the loop that owns the connection.
//!
//! A dedicated thread with a current-thread runtime works in programs without async, and
//! outlives the application's runtime, so events logged while that runtime shuts down still
//! go out. The loop connects, publishes until the session fails, then tears everything down
//! and reconnects with capped exponential backoff and jitter; it does not rely on lapin's
//! automatic recovery.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::diag::{self, Diagnostics};
use super::message::Encoder;
use super::publisher::{End, Limits, Publisher};
use super::queue::Shared;
use super::stats::Counters;
use crate::broker::{self, Target};
use crate::capture::mark_shipper_thread;

/// Everything the shipper thread needs.
#[derive(Debug, Clone)]
pub(crate) struct ShipperConfig {
    pub target: Target,
    pub encoder: Encoder,
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
            mark_shipper_thread();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_start(mark_shipper_thread)
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
        if shared.abort.load(Relaxed)
            || (shared.closed.load(Relaxed) && nothing_left(&shared, &pending))
        {
            return;
        }
        let opened = tokio::select! {
            opened = broker::open(&config.target) => opened,
            _ = wait_for_abort(&shared) => return,
        };
        match opened {
            Ok(session) => {
                if connected_before {
                    Counters::add(&shared.counters.reconnects, 1);
                }
                connected_before = true;
                backoff.reset();
                let end = Publisher {
                    shared: &shared,
                    encoder: &config.encoder,
                    limits: &config.limits,
                    diag: &mut diag,
                    pending: &mut pending,
                }
                .serve(&session, &config.target.exchange)
                .await;
                broker::close(session).await;
                match end {
                    End::Stopped => return,
                    End::Failed(reason) => {
                        shared.counters.set_error(&reason);
                        diag.error("delivery interrupted, reconnecting", &reason);
                    }
                }
            }
            Err(reason) => {
                shared.counters.set_error(&reason);
                diag.error("broker unreachable, retrying", &reason);
            }
        }
        diag.drops(&shared.stats());
        // Sleep, but wake for shutdown.
        let delay = backoff.next();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = wait_for_abort(&shared) => return,
        }
    }
}

fn nothing_left(shared: &Shared, pending: &VecDeque<super::message::Message>) -> bool {
    pending.is_empty() && shared.queue.is_empty()
}

async fn wait_for_abort(shared: &Shared) {
    while !shared.abort.load(Relaxed) {
        shared.wake.notified().await;
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
        self.current = (self.current * 2).min(self.max);
        // uuid's random bits are a ready source of jitter without another dependency.
        let r = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
        delay.mul_f64(0.5 + f64::from(r) / 2000.0)
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
}
