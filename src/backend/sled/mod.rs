//! The sled backend: the default, on local disk.
//!
//! One concept per file:
//! - [`store_dir`]: the directory, its marker, lock and clean flag, and the
//!   syncs that make sled's files durable;
//! - [`committer`]: the write-behind queue and the thread that applies it;
//! - [`cache`]: the record cache in front of the `sessions` tree;
//! - [`txn`]: the shared write logic run inside a sled transaction.
//!
//! # On disk
//!
//! ```text
//! DIR/SESSIONDB, DIR/CLEAN      see `store_dir`
//! DIR/db, conf, blobs/, snap.*  sled 0.34's files, holding these trees:
//!
//!   tree        key                                    value
//!   sessions    session id (32 bytes)                  record (see `record`)
//!   expiry      indexed_at ms u64 BE ++ session id     empty (the record's
//!               entry, at or before its expiry)
//!   users       user len u16 BE ++ user (UTF-8) ++ id  empty
//!   quarantine  key of a record that did not decode    its bytes, as found
//!   revoked     `k` ++ key                             at ms u64 BE ++ until ms u64 BE
//!               `t` ++ until ms u64 BE ++ key          empty (revocations in time order)
//! ```
//!
//! The `committer` thread applies every write to `sessions`, `expiry` and
//! `users` as ordered plain inserts and removes (see its docs, and the
//! invariants in the crate docs); a repair (`fix`) is one sled transaction
//! over the four trees. `revoked` holds what
//! logouts revoked (see [`Backend::revoke`]): the two entries of a
//! revocation are written in one batch, outside the committer (nothing else
//! reads them in the same step), and reach disk with the flush that makes
//! the revocation durable.
//!
//! # Durability
//!
//! sled's `flush()` writes its buffers with `sync_file_range`, which neither
//! flushes the drive's cache nor the file's metadata, and sled writes blob
//! files with no sync at all. So [`Backend::flush`] here drains the
//! committer's queue, calls `Db::flush()`, then has the store directory
//! `fdatasync` sled's log and `fsync` new blob files and their directory.
//! Any failure on the way poisons the store ([`Error::Poisoned`]); `close`
//! runs once, and writes `CLEAN` only after a flush that succeeded with no
//! failure before it.
//!
//! # No blob files
//!
//! sled 0.34 writes any log message over a quarter of a segment (a big
//! value, or a whole leaf of big values when it rewrites the leaf) to a
//! blob file of its own. Blob files cannot be made safe against a power
//! cut from outside sled: sled never syncs them, it may sync its log
//! (its flusher thread does, every `flush_every`) while a blob the log
//! points at is still unsynced, the kernel may write the log back before
//! the blob at any time, and sled deletes a replaced blob as soon as its
//! own `sync_file_range` covers the replacement. The power-cut test
//! (`tests/power_loss_keeps_acknowledged_writes.rs`, with sessions of
//! 150 KiB) saw all of it within 20 cuts: strict writes lost, and sled
//! panicking at open ("cannot find pid 5 in view_for_key", "tried to
//! serialize Uninitialized").
//!
//! So the engine keeps sled away from blobs: new stores use 8 MiB segments
//! ([`SEGMENT_SIZE`], recorded in the store's `SEGMENT_SIZE` file), whose
//! blob threshold (2 MiB) is more than 20 of the largest records
//! [`Config::max_session_bytes`](crate::Config::max_session_bytes) allows
//! (96 KiB); a leaf of sled's splits past 16 entries, and a merge of two
//! leaves holds at most 20. Stores created before keep the 512 KiB
//! segments sled was opened with (sled refuses to change them), and with
//! them a threshold of 128 KiB: there a warning at open says when the
//! configured limit allows records that can reach a blob (over 6,550
//! bytes). Lowering `max_session_bytes` to that, or exporting the store
//! and importing it into a new one (where a record over 96 KiB is refused,
//! as any save of one is), lifts it.

mod cache;
mod committer;
pub(crate) mod store_dir;
mod txn;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::ops;
use super::{Backend, BackendStats, Maintenance, Outcome, Stored, UserPage, Violation, keys};
use crate::error::{Error, Result};
use crate::metrics::Meter;
use crate::poison::Poison;
use crate::record::FormatError;
use crate::token::SessionId;
pub(crate) use committer::Apply;
use committer::{Committer, Framed, WriteOp};
use store_dir::StoreDir;
use txn::{TxError, WriteTrees};

