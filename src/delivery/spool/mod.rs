//! The disk spool: where messages wait when the broker cannot take them.
//!
//! Messages are appended to numbered segment files (`00000000000000000001.seg`, …), one
//! checksummed record each, and read back in order. A segment is deleted once it has been read
//! to its end and every message read from it has been confirmed, so a crash at any point
//! replays, on the next start, everything not yet confirmed (at worst a segment's worth of
//! duplicates, which carry the same `event.id`).
//!
//! Writes go straight to the file (no user-space buffer): a killed process loses nothing it
//! wrote. `fsync` runs at most every `fsync_interval`, so a machine crash or power loss can lose
//! that much. A record cut short by either is detected by its checksum and skipped.
//!
//! The directory is locked while in use, so two processes never share a spool by accident.

mod record;

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::message::Message;
use super::stats::Counters;

crate::choice::choice! {
    /// What a full spool drops.
    pub enum WhenFull: "a spool policy", default DropNewest {
        /// Refuse the event being written, keep what is on disk.
        DropNewest = "drop_newest",
        /// Delete the oldest segment file (its unsent events are counted) to make room.
        DropOldest = "drop_oldest",
    }
}

/// Where and how much the spool keeps (boot translates `spool.*` settings into this).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpoolSettings {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub when_full: WhenFull,
    pub fsync_interval: Duration,
}

/// Every segment file starts with this.
const MAGIC: &[u8; 8] = b"LCSPOOL1";
const LOCK_FILE: &str = "LOCK";
/// How long to stop writing after an I/O error before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(5);
/// The most events a write error keeps in memory behind the disk's records (as many as the
/// queue holds with a spool); beyond it, messages handed to the spool are handed back.
const HELD_MAX_EVENTS: u64 = 8192;

pub(crate) struct Spool {
    dir: PathBuf,
    /// Holds the directory's lock for as long as the spool lives.
    _lock: File,
    max_bytes: u64,
    segment_bytes: u64,
    when_full: WhenFull,
    fsync_interval: Duration,
    /// Every segment on disk, oldest first.
    segments: BTreeMap<u64, Segment>,
    writer: Option<(u64, File)>,
    reader: Option<Cursor>,
    next_id: u64,
    /// Segments numbered below this were written by an earlier run.
    first_of_this_run: u64,
    bytes: u64,
    /// When the oldest write not yet forced to disk happened.
    unsynced_since: Option<Instant>,
    /// After a write error, writing is paused until then.
    paused_until: Option<Instant>,
    /// `drop_newest` refused a record: later ones are refused too until a segment is deleted,
    /// so that a smaller record never slips in after a larger one was dropped (the spool keeps
    /// a prefix of what was written to it).
    refusing: bool,
    /// Messages a write error kept off the disk. They are newer than every record on it and
    /// older than anything appended later, so they are published right after the disk's
    /// records and written ahead of anything newer once the disk takes writes again: the
    /// spool stays one queue, in logging order.
    held: VecDeque<Message>,
    held_events: u64,
}

#[derive(Debug, Default)]
struct Segment {
    bytes: u64,
    /// Records read and not yet confirmed.
    outstanding: u64,
    /// The reader has passed its end.
    read_done: bool,
}

struct Cursor {
    id: u64,
    file: BufReader<File>,
    offset: u64,
}

/// What reading one record found.
enum Found {
    Record(Box<Message>),
    End,
    Torn,
}

