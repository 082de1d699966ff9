//! The shipper's own threads: nothing logged on them is captured.
//!
//! Shipping makes the AMQP client, the runtime and the TLS stack log about the shipping itself;
//! capturing those events would feed the queue from its own consumer. They are recognised by the
//! thread they happen on, not by their target, so an application's own events from `tokio::…`
//! or `lapin::…` on the application's threads are still shipped. The shipper's threads are its
//! own thread (with its runtime's, marked as they start) and the AMQP client's I/O thread.

use std::cell::Cell;

/// The name lapin gives the I/O thread it starts for each connection (lapin's `io_loop.rs`).
/// An application that uses lapin itself has threads of that name too: what lapin logs on them
/// is not shipped either (its own I/O loop's chatter, not the application's events).
const AMQP_IO_THREAD: &str = "lapin-io-loop";

thread_local! {
    /// Whether this thread is the shipper's; decided on first use, or marked when it starts.
    static OWN: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Marks the current thread as the shipper's.
pub(crate) fn mark_current() {
    OWN.with(|own| own.set(Some(true)));
}

/// Whether the current thread is the shipper's. The name is read once per thread.
pub(crate) fn is_current() -> bool {
    OWN.with(|own| match own.get() {
        Some(known) => known,
        None => {
            let known = std::thread::current().name() == Some(AMQP_IO_THREAD);
            own.set(Some(known));
            known
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_thread(name: &str, mark: bool) -> bool {
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                if mark {
                    mark_current();
                }
                is_current()
            })
            .expect("spawn")
            .join()
            .expect("join")
    }

    #[test]
    fn marked_threads_and_the_amqp_io_thread_are_the_shippers() {
        assert!(on_thread("anything", true));
        assert!(on_thread(AMQP_IO_THREAD, false));
        assert!(!on_thread("tokio-runtime-worker", false));
        assert!(!on_thread("logcollect-shipper-lookalike", false));
    }
}
