//! Where sessions are kept: a small trait, and its sled and memory
//! implementations.
//!
//! [`Backend`] speaks in session ids, [`Stored`] sessions (the version,
//! expiry and user handed over explicitly, the body opaque), versions and
//! times; [`Maintenance`] is what operators' tools need besides. Neither
//! knows anything of sled, so a Redis backend implements them unchanged.

use std::fmt;

use crate::error::Result;
use crate::record::FormatError;
use crate::token::SessionId;

pub(crate) mod memory;
mod ops;
#[cfg(feature = "redis")]
pub(crate) mod redis;
pub(crate) mod sled;

/// What a conditional write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The write was applied.
    Written,
    /// The stored version was not the expected one (or, for a new session,
    /// the id was taken); nothing was written.
    Conflict,
    /// The session does not exist, or has expired; nothing was written.
    Missing,
}

/// One page of a user's index, from [`Backend::user_sessions`].
///
/// `Debug` shows counts only (a cursor may be a full session id).
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserPage {
    /// Ids of the user's stored sessions.
    pub ids: Vec<SessionId>,
    /// Where the next page starts; `None` after the last page.
    pub next: Option<Vec<u8>>,
}

impl fmt::Debug for UserPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserPage")
            .field("ids", &self.ids.len())
            .field("more", &self.next.is_some())
            .finish()
    }
}

impl UserPage {
    /// A page of `ids`, continued from `next`.
    pub fn new(ids: Vec<SessionId>, next: Option<Vec<u8>>) -> Self {
        Self { ids, next }
    }
}

/// Counts a backend can give cheaply enough for [`Admin::stats`](crate::Admin::stats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Stored sessions that have not expired.
    pub live_sessions: u64,
    /// Stored sessions that have expired and await the sweeper.
    pub expired_pending: u64,
    /// Distinct users with at least one stored session.
    pub users: u64,
    /// Bytes the store occupies on disk (0 for memory).
    pub bytes_on_disk: u64,
}

/// One broken invariant found by [`Maintenance::check`].
///
/// `Debug` shows id hints and lengths, never a full id, a key's bytes or a
/// user name; [`Display`](fmt::Display), for operators, names the user.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// A stored value that does not decode.
    Corrupt {
        /// The session's id.
        id: SessionId,
        /// What the decoder said.
        reason: String,
    },
    /// A session without an `expiry` entry at the time its record names
    /// (its expiry, or earlier where the entry lags).
    MissingExpiry {
        /// The session.
        id: SessionId,
        /// The time its record names for its entry, which has none.
        expires_at: u64,
    },
    /// An `expiry` entry whose session is absent or names another time.
    OrphanExpiry {
        /// The id in the entry.
        id: SessionId,
        /// The time in the entry.
        at: u64,
    },
    /// A session that names a user but has no `users` entry.
    MissingUser {
        /// The session.
        id: SessionId,
        /// Its user.
        user: String,
    },
    /// A `users` entry whose session is absent or names another user.
    OrphanUser {
        /// The id in the entry.
        id: SessionId,
        /// The user in the entry.
        user: String,
    },
    /// An index key that does not parse at all.
    BadIndexKey {
        /// The tree it was found in.
        tree: &'static str,
        /// The key's bytes.
        key: Vec<u8>,
    },
}

impl Violation {
    /// An index entry that agrees with no session (`OrphanExpiry`,
    /// `OrphanUser`): what a crash that cut a write short can leave on the
    /// sled store, whose writes reach disk as ordered steps (see the crate
    /// docs, "Invariants"). It makes nothing live or listed that is not
    /// (readers re-check the session), and the check at open removes it.
    /// Every other violation is damage.
    pub fn is_stale_entry(&self) -> bool {
        matches!(
            self,
            Violation::OrphanExpiry { .. } | Violation::OrphanUser { .. }
        )
    }
}