impl Spool {
    /// Opens (creating it if needed) and locks the spool directory, and finds what an earlier
    /// run left in it.
    pub fn open(config: &SpoolSettings) -> Result<Spool, String> {
        let dir = config.dir.clone();
        fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create spool directory `{}`: {e}", dir.display()))?;
        let lock = lock(&dir)?;
        let mut segments = BTreeMap::new();
        let mut bytes = 0;
        let entries = fs::read_dir(&dir)
            .map_err(|e| format!("cannot read spool directory `{}`: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            bytes += size;
            segments.insert(
                id,
                Segment {
                    bytes: size,
                    ..Segment::default()
                },
            );
        }
        let next_id = segments.keys().next_back().map_or(1, |id| id + 1);
        Ok(Spool {
            dir,
            _lock: lock,
            max_bytes: config.max_bytes,
            // Small enough that the byte bound is kept at a segment's grain and a crash replays
            // few duplicates; large enough that files stay few.
            segment_bytes: (config.max_bytes / 16).clamp(4 << 10, 16 << 20),
            when_full: config.when_full,
            fsync_interval: config.fsync_interval,
            segments,
            writer: None,
            reader: None,
            next_id,
            first_of_this_run: next_id,
            bytes,
            unsynced_since: None,
            paused_until: None,
            refusing: false,
            held: VecDeque::new(),
            held_events: 0,
        })
    }

    /// The largest message body worth packing for this spool: what fits in one segment.
    pub fn record_bytes(&self) -> usize {
        let overhead = MAGIC.len() as u64 + record::HEADER as u64 + 1024;
        usize::try_from(self.segment_bytes.saturating_sub(overhead).max(1)).unwrap_or(usize::MAX)
    }

    /// Bytes the segment files hold.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether writes are accepted now (they pause for a while after an I/O error).
    pub fn writable(&self) -> bool {
        self.paused_until.is_none_or(|t| Instant::now() >= t)
    }

    /// Whether records (or messages held in memory after a write error) wait to be read.
    pub fn has_unread(&self) -> bool {
        !self.held.is_empty()
            || self
                .segments
                .iter()
                .any(|(&id, s)| !s.read_done && !self.caught_up(id))
    }

    /// Whether `id` is the segment being written and the reader has read all of it.
    fn caught_up(&self, id: u64) -> bool {
        let Some(s) = self.segments.get(&id) else {
            return true;
        };
        self.writer.as_ref().is_some_and(|(w, _)| *w == id)
            && (s.bytes <= MAGIC.len() as u64
                || self
                    .reader
                    .as_ref()
                    .is_some_and(|r| r.id == id && r.offset >= s.bytes))
    }

    /// When everything written has been read and confirmed, the segment being written is
    /// retired too, so a clean exit leaves nothing to replay.
    fn retire_if_drained(&mut self, id: u64) {
        let drained =
            self.caught_up(id) && self.segments.get(&id).is_some_and(|s| s.outstanding == 0);
        if drained && self.reader.as_ref().is_some_and(|r| r.id == id) {
            self.writer = None;
            self.reader = None;
            self.finish(id);
        }
    }

    /// Appends messages read from memory (never ones read from the spool), after any held
    /// back by an earlier write error. A message the `when_full` policy drops is counted. One a
    /// write error keeps off the disk is held in memory, in order, up to [`HELD_MAX_EVENTS`];
    /// beyond that the newest are handed back, for the caller to count as lost.
    pub fn append(&mut self, messages: Vec<Message>, counters: &Counters) -> Vec<Message> {
        for message in messages {
            self.held_events += message.events;
            self.held.push_back(message);
        }
        self.write_held(counters);
        let mut lost = Vec::new();
        while self.held_events > HELD_MAX_EVENTS {
            let Some(message) = self.held.pop_back() else {
                break;
            };
            self.held_events = self.held_events.saturating_sub(message.events);
            lost.push(message);
        }
        lost.reverse();
        if self.fsync_interval.is_zero() {
            self.sync(true);
        }
        Counters::store(&counters.spool_bytes, self.bytes);
        lost
    }

    /// Whether `events` more can be handed to [`append`](Self::append) without any being
    /// handed back: the disk takes writes, or memory has room behind it.
    pub fn has_room_for(&self, events: u64) -> bool {
        (self.writable() && self.held.is_empty())
            || self.held_events.saturating_add(events) <= HELD_MAX_EVENTS
    }

    /// Writes the held messages to disk, oldest first, until one fails.
    fn write_held(&mut self, counters: &Counters) {
        while self.writable() {
            let Some(message) = self.held.front() else {
                return;
            };
            let events = message.events;
            let record = record::encode(message);
            match self.append_record(&record, counters) {
                Ok(true) => Counters::add(&counters.spooled, events),
                Ok(false) => Counters::add(&counters.dropped_spool_full, events),
                Err(e) => {
                    counters
                        .set_error(format!("spool write failed: {e}; keeping events in memory"));
                    self.paused_until = Some(Instant::now() + ERROR_PAUSE);
                    return;
                }
            }
            self.held.pop_front();
            self.held_events = self.held_events.saturating_sub(events);
        }
    }

    /// `Ok(false)`: dropped by the `when_full` policy.
    fn append_record(&mut self, record: &[u8], counters: &Counters) -> io::Result<bool> {
        let len = record.len() as u64;
        if len + MAGIC.len() as u64 > self.max_bytes {
            return Ok(false);
        }
        if self.refusing && self.when_full == WhenFull::DropNewest {
            return Ok(false);
        }
        while self.bytes + len > self.max_bytes {
            match self.when_full {
                WhenFull::DropNewest => {
                    self.refusing = true;
                    return Ok(false);
                }
                WhenFull::DropOldest => {
                    if !self.evict_oldest(counters) {
                        return Ok(false);
                    }
                }
            }
        }
        let full = self
            .writer
            .as_ref()
            .and_then(|(id, _)| self.segments.get(id))
            .is_none_or(|s| s.bytes + len > self.segment_bytes && s.bytes > MAGIC.len() as u64);
        if full {
            self.roll()?;
        }
        let Some((id, file)) = self.writer.as_mut() else {
            return Err(io::Error::other("no segment open for writing"));
        };
        let segment = self.segments.entry(*id).or_default();
        if let Err(e) = file.write_all(record) {
            // Cut the partial record off; if even that fails, end the segment here, where the
            // reader will find a torn record and skip it.
            if file.set_len(segment.bytes).is_err() {
                self.writer = None;
            }
            return Err(e);
        }
        segment.bytes += len;
        self.bytes += len;
        self.unsynced_since.get_or_insert_with(Instant::now);
        Ok(true)
    }

    /// Starts a new segment file.
    fn roll(&mut self) -> io::Result<()> {
        self.sync(true);
        let id = self.next_id;
        let path = self.path(id);
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        if let Err(e) = file.write_all(MAGIC) {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        self.next_id += 1;
        // Make the new file's name durable too.
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        self.segments.insert(
            id,
            Segment {
                bytes: MAGIC.len() as u64,
                ..Segment::default()
            },
        );
        self.bytes += MAGIC.len() as u64;
        self.writer = Some((id, file));
        Ok(())
    }

    /// Forces written records to disk if the interval has passed (or `force`).
    pub fn sync(&mut self, force: bool) {
        let Some(since) = self.unsynced_since else {
            return;
        };
        if force || since.elapsed() >= self.fsync_interval {
            if let Some((_, file)) = &self.writer {
                let _ = file.sync_data();
            }
            self.unsynced_since = None;
        }
    }

    /// The next message to publish, oldest first: the disk's records, then those held in
    /// memory; `None` when the reader has caught up.
    pub fn next(&mut self, counters: &Counters) -> Option<Message> {
        if let Some(message) = self.next_on_disk(counters) {
            return Some(message);
        }
        let message = self.held.pop_front()?;
        self.held_events = self.held_events.saturating_sub(message.events);
        Some(message)
    }

    fn next_on_disk(&mut self, counters: &Counters) -> Option<Message> {
        loop {
            if self.reader.is_none() {
                let id = self
                    .segments
                    .iter()
                    .find(|(_, s)| !s.read_done)
                    .map(|(id, _)| *id)?;
                match self.open_reader(id) {
                    Ok(cursor) => self.reader = Some(cursor),
                    Err(e) => {
                        counters.set_error(format!("cannot read spool segment {id}: {e}"));
                        Counters::add(&counters.spool_torn, 1);
                        self.finish(id);
                        continue;
                    }
                }
            }
            let id = self.reader.as_ref()?.id;
            if self.caught_up(id) {
                // Nothing new in the segment being written: no need to ask the disk.
                self.retire_if_drained(id);
                return None;
            }
            let cursor = self.reader.as_mut()?;
            let size = self.segments.get(&id).map_or(0, |s| s.bytes);
            match read_record(cursor, size) {
                Found::Record(message) => {
                    if let Some(s) = self.segments.get_mut(&id) {
                        s.outstanding += 1;
                    }
                    Counters::add(&counters.replayed, message.events);
                    return Some(*message);
                }
                Found::End if self.writer.as_ref().is_some_and(|(w, _)| *w == id) => {
                    self.retire_if_drained(id);
                    return None;
                }
                Found::End => {
                    self.reader = None;
                    self.finish(id);
                }
                Found::Torn => {
                    Counters::add(&counters.spool_torn, 1);
                    counters.set_error(format!(
                        "skipped a torn or corrupt record in spool segment {id} (a write cut \
                         short by a crash?)"
                    ));
                    if self.writer.as_ref().is_some_and(|(w, _)| *w == id) {
                        self.writer = None;
                    }
                    self.reader = None;
                    self.finish(id);
                }
            }
        }
    }

    /// A message read from segment `id` was confirmed. Returns whether it came from an
    /// earlier run.
    pub fn confirmed(&mut self, id: u64, counters: &Counters) -> bool {
        if let Some(s) = self.segments.get_mut(&id) {
            s.outstanding = s.outstanding.saturating_sub(1);
            if s.read_done && s.outstanding == 0 {
                self.delete(id);
            } else {
                self.retire_if_drained(id);
            }
        }
        Counters::store(&counters.spool_bytes, self.bytes);
        id < self.first_of_this_run
    }

    /// The reader is done with segment `id`; delete it if nothing read from it is unconfirmed.
    fn finish(&mut self, id: u64) {
        if let Some(s) = self.segments.get_mut(&id) {
            s.read_done = true;
            if s.outstanding == 0 {
                self.delete(id);
            }
        }
    }

    fn delete(&mut self, id: u64) {
        if let Some(s) = self.segments.remove(&id) {
            self.bytes = self.bytes.saturating_sub(s.bytes);
            self.refusing = false;
        }
        if self.writer.as_ref().is_some_and(|(w, _)| *w == id) {
            self.writer = None;
        }
        let _ = fs::remove_file(self.path(id));
    }

    /// Deletes the oldest segment to make room, counting the events in it that were not read
    /// yet (those read are in memory and still delivered). `false` if there is none to delete.
    fn evict_oldest(&mut self, counters: &Counters) -> bool {
        let Some(id) = self.segments.keys().next().copied() else {
            return false;
        };
        if self.writer.as_ref().is_some_and(|(w, _)| *w == id) {
            // The only segment is the one being written: close it, a new one starts.
            self.sync(true);
            self.writer = None;
        }
        let from = match self.reader.take_if(|r| r.id == id) {
            Some(cursor) => cursor.offset,
            None if self.segments.get(&id).is_some_and(|s| s.read_done) => u64::MAX,
            None => MAGIC.len() as u64,
        };
        let size = self.segments.get(&id).map_or(0, |s| s.bytes);
        let unread = count_events(&self.path(id), from, size);
        let counter = if id < self.first_of_this_run {
            &counters.dropped_spool_full_recovered
        } else {
            &counters.dropped_spool_full
        };
        Counters::add(counter, unread);
        self.delete(id);
        true
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.seg"))
    }

    fn open_reader(&self, id: u64) -> io::Result<Cursor> {
        let mut file = BufReader::new(File::open(self.path(id))?);
        let mut magic = [0u8; 8];
        file.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a logcollect spool segment",
            ));
        }
        Ok(Cursor {
            id,
            file,
            offset: MAGIC.len() as u64,
        })
    }
}

