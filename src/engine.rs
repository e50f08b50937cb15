//! The engine: session policy over a backend.
//!
//! It holds what the backend does not: timeouts and sliding expiry, touch
//! coalescing, size limits, version checks and retries, durability, and the
//! sweeper thread.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::de::DeserializeOwned;

use crate::backend::memory::MemoryBackend;
use crate::backend::sled::{SledBackend, SledOptions};
use crate::backend::{Backend, Outcome, Violation};
use crate::commit::GroupCommit;
use crate::config::{Config, Durability, Settings};
use crate::cookie::{CookieConfig, Lookup};
use crate::error::{Error, Result};
use crate::record::{self, Body, MAX_USER_LEN};
use crate::session::{Session, decode_named};
use crate::sweeper::Sweeper;
use crate::token::{KeyRing, Purpose, SessionId};

/// How often [`Engine::update`] retries after a conflict before giving up.
const UPDATE_RETRIES: usize = 64;
/// Lock stripes for [`Engine::update`]; ids are random, so any byte spreads.
const UPDATE_STRIPES: usize = 64;
/// Ids read from a user's index at a time: per-user work never holds more.
const USER_PAGE: usize = 256;

fn to_record(id: SessionId, bytes: &[u8]) -> Result<SessionRecord> {
    let (meta, body) = record::decode(bytes).map_err(|e| Error::Corrupt {
        id_hint: id.hint(),
        source: e,
    })?;
    Ok(SessionRecord {
        id,
        version: meta.version,
        user: meta.user.map(str::to_owned),
        created_at: body.created_ms,
        last_seen: body.last_seen_ms,
        expires_at: meta.expires_at,
        absolute_deadline: body.absolute_deadline_ms,
        idle_timeout_ms: body.idle_timeout_ms,
        data: body.data,
    })
}

fn check_user(user: &str) -> Result<()> {
    if user.is_empty() || user.len() > MAX_USER_LEN {
        return Err(Error::InvalidUser {
            len: user.len(),
            max: MAX_USER_LEN,
        });
    }
    Ok(())
}

/// One of a user's sessions, as listed by [`Engine::sessions_of`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session's id.
    pub id: SessionId,
    /// Created, ms since the Unix epoch.
    pub created_at: u64,
    /// Last seen, ms since the Unix epoch.
    pub last_seen: u64,
    /// Expires, ms since the Unix epoch.
    pub expires_at: u64,
}

/// What [`Engine::repair`] did.
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

/// Numbers for operators; see [`Engine::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
/// export and import ([`Engine::records`], [`Engine::import`]).
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
    /// Its idle timeout, in ms.
    pub idle_timeout_ms: u64,
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

/// What [`Engine::import`] did with one record.
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

/// Keys of the revocations this engine records (see [`Backend::revoke`]).
mod revocation {
    use crate::token::SessionId;

    /// One session, by id: no record of this id may come back.
    pub fn session(id: &SessionId) -> [u8; 33] {
        let mut k = [0u8; 33];
        k[0] = b'i';
        k[1..].copy_from_slice(id.as_bytes());
        k
    }

    /// Every session of a user created at or before the revocation.
    pub fn user(user: &str) -> Vec<u8> {
        [&b"u"[..], user.as_bytes()].concat()
    }

    /// Not a revocation: the store's record of the longest absolute timeout
    /// an engine has opened it with, kept in the revocations' own store
    /// (whose `revoke` keeps the largest `at` it was given) and never
    /// forgotten. Revocations must outlive every session they cover, and an
    /// engine with shorter settings (the operator's tool, with defaults)
    /// must not record or forget them sooner than the service would.
    pub const HORIZON: &[u8] = b"m:longest-absolute-timeout-ms";

    /// Reads the store's horizon, raising it to this engine's absolute
    /// timeout first if that is longer.
    pub fn horizon(
        backend: &dyn crate::backend::Backend,
        s: &crate::config::Settings,
    ) -> crate::error::Result<u64> {
        // Forever, for the horizon's own entry: a hundred years.
        const KEEP_MS: u64 = 100 * 365 * 24 * 3600 * 1000;
        let now = s.clock.now_ms();
        let stored = backend.revoked_at(HORIZON, now)?.unwrap_or(0);
        if stored < s.absolute_ms {
            backend.revoke(HORIZON, s.absolute_ms, now.saturating_add(KEEP_MS))?;
        }
        Ok(stored.max(s.absolute_ms))
    }
}

