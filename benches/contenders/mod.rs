//! The contenders of the benchmark suites, behind one interface so that
//! every suite runs the same workload on each of them in one run.
//!
//! Every contender has the same token check in front: a request's `Cookie`
//! header goes through sessiondb's scanner and HMAC verification, and only
//! a verified id reaches the store. So a load compares what happens after
//! the cookie (lookup, decode, expiry), and a forged cookie costs every
//! contender the same HMAC.
//!
//! - `sessiondb-sled-relaxed`, `sessiondb-sled-strict`, `sessiondb-memory`:
//!   the engine; `sessiondb-sled-v1`: the engine on sled with its first
//!   write path (`Config::write_path_v1`), relaxed, for the side-by-side.
//! - `mutex-hashmap`: a `Mutex<HashMap>` of decoded sessions, the seeds'
//!   global `container` dict; `dashmap`: the same, sharded.
//! - `tower-memory`, `tower-sled`, `tower-sqlite`: the stores a Rust user
//!   picks instead, through their own `tower_sessions::SessionStore` trait,
//!   called directly (no HTTP) on a tokio runtime. `tower-sqlite` runs
//!   SQLite in WAL mode with `synchronous=NORMAL` (relaxed: a commit is not
//!   fsynced); `tower-sqlite-full` with `synchronous=FULL` (each commit
//!   fsynced), the setting to compare with strict durability.
//! - `tower-sessiondb`, `tower-sessiondb-strict`: sessiondb's own
//!   tower-sessions store ([`sessiondb::TowerStore`], feature
//!   `tower-sessions`), through the same trait calls as the other tower
//!   contenders. Every tower contender creates through `create` and
//!   regenerates as `cycle_id` does (delete, then `create`), as
//!   tower-sessions' `Session` calls them.
//! - `redis`: a `redis-server` on 127.0.0.1 (the seed's pycket), through the
//!   `redis` crate: one `SET ... PX` per save, `GET` per load. Present only
//!   when `SESSIONDB_BENCH_REDIS` names a server (`benches/run.sh` starts
//!   one).
//!
//! The data of a session is ~200 bytes, as a small login session holds.

#![allow(dead_code)] // each bench binary uses a different part

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Duration;

use sessiondb::{
    Config, CookieBuilder, Durability, Engine, Key, KeyRing, ManualClock, Purpose, SessionId,
};
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::SessionStore;

/// 2026-01-01, a fixed start for every clock.
pub const T0: u64 = 1_767_225_600_000;

pub fn ring() -> KeyRing {
    KeyRing::new(1, Key::try_from(&[42u8; 32][..]).expect("32 bytes"))
}

/// The engine's settings in the suites: no background sweeper (the sweep
/// suite runs it on purpose), a manual clock, and timeouts long enough that
/// nothing expires unless a suite moves the clock on purpose.
pub fn config(clock: &ManualClock) -> Config {
    Config::new(ring())
        .clock(clock.clone())
        .sweeper(false)
        .idle_timeout(Duration::from_secs(3600 * 24 * 365))
        .absolute_timeout(Duration::from_secs(3600 * 24 * 365 * 50))
        .touch_threshold(Duration::from_secs(60))
}

/// A session's data in the baselines: named values, each already encoded
/// (bincode), as sessiondb's own [`sessiondb::Session`] holds them.
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    pub created_at: u64,
    pub last_seen: u64,
    pub expires_at: u64,
    pub user: Option<String>,
    pub values: HashMap<String, Vec<u8>>,
}

fn enc<T: serde::Serialize + ?Sized>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("encode")
}

/// The ~200 bytes of session data every contender stores, as named values.
pub fn fields() -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::json;
    vec![
        ("user_name", json!("alice.example")),
        ("roles", json!(["reader", "writer", "admin"])),
        ("csrf_seed", json!(vec![7u8; 32])),
        ("cart", json!([["sku-1234", 2], ["sku-9876", 1]])),
        ("theme", json!("dark")),
        ("visits", json!(17u64)),
        ("flash", json!("Welcome back, alice.example!")),
    ]
}

fn fill(s: &mut sessiondb::Session) {
    for (k, v) in fields() {
        s.insert(k, &v).expect("insert");
    }
}

