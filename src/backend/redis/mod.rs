//! The Redis backend (feature `redis`); see [`RedisBackend`].
//!
//! - [`options`]: how to reach the server, and keeping its password out of
//!   every message;
//! - [`scripts`]: the Lua that makes each change one atomic step;
//! - [`repair`]: `fix` as optimistic MULTI/EXEC steps over the keys.

mod options;
mod repair;
mod scripts;

pub use options::RedisOptions;
use options::{GLOB, redact, scrub};
use repair::{Fix, FixError};
use scripts::{
    DELETE, DELETE_IF_EXPIRED, GET_TOUCHING, LIB, PUT, RENAME, REVOKE, REVOKING_ID, REVOKING_OLD,
};

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redis::{Commands as _, Connection, Script};

use super::ops;
use super::{Backend, BackendStats, Maintenance, Outcome, Stored, UserPage, Violation, keys};
use crate::error::{Error, Result};
use crate::record::FormatError;
use crate::token::SessionId;

/// How long a connect, read or write may take before the call fails.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle connections kept for reuse.
const MAX_IDLE: usize = 32;
/// How often an optimistic repair step retries when a writer got between.
const FIX_RETRIES: usize = 16;

/// Sessions in Redis, for services that run several instances against one
/// Redis. Open it with [`RedisBackend::open`], then
/// [`Engine::with_backend`](crate::Engine::with_backend).
///
/// # Keys (all under a configurable prefix `P`)
/// - `P:s:<id>`: a hash per session: `d` the stored record, `v` its
///   version, `u` its user (or empty), `e` its expiry (ms); for a session
///   whose expiry slides, `l`, `i`, `a` its last-seen time, idle timeout
///   and absolute deadline (ms), so that a load can touch it on the server
///   (see below). Redis expires the key itself (a TTL of the session's
///   remaining life).
/// - `P:x`: a sorted set of session ids scored by expiry: the `expiry`
///   index of the other backends, which the sweeper uses.
/// - `P:u:<user>`: a sorted set of that user's session ids scored by expiry,
///   with a TTL of its newest member's remaining life.
/// - `P:q:<id>`: records moved aside by repair (quarantine).
/// - `P:r:<key>`: a revocation (`<key>` the engine's key in base64url),
///   `"<at>:<until>"` in ms, which Redis expires itself at `until`.
///
/// `<id>` is the id in base64url. Ids are random, so keys spread evenly.
///
/// # Atomicity and the version check
/// Every change runs as one Lua script on the server: the script reads the
/// stored version and the old user, compares the version, and rewrites the
/// hash and both indexes, or does nothing. No client ever reads, decides,
/// then writes. (Scripts build key names from the prefix, so this backend
/// is for a single Redis or a primary with replicas, not Redis Cluster.)
///
/// # One round trip per operation
/// Every call is a round trip, so each operation a request makes is one
/// call: a load that touches runs `GET_TOUCHING`, which reads the session
/// and, if its last-seen time lags by more than the touch threshold, moves
/// it (`l`), the expiry (`e`, the record's header, both indexes, the TTL)
/// and the version on the server, without the record's body: the engine
/// takes the last-seen time from `l` over the body's
/// ([`Backend::get_touching`]). A logout revokes and deletes in one script
/// ([`Backend::delete_revoking`]), an id change revokes and renames in one
/// ([`Backend::rename_revoking`]). A login of a user, and a log out
/// everywhere, read the user's revocation besides (see `engine/login.rs`).
///
/// # Expiry
/// Redis deletes a session's hash when its TTL runs out; the engine also
/// re-checks the expiry on every read, so a session is never served past
/// its time even if Redis is late, or the engine's clock runs ahead of the
/// server's. The indexes are kept from growing: the sweeper's passes take
/// expired ids from `P:x` and remove them (and the user entry and the hash,
/// if Redis has not dropped it yet); every write of a user's session drops
/// members of that user's set whose hash Redis has already expired; and a
/// user's set itself expires with its newest member. So the sweeper has
/// nothing to delete in normal operation, only index upkeep.
///
/// # Connections
/// A small pool of synchronous connections (the trait is synchronous, and
/// the core crate has no async runtime): a caller takes an idle connection
/// or opens one, and gives it back after a successful call. A call that
/// fails on the connection drops it, so when Redis comes back the next call
/// simply connects again. Connects and reads time out, so a dead server is
/// an error per call, never a stuck thread.
///
/// # Durability
/// What Redis keeps across its own restarts is Redis's configuration
/// (`appendonly yes` with `appendfsync always` or `everysec`); the engine's
/// strict mode cannot make a write reach Redis's disk. `flush` is a no-op.
pub struct RedisBackend {
    client: redis::Client,
    idle: Mutex<Vec<Connection>>,
    /// The prefix with its `:`.
    prefix: String,
    put: Script,
    rename: Script,
    delete: Script,
    delete_if_expired: Script,
    rename_revoking: Script,
    delete_revoking: Script,
    revoke: Script,
    get_touching: Script,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn redis_err(e: redis::RedisError) -> Error {
    Error::Storage(Box::new(e))
}

fn b64(id: &SessionId) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn unb64(s: &[u8]) -> Option<SessionId> {
    let mut out = [0u8; SessionId::LEN];
    match URL_SAFE_NO_PAD.decode_slice(s, &mut out) {
        Ok(SessionId::LEN) if s.len() == 43 => Some(SessionId::from_bytes(out)),
        _ => None,
    }
}

/// The `l`, `i`, `a` arguments of a write: the session's sliding times,
/// or empty strings.
fn sliding_args(session: &Stored) -> [String; 3] {
    match session.sliding {
        Some(s) => [
            s.last_seen_ms.to_string(),
            s.idle_timeout_ms.to_string(),
            s.absolute_deadline_ms.to_string(),
        ],
        None => Default::default(),
    }
}

/// A session's sliding times as read back: all three, or none.
fn sliding_of(l: Option<u64>, i: Option<u64>, a: Option<u64>) -> Option<super::Sliding> {
    Some(super::Sliding::new(l?, i?, a?))
}

fn script(body: &str) -> Script {
    Script::new(&format!("{LIB}\n{body}"))
}

impl RedisBackend {
    /// Connects (once, to fail early with a clear error) and loads nothing
    /// else: scripts are sent on first use.
    pub fn open(options: RedisOptions) -> Result<Self> {
        if options.prefix.is_empty()
            || options
                .prefix
                .contains(|c: char| c.is_whitespace() || GLOB.contains(&c))
        {
            return Err(Error::InvalidConfig {
                field: "prefix",
                reason: "must be non-empty, without whitespace or any of * ? [ ] \\".into(),
            });
        }
        let client =
            redis::Client::open(options.url.as_str()).map_err(|e| Error::InvalidConfig {
                field: "url",
                reason: format!(
                    "{}: {}",
                    redact(&options.url),
                    scrub(&e.to_string(), &options.url)
                ),
            })?;
        let backend = Self {
            client,
            idle: Mutex::new(Vec::new()),
            prefix: format!("{}:", options.prefix),
            put: script(PUT),
            rename: script(RENAME),
            delete: script(DELETE),
            delete_if_expired: script(DELETE_IF_EXPIRED),
            rename_revoking: script(&format!("{REVOKING_OLD}\n{RENAME}")),
            delete_revoking: script(&format!("{REVOKING_ID}\n{DELETE}")),
            revoke: Script::new(REVOKE),
            get_touching: script(GET_TOUCHING),
        };
        backend.with(|c| redis::cmd("PING").query::<String>(c))?;
        Ok(backend)
    }