pub(crate) struct Inner {
    pub backend: Box<dyn Backend>,
    pub s: Settings,
    commit: GroupCommit,
    /// `update` calls on one session take turns on its stripe, so in-process
    /// updaters never starve each other with conflicts.
    update_locks: Vec<Mutex<()>>,
    pub swept: AtomicU64,
    pub sweep_passes: AtomicU64,
    pub sweep_errors: AtomicU64,
    /// How long revocations are kept: the longest absolute timeout any
    /// engine has opened this store with (see [`revocation::HORIZON`]).
    horizon_ms: u64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("backend", &self.backend)
            .field("durability", &self.s.durability)
            .finish_non_exhaustive()
    }
}

/// How a write waits for the disk.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// As configured: strict mode waits for the flush.
    AsConfigured,
    /// Never waits (touches, sweeps): losing one is harmless, because
    /// expiry is re-checked on every read.
    Never,
    /// Always waits, in either durability mode: what takes a session away
    /// from a cookie (logout, log out everywhere, the id change at login)
    /// must not be undone by a crash.
    Always,
}

impl Inner {
    pub fn now(&self) -> u64 {
        self.s.clock.now_ms()
    }

    /// Bookkeeping after a write: durability and the backlog bound.
    fn after_write(&self, wait: Wait) -> Result<()> {
        let (seq, unflushed) = self.commit.note_write();
        let strict = self.s.durability == Durability::Strict && wait == Wait::AsConfigured;
        if strict || wait == Wait::Always || unflushed >= self.s.max_unflushed_writes as u64 {
            self.commit.wait_durable(seq, || self.backend.flush())?;
        }
        Ok(())
    }

    pub fn after_sweep_delete(&self) -> Result<()> {
        self.after_write(Wait::Never)
    }

    fn encode(&self, version: u64, user: Option<&str>, body: &Body) -> Result<Vec<u8>> {
        let bytes = record::encode(version, user, body).map_err(|e| Error::Encode {
            key: "<record>".to_owned(),
            source: Box::new(e),
        })?;
        if bytes.len() > self.s.max_session_bytes {
            return Err(Error::TooLarge {
                size: bytes.len(),
                limit: self.s.max_session_bytes,
            });
        }
        Ok(bytes)
    }
}

/// An open session store; see the [crate docs](crate).
///
/// `Engine` is `Send + Sync`: share it (in an `Arc`) between threads.
/// `Debug` shows its backend, settings and counts, never a session.
pub struct Engine {
    inner: Arc<Inner>,
    sweeper: Mutex<Option<Sweeper>>,
    recovery: Option<Recovery>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("backend", &self.inner.backend)
            .field("durability", &self.inner.s.durability)
            .field("cookie", &self.inner.s.cookie.name())
            .field("swept", &self.inner.swept.load(Ordering::Relaxed))
            .field("recovered", &self.recovery.is_some())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens (or creates) the sled store in `dir`.
    ///
    /// Fails with [`Error::Locked`] at once if another process (or another
    /// engine) holds it, [`Error::NotAStore`] if `dir` holds something else,
    /// and [`Error::InvalidConfig`] for settings out of range.
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<Self> {
        let s = config.validate()?;
        let backend = SledBackend::open(
            dir.as_ref(),
            SledOptions {
                // An eighth of the budget holds whole records in front of
                // sled (loads of them skip sled's lock), the rest is sled's.
                cache_capacity: s.cache_capacity - s.cache_capacity / 8,
                flush_every_ms: Some(s.flush_every_ms),
                session_cache_bytes: usize::try_from(s.cache_capacity / 8).unwrap_or(usize::MAX),
            },
        )?;
        let was_clean = backend.was_clean;
        let mut engine = Self::start(Box::new(backend), s)?;
        if !was_clean {
            // The last run crashed: check the invariants the transactions
            // promise, and mend (and report) anything that broke.
            let found = engine.check()?;
            let repair = match found.is_empty() {
                true => None,
                false => Some(engine.repair()?),
            };
            engine.recovery = Some(Recovery { found, repair });
        }
        Ok(engine)
    }

    /// `Some` if the store's last run did not close cleanly: what the check
    /// at open found and repaired. `None` after a clean close.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    /// An engine on the memory backend: same semantics, nothing persists.
    pub fn memory(config: Config) -> Result<Self> {
        Self::start(Box::new(MemoryBackend::new()), config.validate()?)
    }

    /// An engine on Redis (feature `redis`): the same API and semantics,
    /// shared by every instance that names the same Redis and prefix. See
    /// [`RedisBackend`](crate::RedisBackend) for what changes.
    #[cfg(feature = "redis")]
    pub fn open_redis(options: crate::RedisOptions, config: Config) -> Result<Self> {
        let backend = crate::RedisBackend::open(options)?;
        Self::with_backend(Box::new(backend), config)
    }

    /// An engine on any backend.
    pub fn with_backend(backend: Box<dyn Backend>, config: Config) -> Result<Self> {
        Self::start(backend, config.validate()?)
    }