/// Takes the directory's lock, naming the holder when another process has it.
fn lock(dir: &Path) -> Result<File, String> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open the spool lock `{}`: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.set_len(0);
            let _ = writeln!(file, "{}", std::process::id());
            Ok(file)
        }
        Err(fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            Err(format!(
                "spool directory `{}` is in use by another process (pid {}); give each process \
                 its own spool.dir",
                dir.display(),
                holder.trim()
            ))
        }
        Err(fs::TryLockError::Error(e)) => Err(format!(
            "cannot lock the spool directory `{}`: {e}",
            dir.display()
        )),
    }
}

/// Reads one record at the cursor. `size` is what the segment holds: a record claiming more
/// is torn, as is one whose checksum fails.
fn read_record(cursor: &mut Cursor, size: u64) -> Found {
    let mut header = [0u8; record::HEADER];
    match read_full(&mut cursor.file, &mut header) {
        Ok(0) => return Found::End,
        Ok(n) if n == record::HEADER => {}
        _ => return Found::Torn,
    }
    let (len, crc) = record::header(header);
    let end = cursor.offset + record::HEADER as u64 + u64::from(len);
    if len > record::MAX_PAYLOAD || end > size.max(cursor.offset) {
        return Found::Torn;
    }
    let mut payload = vec![0u8; len as usize];
    if !matches!(read_full(&mut cursor.file, &mut payload), Ok(n) if n == payload.len()) {
        return Found::Torn;
    }
    match record::decode(&payload, crc, cursor.id) {
        Some(message) => {
            cursor.offset = end;
            Found::Record(Box::new(message))
        }
        None => Found::Torn,
    }
}

/// Reads until `buf` is full or the file ends; returns how much was read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The events in the valid records of a segment from byte `from` on.
fn count_events(path: &Path, from: u64, size: u64) -> u64 {
    let Ok(mut file) = File::open(path) else {
        return 0;
    };
    if from >= size || file.seek(SeekFrom::Start(from)).is_err() {
        return 0;
    }
    let mut cursor = Cursor {
        id: 0,
        file: BufReader::new(file),
        offset: from,
    };
    let mut events = 0;
    while let Found::Record(message) = read_record(&mut cursor, size) {
        events += message.events;
    }
    events
}

#[cfg(test)]
mod tests;