    fn connect(&self) -> Result<Connection> {
        let c = self
            .client
            .get_connection_with_timeout(IO_TIMEOUT)
            .map_err(redis_err)?;
        c.set_read_timeout(Some(IO_TIMEOUT)).map_err(redis_err)?;
        c.set_write_timeout(Some(IO_TIMEOUT)).map_err(redis_err)?;
        Ok(c)
    }

    /// Runs `f` on a pooled connection; a connection that failed is dropped.
    fn with<R>(&self, f: impl FnOnce(&mut Connection) -> redis::RedisResult<R>) -> Result<R> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect()?,
        };
        match f(&mut conn) {
            Ok(r) => {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                if idle.len() < MAX_IDLE {
                    idle.push(conn);
                }
                Ok(r)
            }
            // A server-side error (a script's) leaves the connection fine,
            // but telling those apart is not worth a wrong guess.
            Err(e) => Err(redis_err(e)),
        }
    }

    fn skey(&self, id: &SessionId) -> String {
        format!("{}s:{}", self.prefix, b64(id))
    }

    /// The key of a revocation of the engine's `key`.
    fn rkey(&self, key: &[u8]) -> String {
        format!("{}r:{}", self.prefix, URL_SAFE_NO_PAD.encode(key))
    }

    fn xkey(&self) -> String {
        format!("{}x", self.prefix)
    }

    fn ukey(&self, user: &str) -> String {
        format!("{}u:{user}", self.prefix)
    }

    fn outcome(s: &str) -> Result<Outcome> {
        match s {
            "written" => Ok(Outcome::Written),
            "conflict" => Ok(Outcome::Conflict),
            "missing" => Ok(Outcome::Missing),
            other => Err(Error::Storage(
                format!("unexpected script answer {other:?}").into(),
            )),
        }
    }

    /// Runs a script that writes `value` as session `id`, with ARGV: prefix,
    /// now, the `lead` arguments, then the record and its version, user and
    /// expiry (so the script never parses the record).
    fn write(
        &self,
        script: &Script,
        now_ms: u64,
        lead: &[String],
        session: &Stored,
    ) -> Result<Outcome> {
        let value = session.frame()?;
        let user = session.user.as_deref().unwrap_or("");
        let answer: String = self.with(|c| {
            let mut call = script.arg(&self.prefix);
            call.arg(now_ms);
            for a in lead {
                call.arg(a);
            }
            call.arg(&value)
                .arg(session.version)
                .arg(user)
                .arg(session.expires_at);
            for a in sliding_args(session) {
                call.arg(a);
            }
            call.invoke(c)
        })?;
        Self::outcome(&answer)
    }

    /// Every key matching `pattern`, by SCAN.
    fn scan_keys(&self, pattern: &str) -> Result<Vec<Vec<u8>>> {
        self.with(|c| {
            let mut out = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(c)?;
                out.extend(keys);
                if next == 0 {
                    return Ok(out);
                }
                cursor = next;
            }
        })
    }

    /// The server's clock, in ms.
    fn server_now(&self) -> Result<u64> {
        let (s, us): (u64, u64) = self.with(|c| redis::cmd("TIME").query(c))?;
        Ok(s * 1000 + us / 1000)
    }
}