/// What every suite can do to a contender. Cookies are the raw value of a
/// request's `Cookie` header; ids never cross this line unsigned.
pub trait Contender: Send + Sync {
    fn name(&self) -> String;
    /// A new session holding the ~200 bytes, stored; its `Cookie` header.
    fn create(&self) -> Vec<u8>;
    /// The session the header names, decoded; `false` when there is none.
    fn load(&self, cookie: &[u8]) -> bool;
    /// Read, bump the visit counter, write back.
    fn update(&self, cookie: &[u8]) -> bool;
    /// A read that moves the session's last-seen time (sessiondb writes it
    /// back once it lags by more than the touch threshold; the others
    /// write on every such read, as their expiry-on-inactivity does).
    fn touch(&self, cookie: &[u8]) -> bool;
    fn destroy(&self, cookie: &[u8]) -> bool;
    /// A new id for the same data, the old one gone; the new header.
    fn regenerate(&self, cookie: &[u8]) -> Option<Vec<u8>>;
    /// Whether the contender fsyncs every commit.
    fn durable(&self) -> bool {
        false
    }
}

/// The token layer every contender shares.
#[derive(Debug)]
pub struct Tokens {
    ring: KeyRing,
    cookie: sessiondb::CookieConfig,
}

impl Default for Tokens {
    fn default() -> Self {
        Self {
            ring: ring(),
            cookie: CookieBuilder::default().build().expect("cookie"),
        }
    }
}

impl Tokens {
    pub fn id(&self, header: &[u8]) -> Option<SessionId> {
        self.cookie.find_session(&self.ring, [header])
    }
    pub fn header(&self, id: &SessionId) -> Vec<u8> {
        let token = self.ring.sign(Purpose::Session, id);
        format!("{}={}", self.cookie.name(), token.as_str()).into_bytes()
    }
}

// ------------------------------------------------------------- sessiondb --

pub struct SessionDb {
    pub name: &'static str,
    pub engine: Engine,
    pub clock: ManualClock,
    _dir: Option<tempfile::TempDir>,
}

impl SessionDb {
    pub fn sled(durability: Durability) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new(T0);
        let engine = Engine::open(dir.path(), config(&clock).durability(durability)).expect("open");
        let name = match durability {
            Durability::Strict => "sessiondb-sled-strict",
            _ => "sessiondb-sled-relaxed",
        };
        Self {
            name,
            engine,
            clock,
            _dir: Some(dir),
        }
    }

    /// The engine on sled with its first write path (a transaction per
    /// batch, an expiry entry moved on every touch), relaxed: the old
    /// design beside the new one.
    pub fn sled_v1() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new(T0);
        let engine = Engine::open(dir.path(), config(&clock).write_path_v1(true)).expect("open");
        Self {
            name: "sessiondb-sled-v1",
            engine,
            clock,
            _dir: Some(dir),
        }
    }

    pub fn memory() -> Self {
        let clock = ManualClock::new(T0);
        let engine =
            Engine::with_backend(sessiondb::MemoryBackend::new(), config(&clock)).expect("open");
        Self {
            name: "sessiondb-memory",
            engine,
            clock,
            _dir: None,
        }
    }

    /// sessiondb on its Redis backend (feature `redis`), at `SESSIONDB_BENCH_REDIS` (under a
    /// fresh key prefix), if that names a reachable server.
    #[cfg(feature = "redis")]
    pub fn redis() -> Option<Self> {
        let url = std::env::var("SESSIONDB_BENCH_REDIS").ok()?;
        let clock = ManualClock::new(T0);
        let prefix = format!("bench{}", SessionId::generate().expect("rng").hint());
        let options = sessiondb::RedisOptions::new(url).prefix(prefix);
        let opened = sessiondb::RedisBackend::open(options)
            .and_then(|backend| Engine::with_backend(backend, config(&clock)));
        match opened {
            Ok(engine) => Some(Self {
                name: "sessiondb-redis",
                engine,
                clock,
                _dir: None,
            }),
            Err(e) => {
                eprintln!("sessiondb-redis: skipped ({e})");
                None
            }
        }
    }

    fn pair(&self, s: &sessiondb::Session) -> Vec<u8> {
        let set = self.engine.set_cookie(s);
        set.split(';').next().expect("pair").as_bytes().to_vec()
    }
}