impl fmt::Debug for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::MissingUser { id, user } | Violation::OrphanUser { id, user } => {
                let kind = match self {
                    Violation::MissingUser { .. } => "MissingUser",
                    _ => "OrphanUser",
                };
                f.debug_struct(kind)
                    .field("id", id)
                    .field("user_len", &user.len())
                    .finish()
            }
            other => write!(f, "Violation({other})"),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Corrupt { id, reason } => {
                write!(f, "session {}: corrupt record: {reason}", id.hint())
            }
            Violation::MissingExpiry { id, expires_at } => write!(
                f,
                "session {}: no expiry entry at {expires_at}, where its record says it is",
                id.hint()
            ),
            Violation::OrphanExpiry { id, at } => write!(
                f,
                "stale expiry entry at {at} for session {}, which is absent or indexed at another time",
                id.hint()
            ),
            Violation::MissingUser { id, user } => {
                write!(f, "session {}: no users entry for user {user:?}", id.hint())
            }
            Violation::OrphanUser { id, user } => write!(
                f,
                "stale users entry {user:?} for session {}, which is absent or names another user",
                id.hint()
            ),
            Violation::BadIndexKey { tree, key } => {
                write!(f, "tree {tree}: malformed key of {} bytes", key.len())
            }
        }
    }
}

/// A revocation to record with a write ([`Backend::delete_revoking`],
/// [`Backend::rename_revoking`]): the arguments of [`Backend::revoke`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Revocation<'a> {
    /// What is revoked (the engine's bytes).
    pub key: &'a [u8],
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// Until when it is kept.
    pub until_ms: u64,
}

impl<'a> Revocation<'a> {
    /// A revocation of `key` at `at_ms`, kept until `until_ms`.
    pub fn new(key: &'a [u8], at_ms: u64, until_ms: u64) -> Self {
        Self {
            key,
            at_ms,
            until_ms,
        }
    }
}

/// A session as a backend keeps it: the fields the backend indexes, handed
/// over explicitly, and the engine's encoding of everything else.
///
/// A backend never parses `body`; the engine never parses how a backend
/// frames it. `Debug` shows the numbers and lengths, not the user or the
/// body.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stored {
    /// The record's version: 1 when first stored, +1 on every write.
    pub version: u64,
    /// When the session expires, ms since the Unix epoch.
    pub expires_at: u64,
    /// The user it belongs to, if any: never empty, at most 1024 bytes
    /// (the engine checks both).
    pub user: Option<String>,
    /// The engine's encoding of the session's times and values.
    pub body: Vec<u8>,
    /// The session's sliding-expiry times, for a backend that touches
    /// sessions itself ([`Backend::get_touching`]): the engine hands them
    /// over with every write of a session that slides; a backend that read
    /// them back gives them with the session, its `last_seen_ms` the
    /// latest (the body's may be older). `None`: not known.
    pub sliding: Option<Sliding>,
}

/// The times that decide a sliding session's expiry:
/// `min(last_seen_ms + idle_timeout_ms, absolute_deadline_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sliding {
    /// When the session was last seen, ms since the Unix epoch.
    pub last_seen_ms: u64,
    /// Its idle timeout, ms.
    pub idle_timeout_ms: u64,
    /// When it expires whatever its use, ms since the Unix epoch.
    pub absolute_deadline_ms: u64,
}

impl Sliding {
    /// The three times.
    pub fn new(last_seen_ms: u64, idle_timeout_ms: u64, absolute_deadline_ms: u64) -> Self {
        Self {
            last_seen_ms,
            idle_timeout_ms,
            absolute_deadline_ms,
        }
    }
}

impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stored")
            .field("version", &self.version)
            .field("expires_at", &self.expires_at)
            .field("has_user", &self.user.is_some())
            .field("body_len", &self.body.len())
            .field("sliding", &self.sliding)
            .finish()
    }
}