impl Backend for RedisBackend {
    fn get(&self, id: &SessionId, now_ms: u64) -> Result<Option<Stored>> {
        type Fields = (
            Option<Vec<u8>>,
            Option<u64>,
            Option<u64>,
            Option<u64>,
            Option<u64>,
        );
        let (d, e, l, i, a): Fields = self.with(|c| {
            redis::cmd("HMGET")
                .arg(self.skey(id))
                .arg("d")
                .arg("e")
                .arg("l")
                .arg("i")
                .arg("a")
                .query(c)
        })?;
        match (d, e) {
            (Some(d), Some(e)) if e > now_ms => {
                Ok(Stored::unframe_live(id, &d, now_ms)?.map(|s| Stored {
                    sliding: sliding_of(l, i, a),
                    ..s
                }))
            }
            _ => Ok(None),
        }
    }

    fn get_touching(
        &self,
        id: &SessionId,
        now_ms: u64,
        touch_after_ms: u64,
    ) -> Result<Option<(Stored, bool)>> {
        type Answer = Option<(Vec<u8>, String, String, String, i64)>;
        let answer: Answer = self.with(|c| {
            self.get_touching
                .arg(&self.prefix)
                .arg(now_ms)
                .arg(b64(id))
                .arg(touch_after_ms)
                .invoke(c)
        })?;
        let Some((d, l, i, a)) = answer.as_ref().map(|(d, l, i, a, _)| (d, l, i, a)) else {
            return Ok(None);
        };
        let touched = answer.as_ref().is_some_and(|x| x.4 == 1);
        let num = |s: &String| s.parse::<u64>().ok();
        Ok(Stored::unframe_live(id, d, now_ms)?.map(|s| {
            let stored = Stored {
                sliding: sliding_of(num(l), num(i), num(a)),
                ..s
            };
            (stored, touched)
        }))
    }