impl Contender for SessionDb {
    fn name(&self) -> String {
        self.name.into()
    }
    fn create(&self) -> Vec<u8> {
        let mut s = self.engine.create().expect("create");
        fill(&mut s);
        self.engine.save(&mut s).expect("save");
        self.pair(&s)
    }
    fn load(&self, cookie: &[u8]) -> bool {
        std::hint::black_box(self.engine.load([cookie]).expect("load")).is_some()
    }
    fn update(&self, cookie: &[u8]) -> bool {
        let Some(id) = self.engine.session_id([cookie]) else {
            return false;
        };
        self.engine
            .update(&id, |s| {
                let n: u64 = s.get("visits").ok().flatten().unwrap_or(0);
                s.insert("visits", &(n + 1)).expect("insert");
            })
            .expect("update")
            .is_some()
    }
    fn touch(&self, cookie: &[u8]) -> bool {
        // Past the touch threshold, so this read writes.
        self.clock.advance(Duration::from_secs(61));
        self.load(cookie)
    }
    fn destroy(&self, cookie: &[u8]) -> bool {
        match self.engine.session_id([cookie]) {
            Some(id) => self.engine.destroy_id(&id).expect("destroy"),
            None => false,
        }
    }
    fn regenerate(&self, cookie: &[u8]) -> Option<Vec<u8>> {
        let mut s = self.engine.load([cookie]).expect("load")?;
        self.engine.regenerate(&mut s).expect("regenerate");
        Some(self.pair(&s))
    }
    fn durable(&self) -> bool {
        self.name == "sessiondb-sled-strict"
    }
}

// ------------------------------------------------------- in-memory maps --

/// A map of decoded sessions; `Mutex<HashMap>` or `DashMap`.
pub trait Map: Send + Sync + Default {
    fn get(&self, id: &SessionId) -> Option<Decoded>;
    fn put(&self, id: SessionId, s: Decoded);
    fn with<R>(&self, id: &SessionId, f: impl FnOnce(&mut Decoded) -> R) -> Option<R>;
    fn remove(&self, id: &SessionId) -> Option<Decoded>;
}

impl<S: BuildHasher + Default + Send + Sync> Map for Mutex<HashMap<SessionId, Decoded, S>> {
    fn get(&self, id: &SessionId) -> Option<Decoded> {
        self.lock().expect("lock").get(id).cloned()
    }
    fn put(&self, id: SessionId, s: Decoded) {
        self.lock().expect("lock").insert(id, s);
    }
    fn with<R>(&self, id: &SessionId, f: impl FnOnce(&mut Decoded) -> R) -> Option<R> {
        self.lock().expect("lock").get_mut(id).map(f)
    }
    fn remove(&self, id: &SessionId) -> Option<Decoded> {
        self.lock().expect("lock").remove(id)
    }
}

impl Map for dashmap::DashMap<SessionId, Decoded> {
    fn get(&self, id: &SessionId) -> Option<Decoded> {
        dashmap::DashMap::get(self, id).map(|r| r.clone())
    }
    fn put(&self, id: SessionId, s: Decoded) {
        self.insert(id, s);
    }
    fn with<R>(&self, id: &SessionId, f: impl FnOnce(&mut Decoded) -> R) -> Option<R> {
        self.get_mut(id).map(|mut r| f(&mut r))
    }
    fn remove(&self, id: &SessionId) -> Option<Decoded> {
        dashmap::DashMap::remove(self, id).map(|(_, v)| v)
    }
}

pub struct InMemory<M> {
    name: &'static str,
    map: M,
    tokens: Tokens,
    clock: ManualClock,
}

pub fn mutex_hashmap() -> InMemory<Mutex<HashMap<SessionId, Decoded>>> {
    InMemory::new("mutex-hashmap")
}

pub fn dashmap() -> InMemory<dashmap::DashMap<SessionId, Decoded>> {
    InMemory::new("dashmap")
}

const IDLE_MS: u64 = 30 * 60 * 1000;

impl<M: Map> InMemory<M> {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            map: M::default(),
            tokens: Tokens::default(),
            clock: ManualClock::new(T0),
        }
    }
    fn now(&self) -> u64 {
        sessiondb::Clock::now_ms(&self.clock)
    }
    fn live(&self, cookie: &[u8]) -> Option<(SessionId, Decoded)> {
        let id = self.tokens.id(cookie)?;
        let s = self.map.get(&id)?;
        (s.expires_at > self.now()).then_some((id, s))
    }
}