impl Stored {
    /// A session to store.
    pub fn new(version: u64, expires_at: u64, user: Option<String>, body: Vec<u8>) -> Self {
        Self {
            version,
            expires_at,
            user,
            body,
            sliding: None,
        }
    }

    /// The same, with its sliding-expiry times.
    pub fn with_sliding(mut self, sliding: Sliding) -> Self {
        self.sliding = Some(sliding);
        self
    }

    /// The bytes a tree-shaped backend stores (see `record`).
    pub(crate) fn frame(&self) -> Result<Vec<u8>> {
        crate::record::frame(
            self.version,
            self.expires_at,
            self.user.as_deref(),
            &self.body,
        )
        .map_err(|e| crate::error::Error::EncodeRecord(Box::new(e)))
    }

    /// Reads back what [`frame`](Self::frame) made, if it is live at
    /// `now_ms` (an expired one is not copied).
    pub(crate) fn unframe_live(id: &SessionId, bytes: &[u8], now_ms: u64) -> Result<Option<Self>> {
        let (meta, body) = crate::record::Meta::parse(bytes).map_err(|e| ops::corrupt(id, e))?;
        Ok((meta.expires_at > now_ms).then(|| Self {
            version: meta.version,
            expires_at: meta.expires_at,
            user: meta.user.map(str::to_owned),
            body: body.to_vec(),
            sliding: None,
        }))
    }

    pub(crate) fn parse(bytes: &[u8]) -> std::result::Result<Self, FormatError> {
        let (meta, body) = crate::record::Meta::parse(bytes)?;
        Ok(Self {
            version: meta.version,
            expires_at: meta.expires_at,
            user: meta.user.map(str::to_owned),
            body: body.to_vec(),
            sliding: None,
        })
    }
}