    fn start(backend: Box<dyn Backend>, s: Settings) -> Result<Self> {
        if let Some(why) = s.cookie.host_prefix_warning() {
            tracing::warn!("{why}");
        }
        let sweep = s.sweeper.then_some(s.sweep_interval);
        let horizon_ms = revocation::horizon(backend.as_ref(), &s)?;
        let inner = Arc::new(Inner {
            horizon_ms,
            backend,
            s,
            commit: GroupCommit::default(),
            update_locks: (0..UPDATE_STRIPES).map(|_| Mutex::new(())).collect(),
            swept: AtomicU64::new(0),
            sweep_passes: AtomicU64::new(0),
            sweep_errors: AtomicU64::new(0),
        });
        let sweeper = match sweep {
            Some(every) => Some(Sweeper::spawn(inner.clone(), every)?),
            None => None,
        };
        Ok(Self {
            inner,
            sweeper: Mutex::new(sweeper),
            recovery: None,
        })
    }

    /// The session cookie's settings.
    pub fn cookie_config(&self) -> &CookieConfig {
        &self.inner.s.cookie
    }

    /// The key ring that signs and verifies.
    pub fn key_ring(&self) -> &KeyRing {
        &self.inner.s.ring
    }

    /// The id named by the request's `Cookie` headers, if a cookie verifies.
    /// No storage is touched. Cookies of our name that verify but name
    /// different sessions are no session, and logged as a warning (see
    /// [`CookieConfig::lookup`]).
    pub fn session_id<'h, I>(&self, cookie_headers: I) -> Option<SessionId>
    where
        I: IntoIterator<Item = &'h [u8]>,
    {
        match self
            .inner
            .s
            .cookie
            .lookup(&self.inner.s.ring, cookie_headers)
        {
            Lookup::Found(id) => Some(id),
            Lookup::Missing => None,
            Lookup::Ambiguous => {
                tracing::warn!(
                    cookie = self.inner.s.cookie.name(),
                    "the request carries session cookies naming different sessions \
                     (cookie tossing?): treated as no session"
                );
                None
            }
        }
    }

    /// The live session named by the request's `Cookie` headers.
    ///
    /// The token is verified before any storage lookup, so a forged cookie
    /// costs no read. `Ok(None)` for no cookie, a bad cookie, or a session
    /// that is gone or expired.
    pub fn load<'h, I>(&self, cookie_headers: I) -> Result<Option<Session>>
    where
        I: IntoIterator<Item = &'h [u8]>,
    {
        match self.session_id(cookie_headers) {
            Some(id) => self.load_id(&id),
            None => Ok(None),
        }
    }

    /// The live session with this id.
    ///
    /// If its last-seen time has fallen behind by more than the touch
    /// threshold, it is moved to now and written back (the only write a read
    /// makes).
    pub fn load_id(&self, id: &SessionId) -> Result<Option<Session>> {
        let inner = &self.inner;
        // A touch that loses a race re-reads; bounded in case of a storm.
        for _ in 0..UPDATE_RETRIES {
            let now = inner.now();
            let Some(mut session) = self.read(id, now)? else {
                return Ok(None);
            };
            if now.saturating_sub(session.body.last_seen_ms) <= inner.s.touch_ms {
                return Ok(Some(session));
            }
            inner.commit.check_writable()?;
            let read_at = session.version.unwrap_or_default();
            session.body.last_seen_ms = now;
            let version = read_at + 1;
            let value = inner.encode(version, session.user.as_deref(), &session.body)?;
            match inner.backend.put(id, Some(read_at), &value, now)? {
                Outcome::Written => {
                    inner.after_write(Wait::Never)?;
                    session.version = Some(version);
                    session.touched = true;
                    return Ok(Some(session));
                }
                Outcome::Missing => return Ok(None),
                Outcome::Conflict => continue,
            }
        }
        Err(Error::Conflict { id_hint: id.hint() })
    }

    /// The stored copy of a live session, as it is: no touch.
    fn read(&self, id: &SessionId, now: u64) -> Result<Option<Session>> {
        let Some(bytes) = self.inner.backend.get(id, now)? else {
            return Ok(None);
        };
        let (meta, body) = record::decode(&bytes).map_err(|e| Error::Corrupt {
            id_hint: id.hint(),
            source: e,
        })?;
        if meta.expires_at <= now {
            return Ok(None);
        }
        Ok(Some(Session {
            id: *id,
            version: Some(meta.version),
            user: meta.user.map(str::to_owned),
            body,
            pending: BTreeMap::new(),
            changed: false,
            renewed: false,
            touched: false,
        }))
    }

