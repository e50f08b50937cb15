//! Engine settings: one consuming builder, checked once, at `open`.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::cookie::{CookieBuilder, CookieConfig};
use crate::error::{Error, Result};
use crate::record::MAX_DECODE_BYTES;
use crate::token::KeyRing;

/// The most [`Config::max_session_bytes`] may be: 96 KiB, so that no
/// record brings sled to write a blob file.
pub const MAX_SESSION_BYTES: usize = 96 * 1024;

/// When a write counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Durability {
    /// A write returns once it is decided and queued in memory (the sled
    /// backend applies its queue of writes in batched transactions on one
    /// thread; loads see the queue); sled writes its log and syncs it in
    /// the background every [`Config::flush_every`], and the engine
    /// flushes after [`Config::max_unflushed_writes`] writes at the latest.
    /// A crash or a power cut loses at most the writes acknowledged in the
    /// last two `flush_every` intervals (and never more than the last
    /// `max_unflushed_writes`), never tears one, never breaks an index;
    /// revocations (logout, login's id change) are durable at once.
    #[default]
    Relaxed,
    /// A write returns only after it is on stable storage (sled flush, then
    /// `fdatasync`). Concurrent writers share one flush (group commit).
    Strict,
}

/// Settings for [`Engine::open`](crate::Engine::open).
///
/// Every setting has a default, named in its setter's docs; only the key
/// ring has none, because a key made up at each start would log every user
/// out on every restart.
#[derive(Debug, Clone)]
#[must_use]
pub struct Config {
    pub(crate) ring: KeyRing,
    idle_timeout: Duration,
    absolute_timeout: Duration,
    touch_threshold: Duration,
    max_session_bytes: usize,
    durability: Durability,
    flush_every: Duration,
    max_unflushed_writes: usize,
    sweep_interval: Duration,
    sweep_batch: usize,
    sweeper: bool,
    control: bool,
    control_idle: Duration,
    cookie: CookieBuilder,
    clock: Arc<dyn Clock>,
    cache_capacity: u64,
    max_sessions_per_user: usize,
    write_path_v1: bool,
}

impl Config {
    /// Defaults, signing with `ring`.
    pub fn new(ring: KeyRing) -> Self {
        Self {
            ring,
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(24 * 60 * 60),
            touch_threshold: Duration::from_secs(60),
            max_session_bytes: 64 * 1024,
            durability: Durability::Relaxed,
            flush_every: Duration::from_millis(500),
            max_unflushed_writes: 1000,
            sweep_interval: Duration::from_secs(60),
            sweep_batch: 1000,
            sweeper: true,
            control: true,
            control_idle: Duration::from_secs(60),
            cookie: CookieBuilder::default(),
            clock: Arc::new(SystemClock),
            cache_capacity: 128 * 1024 * 1024,
            max_sessions_per_user: 100,
            write_path_v1: false,
        }
    }

    /// A session unused this long expires. Default 30 minutes.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// A session expires this long after it was created, however active.
    /// Default 24 hours.
    pub fn absolute_timeout(mut self, d: Duration) -> Self {
        self.absolute_timeout = d;
        self
    }

    /// A read rewrites a session's last-seen time only when it has moved by
    /// more than this. Default 60 seconds: with the default 30-minute idle
    /// timeout, reads cost at most one write per session per minute, and a
    /// session may expire at most 60 s (3 %) before an exact sliding expiry
    /// would end it. Must be shorter than the idle timeout.
    pub fn touch_threshold(mut self, d: Duration) -> Self {
        self.touch_threshold = d;
        self
    }

    /// The largest encoded session accepted, in bytes; larger saves fail
    /// with [`Error::TooLarge`]. Default 64 KiB; at most 96 KiB
    /// ([`MAX_SESSION_BYTES`]): larger records would bring sled to write
    /// blob files, which a power cut can leave unreadable (see the crate's
    /// durability section). A session is a few hundred bytes to a few KiB;
    /// anything larger belongs in the application's own storage, keyed by
    /// a value the session holds.
    pub fn max_session_bytes(mut self, n: usize) -> Self {
        self.max_session_bytes = n;
        self
    }

    /// Default [`Durability::Relaxed`].
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// How often sled writes its buffers in the background. Default 500 ms.
    pub fn flush_every(mut self, d: Duration) -> Self {
        self.flush_every = d;
        self
    }

    /// In relaxed mode, the writer that finds this many writes unflushed
    /// flushes them, so the backlog (and the time any one flush takes) stays
    /// bounded. Default 1000.
    pub fn max_unflushed_writes(mut self, n: usize) -> Self {
        self.max_unflushed_writes = n;
        self
    }

    /// How often the sweeper deletes expired sessions. Default 60 seconds.
    pub fn sweep_interval(mut self, d: Duration) -> Self {
        self.sweep_interval = d;
        self
    }

    /// How many expired sessions the sweeper reads per batch. Default 1000.
    pub fn sweep_batch(mut self, n: usize) -> Self {
        self.sweep_batch = n;
        self
    }

    /// Whether to run the background sweeper thread. Default `true`. Expired
    /// sessions are invisible either way; without the thread they stay on
    /// disk until [`Admin::sweep_now`](crate::Admin::sweep_now).
    pub fn sweeper(mut self, on: bool) -> Self {
        self.sweeper = on;
        self
    }