/// A session store: the storage verbs the engine's requests need.
///
/// # Contract
///
/// - A session that is absent or has expired (`expires_at <= now_ms`) is
///   `Ok(None)` to [`get`](Self::get), whether or not it has been swept.
/// - `Err` is for system failures only (I/O, a lost connection, a stored
///   value that does not parse), never for "not found".
/// - Every method that changes a session changes its index entries (expiry,
///   user) in the same atomic step: a concurrent reader never sees one
///   without the other, and a crash leaves at most stale entries, ones that
///   agree with no session ([`Violation::is_stale_entry`]), which
///   [`Maintenance::fix`] removes. An `expiry` entry may lag behind its
///   session's expiry (never lead it): expiry is re-checked on every read.
/// - Versions are checked by the store itself, atomically with the write,
///   never by a read followed by a write from the caller.
/// - The version, expiry and user of a write are handed over in
///   [`Stored`]; its body is the engine's and opaque here.
///
/// What operators' tools need (listing, statistics, the invariant check
/// and its repair) is a separate contract, [`Maintenance`].
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// A live session.
    fn get(&self, id: &SessionId, now_ms: u64) -> Result<Option<Stored>>;

    /// [`get`](Self::get), and in the same step, where the store can, the
    /// touch the engine would otherwise write after it: if the session's
    /// [`Sliding`] times are stored and its last-seen time lags `now_ms` by
    /// more than `touch_after_ms`, its last-seen time moves to `now_ms`, its
    /// expiry to `min(now_ms + idle, absolute)` (never earlier than it was)
    /// and its version up by one, with its index entries, as one atomic
    /// step. Returns the session as it stands after, and whether this
    /// touched it. The default touches nothing: the engine then writes the
    /// touch itself (a version-checked [`put`](Self::put)), one more round
    /// trip where every call is one (Redis).
    fn get_touching(
        &self,
        id: &SessionId,
        now_ms: u64,
        touch_after_ms: u64,
    ) -> Result<Option<(Stored, bool)>> {
        let _ = touch_after_ms;
        Ok(self.get(id, now_ms)?.map(|s| (s, false)))
    }

    /// Writes `session` if the stored version is `expected` (`None`: only if
    /// no live session has this id). A session that has expired counts as
    /// missing, so an expired session is never revived by a late write.
    fn put(
        &self,
        id: &SessionId,
        expected: Option<u64>,
        session: &Stored,
        now_ms: u64,
    ) -> Result<Outcome>;

    /// Writes a new session under an id the engine has just drawn from
    /// the operating system's CSPRNG (256 bits), which no stored session
    /// can hold. A backend may skip reading the id first; one that checks
    /// answers as [`put`](Self::put) with `expected` `None` does (the
    /// default).
    fn put_new(&self, id: &SessionId, session: &Stored, now_ms: u64) -> Result<Outcome> {
        self.put(id, None, session, now_ms)
    }

    /// Moves a session to a new id in one atomic step: writes `session`
    /// under `new` and deletes `old`, if `old` is live at version `expected`
    /// and `new` is free.
    fn rename(
        &self,
        old: &SessionId,
        expected: u64,
        new: &SessionId,
        session: &Stored,
        now_ms: u64,
    ) -> Result<Outcome>;

    /// Deletes a session and its index entries; `true` if it existed.
    fn delete(&self, id: &SessionId) -> Result<bool>;

    /// Up to `limit` ids whose expiry time is `<= now_ms`, oldest first.
    fn expired(&self, now_ms: u64, limit: usize) -> Result<Vec<SessionId>>;

    /// Deletes each of `ids` that, re-read inside the atomic step that
    /// deletes it, has expired by `now_ms` (a request may have touched it
    /// since [`expired`](Self::expired) listed it); returns how many were
    /// deleted. A backend may delete several in one atomic step.
    fn delete_expired(&self, ids: &[SessionId], now_ms: u64) -> Result<u64>;

    /// One page of the ids in `user`'s index: at most about `limit` of
    /// them (expired ones may be included; the caller re-checks). Start with
    /// `cursor` `None`, then pass each page's [`UserPage::next`] back until
    /// it is `None`. Every id that stays in the index for the whole walk is
    /// returned at least once, whatever is deleted meanwhile; an id may come
    /// twice. The cursor is the backend's own (an id, a server cursor).
    fn user_sessions(&self, user: &str, cursor: Option<&[u8]>, limit: usize) -> Result<UserPage>;

    /// Records a revocation, kept until `until_ms`: `key` names what was
    /// revoked (the engine's choice of bytes: a session id, a user), `at_ms`
    /// when. Recording the same key again keeps the latest `at_ms` and the
    /// furthest `until_ms`. Durable with the next [`flush`](Self::flush).
    fn revoke(&self, key: &[u8], at_ms: u64, until_ms: u64) -> Result<()>;

    /// [`revoke`](Self::revoke), then [`delete`](Self::delete): a logout.
    /// A store whose every call is a round trip (Redis) does both in one.
    /// `true` if the session existed.
    fn delete_revoking(&self, id: &SessionId, revocation: Revocation<'_>) -> Result<bool> {
        self.revoke(revocation.key, revocation.at_ms, revocation.until_ms)?;
        self.delete(id)
    }

    /// [`revoke`](Self::revoke) (when `revocation` is given), then
    /// [`rename`](Self::rename): an id change. A store whose every call is
    /// a round trip (Redis) does both in one. The revocation is recorded
    /// whatever the rename finds.
    fn rename_revoking(
        &self,
        old: &SessionId,
        expected: u64,
        new: &SessionId,
        session: &Stored,
        now_ms: u64,
        revocation: Option<Revocation<'_>>,
    ) -> Result<Outcome> {
        if let Some(r) = revocation {
            self.revoke(r.key, r.at_ms, r.until_ms)?;
        }
        self.rename(old, expected, new, session, now_ms)
    }

    /// When `key` was revoked, if its revocation is still kept at `now_ms`.
    fn revoked_at(&self, key: &[u8], now_ms: u64) -> Result<Option<u64>>;

    /// Forgets up to `limit` revocations whose time has passed by `now_ms`;
    /// returns how many. A backend whose store expires them itself returns
    /// 0.
    fn forget_revocations(&self, now_ms: u64, limit: usize) -> Result<u64>;

    /// Makes every write that has returned durable on stable storage.
    fn flush(&self) -> Result<()>;

    /// Flushes and records a clean shutdown, so the next open can skip the
    /// crash check. The engine calls it exactly once, and never after a
    /// failed flush. Default: [`flush`](Self::flush).
    fn close(&self) -> Result<()> {
        self.flush()
    }

    /// The operators' side of this store, if it has one: without it,
    /// [`Admin`](crate::Admin)'s calls fail with [`Error::Unsupported`](crate::Error::Unsupported).
    fn maintenance(&self) -> Option<&dyn Maintenance> {
        None
    }
}

