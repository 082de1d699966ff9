//! The shipper thread: its own tokio runtime, and the loop that owns the connection.
//!
//! A dedicated thread with a current-thread runtime works in programs without async, and
//! outlives the application's runtime, so events logged while that runtime shuts down still
//! go out. The loop connects, publishes until the session fails, then tears everything down
//! and reconnects with capped exponential backoff and jitter; it does not rely on lapin's
//! automatic recovery.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::diag::{self, Diagnostics};
use super::flow::Backoff;
use super::order::Order;
use super::publisher::{End, Limits, Publisher};
use super::queue::Shared;
use super::stats::Counters;
use crate::own_threads;
use crate::transport::{Link, Transport};

/// Everything the shipper thread needs.
#[derive(Debug, Clone)]
pub(crate) struct ShipperConfig<T> {
    /// Where events go.
    pub transport: T,
    pub limits: Limits,
    /// `batch.linger_ms`.
    pub linger: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub diagnostics_interval: Duration,
}

/// Starts the shipper thread. Fails only if the OS refuses a thread or a runtime.
pub(crate) fn spawn<T: Transport>(
    shared: Arc<Shared>,
    config: ShipperConfig<T>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("logcollect-shipper".to_string())
        .spawn(move || {
            own_threads::mark_current();
            // The engine runs on this thread (`block_on`); a transport whose client does its
            // I/O in tasks of its own gets worker threads for them, so that I/O overlaps the
            // encoding here.
            let mut builder = match config.transport.io_threads() {
                0 => tokio::runtime::Builder::new_current_thread(),
                n => {
                    let mut b = tokio::runtime::Builder::new_multi_thread();
                    b.worker_threads(n).thread_name("logcollect-shipper-io");
                    b
                }
            };
            let runtime = builder
                .enable_all()
                .on_thread_start(own_threads::mark_current)
                .build();
            match runtime {
                Ok(runtime) => runtime.block_on(run(shared, config)),
                Err(e) => diag::emit(&format!("cannot start the shipper's runtime: {e}")),
            }
        })
}

async fn run<T: Transport>(shared: Arc<Shared>, config: ShipperConfig<T>) {
    let mut diag = Diagnostics::new(config.diagnostics_interval);
    let mut order = Order::new(config.linger);
    let mut backoff = Backoff::new(config.backoff_min, config.backoff_max);
    let mut connected_before = false;
    loop {
        if shared.abort.load(Relaxed) {
            return exit(&shared, &mut order);
        }
        if shared.closed.load(Relaxed) && order.nothing_left(&shared) {
            return;
        }
        let Some(opened) =
            while_away(&shared, &mut order, &mut diag, config.transport.open()).await
        else {
            return exit(&shared, &mut order);
        };
        match opened {
            Ok(mut link) => {
                if connected_before {
                    Counters::add(&shared.counters.reconnects, 1);
                }
                connected_before = true;
                backoff.reset();
                shared.counters.set_node(Some(link.node()));
                let end = Publisher {
                    shared: &shared,
                    limits: &config.limits,
                    diag: &mut diag,
                    order: &mut order,
                }
                .serve(&mut link)
                .await;
                if let End::Stopped = end {
                    // Spool what is left before the (bounded, but slow) close.
                    exit(&shared, &mut order);
                    link.close().await;
                    return;
                }
                link.close().await;
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
        diag.drops(|| shared.stats());
        let delay = backoff.next();
        if while_away(&shared, &mut order, &mut diag, tokio::time::sleep(delay))
            .await
            .is_none()
        {
            return exit(&shared, &mut order);
        }
    }
}

/// Runs `work` (connecting, or waiting to reconnect) while no broker takes events: with a
/// spool, what waits in memory goes to disk meanwhile. `None` if told to stop first.
async fn while_away<T>(
    shared: &Shared,
    order: &mut Order,
    diag: &mut Diagnostics,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::pin!(work);
    loop {
        if shared.abort.load(Relaxed) {
            return None;
        }
        order.spill(shared, true);
        if let Some(mut spool) = shared.spool() {
            spool.sync(false);
        }
        diag.drops(|| shared.stats());
        tokio::select! {
            out = &mut work => return Some(out),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// The shipper stops: with a spool, what was not delivered is kept there for the next start.
fn exit(shared: &Shared, order: &mut Order) {
    let kept = order.spill_all(shared);
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
