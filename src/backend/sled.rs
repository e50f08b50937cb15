//! The sled backend: the default, on local disk.
//!
//! # On disk
//!
//! ```text
//! DIR/SESSIONDB   marker, "sessiondb store\nformat 1\n"; locked (flock) while open
//! DIR/CLEAN       present only between a clean close and the next open
//! DIR/db, conf, blobs/, snap.*   sled 0.34's files, holding three trees:
//!
//!   tree      key                                          value
//!   sessions  session id (32 bytes)                        record (see `record`)
//!   expiry    expires_at ms u64 BE ++ session id           empty
//!   users     user len u16 BE ++ user (UTF-8) ++ id        empty
//!   quarantine  key of a record that did not decode           its bytes, as found
//!   revoked   `k` ++ key                                   at ms u64 BE ++ until ms u64 BE
//!             `t` ++ until ms u64 BE ++ key                empty (revocations in time order)
//! ```
//!
//! `revoked` holds what logouts revoked (see [`Backend::revoke`]): the two
//! entries of a revocation are written in one batch, outside the committer
//! (nothing else reads them in the same step), and reach disk with the
//! flush that makes the revocation durable.
//!
//! Every change that touches more than one tree is one sled transaction over
//! the trees it touches.
//!
//! # The committer
//!
//! In sled 0.34 every multi-tree transaction takes a process-wide write lock
//! and writes out sled's current I/O buffer (`pwrite` + `sync_file_range`),
//! so transactions run one at a time at the speed of the disk, and each one
//! left unflushed adds to the cost of the next flush (measured: 1000
//! unflushed single-session transactions took ~86 ms to flush). So writes go
//! through one committer thread per store, `sessiondb-commit`, that takes
//! every write waiting in its queue (up to 1024) and applies them in one
//! transaction, each with its own outcome: one session's conflict never
//! aborts another's write. Under concurrency the cost of a transaction is
//! shared by everyone in the batch, as group commit shares the `fsync`.
//!
//! # Write-behind
//!
//! A writer does not wait for the committer either. A write's outcome
//! (written, conflict, missing) depends only on the `sessions` tree, so the
//! writer decides it at once, under one lock, against the tree with the
//! writes still queued laid over it, and returns. The committer applies
//! the queue in the same order, still one transaction per batch over every
//! tree a write touches, and compares each outcome with the one the writer
//! was given; a difference or a failed transaction stops the store (every
//! later call gets an error) rather than let it hold something other than
//! what it acknowledged. Loads look at the queue before the tree; index
//! reads (sweeps, per-user queries, scans, check) and flushes wait for the
//! queue to drain, so strict mode's flush still covers every write it
//! acknowledges. At most 1024 writes wait; past that, writers wait too.
//!
//! # Durability
//!
//! sled's `flush()` writes its buffers with `sync_file_range`, which neither
//! flushes the drive's cache nor the file's metadata, and sled writes blob
//! files (values or nodes over ~128 KiB) with no sync at all. So
//! [`Backend::flush`] here is `Db::flush()`, then `fdatasync` of `DIR/db`,
//! then `fsync` of blob files written since the last flush and of
//! `DIR/blobs`.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional as _, TransactionalTree,
    UnabortableTransactionError,
};

use super::ops::{self, Tree, Trees};
use super::{Backend, BackendStats, Outcome, UserPage, Violation, keys};
use crate::error::{Error, Result};
use crate::record::Meta;
use crate::token::SessionId;

const MARKER: &str = "SESSIONDB";
const MARKER_TEXT: &[u8] = b"sessiondb store\nformat 1\n";
const CLEAN: &str = "CLEAN";

/// Tuning passed down from [`Config`](crate::Config).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SledOptions {
    pub cache_capacity: u64,
    pub flush_every_ms: Option<u64>,
    /// Bytes of records kept in memory in front of sled (see `Overlay`).
    pub session_cache_bytes: usize,
}

/// Sessions in sled trees; see the [module docs](self).
pub struct SledBackend {
    path: PathBuf,
    db: sled::Db,
    sessions: sled::Tree,
    expiry: sled::Tree,
    users: sled::Tree,
    quarantine: sled::Tree,
    revoked: sled::Tree,
    /// Serialises a revocation's read-modify-write of its two entries.
    revoking: Mutex<()>,
    /// `DIR/db`, opened by us for `fdatasync`.
    db_file: File,
    /// Queue to the committer thread; `None` once stopped.
    commit: Option<crossbeam_channel::Sender<Request>>,
    /// Writes handed to the committer and not yet applied (see `Behind`).
    behind: Arc<Behind>,
    committer: Option<std::thread::JoinHandle<()>>,
    /// Held for the life of the backend: its `flock` is the store's lock.
    _marker: File,
    /// Whether the last run closed cleanly (or the store is new).
    pub(crate) was_clean: bool,
    /// Blob files already synced, by name.
    synced_blobs: Mutex<std::collections::BTreeSet<std::ffi::OsString>>,
}

