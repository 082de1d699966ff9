//! `--help` on every command: clap-style usage, every option, the exit codes. No broker needed.

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_logcollect"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run logcollect");
    assert_eq!(out.status.code(), Some(0), "{args:?}");
    assert!(out.stderr.is_empty(), "{args:?}");
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

fn assert_has(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
}

#[test]
fn top_level_help_lists_the_commands_and_exit_codes() {
    let text = help(&["--help"]);
    assert!(
        text.contains("Usage: logcollect [OPTIONS] <COMMAND>"),
        "{text}"
    );
    assert_has(
        &text,
        &[
            "check",
            "tail",
            "send",
            "--config <FILE>",
            "LOGCOLLECT_CONFIG",
            "Exit status:",
            "130",
        ],
    );
    assert_eq!(help(&["help"]), text, "`help` is `--help`");
    let version = help(&["--version"]);
    assert_eq!(
        version.trim(),
        format!("logcollect {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_help() {
    let text = help(&["check", "--help"]);
    assert_has(
        &text,
        &[
            "Usage: logcollect check [OPTIONS]",
            "--json",
            "--logger <TARGET>",
            "--config <FILE>",
            "[default: logcollect::check]",
            "Exit status:",
            "0  every step passed",
            "1  a step failed",
            "2  usage error, or the configuration is invalid",
        ],
    );
    assert_eq!(help(&["help", "check"]), text);
}

#[test]
fn tail_help() {
    let text = help(&["tail", "--help"]);
    assert_has(
        &text,
        &[
            "Usage: logcollect tail [OPTIONS]",
            "--key <KEY>",
            "(default `#`)",
            "--from <URI>",
            "--level <LEVEL>",
            "--service <NAME>",
            "--host <NAME>",
            "--grep <REGEX>",
            "--field <KEY=VALUE>",
            "--json",
            "--count <N>",
            "--color <WHEN>",
            "[possible values: auto, always, never]",
            "NO_COLOR",
            "exclusive, auto-delete",
            "Exit status:",
            "130  interrupted",
        ],
    );
}

#[test]
fn send_help() {
    let text = help(&["send", "--help"]);
    assert_has(
        &text,
        &[
            "Usage: logcollect send [OPTIONS] [MESSAGE]...",
            "--level <LEVEL>",
            "[default: info]",
            "--logger <NAME>",
            "[default: send]",
            "--field <KEY=VALUE>",
            "--pid <PID>",
            "--service <NAME>",
            "--queue-wait-ms <MS>",
            "[default: 60000]",
            "--stats",
            "some-job 2>&1 | logcollect send --logger cron.backup",
            "max_field_bytes",
            "Exit status:",
            "1  events were left undelivered",
        ],
    );
}

#[test]
fn usage_errors_exit_2_with_a_hint() {
    for args in [
        &["frobnicate"][..],
        &["tail", "--count", "many"],
        &["tail", "--grep", "(unclosed"],
        &["tail", "--field", "novalue"],
        &["send", "--pid", "me"],
        &[],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_logcollect"))
            .args(args)
            .output()
            .expect("run logcollect");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("Usage: logcollect") || stderr.contains("try '--help'"),
            "{args:?}: {stderr}"
        );
    }
}
