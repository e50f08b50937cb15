//! Helpers shared by the scenario tests: engines on each backend with a
//! manual clock, and a macro that runs one scenario against every backend.

#![allow(dead_code, reason = "each test binary uses a different subset")]

#[cfg(feature = "axum")]
pub mod web;

use std::path::Path;
use std::time::Duration;

use sessiondb::{Config, Engine, Key, KeyRing, ManualClock, Session};

/// splitmix64: a seeded generator, so a failing run can be replayed.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// A store's sled database, opened straight once its engine has closed:
/// with the segment size the store was made with (`SEGMENT_SIZE`, or
/// sled's default for stores made before), and waiting out sled's lock,
/// which sled lets go of a moment after its `Db` drops.
pub fn raw_sled(dir: &Path) -> sled::Db {
    let segment_size = std::fs::read_to_string(dir.join("SEGMENT_SIZE"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(512 * 1024);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match sled::Config::new()
            .path(dir)
            .segment_size(segment_size)
            .open()
        {
            Ok(db) => return db,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("open sled at {}: {e}", dir.display()),
        }
    }
}

/// A fixed start time (2026-01-01T00:00:00Z), far from 0 so subtraction
/// bugs show.
pub const T0: u64 = 1_767_225_600_000;

pub fn ring() -> KeyRing {
    KeyRing::new(1, Key::try_from(&[0x42u8; 32][..]).expect("32 bytes"))
}

/// Defaults, a manual clock, and no sweeper thread (tests sweep by hand).
pub fn config(clock: &ManualClock) -> Config {
    Config::new(ring()).clock(clock.clone()).sweeper(false)
}

/// An engine under test and what it needs to stay alive.
pub struct Env {
    pub engine: Engine,
    pub clock: ManualClock,
    pub dir: Option<tempfile::TempDir>,
}

impl Env {
    pub fn sled() -> Self {
        Self::sled_with(|c| c)
    }

    pub fn sled_with(f: impl FnOnce(Config) -> Config) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new(T0);
        let engine = Engine::open(dir.path(), f(config(&clock))).expect("open");
        Self {
            engine,
            clock,
            dir: Some(dir),
        }
    }

    pub fn memory() -> Self {
        Self::memory_with(|c| c)
    }

    pub fn memory_with(f: impl FnOnce(Config) -> Config) -> Self {
        let clock = ManualClock::new(T0);
        let engine =
            Engine::with_backend(sessiondb::MemoryBackend::new(), f(config(&clock))).expect("open");
        Self {
            engine,
            clock,
            dir: None,
        }
    }

    pub fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    /// A stored session holding `("k", v)`.
    pub fn stored(&self, v: u32) -> Session {
        let mut s = self.engine.create().expect("create");
        s.insert("k", &v).expect("insert");
        self.engine.save(&mut s).expect("save");
        s
    }

    /// The `Cookie` header a browser would send for `s`.
    pub fn cookie(&self, s: &Session) -> String {
        let set = self.engine.set_cookie(s);
        set.split(';').next().expect("name=value").to_owned()
    }

    pub fn assert_sound(&self) {
        let violations = self.engine.admin().check().expect("check");
        assert!(violations.is_empty(), "{violations:#?}");
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("a sled env").path()
    }
}

/// Runs one scenario against every backend: sled, memory and, with the
/// `redis` feature, Redis (which passes without running, after a notice,
/// where no Redis can be had and CI is not set: see [`redis_available`]).
///
/// `$body` is a fn taking an [`Env`]; `config = $config` (a fn from
/// `Config` to `Config`) changes the test settings of every backend alike.
///
/// ```text
/// on_every_backend!(expired_sessions_vanish, |env: common::Env| { ... });
/// on_every_backend!(in_strict_mode, config = |c| c.durability(Strict), scenario);
/// ```
#[macro_export]
macro_rules! on_every_backend {
    ($name:ident, $body:expr) => {
        $crate::on_every_backend!($name, config = |c| c, $body);
    };
    ($name:ident, config = $config:expr, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn sled() {
                ($body)($crate::common::Env::sled_with($config));
            }
            #[test]
            fn memory() {
                ($body)($crate::common::Env::memory_with($config));
            }
            #[cfg(feature = "redis")]
            #[test]
            fn redis() {
                if let Some(env) = $crate::common::Env::redis_or_skip($config) {
                    ($body)(env);
                }
            }
        }
    };
}

