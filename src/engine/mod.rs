//! The engine: session policy over a backend.
//!
//! It holds what the backend does not: timeouts and sliding expiry, touch
//! coalescing, size limits, version checks and retries, durability, and the
//! sweeper thread.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::backend::sled::{SledBackend, SledOptions};
use crate::backend::{Backend, Outcome, Stored};
use crate::commit::GroupCommit;
use crate::config::{Config, Durability, Settings};
use crate::cookie::{CookieConfig, Lookup};
use crate::error::{Error, Result};
use crate::metrics::{Load, Meter, Metrics};
use crate::poison::Poison;
use crate::record::{self, Body, MAX_USER_LEN};

mod admin;
#[cfg(feature = "tower-sessions")]
pub(crate) mod external;
mod login;
mod revocation;
mod users;

use crate::session::Session;
use crate::sweeper::{self, Sweeper};
use crate::token::{KeyRing, Purpose, SessionId};
pub use admin::{Admin, Imported, Recovery, RepairReport, SessionRecord, Stats};
pub use users::SessionInfo;

/// How often [`Engine::update`] retries after a conflict before giving up.
const UPDATE_RETRIES: usize = 64;
/// Lock stripes for [`Engine::update`]; ids are random, so any byte spreads.
const UPDATE_STRIPES: usize = 64;

fn check_user(user: &str) -> Result<()> {
    if user.is_empty() || user.len() > MAX_USER_LEN {
        return Err(Error::InvalidUser {
            len: user.len(),
            max: MAX_USER_LEN,
        });
    }
    Ok(())
}

/// What the engine's handles and its sweeper thread share.
struct Shared {
    backend: Box<dyn Backend>,
    settings: Settings,
    commit: GroupCommit,
    /// The engine's one failure signal, shared with its store (see
    /// [`Poison`]).
    poison: Arc<Poison>,
    /// Set by the first close; the store is closed exactly once.
    closed: AtomicBool,
    /// `update` calls on one session take turns on its stripe, so in-process
    /// updaters never starve each other with conflicts.
    update_locks: Vec<Mutex<()>>,
    /// What the sweeper has done, for [`Admin::stats`].
    sweep_counters: Arc<sweeper::Counters>,
    /// How long revocations are kept: the longest absolute timeout any
    /// engine has opened this store with (see [`revocation::HORIZON`]).
    horizon_ms: u64,
    /// What operators watch (see [`Engine::metrics`]).
    meter: Arc<Meter>,
    opened: std::time::Instant,
    /// The store is the sled store on local disk ([`Engine::open`]), not
    /// a backend of unknown speed (Redis, the caller's own).
    local: bool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("backend", &self.backend)
            .field("durability", &self.settings.durability)
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

impl Shared {
    fn now(&self) -> u64 {
        self.settings.clock.now_ms()
    }

    /// Bookkeeping after a write: durability and the backlog bound.
    fn after_write(&self, wait: Wait) -> Result<()> {
        let (seq, unflushed) = self.commit.note_write();
        let strict = self.settings.durability == Durability::Strict && wait == Wait::AsConfigured;
        if strict || wait == Wait::Always || unflushed >= self.settings.max_unflushed_writes as u64
        {
            self.wait_durable(seq)?;
        }
        Ok(())
    }

    /// Waits until write `seq` is durable, flushing if no one else is.
    fn wait_durable(&self, seq: u64) -> Result<()> {
        self.commit.wait_durable(seq, || {
            let started = std::time::Instant::now();
            let flushed = self.backend.flush();
            self.meter.flushed(started.elapsed());
            flushed
        })
    }

    /// One sweeper pass, as of now; its deletions never wait for the disk.
    fn sweep(&self) -> Result<u64> {
        self.sweep_while(&|| true)
    }

    /// [`sweep`](Self::sweep), giving up between batches once
    /// `keep_going` says no.
    fn sweep_while(&self, keep_going: &dyn Fn() -> bool) -> Result<u64> {
        let swept = sweeper::pass(
            self.backend.as_ref(),
            self.now(),
            self.settings.sweep_batch,
            &self.sweep_counters,
            || match keep_going() {
                true => self.after_write(Wait::Never),
                false => Err(Error::Closed),
            },
        );
        if swept.is_err() {
            self.sweep_counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.meter.swept(swept.as_ref().map(|n| *n).map_err(|_| ()));
        swept
    }

    /// Everything counted since open; see [`Engine::metrics`].
    fn metrics(&self) -> Metrics {
        let mut m = self.meter.snapshot();
        m.uptime_ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        let c = &self.sweep_counters;
        m.sweeps = c.passes.load(Ordering::Relaxed);
        m.swept = c.swept.load(Ordering::Relaxed);
        m.sweep_errors = c.errors.load(Ordering::Relaxed);
        m.last_sweep_at = match c.last_pass_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(at),
        };
        m.poisoned = self.poison.is_set();
        m
    }

