//! The facilities' files: appending, syncing every `flush_every` events, rotating by size or
//! schedule (renamed with their time span), handing rotated files to the compressor.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Local};

use crate::json::Json;
use crate::render::View;

use super::compress::{self, Compressor, Job};
use super::facilities::{path_component, Facilities, LineFormat, Settings};
use super::format;
use super::status::{FacilityStats, Status};

/// Bytes kept in memory before they are written to the file (whole lines only).
const BUFFER: usize = 128 * 1024;

/// The service of messages that are not documents (written raw, never dropped).
pub const RAW_SERVICE: &str = "_raw";

/// One facility's file.
pub struct LogFile {
    path: PathBuf,
    settings: Settings,
    out: Option<File>,
    buf: Vec<u8>,
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
    stats: Arc<FacilityStats>,
}

impl LogFile {
    fn new(
        path: PathBuf,
        settings: Settings,
        now: DateTime<Local>,
        stats: Arc<FacilityStats>,
    ) -> Self {
        let next_rotation = settings.rotate.as_ref().and_then(|s| s.next_after(&now));
        LogFile {
            path,
            settings,
            out: None,
            buf: Vec::with_capacity(BUFFER),
            size: 0,
            unsynced: 0,
            dirty: false,
            started: now,
            next_rotation,
            last_end: None,
            stats,
        }
    }

    /// Opened on the first line (O_APPEND: an external `copytruncate` leaves no hole). A last
    /// line torn by a crash is ended first, so the next line stays whole.
    fn open(&mut self) -> io::Result<()> {
        if self.out.is_some() {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)?;
        let len = file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        self.size = file.metadata()?.len();
        self.out = Some(file);
        self.stats.set_file(&self.path);
        Ok(())
    }

    /// Appends one event's bytes, rotating first when they would pass `max_size`.
    fn append(
        &mut self,
        bytes: &[u8],
        now: DateTime<Local>,
        compressor: &Compressor,
    ) -> io::Result<bool> {
        self.open()?;
        let len = bytes.len() as u64;
        if let Some(max) = self.settings.max_size {
            if self.size > 0 && self.size.saturating_add(len) > max {
                self.rotate(now, compressor)?;
                self.open()?;
            }
        }
        self.buf.extend_from_slice(bytes);
        self.size = self.size.saturating_add(len);
        self.unsynced += 1;
        self.dirty = true;
        self.stats.add(len);
        if self.buf.len() >= BUFFER {
            self.write_out()?;
        }
        if self.unsynced >= self.settings.flush_every {
            self.sync()?;
            return Ok(true);
        }
        Ok(false)
    }

    fn write_out(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.open()?;
        if let Some(out) = self.out.as_mut() {
            out.write_all(&self.buf)?;
        }
        self.buf.clear();
        Ok(())
    }

    /// Everything written reaches the disk (fdatasync).
    fn sync(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.write_out()?;
        if let Some(out) = self.out.as_mut() {
            out.sync_data()?;
        }
        self.unsynced = 0;
        self.dirty = false;
        Ok(())
    }

    /// Synced and closed; the next line opens the path anew (after an external move, a new
    /// file).
    fn close(&mut self) -> io::Result<()> {
        self.sync()?;
        self.out = None;
        Ok(())
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

/// Every facility file, by (service, facility, host).
pub struct Writers {
    dir: PathBuf,
    facilities: Facilities,
    files: HashMap<String, LogFile>,
    compressor: Compressor,
    status: Arc<Status>,
    line: Vec<u8>,
    key: String,
    facility: String,
    /// A file was synced since the last ack: a good moment to sync the rest and ack.
    synced: bool,
}

impl Writers {
    pub fn new(
        dir: PathBuf,
        facilities: Facilities,
        compressor: Compressor,
        status: Arc<Status>,
    ) -> Writers {
        Writers {
            dir,
            facilities,
            files: HashMap::new(),
            compressor,
            status,
            line: Vec::with_capacity(1024),
            key: String::new(),
            facility: String::new(),
            synced: false,
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

    /// Writes one `text` line, already formatted, to its facility's file.
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

    /// A message that is not a document: one raw line in the `_raw` service's file.
    pub fn write_raw(
        &mut self,
        routing_key: &str,
        body: &[u8],
        now: DateTime<Local>,
    ) -> io::Result<()> {
        let mut line = Vec::with_capacity(body.len() + 64);
        format::raw(&mut line, routing_key, body);
        self.append(RAW_SERVICE, "root", None, &line, now)
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
        self.key.push_str(host.unwrap_or(""));
        if !self.files.contains_key(&self.key) {
            // A facility's name is its own logger prefix: routing it finds its settings.
            let settings = self.facilities.route(service, facility).settings.clone();
            let file = match host {
                Some(h) => format!("{}-{}.log", path_component(h), path_component(facility)),
                None => format!("{}.log", path_component(facility)),
            };
            let path = self.dir.join(path_component(service)).join(file);
            // Rotated files a crash left uncompressed are compressed now.
            for left in compress::leftovers(&path, settings.compress) {
                self.compressor.submit(Job {
                    rotated: left,
                    compress: settings.compress,
                    level: settings.compress_level,
                    live: path.clone(),
                    keep: settings.backup_count,
                });
            }
            let stats = self.status.facility(&format!("{service}:{facility}"));
            self.files
                .insert(self.key.clone(), LogFile::new(path, settings, now, stats));
        }
        let Some(file) = self.files.get_mut(&self.key) else {
            return Err(io::Error::other("facility file vanished from the table"));
        };
        if file.append(line, now, &self.compressor)? {
            self.synced = true;
        }
        Ok(())
    }

    /// True when no file holds unsynced lines, or one was just synced (so the others are
    /// synced too, cheaply, before an ack).
    pub fn ack_point(&self) -> bool {
        self.synced || self.files.values().all(|f| !f.dirty)
    }

    /// Every file synced: what was written is on disk and can be acked.
    pub fn sync_all(&mut self) -> io::Result<()> {
        for f in self.files.values_mut() {
            f.sync()?;
        }
        self.synced = false;
        Ok(())
    }

    /// Scheduled rotations that are due, whether or not events arrive.
    pub fn rotate_due(&mut self, now: DateTime<Local>) -> io::Result<()> {
        for f in self.files.values_mut() {
            f.rotate_if_due(now, &self.compressor)?;
        }
        Ok(())
    }

    /// SIGHUP: every file synced and closed (reopened by its next line), and the new
    /// facilities in force.
    pub fn reopen(&mut self, facilities: Option<Facilities>) -> io::Result<()> {
        for f in self.files.values_mut() {
            f.close()?;
        }
        self.synced = false;
        if let Some(facilities) = facilities {
            self.facilities = facilities;
            // Settings and schedules come from the new file.
            self.files.clear();
        }
        Ok(())
    }

    pub fn open_files(&self) -> usize {
        self.files.values().filter(|f| f.out.is_some()).count()
    }

    /// Closes files idle since the last call, so a stream of many services does not run out
    /// of descriptors.
    pub fn close_if_too_many(&mut self, max: usize) -> io::Result<()> {
        if self.open_files() <= max {
            return Ok(());
        }
        for f in self.files.values_mut() {
            if !f.dirty {
                f.close()?;
            }
        }
        Ok(())
    }
}