/// Counters of a [`Probe`], and its fault switch.
#[derive(Debug, Default)]
pub struct Counters {
    pub gets: std::sync::atomic::AtomicUsize,
    pub writes: std::sync::atomic::AtomicUsize,
    pub flushes: std::sync::atomic::AtomicUsize,
    /// The most ids one `user_sessions` page has returned.
    pub largest_user_page: std::sync::atomic::AtomicUsize,
    pub fail_flush: std::sync::atomic::AtomicBool,
    /// Every `get` fails, as a broken disk would.
    pub fail_get: std::sync::atomic::AtomicBool,
    /// When set, the next `get` announces itself and then waits (up to
    /// 10 s, then fails) to be released: a stand-in for a slow disk.
    pub gate: std::sync::Mutex<Option<Gate>>,
    /// Run once, before the next `put`: between an import's revocation
    /// check and its write.
    pub before_put: Hook,
    /// Run once, after the next `rename`: between a login's id change and
    /// whatever follows it.
    pub after_rename: Hook,
    /// Run once, after the next page of a user's index: inside a walk.
    pub after_user_page: Hook,
}

/// A hook of a [`Probe`], armed with [`arm`] and run once.
pub type Hook = std::sync::Mutex<Option<HookFn>>;

/// What a [`Hook`] runs.
pub struct HookFn(Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for HookFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HookFn")
    }
}

/// Arms `hook` to run `f` the next time its point is reached.
pub fn arm(hook: &Hook, f: impl FnOnce() + Send + 'static) {
    *hook.lock().expect("hook") = Some(HookFn(Box::new(f)));
}

fn fire(hook: &Hook) {
    let f = hook.lock().expect("hook").take();
    if let Some(HookFn(f)) = f {
        f();
    }
}

/// See [`Counters::gate`].
#[derive(Debug)]
pub struct Gate {
    pub started: std::sync::mpsc::Sender<()>,
    pub release: std::sync::mpsc::Receiver<()>,
}

/// A memory backend that counts calls, can be told to fail, and runs
/// hooks at the racy points (see [`Counters`]).
#[derive(Debug, Default)]
pub struct Probe {
    inner: sessiondb::MemoryBackend,
    c: std::sync::Arc<Counters>,
}

impl Probe {
    /// A probe and its counters.
    pub fn new() -> (Self, std::sync::Arc<Counters>) {
        let probe = Self::default();
        let counters = probe.c.clone();
        (probe, counters)
    }
}

use std::sync::atomic::Ordering::SeqCst;

use sessiondb::{Backend, Maintenance, Outcome, SessionId, Stored};

