//! sessiondb: an embedded, crash-safe HTTP session engine.
//!
//! A web service links sessiondb in, points it at a directory, and keeps its
//! server-side sessions there: no Redis, no memcached, no database server.
//! The browser holds only a signed token naming its session.
//!
//! # Quick start
//!
//! ```
//! use sessiondb::{Config, Engine, Key, KeyRing};
//!
//! # fn main() -> sessiondb::Result<()> {
//! # let dir = tempfile::tempdir().map_err(|e| sessiondb::Error::Io { path: "tmp".into(), source: e })?;
//! // Keep the key secret and stable across restarts (at least 32 bytes).
//! let ring = KeyRing::new(1, Key::generate()?);
//! let engine = Engine::open(dir.path(), Config::new(ring))?;
//!
//! // A request without a session: make one, log the user in.
//! let mut session = engine.create()?;
//! session.insert("cart", &vec!["book"])?;
//! engine.login(&mut session, "alice")?; // new id, user attached, stored
//! let set_cookie = engine.set_cookie(&session); // send as Set-Cookie
//!
//! // The next request: the raw value of every Cookie header.
//! let cookie = set_cookie.split(';').next().unwrap_or_default();
//! let mut session = engine.load([cookie.as_bytes()])?.expect("logged in");
//! assert_eq!(session.user(), Some("alice"));
//! session.insert("visits", &1u32)?;
//! engine.save(&mut session)?;
//!
//! // Logout: destroy, and send the removal cookie.
//! engine.destroy(&session)?;
//! let _clear = engine.removal_cookie();
//! engine.close()?;
//! # Ok(())
//! # }
//! ```
//!
//! # What it does
//!
//! - **Signed tokens.** The cookie holds 92 base64url characters: a format
//!   version, the id of the key that signed, the 32-byte session id (OS
//!   CSPRNG), and an HMAC-SHA256 tag over all three and the token's
//!   [`Purpose`]. Verification is constant-time and needs no storage, so a
//!   forged cookie costs one HMAC at most and never a disk read. A
//!   [`KeyRing`] signs with its newest key and verifies with older ones.
//! - **Cookies.** [`CookieConfig`] is safe by default: `HttpOnly`, `Secure`,
//!   `SameSite=Lax`, `Path=/`, and the `__Host-` prefix whenever its rules
//!   allow. Reading `Cookie` headers is bounded work for any input
//!   ([`MAX_SCAN_BYTES`], [`MAX_VERIFY`]); anything that is not a valid
//!   token is "no session".
//! - **Sessions.** Typed values of any serde type ([`Session::get`],
//!   [`Session::insert`], [`Session::take`] for flash messages), an optional
//!   user, and times. Expiry is `min(last_seen + idle, created + absolute)`;
//!   an expired session is gone to every reader at once. A read rewrites
//!   `last_seen` only once it lags by more than the touch threshold. New
//!   sessions are stored only once they hold something.
//! - **Users.** [`Engine::login`] attaches a user and changes the id in one
//!   atomic step (no session fixation): either a new id carries the user or
//!   nothing stored changed, whatever other requests write meanwhile (it
//!   retries on their writes). Nothing else changes a session's user: a
//!   save or a merge writes the user back as it was read, and logging out
//!   destroys the session. Logging in as another account than the one the
//!   session names starts from an empty session. [`Engine::sessions_of`]
//!   lists a user's sessions and [`Engine::destroy_user`] logs out everywhere
//!   (else), each a page of the user's index at a time; a user keeps at most
//!   [`Config::max_sessions_per_user`] sessions (100), the oldest logged out
//!   first.
//! - **Operations.** Through [`Engine::admin`], apart from the request
//!   API: [`Admin::stats`], [`Admin::check`] (the invariants of the three
//!   trees) and [`Admin::repair`], [`Admin::records`] and [`Admin::import`]
//!   (export and import), [`Admin::sweep_now`]. While an engine on a sled
//!   store is open, the same operations (and log out everywhere) reach it
//!   through its [control socket](control), `DIR/control.sock` (owner-only,
//!   peer credentials checked): the `sessiondb` tool uses it to work on a
//!   live store. [`Engine::metrics`] counts loads, writes, sweeps, commits
//!   and flushes, and publishes them through the `metrics` facade
//!   ([`metrics`], feature `metrics`).
//! - **tower-sessions** (feature `tower-sessions`): [`TowerStore`] is a
//!   `tower_sessions::SessionStore` (0.14, axum-login 0.18's) on the same
//!   engine and trees: records indexed by expiry and swept by the sweeper,
//!   deletes durable in both modes, no save that brings back a deleted
//!   session, and a user index for axum-login's log out everywhere. Its
//!   records are ordinary records whose expiry the session layer sets; see
//!   [`tower`].
//! - **Times.** Every instant in the API is a `u64` of milliseconds since
//!   the Unix epoch (`created_at`, `last_seen`, `expires_at`, `now_ms`);
//!   every duration is a [`std::time::Duration`].
//!
//! # Storage
//!
//! The default backend keeps three sled trees in the store's directory:
//! `sessions` (id → record), `expiry` (time, id) and `users` (user, id).
//! One thread applies every write to them, as plain inserts and removes in
//! an order chosen so that any prefix of them keeps the invariants (sled
//! keeps a prefix of its log after a crash). The invariants, which
//! [`Admin::check`] checks:
//!
//! 1. every session has exactly one `expiry` entry, at or before its
//!    expiry: a touch or an update that moves the expiry later writes the
//!    record alone and leaves the entry behind (the record says where it
//!    is), and the sweeper re-files an entry it finds due on a session that
//!    lives on. Expiry is checked on every read, so an early entry changes
//!    nothing anyone sees; an entry after the expiry is never written;
//! 2. a session's `users` entry exists exactly when the session names a
//!    user;
//! 3. an index entry that agrees with no session (a *stale* entry,
//!    [`Violation::is_stale_entry`]) exists only where a crash cut a write
//!    short, because a session's new entries are written before it and its
//!    removal comes before its old entries'. A stale entry makes nothing
//!    live or listed (readers re-check the session); the check at open
//!    removes it.
//!
//! A fourth tree, `revoked`, remembers what was
//! revoked (each destroyed id, the id a login replaced, each user logged
//! out everywhere and when) for the longest absolute timeout the store has
//! been opened with, so that [`Admin::import`] of an older export cannot
//! bring it back; the sweeper forgets entries past their time.
//! [`MemoryBackend`] runs the same logic in memory, for tests and as a
//! benchmark baseline ([`Engine::with_backend`]); [`Backend`] (what requests
//! need) and [`Maintenance`] (what operators' tools need) are the traits
//! for others. A directory holding something other than a sessiondb store is
//! refused ([`Error::NotAStore`]); a store held by another process is
//! refused at once ([`Error::Locked`], naming the path).
//!
//! # Durability and crash guarantees
//!
//! - **Relaxed** ([`Durability::Relaxed`], the default): a write returns once
//!   it is decided and queued in memory; one thread applies the queue to
//!   sled in order, and loads see it at once. sled writes its
//!   log and syncs it (`fsync`) every [`Config::flush_every`] (500 ms), and
//!   the engine flushes after [`Config::max_unflushed_writes`] (1000) writes
//!   at the latest, so the backlog, and the time any flush takes, stay
//!   bounded. A process crash or a power loss can lose the writes
//!   acknowledged in the last two `flush_every` intervals (1 s by default:
//!   one for the write to reach the log, one for the sync; longer only if a
//!   sync itself takes longer), and never more than the last
//!   `max_unflushed_writes` of them. It cannot tear a write or break an
//!   index.
//! - **Revocation is durable in both modes.** What takes a session away
//!   from a cookie returns only once it is on stable storage, also under
//!   `Relaxed`: [`Engine::destroy`], [`Engine::destroy_id`],
//!   [`Engine::destroy_user`], and the id change of [`Engine::login`] and
//!   [`Engine::regenerate`]. After a crash a logged-out cookie, or the id a
//!   login replaced, never works again.
//! - **Strict** ([`Durability::Strict`]): a write returns only after it is
//!   on stable storage. sled 0.34's own `flush()` only calls
//!   `sync_file_range`, which flushes neither the drive's cache nor the
//!   file's metadata, so the engine follows it with `fdatasync` of sled's log
//!   file (and `fsync` of any new blob files and their directory). sled
//!   syncs neither its `conf` file nor a directory after naming a file in
//!   it, so the engine does: the store directory (and any parents it makes)
//!   at open, sled's `conf` once sled has opened, and the directory again
//!   at any flush that finds its names changed (a new snapshot). Writers
//!   that wait at the same time share one flush (group commit).
//!   Touches (a read moving `last_seen`) and sweeper deletions never wait:
//!   losing one is harmless, because expiry is re-checked on every read.
//! - **Tested against power loss**, not only against a kill:
//!   `tests/power_loss_keeps_acknowledged_writes.rs` runs the engine on a
//!   FUSE file system that forgets whatever was never synced (names
//!   included), cuts the power under it mid-write, and checks the store
//!   that survives: strict keeps every acknowledged write, relaxed every
//!   write older than its window, both every revocation and every
//!   invariant, with nothing but stale index entries for open to remove.
//!   The engine keeps records
//!   small enough that sled never writes a blob file, the one part of
//!   sled 0.34 that a power cut can leave unreadable (see
//!   [`MAX_SESSION_BYTES`]); should sled panic on a damaged store anyway,
//!   [`Engine::open`] returns [`Error::Damaged`].
//! - **After a failed flush** (at close too) the engine refuses every
//!   further write with [`Error::Poisoned`], which carries the first
//!   failure, until it is reopened: the state on disk is unknown, and
//!   pretending otherwise would acknowledge writes that may be lost. The
//!   write whose flush failed got the error; it may or may not be on disk.
//!   A poisoned store is never marked closed cleanly, so the next open
//!   checks it; a later flush that happens to succeed changes nothing (on
//!   Linux a second `fdatasync` after an EIO can report success).
//! - [`Engine::close`] (or `Drop`, whichever comes first, exactly once)
//!   stops the control socket (ending its connections: a listing, a sweep
//!   or a repair in progress stops at its next step, a walk of the whole
//!   store for `stats` or `check` finishes first) and the sweeper, flushes
//!   and releases
//!   the store, and marks it closed cleanly only if that flush succeeded.
//! - **After a crash** (no clean close) [`Engine::open`] runs
//!   [`Admin::check`] and, if anything is broken, [`Admin::repair`]
//!   before returning; [`Engine::recovery`] reports what it found.
//!
//! # Damaged stores
//!
//! A record whose bytes do not decode is reported, not hidden: loading it
//! fails with [`Error::Corrupt`] (naming the session's id hint) rather than
//! returning "no session", so damage shows up in logs instead of as a silent
//! logout; every other session stays readable. [`Admin::check`] lists it
//! with every other broken invariant, and [`Admin::repair`] moves it to a
//! `quarantine` tree (never deleting it) and rebuilds the `expiry` and
//! `users` indexes from `sessions`, the source of truth.
//!
//! # Concurrency
//!
//! An [`Engine`] is `Send + Sync`; share it in an `Arc`. A [`Session`] is a
//! copy: when two requests change the same session at once, the second save
//! fails with [`Error::Conflict`] instead of silently overwriting the first.
//! [`Engine::update`] loads, applies a closure and saves, retrying on
//! conflict, so no update is lost; updates of one session within a process
//! take turns. [`Engine::save_merging`] is the policy the axum layer applies
//! to whole requests: a conflicting save lays its changed values over the
//! newer copy instead of failing. A save of a session that was destroyed (or expired) in the
//! meantime fails with [`Error::Gone`]: logout is never undone by a late
//! request.
//!
//! # The sweeper
//!
//! Each engine runs one background thread, `sessiondb-sweep`, that deletes
//! expired sessions every [`Config::sweep_interval`] in batches of
//! [`Config::sweep_batch`], re-reading each session in the write that
//! deletes it (a request may have touched it since), and re-filing the
//! entries of sessions that live on. It is cleanup, not correctness. Tests inject a
//! [`ManualClock`] and call [`Admin::sweep_now`] instead of sleeping.

