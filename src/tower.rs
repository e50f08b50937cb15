//! sessiondb as a [tower-sessions] store (feature `tower-sessions`): every
//! app on `tower_sessions::SessionManagerLayer`, and so every axum-login
//! app, gets a crash-safe embedded store by changing one line.
//!
//! ```no_run
//! # async fn app() -> Result<(), Box<dyn std::error::Error>> {
//! use sessiondb::TowerStore;
//! // Was: let store = tower_sessions::MemoryStore::default();
//! let store = TowerStore::open("./sessions")?.index_users_at(TowerStore::AXUM_LOGIN_USER)?;
//! // let layer = tower_sessions::SessionManagerLayer::new(store.clone());
//! # Ok(()) }
//! ```
//!
//! # What the store keeps and adds
//!
//! A tower-sessions record is an ordinary sessiondb record in the same
//! sled trees: indexed by expiry, so the engine's sweeper thread deletes
//! expired records without reading the others
//! ([`ExpiredDeletion::delete_expired`] runs one sweep now); written with
//! the engine's [durability](crate::Durability) (strict: on disk before the
//! call returns; relaxed: within `flush_every`); checked and mended by the
//! crash check at open; listed, exported and counted by the operator's
//! tool, live through the control socket.
//!
//! The trait's contract, and where tower-sessions' own stores fall short
//! of it:
//! - [`create`](SessionStore::create) never overwrites a live record: on
//!   an id collision it draws a new id, as the trait documents. (The sled
//!   store has no `create` and overwrites.)
//! - [`save`](SessionStore::save) replaces the record it finds, in one
//!   version-checked write; a record deleted or expired meanwhile (a
//!   logout, a log out everywhere, the sweeper) is **not** brought back:
//!   the save writes nothing and succeeds, and the client's next request
//!   starts without a session. (The sled, SQLite and memory stores upsert,
//!   re-creating what a concurrent logout deleted.)
//! - [`load`](SessionStore::load) of an expired record is `None`, before
//!   any sweep. (The sled store returns it.)
//! - [`delete`](SessionStore::delete) is durable before it returns, in both
//!   durability modes, as the engine's own logout is; the id is revoked, so
//!   no import of an older export brings it back.
//!
//! # Users: log out everywhere
//!
//! Told where in a session's data the user is
//! ([`index_users_at`](TowerStore::index_users_at), a JSON pointer whose
//! first segment is the session key; [`AXUM_LOGIN_USER`](TowerStore::AXUM_LOGIN_USER)
//! for axum-login), the store indexes each record by that user: a JSON
//! string is the user as it is, a number its decimal text (so
//! `user.id().to_string()` names it for integer, string and UUID ids),
//! `null` or nothing means no user. Any other value, an empty string or one
//! over 1024 bytes is an encode error: a record is never silently left out
//! of the index that "log out everywhere" walks.
//! [`sessions_of`](TowerStore::sessions_of) lists a user's live sessions,
//! [`destroy_user`](TowerStore::destroy_user) deletes them (durably).
//!
//! A log out everywhere that runs while a record joins its user's index
//! (a create, or a save that sets the user) wins: the record is deleted
//! again; so does one in the very millisecond the write began (a tie). A save of a record already in the index needs no such care (a
//! log out everywhere deletes it, and the save's version check then
//! fails), so "log out everywhere else" never takes the session it keeps.
//! Limits:
//! - One race is out of any store's reach: a request that loaded a session
//!   before its user was logged out everywhere and then calls
//!   `Session::cycle_id` re-creates the data under a new id
//!   (tower-sessions deletes the old id and creates the new one from the
//!   request's copy). axum-login cycles ids only when a user logs in, from
//!   a session without a user.
//! - The index covers what was written while it was on: a store that
//!   starts indexing (or a clone made before
//!   [`index_users_at`](TowerStore::index_users_at), which does not index)
//!   leaves records unindexed until their next save through an indexing
//!   store.
//! - [`sessions_of`](TowerStore::sessions_of) lists at most the engine's
//!   `max_sessions_per_user`, counted over the engine's own sessions of the
//!   same user too, if the store has both; tower sessions are not trimmed
//!   to that limit as the engine's logins are.
//!
//! # How a record is stored
//!
//! The 128-bit tower id is the first 16 bytes of a sessiondb id whose last
//! 16 are a fixed tag, so tower records and the engine's own sessions (ids
//! of 256 random bits, behind signed cookies) never meet; operators'
//! listings show the tower id's first characters as the hint. Each data
//! entry is stored under its key as JSON text (`sessiondb show --values`
//! prints it); the exact expiry, to the nanosecond, is kept under the
//! reserved key [`EXPIRY_KEY`](TowerStore::EXPIRY_KEY). The record's
//! expiry in the index is that instant rounded down to the millisecond.
//!
//! Calls that wait for the disk's sync run on tokio's blocking pool, so
//! they never hold an async worker: strict writes, deletes (durable in
//! both modes), expired deletion and the user calls. On the sled store
//! ([`TowerStore::open`]), loads and relaxed writes run inline, as
//! tower-sessions' own stores run theirs: they take microseconds (a read
//! of sled's cache, an unsynced write), and a hop to the blocking pool
//! would cost more than the call. A relaxed write that would have to wait
//! for a flush (the backlog of unflushed writes at its bound,
//! [`Config::max_unflushed_writes`](crate::Config::max_unflushed_writes))
//! goes to the pool too, as near as a check before the write can tell
//! (writers racing to that bound, or a write deleted again because a log
//! out everywhere ran into it, may sync inline once). On any other backend
//! (Redis over the network) every call goes to the pool; outside a tokio
//! runtime every call runs inline. A panic in a call is an error, never an
//! unwind into the caller's task.
//!
//! [tower-sessions]: https://docs.rs/tower-sessions/0.14

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{self, ExpiredDeletion, SessionStore};