impl Backend for Probe {
    fn get(&self, id: &SessionId, now: u64) -> sessiondb::Result<Option<Stored>> {
        self.c.gets.fetch_add(1, SeqCst);
        if self.c.fail_get.load(SeqCst) {
            return Err(sessiondb::Error::Storage(
                "injected read failure at /secret/path".into(),
            ));
        }
        let gate = self.c.gate.lock().expect("gate").take();
        if let Some(g) = gate {
            let _ = g.started.send(());
            if g.release
                .recv_timeout(std::time::Duration::from_secs(10))
                .is_err()
            {
                return Err(sessiondb::Error::Storage("gate never released".into()));
            }
        }
        self.inner.get(id, now)
    }
    fn put(
        &self,
        id: &SessionId,
        e: Option<u64>,
        s: &Stored,
        now: u64,
    ) -> sessiondb::Result<Outcome> {
        self.c.writes.fetch_add(1, SeqCst);
        fire(&self.c.before_put);
        self.inner.put(id, e, s, now)
    }
    fn rename(
        &self,
        old: &SessionId,
        e: u64,
        new: &SessionId,
        s: &Stored,
        now: u64,
    ) -> sessiondb::Result<Outcome> {
        self.c.writes.fetch_add(1, SeqCst);
        let out = self.inner.rename(old, e, new, s, now);
        fire(&self.c.after_rename);
        out
    }
    fn delete(&self, id: &SessionId) -> sessiondb::Result<bool> {
        self.c.writes.fetch_add(1, SeqCst);
        self.inner.delete(id)
    }
    fn expired(&self, now: u64, limit: usize) -> sessiondb::Result<Vec<SessionId>> {
        self.inner.expired(now, limit)
    }
    fn delete_expired(&self, ids: &[SessionId], now: u64) -> sessiondb::Result<u64> {
        self.c.writes.fetch_add(1, SeqCst);
        self.inner.delete_expired(ids, now)
    }
    fn revoke(&self, key: &[u8], at: u64, until: u64) -> sessiondb::Result<()> {
        self.c.writes.fetch_add(1, SeqCst);
        self.inner.revoke(key, at, until)
    }
    fn revoked_at(&self, key: &[u8], now: u64) -> sessiondb::Result<Option<u64>> {
        self.inner.revoked_at(key, now)
    }
    fn forget_revocations(&self, now: u64, limit: usize) -> sessiondb::Result<u64> {
        self.inner.forget_revocations(now, limit)
    }
    fn user_sessions(
        &self,
        user: &str,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> sessiondb::Result<sessiondb::UserPage> {
        let page = self.inner.user_sessions(user, cursor, limit)?;
        self.c.largest_user_page.fetch_max(page.ids.len(), SeqCst);
        fire(&self.c.after_user_page);
        Ok(page)
    }
    fn flush(&self) -> sessiondb::Result<()> {
        self.c.flushes.fetch_add(1, SeqCst);
        if self.c.fail_flush.load(SeqCst) {
            return Err(sessiondb::Error::Storage("injected flush failure".into()));
        }
        Ok(())
    }
    fn maintenance(&self) -> Option<&dyn Maintenance> {
        self.inner.maintenance()
    }
}

impl Env {
    /// An engine on a [`Probe`], which the caller keeps to look inside.
    pub fn probed(f: impl FnOnce(Config) -> Config) -> (Self, std::sync::Arc<Counters>) {
        let probe = Probe::default();
        let counters = probe.c.clone();
        let clock = ManualClock::new(T0);
        let engine = Engine::with_backend(probe, f(config(&clock))).expect("open");
        (
            Self {
                engine,
                clock,
                dir: None,
            },
            counters,
        )
    }
}

/// A `redis-server` on 127.0.0.1 that lives as long as this handle, or
/// until the test process ends: it runs under `sh`, which kills it when
/// its stdin (ours) closes, so no server outlives a crashed test.
#[cfg(feature = "redis")]
pub struct RedisServer {
    child: std::process::Child,
    pub port: u16,
}

#[cfg(feature = "redis")]
impl RedisServer {
    /// Starts one on `port` (0: a free one). Needs `redis-server` (see
    /// [`redis_available`]).
    ///
    /// A free port is found by binding and releasing it, so another server
    /// may take it first (two tests of one binary starting theirs at once
    /// did, in CI: the second redis-server died on the busy port, the test
    /// took the first one's answers for its own, and stopping "its" server
    /// stopped the other test's). So each server is started under a name of
    /// its own (`--dbfilename`; `--save ''` never writes it) and counts as up
    /// only once the server on the port answers with that name; a port taken
    /// by someone else is given up and, for `port` 0, another tried.
    pub fn start(port: u16) -> Self {
        assert!(
            redis_server_present(),
            "redis-server is not installed{}",
            if under_ci() {
                " and apt-get could not install it"
            } else {
                ""
            }
        );
        for _ in 0..20 {
            let try_port = if port == 0 {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("free port")
                    .port()
            } else {
                port
            };
            if let Some(server) = Self::try_start(try_port) {
                return server;
            }
        }
        panic!("redis-server did not start on {port} (0: any free port) in 20 tries");
    }

