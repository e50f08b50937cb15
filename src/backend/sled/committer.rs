//! The write-behind committer: a queue of decided writes, and the thread
//! that applies them to sled, in order.
//!
//! # Write-behind
//!
//! A writer does not wait for sled. A write's outcome (written, conflict,
//! missing) depends only on the `sessions` tree, so the writer decides it
//! at once, under one lock, against the tree with the writes still queued
//! laid over it (the [record cache](super::cache)), and returns. Deciding
//! it runs the shared write logic of [`ops`] over a [`View`] that records
//! every change the write makes to any tree, in the order `ops` makes it.
//! Loads look at the cache before the tree; index reads (sweeps, per-user
//! queries, scans, check) and flushes first wait for the queue to drain,
//! so strict mode's flush still covers every write it acknowledges. At
//! most [`MAX_QUEUED`] writes wait; past that, writers wait too.
//!
//! # Ordered writes ([`Apply::Ordered`], the default)
//!
//! One thread per store, `sessiondb-commit`, takes every write waiting in
//! its queue (up to [`MAX_BATCH`]) and makes each write's recorded changes
//! as plain sled inserts and removes, in order. It is the only writer of
//! the `sessions`, `expiry` and `users` trees (a repair runs with the
//! queue drained and held), so nothing can have changed them between a
//! writer's decision and its application, and it reads nothing. sled puts
//! every change of every tree in one log, in the order this one thread
//! makes them, and its recovery keeps a prefix of that log; `ops` orders
//! each write's changes so that any prefix leaves at most stale index
//! entries (see the crate docs, "Storage"). The crash and power-cut tests
//! hold it to that. A failed insert poisons the store (every later call
//! gets [`Error::Poisoned`]) rather than let it hold something other than
//! what it acknowledged.
//!
//! # Transactions ([`Apply::Transactions`], the first write path)
//!
//! Kept for the benchmarks' side-by-side (`Config::write_path_v1`): each
//! batch is one sled transaction over every tree, re-running each write's
//! logic inside it and comparing the outcome with the one its writer was
//! given. In sled 0.34 a multi-tree transaction takes a process-wide write
//! lock, reads every key it writes, and writes out sled's current I/O
//! buffers; measured against the ordered path, it costs a create about 3x
//! (`benches/run.sh`, BENCHMARKS.md).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use sled::transaction::UnabortableTransactionError;

use super::super::ops::{self, Tree, Trees};
use super::super::{Outcome, Stored};
use super::cache::{Cached, RecordCache};
use super::storage;
use super::txn::{TxError, Txn, WriteTrees};
use crate::error::{Error, Result};
use crate::metrics::Meter;
use crate::poison::Poison;
use crate::token::SessionId;

/// The most writes one transaction takes: bounds how long a batch holds
/// sled's global lock (and so how long readers can wait behind it).
const MAX_BATCH: usize = 1024;

/// The most writes queued and not yet applied before writers wait.
const MAX_QUEUED: u64 = 1024;

/// One write, as queued for the committer.
#[derive(Debug)]
pub(super) enum WriteOp {
    Put {
        id: SessionId,
        expected: Option<u64>,
        record: Framed,
        now_ms: u64,
    },
    /// A session under an id fresh from the CSPRNG: written unread.
    PutNew {
        id: SessionId,
        record: Framed,
    },
    Rename {
        old: SessionId,
        expected: u64,
        new: SessionId,
        record: Framed,
        now_ms: u64,
    },
    Delete {
        id: SessionId,
    },
    DeleteIfExpired {
        id: SessionId,
        now_ms: u64,
    },
}

/// A session to write: the fields the trees index, as its writer handed
/// them over, and the bytes the `sessions` tree stores.
#[derive(Debug)]
pub(super) struct Framed {
    expires_at: u64,
    user: Option<String>,
    bytes: Vec<u8>,
}

impl Framed {
    pub fn of(session: &Stored) -> Result<Self> {
        Ok(Self {
            expires_at: session.expires_at,
            user: session.user.clone(),
            bytes: session.frame()?,
        })
    }

    fn as_new(&self) -> ops::NewRecord<'_> {
        ops::NewRecord {
            expires_at: self.expires_at,
            user: self.user.as_deref(),
            bytes: &self.bytes,
        }
    }
}