impl<M: Map> Contender for InMemory<M> {
    fn name(&self) -> String {
        self.name.into()
    }
    fn create(&self) -> Vec<u8> {
        let id = SessionId::generate().expect("id");
        let now = self.now();
        let values = fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), enc(&v)))
            .collect();
        self.map.put(
            id,
            Decoded {
                created_at: now,
                last_seen: now,
                expires_at: now + IDLE_MS,
                user: None,
                values,
            },
        );
        self.tokens.header(&id)
    }
    fn load(&self, cookie: &[u8]) -> bool {
        std::hint::black_box(self.live(cookie)).is_some()
    }
    fn update(&self, cookie: &[u8]) -> bool {
        let Some(id) = self.tokens.id(cookie) else {
            return false;
        };
        self.map
            .with(&id, |s| {
                let n: u64 = s
                    .values
                    .get("visits")
                    .and_then(|b| {
                        bincode::serde::decode_from_slice(b, bincode::config::standard()).ok()
                    })
                    .map_or(0, |(n, _)| n);
                s.values.insert("visits".into(), enc(&(n + 1)));
            })
            .is_some()
    }
    fn touch(&self, cookie: &[u8]) -> bool {
        let Some(id) = self.tokens.id(cookie) else {
            return false;
        };
        let now = self.now();
        self.map
            .with(&id, |s| {
                s.last_seen = now;
                s.expires_at = now + IDLE_MS;
            })
            .is_some()
    }
    fn destroy(&self, cookie: &[u8]) -> bool {
        self.tokens
            .id(cookie)
            .is_some_and(|id| self.map.remove(&id).is_some())
    }
    fn regenerate(&self, cookie: &[u8]) -> Option<Vec<u8>> {
        let id = self.tokens.id(cookie)?;
        let s = self.map.remove(&id)?;
        let new = SessionId::generate().expect("id");
        self.map.put(new, s);
        Some(self.tokens.header(&new))
    }
}

// ------------------------------------------------------- tower-sessions --

/// A `tower_sessions::SessionStore`, driven from plain threads through a
/// shared multi-threaded tokio runtime.
pub struct Tower<S> {
    name: &'static str,
    store: S,
    rt: tokio::runtime::Handle,
    tokens: Tokens,
    durable: bool,
    _keep: Option<(tokio::runtime::Runtime, tempfile::TempDir)>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio")
}

/// tower-sessions ids are 128-bit; the first 16 bytes of ours name them.
fn tower_id(id: &SessionId) -> Id {
    let b: [u8; 16] = id.as_bytes()[..16].try_into().expect("16 bytes");
    Id(i128::from_le_bytes(b))
}

fn expiry_in(secs: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::seconds(secs)
}

pub fn tower_memory() -> Tower<tower_sessions_memory_store::MemoryStore> {
    let rt = runtime();
    Tower {
        name: "tower-memory",
        store: tower_sessions_memory_store::MemoryStore::default(),
        rt: rt.handle().clone(),
        tokens: Tokens::default(),
        durable: false,
        _keep: Some((rt, tempfile::tempdir().expect("temp dir"))),
    }
}

pub fn tower_sled() -> Tower<tower_sessions_sled_store::SledStore> {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = sled::open(dir.path()).expect("sled");
    let store = tower_sessions_sled_store::SledStore::new(db.open_tree("session").expect("tree"));
    Tower {
        name: "tower-sled",
        store,
        rt: rt.handle().clone(),
        tokens: Tokens::default(),
        durable: false,
        _keep: Some((rt, dir)),
    }
}

/// sessiondb's tower-sessions store on sled, on the system clock (the
/// tower contenders' expiry dates are real times).
pub fn tower_sessiondb(durability: Durability) -> Tower<sessiondb::TowerStore> {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::new(ring()).sweeper(false).durability(durability);
    let store = sessiondb::TowerStore::open_with(dir.path(), config).expect("open");
    Tower {
        name: match durability {
            Durability::Strict => "tower-sessiondb-strict",
            _ => "tower-sessiondb",
        },
        store,
        rt: rt.handle().clone(),
        tokens: Tokens::default(),
        durable: durability == Durability::Strict,
        _keep: Some((rt, dir)),
    }
}