/// sled's segment size (and I/O buffer size) for new stores; see "No blob
/// files" above.
pub(crate) const SEGMENT_SIZE: usize = 8 << 20;
/// What stores created before [`SEGMENT_SIZE`] use: sled's default.
const LEGACY_SEGMENT_SIZE: usize = 512 << 10;

/// The largest record that cannot bring sled to write a blob file in a
/// store with segments of `segment_size`: sled moves to a blob any message
/// over a quarter of a segment (less its header), and a leaf holds at most
/// 17 entries before it splits; 20 records leave room for keys, headers
/// and a split that lags behind concurrent inserts.
pub(crate) const fn largest_blob_free_record(segment_size: usize) -> usize {
    (segment_size / 4 - 64) / 20
}

// Twenty of the largest records a config allows, with their keys, stay
// under the blob threshold of a new store.
const _: () =
    assert!(crate::config::MAX_SESSION_BYTES + 64 <= largest_blob_free_record(SEGMENT_SIZE));

/// Tuning passed down from [`Config`](crate::Config).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SledOptions {
    pub cache_capacity: u64,
    pub flush_every_ms: Option<u64>,
    /// Bytes of records kept in memory in front of sled (see `cache`).
    pub session_cache_bytes: usize,
    /// The largest record the engine will write (for the warning about
    /// blob files in stores with small segments).
    pub max_record_bytes: usize,
    /// How the committer applies writes.
    pub apply: Apply,
}

/// Sessions in sled trees; see the [module docs](self).
pub struct SledBackend {
    dir: StoreDir,
    db: sled::Db,
    trees: WriteTrees,
    revoked: sled::Tree,
    /// Serialises a revocation's read-modify-write of its two entries.
    revoking: Mutex<()>,
    committer: Committer,
    apply: Apply,
    /// Shared with the engine: one failure signal for both.
    poison: Arc<Poison>,
    closed: AtomicBool,
}

impl std::fmt::Debug for SledBackend {
    /// Settings and counts only. sled's own `Debug` of a `Db` or a `Tree`
    /// prints every node, keys and records included (walking the whole
    /// tree to do it), and the write queue holds whole records: none of
    /// that may reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("SledBackend");
        d.field("path", &self.dir.path())
            .field("was_clean", &self.dir.was_clean())
            .field("committer_running", &self.committer.is_running())
            .field("poisoned", &self.poison.is_set());
        // Never wait for the lock: Debug may run anywhere, even under it.
        match self.committer.counts() {
            Some((cached, bytes, capacity, queued)) => d
                .field("cached_records", &cached)
                .field("cache_bytes", &bytes)
                .field("cache_capacity", &capacity)
                .field("writes_queued", &queued),
            None => d.field("committer", &"<busy>"),
        };
        d.finish_non_exhaustive()
    }
}

fn storage(e: sled::Error) -> Error {
    Error::Storage(Box::new(e))
}

impl SledBackend {
    /// Opens (or creates) the store in `dir`, with its own failure signal.
    #[cfg(test)]
    pub(crate) fn open(dir: &Path, opts: SledOptions) -> Result<Self> {
        Self::open_with(dir, opts, Arc::default(), Arc::default())
    }

    /// Opens (or creates) the store in `dir`; a failure poisons `poison`.
    pub(crate) fn open_with(
        dir: &Path,
        opts: SledOptions,
        poison: Arc<Poison>,
        meter: Arc<Meter>,
    ) -> Result<Self> {
        let dir = StoreDir::open(dir)?;
        let segment_size = dir.segment_size(SEGMENT_SIZE, LEGACY_SEGMENT_SIZE)?;
        let db = open_sled(dir.path(), segment_size, opts)?;
        let tree = |name: &str| db.open_tree(name).map_err(storage);
        let trees = WriteTrees {
            sessions: tree("sessions")?,
            expiry: tree("expiry")?,
            users: tree("users")?,
            quarantine: tree("quarantine")?,
        };
        let revoked = tree("revoked")?;
        dir.attach_sled()?;
        let committer = Committer::start(
            trees.clone(),
            opts.apply,
            opts.session_cache_bytes,
            poison.clone(),
            meter,
        )?;
        Ok(Self {
            dir,
            db,
            trees,
            revoked,
            revoking: Mutex::new(()),
            committer,
            apply: opts.apply,
            poison,
            closed: AtomicBool::new(false),
        })
    }

    /// Whether the last run closed cleanly (or the store is new).
    pub(crate) fn was_clean(&self) -> bool {
        self.dir.was_clean()
    }

    fn submit_one(&self, op: WriteOp) -> Result<Outcome> {
        self.committer
            .submit(vec![op])?
            .pop()
            .unwrap_or(Err(Error::Closed))
    }
}