/// A write decided and queued.
struct Request {
    op: WriteOp,
    /// Its place in the order writes were decided in.
    seq: u64,
    /// The outcome its writer was given.
    answered: Outcome,
    /// The changes to the trees its writer decided on, in the order
    /// [`ops`] made them: what [`Apply::Ordered`] writes.
    changes: Vec<Change>,
}

/// One change to one tree, as decided by a writer.
#[derive(Debug)]
enum Change {
    SetSession(SessionId, Arc<[u8]>),
    RemoveSession(SessionId),
    SetExpiry([u8; 40]),
    RemoveExpiry([u8; 40]),
    SetUser(Vec<u8>),
    RemoveUser(Vec<u8>),
}

/// How the committer applies a batch; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Apply {
    /// Each write's changes as plain inserts and removes, in the order its
    /// writer decided them, from this one thread (the default).
    Ordered,
    /// One sled transaction per batch, re-running every write's logic
    /// inside it and comparing the outcomes (the first write path, kept for
    /// the benchmarks' side-by-side).
    Transactions,
}

/// What the committer found when a batch did not apply as answered.
#[derive(Debug, thiserror::Error)]
#[error("write {seq} was answered {answered:?} but applied as {applied}")]
struct Diverged {
    seq: u64,
    answered: Outcome,
    applied: String,
}

/// The committer thread died (a panic inside sled).
#[derive(Debug, thiserror::Error)]
#[error("the sessiondb-commit thread panicked")]
struct CommitterPanicked;

/// The queue's counters and the cache, under one lock.
#[derive(Debug)]
struct Queue {
    cache: RecordCache,
    /// The sequence number of the last write queued.
    issued: u64,
    /// Every write up to this one has been applied (or, after a failure,
    /// given up on).
    applied: u64,
    /// The committer could not apply a batch as it was answered: the tree
    /// is not what writers were told, so the cache's misses can no longer
    /// be served from it, and loads are refused.
    diverged: bool,
}

/// What the writers and the committer thread share.
#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when writes are applied, and when the committer fails.
    progress: Condvar,
    poison: Arc<Poison>,
    meter: Arc<Meter>,
    /// Makes the next batch fail as a failed transaction would (tests).
    #[cfg(test)]
    fail_next_batch: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Plain counters and a cache whose invariants hold between calls.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, Queue>) -> MutexGuard<'a, Queue> {
        self.progress.wait(guard).unwrap_or_else(|e| e.into_inner())
    }
}

