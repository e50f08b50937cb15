//! The operator's side of the engine: statistics, the invariant check and
//! repair, listing, export and import, and sweeping on demand. Requests
//! never need any of it; [`Engine::admin`] keeps it apart from the request
//! API.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{Engine, Wait, check_user, revocation};
use crate::backend::{Maintenance, Outcome, Stored, Violation};
use crate::error::{Error, Result};
use crate::record::Body;
use crate::session::decode_named;
use crate::token::SessionId;

/// What [`Admin::repair`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairReport {
    /// The violations it mended, in the order it mended them.
    pub fixed: Vec<Violation>,
    /// Records in quarantine after the repair (undecodable records are
    /// moved there, never deleted).
    pub quarantined: u64,
    /// What `check` still finds afterwards (empty on success).
    pub remaining: Vec<Violation>,
}

/// What [`Engine::open`] found when the store's last run had not closed
/// cleanly (a crash, a kill, a power cut); see [`Engine::recovery`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// The violations `check` found at open (empty: the store came through
    /// the crash sound, as sled's transactions promise).
    pub found: Vec<Violation>,
    /// The repair that followed, when anything was found.
    pub repair: Option<RepairReport>,
}

/// Numbers for operators; see [`Admin::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Stats {
    /// Stored sessions that have not expired.
    pub live_sessions: u64,
    /// Distinct users with a stored session.
    pub users: u64,
    /// Expired sessions not yet swept.
    pub expired_pending: u64,
    /// Bytes the store occupies on disk.
    pub bytes_on_disk: u64,
    /// Sessions deleted by the sweeper since open.
    pub swept: u64,
    /// Sweeper passes since open.
    pub sweep_passes: u64,
    /// Sweeper passes that failed since open.
    pub sweep_errors: u64,
}

/// One stored session with everything in it: what operators' tools list,
/// export and import ([`Admin::records`], [`Admin::import`]).
///
/// `Debug` shows the id's hint, the times and the names of the values, never
/// the values or the user.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session's id.
    pub id: SessionId,
    /// The stored version (1 when first stored, +1 per write).
    pub version: u64,
    /// The user it belongs to.
    pub user: Option<String>,
    /// Created, ms since the Unix epoch.
    pub created_at: u64,
    /// Last seen (as of the last write), ms since the Unix epoch.
    pub last_seen: u64,
    /// When it expires unless seen again, ms since the Unix epoch.
    pub expires_at: u64,
    /// When it expires whatever happens, ms since the Unix epoch.
    pub absolute_deadline: u64,
    /// Its idle timeout.
    pub idle_timeout: Duration,
    /// Each value as stored: the bincode 2 encoding of the caller's type.
    pub data: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("id", &self.id)
            .field("version", &self.version)
            .field("has_user", &self.user.is_some())
            .field("created_at", &self.created_at)
            .field("last_seen", &self.last_seen)
            .field("expires_at", &self.expires_at)
            .field("values", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl SessionRecord {
    /// The value named `key`, decoded as `T`; `None` if absent.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        decode_named(&self.data, key)
    }
}

/// What [`Admin::import`] did with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Imported {
    /// Stored.
    Written,
    /// A session with this id is already stored; nothing was changed.
    Exists,
    /// The record had already expired; nothing was written.
    Expired,
    /// The session was revoked in this store after the record was taken (a
    /// logout, log out everywhere, a revoke); nothing was written.
    Revoked,
}

/// How far ahead of this engine's clock an imported record's times may be
/// (another machine's clock): more is refused as impossible.
const IMPORT_CLOCK_SKEW_MS: u64 = 60_000;

fn to_record(id: SessionId, stored: Stored) -> Result<SessionRecord> {
    let body = super::decode_stored_body(&id, &stored)?;
    Ok(SessionRecord {
        id,
        version: stored.version,
        user: stored.user,
        created_at: body.created_ms,
        last_seen: body.last_seen_ms,
        expires_at: stored.expires_at,
        absolute_deadline: body.absolute_deadline_ms,
        idle_timeout: Duration::from_millis(body.idle_timeout_ms),
        data: body.data,
    })
}

/// The operator's API of an [`Engine`]: see [`Engine::admin`].
#[derive(Debug, Clone, Copy)]
pub struct Admin<'e> {
    engine: &'e Engine,
}

impl<'e> Admin<'e> {
    pub(super) fn new(engine: &'e Engine) -> Self {
        Self { engine }
    }

