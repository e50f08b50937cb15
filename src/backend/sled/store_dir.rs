//! The store's directory: its marker, its lock, its clean-shutdown flag,
//! and the syncs that make sled's files and their directory entries
//! durable.
//!
//! ```text
//! DIR/SESSIONDB   marker, "sessiondb store\nformat 1\n"; locked (flock) while open
//! DIR/CLEAN       present only between a clean close and the next open
//! DIR/db          sled's log, synced here with fdatasync (sled's own flush
//!                 is sync_file_range, which makes nothing durable)
//! DIR/blobs/      sled's blob files (values or nodes over ~128 KiB), which
//!                 sled writes with no sync at all: synced here once each
//! ```

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

const MARKER: &str = "SESSIONDB";
const MARKER_TEXT: &[u8] = b"sessiondb store\nformat 1\n";
const CLEAN: &str = "CLEAN";

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// An open, locked store directory.
#[derive(Debug)]
pub(super) struct StoreDir {
    path: PathBuf,
    /// Held for the life of the store: its `flock` is the store's lock.
    _marker: File,
    /// Whether the last run closed cleanly (or the store is new).
    was_clean: bool,
    /// `DIR/db`, opened for `fdatasync` once sled has created it.
    log: Mutex<Option<File>>,
    /// Blob files already synced, by name.
    synced_blobs: Mutex<BTreeSet<OsString>>,
}

impl StoreDir {
    /// Creates or opens the directory, takes its lock, and takes away its
    /// clean flag (so a crash from here on leaves it absent).
    pub fn open(dir: &Path) -> Result<Self> {
        if dir.exists() && !dir.is_dir() {
            return Err(Error::NotAStore {
                path: dir.to_owned(),
                reason: "it is a file, not a directory".into(),
            });
        }
        // Owner-only: the store holds every session's data and full id.
        // Directories made here get 0700 (parents too). An existing one
        // keeps the mode its owner chose, even group- or world-readable:
        // refusing it would break stores whose access is the operator's
        // decision (a shared group, a container's volume), and changing it
        // behind their back would be worse.
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(io_err(dir))?;
        let marker_path = dir.join(MARKER);
        if !marker_path.exists() {
            let mut entries = fs::read_dir(dir).map_err(io_err(dir))?;
            if let Some(entry) = entries.next() {
                let name = entry.map_err(io_err(dir))?.file_name();
                return Err(Error::NotAStore {
                    path: dir.to_owned(),
                    reason: format!(
                        "the directory is not empty (it holds {name:?}) and has no {MARKER} marker"
                    ),
                });
            }
        }
        let mut marker = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&marker_path)
            .map_err(io_err(&marker_path))?;
        lock(&marker, dir, &marker_path)?;
        let mut text = Vec::new();
        marker
            .read_to_end(&mut text)
            .map_err(io_err(&marker_path))?;
        if text.is_empty() {
            // New store (or a crash right after the marker was created).
            marker
                .write_all(MARKER_TEXT)
                .and_then(|()| marker.sync_all())
                .map_err(io_err(&marker_path))?;
            sync_dir(dir)?;
        } else if text != MARKER_TEXT {
            return Err(Error::NotAStore {
                path: dir.to_owned(),
                reason: format!("{MARKER} does not hold a known format"),
            });
        }
        let clean = dir.join(CLEAN);
        let was_clean = text.is_empty() || clean.exists();
        match fs::remove_file(&clean) {
            Ok(()) => sync_dir(dir)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&clean)(e)),
        }
        Ok(Self {
            path: dir.to_owned(),
            _marker: marker,
            was_clean,
            log: Mutex::new(None),
            synced_blobs: Mutex::default(),
        })
    }

    /// Opens sled's log for the syncs, once sled has created it.
    pub fn attach_log(&self) -> Result<()> {
        let log_path = self.path.join("db");
        let file = File::open(&log_path).map_err(io_err(&log_path))?;
        *self.log.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the last run closed cleanly (or the store is new): if not,
    /// the store must be checked.
    pub fn was_clean(&self) -> bool {
        self.was_clean
    }

    /// Makes what sled has written durable: `fdatasync` of its log, then
    /// `fsync` of blob files not synced before, and of their directory.
    pub fn sync(&self) -> Result<()> {
        let log_path = self.path.join("db");
        {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            if log.is_none() {
                *log = Some(File::open(&log_path).map_err(io_err(&log_path))?);
            }
            if let Some(file) = log.as_ref() {
                faults::check(&self.path)
                    .and_then(|()| file.sync_data())
                    .map_err(io_err(&log_path))?;
            }
        }
        self.sync_blobs()
    }

    fn sync_blobs(&self) -> Result<()> {
        let dir = self.path.join("blobs");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|e| e.into_inner());
        let mut any = false;
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            if synced.contains(&name) {
                continue;
            }
            let path = entry.path();
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io_err(&path))?;
            synced.insert(name);
            any = true;
        }
        if any {
            sync_dir(&dir)?;
        }
        Ok(())
    }

    /// Records a clean shutdown: the caller has just made everything
    /// durable, and nothing failed before.
    pub fn mark_clean(&self) -> Result<()> {
        let clean = self.path.join(CLEAN);
        File::create(&clean)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&clean))?;
        sync_dir(&self.path)
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Takes the marker's `flock`.
///
/// A child process forked by anyone in this process shares the lock
/// (flock belongs to the open file, and the child holds a copy of the
/// descriptor until its exec closes it), so a store closed a moment ago can
/// look held for that moment. A short grace covers it; a store held by a
/// running service still fails within it.
fn lock(marker: &File, dir: &Path, marker_path: &Path) -> Result<()> {
    let grace = Instant::now() + Duration::from_millis(250);
    loop {
        match marker.try_lock() {
            Ok(()) => return Ok(()),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < grace => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: dir.to_owned(),
                    source: "the store's lock file is held".into(),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err(marker_path)(e)),
        }
    }
}

/// Injected sync failures, for the tests of what a failed sync leaves
/// behind. Outside tests, a check that always passes.
pub(crate) mod faults {
    use std::io;
    use std::path::Path;

    #[cfg(not(test))]
    pub fn check(_dir: &Path) -> io::Result<()> {
        Ok(())
    }

    #[cfg(test)]
    static ARMED: std::sync::Mutex<Vec<(std::path::PathBuf, u32)>> =
        std::sync::Mutex::new(Vec::new());

    /// Makes the next `n` log syncs of the store in `dir` fail with EIO.
    #[cfg(test)]
    pub fn fail_syncs(dir: &Path, n: u32) {
        let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
        armed.retain(|(d, _)| d != dir);
        armed.push((dir.to_owned(), n));
    }

    #[cfg(test)]
    pub fn check(dir: &Path) -> io::Result<()> {
        let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
        match armed.iter_mut().find(|(d, n)| d == dir && *n > 0) {
            Some((_, n)) => {
                *n -= 1;
                Err(io::Error::from_raw_os_error(5))
            }
            None => Ok(()),
        }
    }
}