    fn put(
        &self,
        id: &SessionId,
        expected: Option<u64>,
        session: &Stored,
        now_ms: u64,
    ) -> Result<Outcome> {
        let expected = expected.map(|v| v.to_string()).unwrap_or_default();
        self.write(&self.put, now_ms, &[b64(id), expected], session)
    }

    fn rename(
        &self,
        old: &SessionId,
        expected: u64,
        new: &SessionId,
        session: &Stored,
        now_ms: u64,
    ) -> Result<Outcome> {
        let lead = [b64(old), expected.to_string(), b64(new)];
        self.write(&self.rename, now_ms, &lead, session)
    }

    fn delete(&self, id: &SessionId) -> Result<bool> {
        let n: i64 = self.with(|c| self.delete.arg(&self.prefix).arg(b64(id)).invoke(c))?;
        Ok(n == 1)
    }

    fn expired(&self, now_ms: u64, limit: usize) -> Result<Vec<SessionId>> {
        let members: Vec<Vec<u8>> = self.with(|c| {
            redis::cmd("ZRANGE")
                .arg(self.xkey())
                .arg("-inf")
                .arg(now_ms)
                .arg("BYSCORE")
                .arg("LIMIT")
                .arg(0)
                .arg(limit)
                .query(c)
        })?;
        Ok(members.iter().filter_map(|m| unb64(m)).collect())
    }

    fn delete_expired(&self, ids: &[SessionId], now_ms: u64) -> Result<u64> {
        let mut n = 0;
        for id in ids {
            let deleted: i64 = self.with(|c| {
                self.delete_if_expired
                    .arg(&self.prefix)
                    .arg(now_ms)
                    .arg(b64(id))
                    .invoke(c)
            })?;
            n += u64::from(deleted == 1);
        }
        Ok(n)
    }

