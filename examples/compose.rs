//! Your own subscriber: a global `EnvFilter` (`RUST_LOG`), a console `fmt` layer that shows
//! warnings only, and the logcollect layer with a filter of its own.
//!
//! ```text
//! RUST_LOG=debug cargo run --example compose
//! ```

use std::time::Duration;

use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::prelude::*;

fn main() -> Result<(), logcollect::Error> {
    // Settings from LOGCOLLECT_* as `init` reads them; `level` and `console` are yours here.
    let (layer, guard) = logcollect::builder_from_env()?.build()?;
    tracing_subscriber::registry()
        .with(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with(tracing_subscriber::fmt::layer().with_filter(LevelFilter::WARN))
        .with(layer.with_filter(EnvFilter::new("info,compose=debug")))
        // Also routes `log` records into tracing (tracing-subscriber's default `tracing-log`).
        .init();

    tracing::debug!(
        step = 1,
        "shipped when RUST_LOG lets debug through, not printed"
    );
    tracing::warn!(step = 2, "shipped and printed");
    log::info!("a record of the log crate, shipped");

    let flushed = guard.shutdown(Duration::from_secs(5));
    if !flushed.is_complete() {
        eprintln!("{} events undelivered", flushed.undelivered);
    }
    Ok(())
}