impl std::fmt::Debug for SledBackend {
    /// Settings and counts only. sled's own `Debug` of a `Db` or a `Tree`
    /// prints every node, keys and records included (walking the whole
    /// tree to do it), and the write queue holds whole records: none of
    /// that may reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("SledBackend");
        d.field("path", &self.path)
            .field("was_clean", &self.was_clean)
            .field("committer_running", &self.committer.is_some());
        // Never wait for the lock: Debug may run anywhere, even under it.
        let overlay = match self.behind.state.try_lock() {
            Ok(ov) => Some(ov),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        match overlay {
            Some(ov) => d
                .field("cached_records", &ov.map.len())
                .field("cache_bytes", &ov.bytes)
                .field("cache_capacity", &ov.capacity)
                .field("writes_queued", &(ov.issued - ov.applied))
                .field("failed", &ov.failed),
            None => d.field("overlay", &"<busy>"),
        };
        d.finish_non_exhaustive()
    }
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
        // A child process forked by anyone in this process shares the lock
        // (flock belongs to the open file, and the child holds a copy of the
        // descriptor until its exec closes it), so a store closed a moment
        // ago can look held for that moment. A short grace covers it; a
        // store held by a running service still fails within it.
        let grace = std::time::Instant::now() + std::time::Duration::from_millis(250);
        loop {
            match marker.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < grace => {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(Error::Locked {
                        path: dir.to_owned(),
                        source: "the store's lock file is held".into(),
                    });
                }
                Err(fs::TryLockError::Error(e)) => return Err(io_err(&marker_path)(e)),
            }
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

        // Take the clean-shutdown mark before anything can be written, so a
        // crash from here on leaves it absent.
        let clean = dir.join(CLEAN);
        let was_clean = text.is_empty() || clean.exists();
        match fs::remove_file(&clean) {
            Ok(()) => File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(dir))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&clean)(e)),
        }
        let db = open_sled(dir, opts)?;
        let tree = |name: &str| db.open_tree(name).map_err(storage);
        let (sessions, expiry, users) = (tree("sessions")?, tree("expiry")?, tree("users")?);
        let quarantine = tree("quarantine")?;
        let revoked = tree("revoked")?;
        let db_path = dir.join("db");
        let db_file = File::open(&db_path).map_err(io_err(&db_path))?;
        let (commit, queue) = crossbeam_channel::unbounded::<Request>();
        let trees = (
            sessions.clone(),
            expiry.clone(),
            users.clone(),
            quarantine.clone(),
        );
        let behind = Arc::new(Behind {
            state: Mutex::new(Overlay {
                capacity: opts.session_cache_bytes,
                ..Overlay::default()
            }),
            progress: std::sync::Condvar::new(),
        });
        let committer_behind = behind.clone();
        let committer = std::thread::Builder::new()
            .name("sessiondb-commit".into())
            .spawn(move || run_committer(&trees, &queue, &committer_behind))
            .map_err(io_err(dir))?;
        Ok(Self {
            path: dir.to_owned(),
            db,
            sessions,
            expiry,
            users,
            quarantine,
            revoked,
            revoking: Mutex::new(()),
            db_file,
            commit: Some(commit),
            behind,
            committer: Some(committer),
            was_clean,
            _marker: marker,
            synced_blobs: Mutex::default(),
        })
    }

    /// Decides each write's outcome now, against the stored trees plus the
    /// writes still queued, and hands it to the committer without waiting
    /// for it to be applied (see `Behind`). The committer applies the
    /// writes in the same order, so it reaches the same outcomes.
    fn submit(&self, ops: Vec<WriteOp>) -> Result<Vec<Done>> {
        let Some(commit) = &self.commit else {
            return Err(Error::Closed);
        };
        let mut out = Vec::with_capacity(ops.len());
        let mut st = self.behind.lock();
        for op in ops {
            // Backpressure: a bounded backlog bounds memory and how long a
            // flush (which drains it) can take.
            while st.issued - st.applied >= MAX_BEHIND && st.failed.is_none() {
                st = self.behind.wait(st);
            }
            if let Some(why) = &st.failed {
                return Err(failed(why));
            }
            let view = View {
                b: self,
                ov: &st,
                local: RefCell::new(HashMap::new()),
            };
            let done = match predict(&view, &op) {
                Ok(done) => done,
                // This write's own error (a corrupt record): nothing queued.
                Err(ViewError::Op(e)) => {
                    out.push(Err(e));
                    continue;
                }
                Err(ViewError::Storage(e)) => return Err(e),
            };
            let changes = view.local.into_inner();
            if !changes.is_empty() {
                st.issued += 1;
                let seq = st.issued;
                for (id, value) in changes {
                    st.put(id, seq, value.map(Arc::from));
                }
                commit
                    .send(Request {
                        op,
                        seq,
                        predicted: done,
                    })
                    .map_err(|_| committer_gone())?;
            }
            out.push(Ok(done));
        }
        st.evict();
        drop(st);
        out.into_iter().collect()
    }

    fn submit_one(&self, op: WriteOp) -> Result<Done> {
        self.submit(vec![op])?.pop().ok_or_else(committer_gone)
    }

    /// Waits until every write handed over so far is applied to the trees:
    /// before reading an index, and before a flush.
    fn drain(&self) -> Result<()> {
        let mut st = self.behind.lock();
        let target = st.issued;
        while st.applied < target && st.failed.is_none() {
            st = self.behind.wait(st);
        }
        match &st.failed {
            Some(why) => Err(failed(why)),
            None => Ok(()),
        }
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
    q: &'a TransactionalTree,
}