    fn user_sessions(&self, user: &str, cursor: Option<&[u8]>, limit: usize) -> Result<UserPage> {
        // ZSCAN: Redis's own cursor, so a page costs O(limit) on the server
        // and members present for the whole walk come at least once.
        let from = match cursor {
            Some(c) => std::str::from_utf8(c)
                .ok()
                .and_then(|c| c.parse::<u64>().ok())
                .unwrap_or(0),
            None => 0,
        };
        let (next, flat): (u64, Vec<Vec<u8>>) = self.with(|c| {
            redis::cmd("ZSCAN")
                .arg(self.ukey(user))
                .arg(from)
                .arg("COUNT")
                .arg(limit.max(1))
                .query(c)
        })?;
        // Members and scores alternate.
        let ids = flat.iter().step_by(2).filter_map(|m| unb64(m)).collect();
        let next = (next != 0).then(|| next.to_string().into_bytes());
        Ok(UserPage::new(ids, next))
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn delete_revoking(&self, id: &SessionId, r: super::Revocation<'_>) -> Result<bool> {
        let n: i64 = self.with(|c| {
            self.delete_revoking
                .arg(&self.prefix)
                .arg(b64(id))
                .arg(self.rkey(r.key))
                .arg(r.at_ms)
                .arg(r.until_ms)
                .invoke(c)
        })?;
        Ok(n == 1)
    }

    fn rename_revoking(
        &self,
        old: &SessionId,
        expected: u64,
        new: &SessionId,
        session: &Stored,
        now_ms: u64,
        revocation: Option<super::Revocation<'_>>,
    ) -> Result<Outcome> {
        let value = session.frame()?;
        let user = session.user.as_deref().unwrap_or("");
        let sliding = sliding_args(session);
        let (rkey, at, until) = match revocation {
            Some(r) => (self.rkey(r.key), r.at_ms, r.until_ms),
            None => (String::new(), 0, 0),
        };
        let answer: String = self.with(|c| {
            self.rename_revoking
                .arg(&self.prefix)
                .arg(now_ms)
                .arg(b64(old))
                .arg(expected)
                .arg(b64(new))
                .arg(&value)
                .arg(session.version)
                .arg(user)
                .arg(session.expires_at)
                .arg(&sliding[0])
                .arg(&sliding[1])
                .arg(&sliding[2])
                .arg(&rkey)
                .arg(at)
                .arg(until)
                .invoke(c)
        })?;
        Self::outcome(&answer)
    }

    fn revoke(&self, key: &[u8], at_ms: u64, until_ms: u64) -> Result<()> {
        let rkey = self.rkey(key);
        let _: i64 = self.with(|c| self.revoke.key(&rkey).arg(at_ms).arg(until_ms).invoke(c))?;
        Ok(())
    }

    fn revoked_at(&self, key: &[u8], now_ms: u64) -> Result<Option<u64>> {
        let rkey = self.rkey(key);
        let value: Option<String> = self.with(|c| c.get(&rkey))?;
        Ok(value.and_then(|v| {
            let (at, until) = v.split_once(':')?;
            let (at, until) = (at.parse::<u64>().ok()?, until.parse::<u64>().ok()?);
            (until > now_ms).then_some(at)
        }))
    }

    fn forget_revocations(&self, _now_ms: u64, _limit: usize) -> Result<u64> {
        // Each revocation carries its own expiry in Redis.
        Ok(0)
    }

    fn maintenance(&self) -> Option<&dyn Maintenance> {
        Some(self)
    }
}

impl Maintenance for RedisBackend {
    fn scan(
        &self,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<(SessionId, std::result::Result<Stored, FormatError>)>> {
        // Redis has no ordered key walk: collect, sort, page. Operators'
        // tools only; O(n) per page.
        let prefix = format!("{}s:", self.prefix);
        let mut ids: Vec<SessionId> = self
            .scan_keys(&format!("{prefix}*"))?
            .iter()
            .filter_map(|k| unb64(&k[prefix.len()..]))
            .filter(|id| after.is_none_or(|a| id > a))
            .collect();
        ids.sort_unstable();
        let mut out = Vec::new();
        for id in ids.into_iter().take(limit) {
            type Fields = (Option<Vec<u8>>, Option<u64>, Option<u64>, Option<u64>);
            let (d, l, i, a): Fields = self.with(|c| {
                redis::cmd("HMGET")
                    .arg(self.skey(&id))
                    .arg("d")
                    .arg("l")
                    .arg("i")
                    .arg("a")
                    .query(c)
            })?;
            if let Some(d) = d {
                // A touch in the read moves `l`, not the body's last-seen.
                let parsed = Stored::parse(&d).map(|s| Stored {
                    sliding: sliding_of(l, i, a),
                    ..s
                });
                out.push((id, parsed));
            }
        }
        Ok(out)
    }

    fn stats(&self, now_ms: u64) -> Result<BackendStats> {
        let x = self.xkey();
        let (live, expired): (u64, u64) = self.with(|c| {
            let live: u64 = c.zcount(&x, format!("({now_ms}"), "+inf")?;
            let expired: u64 = c.zcount(&x, "-inf", now_ms)?;
            Ok((live, expired))
        })?;
        let users = self.scan_keys(&format!("{}u:*", self.prefix))?.len() as u64;
        Ok(BackendStats {
            live_sessions: live,
            expired_pending: expired,
            users,
            bytes_on_disk: 0,
        })
    }

    fn check(&self) -> Result<Vec<Violation>> {
        let now = self.server_now()?;
        let sprefix = format!("{}s:", self.prefix);
        let mut sessions = Vec::new();
        let mut present = std::collections::HashSet::new();
        for key in self.scan_keys(&format!("{sprefix}*"))? {
            let suffix = key[sprefix.len()..].to_vec();
            let d: Option<Vec<u8>> = self.with(|c| c.hget(&key, "d"))?;
            let Some(d) = d else { continue };
            match unb64(&suffix) {
                Some(id) => {
                    present.insert(id);
                    sessions.push((id.as_bytes().to_vec(), d));
                }
                None => sessions.push((suffix, d)),
            }
        }
        // An index member whose session Redis expired awaits the sweeper's
        // upkeep; that is not a broken invariant.
        let awaiting = |id: &SessionId, score: u64| score <= now && !present.contains(id);
        let mut expiry = Vec::new();
        let members: Vec<(Vec<u8>, f64)> =
            self.with(|c| c.zrange_withscores(self.xkey(), 0, -1))?;
        for (m, score) in members {
            let score = score as u64;
            match unb64(&m) {
                Some(id) if awaiting(&id, score) => {}
                Some(id) => expiry.push(keys::expiry(score, &id).to_vec()),
                None => expiry.push(m),
            }
        }
        let uprefix = format!("{}u:", self.prefix);
        let mut users = Vec::new();
        for key in self.scan_keys(&format!("{uprefix}*"))? {
            let user = String::from_utf8_lossy(&key[uprefix.len()..]).into_owned();
            let members: Vec<(Vec<u8>, f64)> = self.with(|c| c.zrange_withscores(&key, 0, -1))?;
            for (m, score) in members {
                match unb64(&m) {
                    Some(id) if awaiting(&id, score as u64) => {}
                    Some(id) => users.push(keys::user(&user, &id)),
                    None => {
                        let mut k = keys::user_prefix(&user);
                        k.extend_from_slice(&m);
                        users.push(k);
                    }
                }
            }
        }
        Ok(ops::check(sessions, expiry, users))
    }

    fn fix(&self, violation: &Violation) -> Result<bool> {
        for _ in 0..FIX_RETRIES {
            let done = self.with(|c| {
                let t = Fix {
                    backend: self,
                    conn: std::cell::RefCell::new(c),
                    writes: std::cell::RefCell::new(redis::pipe()),
                };
                let changed = ops::fix(&t, violation);
                let mut pipe = t.writes.into_inner();
                let c = t.conn.into_inner();
                let changed = match changed {
                    Ok(true) => true,
                    Ok(false) => {
                        redis::cmd("UNWATCH").query::<()>(c)?;
                        return Ok(Some(Ok(false)));
                    }
                    Err(FixError::Redis(e)) => return Err(e),
                    Err(FixError::Engine(e)) => {
                        redis::cmd("UNWATCH").query::<()>(c)?;
                        return Ok(Some(Err(e)));
                    }
                };
                // EXEC answers nil when a watched key changed meanwhile.
                let r: Option<()> = pipe.atomic().query(c)?;
                Ok(r.map(|()| Ok(changed)))
            })?;
            if let Some(result) = done {
                return result;
            }
        }
        Err(Error::Storage(
            "repair kept racing with writers; try again".into(),
        ))
    }

    fn quarantined(&self) -> Result<u64> {
        Ok(self.scan_keys(&format!("{}q:*", self.prefix))?.len() as u64)
    }
}