    /// One try on `port`: `None` where another server answers there.
    pub fn try_start(port: u16) -> Option<Self> {
        use std::process::{Command, Stdio};
        let name = format!(
            "sessiondb-test-{}.rdb",
            sessiondb::SessionId::generate().expect("rng").hint()
        );
        let script = format!(
            "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no \
             --dbfilename {name} >/dev/null 2>&1 & p=$!; cat >/dev/null; kill $p 2>/dev/null; wait $p"
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .spawn()
            .expect("start redis-server");
        let server = Self { child, port };
        let until = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let answer = redis::Client::open(server.url())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| {
                    redis::cmd("CONFIG")
                        .arg("GET")
                        .arg("dbfilename")
                        .query::<Vec<String>>(&mut c)
                });
            match answer {
                Ok(pair) if pair.get(1) == Some(&name) => return Some(server),
                // Someone else's server holds the port: ours cannot bind it.
                Ok(_) => return None,
                Err(_) if std::time::Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("redis-server did not start on {port}: {e}"),
            }
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server and waits until it is gone.
    pub fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[cfg(feature = "redis")]
impl Drop for RedisServer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// `CI` is set, and not to "", "0" or "false".
#[cfg(feature = "redis")]
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// `redis-server` is on the PATH. Under CI a missing one is installed with
/// apt-get first (once per test binary).
#[cfg(feature = "redis")]
fn redis_server_present() -> bool {
    use std::process::{Command, Stdio};
    static PRESENT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let installed = || {
        Command::new("sh")
            .args(["-c", "command -v redis-server"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    *PRESENT.get_or_init(|| {
        if installed() {
            return true;
        }
        if !under_ci() {
            return false;
        }
        let _ = Command::new("sh")
            .args([
                "-c",
                "apt-get install -y -qq redis-server >/dev/null 2>&1 || \
                 (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null 2>&1",
            ])
            .status();
        installed()
    })
}

/// Whether the Redis tests can run here: `SESSIONDB_TEST_REDIS` names a
/// server, or `redis-server` is installed. Under CI they must: a missing
/// server is installed, and failing that this panics. Elsewhere a missing
/// server prints a notice (once per test binary, past the harness's output
/// capture) and the Redis variants return without running.
#[cfg(feature = "redis")]
pub fn redis_available() -> bool {
    if std::env::var_os("SESSIONDB_TEST_REDIS").is_some() || redis_server_present() {
        return true;
    }
    assert!(
        !under_ci(),
        "CI is set, so the Redis tests must run, but redis-server is missing and \
         apt-get could not install it"
    );
    static NOTICE: std::sync::Once = std::sync::Once::new();
    NOTICE.call_once(|| {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "NOTICE: Redis variants skipped: redis-server is not installed and CI is \
             not set (install redis-server, or set SESSIONDB_TEST_REDIS=redis://..., \
             or CI=true to require them)"
        );
    });
    false
}

/// The Redis this test binary shares (one server; each engine under test
/// takes its own random key prefix). `SESSIONDB_TEST_REDIS` names another.
#[cfg(feature = "redis")]
pub fn redis_url() -> String {
    static SERVER: std::sync::OnceLock<(String, std::sync::Mutex<Option<RedisServer>>)> =
        std::sync::OnceLock::new();
    SERVER
        .get_or_init(|| match std::env::var("SESSIONDB_TEST_REDIS") {
            Ok(url) => (url, std::sync::Mutex::new(None)),
            Err(_) => {
                let server = RedisServer::start(0);
                (server.url(), std::sync::Mutex::new(Some(server)))
            }
        })
        .0
        .clone()
}

/// A fresh key prefix, so engines sharing the server never meet.
#[cfg(feature = "redis")]
pub fn redis_prefix() -> String {
    format!("t{}", sessiondb::SessionId::generate().expect("rng").hint())
}

#[cfg(feature = "redis")]
impl Env {
    /// [`Env::redis_with`] where [`redis_available`], else `None`.
    pub fn redis_or_skip(f: impl FnOnce(Config) -> Config) -> Option<Self> {
        redis_available().then(|| Self::redis_with(f))
    }

    pub fn redis_with(f: impl FnOnce(Config) -> Config) -> Self {
        let clock = ManualClock::new(T0);
        let options = sessiondb::RedisOptions::new(redis_url()).prefix(redis_prefix());
        let engine = Engine::with_backend(
            sessiondb::RedisBackend::open(options).expect("redis"),
            f(config(&clock)),
        )
        .expect("open on redis");
        Self {
            engine,
            clock,
            dir: None,
        }
    }
}

/// The demo binary, built by `cargo test` next to this test's own binary.
/// Starts the demo on `data` with `args` (and `SESSIONDB_KEY` set to
/// `key`, or unset), on a free port of 127.0.0.1; returns once it accepts
/// connections.
pub fn start_demo(data: &Path, args: &[&str], key: Option<&str>) -> (std::process::Child, u16) {
    start_example("demo", data, args, key.map(|k| ("SESSIONDB_KEY", k)))
}

/// Starts example `name` (built by `cargo build --examples`) with `args`,
/// `--listen` on a free port of 127.0.0.1 and `--data DATA`, with `env`
/// set (and `SESSIONDB_KEY` unset otherwise); returns once it accepts
/// connections.
pub fn start_example(
    name: &str,
    data: &Path,
    args: &[&str],
    env: Option<(&str, &str)>,
) -> (std::process::Child, u16) {
    use std::net::{TcpListener, TcpStream};
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut cmd = std::process::Command::new(example_binary(name));
    cmd.args(args)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .env_remove("SESSIONDB_KEY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start the example");
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("example {name} exited at start: {status}");
        }
        assert!(std::time::Instant::now() < until, "{name} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port)
}

/// One HTTP/1.1 exchange with a server on 127.0.0.1.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// The first `Set-Cookie` pair (`name=value`), if any.
    pub cookie: Option<String>,
    /// The `Location` header, if any.
    pub location: Option<String>,
    pub body: String,
}

/// Sends `method path` with the `Cookie` header `cookie` and a body of
/// `content_type`, and reads the whole reply.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<(&str, &str)>,
) -> Reply {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        head.push_str(&format!("Cookie: {c}\r\n"));
    }
    let (content_type, body) = body.unwrap_or(("", ""));
    if !content_type.is_empty() {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    // One write: a request in pieces lets a server that answers early
    // (and closes) reset the connection before the reply is read.
    s.write_all(format!("{head}\r\n{body}").as_bytes())
        .expect("send");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("reply");
    let status = reply
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status: {reply}"));
    let (headers, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let header = |want: &str| {
        headers.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case(want)
                .then(|| value.trim().to_owned())
        })
    };
    Reply {
        status,
        cookie: header("set-cookie").map(|v| v.split(';').next().unwrap_or("").to_owned()),
        location: header("location"),
        body: body.to_owned(),
    }
}

pub fn demo_binary() -> std::path::PathBuf {
    example_binary("demo")
}

/// Example `name`, built next to this test's own binary.
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} missing: run `cargo build --all-features --examples` (or the test with --all-features)",
        path.display()
    );
    path
}