/// Inside a batch: a storage failure ends the whole transaction; an error
/// of one operation (a corrupt record) ends only that operation.
enum TxError {
    Storage(UnabortableTransactionError),
    Op(Error),
}

impl From<UnabortableTransactionError> for TxError {
    fn from(e: UnabortableTransactionError) -> Self {
        TxError::Storage(e)
    }
}

impl Trees for Txn<'_> {
    type Error = TxError;
    type Bytes = sled::IVec;

    fn abort(e: Error) -> TxError {
        TxError::Op(e)
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
    fn remove_raw(&self, tree: Tree, key: &[u8]) -> std::result::Result<(), TxError> {
        let t = match tree {
            Tree::Sessions => self.s,
            Tree::Expiry => self.e,
            Tree::Users => self.u,
        };
        t.remove(key)?;
        Ok(())
    }
    fn session_raw(&self, key: &[u8]) -> std::result::Result<Option<sled::IVec>, TxError> {
        Ok(self.s.get(key)?)
    }
    fn quarantine(&self, key: &[u8], value: &[u8]) -> std::result::Result<(), TxError> {
        self.q.insert(key, value)?;
        Ok(())
    }
}

impl Backend for SledBackend {
    fn get(&self, id: &SessionId, now_ms: u64) -> Result<Option<Vec<u8>>> {
        let (cached, issued, epoch) = {
            let mut st = self.behind.lock();
            if let Some(why) = &st.failed {
                return Err(failed(why));
            }
            let (issued, epoch) = (st.issued, st.epoch);
            let cached = st.map.get_mut(id).map(|e| {
                e.hot = true;
                e.value.clone()
            });
            (cached, issued, epoch)
        };
        // Not in memory: the tree has the newest value (a write queued after
        // the look is concurrent with this read).
        let value = match cached {
            Some(Some(v)) => v.to_vec(),
            Some(None) => return Ok(None),
            None => match self.sessions.get(id.as_bytes()).map_err(storage)? {
                Some(v) => {
                    #[cfg(test)]
                    tests::between_read_and_fill();
                    self.behind.lock().fill(id, &v, issued, epoch);
                    v.to_vec()
                }
                None => return Ok(None),
            },
        };
        let (meta, _) = Meta::parse(&value).map_err(|e| ops::corrupt(id, e))?;
        Ok((meta.expires_at > now_ms).then_some(value))
    }

    fn put(
        &self,
        id: &SessionId,
        expected: Option<u64>,
        value: &[u8],
        now: u64,
    ) -> Result<Outcome> {
        self.submit_one(WriteOp::Put {
            id: *id,
            expected,
            value: value.to_vec(),
            now,
        })?
        .outcome()
    }

    fn rename(
        &self,
        old: &SessionId,
        expected: u64,
        new: &SessionId,
        value: &[u8],
        now_ms: u64,
    ) -> Result<Outcome> {
        self.submit_one(WriteOp::Rename {
            old: *old,
            expected,
            new: *new,
            value: value.to_vec(),
            now: now_ms,
        })?
        .outcome()
    }

