//! `logcollect`: check the path events take to RabbitMQ, watch the stream live, and ship the
//! logs of scripts, cron jobs and programs in other languages — with the library's own
//! configuration (`LOGCOLLECT_*`, or `--config FILE`).

mod check;
mod collect;
mod diagnose;
mod json;
mod levels;
mod render;
mod send;
mod tail;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status shared by every command.
pub mod exit {
    /// Success: `check` found the path open, `tail` printed what it was asked for, `send`
    /// delivered every event.
    pub const OK: u8 = 0;
    /// `check` found a break, `tail` lost or could not open its connection, `send` left events
    /// undelivered.
    pub const FAILED: u8 = 1;
    /// Bad arguments or an invalid configuration.
    pub const USAGE: u8 = 2;
    /// Interrupted (Ctrl-C).
    pub const INTERRUPTED: u8 = 130;
}

const AFTER_HELP: &str = "\
Configuration: the library's own, read from LOGCOLLECT_* variables and the file named by
LOGCOLLECT_CONFIG or --config (variables win over the file); see docs/configuration.md.

Exit status:
  0    success
  1    check found a break; tail lost its connection; send left events undelivered
  2    usage or configuration error
  130  interrupted (Ctrl-C)";

/// Check, watch and feed the logcollect log stream on RabbitMQ.
#[derive(Parser, Debug)]
#[command(name = "logcollect", version, after_help = AFTER_HELP)]
struct Cli {
    /// Read settings from FILE (TOML, YAML or JSON), as LOGCOLLECT_CONFIG=FILE does;
    /// LOGCOLLECT_* variables still win over it
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Walk the path an event takes to the broker and stop at the first break, saying what is
    /// wrong and how to fix it
    #[command(after_help = check::AFTER_HELP)]
    Check(check::CheckArgs),
    /// Print the events arriving on the exchange, one line each, from a queue of its own
    #[command(after_help = tail::AFTER_HELP)]
    Tail(tail::TailArgs),
    /// Ship MESSAGE, or each line of standard input, as an event
    #[command(after_help = send::AFTER_HELP)]
    Send(send::SendArgs),
    /// Write the stream to files, one per facility, with rotation, compression, retention and
    /// an optional live status page
    #[command(after_help = collect::AFTER_HELP)]
    Collect(collect::CollectArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = load_config(cli.config.as_deref());
    let code = match cli.command {
        Command::Check(args) => check::run(config, &args),
        Command::Tail(args) => match config {
            Ok(config) => tail::run(&config, args),
            Err(e) => config_error(&e),
        },
        Command::Send(args) => match config {
            Ok(config) => send::run(config, &args),
            Err(e) => config_error(&e),
        },
        Command::Collect(args) => match config {
            Ok(config) => collect::run(&config, args),
            Err(e) => config_error(&e),
        },
    };
    ExitCode::from(code)
}

/// The configuration as the library reads it, `--config FILE` standing for
/// `LOGCOLLECT_CONFIG=FILE`.
fn load_config(file: Option<&Path>) -> Result<logcollect::Config, logcollect::Error> {
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    if let Some(file) = file {
        vars.retain(|(k, _)| k != "LOGCOLLECT_CONFIG");
        vars.push((
            "LOGCOLLECT_CONFIG".to_string(),
            file.to_string_lossy().into_owned(),
        ));
    }
    logcollect::Config::from_vars(vars)
}

fn config_error(e: &logcollect::Error) -> u8 {
    eprintln!("logcollect: {}", strip_prefix(&e.to_string()));
    eprintln!("  fix: correct the setting (LOGCOLLECT_* variables, or the file given with --config / LOGCOLLECT_CONFIG)");
    exit::USAGE
}

/// The library's messages start with `logcollect configuration: `; said once is enough.
fn strip_prefix(message: &str) -> String {
    message
        .strip_prefix("logcollect ")
        .unwrap_or(message)
        .to_string()
}

/// `KEY=VALUE` arguments (`--field`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl std::str::FromStr for KeyValue {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok(KeyValue {
                key: key.trim().to_string(),
                value: value.to_string(),
            }),
            _ => Err(format!("`{s}` is not KEY=VALUE")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn key_value_splits_at_the_first_equals_sign() {
        let kv: KeyValue = "a=b=c".parse().unwrap();
        assert_eq!((kv.key.as_str(), kv.value.as_str()), ("a", "b=c"));
        let kv: KeyValue = "k=".parse().unwrap();
        assert_eq!(kv.value, "");
        assert!("novalue".parse::<KeyValue>().is_err());
        assert!("=v".parse::<KeyValue>().is_err());
    }
}