use crate::engine::external::Written;
use crate::error::{Error, Result};
use crate::record::{self, Body, MAX_USER_LEN};
use crate::token::SessionId;
use crate::{Config, Engine, Key, KeyRing};

/// The last 16 bytes of the sessiondb id of every tower-sessions record.
const TAG: [u8; 16] = *b"\0tower-sessions\x01";

/// How many fresh ids `create` draws before it gives up (each collision
/// has odds of 2^-128).
const CREATE_ATTEMPTS: usize = 8;
/// How often `save` re-reads after a concurrent write before it gives up.
const SAVE_RETRIES: usize = 64;

/// A `tower_sessions::SessionStore` on a sessiondb engine; see the
/// [module docs](self).
///
/// Cheap to clone: clones share one engine. The engine closes when the
/// last clone drops, or at [`close`](Self::close).
#[derive(Clone)]
pub struct TowerStore {
    engine: Arc<Engine>,
    /// Where the user is in a record's data: the session key, then a JSON
    /// pointer into its value ("" for the value itself).
    user_at: Option<Arc<(String, String)>>,
}

impl std::fmt::Debug for TowerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TowerStore")
            .field("engine", &self.engine)
            .field("indexes_users", &self.user_at.is_some())
            .finish()
    }
}

/// One of a user's sessions, as [`TowerStore::sessions_of`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TowerSession {
    /// Its tower-sessions id.
    pub id: Id,
    /// When it was first stored, ms since the Unix epoch.
    pub created_at: u64,
    /// When it was last saved, ms since the Unix epoch.
    pub saved_at: u64,
    /// When it expires, ms since the Unix epoch (rounded down).
    pub expires_at: u64,
}

impl TowerStore {
    /// Where axum-login 0.18 keeps the logged-in user's id: the session key
    /// `axum-login.data`, field `user_id`.
    pub const AXUM_LOGIN_USER: &'static str = "/axum-login.data/user_id";

    /// The data key under which each record keeps its exact expiry. A
    /// session may not use it (saving one that does is an encode error).
    pub const EXPIRY_KEY: &'static str = "\0sessiondb.tower-expiry";

    /// How long the engine's idle and absolute timeouts are under
    /// [`open`](Self::open): tower-sessions' longest default expiry (its
    /// `Expiry::OnSessionEnd` records live two weeks).
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(14 * 24 * 3600);