    fn delete(&self, id: &SessionId) -> Result<bool> {
        self.submit_one(WriteOp::Delete { id: *id })?.deleted()
    }

    fn expired(&self, now_ms: u64, limit: usize) -> Result<Vec<SessionId>> {
        self.drain()?;
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
        self.submit_one(WriteOp::DeleteIfExpired {
            id: *id,
            now: now_ms,
        })?
        .deleted()
    }

    fn delete_expired(&self, ids: &[SessionId], now_ms: u64) -> Result<u64> {
        let ops = ids
            .iter()
            .map(|id| WriteOp::DeleteIfExpired {
                id: *id,
                now: now_ms,
            })
            .collect();
        let mut n = 0;
        for done in self.submit(ops)? {
            n += u64::from(done.deleted()?);
        }
        Ok(n)
    }

    fn user_sessions(&self, user: &str, cursor: Option<&[u8]>, limit: usize) -> Result<UserPage> {
        use std::ops::Bound;
        self.drain()?;
        let prefix = keys::user_prefix(user);
        let start = match cursor {
            Some(after) => Bound::Excluded([prefix.as_slice(), after].concat()),
            None => Bound::Included(prefix.clone()),
        };
        let limit = limit.max(1);
        let mut ids = Vec::new();
        for item in self.users.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            let (key, _) = item.map_err(storage)?;
            if !key.starts_with(&prefix) {
                break;
            }
            if let Some((_, id)) = keys::parse_user(&key) {
                ids.push(id);
                if ids.len() >= limit {
                    break;
                }
            }
        }
        let next = match ids.last() {
            Some(last) if ids.len() >= limit => Some(last.as_bytes().to_vec()),
            _ => None,
        };
        Ok(UserPage::new(ids, next))
    }

    fn scan(&self, after: Option<&SessionId>, limit: usize) -> Result<Vec<(SessionId, Vec<u8>)>> {
        use std::ops::Bound;
        self.drain()?;
        let start = match after {
            Some(id) => Bound::Excluded(id.as_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in self.sessions.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            let (key, value) = item.map_err(storage)?;
            // Keys are 32-byte ids; anything else is not a session (check()
            // reports it).
            if let Ok(bytes) = <[u8; SessionId::LEN]>::try_from(&key[..]) {
                out.push((SessionId::from_bytes(bytes), value.to_vec()));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn revoke(&self, key: &[u8], at_ms: u64, until_ms: u64) -> Result<()> {
        let _one_at_a_time = self.revoking.lock().unwrap_or_else(|e| e.into_inner());
        let main = keys::revocation(key);
        let old = self
            .revoked
            .get(&main)
            .map_err(storage)?
            .and_then(|v| keys::parse_revocation(&v));
        let (at, until) = match old {
            Some((at, until)) => (at.max(at_ms), until.max(until_ms)),
            None => (at_ms, until_ms),
        };
        let mut batch = sled::Batch::default();
        if let Some((_, old_until)) = old {
            batch.remove(keys::revocation_due(old_until, key));
        }
        batch.insert(keys::revocation_due(until, key), &[][..]);
        batch.insert(main, [at.to_be_bytes(), until.to_be_bytes()].concat());
        self.revoked.apply_batch(batch).map_err(storage)
    }

    fn revoked_at(&self, key: &[u8], now_ms: u64) -> Result<Option<u64>> {
        Ok(self
            .revoked
            .get(keys::revocation(key))
            .map_err(storage)?
            .and_then(|v| keys::parse_revocation(&v))
            .filter(|(_, until)| *until > now_ms)
            .map(|(at, _)| at))
    }

    fn forget_revocations(&self, now_ms: u64, limit: usize) -> Result<u64> {
        let _one_at_a_time = self.revoking.lock().unwrap_or_else(|e| e.into_inner());
        let end = keys::revocation_due(now_ms, &[0xff; 8]);
        let mut batch = sled::Batch::default();
        let mut n = 0u64;
        for item in self.revoked.range(&b"t"[..]..=&end[..]).take(limit) {
            let (due, _) = item.map_err(storage)?;
            let Some(key) = due.get(9..) else { continue };
            // Only if the main entry is still this one's (not moved later).
            let current = self
                .revoked
                .get(keys::revocation(key))
                .map_err(storage)?
                .and_then(|v| keys::parse_revocation(&v));
            if current.is_some_and(|(_, until)| until <= now_ms) {
                batch.remove(keys::revocation(key));
            }
            batch.remove(due.to_vec());
            n += 1;
        }
        self.revoked.apply_batch(batch).map_err(storage)?;
        Ok(n)
    }

    fn flush(&self) -> Result<()> {
        self.drain()?;
        self.db.flush().map_err(storage)?;
        self.db_file
            .sync_data()
            .map_err(io_err(&self.path.join("db")))?;
        self.sync_blobs()
    }

    fn stats(&self, now_ms: u64) -> Result<BackendStats> {
        self.drain()?;
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

    fn fix(&self, violation: &Violation) -> Result<bool> {
        self.drain()?;
        // This changes the trees behind the cache's back: forget what it
        // read, and any read in flight.
        self.behind.lock().forget_reads();
        let result = (&self.sessions, &self.expiry, &self.users, &self.quarantine).transaction(
            |(s, e, u, q)| match ops::fix(&Txn { s, e, u, q }, violation) {
                Ok(changed) => Ok(Ok(changed)),
                Err(TxError::Op(e)) => Ok(Err(e)),
                Err(TxError::Storage(e)) => Err(ConflictableTransactionError::from(e)),
            },
        );
        match result {
            Ok(done) => done,
            Err(TransactionError::Storage(e)) => Err(storage(e)),
            Err(TransactionError::Abort(())) => Err(committer_gone()),
        }
    }

    fn quarantined(&self) -> Result<u64> {
        self.drain()?;
        Ok(self.quarantine.len() as u64)
    }

    fn close(&self) -> Result<()> {
        self.flush()?;
        let clean = self.path.join(CLEAN);
        File::create(&clean)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&clean))?;
        File::open(&self.path)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.path))
    }

    fn check(&self) -> Result<Vec<Violation>> {
        self.drain()?;
        // Streams: one walk per tree, point lookups for the links, so the
        // crash check at open needs no memory in proportion to the store.
        let sessions = self
            .sessions
            .iter()
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(storage));
        let keys_of = |tree: &sled::Tree| {
            tree.iter()
                .keys()
                .map(|r| r.map(|k| k.to_vec()).map_err(storage))
        };
        ops::check_streaming(sessions, keys_of(&self.expiry), keys_of(&self.users), self)
    }
}