/// A backend chosen at run time (`Box<dyn Backend>`) is a backend too.
impl<B: Backend + ?Sized> Backend for Box<B> {
    fn get(&self, id: &SessionId, now_ms: u64) -> Result<Option<Stored>> {
        (**self).get(id, now_ms)
    }
    fn get_touching(
        &self,
        id: &SessionId,
        now_ms: u64,
        touch_after_ms: u64,
    ) -> Result<Option<(Stored, bool)>> {
        (**self).get_touching(id, now_ms, touch_after_ms)
    }
    fn put(
        &self,
        id: &SessionId,
        expected: Option<u64>,
        session: &Stored,
        now_ms: u64,
    ) -> Result<Outcome> {
        (**self).put(id, expected, session, now_ms)
    }
    fn put_new(&self, id: &SessionId, session: &Stored, now_ms: u64) -> Result<Outcome> {
        (**self).put_new(id, session, now_ms)
    }
    fn rename(
        &self,
        old: &SessionId,
        expected: u64,
        new: &SessionId,
        session: &Stored,
        now_ms: u64,
    ) -> Result<Outcome> {
        (**self).rename(old, expected, new, session, now_ms)
    }
    fn delete(&self, id: &SessionId) -> Result<bool> {
        (**self).delete(id)
    }
    fn expired(&self, now_ms: u64, limit: usize) -> Result<Vec<SessionId>> {
        (**self).expired(now_ms, limit)
    }
    fn delete_expired(&self, ids: &[SessionId], now_ms: u64) -> Result<u64> {
        (**self).delete_expired(ids, now_ms)
    }
    fn user_sessions(&self, user: &str, cursor: Option<&[u8]>, limit: usize) -> Result<UserPage> {
        (**self).user_sessions(user, cursor, limit)
    }
    fn revoke(&self, key: &[u8], at_ms: u64, until_ms: u64) -> Result<()> {
        (**self).revoke(key, at_ms, until_ms)
    }
    fn delete_revoking(&self, id: &SessionId, revocation: Revocation<'_>) -> Result<bool> {
        (**self).delete_revoking(id, revocation)
    }
    fn rename_revoking(
        &self,
        old: &SessionId,
        expected: u64,
        new: &SessionId,
        session: &Stored,
        now_ms: u64,
        revocation: Option<Revocation<'_>>,
    ) -> Result<Outcome> {
        (**self).rename_revoking(old, expected, new, session, now_ms, revocation)
    }
    fn revoked_at(&self, key: &[u8], now_ms: u64) -> Result<Option<u64>> {
        (**self).revoked_at(key, now_ms)
    }
    fn forget_revocations(&self, now_ms: u64, limit: usize) -> Result<u64> {
        (**self).forget_revocations(now_ms, limit)
    }
    fn flush(&self) -> Result<()> {
        (**self).flush()
    }
    fn close(&self) -> Result<()> {
        (**self).close()
    }
    fn maintenance(&self) -> Option<&dyn Maintenance> {
        (**self).maintenance()
    }
}

