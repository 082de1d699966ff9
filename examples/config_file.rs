//! Configuration from a table of the application's own file: `Config` deserializes from any
//! serde source, with the checks and errors of logcollect's own file and variables.
//!
//! ```text
//! cargo run --example config_file [-- path/to/app.toml]    # default examples/config_file.toml
//! ```

use std::time::Duration;

#[derive(serde::Deserialize)]
struct AppConfig {
    listen: String,
    logcollect: logcollect::Config,
}

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config_file.toml");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| SAMPLE.to_string());
    let app: AppConfig = toml::from_str(&std::fs::read_to_string(&path)?)?;
    let guard = logcollect::Builder::from_config(app.logcollect).init()?;

    tracing::info!(listen = %app.listen, path = %path, "configured from a file");
    tracing::warn!("printed on the console too (console_level = warn)");

    let flushed = guard.shutdown(Duration::from_secs(5));
    std::process::exit(if flushed.is_complete() { 0 } else { 1 })
}