impl ops::Lookups for SledBackend {
    fn session(&self, id: &SessionId) -> Result<Option<Vec<u8>>> {
        Ok(self
            .sessions
            .get(id.as_bytes())
            .map_err(storage)?
            .map(|v| v.to_vec()))
    }

    fn has_expiry(&self, key: &[u8]) -> Result<bool> {
        self.expiry.contains_key(key).map_err(storage)
    }

    fn has_user(&self, key: &[u8]) -> Result<bool> {
        self.users.contains_key(key).map_err(storage)
    }
}

impl Drop for SledBackend {
    fn drop(&mut self) {
        // Closing the queue ends the committer once it has drained it.
        self.commit = None;
        if let Some(handle) = self.committer.take() {
            let _ = handle.join();
        }
    }
}

/// One write, as queued for the committer.
enum WriteOp {
    Put {
        id: SessionId,
        expected: Option<u64>,
        value: Vec<u8>,
        now: u64,
    },
    Rename {
        old: SessionId,
        expected: u64,
        new: SessionId,
        value: Vec<u8>,
        now: u64,
    },
    Delete {
        id: SessionId,
    },
    DeleteIfExpired {
        id: SessionId,
        now: u64,
    },
}

/// A write's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    Outcome(Outcome),
    Deleted(bool),
}

impl Done {
    fn outcome(self) -> Result<Outcome> {
        match self {
            Done::Outcome(o) => Ok(o),
            Done::Deleted(_) => Err(committer_gone()),
        }
    }

    fn deleted(self) -> Result<bool> {
        match self {
            Done::Deleted(d) => Ok(d),
            Done::Outcome(_) => Err(committer_gone()),
        }
    }
}

struct Request {
    op: WriteOp,
    /// Its place in the order writes were decided in.
    seq: u64,
    /// The outcome the caller was given.
    predicted: Done,
}

fn committer_gone() -> Error {
    Error::Storage("the sessiondb-commit thread is gone".into())
}

/// The most writes one transaction takes: bounds how long a batch holds
/// sled's global lock (and so how long readers can wait behind it).
const MAX_BATCH: usize = 1024;