// Library code never panics on a failed Result; tests may.
#![cfg_attr(not(test), deny(clippy::expect_used))]

mod backend;
mod clock;
mod commit;
mod config;
#[cfg(unix)]
pub mod control;
mod cookie;
mod engine;
mod error;
pub mod metrics;
mod poison;
mod record;
mod session;
mod sweeper;
mod token;
#[cfg(feature = "tower-sessions")]
pub mod tower;
#[cfg(feature = "axum")]
pub mod web;

pub use backend::memory::MemoryBackend;
#[cfg(feature = "redis")]
pub use backend::redis::{RedisBackend, RedisOptions};
pub use backend::{
    Backend, BackendStats, Maintenance, Outcome, Revocation, Sliding, Stored, UserPage, Violation,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, Durability, MAX_SESSION_BYTES};
pub use cookie::{
    CookieBuilder, CookieConfig, HostPrefix, Lookup, MAX_SCAN_BYTES, MAX_VERIFY, SameSite,
};
pub use engine::{
    Admin, Engine, Imported, Recovery, RepairReport, SessionInfo, SessionRecord, Stats,
};
pub use error::{BoxError, Error, Result};
pub use metrics::Metrics;
pub use record::{FORMAT_VERSION, FORMAT_VERSION_LAGGING, FormatError};
pub use session::Session;
pub use token::{Key, KeyRing, Purpose, SessionId, TOKEN_VERSION, Token};
#[cfg(feature = "tower-sessions")]
pub use tower::{TowerSession, TowerStore};