/// The queue, its cache and its thread; see the [module docs](self).
#[derive(Debug)]
pub(super) struct Committer {
    shared: Arc<Shared>,
    sessions: sled::Tree,
    apply: Apply,
    /// `None` once stopped.
    sender: Option<crossbeam_channel::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts the thread, with a cache of `cache_bytes`.
    pub fn start(
        trees: WriteTrees,
        apply: Apply,
        cache_bytes: usize,
        poison: Arc<Poison>,
        meter: Arc<Meter>,
    ) -> Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                cache: RecordCache::new(cache_bytes),
                issued: 0,
                applied: 0,
                diverged: false,
            }),
            progress: Condvar::new(),
            poison,
            meter,
            #[cfg(test)]
            fail_next_batch: std::sync::atomic::AtomicBool::new(false),
        });
        let (sender, receiver) = crossbeam_channel::unbounded::<Request>();
        let sessions = trees.sessions.clone();
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("sessiondb-commit".into())
                .spawn(move || run(&trees, apply, &receiver, &shared))
                .map_err(|source| Error::Thread {
                    name: "sessiondb-commit",
                    source,
                })?
        };
        Ok(Self {
            shared,
            sessions,
            apply,
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    /// The newest stored value of `id` (the cache's, or the tree's), handed
    /// to `read` without a copy.
    pub fn load<R>(&self, id: &SessionId, read: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        // Reads go on after a failed flush (the tree holds every write, its
        // durability is what is unknown), not after a failed batch: the
        // tree then lacks writes whose cached copies may be evicted, and a
        // miss would read what a logout deleted.
        let (cached, ticket) = {
            let mut queue = self.shared.lock();
            if queue.diverged {
                self.shared.poison.check()?;
                return Err(self.shared.poison.set(CommitterPanicked.into_error()));
            }
            let ticket = queue.cache.ticket(queue.issued);
            (queue.cache.lookup(id), ticket)
        };
        self.shared.meter.cache(cached.is_some());
        match cached {
            Some(Cached::Value(v)) => Ok(Some(read(&v))),
            Some(Cached::Deleted) => Ok(None),
            // Not cached: the tree has the newest value (a write queued
            // after the look is concurrent with this read).
            None => match self.sessions.get(id.as_bytes()).map_err(storage)? {
                Some(v) => {
                    let mut queue = self.shared.lock();
                    let applied = queue.applied;
                    queue.cache.fill(id, &v, ticket, applied);
                    drop(queue);
                    Ok(Some(read(&v)))
                }
                None => Ok(None),
            },
        }
    }

    /// Decides each write's outcome now, against the tree plus the writes
    /// still queued, and queues it without waiting for it to be applied.
    /// The committer applies the writes in the same order, so it reaches
    /// the same outcomes. An error of one write (a corrupt record) is that
    /// write's own; `Err` is for the store.
    pub fn submit(&self, ops: Vec<WriteOp>) -> Result<Vec<Result<Outcome>>> {
        let Some(sender) = &self.sender else {
            return Err(Error::Closed);
        };
        let mut out = Vec::with_capacity(ops.len());
        let mut queue = self.shared.lock();
        for op in ops {
            // Backpressure: a bounded backlog bounds memory and how long a
            // flush (which drains it) can take.
            while queue.issued - queue.applied >= MAX_QUEUED && !self.shared.poison.is_set() {
                queue = self.shared.wait(queue);
            }
            self.shared.poison.check()?;
            let view = View {
                sessions: &self.sessions,
                cache: &queue.cache,
                latest: RefCell::new(HashMap::new()),
                changes: RefCell::new(Vec::new()),
                lag: self.apply == Apply::Ordered,
            };
            let answered = match run_op(&view, &op) {
                Ok(answered) => answered,
                // This write's own error (a corrupt record): nothing queued.
                Err(ViewError::Op(e)) => {
                    out.push(Err(e));
                    continue;
                }
                Err(ViewError::Storage(e)) => return Err(e),
            };
            let latest = view.latest.into_inner();
            let changes = view.changes.into_inner();
            if !changes.is_empty() {
                queue.issued += 1;
                let seq = queue.issued;
                for (id, value) in latest {
                    queue.cache.record_write(id, seq, value);
                }
                let request = Request {
                    op,
                    seq,
                    answered,
                    changes,
                };
                if sender.send(request).is_err() {
                    // The thread is gone: it poisoned the store as it went.
                    self.shared.poison.check()?;
                    return Err(self.shared.poison.set(CommitterPanicked.into_error()));
                }
            }
            out.push(Ok(answered));
        }
        let applied = queue.applied;
        queue.cache.evict(applied);
        self.shared.meter.queued(queue.issued - applied);
        Ok(out)
    }

    /// Waits until every write queued so far is applied to the trees:
    /// before reading an index, and before a flush.
    pub fn drain(&self) -> Result<()> {
        let mut queue = self.shared.lock();
        let target = queue.issued;
        while queue.applied < target && !self.shared.poison.is_set() {
            queue = self.shared.wait(queue);
        }
        self.shared.poison.check()
    }

    /// Waits until every write queued so far is applied, for a read of the
    /// trees (an index walk, statistics, a check). Unlike [`drain`], a
    /// failed flush does not stop it: the trees hold every write, only
    /// their durability is unknown (as for [`load`]), and an operator of a
    /// poisoned engine still needs to list, export and count. A failed
    /// batch does: the trees then lack answered writes.
    ///
    /// [`drain`]: Self::drain
    /// [`load`]: Self::load
    pub fn settle(&self) -> Result<()> {
        let mut queue = self.shared.lock();
        let target = queue.issued;
        while queue.applied < target && !queue.diverged {
            queue = self.shared.wait(queue);
        }
        if queue.diverged {
            self.shared.poison.check()?;
            return Err(self.shared.poison.set(CommitterPanicked.into_error()));
        }
        Ok(())
    }

    /// Runs `change`, a change to the trees made behind the queue (a
    /// repair), with the queue empty and held: no write is decided and no
    /// load looks at the cache meanwhile. Then forgets every cached read,
    /// and refuses to cache reads that were in flight.
    pub fn behind_the_queue<R>(&self, change: impl FnOnce() -> Result<R>) -> Result<R> {
        loop {
            self.drain()?;
            let mut queue = self.shared.lock();
            if queue.applied < queue.issued {
                // A write came in between: drain it too.
                continue;
            }
            let result = change();
            let applied = queue.applied;
            queue.cache.forget_reads(applied);
            return result;
        }
    }

    /// Closes the queue and waits for the thread to apply what it holds.
    pub fn stop(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            // A panicked committer poisoned the store on its way out.
            let _ = thread.join();
        }
    }

    /// Makes the next batch fail without touching the trees.
    #[cfg(test)]
    pub fn fail_next_batch(&self) {
        self.shared
            .fail_next_batch
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_running(&self) -> bool {
        self.thread.is_some()
    }

    /// (sessions cached, bytes, budget, writes queued), without waiting for
    /// the lock: `None` if it is busy.
    pub fn counts(&self) -> Option<(usize, usize, usize, u64)> {
        let queue = match self.shared.queue.try_lock() {
            Ok(queue) => queue,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some((
            queue.cache.len(),
            queue.cache.bytes(),
            queue.cache.capacity(),
            queue.issued - queue.applied,
        ))
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl CommitterPanicked {
    fn into_error(self) -> Error {
        Error::Storage(Box::new(self))
    }
}

/// The committer thread: applies the queue, a batch at a time.
fn run(
    trees: &WriteTrees,
    apply: Apply,
    receiver: &crossbeam_channel::Receiver<Request>,
    shared: &Shared,
) {
    /// If this thread dies (a panic inside sled), writers waiting for it
    /// must get an error, not wait forever.
    struct OnPanic<'a>(&'a Shared);
    impl Drop for OnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let mut queue = self.0.lock();
                queue.diverged = true;
                self.0.poison.set(CommitterPanicked.into_error());
                self.0.progress.notify_all();
            }
        }
    }
    let _guard = OnPanic(shared);
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        // A failed transaction, for the tests of what one leaves behind.
        #[cfg(test)]
        let injected = shared
            .fail_next_batch
            .swap(false, std::sync::atomic::Ordering::SeqCst);
        #[cfg(not(test))]
        let injected = false;
        let started = std::time::Instant::now();
        let result = match (injected, apply) {
            (true, _) => Err(Error::Storage("an injected batch failure".into())),
            (false, Apply::Ordered) => apply_ordered(trees, &batch),
            (false, Apply::Transactions) => trees.transaction(|txn| {
                let mut out = Vec::with_capacity(batch.len());
                for request in &batch {
                    out.push(apply_in(txn, &request.op)?);
                }
                Ok(out)
            }),
        };
        // The writers were answered already: any difference from what they
        // were told, or a failed transaction, means acknowledged writes are
        // not what the store holds.
        let succeeded = result.is_ok();
        let failure = match result {
            Ok(outcomes) => batch
                .iter()
                .zip(outcomes)
                .find(|(r, got)| got.as_ref().ok() != Some(&r.answered))
                .map(|(r, got)| {
                    Error::Storage(Box::new(Diverged {
                        seq: r.seq,
                        answered: r.answered,
                        applied: match got {
                            Ok(o) => format!("{o:?}"),
                            Err(e) => format!("an error ({e})"),
                        },
                    }))
                }),
            Err(e) => Some(e),
        };
        let last = batch.last().map_or(0, |r| r.seq);
        let mut queue = shared.lock();
        if let Some(e) = failure {
            queue.diverged = true;
            shared.poison.set(e);
        }
        queue.applied = queue.applied.max(last);
        let applied = queue.applied;
        queue.cache.evict(applied);
        // Under the lock, so the depth published last is the newest.
        let queued = queue.issued - applied;
        if succeeded {
            shared
                .meter
                .committed(batch.len(), started.elapsed(), queued);
        } else {
            shared.meter.queued(queued);
        }
        drop(queue);
        shared.progress.notify_all();
    }
}

