//! `logcollect send`: ships MESSAGE, or each line of standard input, through the library
//! (the same queue, encoding, limits and confirmed delivery as a Rust program's events).

use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

use clap::Args;
use logcollect::{Builder, Config, ExternalEvent};

use crate::exit;
use crate::levels::Level;
use crate::KeyValue;

pub const AFTER_HELP: &str = "\
Each line of standard input (without its line ending: \\n or \\r\\n) becomes one event, in
order, until end of input; an empty line is an empty message. Lines longer than
max_field_bytes are cut as the library cuts every string; bytes that are not UTF-8 are shipped
as U+FFFD. Events carry the configured identity and host, and the PID of this process unless
--pid says otherwise (`--pid parent`: the process that started send, e.g. the script).

When the broker takes events slower than they are read, send reads more slowly: it keeps the
in-memory queue at most half full (queue_capacity / 2 events). If the broker takes nothing for
--queue-wait-ms, lines go through without waiting and meet the configured `overflow` policy
(drop_newest by default: dropped and counted; a spool keeps them) until it takes events again.
At end of input send waits until every event is confirmed, giving up when the broker confirms
nothing for shutdown_timeout_ms.

Examples:
  some-job 2>&1 | logcollect send --logger cron.backup
  logcollect send --level warn --field disk=/var \"disk 91% full\"

Exit status:
  0  every event was confirmed by the broker
  1  events were left undelivered (dropped, or not confirmed in time: the count is printed)
  2  usage or configuration error";

#[derive(Args, Debug)]
pub struct SendArgs {
    /// Level of the events: trace, debug, info, warn, error
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub level: Level,

    /// Logger (target) of the events: log.logger, and {target} in the routing key
    #[arg(long, value_name = "NAME", default_value = "send")]
    pub logger: String,

    /// A field on every event (a string value); repeat for several
    #[arg(long = "field", value_name = "KEY=VALUE")]
    pub fields: Vec<KeyValue>,

    /// process.pid of the events: a number, or `parent` (default: this process's PID)
    #[arg(long, value_name = "PID")]
    pub pid: Option<PidArg>,

    /// service.name of the events (default: the configured service_name, else
    /// identity.application, else `logcollect`)
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,

    /// How long send waits for a broker that takes nothing before lines meet the overflow
    /// policy
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    pub queue_wait_ms: u64,

    /// Print the delivery counters (the library's Stats line) on standard error at the end
    #[arg(long)]
    pub stats: bool,

    /// The message (several words are joined by spaces); without it, standard input is read
    #[arg(value_name = "MESSAGE")]
    pub message: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidArg {
    Parent,
    Pid(u32),
}

impl std::str::FromStr for PidArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "parent" {
            return Ok(PidArg::Parent);
        }
        s.parse()
            .map(PidArg::Pid)
            .map_err(|_| format!("`{s}` is not a PID; a number or `parent`"))
    }
}

pub fn run(config: Config, args: &SendArgs) -> u8 {
    let shutdown_timeout = config.shutdown_timeout;
    let mut pacer = Pacer::new(
        config.queue_capacity,
        Duration::from_millis(args.queue_wait_ms),
    );
    let mut builder = Builder::from_config(config);
    match args.pid {
        Some(PidArg::Pid(pid)) => builder = builder.pid(pid),
        Some(PidArg::Parent) => builder = builder.pid(std::os::unix::process::parent_id()),
        None => {}
    }
    if let Some(service) = &args.service {
        builder = builder.service_name(service.clone());
    }
    let (_layer, guard) = match builder.build() {
        Ok(built) => built,
        Err(e) => {
            eprintln!("logcollect send: {e}");
            return exit::USAGE;
        }
    };
    let shipper = guard.shipper();
    let level = args.level.tracing();
    let event = |message: String| {
        args.fields.iter().fold(
            ExternalEvent::new(level, args.logger.as_str(), message),
            |event, kv| event.field(&kv.key, kv.value.as_str()),
        )
    };

    let mut sent = 0u64;
    if args.message.is_empty() {
        let read = each_line(std::io::stdin().lock(), |line| {
            pacer.before_ship(&shipper);
            shipper.ship(event(line));
            sent += 1;
        });
        if let Err(e) = read {
            eprintln!("logcollect send: reading standard input failed after {sent} lines: {e}");
        }
    } else {
        shipper.ship(event(args.message.join(" ")));
        sent = 1;
    }

    // Wait while the broker makes progress; give up once it confirms nothing for the
    // shutdown timeout.
    let mut undelivered = guard.flush(Duration::ZERO).undelivered;
    let mut last_progress = Instant::now();
    while undelivered > 0 && last_progress.elapsed() < shutdown_timeout {
        let now = guard.flush(Duration::from_millis(200)).undelivered;
        if now < undelivered {
            last_progress = Instant::now();
        }
        undelivered = now;
    }
    let stats = guard.stats();
    if args.stats {
        eprintln!("logcollect send: lines={sent} {stats}");
    }
    let dropped = stats.dropped.total();
    let ok = undelivered == 0 && dropped == 0 && stats.confirmed >= sent;
    if !ok {
        let reason = stats
            .last_error
            .as_deref()
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default();
        eprintln!(
            "logcollect send: {} of {sent} events undelivered ({undelivered} not confirmed within \
             {} of no progress, {dropped} dropped){reason}; `logcollect check` diagnoses the path",
            undelivered + dropped,
            crate::diagnose::secs(shutdown_timeout),
        );
    }
    let _ = guard.shutdown(Duration::ZERO);
    if ok {
        exit::OK
    } else {
        exit::FAILED
    }
}