/// Internals the fuzz crate (`fuzz/`) and its corpus replay
/// (`tests/fuzz_corpus.rs`) exercise directly. Not part of the API: no
/// stability promise, and it may change in any release.
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::cookie::{Pairs, pairs};
    use crate::{FormatError, Stored};

    /// Reads a record as the stores frame it (header, then body).
    pub fn parse_record(bytes: &[u8]) -> Result<Stored, FormatError> {
        Stored::parse(bytes)
    }

    /// One control connection to `engine` whose client sends `input` and
    /// then closes its side: runs the server's connection loop on this
    /// thread and returns everything it wrote back.
    #[cfg(unix)]
    pub fn control_session(engine: &crate::Engine, input: &[u8]) -> std::io::Result<Vec<u8>> {
        use std::io::{Read as _, Write as _};
        let (client, server) = std::os::unix::net::UnixStream::pair()?;
        let mut writer = client.try_clone()?;
        let input = input.to_vec();
        let feeder = std::thread::spawn(move || {
            // The server may hang up before reading it all: that is fine.
            let _ = writer.write_all(&input);
            let _ = writer.shutdown(std::net::Shutdown::Write);
        });
        let mut reader = client;
        let collector = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = reader.read_to_end(&mut out);
            out
        });
        let served = crate::control::server::serve_until(&server, engine, &|| true);
        let _ = server.shutdown(std::net::Shutdown::Both);
        let _ = feeder.join();
        let out = collector.join().unwrap_or_default();
        // Errors of the connection itself (the peer left) are normal.
        let _ = served;
        Ok(out)
    }
}

/// The README's examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