    /// A new, empty session with a fresh id. It is stored by the first
    /// [`save`](Self::save) that finds it holding something, so visitors that
    /// never get a value (bots without cookies) cost no disk.
    pub fn create(&self) -> Result<Session> {
        let now = self.inner.now();
        Ok(Session {
            id: SessionId::generate()?,
            version: None,
            user: None,
            body: self.fresh_body(now),
            pending: BTreeMap::new(),
            changed: false,
            renewed: true,
            touched: false,
        })
    }

    /// The times of a session that starts now, and no values.
    fn fresh_body(&self, now: u64) -> Body {
        Body {
            created_ms: now,
            last_seen_ms: now,
            absolute_deadline_ms: now.saturating_add(self.inner.s.absolute_ms),
            idle_timeout_ms: self.inner.s.idle_ms,
            data: BTreeMap::new(),
        }
    }

    /// Stores the session's changes, if it has any.
    ///
    /// Fails with [`Error::Conflict`] if the stored session changed since
    /// this copy was loaded, [`Error::Gone`] if it was destroyed or expired
    /// (it is not brought back), and [`Error::TooLarge`] if it exceeds the
    /// size limit (nothing is written or truncated). A new session that is
    /// still empty is not written.
    pub fn save(&self, session: &mut Session) -> Result<()> {
        if !session.changed || (session.is_new() && session.is_empty()) {
            return Ok(());
        }
        let inner = &self.inner;
        inner.commit.check_writable()?;
        let now = inner.now();
        let mut body = session.body.clone();
        body.last_seen_ms = body.last_seen_ms.max(now);
        let version = session.version.map_or(1, |v| v + 1);
        // The user goes back as it was read: a version-checked write cannot
        // change who the session belongs to (only login, with a new id, can).
        let value = inner.encode(version, session.user.as_deref(), &body)?;
        match inner
            .backend
            .put(&session.id, session.version, &value, now)?
        {
            Outcome::Written => {}
            Outcome::Conflict => {
                return Err(Error::Conflict {
                    id_hint: session.id.hint(),
                });
            }
            Outcome::Missing => {
                return Err(Error::Gone {
                    id_hint: session.id.hint(),
                });
            }
        }
        session.body = body;
        session.stored_at(version);
        inner.after_write(Wait::AsConfigured)
    }

    /// Gives the session a new id, keeping its data (and storing its pending
    /// changes); the old id stops working in the same atomic step. Call it
    /// whenever privileges change, so an id planted before (session
    /// fixation) is worthless after it; [`login`](Self::login) does.
    ///
    /// If another request stored the session in between, it retries on the
    /// fresh copy with this copy's unsaved values laid over it, so an
    /// unrelated write never makes it fail. It returns once the change is
    /// durable, in either durability mode: after a crash the old id must not
    /// work again. On failure `session` is left exactly as it was:
    /// [`Error::Gone`] if the session was destroyed or expired meanwhile.
    pub fn regenerate(&self, session: &mut Session) -> Result<()> {
        self.change_id(session, None)
    }

    /// Logs `user` in: a new id carrying the user, in one atomic step with
    /// the old id's deletion, durable before it returns (in either
    /// durability mode). Either the new id carries the user, or nothing
    /// stored changed and `session` is exactly as it was (an error).
    ///
    /// What the new session holds:
    /// - from an anonymous session, or one of the same `user`: its values,
    ///   this copy's unsaved ones included (a cart survives login);
    /// - from a session of a *different* user: nothing. It starts empty
    ///   (Django's `flush`), so no value of one account leaks into
    ///   another; set the new session's values after this call.
    ///
    /// Either way the session's times start again: created now, with a
    /// fresh absolute deadline. Races are retried as in
    /// [`regenerate`](Self::regenerate). If the user then has more than
    /// [`Config::max_sessions_per_user`] sessions, their oldest are
    /// destroyed (never this one).
    pub fn login(&self, session: &mut Session, user: &str) -> Result<()> {
        check_user(user)?;
        self.change_id(session, Some(user))
    }

