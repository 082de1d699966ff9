use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;

use super::*;
use crate::delivery::message::Meta;

fn config(dir: &Path, max_bytes: u64, when_full: WhenFull) -> SpoolSettings {
    SpoolSettings {
        dir: dir.to_path_buf(),
        max_bytes,
        when_full,
        fsync_interval: Duration::ZERO,
    }
}

fn message(seq: u64) -> Message {
    Message {
        route: "logstash.test".into(),
        body: format!(r#"{{"seq_no":{seq},"pad":"{}"}}"#, "x".repeat(200))
            .into_bytes()
            .into(),
        meta: Meta {
            id: format!("id-{seq}"),
            app: "test".into(),
            format: "ecs".into(),
            timestamp: seq,
        },
        events: 1,
        ends: Vec::new(),
        origin: None,
        born: Vec::new(),
    }
}

fn seq(m: &Message) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(&m.body).expect("JSON body");
    v["seq_no"].as_u64().expect("seq_no")
}

/// Reads everything and confirms it; returns the seq_nos in the order read.
fn drain(spool: &mut Spool, counters: &Counters) -> Vec<u64> {
    let mut seen = Vec::new();
    while let Some(m) = spool.next(counters) {
        seen.push(seq(&m));
        if let Some(id) = m.origin {
            spool.confirmed(id, counters);
        }
    }
    seen
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

#[test]
fn replays_in_order_and_deletes_what_was_confirmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let counters = Counters::default();
    let mut spool =
        Spool::open(&config(dir.path(), 256 << 10, WhenFull::DropNewest)).expect("open");
    let unwritten = spool.append((0..500).map(message).collect(), &counters);
    assert!(unwritten.is_empty());
    assert_eq!(counters.spooled.load(Relaxed), 500);
    assert!(segment_files(dir.path()).len() > 1, "several segments");
    assert!(spool.has_unread());

    assert_eq!(drain(&mut spool, &counters), (0..500).collect::<Vec<_>>());
    assert_eq!(counters.replayed.load(Relaxed), 500);
    assert!(!spool.has_unread());
    assert_eq!(spool.bytes(), 0);
    assert!(
        segment_files(dir.path()).is_empty(),
        "all confirmed, all deleted"
    );
}

#[test]
fn an_unconfirmed_record_keeps_its_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let counters = Counters::default();
    let mut spool = Spool::open(&config(dir.path(), 1 << 20, WhenFull::DropNewest)).expect("open");
    spool.append((0..3).map(message).collect(), &counters);
    let first = spool.next(&counters).expect("a record");
    drain(&mut spool, &counters);
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "record 0 is not confirmed yet"
    );
    spool.confirmed(first.origin.expect("origin"), &counters);
    assert!(segment_files(dir.path()).is_empty());
}

#[test]
fn the_next_run_replays_what_an_earlier_one_left_as_recovered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let counters = Counters::default();
    {
        let mut spool =
            Spool::open(&config(dir.path(), 256 << 10, WhenFull::DropNewest)).expect("open");
        spool.append((0..300).map(message).collect(), &counters);
        // Read and confirm a few, as a run cut short would have.
        for _ in 0..5 {
            let m = spool.next(&counters).expect("record");
            spool.confirmed(m.origin.expect("origin"), &counters);
        }
    }
    let mut spool =
        Spool::open(&config(dir.path(), 256 << 10, WhenFull::DropNewest)).expect("open");
    spool.append((300..310).map(message).collect(), &counters);
    let mut recovered = 0;
    let mut seen = Vec::new();
    while let Some(m) = spool.next(&counters) {
        seen.push(seq(&m));
        if spool.confirmed(m.origin.expect("origin"), &counters) {
            recovered += 1;
        }
    }
    // The confirmed five were in a segment not yet deleted: replayed again (duplicates,
    // same bytes), never lost.
    assert_eq!(seen, (0..310).collect::<Vec<_>>());
    assert_eq!(recovered, 300);
}

#[test]
fn a_torn_last_record_is_skipped_never_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let counters = Counters::default();
    {
        let mut spool =
            Spool::open(&config(dir.path(), 1 << 20, WhenFull::DropNewest)).expect("open");
        spool.append((0..3).map(message).collect(), &counters);
    }
    // A crash in the middle of a write: the first half of a record.
    let last = segment_files(dir.path()).pop().expect("a segment");
    let half = record::encode(&message(3));
    let mut file = OpenOptions::new().append(true).open(&last).expect("open");
    file.write_all(&half[..half.len() / 2]).expect("write");
    drop(file);

    let mut spool = Spool::open(&config(dir.path(), 1 << 20, WhenFull::DropNewest)).expect("open");
    assert_eq!(drain(&mut spool, &counters), vec![0, 1, 2]);
    assert_eq!(counters.spool_torn.load(Relaxed), 1);
    assert!(segment_files(dir.path()).is_empty());
}

#[test]
fn a_corrupt_record_is_skipped_with_the_rest_of_its_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let counters = Counters::default();
    {
        let mut spool =
            Spool::open(&config(dir.path(), 1 << 20, WhenFull::DropNewest)).expect("open");
        spool.append((0..3).map(message).collect(), &counters);
    }
    let path = segment_files(dir.path()).pop().expect("a segment");
    let mut bytes = fs::read(&path).expect("read");
    let second = MAGIC.len() + record::encode(&message(0)).len() + record::HEADER + 30;
    bytes[second] ^= 0xff;
    fs::write(&path, bytes).expect("write");

    let mut spool = Spool::open(&config(dir.path(), 1 << 20, WhenFull::DropNewest)).expect("open");
    assert_eq!(drain(&mut spool, &counters), vec![0]);
    assert_eq!(counters.spool_torn.load(Relaxed), 1);
}

#[test]
fn a_second_process_cannot_open_a_spool_in_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = Spool::open(&config(dir.path(), 1 << 20, WhenFull::DropNewest)).expect("open");
    let second = Spool::open(&config(dir.path(), 1 << 20, WhenFull::DropNewest));
    let error = second.err().expect("locked");
    assert!(error.contains("in use by another process"), "{error}");
    assert!(error.contains(&std::process::id().to_string()), "{error}");
}

#[test]
fn a_full_spool_dropping_newest_keeps_the_first_and_counts_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let counters = Counters::default();
    let mut spool = Spool::open(&config(dir.path(), 32 << 10, WhenFull::DropNewest)).expect("open");
    spool.append((0..1000).map(message).collect(), &counters);
    let spooled = counters.spooled.load(Relaxed);
    let dropped = counters.dropped_spool_full.load(Relaxed);
    assert_eq!(spooled + dropped, 1000);
    assert!(dropped > 0 && spooled > 0);
    assert!(spool.bytes() <= 32 << 10);
    assert_eq!(
        drain(&mut spool, &counters),
        (0..spooled).collect::<Vec<_>>()
    );
}

#[test]
fn a_full_spool_dropping_oldest_keeps_the_last_and_counts_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let counters = Counters::default();
    let mut spool = Spool::open(&config(dir.path(), 32 << 10, WhenFull::DropOldest)).expect("open");
    spool.append((0..1000).map(message).collect(), &counters);
    assert_eq!(counters.spooled.load(Relaxed), 1000);
    let dropped = counters.dropped_spool_full.load(Relaxed);
    assert!(dropped > 0);
    assert!(spool.bytes() <= 32 << 10);
    assert_eq!(
        drain(&mut spool, &counters),
        (dropped..1000).collect::<Vec<_>>()
    );
}