/// Opens sled, once we hold the store's own lock.
///
/// sled takes its own `flock` on `DIR/db`. Holding ours means no other
/// engine or process has the store, so if sled's lock is still taken it is
/// a remnant of an engine of this process that just closed: sled's I/O
/// threads let go of the file a moment after `Db` drops. Wait that out, for
/// a bounded time.
fn open_sled(dir: &Path, segment_size: usize, opts: SledOptions) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(opts.cache_capacity)
            .flush_every_ms(opts.flush_every_ms)
            .segment_size(segment_size);
        // sled's recovery panics on some damage to its own files: that is
        // a damaged store, an error, never a panic out of `open`.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || config.open()));
        let result = opened.map_err(|panic| Error::Damaged {
            path: dir.to_owned(),
            reason: crate::engine::panic_message(panic.as_ref()),
        })?;
        match result {
            Ok(db) => {
                if opts.max_record_bytes > largest_blob_free_record(segment_size) {
                    tracing::warn!(
                        store = %dir.display(),
                        "this store was made with sled segments of {} KiB: sessions over {} bytes \
                         can reach sled blob files, which a power cut can leave unreadable; export \
                         and import it into a new store, or lower max_session_bytes",
                        segment_size / 1024,
                        largest_blob_free_record(segment_size),
                    );
                }
                return Ok(db);
            }
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

impl Backend for SledBackend {
    fn get(&self, id: &SessionId, now_ms: u64) -> Result<Option<Stored>> {
        let stored = self
            .committer
            .load(id, |bytes| Stored::unframe_live(id, bytes, now_ms))?;
        Ok(stored.transpose()?.flatten())
    }

    fn put(
        &self,
        id: &SessionId,
        expected: Option<u64>,
        session: &Stored,
        now_ms: u64,
    ) -> Result<Outcome> {
        self.submit_one(WriteOp::Put {
            id: *id,
            expected,
            record: Framed::of(session)?,
            now_ms,
        })
    }

    fn put_new(&self, id: &SessionId, session: &Stored, now_ms: u64) -> Result<Outcome> {
        if self.apply == Apply::Transactions {
            // The first write path read every id first.
            return self.put(id, None, session, now_ms);
        }
        self.submit_one(WriteOp::PutNew {
            id: *id,
            record: Framed::of(session)?,
        })
    }

    fn rename(
        &self,
        old: &SessionId,
        expected: u64,
        new: &SessionId,
        session: &Stored,
        now_ms: u64,
    ) -> Result<Outcome> {
        self.submit_one(WriteOp::Rename {
            old: *old,
            expected,
            new: *new,
            record: Framed::of(session)?,
            now_ms,
        })
    }

    fn delete(&self, id: &SessionId) -> Result<bool> {
        Ok(self.submit_one(WriteOp::Delete { id: *id })? == Outcome::Written)
    }

    fn expired(&self, now_ms: u64, limit: usize) -> Result<Vec<SessionId>> {
        self.committer.drain()?;
        // Keys up to and including `now_ms ++ 0xff..`, in time order.
        let end = keys::expiry(now_ms, &SessionId::from_bytes([0xff; 32]));
        let mut out = Vec::new();
        for item in self.trees.expiry.range(..=&end[..]).take(limit) {
            let (key, _) = item.map_err(storage)?;
            if let Some((_, id)) = keys::parse_expiry(&key) {
                out.push(id);
            }
        }
        Ok(out)
    }

    fn delete_expired(&self, ids: &[SessionId], now_ms: u64) -> Result<u64> {
        let ops = ids
            .iter()
            .map(|id| WriteOp::DeleteIfExpired { id: *id, now_ms })
            .collect();
        let mut n = 0;
        for outcome in self.committer.submit(ops)? {
            n += u64::from(outcome? == Outcome::Written);
        }
        Ok(n)
    }

    fn user_sessions(&self, user: &str, cursor: Option<&[u8]>, limit: usize) -> Result<UserPage> {
        use std::ops::Bound;
        self.committer.settle()?;
        let prefix = keys::user_prefix(user);
        let start = match cursor {
            Some(after) => Bound::Excluded([prefix.as_slice(), after].concat()),
            None => Bound::Included(prefix.clone()),
        };
        let limit = limit.max(1);
        let mut ids = Vec::new();
        for item in self
            .trees
            .users
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
        {
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

    fn revoke(&self, key: &[u8], at_ms: u64, until_ms: u64) -> Result<()> {
        self.poison.check()?;
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
        self.poison.check()?;
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
        // Any failure poisons: what a failed sync left on disk is unknown,
        // and a later sync that happens to succeed does not make it known.
        self.poison.check()?;
        let synced = self
            .committer
            .drain()
            .and_then(|()| self.db.flush().map_err(storage))
            .and_then(|_| self.dir.sync());
        synced.map_err(|e| self.poison.set(e))
    }

    /// Runs once: later calls do nothing. Writes `CLEAN` only after a
    /// flush that succeeded with no failure before it.
    fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.flush()?;
        self.poison.check()?;
        self.dir.mark_clean().map_err(|e| self.poison.set(e))
    }

    fn maintenance(&self) -> Option<&dyn Maintenance> {
        Some(self)
    }
}

impl Maintenance for SledBackend {
    fn scan(
        &self,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<(SessionId, std::result::Result<Stored, FormatError>)>> {
        use std::ops::Bound;
        self.committer.settle()?;
        let start = match after {
            Some(id) => Bound::Excluded(id.as_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in self
            .trees
            .sessions
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
        {
            let (key, value) = item.map_err(storage)?;
            // Keys are 32-byte ids; anything else is not a session (check()
            // reports it).
            if let Ok(bytes) = <[u8; SessionId::LEN]>::try_from(&key[..]) {
                out.push((SessionId::from_bytes(bytes), Stored::parse(&value)));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn stats(&self, now_ms: u64) -> Result<BackendStats> {
        self.committer.settle()?;
        let end = keys::expiry(now_ms, &SessionId::from_bytes([0xff; 32]));
        // A due entry may lag behind a session that lives on: count the
        // sessions that really expired.
        let mut expired_pending = 0u64;
        for item in self.trees.expiry.range(..=&end[..]) {
            let (key, _) = item.map_err(storage)?;
            let Some((_, id)) = keys::parse_expiry(&key) else {
                continue;
            };
            let value = self.trees.sessions.get(id.as_bytes()).map_err(storage)?;
            if value.is_some_and(|v| {
                crate::record::Meta::parse(&v).is_ok_and(|(m, _)| m.expires_at <= now_ms)
            }) {
                expired_pending += 1;
            }
        }
        let mut users = 0u64;
        let mut last: Option<Vec<u8>> = None;
        for item in self.trees.users.iter() {
            let (key, _) = item.map_err(storage)?;
            let prefix = key[..key.len().saturating_sub(32)].to_vec();
            if last.as_ref() != Some(&prefix) {
                users += 1;
                last = Some(prefix);
            }
        }
        Ok(BackendStats {
            live_sessions: (self.trees.sessions.len() as u64).saturating_sub(expired_pending),
            expired_pending,
            users,
            bytes_on_disk: self.db.size_on_disk().map_err(storage)?,
        })
    }

    fn check(&self) -> Result<Vec<Violation>> {
        self.committer.settle()?;
        store_dir::faults::before_crash_check(self.dir.path());
        // Streams: one walk per tree, point lookups for the links, so the
        // crash check at open needs no memory in proportion to the store.
        let sessions = self
            .trees
            .sessions
            .iter()
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(storage));
        let keys_of = |tree: &sled::Tree| {
            tree.iter()
                .keys()
                .map(|r| r.map(|k| k.to_vec()).map_err(storage))
        };
        ops::check_streaming(
            sessions,
            keys_of(&self.trees.expiry),
            keys_of(&self.trees.users),
            self,
        )
    }

    fn fix(&self, violation: &Violation) -> Result<bool> {
        self.poison.check()?;
        // This changes the trees behind the cache's back, so it runs with
        // the queue held: no write decided against a cache it is about to
        // make stale, no read it could cache from before the change.
        self.committer.behind_the_queue(|| {
            self.trees
                .transaction(|txn| TxError::split(ops::fix(txn, violation)))?
        })
    }

    fn quarantined(&self) -> Result<u64> {
        self.committer.settle()?;
        Ok(self.trees.quarantine.len() as u64)
    }
}

impl ops::Lookups for SledBackend {
    fn session(&self, id: &SessionId) -> Result<Option<Vec<u8>>> {
        Ok(self
            .trees
            .sessions
            .get(id.as_bytes())
            .map_err(storage)?
            .map(|v| v.to_vec()))
    }

    fn has_expiry(&self, key: &[u8]) -> Result<bool> {
        self.trees.expiry.contains_key(key).map_err(storage)
    }

    fn has_user(&self, key: &[u8]) -> Result<bool> {
        self.trees.users.contains_key(key).map_err(storage)
    }
}

impl Drop for SledBackend {
    fn drop(&mut self) {
        // Applies what is queued; `close` (once, from the engine) is what
        // makes it durable and marks the store clean.
        self.committer.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(version: u64) -> Stored {
        let body = crate::record::Body {
            last_seen_ms: 1_000,
            absolute_deadline_ms: u64::MAX,
            idle_timeout_ms: 1_000_000,
            ..crate::record::Body::default()
        };
        let body = crate::record::encode_body(&body).expect("encode");
        Stored::new(version, 1_000_000, None, body)
    }

    fn opts() -> SledOptions {
        SledOptions {
            cache_capacity: 1 << 20,
            flush_every_ms: None,
            max_record_bytes: 64 * 1024,
            session_cache_bytes: 1024,
            apply: Apply::Ordered,
        }
    }

    /// A batch fails after its writers were answered: the cache held what
    /// they were told, but once it evicts that, the tree holds an older
    /// state. A logged-out session must not come back from it: loads are
    /// refused.
    #[test]
    fn after_a_failed_batch_loads_are_refused_not_served_stale() {
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = SledOptions {
            // Nothing stays cached once applied.
            session_cache_bytes: 0,
            ..opts()
        };
        let b = SledBackend::open(dir.path(), opts).expect("open");
        let id = SessionId::from_bytes([1; 32]);
        assert_eq!(
            b.put(&id, None, &record(1), 0).expect("put"),
            Outcome::Written
        );
        b.committer.drain().expect("applied");
        b.committer.fail_next_batch();
        assert!(b.delete(&id).expect("logout is answered"));
        assert!(matches!(b.committer.drain(), Err(Error::Poisoned { .. })));
        let got = b.get(&id, 0);
        assert!(
            matches!(got, Err(Error::Poisoned { .. })),
            "a logged-out session read back: {got:?}"
        );
    }

    /// A repair quarantines a record whose body does not decode while a
    /// logout of it races in: the logout is decided either before the
    /// repair (and applied before it) or after (and finds nothing). A
    /// logout answered against the tree as it was before the repair, and
    /// applied after it, would diverge and poison the store.
    #[test]
    fn a_repair_racing_a_logout_never_diverges() {
        let dir = tempfile::tempdir().expect("temp dir");
        let b = SledBackend::open(dir.path(), opts()).expect("open");
        for round in 0..300u32 {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&round.to_be_bytes());
            let id = SessionId::from_bytes(bytes);
            // A good header, a body that does not decode.
            let framed = crate::record::frame(1, 1_000_000, None, &[0xff; 9]).expect("frame");
            b.trees
                .sessions
                .insert(id.as_bytes(), framed)
                .expect("plant");
            b.trees
                .expiry
                .insert(&keys::expiry(1_000_000, &id)[..], &[][..])
                .expect("plant");
            let violation = Violation::Corrupt {
                id,
                reason: "planted".into(),
            };
            let start = std::sync::Barrier::new(2);
            std::thread::scope(|s| {
                s.spawn(|| {
                    start.wait();
                    Maintenance::fix(&b, &violation).expect("fix");
                });
                start.wait();
                b.delete(&id).expect("delete");
            });
            assert!(
                b.committer.drain().is_ok(),
                "round {round}: the store was poisoned"
            );
        }
    }

    /// A sync fails once; the next would succeed. Close must not take that
    /// success for a clean store.
    #[test]
    fn a_failed_sync_keeps_the_store_from_being_marked_clean() {
        let dir = tempfile::tempdir().expect("temp dir");
        let b = SledBackend::open(dir.path(), opts()).expect("open");
        let id = SessionId::from_bytes([1; 32]);
        assert_eq!(
            b.put(&id, None, &record(1), 0).expect("put"),
            Outcome::Written
        );
        store_dir::faults::fail_syncs(dir.path(), 1);
        let err = b.flush().expect_err("the sync fails");
        assert!(matches!(err, Error::Poisoned { .. }), "{err:?}");
        assert!(matches!(
            b.put(&id, Some(1), &record(2), 0),
            Err(Error::Poisoned { .. })
        ));
        assert!(matches!(b.close(), Err(Error::Poisoned { .. })));
        assert!(b.close().is_ok(), "a second close does nothing");
        assert!(!dir.path().join("CLEAN").exists());
        drop(b);
        let b = SledBackend::open(dir.path(), opts()).expect("reopen");
        assert!(!b.was_clean(), "the next open must run the crash check");
    }
}