    /// The id change behind [`regenerate`](Self::regenerate) and
    /// [`login`](Self::login). It works on copies and writes `session` back
    /// only once the new id is durable.
    fn change_id(&self, session: &mut Session, login: Option<&str>) -> Result<()> {
        let inner = &self.inner;
        inner.commit.check_writable()?;
        // In-process updaters of the old id wait their turn, so they cannot
        // starve this rename with conflicts; released once it is done.
        let turn = self.stripe(&session.id);
        // The old id is revoked before it is renamed away, as every revoker
        // does: an import racing this call then meets the revocation once
        // the old id is gone, and a crash between the two leaves only a
        // revocation of a live id (which blocks nothing but importing it).
        if session.version.is_some() {
            self.revoke_session(&session.id, inner.now())?;
        }
        // The user the new id will carry, and that user's revocation as it
        // stands before the change (see the check after the rename).
        let user = login.or(session.user.as_deref()).map(str::to_owned);
        let revoked_before = match &user {
            Some(u) => self.user_revoked_at(u)?,
            None => None,
        };
        // `from` is the copy whose stored version the rename expects: the
        // caller's, then after a conflict the fresh stored one with the
        // caller's unsaved values replayed over it.
        let mut from = session.clone();
        for _ in 0..UPDATE_RETRIES {
            let now = inner.now();
            let mut next = from.clone();
            next.id = SessionId::generate()?;
            next.body.last_seen_ms = next.body.last_seen_ms.max(now);
            if let Some(user) = login {
                if next.user.as_deref().is_some_and(|u| u != user) {
                    // Another account's session: nothing of it carries over.
                    next.pending.clear();
                    next.body.data.clear();
                }
                let data = std::mem::take(&mut next.body.data);
                next.body = Body {
                    data,
                    ..self.fresh_body(now)
                };
                next.user = Some(user.to_owned());
            }
            let version = from.version.map_or(1, |v| v + 1);
            let outcome = match from.version {
                // Never stored and still empty: a new id is all it takes.
                None if next.is_empty() => Outcome::Written,
                None => {
                    let value = inner.encode(version, next.user.as_deref(), &next.body)?;
                    inner.backend.put(&next.id, None, &value, now)?
                }
                Some(expected) => {
                    let value = inner.encode(version, next.user.as_deref(), &next.body)?;
                    inner
                        .backend
                        .rename(&from.id, expected, &next.id, &value, now)?
                }
            };
            match outcome {
                Outcome::Written => {}
                // A fresh id that is taken: astronomically unlikely; draw again.
                Outcome::Conflict if from.version.is_none() => continue,
                Outcome::Conflict => {
                    // Another request stored the session in between.
                    let Some(mut fresh) = self.read(&from.id, now)? else {
                        return Err(Error::Gone {
                            id_hint: from.id.hint(),
                        });
                    };
                    session.replay_pending(&mut fresh);
                    from = fresh;
                    continue;
                }
                Outcome::Missing => {
                    return Err(Error::Gone {
                        id_hint: from.id.hint(),
                    });
                }
            }
            let stored = !(from.version.is_none() && next.is_empty());
            if stored {
                next.stored_at(version);
            }
            drop(turn);
            next.renewed = true;
            next.touched = false;
            if let Some(user) = user.as_deref()
                && self.revoked_meanwhile(user, revoked_before, next.body.created_ms)?
            {
                // A log out everywhere covers this session, and its walk of
                // the user's index may have passed the new id's place before
                // the rename landed: it wins.
                self.revoke_session(&next.id, now)?;
                inner.backend.delete(&next.id)?;
                inner.after_write(Wait::Always)?;
                return Err(Error::Gone {
                    id_hint: from.id.hint(),
                });
            }
            if let Some(user) = login
                && let Err(e) = self.trim_user(user, &next.id, now)
            {
                // The login itself is done; the limit is upkeep.
                tracing::warn!(error = %e, "could not log out a user's oldest sessions");
            }
            if stored {
                inner.after_write(Wait::Always)?;
            }
            *session = next;
            return Ok(());
        }
        Err(Error::Conflict {
            id_hint: session.id.hint(),
        })
    }

    /// Records that `id` was revoked, before it is deleted: an export taken
    /// earlier must not bring it back ([`import`](Self::import)). Kept for
    /// the longest absolute timeout any engine has used on this store, past
    /// which no record of it could be alive anyway.
    fn revoke_session(&self, id: &SessionId, now: u64) -> Result<()> {
        let until = now.saturating_add(self.inner.horizon_ms);
        self.inner
            .backend
            .revoke(&revocation::session(id), now, until)
    }

    /// When `user` was last logged out everywhere, if that is still kept.
    fn user_revoked_at(&self, user: &str) -> Result<Option<u64>> {
        self.inner
            .backend
            .revoked_at(&revocation::user(user), self.inner.now())
    }

    /// Whether `user` was logged out everywhere at or after `created`.
    fn user_revoked_since(&self, user: &str, created: u64, now: u64) -> Result<bool> {
        Ok(self
            .inner
            .backend
            .revoked_at(&revocation::user(user), now)?
            .is_some_and(|at| created <= at))
    }

    /// After an id change: whether a log out everywhere of `user` covers
    /// the session, given the user's revocation as read before the change.
    /// It does if one was recorded during the change (whatever the clocks
    /// say), or one is later than the session's creation. A revocation in
    /// the very millisecond the session was created, and already there
    /// before the change, does not: it came first (a login right after a
    /// log out everywhere).
    fn revoked_meanwhile(&self, user: &str, before: Option<u64>, created: u64) -> Result<bool> {
        Ok(match self.user_revoked_at(user)? {
            Some(at) => Some(at) != before || at > created,
            None => false,
        })
    }

