//! The store's directory: its marker, its lock, its clean-shutdown flag,
//! and the syncs that make sled's files and their directory entries
//! durable.
//!
//! ```text
//! DIR/SESSIONDB   marker, "sessiondb store\nformat 1\n"; locked (flock) while open
//! DIR/CLEAN       present only between a clean close and the next open
//! DIR/db          sled's log, synced here with fdatasync (sled's own flush
//!                 is sync_file_range, which makes nothing durable)
//! DIR/conf        sled's settings, which sled writes with no sync: synced
//!                 here once sled has opened
//! DIR/snap.*      sled's snapshots, renamed into place with no sync of the
//!                 directory: the directory is synced here whenever its
//!                 list of names changed
//! DIR/blobs/      sled's blob files (log messages over a quarter of a
//!                 segment), which sled writes with no sync at all: synced
//!                 here at each flush that finds one new or grown. The
//!                 engine keeps records small enough that new stores never
//!                 get one (see the sled backend's "No blob files")
//! DIR/SEGMENT_SIZE  the sled segment size the store was made with, when the
//!                 engine chose it (stores made before have none, and 512 KiB)
//! ```
//!
//! A name (a new file, a rename, a removal) is durable only once its
//! directory is synced, so every directory this module or sled creates or
//! changes is synced before anything is acknowledged that depends on it:
//! the store directory's parent (and any parents made for it), at open;
//! the store directory again once sled has created its files; and after
//! that at any flush that finds its names changed.
//! `tests/power_loss_keeps_acknowledged_writes.rs` checks this on a file
//! system that forgets whatever was never synced.

