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
//! ```
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
    UnabortableTransactionError,
};

use super::ops::{self, Tree, Trees};
use super::{Backend, BackendStats, Outcome, Violation, keys};
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
}

/// Sessions in sled trees; see the [module docs](self).
#[derive(Debug)]
pub struct SledBackend {
    path: PathBuf,
    db: sled::Db,
    sessions: sled::Tree,
    expiry: sled::Tree,
    users: sled::Tree,
    quarantine: sled::Tree,
    /// `DIR/db`, opened by us for `fdatasync`.
    db_file: File,
    /// Queue to the committer thread; `None` once stopped.
    commit: Option<crossbeam_channel::Sender<Request>>,
    committer: Option<std::thread::JoinHandle<()>>,
    /// Held for the life of the backend: its `flock` is the store's lock.
    _marker: File,
    /// Whether the last run closed cleanly (or the store is new).
    pub(crate) was_clean: bool,
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
        let db_path = dir.join("db");
        let db_file = File::open(&db_path).map_err(io_err(&db_path))?;
        let (commit, queue) = crossbeam_channel::unbounded::<Request>();
        let trees = (
            sessions.clone(),
            expiry.clone(),
            users.clone(),
            quarantine.clone(),
        );
        let committer = std::thread::Builder::new()
            .name("sessiondb-commit".into())
            .spawn(move || run_committer(&trees, &queue))
            .map_err(io_err(dir))?;
        Ok(Self {
            path: dir.to_owned(),
            db,
            sessions,
            expiry,
            users,
            quarantine,
            db_file,
            commit: Some(commit),
            committer: Some(committer),
            was_clean,
            _marker: marker,
            synced_blobs: Mutex::default(),
        })
    }

    /// Hands writes to the committer and waits for their outcomes, in order.
    /// Submitting several at once lets them share one transaction.
    fn submit(&self, ops: Vec<WriteOp>) -> Result<Vec<Done>> {
        let Some(commit) = &self.commit else {
            return Err(Error::Closed);
        };
        let mut waiting = Vec::with_capacity(ops.len());
        for op in ops {
            let (reply, answer) = crossbeam_channel::bounded(1);
            commit
                .send(Request { op, reply })
                .map_err(|_| committer_gone())?;
            waiting.push(answer);
        }
        waiting
            .into_iter()
            .map(|answer| answer.recv().map_err(|_| committer_gone())?)
            .collect()
    }

    fn submit_one(&self, op: WriteOp) -> Result<Done> {
        self.submit(vec![op])?.pop().ok_or_else(committer_gone)
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

    fn scan(&self, after: Option<&SessionId>, limit: usize) -> Result<Vec<(SessionId, Vec<u8>)>> {
        use std::ops::Bound;
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

    fn fix(&self, violation: &Violation) -> Result<bool> {
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
    reply: crossbeam_channel::Sender<Result<Done>>,
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
) {
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
        match result {
            Ok(outcomes) => {
                for (request, outcome) in batch.iter().zip(outcomes) {
                    let _ = request.reply.send(outcome);
                }
            }
            Err(e) => {
                let e = match e {
                    TransactionError::Storage(e) => e,
                    TransactionError::Abort(()) => {
                        sled::Error::ReportableBug("sessiondb batch aborted".into())
                    }
                };
                for request in &batch {
                    let _ = request.reply.send(Err(storage(e.clone())));
                }
            }
        }
    }
}

/// Applies one write inside the batch's transaction.
fn apply(t: &Txn<'_>, op: &WriteOp) -> Result<Result<Done>, UnabortableTransactionError> {
    let result = match op {
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
    };
    match result {
        Ok(done) => Ok(Ok(done)),
        Err(TxError::Op(e)) => Ok(Err(e)),
        Err(TxError::Storage(e)) => Err(e),
    }
}