fn run_committer(
    (sessions, expiry, users, quarantine): &(sled::Tree, sled::Tree, sled::Tree, sled::Tree),
    queue: &crossbeam_channel::Receiver<Request>,
    behind: &Behind,
) {
    /// If this thread dies (a panic inside sled), writers waiting for it
    /// must get an error, not wait forever.
    struct OnPanic<'a>(&'a Behind);
    impl Drop for OnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0
                    .lock()
                    .failed
                    .get_or_insert_with(|| "the committer thread panicked".to_owned());
                self.0.progress.notify_all();
            }
        }
    }
    let _guard = OnPanic(behind);
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        // sled may run this closure more than once; it computes every
        // outcome afresh each time.
        let result = (sessions, expiry, users, quarantine).transaction(|(s, e, u, q)| {
            let t = Txn { s, e, u, q };
            let mut out = Vec::with_capacity(batch.len());
            for request in &batch {
                out.push(apply(&t, &request.op)?);
            }
            Ok::<_, ConflictableTransactionError<()>>(out)
        });
        // The callers were answered already: any difference from what they
        // were told, or a failed transaction, means acknowledged writes are
        // not what the store holds, and the store refuses all further work.
        let failure = match result {
            Ok(outcomes) => batch
                .iter()
                .zip(outcomes)
                .find(|(r, got)| got.as_ref().ok() != Some(&r.predicted))
                .map(|(r, got)| {
                    format!(
                        "write {} was answered {:?} but applied as {got:?}",
                        r.seq, r.predicted
                    )
                }),
            Err(e) => Some(format!("a batch of writes failed to apply: {e:?}")),
        };
        let last = batch.last().map_or(0, |r| r.seq);
        let mut st = behind.lock();
        if let Some(why) = failure {
            st.failed.get_or_insert(why);
        }
        st.applied = st.applied.max(last);
        st.evict();
        drop(st);
        behind.progress.notify_all();
    }
}

/// Writes decided and handed to the committer but not yet applied.
///
/// A write's outcome (conflict, missing, written) depends only on the
/// `sessions` tree, so `submit` decides it at once, under this lock,
/// against the tree plus the queued writes (`map`), and returns without
/// waiting for sled. The committer applies the queue in the same order and
/// checks it reaches the same outcomes. Reads of a session look here
/// first; reads of the index trees first wait for the queue to drain.
/// Relaxed mode thus acknowledges a write before sled has it (within the
/// same bound of unflushed writes as before); strict mode's flush drains
/// the queue before it syncs, so what it acknowledges is on disk.
///
/// The same map is a read cache: an applied write stays in it, and so does
/// a record a load read from the tree, until the cache is over its byte
/// budget (CLOCK: a load marks an entry; eviction passes over a marked one
/// once). A queued write is never evicted. A record read from the tree is
/// cached only if no write to any session that was issued after the read
/// began has been evicted since (`newest_evicted`): every write to this
/// session issued before is in the tree by then, and every write after is
/// either still in the map, where it wins, or counted there.
#[derive(Debug)]
struct Behind {
    state: Mutex<Overlay>,
    progress: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct Overlay {
    /// Per session: its newest value, queued or cached.
    map: HashMap<SessionId, Entry>,
    /// Eviction order: (id, generation); a slot whose generation is not
    /// its entry's is stale and skipped.
    ring: VecDeque<(SessionId, u64)>,
    next_gen: u64,
    /// What `map` and `ring` hold, by `cost`.
    bytes: usize,
    /// The budget of `bytes`; queued writes may go over it.
    capacity: usize,
    /// The highest write sequence number evicted so far.
    newest_evicted: u64,
    /// Bumped when the trees change other than through the queue.
    epoch: u64,
    /// The sequence number of the last write handed over.
    issued: u64,
    /// Every write up to this one has been applied.
    applied: u64,
    /// Set when a queued write could not be applied as answered.
    failed: Option<String>,
}

impl Behind {
    fn lock(&self) -> std::sync::MutexGuard<'_, Overlay> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(
        &self,
        guard: std::sync::MutexGuard<'a, Overlay>,
    ) -> std::sync::MutexGuard<'a, Overlay> {
        self.progress.wait(guard).unwrap_or_else(|e| e.into_inner())
    }
}

/// A session's newest value (`None`: deleted) and the sequence number of
/// the write that left it (0: read from the tree).
#[derive(Debug)]
struct Entry {
    seq: u64,
    value: Option<Arc<[u8]>>,
    /// Loaded since the eviction hand last passed.
    hot: bool,
    generation: u64,
}