    /// What the backend stores of a session: `body` encoded, its version,
    /// expiry and user handed over beside it. Fails past the size limit
    /// (the whole stored record counts).
    fn encode(&self, version: u64, user: Option<&str>, body: &Body) -> Result<Stored> {
        let bytes = record::encode_body(body).map_err(|e| Error::EncodeRecord(Box::new(e)))?;
        let size = record::framed_len(user.map_or(0, str::len), bytes.len());
        if size > self.settings.max_session_bytes {
            return Err(Error::TooLarge {
                size,
                limit: self.settings.max_session_bytes,
            });
        }
        Ok(
            Stored::new(version, body.expires_at(), user.map(str::to_owned), bytes).with_sliding(
                crate::backend::Sliding::new(
                    body.last_seen_ms,
                    body.idle_timeout_ms,
                    body.absolute_deadline_ms,
                ),
            ),
        )
    }
}

/// The body of a stored session, with the last-seen time its store keeps
/// beside it where that is later (a store that touches in the read moves
/// that time, not the body's).
pub(crate) fn decode_stored_body(id: &SessionId, stored: &Stored) -> Result<Body> {
    let mut body = record::decode_body(&stored.body).map_err(|e| Error::Corrupt {
        id_hint: id.hint(),
        source: e,
    })?;
    if let Some(sliding) = stored.sliding {
        body.last_seen_ms = body.last_seen_ms.max(sliding.last_seen_ms);
    }
    Ok(body)
}

/// An open session store; see the [crate docs](crate).
///
/// `Engine` is `Send + Sync`: share it (in an `Arc`) between threads.
/// `Debug` shows its backend, settings and counts, never a session.
pub struct Engine {
    shared: Arc<Shared>,
    sweeper: Mutex<Option<Sweeper>>,
    #[cfg(unix)]
    control: Mutex<Option<crate::control::Server>>,
    recovery: Option<Recovery>,
    /// Whether this handle owns the store (closes it at close or drop).
    /// The control socket's connections work through handles that do not
    /// ([`Engine::view`]): the owner stops them before it closes.
    owner: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("backend", &self.shared.backend)
            .field("durability", &self.shared.settings.durability)
            .field("cookie", &self.shared.settings.cookie.name())
            .field(
                "swept",
                &self.shared.sweep_counters.swept.load(Ordering::Relaxed),
            )
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
        let meter = Arc::new(Meter::new());
        let poison = Arc::new(Poison::watched_by(meter.clone()));
        let backend = SledBackend::open_with(
            dir.as_ref(),
            SledOptions {
                // An eighth of the budget holds whole records in front of
                // sled (loads of them skip sled's lock), the rest is sled's.
                cache_capacity: s.cache_capacity - s.cache_capacity / 8,
                flush_every_ms: Some(s.flush_every_ms),
                session_cache_bytes: usize::try_from(s.cache_capacity / 8).unwrap_or(usize::MAX),
                max_record_bytes: s.max_session_bytes,
                apply: match s.write_path_v1 {
                    true => crate::backend::sled::Apply::Transactions,
                    false => crate::backend::sled::Apply::Ordered,
                },
            },
            poison.clone(),
            meter.clone(),
        )?;
        let was_clean = backend.was_clean();
        // sled panics where its own pages are missing: that is a damaged
        // store, an error here, never a panic out of `open`. Neither step
        // caught here marks the store clean on the way out: `new` panics
        // only before the engine exists (reading revocations), and after a
        // failed recovery the engine is marked closed before it drops.
        let damaged = |panic: Box<dyn std::any::Any + Send>| Error::Damaged {
            path: dir.as_ref().to_owned(),
            reason: panic_message(panic.as_ref()),
        };
        let new = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Self::new(Box::new(backend), s, poison, meter, true)
        }));
        let mut engine = new.unwrap_or_else(|panic| Err(damaged(panic)))?;
        if !was_clean {
            // The last run crashed: check the invariants the transactions
            // promise, and mend (and report) anything that broke; before
            // the sweeper starts, so nothing races the repair.
            let recovered =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.recover()))
                    .unwrap_or_else(|panic| Err(damaged(panic)));
            match recovered {
                Ok(recovery) => engine.recovery = Some(recovery),
                Err(e) => {
                    // Not recovered: the store must not be marked clean on
                    // the way out, so the next open checks it again.
                    engine.shared.closed.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            }
        }
        engine.start_sweeper()?;
        // Without its control socket the service still serves: operators
        // lose the live tool, which the warning says.
        #[cfg(unix)]
        if engine.shared.settings.control {
            match crate::control::Server::start(dir.as_ref(), &engine) {
                Ok(server) => {
                    *engine.control.lock().unwrap_or_else(|e| e.into_inner()) = Some(server);
                }
                Err(e) => tracing::warn!(
                    store = %dir.as_ref().display(),
                    error = %e,
                    "no control socket: the sessiondb tool cannot reach this running engine"
                ),
            }
        }
        Ok(engine)
    }

    /// Another handle on this engine that never closes it: what each
    /// connection of the control socket works through. The owner stops the
    /// control socket, and with it every such handle, before it closes.
    #[cfg(unix)]
    pub(crate) fn view(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            sweeper: Mutex::new(None),
            control: Mutex::new(None),
            recovery: None,
            owner: false,
        }
    }

    /// The engine's counters since open: loads by outcome, writes,
    /// destroys, sweeps, the sled store's commits and flushes, the write
    /// queue, the record cache, and whether the engine is poisoned. With
    /// the feature `metrics` they are published through the `metrics`
    /// facade too; see [`metrics`](crate::metrics) for the names.
    pub fn metrics(&self) -> Metrics {
        self.shared.metrics()
    }

    fn recover(&self) -> Result<Recovery> {
        let found = self.admin().check()?;
        let repair = match found.is_empty() {
            true => None,
            false => Some(self.admin().repair()?),
        };
        Ok(Recovery { found, repair })
    }

    /// `Some` if the store's last run did not close cleanly: what the check
    /// at open found and repaired. `None` after a clean close.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    /// The operator's API: statistics, check and repair, listing, export
    /// and import, sweeping on demand. Kept apart from the request API
    /// (load, create, save, login, destroy, ...) that a service calls.
    pub fn admin(&self) -> Admin<'_> {
        Admin::new(self)
    }

    /// An engine on any other backend: the memory backend (same
    /// semantics, nothing persists), Redis (feature `redis`), or one of your
    /// own. The one way to open each; [`open`](Self::open) is the sled
    /// store's.
    ///
    /// ```
    /// use sessiondb::{Config, Engine, Key, KeyRing, MemoryBackend};
    /// let ring = KeyRing::new(1, Key::generate()?);
    /// let engine = Engine::with_backend(MemoryBackend::new(), Config::new(ring.clone()))?;
    /// // Or one chosen at run time:
    /// let backend: Box<dyn sessiondb::Backend> = Box::new(MemoryBackend::new());
    /// let engine = Engine::with_backend(backend, Config::new(ring))?;
    /// # Ok::<(), sessiondb::Error>(())
    /// ```
    pub fn with_backend(backend: impl Backend, config: Config) -> Result<Self> {
        let meter = Arc::new(Meter::new());
        let engine = Self::new(
            Box::new(backend),
            config.validate()?,
            Arc::new(Poison::watched_by(meter.clone())),
            meter,
            false,
        )?;
        engine.start_sweeper()?;
        Ok(engine)
    }

    /// The engine, without its sweeper yet.
    fn new(
        backend: Box<dyn Backend>,
        s: Settings,
        poison: Arc<Poison>,
        meter: Arc<Meter>,
        local: bool,
    ) -> Result<Self> {
        if let Some(why) = s.cookie.host_prefix_warning() {
            tracing::warn!("{why}");
        }
        let horizon_ms = revocation::horizon(backend.as_ref(), &s)?;
        let shared = Arc::new(Shared {
            horizon_ms,
            backend,
            settings: s,
            commit: GroupCommit::new(poison.clone()),
            poison,
            closed: AtomicBool::new(false),
            update_locks: (0..UPDATE_STRIPES).map(|_| Mutex::new(())).collect(),
            sweep_counters: Arc::default(),
            meter,
            opened: std::time::Instant::now(),
            local,
        });
        Ok(Self {
            shared,
            sweeper: Mutex::new(None),
            #[cfg(unix)]
            control: Mutex::new(None),
            recovery: None,
            owner: true,
        })
    }

    /// Starts the sweeper thread, if the settings want one.
    fn start_sweeper(&self) -> Result<()> {
        let settings = &self.shared.settings;
        if !settings.sweeper {
            return Ok(());
        }
        let pass = self.shared.clone();
        let sweeper = Sweeper::spawn(settings.sweep_interval, move || pass.sweep())?;
        *self.sweeper.lock().unwrap_or_else(|e| e.into_inner()) = Some(sweeper);
        Ok(())
    }

    /// How long the control socket waits for a client's next line.
    #[cfg(unix)]
    pub(crate) fn control_idle(&self) -> std::time::Duration {
        self.shared.settings.control_idle
    }

    /// The session cookie's settings.
    pub fn cookie_config(&self) -> &CookieConfig {
        &self.shared.settings.cookie
    }

    /// The key ring that signs and verifies.
    pub fn key_ring(&self) -> &KeyRing {
        &self.shared.settings.ring
    }

    /// The id named by the request's `Cookie` headers, if a cookie verifies.
    /// No storage is touched. Cookies of our name that verify but name
    /// different sessions are no session, and logged as a warning (see
    /// [`CookieConfig::lookup`]).
    pub fn session_id<'h, I>(&self, cookie_headers: I) -> Option<SessionId>
    where
        I: IntoIterator<Item = &'h [u8]>,
    {
        let (lookup, failed) = self
            .shared
            .settings
            .cookie
            .lookup_counting(&self.shared.settings.ring, cookie_headers);
        match lookup {
            // A cookie that fails to verify is counted when it is seen,
            // whether or not the request goes on to load a session.
            Lookup::Missing if failed => self.shared.meter.load(Load::Forged),
            Lookup::Ambiguous => self.shared.meter.load(Load::Forged),
            Lookup::Found(_) | Lookup::Missing => {}
        }
        match lookup {
            Lookup::Found(id) => Some(id),
            Lookup::Missing => None,
            Lookup::Ambiguous => {
                tracing::warn!(
                    cookie = self.shared.settings.cookie.name(),
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
        let loaded = self.load_id_uncounted(id);
        if let Ok(found) = &loaded {
            self.shared.meter.load(match found {
                Some(_) => Load::Hit,
                None => Load::Miss,
            });
        }
        loaded
    }

    /// [`load_id`](Self::load_id) as the engine's own retries use it: not
    /// counted as a request's load.
    fn load_id_uncounted(&self, id: &SessionId) -> Result<Option<Session>> {
        let shared = &self.shared;
        // A touch that loses a race re-reads; bounded in case of a storm.
        for _ in 0..UPDATE_RETRIES {
            let now = shared.now();
            // Where the store can, the read touches too (one round trip).
            let Some((stored, touched)) =
                shared
                    .backend
                    .get_touching(id, now, shared.settings.touch_ms)?
            else {
                return Ok(None);
            };
            let Some(mut session) = self.session_of(id, stored, now)? else {
                return Ok(None);
            };
            if touched {
                shared.after_write(Wait::Never)?;
                session.touched = true;
                return Ok(Some(session));
            }
            if now.saturating_sub(session.body.last_seen_ms) <= shared.settings.touch_ms {
                return Ok(Some(session));
            }
            shared.poison.check()?;
            let read_at = session.version.unwrap_or_default();
            session.body.last_seen_ms = now;
            let version = read_at + 1;
            let value = shared.encode(version, session.user.as_deref(), &session.body)?;
            match shared.backend.put(id, Some(read_at), &value, now)? {
                Outcome::Written => {
                    shared.after_write(Wait::Never)?;
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
        match self.shared.backend.get(id, now)? {
            Some(stored) => self.session_of(id, stored, now),
            None => Ok(None),
        }
    }

    /// A stored session as the engine works with it, if it is live.
    fn session_of(&self, id: &SessionId, stored: Stored, now: u64) -> Result<Option<Session>> {
        if stored.expires_at <= now {
            return Ok(None);
        }
        let body = decode_stored_body(id, &stored)?;
        Ok(Some(Session {
            id: *id,
            version: Some(stored.version),
            user: stored.user,
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
        let now = self.shared.now();
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
            absolute_deadline_ms: now.saturating_add(self.shared.settings.absolute_ms),
            idle_timeout_ms: self.shared.settings.idle_ms,
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
        let shared = &self.shared;
        shared.poison.check()?;
        let now = shared.now();
        let mut body = session.body.clone();
        body.last_seen_ms = body.last_seen_ms.max(now);
        let version = session.version.map_or(1, |v| v + 1);
        // The user goes back as it was read: a version-checked write cannot
        // change who the session belongs to (only login, with a new id, can).
        let value = shared.encode(version, session.user.as_deref(), &body)?;
        // A session never stored has an id `create` drew from the CSPRNG.
        let written = match session.version {
            None => shared.backend.put_new(&session.id, &value, now)?,
            Some(_) => shared
                .backend
                .put(&session.id, session.version, &value, now)?,
        };
        match written {
            Outcome::Written => shared.meter.saved(session.version.is_none()),
            Outcome::Conflict => {
                shared.meter.conflict();
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
        shared.after_write(Wait::AsConfigured)
    }

    /// The update lock stripe of `id`.
    fn stripe(&self, id: &SessionId) -> MutexGuard<'_, ()> {
        let stripe = usize::from(id.as_bytes()[0]) % UPDATE_STRIPES;
        // The guard protects no data; a panic in another holder leaves
        // nothing to repair.
        self.shared.update_locks[stripe]
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
        self.shared.poison.check()?;
        let now = self.shared.now();
        let key = revocation::session_key(id);
        let until = now.saturating_add(self.shared.horizon_ms);
        let existed = self
            .shared
            .backend
            .delete_revoking(id, crate::backend::Revocation::new(&key, now, until))?;
        self.shared.meter.destroyed(u64::from(existed));
        // Whether or not it was there: the revocation must be durable, and
        // so must a delete by someone else (the sweeper, a log out
        // everywhere still walking) that made it absent.
        self.shared.after_write(Wait::Always)?;
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
            let Some(mut session) = self.load_id_uncounted(id)? else {
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
            let Some(mut fresh) = self.load_id_uncounted(&id)? else {
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

    /// The `Set-Cookie` value that hands this session to the browser.
    pub fn set_cookie(&self, session: &Session) -> String {
        let token = self
            .shared
            .settings
            .ring
            .sign(Purpose::Session, &session.id);
        let left = session.expires_at().saturating_sub(self.shared.now());
        self.shared
            .settings
            .cookie
            .set_cookie(&token, std::time::Duration::from_millis(left))
    }

    /// A CSRF token bound to this session id: its keyed CSRF tag, masked
    /// afresh on every call (see [`KeyRing::csrf_token`]). It costs no
    /// storage, changes with the id (at login), reveals nothing of the id,
    /// and can never be used as a session cookie. Fails only if the OS
    /// random number generator does.
    pub fn csrf_token(&self, id: &SessionId) -> Result<String> {
        self.shared.settings.ring.csrf_token(id)
    }

    /// `true` if `token` is a CSRF token of this session id under a key in
    /// the ring. The tag comparison is constant-time.
    pub fn verify_csrf(&self, id: &SessionId, token: &[u8]) -> bool {
        self.shared.settings.ring.verify_csrf(id, token)
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn removal_cookie(&self) -> String {
        self.shared.settings.cookie.removal()
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<()> {
        let (seq, _) = self.shared.commit.note_write();
        self.shared.wait_durable(seq)
    }

    /// Stops the sweeper, flushes, and closes the store, marking it closed
    /// cleanly (so the next open skips the crash check). Runs once: `Drop`
    /// after it does nothing more. A poisoned engine, or one whose flush
    /// here fails, is not marked clean, and the failure poisons it.
    pub fn close(self) -> Result<()> {
        self.close_once()
    }

    fn close_once(&self) -> Result<()> {
        if !self.owner {
            return Ok(());
        }
        // First the control socket, so no operator's command runs on a
        // store being closed.
        #[cfg(unix)]
        {
            let control = self
                .control
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(c) = control {
                c.stop();
            }
        }
        self.stop_sweeper();
        if self.shared.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.shared.poison.check()?;
        self.shared
            .backend
            .close()
            .map_err(|e| self.shared.poison.set(e))
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
        // Errors cannot be returned from drop; `close` reports them.
        let _ = self.close_once();
    }
}

/// What a caught panic said.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::sled::store_dir::faults;
    use crate::{Key, KeyRing, ManualClock};

    fn config(clock: &ManualClock) -> Config {
        Config::new(KeyRing::new(1, Key::try_from(&[7u8; 64][..]).expect("key")))
            .clock(clock.clone())
            .sweeper(false)
    }

    /// An engine on the store in `dir`, holding one saved session.
    fn with_one_session(dir: &std::path::Path, clock: &ManualClock) -> Engine {
        let engine = Engine::open(dir, config(clock)).expect("open");
        let mut s = engine.create().expect("create");
        s.insert("n", &1u32).expect("insert");
        engine.save(&mut s).expect("save");
        engine
    }

    /// The close-time flush fails once with EIO; a second sync would
    /// succeed. The store must not be marked clean: the next open runs the
    /// crash check.
    #[test]
    fn a_failed_flush_at_close_leaves_the_store_to_be_checked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new(1_700_000_000_000);
        let engine = with_one_session(dir.path(), &clock);
        faults::fail_syncs(dir.path(), 1);
        let err = engine.close().expect_err("the close-time sync fails");
        let Error::Poisoned { cause } = &err else {
            panic!("{err:?}")
        };
        assert!(
            matches!(&**cause, Error::Io { source, .. } if source.raw_os_error() == Some(5)),
            "{cause:?}"
        );
        let engine = Engine::open(dir.path(), config(&clock)).expect("reopen");
        assert!(
            engine.recovery().is_some(),
            "the open after a failed close must run the crash check"
        );
        engine.close().expect("close");
        let engine = Engine::open(dir.path(), config(&clock)).expect("reopen");
        assert!(engine.recovery().is_none(), "a clean close is clean");
    }

    /// sled panics on some damage to its own pages (seen after power cuts
    /// on stores with blob files: "cannot find pid 5 in view_for_key"). At
    /// open, that is an error naming the store, not a panic out of `open`;
    /// and the store is left to be checked again.
    #[test]
    fn a_panic_in_the_crash_check_is_a_damaged_store_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new(1_700_000_000_000);
        let engine = with_one_session(dir.path(), &clock);
        engine.close().expect("close");
        std::fs::remove_file(dir.path().join("CLEAN")).expect("as after a crash");
        faults::panic_in_next_check(dir.path());
        let err = Engine::open(dir.path(), config(&clock)).expect_err("damaged");
        assert!(
            matches!(&err, Error::Damaged { path, reason }
                if path == dir.path() && reason.contains("view_for_key")),
            "{err:?}"
        );
        let engine = Engine::open(dir.path(), config(&clock)).expect("reopen");
        assert!(engine.recovery().is_some(), "still to be checked");
    }

    /// After a failed flush every write is refused, but the operator can
    /// still count, list, check and export (the trees hold every write;
    /// only their durability is unknown), also through the control socket,
    /// and sees that the engine is poisoned.
    #[test]
    fn a_poisoned_engine_still_answers_its_operator() {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new(1_700_000_000_000);
        let engine = with_one_session(dir.path(), &clock);
        faults::fail_syncs(dir.path(), 1);
        assert!(engine.flush().is_err());
        let mut s = engine.create().expect("create");
        s.insert("n", &2u32).expect("insert");
        assert!(matches!(engine.save(&mut s), Err(Error::Poisoned { .. })));

        assert!(engine.metrics().poisoned);
        assert_eq!(engine.admin().stats().expect("stats").live_sessions, 1);
        assert_eq!(engine.admin().records(None, 10).expect("list").len(), 1);
        assert!(engine.admin().check().expect("check").is_empty());
        #[cfg(unix)]
        {
            let mut c = crate::control::Client::connect(dir.path()).expect("connect");
            let (stats, metrics) = c.stats().expect("stats through the socket");
            assert_eq!(stats.live_sessions, 1);
            assert!(metrics.poisoned);
            assert_eq!(c.records(None, 10).expect("export").len(), 1);
        }
    }

    /// The same through `Drop`: a dropped engine whose flush fails is not
    /// clean either, and `Drop` after a failed `close` does not retry it.
    #[test]
    fn a_failed_flush_at_drop_leaves_the_store_to_be_checked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new(1_700_000_000_000);
        let engine = with_one_session(dir.path(), &clock);
        faults::fail_syncs(dir.path(), 1);
        drop(engine);
        let engine = Engine::open(dir.path(), config(&clock)).expect("reopen");
        assert!(engine.recovery().is_some());
    }
}
