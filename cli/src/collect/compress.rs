//! Rotated files are compressed and pruned on a thread of their own, so writing never waits
//! for either.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use super::facilities::Compression;
use super::status::Status;
use std::sync::Arc;

/// A file just rotated: compress it (if asked), then keep the `keep` newest of its kind.
pub struct Job {
    pub rotated: PathBuf,
    pub compress: Compression,
    pub level: i32,
    /// The live file the rotated one came from: its siblings `<live>.<span>[.gz|.zst]`.
    pub live: PathBuf,
    pub keep: Option<u32>,
    /// Mode of the compressed file.
    pub mode: u32,
}

#[derive(Clone)]
pub struct Compressor {
    tx: mpsc::Sender<Job>,
}

impl Compressor {
    pub fn start(status: Arc<Status>) -> (Compressor, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<Job>();
        let handle = std::thread::Builder::new()
            .name("collect-compress".into())
            .spawn(move || {
                for job in rx {
                    match run(&job) {
                        Ok(true) => {
                            status.compressions.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => {}
                        Err(e) => status.error(format!(
                            "compressing or pruning {}: {e}",
                            job.rotated.display()
                        )),
                    }
                }
            })
            .unwrap_or_else(|e| panic!("cannot start the compression thread: {e}"));
        (Compressor { tx }, handle)
    }

    pub fn submit(&self, job: Job) {
        // The thread only stops when every sender is gone.
        let _ = self.tx.send(job);
    }
}

/// Whether a file was compressed.
fn run(job: &Job) -> io::Result<bool> {
    let compressed = job.compress != Compression::None && job.rotated.exists();
    if compressed {
        compress(&job.rotated, job.compress, job.level, job.mode)?;
    }
    if let Some(keep) = job.keep {
        prune(&job.live, keep)?;
    }
    Ok(compressed)
}

/// `X` → `X.gz` (or `.zst`) through `X.gz.tmp`, synced, then `X` removed: a crash leaves
/// either the plain file or the finished compressed one, never a truncated archive.
pub fn compress(path: &Path, how: Compression, level: i32, mode: u32) -> io::Result<PathBuf> {
    if how == Compression::None {
        return Ok(path.to_path_buf());
    }
    let mut target = path.as_os_str().to_owned();
    target.push(how.extension());
    let target = PathBuf::from(target);
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut input = BufReader::with_capacity(256 * 1024, File::open(path)?);
    let tmp_file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    tmp_file.set_permissions(fs::Permissions::from_mode(mode))?;
    let out = BufWriter::with_capacity(256 * 1024, tmp_file);
    let file = match how {
        Compression::Gzip => {
            let level = u32::try_from(level.clamp(0, 9)).unwrap_or(6);
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::new(level));
            io::copy(&mut input, &mut enc)?;
            enc.finish()?.into_inner().map_err(|e| e.into_error())?
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(out, level.clamp(1, 22))?;
            // A checksum per frame: a damaged archive fails to decode instead of lying.
            enc.include_checksum(true)?;
            io::copy(&mut input, &mut enc)?;
            enc.finish()?.into_inner().map_err(|e| e.into_error())?
        }
        Compression::None => return Ok(path.to_path_buf()),
    };
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, &target)?;
    fs::remove_file(path)?;
    Ok(target)
}

/// Is `name` a rotated sibling of the live file named `live`: `<live>.<start>-<end>` with an
/// optional compression extension?
pub fn is_rotated(live: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(live).and_then(|r| r.strip_prefix('.')) else {
        return false;
    };
    let span = rest
        .strip_suffix(".gz")
        .or_else(|| rest.strip_suffix(".zst"))
        .unwrap_or(rest);
    // 20261121T190000.123-20261121T200000.000
    let b = span.as_bytes();
    let stamp = |s: &[u8]| {
        s.len() == 19
            && s[..8].iter().all(u8::is_ascii_digit)
            && s[8] == b'T'
            && s[9..15].iter().all(u8::is_ascii_digit)
            && s[15] == b'.'
            && s[16..].iter().all(u8::is_ascii_digit)
    };
    b.len() == 39 && stamp(&b[..19]) && b[19] == b'-' && stamp(&b[20..])
}

/// Deletes the oldest rotated files of `live` beyond `keep`. Names sort by their start time.
pub fn prune(live: &Path, keep: u32) -> io::Result<()> {
    let (Some(dir), Some(name)) = (live.parent(), live.file_name().and_then(|n| n.to_str())) else {
        return Ok(());
    };
    let mut rotated: Vec<String> = fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_rotated(name, n))
        .collect();
    rotated.sort();
    let keep = usize::try_from(keep).unwrap_or(usize::MAX);
    let excess = rotated.len().saturating_sub(keep);
    for old in &rotated[..excess] {
        fs::remove_file(dir.join(old))?;
    }
    Ok(())
}

/// Rotated files left plain by a crash before their compression, and `.tmp` leftovers.
pub fn leftovers(live: &Path, how: Compression) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (live.parent(), live.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Ok(n) = entry.file_name().into_string() else {
            continue;
        };
        if let Some(base) = n.strip_suffix(".tmp") {
            if is_rotated(name, base) {
                let _ = fs::remove_file(entry.path());
            }
        } else if how != Compression::None
            && is_rotated(name, &n)
            && !n.ends_with(".gz")
            && !n.ends_with(".zst")
        {
            out.push(entry.path());
        }
    }
    out.sort();
    out
}

/// Writes `data` to `w`, for tests of the decoders.
#[cfg(test)]
fn write_all(path: &Path, data: &[u8]) {
    use std::io::Write;
    let mut f = File::create(path).unwrap();
    f.write_all(data).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn rotated_names_are_recognised_exactly() {
        let n = "root.log.20261121T190000.123-20261121T200000.000";
        assert!(is_rotated("root.log", n));
        assert!(is_rotated("root.log", &format!("{n}.gz")));
        assert!(is_rotated("root.log", &format!("{n}.zst")));
        assert!(!is_rotated("root.log", &format!("{n}.gz.tmp")));
        assert!(!is_rotated("root.log", "root.log"));
        assert!(!is_rotated("web.log", n));
        assert!(!is_rotated("root.log", "root.log.1"));
    }

    #[test]
    fn compressed_files_decode_and_the_oldest_are_pruned() {
        let dir = std::env::temp_dir().join(format!("lc-compress-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let live = dir.join("root.log");
        let data = b"line one\nline two\n".repeat(100);
        for (i, how) in [Compression::Gzip, Compression::Zstd, Compression::None]
            .into_iter()
            .enumerate()
        {
            let p = dir.join(format!(
                "root.log.2026112{i}T190000.000-2026112{i}T200000.000"
            ));
            write_all(&p, &data);
            let out = compress(&p, how, 3, 0o640).unwrap();
            let mut back = Vec::new();
            match how {
                Compression::Gzip => {
                    flate2::read::MultiGzDecoder::new(File::open(&out).unwrap())
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Compression::Zstd => {
                    zstd::stream::read::Decoder::new(File::open(&out).unwrap())
                        .unwrap()
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Compression::None => back = fs::read(&out).unwrap(),
            }
            assert_eq!(back, data);
        }
        prune(&live, 2).unwrap();
        let mut left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "root.log.20261121T190000.000-20261121T200000.000.zst",
                "root.log.20261122T190000.000-20261122T200000.000"
            ]
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