/// What operators' tools need of a store, apart from what requests need
/// (as tower-sessions keeps `ExpiredDeletion` apart from `SessionStore`).
pub trait Maintenance {
    /// Up to `limit` stored sessions (live, expired, or not readable) whose
    /// ids sort after `after`, in id order: pages through the whole store
    /// for listing and export. A record that does not parse comes with what
    /// is wrong with it.
    fn scan(
        &self,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<(SessionId, std::result::Result<Stored, FormatError>)>>;

    /// Counts for statistics.
    fn stats(&self, now_ms: u64) -> Result<BackendStats>;

    /// Every broken invariant between sessions and their index entries.
    fn check(&self) -> Result<Vec<Violation>>;

    /// Mends one violation reported by [`check`](Self::check), re-checking
    /// it inside one atomic step; `true` if anything changed. The sessions
    /// are the source of truth: index entries are made to agree with them,
    /// and a record that does not decode is moved to a quarantine area.
    fn fix(&self, violation: &Violation) -> Result<bool>;

    /// How many records are in quarantine.
    fn quarantined(&self) -> Result<u64>;
}

/// Keys of the index trees, shared by the backends that keep them.
pub(crate) mod keys {
    use crate::token::SessionId;

    /// `expiry` key: expiry time u64 big-endian, then the id, so the tree
    /// iterates in time order.
    pub fn expiry(at: u64, id: &SessionId) -> [u8; 40] {
        let mut k = [0u8; 40];
        k[..8].copy_from_slice(&at.to_be_bytes());
        k[8..].copy_from_slice(id.as_bytes());
        k
    }

    pub fn parse_expiry(key: &[u8]) -> Option<(u64, SessionId)> {
        let (at, id) = key.split_first_chunk::<8>()?;
        let id: [u8; 32] = id.try_into().ok()?;
        Some((u64::from_be_bytes(*at), SessionId::from_bytes(id)))
    }

    /// `users` key prefix: user id length u16 big-endian, then the user id.
    pub fn user_prefix(user: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(2 + user.len() + 32);
        // Callers limit user ids to MAX_USER_LEN, well under u16::MAX.
        k.extend_from_slice(&(user.len() as u16).to_be_bytes());
        k.extend_from_slice(user.as_bytes());
        k
    }

    /// `users` key: the prefix, then the id.
    pub fn user(user: &str, id: &SessionId) -> Vec<u8> {
        let mut k = user_prefix(user);
        k.extend_from_slice(id.as_bytes());
        k
    }

    /// `revoked` key of a revocation: `k` ++ the engine's key. Its value is
    /// `at_ms` u64 BE ++ `until_ms` u64 BE.
    pub fn revocation(key: &[u8]) -> Vec<u8> {
        [&b"k"[..], key].concat()
    }

    /// `revoked` key that orders revocations by the time they may be
    /// forgotten: `t` ++ `until_ms` u64 BE ++ the engine's key; empty value.
    pub fn revocation_due(until_ms: u64, key: &[u8]) -> Vec<u8> {
        [&b"t"[..], &until_ms.to_be_bytes(), key].concat()
    }

    /// The two times of a revocation's value.
    pub fn parse_revocation(value: &[u8]) -> Option<(u64, u64)> {
        let (at, rest) = value.split_first_chunk::<8>()?;
        let until: [u8; 8] = rest.try_into().ok()?;
        Some((u64::from_be_bytes(*at), u64::from_be_bytes(until)))
    }