/// Keeps the in-memory queue at most half full while the broker takes events, so a pipe is
/// slowed down rather than thinned out, and the shipper never needs to spill to a spool.
/// Reads the queue's depth once per batch, and sleeps in short steps while it drains.
struct Pacer {
    /// The most events queued at once: half the capacity.
    high: usize,
    /// Shipping resumes when the queue has drained to this.
    low: usize,
    /// How long to wait for a queue that does not drain at all.
    patience: Duration,
    /// Lines that may be shipped before the depth is read again.
    budget: usize,
    /// The broker took nothing for `patience`: lines go through without waiting (and meet the
    /// configured overflow policy) until the queue drains again.
    stalled: bool,
}

impl Pacer {
    fn new(capacity: usize, patience: Duration) -> Pacer {
        let high = (capacity / 2).max(1);
        Pacer {
            high,
            low: high / 2,
            patience,
            budget: high,
            stalled: false,
        }
    }

    fn before_ship(&mut self, shipper: &logcollect::Shipper) {
        if self.budget > 0 {
            self.budget -= 1;
            return;
        }
        let mut least = usize::MAX;
        let mut progress = Instant::now();
        loop {
            let depth = shipper.stats().queue_depth;
            if depth <= self.low || (self.stalled && depth < self.high) {
                if self.stalled {
                    eprintln!("logcollect send: the broker takes events again");
                }
                self.stalled = false;
                self.budget = self.high.saturating_sub(depth).saturating_sub(1);
                return;
            }
            if self.stalled {
                // Still nothing taken: ship, and look again a batch later.
                self.budget = 255;
                return;
            }
            if depth < least {
                least = depth;
                progress = Instant::now();
            } else if progress.elapsed() >= self.patience {
                eprintln!(
                    "logcollect send: the broker took no event for {}; lines now meet the \
                     configured overflow policy (by default they are dropped and counted) until \
                     it takes events again",
                    crate::diagnose::secs(self.patience)
                );
                self.stalled = true;
                self.budget = 255;
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Calls `ship` with each line of `input`, without its `\n` or `\r\n`, invalid UTF-8 replaced
/// by U+FFFD; the last line counts even without a line ending.
fn each_line(input: impl Read, mut ship: impl FnMut(String)) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(256 * 1024, input);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        let line = match std::str::from_utf8(&buf) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(&buf).into_owned(),
        };
        ship(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        each_line(input, |l| out.push(l)).unwrap();
        out
    }

    #[test]
    fn lines_keep_empty_ones_drop_endings_and_survive_bad_utf8() {
        assert_eq!(lines(b"a\n\nb\r\nc"), ["a", "", "b", "c"]);
        assert_eq!(lines(b"x\n"), ["x"]);
        assert_eq!(lines(b""), Vec::<String>::new());
        assert_eq!(lines(b"\n"), [""]);
        assert_eq!(lines(b"ok \xff\xfe end\n"), ["ok \u{fffd}\u{fffd} end"]);
    }

    #[test]
    fn pid_is_a_number_or_parent() {
        assert_eq!("42".parse::<PidArg>(), Ok(PidArg::Pid(42)));
        assert_eq!("parent".parse::<PidArg>(), Ok(PidArg::Parent));
        assert!("-1".parse::<PidArg>().is_err());
    }
}
