//! The sled backend: the default, on local disk.
//!
//! # On disk
//!
//! ```text
//! DIR/SESSIONDB   marker, "sessiondb store\nformat 1\n"; locked (flock) while open
//! DIR/db, conf, blobs/, snap.*   sled 0.34's files, holding three trees:
//!
//!   tree      key                                          value
//!   sessions  session id (32 bytes)                        record (see `record`)
//!   expiry    expires_at ms u64 BE ++ session id           empty
//!   users     user len u16 BE ++ user (UTF-8) ++ id        empty
//! ```
//!
//! Every change that touches more than one tree is one sled transaction over
//! the trees it touches.
//!
//! # Durability
//!
//! sled's `flush()` writes its buffers with `sync_file_range`, which neither
//! flushes the drive's cache nor the file's metadata, and sled writes blob
//! files (values or nodes over ~128 KiB) with no sync at all. So
//! [`Backend::flush`] here is `Db::flush()`, then `fdatasync` of `DIR/db`,
//! then `fsync` of blob files written since the last flush and of
//! `DIR/blobs`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional as _, TransactionalTree,
};

use super::ops::{self, Trees};
use super::{Backend, BackendStats, Outcome, Violation, keys};
use crate::error::{Error, Result};
use crate::record::Meta;
use crate::token::SessionId;

const MARKER: &str = "SESSIONDB";
const MARKER_TEXT: &[u8] = b"sessiondb store\nformat 1\n";

/// Tuning passed down from [`Config`](crate::Config).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SledOptions {
    pub cache_capacity: u64,
    pub flush_every_ms: Option<u64>,
}

/// Sessions in sled trees; see the [module docs](self).
#[derive(Debug)]
pub struct SledBackend {
    path: PathBuf,
    db: sled::Db,
    sessions: sled::Tree,
    expiry: sled::Tree,
    users: sled::Tree,
    /// `DIR/db`, opened by us for `fdatasync`.
    db_file: File,
    /// Held for the life of the backend: its `flock` is the store's lock.
    _marker: File,
    /// Blob files already synced, by name.
    synced_blobs: Mutex<std::collections::BTreeSet<std::ffi::OsString>>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

fn storage(e: sled::Error) -> Error {
    Error::Storage(Box::new(e))
}

impl SledBackend {
    /// Opens (or creates) the store in `dir`.
    pub(crate) fn open(dir: &Path, opts: SledOptions) -> Result<Self> {
        if dir.exists() && !dir.is_dir() {
            return Err(Error::NotAStore {
                path: dir.to_owned(),
                reason: "it is a file, not a directory".into(),
            });
        }
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let marker_path = dir.join(MARKER);
        let has_marker = marker_path.exists();
        if !has_marker {
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
        match marker.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: dir.to_owned(),
                    source: "the store's lock file is held".into(),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&marker_path)(e)),
        }
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
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(dir))?;
        } else if text != MARKER_TEXT {
            return Err(Error::NotAStore {
                path: dir.to_owned(),
                reason: format!("{MARKER} does not hold a known format"),
            });
        }

        let db = open_sled(dir, opts)?;
        let tree = |name: &str| db.open_tree(name).map_err(storage);
        let (sessions, expiry, users) = (tree("sessions")?, tree("expiry")?, tree("users")?);
        let db_path = dir.join("db");
        let db_file = File::open(&db_path).map_err(io_err(&db_path))?;
        Ok(Self {
            path: dir.to_owned(),
            db,
            sessions,
            expiry,
            users,
            db_file,
            _marker: marker,
            synced_blobs: Mutex::default(),
        })
    }

    fn atomically<R>(
        &self,
        f: impl Fn(&Txn<'_>) -> std::result::Result<R, ConflictableTransactionError<Error>>,
    ) -> Result<R> {
        (&self.sessions, &self.expiry, &self.users)
            .transaction(|(s, e, u)| f(&Txn { s, e, u }))
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => storage(e),
            })
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
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&dir))?;
        }
        Ok(())
    }
}

/// Opens sled, once we hold the store's own lock.
///
/// sled takes its own `flock` on `DIR/db`. Holding ours means no other
/// engine or process has the store, so if sled's lock is still taken it is
/// a remnant of an engine of this process that just closed: sled's I/O
/// threads let go of the file a moment after `Db` drops. Wait that out, for
/// a bounded time.
fn open_sled(dir: &Path, opts: SledOptions) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let result = sled::Config::new()
            .path(dir)
            .cache_capacity(opts.cache_capacity)
            .flush_every_ms(opts.flush_every_ms)
            .open();
        match result {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(Error::Locked {
                        path: dir.to_owned(),
                        source: Box::new(io),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(other) => return Err(storage(other)),
        }
    }
}

struct Txn<'a> {
    s: &'a TransactionalTree,
    e: &'a TransactionalTree,
    u: &'a TransactionalTree,
}

type TxError = ConflictableTransactionError<Error>;