/// Bookkeeping bytes counted per entry and per ring slot.
const ENTRY_COST: usize = 96;
const SLOT_COST: usize = 40;

fn cost(e: &Entry) -> usize {
    ENTRY_COST + e.value.as_ref().map_or(0, |v| v.len())
}

impl Overlay {
    /// Records `id`'s newest value, left by write `seq` (0: read).
    fn put(&mut self, id: SessionId, seq: u64, value: Option<Arc<[u8]>>) {
        self.next_gen += 1;
        let entry = Entry {
            seq,
            value,
            hot: false,
            generation: self.next_gen,
        };
        self.bytes += cost(&entry) + SLOT_COST;
        if let Some(old) = self.map.insert(id, entry) {
            self.bytes = self.bytes.saturating_sub(cost(&old));
        }
        self.ring.push_back((id, self.next_gen));
    }

    /// Caches a record read from the tree, if that is safe (see `Behind`):
    /// `issued` and `epoch` are as they were when the read began.
    fn fill(&mut self, id: &SessionId, value: &[u8], issued: u64, epoch: u64) {
        if self.capacity == 0
            || self.map.contains_key(id)
            || self.newest_evicted > issued
            || self.epoch != epoch
        {
            return;
        }
        self.put(*id, 0, Some(Arc::from(value)));
        self.evict();
    }

    /// Evicts applied entries until within the budget.
    fn evict(&mut self) {
        // Every slot is looked at at most twice (once to clear its mark).
        let mut budget = 2 * self.ring.len() + 1;
        while self.bytes > self.capacity && budget > 0 {
            budget -= 1;
            let Some((id, generation)) = self.ring.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(SLOT_COST);
            let Some(e) = self.map.get_mut(&id) else {
                continue;
            };
            if e.generation != generation {
                continue;
            }
            if e.seq > self.applied || e.hot {
                e.hot = false;
                self.ring.push_back((id, generation));
                self.bytes += SLOT_COST;
                continue;
            }
            self.newest_evicted = self.newest_evicted.max(e.seq);
            self.bytes = self.bytes.saturating_sub(cost(e));
            self.map.remove(&id);
        }
    }

    /// Drops every cached entry (queued writes stay) and refuses fills of
    /// reads already in flight.
    fn forget_reads(&mut self) {
        let applied = self.applied;
        self.map.retain(|_, e| e.seq > applied);
        self.epoch += 1;
        let map = &self.map;
        self.ring
            .retain(|(id, g)| map.get(id).is_some_and(|e| e.generation == *g));
        self.bytes = self.map.values().map(cost).sum::<usize>() + self.ring.len() * SLOT_COST;
    }
}

/// The most writes queued and not yet applied before writers wait.
const MAX_BEHIND: u64 = 1024;

fn failed(why: &str) -> Error {
    Error::Storage(format!("the store stopped taking writes: {why}").into())
}

/// The trees as a queued write would find them: the `sessions` tree with
/// the queued writes and this write's own changes laid over it. Index
/// changes are the committer's business.
struct View<'a> {
    b: &'a SledBackend,
    ov: &'a Overlay,
    local: RefCell<HashMap<SessionId, Option<Vec<u8>>>>,
}

enum ViewError {
    Storage(Error),
    Op(Error),
}

impl Trees for View<'_> {
    type Error = ViewError;
    type Bytes = Vec<u8>;

    fn abort(e: Error) -> ViewError {
        ViewError::Op(e)
    }
    fn session(&self, id: &SessionId) -> std::result::Result<Option<Vec<u8>>, ViewError> {
        if let Some(v) = self.local.borrow().get(id) {
            return Ok(v.clone());
        }
        if let Some(e) = self.ov.map.get(id) {
            return Ok(e.value.as_deref().map(<[u8]>::to_vec));
        }
        self.b
            .sessions
            .get(id.as_bytes())
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| ViewError::Storage(storage(e)))
    }
    fn set_session(&self, id: &SessionId, value: &[u8]) -> std::result::Result<(), ViewError> {
        self.local.borrow_mut().insert(*id, Some(value.to_vec()));
        Ok(())
    }
    fn remove_session(&self, id: &SessionId) -> std::result::Result<(), ViewError> {
        self.local.borrow_mut().insert(*id, None);
        Ok(())
    }
    fn set_expiry(&self, _: [u8; 40]) -> std::result::Result<(), ViewError> {
        Ok(())
    }
    fn remove_expiry(&self, _: [u8; 40]) -> std::result::Result<(), ViewError> {
        Ok(())
    }
    fn set_user(&self, _: Vec<u8>) -> std::result::Result<(), ViewError> {
        Ok(())
    }
    fn remove_user(&self, _: Vec<u8>) -> std::result::Result<(), ViewError> {
        Ok(())
    }
    fn remove_raw(&self, _: Tree, _: &[u8]) -> std::result::Result<(), ViewError> {
        Ok(())
    }
    fn session_raw(&self, _: &[u8]) -> std::result::Result<Option<Vec<u8>>, ViewError> {
        Ok(None)
    }
    fn quarantine(&self, _: &[u8], _: &[u8]) -> std::result::Result<(), ViewError> {
        Ok(())
    }
}