    pub fn parse_user(key: &[u8]) -> Option<(String, SessionId)> {
        let (len, rest) = key.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() != len + 32 {
            return None;
        }
        let (user, id) = rest.split_at(len);
        let user = std::str::from_utf8(user).ok()?.to_owned();
        let id: [u8; 32] = id.try_into().ok()?;
        Some((user, SessionId::from_bytes(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Body, encode_body};

    fn value(version: u64, expires_at: u64, user: Option<&str>) -> Stored {
        let body = Body {
            created_ms: 0,
            last_seen_ms: expires_at - 10,
            absolute_deadline_ms: u64::MAX,
            idle_timeout_ms: 10,
            ..Body::default()
        };
        let body = encode_body(&body).expect("encodes");
        Stored::new(version, expires_at, user.map(str::to_owned), body)
    }

    fn delete_if_expired(b: &dyn Backend, id: &SessionId, now_ms: u64) -> bool {
        b.delete_expired(&[*id], now_ms).expect("sweep") == 1
    }

    /// The races the sweeper and writers must survive, on each backend.
    fn races(b: &dyn Backend) {
        let id = SessionId::from_bytes([1; 32]);
        assert_eq!(
            b.put(&id, None, &value(1, 100, Some("u")), 0).expect("put"),
            Outcome::Written
        );
        // Listed as expired at 100...
        assert_eq!(b.expired(100, 10).expect("expired"), vec![id]);
        // ...but touched before the sweeper deletes it: the re-read spares it.
        assert_eq!(
            b.put(&id, Some(1), &value(2, 200, Some("u")), 99)
                .expect("touch"),
            Outcome::Written
        );
        assert!(!delete_if_expired(b, &id, 100));
        assert!(b.get(&id, 100).expect("get").is_some());
        // Expired: a late write of a stale copy does not revive it.
        assert_eq!(
            b.put(&id, Some(2), &value(3, 300, Some("u")), 200)
                .expect("put"),
            Outcome::Missing
        );
        assert!(b.get(&id, 200).expect("get").is_none());
        assert!(delete_if_expired(b, &id, 200));
        assert!(
            b.user_sessions("u", None, 10)
                .expect("users")
                .ids
                .is_empty()
        );
        // Version checks and renames.
        assert_eq!(
            b.put(&id, None, &value(1, 500, None), 0).expect("put"),
            Outcome::Written
        );
        assert_eq!(
            b.put(&id, None, &value(1, 500, None), 0).expect("put"),
            Outcome::Conflict
        );
        assert_eq!(
            b.put(&id, Some(7), &value(8, 500, None), 0).expect("put"),
            Outcome::Conflict
        );
        let new = SessionId::from_bytes([2; 32]);
        assert_eq!(
            b.rename(&id, 2, &new, &value(2, 500, None), 0)
                .expect("rename"),
            Outcome::Conflict
        );
        assert_eq!(
            b.rename(&id, 1, &new, &value(2, 500, Some("v")), 0)
                .expect("rename"),
            Outcome::Written
        );
        assert_eq!(
            b.rename(&id, 1, &new, &value(2, 500, None), 0)
                .expect("rename"),
            Outcome::Missing
        );
        assert_eq!(
            b.user_sessions("v", None, 10).expect("users").ids,
            vec![new]
        );
        assert!(b.get(&id, 0).expect("get").is_none());
        assert!(
            b.maintenance()
                .expect("maintained")
                .check()
                .expect("check")
                .is_empty()
        );
    }

    /// An update that moves the expiry later leaves the entry behind; the
    /// sweep re-files a due entry of a live session at its expiry; an
    /// update that moves the expiry before the entry moves the entry.
    fn lagging_entries(b: &dyn Backend) {
        let id = SessionId::from_bytes([3; 32]);
        let check = |b: &dyn Backend| {
            let found = b.maintenance().expect("maintained").check().expect("check");
            assert!(found.is_empty(), "{found:#?}");
        };
        assert_eq!(
            b.put(&id, None, &value(1, 1_000, Some("u")), 0)
                .expect("put"),
            Outcome::Written
        );
        assert_eq!(
            b.put(&id, Some(1), &value(2, 2_000, Some("u")), 10)
                .expect("put"),
            Outcome::Written
        );
        check(b);
        // The entry stayed at 1000: due then, though the session lives on.
        assert_eq!(b.expired(1_000, 10).expect("expired"), vec![id]);
        assert!(!delete_if_expired(b, &id, 1_000));
        check(b);
        // Re-filed at 2000.
        assert!(b.expired(1_999, 10).expect("expired").is_empty());
        assert_eq!(b.expired(2_000, 10).expect("expired"), vec![id]);
        // Earlier than the entry: the entry moves.
        assert_eq!(
            b.put(&id, Some(2), &value(3, 1_500, Some("u")), 20)
                .expect("put"),
            Outcome::Written
        );
        check(b);
        assert_eq!(b.expired(1_500, 10).expect("expired"), vec![id]);
        assert!(b.get(&id, 1_499).expect("get").is_some());
        assert!(delete_if_expired(b, &id, 1_500));
        assert!(b.expired(u64::MAX, 10).expect("expired").is_empty());
        check(b);
    }

    #[test]
    fn memory_lets_entries_lag() {
        lagging_entries(&memory::MemoryBackend::new());
    }

    #[test]
    fn sled_lets_entries_lag() {
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = sled::SledOptions {
            cache_capacity: 1 << 20,
            flush_every_ms: None,
            session_cache_bytes: 4096,
            max_record_bytes: 64 * 1024,
            apply: sled::Apply::Ordered,
        };
        lagging_entries(&sled::SledBackend::open(dir.path(), opts).expect("open"));
    }

    #[test]
    fn memory_survives_the_races() {
        races(&memory::MemoryBackend::new());
    }

    /// Loads racing writes through a cache small enough to evict all
    /// along: a load never sees a version older than one already
    /// acknowledged (a stale record cached from a slow read would).
    #[test]
    fn sled_loads_never_go_back_behind_acknowledged_writes() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        const SESSIONS: usize = 64;
        const ROUNDS: u64 = 60;
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = sled::SledOptions {
            cache_capacity: 1 << 20,
            flush_every_ms: None,
            session_cache_bytes: 2048,
            max_record_bytes: 64 * 1024,
            apply: sled::Apply::Ordered,
        };
        let b = sled::SledBackend::open(dir.path(), opts).expect("open");
        let ids: Vec<SessionId> = (0..SESSIONS)
            .map(|i| SessionId::from_bytes([u8::try_from(i).expect("small") + 1; 32]))
            .collect();
        let acked: Vec<AtomicU64> = (0..SESSIONS).map(|_| AtomicU64::new(0)).collect();
        let done = AtomicBool::new(false);
        let reads = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for r in 0..3 {
                let (b, ids, acked, done, reads) = (&b, &ids, &acked, &done, &reads);
                scope.spawn(move || {
                    let mut i = r;
                    while !done.load(Ordering::Acquire) {
                        i = (i * 7 + 3) % SESSIONS;
                        let floor = acked[i].load(Ordering::Acquire);
                        let got = b.get(&ids[i], 0).expect("get");
                        let version = got.map_or(0, |v| v.version);
                        assert!(
                            version >= floor,
                            "session {i}: loaded version {version} after {floor} was acknowledged"
                        );
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            for version in 1..=ROUNDS {
                for (i, id) in ids.iter().enumerate() {
                    let expected = (version > 1).then_some(version - 1);
                    let v = value(version, u64::MAX, None);
                    assert_eq!(b.put(id, expected, &v, 0).expect("put"), Outcome::Written);
                    acked[i].store(version, Ordering::Release);
                }
            }
            done.store(true, Ordering::Release);
        });
        assert!(reads.load(Ordering::Relaxed) > 0);
        assert!(Maintenance::check(&b).expect("check").is_empty());
    }

    #[test]
    fn sled_survives_the_races() {
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = sled::SledOptions {
            cache_capacity: 1 << 20,
            flush_every_ms: None,
            // Small enough that the races evict all along.
            session_cache_bytes: 4096,
            max_record_bytes: 64 * 1024,
            apply: sled::Apply::Ordered,
        };
        races(&sled::SledBackend::open(dir.path(), opts).expect("open"));
    }
}