/// `full`: `synchronous=FULL` (every commit fsynced); else `NORMAL`.
pub fn tower_sqlite(full: bool) -> Tower<tower_sessions_sqlx_store::SqliteStore> {
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = SqliteConnectOptions::new()
        .filename(dir.path().join("sessions.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match full {
            true => SqliteSynchronous::Full,
            false => SqliteSynchronous::Normal,
        });
    let store = rt.block_on(async {
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await
            .expect("sqlite");
        let store = tower_sessions_sqlx_store::SqliteStore::new(pool);
        store.migrate().await.expect("migrate");
        store
    });
    Tower {
        name: if full {
            "tower-sqlite-full"
        } else {
            "tower-sqlite"
        },
        store,
        rt: rt.handle().clone(),
        tokens: Tokens::default(),
        durable: full,
        _keep: Some((rt, dir)),
    }
}

impl<S: SessionStore> Tower<S> {
    fn record(&self, id: &SessionId) -> Option<Record> {
        let r = self
            .rt
            .block_on(self.store.load(&tower_id(id)))
            .expect("load")?;
        // Stores may return what has expired; tower-sessions checks.
        (r.expiry_date > time::OffsetDateTime::now_utc()).then_some(r)
    }
    fn save(&self, r: &Record) {
        self.rt.block_on(self.store.save(r)).expect("save");
    }
    /// What `Session::save` calls for a new session (or a new id).
    fn create_record(&self, mut r: Record) {
        let id = r.id;
        self.rt.block_on(self.store.create(&mut r)).expect("create");
        assert_eq!(r.id, id, "a 128-bit id collided");
    }
}

impl<S: SessionStore> Contender for Tower<S> {
    fn name(&self) -> String {
        self.name.into()
    }
    fn create(&self) -> Vec<u8> {
        let id = SessionId::generate().expect("id");
        let r = Record {
            id: tower_id(&id),
            data: fields()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            expiry_date: expiry_in(1800),
        };
        self.create_record(r);
        self.tokens.header(&id)
    }
    fn load(&self, cookie: &[u8]) -> bool {
        self.tokens
            .id(cookie)
            .and_then(|id| std::hint::black_box(self.record(&id)))
            .is_some()
    }
    fn update(&self, cookie: &[u8]) -> bool {
        let Some(mut r) = self.tokens.id(cookie).and_then(|id| self.record(&id)) else {
            return false;
        };
        let n = r.data.get("visits").and_then(|v| v.as_u64()).unwrap_or(0);
        r.data.insert("visits".into(), (n + 1).into());
        self.save(&r);
        true
    }
    fn touch(&self, cookie: &[u8]) -> bool {
        let Some(mut r) = self.tokens.id(cookie).and_then(|id| self.record(&id)) else {
            return false;
        };
        r.expiry_date = expiry_in(1800);
        self.save(&r);
        true
    }
    fn destroy(&self, cookie: &[u8]) -> bool {
        let Some(id) = self.tokens.id(cookie) else {
            return false;
        };
        self.rt
            .block_on(self.store.delete(&tower_id(&id)))
            .expect("delete");
        true
    }
    fn regenerate(&self, cookie: &[u8]) -> Option<Vec<u8>> {
        // What tower-sessions' `cycle_id` does: delete the old record, then
        // (at the end of the request) create the data under a new id.
        let old = self.tokens.id(cookie)?;
        let mut r = self.record(&old)?;
        self.rt.block_on(self.store.delete(&r.id)).expect("delete");
        let new = SessionId::generate().expect("id");
        r.id = tower_id(&new);
        self.create_record(r);
        Some(self.tokens.header(&new))
    }
    fn durable(&self) -> bool {
        self.durable
    }
}

// ----------------------------------------------------------------- redis --

/// Sessions as Redis strings with a TTL: `SET id bytes PX ttl`, `GET id`.
/// One connection per calling thread (a small pool).
pub struct Redis {
    client: redis::Client,
    pool: Mutex<Vec<redis::Connection>>,
    tokens: Tokens,
}

/// The Redis contender, if `SESSIONDB_BENCH_REDIS` names a reachable
/// server; otherwise a printed notice and `None`.
pub fn redis() -> Option<Redis> {
    let Ok(url) = std::env::var("SESSIONDB_BENCH_REDIS") else {
        eprintln!("redis: skipped (SESSIONDB_BENCH_REDIS is not set; benches/run.sh sets it)");
        return None;
    };
    let client = match redis::Client::open(url.as_str()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("redis: skipped ({url}: {e})");
            return None;
        }
    };
    let mut conn = match client.get_connection() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("redis: skipped ({url}: {e})");
            return None;
        }
    };
    let _: () = redis::cmd("FLUSHDB").query(&mut conn).expect("FLUSHDB");
    Some(Redis {
        client,
        pool: Mutex::new(vec![conn]),
        tokens: Tokens::default(),
    })
}