    /// Opens (or creates) the sled store in `dir` with default settings:
    /// relaxed durability, and the engine's timeouts at
    /// [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT). The engine's signing key
    /// is random: records of this store are named by tower-sessions'
    /// cookies, never signed by sessiondb.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let config = Config::new(KeyRing::new(1, Key::generate()?))
            .idle_timeout(Self::DEFAULT_TIMEOUT)
            .absolute_timeout(Self::DEFAULT_TIMEOUT);
        Self::open_with(dir, config)
    }

    /// Opens the sled store in `dir` with `config` (durability, sweep
    /// interval, size limit, ...). The session layer sets each record's
    /// expiry; the engine's idle and absolute timeouts only bound what an
    /// import of an export may bring in (a record's remaining life is cut
    /// to them) and, for the absolute one, how long logouts are remembered
    /// against such imports: set both to at least your longest session
    /// expiry.
    pub fn open_with(dir: impl AsRef<Path>, config: Config) -> Result<Self> {
        Ok(Self::new(Arc::new(Engine::open(dir, config)?)))
    }

    /// A store on an engine already open: any backend (memory for tests,
    /// Redis), shared with other users of the engine if need be.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            user_at: None,
        }
    }

    /// Indexes each record by the user found at `pointer` in its data: a
    /// JSON pointer (RFC 6901) whose first segment is the session key, as
    /// in [`AXUM_LOGIN_USER`](Self::AXUM_LOGIN_USER). Fails with
    /// [`Error::InvalidConfig`] if `pointer` does not start with `/`.
    pub fn index_users_at(mut self, pointer: &str) -> Result<Self> {
        let Some(rest) = pointer.strip_prefix('/') else {
            return Err(Error::InvalidConfig {
                field: "index_users_at",
                reason: format!("{pointer:?} is not a JSON pointer (it must start with '/')"),
            });
        };
        let (key, inner) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let key = key.replace("~1", "/").replace("~0", "~");
        self.user_at = Some(Arc::new((key, inner.to_owned())));
        Ok(self)
    }

    /// The engine underneath: its [`admin`](Engine::admin) API, its
    /// [`metrics`](Engine::metrics).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The live sessions of `user` (as the index names it), oldest first:
    /// at most the engine's
    /// [`max_sessions_per_user`](crate::Config::max_sessions_per_user), the
    /// newest. Sessions of the engine's own API on the same store are not
    /// listed.
    pub async fn sessions_of(&self, user: &str) -> Result<Vec<TowerSession>> {
        let user = user.to_owned();
        self.run(move |e| {
            Ok(e.sessions_of(&user)?
                .into_iter()
                .filter_map(|s| {
                    Some(TowerSession {
                        id: tower_id(&s.id)?,
                        created_at: s.created_at,
                        saved_at: s.last_seen,
                        expires_at: s.expires_at,
                    })
                })
                .collect())
        })
        .await
    }

    /// Deletes every session of `user` but `keep` ("log out everywhere
    /// else"; `None`: everywhere); returns how many it deleted. Durable
    /// before it returns, in both durability modes; a record of the user
    /// being written meanwhile is deleted too. On a store shared with the
    /// engine's own API, the user's sessions of both kinds go.
    pub async fn destroy_user(&self, user: &str, keep: Option<&Id>) -> Result<usize> {
        let user = user.to_owned();
        let keep = keep.map(session_id);
        self.run(move |e| e.destroy_user(&user, keep.as_ref()))
            .await
    }

    /// Makes every write so far durable, then closes the store if this is
    /// the last handle on its engine (else the last one to drop closes it).
    pub fn close(self) -> Result<()> {
        self.engine.flush()?;
        match Arc::try_unwrap(self.engine) {
            Ok(engine) => engine.close(),
            Err(_) => Ok(()),
        }
    }

    /// Runs `f` on tokio's blocking pool (inline outside a runtime).
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Engine) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.run_where(Where::Blocking, f).await
    }

    /// Runs `f` inline or on tokio's blocking pool, as `at` says.
    async fn run_where<T, F>(&self, at: Where, f: F) -> Result<T>
    where
        F: FnOnce(&Engine) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let engine = self.engine.clone();
        let inline = engine.is_local()
            && match at {
                Where::Inline => true,
                Where::InlineUnlessWaiting => !engine.write_may_wait(),
                Where::Blocking => false,
            };
        if inline || tokio::runtime::Handle::try_current().is_err() {
            // A panic is an error here too, as it is from the pool: it
            // never unwinds into the caller's task.
            return std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&engine)))
                .unwrap_or_else(|panic| {
                    Err(Error::Storage(
                        crate::engine::panic_message(panic.as_ref()).into(),
                    ))
                });
        }
        match tokio::task::spawn_blocking(move || f(&engine)).await {
            Ok(r) => r,
            Err(e) => Err(Error::Storage(Box::new(e))),
        }
    }

    /// The user a record's data names, if the store indexes users.
    fn user_of(&self, r: &Record) -> Result<Option<String>> {
        let data = &r.data;
        let Some(at) = &self.user_at else {
            return Ok(None);
        };
        let (key, inner) = at.as_ref();
        let found = data.get(key).and_then(|v| match inner.as_str() {
            "" => Some(v),
            p => v.pointer(p),
        });
        let user = match found {
            None | Some(serde_json::Value::Null) => return Ok(None),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(other) => {
                return Err(Error::TowerRecord {
                    id_hint: hint(&r.id),
                    reason: format!(
                        "the user at {key:?}{inner} is a JSON {}, not a string or a number",
                        json_type(other)
                    ),
                });
            }
        };
        if user.is_empty() || user.len() > MAX_USER_LEN {
            return Err(Error::InvalidUser {
                len: user.len(),
                max: MAX_USER_LEN,
            });
        }
        Ok(Some(user))
    }
}