impl Trees for Txn<'_> {
    type Error = TxError;
    type Bytes = sled::IVec;

    fn abort(e: Error) -> TxError {
        ConflictableTransactionError::Abort(e)
    }
    fn session(&self, id: &SessionId) -> std::result::Result<Option<sled::IVec>, TxError> {
        Ok(self.s.get(id.as_bytes())?)
    }
    fn set_session(&self, id: &SessionId, value: &[u8]) -> std::result::Result<(), TxError> {
        self.s.insert(&id.as_bytes()[..], value)?;
        Ok(())
    }
    fn remove_session(&self, id: &SessionId) -> std::result::Result<(), TxError> {
        self.s.remove(&id.as_bytes()[..])?;
        Ok(())
    }
    fn set_expiry(&self, key: [u8; 40]) -> std::result::Result<(), TxError> {
        self.e.insert(&key[..], &[][..])?;
        Ok(())
    }
    fn remove_expiry(&self, key: [u8; 40]) -> std::result::Result<(), TxError> {
        self.e.remove(&key[..])?;
        Ok(())
    }
    fn set_user(&self, key: Vec<u8>) -> std::result::Result<(), TxError> {
        self.u.insert(key, &[][..])?;
        Ok(())
    }
    fn remove_user(&self, key: Vec<u8>) -> std::result::Result<(), TxError> {
        self.u.remove(key)?;
        Ok(())
    }
}

impl Backend for SledBackend {
    fn get(&self, id: &SessionId, now_ms: u64) -> Result<Option<Vec<u8>>> {
        let Some(value) = self.sessions.get(id.as_bytes()).map_err(storage)? else {
            return Ok(None);
        };
        let (meta, _) = Meta::parse(&value).map_err(|e| ops::corrupt(id, e))?;
        Ok((meta.expires_at > now_ms).then(|| value.to_vec()))
    }

    fn put(
        &self,
        id: &SessionId,
        expected: Option<u64>,
        value: &[u8],
        now: u64,
    ) -> Result<Outcome> {
        self.atomically(|t| ops::put(t, id, expected, value, now))
    }

    fn rename(
        &self,
        old: &SessionId,
        expected: u64,
        new: &SessionId,
        value: &[u8],
        now_ms: u64,
    ) -> Result<Outcome> {
        self.atomically(|t| ops::rename(t, old, expected, new, value, now_ms))
    }

    fn delete(&self, id: &SessionId) -> Result<bool> {
        self.atomically(|t| ops::delete(t, id))
    }

    fn expired(&self, now_ms: u64, limit: usize) -> Result<Vec<SessionId>> {
        // Keys up to and including `now_ms ++ 0xff..`, in time order.
        let end = keys::expiry(now_ms, &SessionId::from_bytes([0xff; 32]));
        let mut out = Vec::new();
        for item in self.expiry.range(..=&end[..]).take(limit) {
            let (key, _) = item.map_err(storage)?;
            if let Some((_, id)) = keys::parse_expiry(&key) {
                out.push(id);
            }
        }
        Ok(out)
    }

    fn delete_if_expired(&self, id: &SessionId, now_ms: u64) -> Result<bool> {
        self.atomically(|t| ops::delete_if_expired(t, id, now_ms))
    }

    fn user_sessions(&self, user: &str) -> Result<Vec<SessionId>> {
        let mut out = Vec::new();
        for item in self.users.scan_prefix(keys::user_prefix(user)) {
            let (key, _) = item.map_err(storage)?;
            if let Some((_, id)) = keys::parse_user(&key) {
                out.push(id);
            }
        }
        Ok(out)
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map_err(storage)?;
        self.db_file
            .sync_data()
            .map_err(io_err(&self.path.join("db")))?;
        self.sync_blobs()
    }

    fn stats(&self, now_ms: u64) -> Result<BackendStats> {
        let end = keys::expiry(now_ms, &SessionId::from_bytes([0xff; 32]));
        let expired_pending = self.expiry.range(..=&end[..]).count() as u64;
        let mut users = 0u64;
        let mut last: Option<Vec<u8>> = None;
        for item in self.users.iter() {
            let (key, _) = item.map_err(storage)?;
            let prefix = key[..key.len().saturating_sub(32)].to_vec();
            if last.as_ref() != Some(&prefix) {
                users += 1;
                last = Some(prefix);
            }
        }
        Ok(BackendStats {
            live_sessions: (self.sessions.len() as u64).saturating_sub(expired_pending),
            expired_pending,
            users,
            bytes_on_disk: self.db.size_on_disk().map_err(storage)?,
        })
    }

    fn check(&self) -> Result<Vec<Violation>> {
        fn all(tree: &sled::Tree) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
            tree.iter()
                .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(storage))
                .collect()
        }
        let sessions = all(&self.sessions)?;
        let expiry = all(&self.expiry)?.into_iter().map(|(k, _)| k);
        let users = all(&self.users)?.into_iter().map(|(k, _)| k);
        Ok(ops::check(sessions, expiry, users))
    }
}