use std::collections::{BTreeMap, BTreeSet};
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
const SEGMENT_SIZE: &str = "SEGMENT_SIZE";

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
    /// Blob files synced, by name, with the length they had then.
    synced_blobs: Mutex<BTreeMap<OsString, u64>>,
    /// The store directory's names as of its last sync.
    synced_names: Mutex<BTreeSet<OsString>>,
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
        create_durably(dir)?;
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
            synced_names: Mutex::default(),
        })
    }

    /// The sled segment size to open the store with: the one recorded in
    /// `SEGMENT_SIZE`; for a store made before the engine recorded it,
    /// sled's default `legacy`; for a new store, `new`, recorded (and
    /// synced) before sled writes anything.
    ///
    /// Not left to sled's `conf`: sled treats a `conf` it finds empty as
    /// absent and writes its own, and a log read with the wrong segment
    /// size is misread, and then written over by sled's recovery.
    pub fn segment_size(&self, new: usize, legacy: usize) -> Result<usize> {
        let recorded = self.path.join(SEGMENT_SIZE);
        match fs::read_to_string(&recorded) {
            Ok(text) => text.trim().parse().map_err(|_| Error::NotAStore {
                path: self.path.clone(),
                reason: format!("{SEGMENT_SIZE} does not hold a segment size"),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let log = self.path.join("db");
                let log_len = match fs::metadata(&log) {
                    Ok(m) => m.len(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
                    Err(e) => return Err(io_err(&log)(e)),
                };
                if log_len > 0 {
                    return Ok(legacy);
                }
                // Written whole or not at all: a temporary file, synced,
                // renamed into place, and the directory synced.
                let tmp = self.path.join(format!("{SEGMENT_SIZE}.tmp"));
                File::create(&tmp)
                    .and_then(|mut f| {
                        f.write_all(format!("{new}\n").as_bytes())?;
                        f.sync_all()
                    })
                    .and_then(|()| fs::rename(&tmp, &recorded))
                    .map_err(io_err(&recorded))?;
                sync_dir(&self.path)?;
                Ok(new)
            }
            Err(e) => Err(io_err(&recorded)(e)),
        }
    }

    /// Once sled has opened: makes the files it created durable, names
    /// included (sled syncs neither its `conf` nor the directory), and
    /// opens its log for the syncs.
    pub fn attach_sled(&self) -> Result<()> {
        let log_path = self.path.join("db");
        let file = File::open(&log_path).map_err(io_err(&log_path))?;
        file.sync_data().map_err(io_err(&log_path))?;
        *self.log.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
        let conf = self.path.join("conf");
        match File::open(&conf) {
            Ok(f) => f.sync_all().map_err(io_err(&conf))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&conf)(e)),
        }
        self.sync_names(true)
    }

    /// Syncs the store directory if its names changed since it was last
    /// synced (or if `force`).
    fn sync_names(&self, force: bool) -> Result<()> {
        let mut synced = self.synced_names.lock().unwrap_or_else(|e| e.into_inner());
        let names = fs::read_dir(&self.path)
            .and_then(|entries| {
                entries
                    .map(|e| e.map(|e| e.file_name()))
                    .collect::<io::Result<BTreeSet<_>>>()
            })
            .map_err(io_err(&self.path))?;
        if force || names != *synced {
            sync_dir(&self.path)?;
            *synced = names;
        }
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
        self.sync_blobs()?;
        self.sync_names(false)
    }

    /// Syncs every blob file that is new, or has grown, since its last
    /// sync, then (if any was new) the `blobs` directory.
    ///
    /// sled writes a blob file in the writing thread, with plain appends,
    /// before the transaction that needs it returns, and never changes it
    /// after. A flush running meanwhile for another writer can find it
    /// half written; remembering only its name would then leave the rest
    /// never synced (found reading this code after the power-cut test lost
    /// a strict write in a store with blob files). Its length tells: a
    /// file synced at a shorter length is synced again.
    fn sync_blobs(&self) -> Result<()> {
        let dir = self.path.join("blobs");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|e| e.into_inner());
        let mut now = BTreeMap::new();
        let mut new_name = false;
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            let path = entry.path();
            let file = match File::open(&path) {
                Ok(f) => f,
                // sled removed it meanwhile (a blob no longer needed).
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path)(e)),
            };
            let len = file.metadata().map_err(io_err(&path))?.len();
            match synced.get(&name) {
                Some(done) if *done == len => {}
                before => {
                    new_name |= before.is_none();
                    file.sync_all().map_err(io_err(&path))?;
                }
            }
            now.insert(name, len);
        }
        // Forget what sled removed, so the memory stays the size of the
        // directory.
        *synced = now;
        if new_name {
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

/// Creates `dir` and any missing parents, owner-only, each made durable
/// by a sync of the directory that holds it. A `dir` that already exists
/// gets its parent synced too: whoever made it (an operator, a service
/// manager, an earlier run killed right after its `mkdir`) may not have,
/// and everything the store holds is lost with the name if that name is.
fn create_durably(dir: &Path) -> Result<()> {
    let parent_of = |d: &Path| -> PathBuf {
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        }
    };
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.exists() {
        missing.push(at);
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => break,
        }
    }
    if missing.is_empty() {
        // Best effort: a parent we may not read (mode 711, say) is the
        // operator's to keep durable; the store itself is ours.
        return match sync_dir(&parent_of(dir)) {
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::PermissionDenied => {
                Ok(())
            }
            other => other,
        };
    }
    for d in missing.into_iter().rev() {
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        match builder.create(d) {
            Ok(()) => {}
            // Made meanwhile by someone else: synced below all the same.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(io_err(d)(e)),
        }
        sync_dir(&parent_of(d))?;
    }
    Ok(())
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

    #[cfg(not(test))]
    pub fn before_crash_check(_dir: &Path) {}

    #[cfg(test)]
    static PANIC_IN_CHECK: std::sync::Mutex<Vec<std::path::PathBuf>> =
        std::sync::Mutex::new(Vec::new());

    /// Makes the next crash check of the store in `dir` panic, as sled
    /// does on some damage to its own pages.
    #[cfg(test)]
    pub fn panic_in_next_check(dir: &Path) {
        let mut armed = PANIC_IN_CHECK.lock().unwrap_or_else(|e| e.into_inner());
        armed.push(dir.to_owned());
    }

    #[cfg(test)]
    #[allow(clippy::panic, reason = "the fault injected is a panic")]
    pub fn before_crash_check(dir: &Path) {
        let mut armed = PANIC_IN_CHECK.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = armed.iter().position(|d| d == dir) {
            armed.remove(i);
            drop(armed);
            panic!("cannot find pid 5 in view_for_key (injected)");
        }
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
