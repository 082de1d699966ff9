//! Guarantees of the spool (docs/guarantees.md) with no other test: replay keeps the logging order within one
//! run, memory holds at most 8192 events whatever `queue_capacity` says, and a full disk under
//! the spool loses nothing uncounted (and never panics). Real broker, real files, a real tmpfs.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use common::{documents, Capture, Gate};
use tracing_subscriber::layer::SubscriberExt;

const SEQ: &str = "/fields/seq_no";

/// Logs `seq_no` 0..n through `layer`, padded to ~`pad` bytes each.
fn log(layer: logcollect::LogcollectLayer, n: u64, pad: usize) {
    let padding = "p".repeat(pad);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for seq_no in 0..n {
            tracing::info!(seq_no, padding = padding.as_str(), "spool guarantee");
        }
    });
}

fn seqs(docs: &[serde_json::Value]) -> Vec<i64> {
    docs.iter()
        .map(|d| d.pointer(SEQ).and_then(|v| v.as_i64()).expect("seq_no"))
        .collect()
}

/// Events spilled to the spool while the broker cannot be reached, then replayed in the same
/// run once it can, arrive in the order they were logged: the spooled ones first, then those
/// still in memory.
#[test]
fn events_spilled_and_replayed_within_one_run_arrive_in_seq_no_order() {
    const N: u64 = 3000;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut capture = Capture::fresh();
    let gate = Gate::closed();
    let (layer, guard) = logcollect::builder()
        .broker_uri(&gate.uri)
        .exchange(&capture.exchange)
        .queue_capacity(50)
        .spool_dir(dir.path())
        .configure(|c| c.connect_timeout = Duration::from_secs(60))
        .build()
        .expect("build");
    log(layer, N, 100);
    let before = guard.stats();
    assert_eq!(before.accepted, N, "{before}");
    assert!(
        before.spooled >= N - 50,
        "the queue holds 50: the rest is on disk; {before}"
    );
    gate.open();
    assert!(
        guard.flush(Duration::from_secs(60)).is_complete(),
        "{}",
        guard.stats()
    );
    let docs = documents(&capture.receive(N as usize, Duration::from_secs(30)));
    assert_eq!(seqs(&docs), (0..N as i64).collect::<Vec<_>>());
    let stats = guard.stats();
    assert_eq!(
        (stats.confirmed, stats.dropped.total(), stats.replayed),
        (N, 0, stats.spooled),
        "{stats}"
    );
}

/// With a spool, memory holds at most 8192 events however large `queue_capacity` is: four
/// threads log 60,000 events as fast as they can while the broker cannot be reached, and the
/// queue depth, watched the whole time, never passes 8192; the rest is on disk, none dropped.
#[test]
fn with_a_spool_at_most_8192_events_wait_in_memory() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 15_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let gate = Gate::closed();
    let (layer, guard) = logcollect::builder()
        .broker_uri(&gate.uri)
        .queue_capacity(65_536)
        .spool_dir(dir.path())
        .configure(|c| c.connect_timeout = Duration::from_secs(60))
        .build()
        .expect("build");
    let shipper = guard.shipper();
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (done, peak, shipper) = (done.clone(), peak.clone(), shipper.clone());
        std::thread::spawn(move || {
            while !done.load(Relaxed) {
                peak.fetch_max(shipper.stats().queue_depth, Relaxed);
            }
        })
    };
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let loggers: Vec<_> = (0..THREADS)
        .map(|t| {
            let dispatch = dispatch.clone();
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    for i in 0..PER_THREAD {
                        tracing::info!(seq_no = t * PER_THREAD + i, "burst");
                    }
                })
            })
        })
        .collect();
    for logger in loggers {
        logger.join().expect("logger");
    }
    let stats = shipper.stats();
    done.store(true, Relaxed);
    watcher.join().expect("watcher");
    let peak = peak.load(Relaxed).max(stats.queue_depth);
    eprintln!("peak queue depth {peak}; {stats}");
    assert!(peak <= 8192, "{peak} events in memory; {stats}");
    assert_eq!(stats.accepted, THREADS * PER_THREAD, "{stats}");
    assert_eq!(stats.dropped.total(), 0, "{stats}");
    // The shipper's spilling settles: every event is queued or on disk.
    common::await_stats(
        "every event queued or on disk",
        Duration::from_secs(30),
        &shipper,
        |s| s.spooled + s.queue_depth as u64 == THREADS * PER_THREAD,
    );
    let _ = guard.shutdown(Duration::ZERO);
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "this test fills a small disk: it mounts a {size} tmpfs, which needs root (as \
             scripts/test runs): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn free_bytes(dir: &Path) -> u64 {
    let path = std::ffi::CString::new(dir.to_str().expect("UTF-8 path")).expect("no NUL");
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut stat) }, 0);
    stat.f_bavail as u64 * stat.f_frsize as u64
}

/// The spool on a 1 MiB disk that fills up while the broker cannot be reached: no panic, the
/// write error is reported, and once the broker is back every accepted event is delivered or
/// counted dropped — each delivered once, and the delivered ones in logging order.
#[test]
fn a_full_disk_under_the_spool_loses_nothing_uncounted() {
    const N: u64 = 5000;
    let disk = Tmpfs::mount("1m");
    let mut capture = Capture::fresh();
    let gate = Gate::closed();
    let (layer, guard) = logcollect::builder()
        .broker_uri(&gate.uri)
        .exchange(&capture.exchange)
        .queue_capacity(100)
        .spool_dir(disk.path())
        .configure(|c| {
            c.connect_timeout = Duration::from_secs(60);
            // The disk fills long before the spool's own limit.
            c.spool.max_bytes = 1 << 30;
        })
        .build()
        .expect("build");
    // ~500 bytes each: 2.5 MB, more than the disk holds.
    log(layer, N, 400);
    let full = guard.stats();
    eprintln!("disk full: {full}; {} bytes free", free_bytes(&disk.path()));
    // Refused events are not accepted, and are counted.
    assert!(N - full.accepted <= full.dropped.queue_full, "{full}");
    assert!(full.spooled > 0 && full.spooled < N, "{full}");
    let error = full.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("spool write failed") && error.contains("No space left"),
        "the write error is reported: {full}"
    );

    gate.open();
    assert!(
        guard.flush(Duration::from_secs(60)).is_complete(),
        "{}",
        guard.stats()
    );
    let stats = guard.stats();
    eprintln!("delivered: {stats}");
    // Every event logged is confirmed or counted dropped (refused when logged, or accepted and
    // then lost to the write error).
    assert_eq!(stats.confirmed + stats.dropped.total(), N, "{stats}");
    let docs = documents(&capture.receive(stats.confirmed as usize, Duration::from_secs(30)));
    let more = documents(&capture.receive_until_quiet(Duration::from_millis(500)));
    let arrived = seqs(&docs);
    assert!(
        more.is_empty(),
        "more than confirmed arrived: {}",
        more.len()
    );
    assert_eq!(arrived.len() as u64, stats.confirmed, "{stats}");
    assert!(
        arrived.windows(2).all(|w| w[0] < w[1]),
        "each once, in logging order: {arrived:?}"
    );
    assert!(arrived.iter().all(|s| (0..N as i64).contains(s)));
}