impl Redis {
    fn with<R>(&self, f: impl FnOnce(&mut redis::Connection) -> R) -> R {
        let conn = self.pool.lock().expect("pool").pop();
        let mut conn = conn.unwrap_or_else(|| self.client.get_connection().expect("connect"));
        let r = f(&mut conn);
        self.pool.lock().expect("pool").push(conn);
        r
    }
    fn key(id: &SessionId) -> Vec<u8> {
        let mut k = b"s:".to_vec();
        k.extend_from_slice(id.as_bytes());
        k
    }
    fn get(&self, id: &SessionId) -> Option<Decoded> {
        let bytes: Option<Vec<u8>> =
            self.with(|c| redis::cmd("GET").arg(Self::key(id)).query(c).expect("GET"));
        bytes.map(|b| decode(&b))
    }
    fn set(&self, id: &SessionId, s: &Decoded) {
        let bytes = encode(s);
        self.with(|c| {
            let _: () = redis::cmd("SET")
                .arg(Self::key(id))
                .arg(bytes)
                .arg("PX")
                .arg(IDLE_MS)
                .query(c)
                .expect("SET");
        });
    }
    fn del(&self, id: &SessionId) -> bool {
        let n: u64 = self.with(|c| redis::cmd("DEL").arg(Self::key(id)).query(c).expect("DEL"));
        n > 0
    }
}

fn encode(s: &Decoded) -> Vec<u8> {
    let values: Vec<(&String, &Vec<u8>)> = s.values.iter().collect();
    enc(&(s.created_at, s.last_seen, s.expires_at, &s.user, values))
}

fn decode(b: &[u8]) -> Decoded {
    type Wire = (u64, u64, u64, Option<String>, Vec<(String, Vec<u8>)>);
    let ((created_at, last_seen, expires_at, user, values), _): (Wire, usize) =
        bincode::serde::decode_from_slice(b, bincode::config::standard()).expect("decode");
    Decoded {
        created_at,
        last_seen,
        expires_at,
        user,
        values: values.into_iter().collect(),
    }
}

impl Contender for Redis {
    fn name(&self) -> String {
        "redis".into()
    }
    fn create(&self) -> Vec<u8> {
        let id = SessionId::generate().expect("id");
        let now = T0;
        let s = Decoded {
            created_at: now,
            last_seen: now,
            expires_at: now + IDLE_MS,
            user: None,
            values: fields()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), enc(&v)))
                .collect(),
        };
        self.set(&id, &s);
        self.tokens.header(&id)
    }
    fn load(&self, cookie: &[u8]) -> bool {
        self.tokens
            .id(cookie)
            .and_then(|id| std::hint::black_box(self.get(&id)))
            .is_some()
    }
    fn update(&self, cookie: &[u8]) -> bool {
        // Read-modify-write without a version check, as pycket does.
        let Some(id) = self.tokens.id(cookie) else {
            return false;
        };
        let Some(mut s) = self.get(&id) else {
            return false;
        };
        let n: u64 = s
            .values
            .get("visits")
            .and_then(|b| bincode::serde::decode_from_slice(b, bincode::config::standard()).ok())
            .map_or(0, |(n, _)| n);
        s.values.insert("visits".into(), enc(&(n + 1)));
        self.set(&id, &s);
        true
    }
    fn touch(&self, cookie: &[u8]) -> bool {
        let Some(id) = self.tokens.id(cookie) else {
            return false;
        };
        let n: u64 = self.with(|c| {
            redis::cmd("PEXPIRE")
                .arg(Self::key(&id))
                .arg(IDLE_MS)
                .query(c)
                .expect("PEXPIRE")
        });
        n > 0
    }
    fn destroy(&self, cookie: &[u8]) -> bool {
        self.tokens.id(cookie).is_some_and(|id| self.del(&id))
    }
    fn regenerate(&self, cookie: &[u8]) -> Option<Vec<u8>> {
        let id = self.tokens.id(cookie)?;
        let new = SessionId::generate().expect("id");
        let ok: bool = self.with(|c| {
            redis::cmd("RENAMENX")
                .arg(Self::key(&id))
                .arg(Self::key(&new))
                .query(c)
                .unwrap_or(false)
        });
        ok.then(|| self.tokens.header(&new))
    }
}