/// Where a storage call runs (see the module docs).
#[derive(Debug, Clone, Copy)]
enum Where {
    /// On the calling task: it never waits for a sync.
    Inline,
    /// On the calling task, unless the write would wait for a sync.
    InlineUnlessWaiting,
    /// On tokio's blocking pool.
    Blocking,
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// The first characters of a tower-sessions id, for errors and logs.
fn hint(id: &Id) -> String {
    session_id(id).hint()
}

/// The sessiondb id of a tower-sessions id.
fn session_id(id: &Id) -> SessionId {
    let mut b = [0u8; SessionId::LEN];
    b[..16].copy_from_slice(&id.0.to_le_bytes());
    b[16..].copy_from_slice(&TAG);
    SessionId::from_bytes(b)
}

/// The tower-sessions id of a sessiondb id, if it is one.
fn tower_id(id: &SessionId) -> Option<Id> {
    let (head, tag) = id.as_bytes().split_at(16);
    let head: [u8; 16] = head.try_into().ok()?;
    (tag == TAG).then(|| Id(i128::from_le_bytes(head)))
}

/// `t` in ms since the Unix epoch, rounded down (0 before 1970).
fn millis(t: OffsetDateTime) -> u64 {
    let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
    u64::try_from(ms.max(0)).unwrap_or(u64::MAX)
}

/// A record's data and exact expiry as a body's values.
fn encode_data(r: &Record) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut data = BTreeMap::new();
    for (key, value) in &r.data {
        if key == TowerStore::EXPIRY_KEY {
            return Err(Error::TowerRecord {
                id_hint: hint(&r.id),
                reason: format!("the session key {key:?} is reserved by sessiondb"),
            });
        }
        let text = serde_json::to_string(value).map_err(|e| Error::Encode {
            key: key.clone(),
            source: Box::new(e),
        })?;
        data.insert(key.clone(), encoded(key, &text)?);
    }
    let nanos = r.expiry_date.unix_timestamp_nanos();
    // An instant past what `time` can hold in UTC (year 9999 with a
    // negative offset) would store, then never load: refused here.
    if OffsetDateTime::from_unix_timestamp_nanos(nanos).is_err() {
        return Err(Error::TowerRecord {
            id_hint: hint(&r.id),
            reason: format!("expiry {} is out of range in UTC", r.expiry_date),
        });
    }
    data.insert(
        TowerStore::EXPIRY_KEY.to_owned(),
        encoded(TowerStore::EXPIRY_KEY, &nanos)?,
    );
    Ok(data)
}

fn encoded<T: serde::Serialize + ?Sized>(key: &str, v: &T) -> Result<Vec<u8>> {
    record::encode_value(v).map_err(|e| Error::Encode {
        key: key.to_owned(),
        source: Box::new(e),
    })
}

/// The body that stores `r`: created at `created`, written at `now`,
/// expiring exactly when `r` does (to the ms).
fn body_of(r: &Record, created: u64, now: u64) -> Result<Body> {
    let expires = millis(r.expiry_date);
    Ok(Body {
        created_ms: created,
        last_seen_ms: now,
        absolute_deadline_ms: expires,
        idle_timeout_ms: expires.saturating_sub(now),
        data: encode_data(r)?,
    })
}

