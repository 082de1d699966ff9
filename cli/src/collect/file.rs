//! The facilities' files: appending, syncing every `flush_every` events, rotating by size or
//! schedule (renamed with their time span), handing rotated files to the compressor.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use chrono::{DateTime, Local};

use crate::json::Json;
use crate::render::View;

use super::compress::{self, Compressor, Job};
use super::facilities::{path_component, path_component_no_dash, Facilities, LineFormat, Settings};
use super::format;
use super::status::{FacilityStats, Status};

/// Bytes kept in memory before they are written to the file (whole lines only).
const BUFFER: usize = 128 * 1024;

/// The directory of messages that are not documents (written raw, never dropped). No
/// service maps to it: a mapped name never starts with `_`.
pub const RAW_DIR: &str = "_raw";
/// The directory of messages that could not be written after `MAX_ATTEMPTS`.
pub const REJECTED_DIR: &str = "_rejected";

/// Entries of the table of files (most of them closed) past which idle ones are forgotten.
const MAX_TABLE: usize = 4096;

/// Permissions of what the collector creates (before the umask, which is not applied: the
/// modes are set as given).
#[derive(Debug, Clone, Copy)]
pub struct Modes {
    pub file: u32,
    pub dir: u32,
}

/// `dir` and its missing parents, created with `mode`.
pub fn create_dirs(dir: &Path, mode: u32) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() {
            create_dirs(parent, mode)?;
        }
    }
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(mode)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens `path` for appending, creating it (and its directory) with the given modes.
pub fn open_append(path: &Path, modes: Modes) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        create_dirs(dir, modes.dir)?;
    }
    let mut options = OpenOptions::new();
    options.append(true).read(true);
    match options.clone().create_new(true).mode(modes.file).open(path) {
        Ok(file) => {
            file.set_permissions(fs::Permissions::from_mode(modes.file))?;
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => options.open(path),
        Err(e) => Err(e),
    }
}

/// What became of one appended line.
pub struct Appended {
    /// The file holds `flush_every` events or more not yet synced: a sync is due.
    pub due: bool,
    /// The line is in the file's buffer, but writing or syncing failed after it: retried at
    /// the next line and at the next sync.
    pub deferred: Option<io::Error>,
}

/// One facility's file.
pub struct LogFile {
    path: PathBuf,
    settings: Settings,
    modes: Modes,
    /// The syncer thread holds a `Weak` of it while a background sync is pending, so a file
    /// closed meanwhile lets its descriptor go (and is synced here instead).
    out: Option<Arc<File>>,
    /// Device and inode of `out`, to notice the path moved or removed under us.
    id: (u64, u64),
    /// Lines not written yet. Only what `write` took is removed, so a failure part-way never
    /// writes a byte twice.
    buf: Vec<u8>,
    /// The file ends inside a line whose rest is in `buf` (a write stopped part-way).
    mid_line: bool,
    /// A write or sync failed after a line was taken: retried before the next line.
    broken: bool,
    size: u64,
    /// Events written since the last sync.
    unsynced: u64,
    /// Written or buffered since the last sync.
    dirty: bool,
    /// Start of the current file's span.
    started: DateTime<Local>,
    next_rotation: Option<DateTime<Local>>,
    /// End of the last rotated file's span, so every name is new and later names sort later.
    last_end: Option<DateTime<Local>>,
    /// For the least-recently-used close.
    last_used: u64,
    stats: Arc<FacilityStats>,
}

impl LogFile {
    fn new(
        path: PathBuf,
        settings: Settings,
        modes: Modes,
        now: DateTime<Local>,
        stats: Arc<FacilityStats>,
    ) -> Self {
        let next_rotation = settings.rotate.as_ref().and_then(|s| s.next_after(&now));
        LogFile {
            path,
            settings,
            modes,
            out: None,
            id: (0, 0),
            buf: Vec::new(),
            mid_line: false,
            broken: false,
            size: 0,
            unsynced: 0,
            dirty: false,
            started: now,
            next_rotation,
            last_end: None,
            last_used: 0,
            stats,
        }
    }