/// Every contender of the single-machine suites, in report order; `strict`
/// adds the contenders that fsync every commit.
pub fn all(strict: bool) -> Vec<Box<dyn Contender>> {
    let mut v: Vec<Box<dyn Contender>> = vec![
        Box::new(SessionDb::sled(Durability::Relaxed)),
        Box::new(SessionDb::sled_v1()),
        Box::new(SessionDb::memory()),
        Box::new(mutex_hashmap()),
        Box::new(dashmap()),
        Box::new(tower_memory()),
        Box::new(tower_sled()),
        Box::new(tower_sqlite(false)),
        Box::new(tower_sessiondb(Durability::Relaxed)),
    ];
    if strict {
        v.insert(1, Box::new(SessionDb::sled(Durability::Strict)));
        v.push(Box::new(tower_sqlite(true)));
        v.push(Box::new(tower_sessiondb(Durability::Strict)));
    }
    if let Some(r) = redis() {
        v.push(Box::new(r));
    }
    #[cfg(feature = "redis")]
    if let Some(r) = SessionDb::redis() {
        v.push(Box::new(r));
    }
    v
}

/// Appends one JSON object (given as `"key":value` pairs) to the file
/// `$SESSIONDB_BENCH_OUT` names, if any, and prints it; benches/report.py
/// turns these into BENCHMARKS.md.
pub fn emit(suite: &str, workload: &str, contender: &str, fields: &[(&str, f64)]) {
    use std::io::Write;
    let mut line =
        format!(r#"{{"suite":"{suite}","workload":"{workload}","contender":"{contender}""#);
    for (k, v) in fields {
        line += &format!(r#","{k}":{v:.3}"#);
    }
    line += "}";
    if let Ok(path) = std::env::var("SESSIONDB_BENCH_OUT") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open SESSIONDB_BENCH_OUT");
        writeln!(f, "{line}").expect("write");
    }
}

/// Seconds per measured point: `SESSIONDB_BENCH_SECS`, or `default`.
pub fn secs(default: u64) -> u64 {
    std::env::var("SESSIONDB_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Lets `handles` run for `secs`, then raises `stop`, joins them, and
/// returns `count` per second of wall time.
pub fn rate_over(
    secs: u64,
    stop: &std::sync::atomic::AtomicBool,
    count: &std::sync::atomic::AtomicU64,
    handles: Vec<std::thread::JoinHandle<()>>,
) -> f64 {
    use std::sync::atomic::Ordering;
    let started = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("thread");
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// The size of the record the engine stores for one benchmark session.
pub fn record_len() -> usize {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(T0);
    {
        let engine = Engine::open(dir.path(), config(&clock)).expect("open");
        let mut s = engine.create().expect("create");
        for (k, v) in fields() {
            s.insert(k, &v).expect("insert");
        }
        engine.save(&mut s).expect("save");
        engine.close().expect("close");
    }
    // The engine's stores use 8 MiB sled segments (src/backend/sled/mod.rs).
    // sled's I/O threads let go of the file's lock a moment after the
    // engine closed: wait that out, as the engine's own open does.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let db = loop {
        match sled::Config::new()
            .path(dir.path())
            .segment_size(8 << 20)
            .open()
        {
            Ok(db) => break db,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("sled: {e}"),
        }
    };
    let sessions = db.open_tree("sessions").expect("tree");
    let (_, value) = sessions.first().expect("read").expect("one session");
    value.len()
}

/// A bare sled store for the floor runs, with the engine's default cache
/// budget, and its `sessions` and `expiry` trees.
pub fn bare_sled() -> (tempfile::TempDir, sled::Db, sled::Tree, sled::Tree) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(128 * 1024 * 1024)
        .flush_every_ms(Some(500))
        // As the engine's own stores (src/backend/sled/mod.rs).
        .segment_size(8 << 20)
        .open()
        .expect("sled");
    let sessions = db.open_tree("sessions").expect("tree");
    let expiry = db.open_tree("expiry").expect("tree");
    (dir, db, sessions, expiry)
}