/// Runs one write's logic over any view of the trees: the cache when
/// `submit` decides it, the transaction when the committer applies it.
fn run_op<T: Trees>(t: &T, op: &WriteOp) -> std::result::Result<Outcome, T::Error> {
    let deleted = |yes: bool| {
        if yes {
            Outcome::Written
        } else {
            Outcome::Missing
        }
    };
    match op {
        WriteOp::Put {
            id,
            expected,
            record,
            now_ms,
        } => ops::put(t, id, *expected, &record.as_new(), *now_ms),
        WriteOp::PutNew { id, record } => ops::put_new(t, id, &record.as_new()),
        WriteOp::Rename {
            old,
            expected,
            new,
            record,
            now_ms,
        } => ops::rename(t, old, *expected, new, &record.as_new(), *now_ms),
        WriteOp::Delete { id } => ops::delete(t, id).map(deleted),
        WriteOp::DeleteIfExpired { id, now_ms } => {
            ops::delete_if_expired(t, id, *now_ms).map(deleted)
        }
    }
}

/// Applies one write inside the batch's transaction.
fn apply_in(txn: &Txn<'_>, op: &WriteOp) -> Result<Result<Outcome>, UnabortableTransactionError> {
    TxError::split(run_op(txn, op))
}

/// Applies a batch as plain inserts and removes, each write's changes in
/// the order its writer decided them. sled gives every change a place in
/// one log shared by all trees, in the order this one thread makes them,
/// and its recovery keeps a prefix of that log; [`ops`] orders each write's
/// changes so that any prefix leaves at most stale index entries. The
/// writers' outcomes stand as answered: this thread is the trees' only
/// writer, so nothing can have changed them since.
fn apply_ordered(trees: &WriteTrees, batch: &[Request]) -> Result<Vec<Result<Outcome>>> {
    for request in batch {
        for change in &request.changes {
            let done = match change {
                Change::SetSession(id, value) => {
                    trees.sessions.insert(id.as_bytes(), &value[..]).map(drop)
                }
                Change::RemoveSession(id) => trees.sessions.remove(id.as_bytes()).map(drop),
                Change::SetExpiry(key) => trees.expiry.insert(key, &[][..]).map(drop),
                Change::RemoveExpiry(key) => trees.expiry.remove(key).map(drop),
                Change::SetUser(key) => trees.users.insert(&key[..], &[][..]).map(drop),
                Change::RemoveUser(key) => trees.users.remove(&key[..]).map(drop),
            };
            done.map_err(storage)?;
        }
    }
    Ok(batch.iter().map(|r| Ok(r.answered)).collect())
}

