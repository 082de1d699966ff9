//! The smallest program: configuration from `LOGCOLLECT_*` variables (the broker defaults to
//! the local one, guest/guest), every `tracing` event and `log` record shipped.
//!
//! ```text
//! LOGCOLLECT_BROKER_URI=amqp://app:secret@rabbit:5672/%2f cargo run --example minimal
//! ```

fn main() -> Result<(), logcollect::Error> {
    // Keep the guard: dropping it at the end of main delivers what is queued.
    let _guard = logcollect::init()?;
    tracing::info!(user = "ada", "logged in");
    log::warn!("records of the log crate are shipped too");
    Ok(())
}