    /// Whether an engine on a sled store listens on its control socket,
    /// `DIR/control.sock`, through which the `sessiondb` operator's tool
    /// runs its commands inside the running engine (see
    /// [`control`](crate::control)). Default `true`. Only the engine's own
    /// user (and root) may connect. Other backends have no socket.
    pub fn control(mut self, on: bool) -> Self {
        self.control = on;
        self
    }

    /// How long the control socket waits for a connected client's next
    /// line (its greeting, its next request) before it hangs up. Default 60
    /// seconds; the greeting gets at most 5 seconds of it. Tests shorten it.
    #[doc(hidden)]
    pub fn control_idle_timeout(mut self, idle: Duration) -> Self {
        self.control_idle = idle;
        self
    }

    /// The sled store's first write path: every batch of writes one sled
    /// transaction over all trees, and an expiry entry moved with every
    /// change of a session's expiry. Slower; kept so that the benchmarks
    /// can run the old design beside the new one. Default `false`.
    #[doc(hidden)]
    pub fn write_path_v1(mut self, on: bool) -> Self {
        self.write_path_v1 = on;
        self
    }

    /// The session cookie's settings. Default [`CookieBuilder::default`].
    pub fn cookie(mut self, cookie: CookieBuilder) -> Self {
        self.cookie = cookie;
        self
    }

    /// Where time comes from. Default [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Memory for caching the store, in bytes. Default 128 MiB. An eighth
    /// of it keeps recently used records whole in front of sled (their
    /// loads skip sled altogether); the rest is sled's page cache.
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = bytes;
        self
    }

    /// The most sessions one user keeps: a login past it destroys that
    /// user's oldest sessions (never the one logging in). Default 100: more
    /// browsers and devices than one person uses at once, while one account
    /// (or one stolen password run in a loop) can hold at most 100 ×
    /// [`max_session_bytes`](Self::max_session_bytes) of the store (6.4 MiB
    /// at the defaults), and listing or logging out a user reads at most
    /// that many records. Must be at least 1.
    ///
    /// The limit is applied at login: logins racing each other may leave a
    /// user briefly over it until the next, and [`Admin::import`]
    /// (restoring a backup) does not apply it. Listing returns the newest
    /// that many whatever the store holds.
    ///
    /// [`Admin::import`]: crate::Admin::import
    pub fn max_sessions_per_user(mut self, n: usize) -> Self {
        self.max_sessions_per_user = n;
        self
    }

    /// Checks every setting; the one place configuration can fail.
    pub(crate) fn validate(self) -> Result<Settings> {
        let bad = |field, reason: &str| {
            Err(Error::InvalidConfig {
                field,
                reason: reason.to_owned(),
            })
        };
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if ms(self.idle_timeout) == 0 {
            return bad("idle_timeout", "must be at least 1 ms");
        }
        if ms(self.absolute_timeout) == 0 {
            return bad("absolute_timeout", "must be at least 1 ms");
        }
        if self.touch_threshold >= self.idle_timeout {
            return bad(
                "touch_threshold",
                "must be shorter than idle_timeout, or sessions would expire between touches",
            );
        }
        if !(256..=MAX_SESSION_BYTES).contains(&self.max_session_bytes) {
            return bad(
                "max_session_bytes",
                "must be between 256 bytes and 96 KiB (larger records would reach sled's blob files, \
                 which a power cut can leave unreadable)",
            );
        }
        const { assert!(MAX_SESSION_BYTES < MAX_DECODE_BYTES) };
        if self.sweep_interval.is_zero() {
            return bad("sweep_interval", "must not be zero");
        }
        if self.sweep_batch == 0 {
            return bad("sweep_batch", "must not be zero");
        }
        if self.flush_every.is_zero() {
            return bad("flush_every", "must not be zero");
        }
        if self.max_unflushed_writes == 0 {
            return bad("max_unflushed_writes", "must not be zero");
        }
        if self.control_idle.is_zero() {
            return bad("control_idle_timeout", "must not be zero");
        }
        if self.max_sessions_per_user == 0 {
            return bad("max_sessions_per_user", "must be at least 1");
        }
        let cookie = self.cookie.build()?;
        Ok(Settings {
            ring: self.ring,
            idle_ms: ms(self.idle_timeout),
            absolute_ms: ms(self.absolute_timeout),
            touch_ms: ms(self.touch_threshold),
            max_session_bytes: self.max_session_bytes,
            durability: self.durability,
            flush_every_ms: ms(self.flush_every),
            max_unflushed_writes: self.max_unflushed_writes,
            sweep_interval: self.sweep_interval,
            sweep_batch: self.sweep_batch,
            sweeper: self.sweeper,
            control: self.control,
            control_idle: self.control_idle,
            cookie,
            clock: self.clock,
            cache_capacity: self.cache_capacity,
            max_sessions_per_user: self.max_sessions_per_user,
            write_path_v1: self.write_path_v1,
        })
    }
}

/// Checked settings.
#[derive(Debug)]
pub(crate) struct Settings {
    pub ring: KeyRing,
    pub idle_ms: u64,
    pub absolute_ms: u64,
    pub touch_ms: u64,
    pub max_session_bytes: usize,
    pub durability: Durability,
    pub flush_every_ms: u64,
    pub max_unflushed_writes: usize,
    pub sweep_interval: Duration,
    pub sweep_batch: usize,
    pub sweeper: bool,
    pub control: bool,
    pub control_idle: Duration,
    pub cookie: CookieConfig,
    pub clock: Arc<dyn Clock>,
    pub cache_capacity: u64,
    pub max_sessions_per_user: usize,
    pub write_path_v1: bool,
}