/// The trees as a queued write would find them: the `sessions` tree with
/// the queued writes and this write's own changes laid over it. It
/// records every change the write makes, index entries included, in order.
struct View<'a> {
    sessions: &'a sled::Tree,
    cache: &'a RecordCache,
    /// This write's own changes, by session: the newest value of each.
    latest: RefCell<HashMap<SessionId, Option<Arc<[u8]>>>>,
    /// This write's changes to every tree, in the order it made them.
    changes: RefCell<Vec<Change>>,
    /// Whether expiry entries may lag ([`Apply::Ordered`]).
    lag: bool,
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
        if let Some(v) = self.latest.borrow().get(id) {
            return Ok(v.as_deref().map(<[u8]>::to_vec));
        }
        if let Some(v) = self.cache.peek(id) {
            return Ok(v.map(<[u8]>::to_vec));
        }
        self.sessions
            .get(id.as_bytes())
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| ViewError::Storage(storage(e)))
    }
    fn set_session(&self, id: &SessionId, value: &[u8]) -> std::result::Result<(), ViewError> {
        let value: Arc<[u8]> = Arc::from(value);
        self.latest.borrow_mut().insert(*id, Some(value.clone()));
        self.changes
            .borrow_mut()
            .push(Change::SetSession(*id, value));
        Ok(())
    }
    fn remove_session(&self, id: &SessionId) -> std::result::Result<(), ViewError> {
        self.latest.borrow_mut().insert(*id, None);
        self.changes.borrow_mut().push(Change::RemoveSession(*id));
        Ok(())
    }
    fn set_expiry(&self, key: [u8; 40]) -> std::result::Result<(), ViewError> {
        self.changes.borrow_mut().push(Change::SetExpiry(key));
        Ok(())
    }
    fn remove_expiry(&self, key: [u8; 40]) -> std::result::Result<(), ViewError> {
        self.changes.borrow_mut().push(Change::RemoveExpiry(key));
        Ok(())
    }
    fn set_user(&self, key: Vec<u8>) -> std::result::Result<(), ViewError> {
        self.changes.borrow_mut().push(Change::SetUser(key));
        Ok(())
    }
    fn remove_user(&self, key: Vec<u8>) -> std::result::Result<(), ViewError> {
        self.changes.borrow_mut().push(Change::RemoveUser(key));
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
    fn may_lag(&self) -> bool {
        self.lag
    }
}