/// The record a stored body holds.
fn record_of(id: Id, body: &Body) -> Result<Record> {
    let corrupt = |reason: String| Error::TowerRecord {
        id_hint: hint(&id),
        reason,
    };
    let mut data = HashMap::with_capacity(body.data.len());
    let mut expiry = None;
    for (key, bytes) in &body.data {
        if key == TowerStore::EXPIRY_KEY {
            let nanos: i128 =
                record::decode_value(bytes).map_err(|e| corrupt(format!("expiry: {e}")))?;
            expiry = Some(nanos);
            continue;
        }
        let text: String =
            record::decode_value(bytes).map_err(|e| corrupt(format!("value {key:?}: {e}")))?;
        let value =
            serde_json::from_str(&text).map_err(|e| corrupt(format!("value {key:?}: {e}")))?;
        data.insert(key.clone(), value);
    }
    // A record without the exact expiry (written by other means): the
    // indexed one, to the ms.
    let nanos = expiry.unwrap_or(i128::from(body.expires_at()) * 1_000_000);
    let expiry_date = OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map_err(|e| corrupt(format!("expiry: {e}")))?;
    Ok(Record {
        id,
        data,
        expiry_date,
    })
}

/// The engine's error as the trait's, for a write: what the record could
/// not be stored as is an encode error, the rest the backend's.
fn write_error(e: Error) -> session_store::Error {
    match e {
        Error::TooLarge { .. }
        | Error::InvalidUser { .. }
        | Error::TowerRecord { .. }
        | Error::Encode { .. }
        | Error::EncodeRecord(_) => session_store::Error::Encode(e.to_string()),
        e => session_store::Error::Backend(e.to_string()),
    }
}

/// The engine's error as the trait's, for a read: a stored record that
/// does not read back is a decode error, the rest the backend's.
fn read_error(e: Error) -> session_store::Error {
    match e {
        Error::TowerRecord { .. } | Error::Corrupt { .. } | Error::Decode { .. } => {
            session_store::Error::Decode(e.to_string())
        }
        e => session_store::Error::Backend(e.to_string()),
    }
}

impl TowerStore {
    fn create_now(&self, engine: &Engine, r: &mut Record) -> Result<()> {
        let user = self.user_of(r)?;
        for _ in 0..CREATE_ATTEMPTS {
            let now = engine.now_ms();
            let body = body_of(r, now, now)?;
            match engine.write_raw(&session_id(&r.id), None, None, user.as_deref(), &body)? {
                Written::Stored | Written::Revoked | Written::Missing => return Ok(()),
                // A live record has the id: draw another, as the trait asks.
                Written::Conflict => r.id = Id::default(),
            }
        }
        Err(Error::Conflict {
            id_hint: session_id(&r.id).hint(),
        })
    }

    fn save_now(&self, engine: &Engine, r: &Record) -> Result<()> {
        let user = self.user_of(r)?;
        let sid = session_id(&r.id);
        for _ in 0..SAVE_RETRIES {
            // Deleted, swept or expired: not brought back.
            let Some(stored) = engine.read_raw(&sid, false)? else {
                return Ok(());
            };
            let body = body_of(r, stored.body.created_ms, engine.now_ms())?;
            match engine.write_raw(
                &sid,
                Some(stored.version),
                stored.user.as_deref(),
                user.as_deref(),
                &body,
            )? {
                Written::Stored | Written::Revoked | Written::Missing => return Ok(()),
                // Another save landed in between: the last one wins, as in
                // every tower-sessions store; re-read its version.
                Written::Conflict => continue,
            }
        }
        Err(Error::Conflict {
            id_hint: sid.hint(),
        })
    }