    /// Opened on the first line (O_APPEND: an external `copytruncate` leaves no hole). A last
    /// line torn by a crash is ended first, so the next line stays whole.
    fn open(&mut self) -> io::Result<()> {
        if self.out.is_some() {
            return Ok(());
        }
        let mut file = open_append(&self.path, self.modes)?;
        let meta = file.metadata()?;
        let len = meta.len();
        if len > 0 && !self.mid_line {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        self.id = (meta.dev(), meta.ino());
        self.size = file.metadata()?.len().saturating_add(self.buf.len() as u64);
        self.out = Some(Arc::new(file));
        self.stats.set_file(&self.path);
        Ok(())
    }

    /// Appends one event's bytes, rotating first when they would pass `max_size`. An error
    /// means the line was not taken (nothing of it is written); once taken, a failure is
    /// handed back in `Appended::deferred`.
    fn append(
        &mut self,
        bytes: &[u8],
        now: DateTime<Local>,
        compressor: &Compressor,
    ) -> io::Result<Appended> {
        if self.broken {
            self.write_out()?;
            self.broken = false;
        }
        self.open()?;
        let len = bytes.len() as u64;
        if let Some(max) = self.settings.max_size {
            if self.size > 0 && self.size.saturating_add(len) > max {
                self.rotate(now, compressor)?;
                self.open()?;
            }
        }
        if self.buf.capacity() == 0 {
            self.buf
                .reserve(BUFFER.min(bytes.len().saturating_mul(16)).max(4096));
        }
        self.buf.extend_from_slice(bytes);
        self.size = self.size.saturating_add(len);
        self.unsynced += 1;
        self.dirty = true;
        self.stats.add(len);
        let due = self.unsynced >= self.settings.flush_every;
        let after = if self.buf.len() >= BUFFER {
            self.write_out()
        } else {
            Ok(())
        };
        match after {
            Ok(()) => Ok(Appended {
                due,
                deferred: None,
            }),
            Err(e) => {
                self.broken = true;
                Ok(Appended {
                    due,
                    deferred: Some(e),
                })
            }
        }
    }

    /// Writes the buffer; what the kernel took leaves the buffer even when a later write
    /// fails, so a retry continues where this stopped.
    fn write_out(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.open()?;
        let Some(out) = self.out.as_deref() else {
            return Err(io::Error::other("the file is not open"));
        };
        let mut out = out;
        let mut written = 0;
        let result = loop {
            if written == self.buf.len() {
                break Ok(());
            }
            match out.write(&self.buf[written..]) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        if written > 0 {
            self.mid_line = self.buf[written - 1] != b'\n';
        }
        self.buf.drain(..written);
        result
    }

    /// Everything written reaches the disk (fdatasync).
    fn sync(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.write_out()?;
        if let Some(out) = self.out.as_deref() {
            out.sync_data()?;
        }
        self.unsynced = 0;
        self.dirty = false;
        Ok(())
    }

    /// The first half of a background sync: the buffer written out, the descriptor handed
    /// back for the syncer thread. The file counts as synced from here: whoever acks on it
    /// waits for that thread's answer, and a failed answer marks it dirty again.
    fn start_sync(&mut self) -> io::Result<Option<Weak<File>>> {
        if !self.dirty {
            return Ok(None);
        }
        self.write_out()?;
        self.unsynced = 0;
        self.dirty = false;
        Ok(self.out.as_ref().map(Arc::downgrade))
    }

    /// Synced and closed; the next line opens the path anew (after an external move, a new
    /// file).
    fn close(&mut self) -> io::Result<()> {
        self.sync()?;
        if let Some(out) = &self.out {
            // A background sync is pending: done here, as the syncer will not find it.
            if Arc::weak_count(out) > 0 {
                out.sync_data()?;
            }
        }
        self.out = None;
        if self.buf.is_empty() {
            // A closed file holds no memory: thousands of them may be in the table.
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// After a failure: the descriptor is let go whatever happens; unwritten lines stay in
    /// the buffer for the next open of the path.
    fn abandon(&mut self) {
        let _ = self.write_out();
        if let Some(out) = self.out.take() {
            let _ = out.sync_data();
        }
    }

    /// The path no longer names the open file (moved or removed under the daemon): the old
    /// one is synced and let go, the path opened anew; lines not yet written go to the new
    /// file. True when it was reopened.
    fn reopen_if_moved(&mut self) -> io::Result<bool> {
        let Some(out) = self.out.as_ref() else {
            return Ok(false);
        };
        let same = fs::metadata(&self.path)
            .map(|m| (m.dev(), m.ino()) == self.id)
            .unwrap_or(false);
        if same {
            return Ok(false);
        }
        let _ = out.sync_data();
        self.out = None;
        self.mid_line = false;
        self.open()?;
        Ok(true)
    }

    /// Renames the file to `<file>.<start>-<end>` and hands it to the compressor, which
    /// then prunes beyond `backup_count`.
    fn rotate(&mut self, now: DateTime<Local>, compressor: &Compressor) -> io::Result<()> {
        self.close()?;
        let mut end = now;
        if let Some(last) = self.last_end {
            if end <= last {
                end = last + chrono::Duration::milliseconds(1);
            }
        }
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = self.settings.compress.extension();
        let mut rotated;
        loop {
            rotated = self.path.with_file_name(format!(
                "{name}.{}-{}",
                stamp(&self.started),
                stamp(&end)
            ));
            let compressed = PathBuf::from(format!("{}{ext}", rotated.display()));
            if !rotated.exists() && !compressed.exists() {
                break;
            }
            end += chrono::Duration::milliseconds(1);
        }
        let rotated_now = match fs::rename(&self.path, &rotated) {
            Ok(()) => true,
            // Moved away by someone else: nothing of ours to rotate.
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        self.size = 0;
        self.last_end = Some(end);
        self.started = end;
        self.next_rotation = self
            .settings
            .rotate
            .as_ref()
            .and_then(|s| s.next_after(&now));
        if rotated_now {
            self.stats.rotated();
            compressor.submit(Job {
                rotated,
                compress: self.settings.compress,
                level: self.settings.compress_level,
                live: self.path.clone(),
                keep: self.settings.backup_count,
                mode: self.modes.file,
            });
        }
        Ok(())
    }

    /// A scheduled rotation that is due: an empty file is not rotated (nothing to keep), its
    /// schedule moves on.
    fn rotate_if_due(&mut self, now: DateTime<Local>, compressor: &Compressor) -> io::Result<()> {
        let Some(due) = self.next_rotation else {
            return Ok(());
        };
        if now < due {
            return Ok(());
        }
        let has_lines = self.size > 0
            || (self.out.is_none()
                && fs::metadata(&self.path)
                    .map(|m| m.len() > 0)
                    .unwrap_or(false));
        if has_lines {
            self.rotate(now, compressor)
        } else {
            self.next_rotation = self
                .settings
                .rotate
                .as_ref()
                .and_then(|s| s.next_after(&now));
            Ok(())
        }
    }
}

/// `20261121T190000.123`: sorts as it reads, no characters a shell or another OS minds.
fn stamp(t: &DateTime<Local>) -> String {
    t.format("%Y%m%dT%H%M%S%.3f").to_string()
}

/// Every facility file, by path: names that map to one path share one writer, so no two
/// writers ever rotate or compress each other's file.
pub struct Writers {
    dir: PathBuf,
    facilities: Facilities,
    modes: Modes,
    files: HashMap<PathBuf, LogFile>,
    /// `service\0facility\0host` → path, so names are mapped once.
    paths: HashMap<String, PathBuf>,
    /// The key and path of the last line: consecutive lines of one file map nothing.
    last_key: String,
    last_path: PathBuf,
    /// Open files at most (least recently used ones are synced and closed past it).
    max_open: usize,
    open: usize,
    clock: u64,
    compressor: Compressor,
    status: Arc<Status>,
    line: Vec<u8>,
    key: String,
    facility: String,
    /// A file holds `flush_every` unsynced events: time to sync them all and ack.
    due: bool,
}

impl Writers {
    pub fn new(
        dir: PathBuf,
        facilities: Facilities,
        modes: Modes,
        max_open: usize,
        compressor: Compressor,
        status: Arc<Status>,
    ) -> Writers {
        Writers {
            dir,
            facilities,
            modes,
            files: HashMap::new(),
            paths: HashMap::new(),
            last_key: String::new(),
            last_path: PathBuf::new(),
            max_open: max_open.max(1),
            open: 0,
            clock: 0,
            compressor,
            status,
            line: Vec::with_capacity(1024),
            key: String::new(),
            facility: String::new(),
            due: false,
        }
    }

    /// Writes one document to its facility's file.
    pub fn write(&mut self, view: &View, doc: &Json, now: DateTime<Local>) -> io::Result<String> {
        let route = self.facilities.route(&view.service, &view.logger);
        self.line.clear();
        format::line(&mut self.line, route.settings.format, view, doc);
        let host = route.settings.file_per_host.then_some(view.host.as_str());
        let facility = route.facility.to_string();
        let line = std::mem::take(&mut self.line);
        let r = self.append(&view.service, &facility, host, &line, now);
        self.line = line;
        r?;
        Ok(facility)
    }

    /// The format of the file an event of `service` and `logger` goes to.
    pub fn format_of(&self, service: &str, logger: &str) -> LineFormat {
        self.facilities.route(service, logger).settings.format
    }

    /// `service:facility` of an event (the status page's label).
    pub fn label(&self, service: &str, logger: &str) -> String {
        format!(
            "{service}:{}",
            self.facilities.route(service, logger).facility
        )
    }

    /// Writes one line, already formatted, to the facility file of `service` and `logger`.
    pub fn write_line(
        &mut self,
        service: &str,
        logger: &str,
        host: &str,
        line: &[u8],
        now: DateTime<Local>,
    ) -> io::Result<()> {
        let route = self.facilities.route(service, logger);
        let host = route.settings.file_per_host.then_some(host);
        let mut facility = std::mem::take(&mut self.facility);
        facility.clear();
        facility.push_str(route.facility);
        let r = self.append(service, &facility, host, line, now);
        self.facility = facility;
        r
    }

    /// A message (or the part of one) that is not a document: one raw line in
    /// `DIR/_raw/root.log`.
    pub fn write_raw(
        &mut self,
        routing_key: &str,
        body: &[u8],
        now: DateTime<Local>,
    ) -> io::Result<()> {
        let mut line = Vec::with_capacity(body.len().min(1 << 20) + 64);
        format::raw(&mut line, routing_key, body);
        let path = self.dir.join(RAW_DIR).join("root.log");
        self.append_at(&path, RAW_DIR, "root", &line, now)
    }

    /// The path of a facility's file: `DIR/<service>/<facility>.log`, or
    /// `<host>-<facility>.log`, every name mapped one-to-one (`path_component`).
    fn path_of(&self, service: &str, facility: &str, host: Option<&str>) -> PathBuf {
        let file = match host {
            Some(h) => format!(
                "{}-{}.log",
                path_component(h),
                path_component_no_dash(facility)
            ),
            None => format!("{}.log", path_component(facility)),
        };
        self.dir.join(path_component(service)).join(file)
    }

    fn append(
        &mut self,
        service: &str,
        facility: &str,
        host: Option<&str>,
        line: &[u8],
        now: DateTime<Local>,
    ) -> io::Result<()> {
        self.key.clear();
        self.key.push_str(service);
        self.key.push('\0');
        self.key.push_str(facility);
        self.key.push('\0');
        if let Some(h) = host {
            self.key.push('\0');
            self.key.push_str(h);
        }
        let mut path = std::mem::take(&mut self.last_path);
        if self.key != self.last_key || path.as_os_str().is_empty() {
            match self.paths.get(&self.key) {
                Some(p) => p.clone_into(&mut path),
                None => {
                    if self.paths.len() >= 8 * MAX_TABLE {
                        self.paths.clear();
                    }
                    path = self.path_of(service, facility, host);
                    self.paths.insert(self.key.clone(), path.clone());
                }
            }
            self.last_key.clear();
            self.last_key.push_str(&self.key);
        }
        let r = self.append_at(&path, service, facility, line, now);
        self.last_path = path;
        r
    }

    fn append_at(
        &mut self,
        path: &Path,
        service: &str,
        facility: &str,
        line: &[u8],
        now: DateTime<Local>,
    ) -> io::Result<()> {
        // The usual case, an open file: one look-up of the path (hashing it is not cheap).
        if let Some(file) = self.files.get_mut(path).filter(|f| f.out.is_some()) {
            self.clock += 1;
            file.last_used = self.clock;
            let result = file.append(line, now, &self.compressor);
            let is_open = file.out.is_some();
            self.count_open(true, is_open);
            return self.appended(path, result);
        }
        if !self.files.contains_key(path) {
            // A facility's name is its own logger prefix: routing it finds its settings.
            let settings = self.facilities.route(service, facility).settings.clone();
            // Rotated files a crash left uncompressed are compressed now.
            for left in compress::leftovers(path, settings.compress) {
                self.compressor.submit(Job {
                    rotated: left,
                    compress: settings.compress,
                    level: settings.compress_level,
                    live: path.to_path_buf(),
                    keep: settings.backup_count,
                    mode: self.modes.file,
                });
            }
            let stats = self.status.facility(&format!("{service}:{facility}"));
            self.files.insert(
                path.to_path_buf(),
                LogFile::new(path.to_path_buf(), settings, self.modes, now, stats),
            );
        }
        let closed = self.files.get(path).is_some_and(|f| f.out.is_none());
        if closed {
            self.make_room(path)?;
        }
        self.clock += 1;
        let clock = self.clock;
        let Some(file) = self.files.get_mut(path) else {
            return Err(io::Error::other("facility file vanished from the table"));
        };
        file.last_used = clock;
        let was_open = file.out.is_some();
        let result = file.append(line, now, &self.compressor);
        let is_open = file.out.is_some();
        self.count_open(was_open, is_open);
        self.appended(path, result)
    }

    fn appended(&mut self, path: &Path, result: io::Result<Appended>) -> io::Result<()> {
        let appended = result?;
        if appended.due {
            self.due = true;
        }
        if let Some(e) = appended.deferred {
            self.status.error(format!(
                "writing {}: {e} (the line is kept and written again)",
                path.display()
            ));
        }
        Ok(())
    }

    fn count_open(&mut self, was: bool, is: bool) {
        match (was, is) {
            (false, true) => self.open += 1,
            (true, false) => self.open = self.open.saturating_sub(1),
            _ => {}
        }
    }

    /// Below the cap of open files before `path` is opened: the least recently used others
    /// are synced and closed.
    fn make_room(&mut self, path: &Path) -> io::Result<()> {
        while self.open >= self.max_open {
            let victim = self
                .files
                .iter()
                .filter(|(p, f)| f.out.is_some() && p.as_path() != path)
                .min_by_key(|(_, f)| f.last_used)
                .map(|(p, _)| p.clone());
            let Some(victim) = victim else {
                break;
            };
            if let Some(f) = self.files.get_mut(&victim) {
                f.close()?;
                self.open = self.open.saturating_sub(1);
            }
        }
        Ok(())
    }

    /// True when no file holds unsynced lines, or one holds `flush_every` of them (so all
    /// are synced, and what they hold acked).
    pub fn ack_point(&self) -> bool {
        self.due || self.files.values().all(|f| !f.dirty)
    }

    /// A background sync of every file holding unsynced lines: their buffers are written
    /// now, and the descriptors returned are for `Syncer` to sync. Nothing written so far
    /// may be acked before it answers.
    pub fn start_sync(&mut self) -> io::Result<Vec<Weak<File>>> {
        self.due = false;
        let mut out = Vec::new();
        for f in self.files.values_mut() {
            match f.start_sync() {
                Ok(Some(file)) => out.push(file),
                Ok(None) => {}
                Err(e) => {
                    f.broken = true;
                    f.dirty = true;
                    return Err(io::Error::new(
                        e.kind(),
                        format!("{}: {e}", f.path.display()),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// A background sync failed: every open file is synced again before the next ack.
    pub fn mark_unsynced(&mut self) {
        for f in self.files.values_mut() {
            if f.out.is_some() {
                f.dirty = true;
            }
        }
    }

    /// Every file synced: what was written is on disk and can be acked. Every file is tried;
    /// the first error is returned.
    pub fn sync_all(&mut self) -> io::Result<()> {
        let mut first = None;
        for f in self.files.values_mut() {
            if let Err(e) = f.sync() {
                f.broken = true;
                first.get_or_insert_with(|| {
                    io::Error::new(e.kind(), format!("{}: {e}", f.path.display()))
                });
            }
        }
        self.due = false;
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Scheduled rotations that are due, whether or not events arrive.
    pub fn rotate_due(&mut self, now: DateTime<Local>) -> io::Result<()> {
        let mut first = None;
        for f in self.files.values_mut() {
            let was = f.out.is_some();
            let r = f.rotate_if_due(now, &self.compressor);
            if was && f.out.is_none() {
                self.open = self.open.saturating_sub(1);
            }
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Files moved or removed under the daemon are reopened at their path (within a tick);
    /// idle closed entries are forgotten past `MAX_TABLE`.
    pub fn check_paths(&mut self) {
        for f in self.files.values_mut() {
            match f.reopen_if_moved() {
                Ok(true) => eprintln!(
                    "logcollect collect: {} was moved or removed: reopened at its path",
                    f.path.display()
                ),
                Ok(false) => {}
                Err(e) => {
                    self.open = self.open.saturating_sub(1);
                    self.status.error(format!(
                        "cannot reopen {} (moved or removed): {e}",
                        f.path.display()
                    ));
                }
            }
        }
        if self.files.len() > MAX_TABLE {
            self.files
                .retain(|_, f| f.out.is_some() || f.dirty || !f.buf.is_empty());
        }
    }

    /// After a write failure: every descriptor let go (unwritten lines kept), so the next
    /// attempt opens the paths afresh.
    pub fn abandon_all(&mut self) {
        for f in self.files.values_mut() {
            f.abandon();
        }
        self.open = 0;
    }

    /// SIGHUP: every file synced and closed (reopened by its next line), and the new
    /// facilities in force.
    pub fn reopen(&mut self, facilities: Option<Facilities>) -> io::Result<()> {
        for f in self.files.values_mut() {
            f.close()?;
        }
        self.open = 0;
        self.due = false;
        if let Some(facilities) = facilities {
            self.facilities = facilities;
            // Settings and schedules come from the new file.
            self.files.clear();
            self.paths.clear();
            self.last_key.clear();
        }
        Ok(())
    }

    pub fn open_files(&self) -> usize {
        self.open
    }

    /// A message that could not be written: kept whole, with the reason, as one JSON line
    /// in `DIR/_rejected/rejected.log`, synced before the message is acked.
    pub fn reject(&mut self, record: &serde_json::Value) -> io::Result<PathBuf> {
        let path = self.dir.join(REJECTED_DIR).join("rejected.log");
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut file = open_append(&path, self.modes)?;
        let before = file.metadata()?.len();
        if let Err(e) = file.write_all(&line).and_then(|()| file.sync_data()) {
            // Whole or nothing: a line cut by a full disk is taken back.
            let _ = file.set_len(before);
            return Err(e);
        }
        Ok(path)
    }
}

/// The thread that syncs files in the background, so the next messages are read and written
/// while the disk catches up. Rounds are answered in the order they were sent; rounds queued
/// meanwhile are merged into one (each file synced once, after the newest of their writes).
pub struct Syncer {
    jobs: Option<std::sync::mpsc::Sender<(Vec<Weak<File>>, u64)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// An answer: how many rounds it covers, the newest tag among them, and whether every file
/// reached the disk.
pub type Synced = (usize, u64, io::Result<()>);

impl Syncer {
    /// The thread, and where its answers arrive.
    pub fn start() -> io::Result<(Syncer, tokio::sync::mpsc::UnboundedReceiver<Synced>)> {
        let (jobs, rx) = std::sync::mpsc::channel::<(Vec<Weak<File>>, u64)>();
        let (answers, answered) = tokio::sync::mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("logcollect-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let (mut files, mut tag) = first;
                    // Rounds sent while the last sync ran: one sync per file covers them.
                    let mut rounds = 1usize;
                    while let Ok((more, t)) = rx.try_recv() {
                        files.extend(more);
                        tag = tag.max(t);
                        rounds += 1;
                    }
                    let mut result = Ok(());
                    for (i, f) in files.iter().enumerate() {
                        if files[..i].iter().any(|g| Weak::ptr_eq(f, g)) {
                            continue;
                        }
                        // Gone: closed meanwhile, and synced as it closed.
                        let Some(f) = f.upgrade() else {
                            continue;
                        };
                        if let Err(e) = f.sync_data() {
                            result = Err(e);
                            break;
                        }
                    }
                    drop(files);
                    if answers.send((rounds, tag, result)).is_err() {
                        return;
                    }
                }
            })?;
        Ok((
            Syncer {
                jobs: Some(jobs),
                thread: Some(thread),
            },
            answered,
        ))
    }

    /// Sends one round: `files` to sync, then `tag` (and all before it) may be acked.
    pub fn submit(&self, files: Vec<Weak<File>>, tag: u64) -> io::Result<()> {
        match &self.jobs {
            Some(jobs) => jobs
                .send((files, tag))
                .map_err(|_| io::Error::other("the sync thread is gone")),
            None => Err(io::Error::other("the sync thread is gone")),
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