    /// The update lock stripe of `id`.
    fn stripe(&self, id: &SessionId) -> MutexGuard<'_, ()> {
        let stripe = usize::from(id.as_bytes()[0]) % UPDATE_STRIPES;
        // The guard protects no data; a panic in another holder leaves
        // nothing to repair.
        self.inner.update_locks[stripe]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Deletes the session; `true` if it existed. Later saves of any copy of
    /// it fail with [`Error::Gone`].
    pub fn destroy(&self, session: &Session) -> Result<bool> {
        self.destroy_id(&session.id)
    }

    /// Deletes the session with this id; `true` if it existed. It returns
    /// once the session's absence is durable, in either durability mode (a
    /// logged-out cookie must not work again after a crash), also when
    /// another write (a sweep, another logout) had already deleted it.
    pub fn destroy_id(&self, id: &SessionId) -> Result<bool> {
        self.inner.commit.check_writable()?;
        self.revoke_session(id, self.inner.now())?;
        let existed = self.inner.backend.delete(id)?;
        // Whether or not it was there: the revocation must be durable, and
        // so must a delete by someone else (the sweeper, a log out
        // everywhere still walking) that made it absent.
        self.inner.after_write(Wait::Always)?;
        Ok(existed)
    }

    /// Loads the session, applies `f`, and saves it, retrying from a fresh
    /// load when another request changed it in between, so no update is lost.
    /// `f` may run more than once. Returns the session as saved and what the
    /// run of `f` that was saved returned; `Ok(None)` if the session does
    /// not exist.
    pub fn update<R>(
        &self,
        id: &SessionId,
        mut f: impl FnMut(&mut Session) -> R,
    ) -> Result<Option<(Session, R)>> {
        let _turn = self.stripe(id);
        for _ in 0..UPDATE_RETRIES {
            let Some(mut session) = self.load_id(id)? else {
                return Ok(None);
            };
            let out = f(&mut session);
            match self.save(&mut session) {
                Ok(()) => return Ok(Some((session, out))),
                Err(Error::Conflict { .. }) => continue,
                Err(Error::Gone { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict { id_hint: id.hint() })
    }

    /// Stores the session's changes as [`save`](Self::save) does, except
    /// that a conflict is merged instead of reported: when another request
    /// stored the session since this copy was read, the fresh copy is loaded,
    /// this copy's unsaved changes are laid over it key by key (the values it
    /// set, the values it removed), and that is saved, retried like
    /// [`update`](Self::update). Where both set the same key, the last to
    /// save wins. A merge carries values only: it never changes who the
    /// session belongs to (only [`login`](Self::login) and destroying do).
    ///
    /// On success `session` is the copy as stored; it still needs a cookie
    /// ([`Session::needs_cookie`]) if it did before. Fails with
    /// [`Error::Gone`] if the session was destroyed or expired meanwhile
    /// (this copy's changes are dropped rather than bringing it back), and
    /// otherwise as `save` does. For a read-modify-write of one value (a
    /// counter) use [`update`](Self::update): a merge keeps the last value
    /// written, not the sum.
    pub fn save_merging(&self, session: &mut Session) -> Result<()> {
        match self.save(session) {
            // A new session's fresh id already taken is no copy of ours to
            // merge into (the same astronomically unlikely draw as in
            // `change_id`).
            Err(Error::Conflict { .. }) if !session.is_new() => {}
            done => return done,
        }
        let id = session.id;
        let _turn = self.stripe(&id);
        for _ in 0..UPDATE_RETRIES {
            let Some(mut fresh) = self.load_id(&id)? else {
                return Err(Error::Gone { id_hint: id.hint() });
            };
            session.replay_pending(&mut fresh);
            match self.save(&mut fresh) {
                Ok(()) => {
                    // What the browser still needs is this copy's to say.
                    fresh.renewed = session.renewed;
                    fresh.touched |= session.touched;
                    *session = fresh;
                    return Ok(());
                }
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict { id_hint: id.hint() })
    }

    /// Calls `each` with every id in `user`'s index, a page at a time, so
    /// that no number of sessions is ever held in memory at once.
    fn each_of_user(
        &self,
        user: &str,
        mut each: impl FnMut(SessionId) -> Result<()>,
    ) -> Result<()> {
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let page = self
                .inner
                .backend
                .user_sessions(user, cursor.as_deref(), USER_PAGE)?;
            for id in page.ids {
                each(id)?;
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// The live sessions of `user`, oldest first: at most
    /// [`Config::max_sessions_per_user`] of them, the newest. The user's
    /// index is read a page at a time, so memory stays bounded by that limit
    /// whatever the index holds.
    pub fn sessions_of(&self, user: &str) -> Result<Vec<SessionInfo>> {
        check_user(user)?;
        let now = self.inner.now();
        let cap = self.inner.s.max_sessions_per_user;
        let mut newest: BTreeMap<(u64, SessionId), SessionInfo> = BTreeMap::new();
        self.each_of_user(user, |id| {
            let Some(s) = self.read(&id, now)? else {
                return Ok(());
            };
            if s.user() != Some(user) {
                return Ok(());
            }
            newest.insert(
                (s.created_at(), id),
                SessionInfo {
                    id,
                    created_at: s.created_at(),
                    last_seen: s.last_seen(),
                    expires_at: s.expires_at(),
                },
            );
            if newest.len() > cap {
                newest.pop_first();
            }
            Ok(())
        })?;
        Ok(newest.into_values().collect())
    }

    /// Destroys `user`'s oldest sessions beyond the per-user limit, never
    /// `keep` (the session just logged in). The index is counted first
    /// (cheap, no records read); only a user over the limit pays for reading
    /// the records, a page at a time, keeping the newest in a bounded set.
    fn trim_user(&self, user: &str, keep: &SessionId, now: u64) -> Result<()> {
        let cap = self.inner.s.max_sessions_per_user;
        let mut count = 0usize;
        self.each_of_user(user, |_| {
            count += 1;
            Ok(())
        })?;
        if count <= cap {
            return Ok(());
        }
        // The newest `cap - 1` others, besides `keep`.
        let room = cap.saturating_sub(1);
        let mut newest: BTreeSet<(u64, SessionId)> = BTreeSet::new();
        let mut evict: Vec<SessionId> = Vec::new();
        self.each_of_user(user, |id| {
            if id == *keep {
                return Ok(());
            }
            let created = match self.read(&id, now) {
                Ok(Some(s)) => s.created_at(),
                // Expired or gone: the sweeper's, not ours. A record that
                // does not decode is for check and repair; it must not make
                // a login fail.
                Ok(None) | Err(Error::Corrupt { .. }) => return Ok(()),
                Err(e) => return Err(e),
            };
            newest.insert((created, id));
            if newest.len() > room
                && let Some((_, oldest)) = newest.pop_first()
            {
                evict.push(oldest);
            }
            if evict.len() >= USER_PAGE {
                for id in evict.drain(..) {
                    self.revoke_session(&id, now)?;
                    self.inner.backend.delete(&id)?;
                }
            }
            Ok(())
        })?;
        for id in evict {
            self.revoke_session(&id, now)?;
            self.inner.backend.delete(&id)?;
        }
        Ok(())
    }

    /// Deletes every session of `user` except `keep` ("log out everywhere
    /// else"); returns how many were deleted. It works a page of the user's
    /// index at a time, and returns once the deletions are durable, in
    /// either durability mode.
    pub fn destroy_user(&self, user: &str, keep: Option<&SessionId>) -> Result<usize> {
        check_user(user)?;
        self.inner.commit.check_writable()?;
        // First the revocation, then the deletions: an import racing this
        // call either meets the revocation or is deleted by the walk.
        let now = self.inner.now();
        let until = now.saturating_add(self.inner.horizon_ms);
        self.inner
            .backend
            .revoke(&revocation::user(user), now, until)?;
        let mut n = 0;
        self.each_of_user(user, |id| {
            if Some(&id) == keep {
                return Ok(());
            }
            // Each id too, so no clock has to agree with this one's for an
            // old export of it to stay out.
            self.revoke_session(&id, now)?;
            if self.inner.backend.delete(&id)? {
                n += 1;
            }
            Ok(())
        })?;
        self.inner.after_write(Wait::Always)?;
        Ok(n)
    }

    /// The `Set-Cookie` value that hands this session to the browser.
    pub fn set_cookie(&self, session: &Session) -> String {
        let token = self.inner.s.ring.sign(Purpose::Session, &session.id);
        let left = session.expires_at().saturating_sub(self.inner.now());
        self.inner
            .s
            .cookie
            .set_cookie(&token, std::time::Duration::from_millis(left))
    }

    /// A CSRF token bound to this session id: its keyed CSRF tag, masked
    /// afresh on every call (see [`KeyRing::csrf_token`]). It costs no
    /// storage, changes with the id (at login), reveals nothing of the id,
    /// and can never be used as a session cookie. Fails only if the OS
    /// random number generator does.
    pub fn csrf_token(&self, id: &SessionId) -> Result<String> {
        self.inner.s.ring.csrf_token(id)
    }

    /// `true` if `token` is a CSRF token of this session id under a key in
    /// the ring. The tag comparison is constant-time.
    pub fn verify_csrf(&self, id: &SessionId, token: &[u8]) -> bool {
        self.inner.s.ring.verify_csrf(id, token)
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn removal_cookie(&self) -> String {
        self.inner.s.cookie.removal()
    }

    /// Counts for operators. Walks the index trees: seconds on a store of
    /// millions, so not for every request.
    pub fn stats(&self) -> Result<Stats> {
        let b = self.inner.backend.stats(self.inner.now())?;
        Ok(Stats {
            live_sessions: b.live_sessions,
            users: b.users,
            expired_pending: b.expired_pending,
            bytes_on_disk: b.bytes_on_disk,
            swept: self.inner.swept.load(Ordering::Relaxed),
            sweep_passes: self.inner.sweep_passes.load(Ordering::Relaxed),
            sweep_errors: self.inner.sweep_errors.load(Ordering::Relaxed),
        })
    }

    /// Every broken invariant of the store (empty when sound).
    pub fn check(&self) -> Result<Vec<Violation>> {
        self.inner.backend.check()
    }

    /// Mends every violation [`check`](Self::check) finds: index entries
    /// are made to agree with the `sessions` tree (the source of truth), and
    /// records that do not decode are moved to quarantine. Each fix is its
    /// own small atomic step that re-checks its violation first, so repair
    /// is safe while the engine serves requests. Moving a record to
    /// quarantine orphans its index entries, so it runs check and fix until
    /// nothing changes (at most four rounds).
    pub fn repair(&self) -> Result<RepairReport> {
        self.inner.commit.check_writable()?;
        let mut report = RepairReport::default();
        for _ in 0..4 {
            let found = self.check()?;
            let mut changed = false;
            for v in found {
                if self.inner.backend.fix(&v)? {
                    report.fixed.push(v);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        self.flush()?;
        report.remaining = self.check()?;
        report.quarantined = self.inner.backend.quarantined()?;
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
            .inner
            .backend
            .scan(after, limit)?
            .into_iter()
            .map(|(id, bytes)| (id, to_record(id, &bytes)))
            .collect())
    }

    /// The stored record of a live session.
    pub fn record(&self, id: &SessionId) -> Result<Option<SessionRecord>> {
        let now = self.inner.now();
        match self.inner.backend.get(id, now)? {
            Some(bytes) => {
                let r = to_record(*id, &bytes)?;
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
        let inner = &self.inner;
        let now = inner.now();
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
                .min(r.created_at.saturating_add(inner.s.absolute_ms)),
            idle_timeout_ms: r.idle_timeout_ms.min(inner.s.idle_ms),
            data: r.data.clone(),
        };
        if body.expires_at() <= now {
            return Ok(Imported::Expired);
        }
        if self.is_revoked(r, now)? {
            return Ok(Imported::Revoked);
        }
        inner.commit.check_writable()?;
        let value = inner.encode(1, r.user.as_deref(), &body)?;
        match inner.backend.put(&r.id, None, &value, now)? {
            Outcome::Written => {}
            Outcome::Conflict | Outcome::Missing => return Ok(Imported::Exists),
        }
        // A revocation that came in between (log out everywhere walking the
        // user's index before this write landed) wins.
        if self.is_revoked(r, now)? {
            inner.backend.delete(&r.id)?;
            inner.after_write(Wait::Always)?;
            return Ok(Imported::Revoked);
        }
        inner.after_write(Wait::AsConfigured)?;
        Ok(Imported::Written)
    }

    /// Whether a revocation recorded here covers this record.
    fn is_revoked(&self, r: &SessionRecord, now: u64) -> Result<bool> {
        let backend = &self.inner.backend;
        if backend
            .revoked_at(&revocation::session(&r.id), now)?
            .is_some()
        {
            return Ok(true);
        }
        Ok(match r.user.as_deref() {
            Some(user) => self.user_revoked_since(user, r.created_at, now)?,
            None => false,
        })
    }

    /// Runs one sweeper pass now; returns how many sessions it deleted.
    pub fn sweep_now(&self) -> Result<u64> {
        crate::sweeper::pass(&self.inner)
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<()> {
        let (seq, _) = self.inner.commit.note_write();
        self.inner
            .commit
            .wait_durable(seq, || self.inner.backend.flush())
    }

    /// Stops the sweeper, flushes, and closes the store, marking it closed
    /// cleanly (so the next open skips the crash check). A poisoned engine
    /// is not marked clean.
    pub fn close(self) -> Result<()> {
        self.stop_sweeper();
        self.inner.commit.check_writable()?;
        self.inner.backend.close()
    }

    fn stop_sweeper(&self) {
        let sweeper = self
            .sweeper
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(s) = sweeper {
            s.stop();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop_sweeper();
        // Errors cannot be returned from drop; `close` reports them.
        if self.inner.commit.check_writable().is_ok() {
            let _ = self.inner.backend.close();
        }
    }
}