    fn load_now(engine: &Engine, id: Id) -> Result<Option<Record>> {
        let sid = session_id(&id);
        match engine.read_raw(&sid, true)? {
            Some(stored) => record_of(id, &stored.body).map(Some),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl SessionStore for TowerStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let store = self.clone();
        let mut r = record.clone();
        let r = self
            .run_where(Where::InlineUnlessWaiting, move |e| {
                store.create_now(e, &mut r).map(|()| r)
            })
            .await
            .map_err(write_error)?;
        record.id = r.id;
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let store = self.clone();
        let r = record.clone();
        self.run_where(Where::InlineUnlessWaiting, move |e| store.save_now(e, &r))
            .await
            .map_err(write_error)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let id = *id;
        self.run_where(Where::Inline, move |e| Self::load_now(e, id))
            .await
            .map_err(read_error)
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let sid = session_id(id);
        self.run(move |e| e.destroy_id(&sid).map(|_| ()))
            .await
            .map_err(write_error)
    }
}

#[async_trait]
impl ExpiredDeletion for TowerStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        self.run(|e| e.admin().sweep_now().map(|_| ()))
            .await
            .map_err(write_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_both_ways_and_only_tower_ids_map_back() {
        for raw in [0i128, 1, -1, i128::MIN, i128::MAX, 0x0123_4567_89ab_cdef] {
            let id = Id(raw);
            assert_eq!(tower_id(&session_id(&id)), Some(id));
            // The tower id's own base64 starts the sessiondb id's, so an
            // operator finds a record by its cookie's first characters.
            assert!(
                session_id(&id)
                    .to_base64()
                    .starts_with(&id.to_string()[..21]),
                "{raw}"
            );
        }
        let engine_id = SessionId::generate().expect("rng");
        assert_eq!(tower_id(&engine_id), None);
    }

    #[test]
    fn expiry_rounds_down_to_the_millisecond() {
        let t = |nanos: i128| OffsetDateTime::from_unix_timestamp_nanos(nanos).expect("time");
        assert_eq!(millis(t(1_999_999)), 1);
        assert_eq!(millis(t(2_000_000)), 2);
        assert_eq!(millis(t(-1)), 0);
        assert_eq!(millis(t(-5_000_000_000)), 0);
    }

    #[test]
    fn a_record_round_trips_exactly() {
        let expiry =
            OffsetDateTime::from_unix_timestamp_nanos(1_767_225_600_123_456_789).expect("time");
        let r = Record {
            id: Id(42),
            data: HashMap::from([
                ("n".to_owned(), serde_json::json!(3)),
                (
                    "nested".to_owned(),
                    serde_json::json!({"a": [1, "b", null]}),
                ),
                (String::new(), serde_json::json!("empty key")),
            ]),
            expiry_date: expiry,
        };
        let body = body_of(&r, 5, 7).expect("encode");
        assert_eq!(body.expires_at(), 1_767_225_600_123);
        let back = record_of(r.id, &body).expect("decode");
        assert_eq!(back, r);
        assert_eq!(
            back.expiry_date.unix_timestamp_nanos(),
            1_767_225_600_123_456_789
        );
    }

    /// Numbers come back exactly: every f64 bit pattern that JSON can
    /// hold, through the store's encoding and back.
    #[test]
    fn every_number_comes_back_exactly() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut values = vec![
            0.1,
            0.2 + 0.1,
            1e-308,
            2.225_073_858_507_201_4e-308,
            f64::MAX,
        ];
        for _ in 0..20_000 {
            // xorshift64: spread over every exponent and mantissa.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = f64::from_bits(x);
            if f.is_finite() {
                values.push(f);
            }
        }
        let r = Record {
            id: Id(3),
            data: values
                .iter()
                .enumerate()
                .map(|(i, f)| (i.to_string(), serde_json::json!(f)))
                .collect(),
            expiry_date: OffsetDateTime::UNIX_EPOCH,
        };
        let back = record_of(r.id, &body_of(&r, 0, 0).expect("encode")).expect("decode");
        for (i, f) in values.iter().enumerate() {
            let got = back.data[&i.to_string()].as_f64().expect("a number");
            assert_eq!(got.to_bits(), f.to_bits(), "{f:e}");
        }
    }

    /// An expiry that `time` cannot hold in UTC would store and then never
    /// load: it is refused when saved.
    #[test]
    fn an_expiry_out_of_range_in_utc_is_refused() {
        let far = time::PrimitiveDateTime::MAX
            .assume_offset(time::UtcOffset::from_hms(-5, 0, 0).expect("offset"));
        let r = Record {
            id: Id(4),
            data: HashMap::new(),
            expiry_date: far,
        };
        assert!(matches!(body_of(&r, 0, 0), Err(Error::TowerRecord { .. })));
    }

    #[test]
    fn the_reserved_key_is_refused() {
        let r = Record {
            id: Id(1),
            data: HashMap::from([(TowerStore::EXPIRY_KEY.to_owned(), serde_json::json!(1))]),
            expiry_date: OffsetDateTime::UNIX_EPOCH,
        };
        assert!(matches!(body_of(&r, 0, 0), Err(Error::TowerRecord { .. })));
    }
}