/// Runs one write's logic over any view of the trees: the overlay when
/// `submit` decides it, the transaction when the committer applies it.
fn run_op<T: Trees>(t: &T, op: &WriteOp) -> std::result::Result<Done, T::Error> {
    match op {
        WriteOp::Put {
            id,
            expected,
            value,
            now,
        } => ops::put(t, id, *expected, value, *now).map(Done::Outcome),
        WriteOp::Rename {
            old,
            expected,
            new,
            value,
            now,
        } => ops::rename(t, old, *expected, new, value, *now).map(Done::Outcome),
        WriteOp::Delete { id } => ops::delete(t, id).map(Done::Deleted),
        WriteOp::DeleteIfExpired { id, now } => {
            ops::delete_if_expired(t, id, *now).map(Done::Deleted)
        }
    }
}

/// Decides one write against the view, as `apply` will in the transaction.
fn predict(t: &View<'_>, op: &WriteOp) -> std::result::Result<Done, ViewError> {
    run_op(t, op)
}

/// Applies one write inside the batch's transaction.
fn apply(t: &Txn<'_>, op: &WriteOp) -> Result<Result<Done>, UnabortableTransactionError> {
    let result = run_op(t, op);
    match result {
        Ok(done) => Ok(Ok(done)),
        Err(TxError::Op(e)) => Ok(Err(e)),
        Err(TxError::Storage(e)) => Err(e),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::RefCell;

    use super::*;

    thread_local! {
        static BETWEEN: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
    }

    /// Runs the hook a test set, once, where a load has read the tree and
    /// not yet cached what it read.
    pub(crate) fn between_read_and_fill() {
        if let Some(f) = BETWEEN.with(|b| b.borrow_mut().take()) {
            f();
        }
    }

    fn record(version: u64) -> Vec<u8> {
        let body = crate::record::Body {
            last_seen_ms: 1_000,
            absolute_deadline_ms: u64::MAX,
            idle_timeout_ms: 1_000_000,
            ..crate::record::Body::default()
        };
        crate::record::encode(version, None, &body).expect("encode")
    }

    fn version(b: &SledBackend, id: &SessionId) -> u64 {
        let v = b.get(id, 0).expect("get").expect("present");
        Meta::parse(&v).expect("meta").0.version
    }

    /// A load reads version 1 from the tree; before it caches it, version 2
    /// is written, applied and evicted. The load must not cache version 1.
    #[test]
    fn a_slow_load_does_not_cache_what_a_write_replaced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = SledOptions {
            cache_capacity: 1 << 20,
            flush_every_ms: None,
            session_cache_bytes: 1024,
        };
        let b = Arc::new(SledBackend::open(dir.path(), opts).expect("open"));
        let a = SessionId::from_bytes([1; 32]);
        // Enough other sessions to push everything else out of the cache.
        fn churn(b: &SledBackend, from: u8) {
            for i in 0..32u8 {
                let id = SessionId::from_bytes([from.wrapping_add(i); 32]);
                b.put(&id, None, &record(1), 0).expect("put");
            }
            b.flush().expect("flush");
        }
        b.put(&a, None, &record(1), 0).expect("put");
        b.flush().expect("flush");
        churn(&b, 10);
        {
            let b = b.clone();
            BETWEEN.with(|h| {
                *h.borrow_mut() = Some(Box::new(move || {
                    let v2 = record(2);
                    assert_eq!(b.put(&a, Some(1), &v2, 0).expect("put"), Outcome::Written);
                    b.flush().expect("flush");
                    churn(&b, 100);
                }));
            });
        }
        // This load read version 1 before the write; it may return it.
        let first = version(&b, &a);
        assert!(first == 1 || first == 2);
        assert_eq!(version(&b, &a), 2, "a stale read was cached");
    }
}
