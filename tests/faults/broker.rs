//! Changing the shared local broker's state through `rabbitmqctl`, always undone by a guard's
//! `Drop` (so a failing test leaves the broker running and unalarmed).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HOW_TO_GET_RABBITMQCTL: &str = "these tests change the local broker's state with \
`rabbitmqctl`: install it with the broker (Debian package `rabbitmq-server`) and run the tests \
as a user allowed to call it (e.g. root, or a member of the `rabbitmq` group with the node's \
Erlang cookie)";

/// How long one `rabbitmqctl` command may take before it counts as failed (a node busy
/// stopping or booting can make it wait; a hung command must not hang the suite).
const CTL_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `rabbitmqctl args…`; its stdout, or why it failed (including not finishing within
/// [`CTL_TIMEOUT`]).
pub fn try_ctl(args: &[&str]) -> Result<String, String> {
    let command = format!("rabbitmqctl {}", args.join(" "));
    let mut child = Command::new("rabbitmqctl")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{command}`: {e}"))?;
    // Read the pipes on their own threads, so a chatty command never blocks on a full pipe.
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + CTL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("`{command}` did not finish within {CTL_TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("`{command}`: {e}")),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!("`{command}` failed ({status}): {stdout}{stderr}"))
    }
}

/// Runs `rabbitmqctl args…` or fails the test, saying how to get a working `rabbitmqctl`.
pub fn ctl(args: &[&str]) -> String {
    try_ctl(args).unwrap_or_else(|e| panic!("{e}; {HOW_TO_GET_RABBITMQCTL}"))
}

/// Fails the test unless `rabbitmqctl` can talk to the node.
pub fn require_rabbitmqctl() {
    ctl(&["await_startup"]);
}

/// In a guard's `Drop`: report a failure loudly, but panic only if not already unwinding.
fn restore_failed(what: &str, error: String) {
    let message = format!("could not {what}: {error}; {HOW_TO_GET_RABBITMQCTL}");
    if std::thread::panicking() {
        eprintln!("{message}");
    } else {
        panic!("{message}");
    }
}

/// Starts the RabbitMQ application and waits until it is fully booted.
fn start_app() -> Result<(), String> {
    try_ctl(&["start_app"])?;
    try_ctl(&["await_startup"])?;
    Ok(())
}

/// The RabbitMQ application stopped (`rabbitmqctl stop_app`: the node stays up, the broker
/// closes every connection and refuses new ones); dropping it starts it again and waits for it.
pub struct AppStopped {
    since: Instant,
}

impl AppStopped {
    pub fn new() -> AppStopped {
        require_rabbitmqctl();
        let since = Instant::now();
        ctl(&["stop_app"]);
        eprintln!("broker: stop_app");
        AppStopped { since }
    }
}

impl Drop for AppStopped {
    fn drop(&mut self) {
        let down = self.since.elapsed();
        let started = Instant::now();
        match start_app() {
            Ok(()) => eprintln!(
                "broker: start_app after {down:?} down; up again in {:?}",
                started.elapsed()
            ),
            Err(e) => restore_failed("start the RabbitMQ application again", e),
        }
    }
}

/// Stops the broker application, keeps it down for `down`, starts it again.
pub fn restart(down: Duration) {
    let stopped = AppStopped::new();
    std::thread::sleep(down);
    drop(stopped);
}

/// A memory alarm: the high watermark set to 0, which raises the alarm at once and blocks every
/// publishing connection. Dropping it restores the watermark read before.
pub struct MemoryAlarm {
    /// Arguments to `rabbitmqctl set_vm_memory_high_watermark` that restore the original value.
    restore: Vec<String>,
}

impl MemoryAlarm {
    pub fn raise() -> MemoryAlarm {
        require_rabbitmqctl();
        let current = ctl(&["eval", "vm_memory_monitor:get_vm_memory_high_watermark()."]);
        let restore = restore_args(current.trim()).unwrap_or_else(|| {
            panic!("cannot parse the current memory high watermark `{current}`")
        });
        ctl(&["set_vm_memory_high_watermark", "0"]);
        eprintln!("broker: memory high watermark 0 (was {})", current.trim());
        MemoryAlarm { restore }
    }

    /// Restores the watermark now (also done on drop).
    pub fn clear(self) {
        drop(self);
    }
}

impl Drop for MemoryAlarm {
    fn drop(&mut self) {
        let mut args = vec!["set_vm_memory_high_watermark"];
        args.extend(self.restore.iter().map(String::as_str));
        match try_ctl(&args) {
            Ok(_) => eprintln!(
                "broker: memory high watermark restored to {:?}",
                self.restore
            ),
            Err(e) => restore_failed("restore the memory high watermark", e),
        }
    }
}

/// `0.4` → `["0.4"]`; `{absolute,1073741824}` → `["absolute", "1073741824"]`.
fn restore_args(watermark: &str) -> Option<Vec<String>> {
    if let Some(inner) = watermark
        .strip_prefix("{absolute,")
        .and_then(|s| s.strip_suffix('}'))
    {
        let bytes = inner.trim().trim_matches('"');
        return Some(vec!["absolute".to_string(), bytes.to_string()]);
    }
    watermark
        .parse::<f64>()
        .ok()
        .filter(|w| *w > 0.0)
        .map(|_| vec![watermark.to_string()])
}

/// Whether the broker has a client connection whose properties mention `needle` (e.g. the
/// service name in logcollect's connection name).
pub fn has_connection(needle: &str) -> bool {
    try_ctl(&["list_connections", "-q", "client_properties"]).is_ok_and(|out| out.contains(needle))
}

#[test]
fn watermark_restore_arguments() {
    assert_eq!(restore_args("0.4"), Some(vec!["0.4".to_string()]));
    assert_eq!(
        restore_args("{absolute,1073741824}"),
        Some(vec!["absolute".to_string(), "1073741824".to_string()])
    );
    assert_eq!(restore_args("0"), None);
    assert_eq!(restore_args("oops"), None);
}