    /// The store's maintenance side, or `Unsupported` naming `what`.
    fn store(&self, what: &'static str) -> Result<&'e dyn Maintenance> {
        self.engine
            .shared
            .backend
            .maintenance()
            .ok_or(Error::Unsupported { what })
    }

    /// Counts for operators. Walks the index trees: seconds on a store of
    /// millions, so not for every request.
    pub fn stats(&self) -> Result<Stats> {
        let b = self.store("statistics")?.stats(self.engine.shared.now())?;
        let counters = &self.engine.shared.sweep_counters;
        Ok(Stats {
            live_sessions: b.live_sessions,
            users: b.users,
            expired_pending: b.expired_pending,
            bytes_on_disk: b.bytes_on_disk,
            swept: counters.swept.load(Ordering::Relaxed),
            sweep_passes: counters.passes.load(Ordering::Relaxed),
            sweep_errors: counters.errors.load(Ordering::Relaxed),
        })
    }

    /// Every broken invariant of the store (empty when sound).
    pub fn check(&self) -> Result<Vec<Violation>> {
        self.store("check")?.check()
    }

    /// Mends every violation [`check`](Self::check) finds: index entries
    /// are made to agree with the `sessions` tree (the source of truth), and
    /// records that do not decode are moved to quarantine. Each fix is its
    /// own small atomic step that re-checks its violation first, so repair
    /// is safe while the engine serves requests. Moving a record to
    /// quarantine orphans its index entries, so it runs check and fix until
    /// nothing changes (at most four rounds).
    pub fn repair(&self) -> Result<RepairReport> {
        self.repair_while(&|| true)
    }

    /// [`repair`](Self::repair), stopping with [`Error::Closed`] between
    /// two fixes once `keep_going` says no (the engine is closing).
    pub(crate) fn repair_while(&self, keep_going: &dyn Fn() -> bool) -> Result<RepairReport> {
        self.engine.shared.poison.check()?;
        let store = self.store("repair")?;
        let mut report = RepairReport::default();
        for _ in 0..4 {
            let found = self.check()?;
            let mut changed = false;
            for v in found {
                if !keep_going() {
                    return Err(Error::Closed);
                }
                if store.fix(&v)? {
                    report.fixed.push(v);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        self.engine.flush()?;
        report.remaining = self.check()?;
        report.quarantined = store.quarantined()?;
        Ok(report)
    }

    /// One page of every stored record (live, expired awaiting the sweep, or
    /// corrupt), in id order after `after`, each decoded or with the error
    /// that names it. Page with the last id until a page comes back empty.
    pub fn records(
        &self,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<(SessionId, Result<SessionRecord>)>> {
        Ok(self
            .store("listing")?
            .scan(after, limit)?
            .into_iter()
            .map(|(id, stored)| {
                let record = stored
                    .map_err(|source| Error::Corrupt {
                        id_hint: id.hint(),
                        source,
                    })
                    .and_then(|stored| to_record(id, stored));
                (id, record)
            })
            .collect())
    }

    /// The stored record of a live session.
    pub fn record(&self, id: &SessionId) -> Result<Option<SessionRecord>> {
        let now = self.engine.shared.now();
        match self.engine.shared.backend.get(id, now)? {
            Some(stored) => {
                let r = to_record(*id, stored)?;
                Ok((r.expires_at > now).then_some(r))
            }
            None => Ok(None),
        }
    }

    /// Stores a record exported from another store (id, user, times,
    /// values; version restarts at 1). Never overwrites: an id that is
    /// already stored is left alone.
    ///
    /// What an export cannot do here:
    /// - **forge a longer life**: the absolute deadline is cut to created +
    ///   this engine's absolute timeout, and the idle timeout to this
    ///   engine's; a record whose last-seen time is before its creation, or
    ///   whose times lie in the future (past a minute of clock skew), is
    ///   refused with [`Error::InvalidRecord`]; the size limit and user
    ///   rules of this engine apply;
    /// - **resurrect a revoked session**: a session logged out, revoked, or
    ///   replaced by a login in this store, or one of a user logged out
    ///   everywhere after it was created, is [`Imported::Revoked`]. Each
    ///   revocation is kept for one absolute timeout (past it, the record
    ///   is expired anyway), and the sweeper forgets it after.
    pub fn import(&self, r: &SessionRecord) -> Result<Imported> {
        let shared = &self.engine.shared;
        let now = shared.now();
        if let Some(u) = r.user.as_deref() {
            check_user(u)?;
        }
        let refuse = |reason| Error::InvalidRecord {
            id_hint: r.id.hint(),
            reason,
        };
        if r.last_seen < r.created_at {
            return Err(refuse("last seen before it was created"));
        }
        if r.last_seen > now.saturating_add(IMPORT_CLOCK_SKEW_MS) {
            return Err(refuse("last seen in the future"));
        }
        let body = Body {
            created_ms: r.created_at,
            last_seen_ms: r.last_seen,
            absolute_deadline_ms: r
                .absolute_deadline
                .min(r.created_at.saturating_add(shared.settings.absolute_ms)),
            idle_timeout_ms: u64::try_from(r.idle_timeout.as_millis())
                .unwrap_or(u64::MAX)
                .min(shared.settings.idle_ms),
            data: r.data.clone(),
        };
        if body.expires_at() <= now {
            return Ok(Imported::Expired);
        }
        if self.is_revoked(r, now)? {
            return Ok(Imported::Revoked);
        }
        shared.poison.check()?;
        let value = shared.encode(1, r.user.as_deref(), &body)?;
        match shared.backend.put(&r.id, None, &value, now)? {
            Outcome::Written => {}
            Outcome::Conflict | Outcome::Missing => return Ok(Imported::Exists),
        }
        // A revocation that came in between (log out everywhere walking the
        // user's index before this write landed) wins.
        if self.is_revoked(r, now)? {
            shared.backend.delete(&r.id)?;
            shared.after_write(Wait::Always)?;
            return Ok(Imported::Revoked);
        }
        shared.after_write(Wait::AsConfigured)?;
        shared.meter.saved(true);
        Ok(Imported::Written)
    }

    /// Whether a revocation recorded here covers this record.
    fn is_revoked(&self, r: &SessionRecord, now: u64) -> Result<bool> {
        let backend = &self.engine.shared.backend;
        if backend
            .revoked_at(&revocation::session_key(&r.id), now)?
            .is_some()
        {
            return Ok(true);
        }
        Ok(match r.user.as_deref() {
            Some(user) => self.engine.user_revoked_since(user, r.created_at, now)?,
            None => false,
        })
    }

    /// Runs one sweeper pass now; returns how many sessions it deleted.
    pub fn sweep_now(&self) -> Result<u64> {
        self.engine.shared.sweep()
    }

    /// [`sweep_now`](Self::sweep_now), stopping with [`Error::Closed`]
    /// between two batches once `keep_going` says no.
    pub(crate) fn sweep_while(&self, keep_going: &dyn Fn() -> bool) -> Result<u64> {
        self.engine.shared.sweep_while(keep_going)
    }
}
