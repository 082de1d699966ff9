//! The one-call boot in a plain (non-async) program.
//!
//! ```text
//! LOGCOLLECT_IDENTITY__PROJECT=demo LOGCOLLECT_IDENTITY__APPLICATION=quickstart \
//! LOGCOLLECT_CONSOLE=true cargo run --example quickstart
//! ```

use std::time::Duration;

#[derive(Debug)]
struct GatewayTimeout;

impl std::fmt::Display for GatewayTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("payment gateway timed out")
    }
}
impl std::error::Error for GatewayTimeout {}

#[derive(Debug)]
struct PaymentError {
    source: GatewayTimeout,
}

impl std::fmt::Display for PaymentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("card could not be charged")
    }
}
impl std::error::Error for PaymentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn main() {
    let guard = match logcollect::init() {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };

    tracing::info!(version = env!("CARGO_PKG_VERSION"), "quickstart started");
    {
        let span = tracing::info_span!("checkout", order_id = 1042, customer = "c-77");
        let _entered = span.enter();
        tracing::info!(amount = 99.5, currency = "EUR", "charging card");
        let err = PaymentError { source: GatewayTimeout };
        tracing::error!(error = &err as &dyn std::error::Error, attempt = 1, "payment failed");
    }
    log::warn!("records from the `log` crate arrive too");

    let flushed = guard.flush(Duration::from_secs(10));
    let stats = guard.stats();
    println!("{stats}");
    if flushed.is_complete() {
        println!(
            "all {} events confirmed by the broker (exchange `{}`)",
            stats.confirmed,
            logcollect::defaults::EXCHANGE
        );
    } else {
        println!("{} events not confirmed yet: is RabbitMQ running?", flushed.undelivered);
        std::process::exit(1);
    }
}
