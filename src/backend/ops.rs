//! The write logic of every tree-shaped backend, written once.
//!
//! A backend runs each function inside one atomic step (a held lock, a sled
//! transaction), or has its changes replayed, in the order the function
//! made them, by a single writer whose storage keeps a prefix of them
//! after a crash (the sled backend's committer). Either way the function
//! keeps the invariants:
//!
//! 1. every session has exactly one `expiry` entry, at the time its record
//!    names (`indexed_at`), which is at or before its expiry: an entry may
//!    lag behind the session's expiry, never lead it;
//! 2. a session's `users` entry exists exactly when the session names a user;
//! 3. index entries that do not agree with a session (stale ones) exist only
//!    where a crash cut a write short. They never make a session live or
//!    listed that is not (every reader re-checks the record), and the check
//!    at open reports and removes them (see [`check_streaming`]).
//!
//! Each function orders its changes so that any prefix of them keeps 1 and
//! 2: a session's new index entries before the session, the session's
//! removal before its old entries'. A prefix can only leave stale entries
//! behind.
//!
//! # Lagging expiry entries
//!
//! Where the trees allow it ([`Trees::may_lag`]), a write that moves a
//! session's expiry later (a touch, an update) leaves its `expiry` entry
//! where it was and writes the record alone; the record says where its
//! entry is (format version 2, see `record`). Expiry is checked on every
//! read, so an early entry changes nothing a reader sees. The sweeper
//! lists the entry when it falls due, finds the session still live, and
//! re-files it at its expiry ([`delete_if_expired`]). A write that moves
//! the expiry earlier than the entry moves the entry.

use super::{Outcome, keys};
use crate::error::Error;
use crate::record::{FormatError, Meta};
use crate::token::SessionId;

/// The three trees, as seen from inside one atomic step.
pub(crate) trait Trees {
    type Error;
    type Bytes: AsRef<[u8]>;
    fn abort(e: Error) -> Self::Error;
    fn session(&self, id: &SessionId) -> Result<Option<Self::Bytes>, Self::Error>;
    fn set_session(&self, id: &SessionId, value: &[u8]) -> Result<(), Self::Error>;
    fn remove_session(&self, id: &SessionId) -> Result<(), Self::Error>;
    fn set_expiry(&self, key: [u8; 40]) -> Result<(), Self::Error>;
    fn remove_expiry(&self, key: [u8; 40]) -> Result<(), Self::Error>;
    fn set_user(&self, key: Vec<u8>) -> Result<(), Self::Error>;
    fn remove_user(&self, key: Vec<u8>) -> Result<(), Self::Error>;
    /// Removes any key of a tree, well-formed or not (for repair).
    fn remove_raw(&self, tree: Tree, key: &[u8]) -> Result<(), Self::Error>;
    /// Reads any key of `sessions`, well-formed or not (for repair).
    fn session_raw(&self, key: &[u8]) -> Result<Option<Self::Bytes>, Self::Error>;
    /// Keeps a record that cannot be read, under its key, out of the way.
    fn quarantine(&self, key: &[u8], value: &[u8]) -> Result<(), Self::Error>;
    /// Whether a write may leave a session's `expiry` entry behind its
    /// expiry (see the [module docs](self)).
    fn may_lag(&self) -> bool;
}

/// The trees, by name, for the operations that work on raw keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tree {
    Sessions,
    Expiry,
    Users,
}

impl Tree {
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "sessions" => Some(Tree::Sessions),
            "expiry" => Some(Tree::Expiry),
            "users" => Some(Tree::Users),
            _ => None,
        }
    }
}

pub(crate) fn corrupt(id: &SessionId, source: FormatError) -> Error {
    Error::Corrupt {
        id_hint: id.hint(),
        source,
    }
}

fn meta<'a, T: Trees>(id: &SessionId, bytes: &'a [u8]) -> Result<Meta<'a>, T::Error> {
    Meta::parse(bytes)
        .map(|(m, _)| m)
        .map_err(|e| T::abort(corrupt(id, e)))
}

/// A record to write: the fields the trees index, handed over by the
/// caller, and its bytes as stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewRecord<'a> {
    pub expires_at: u64,
    pub user: Option<&'a str>,
    pub bytes: &'a [u8],
}

fn unindex<T: Trees>(t: &T, id: &SessionId, m: &Meta<'_>) -> Result<(), T::Error> {
    t.remove_expiry(keys::expiry(m.indexed_at, id))?;
    if let Some(user) = m.user {
        t.remove_user(keys::user(user, id))?;
    }
    Ok(())
}

/// Removes a session, then its index entries.
fn remove<T: Trees>(t: &T, id: &SessionId, m: &Meta<'_>) -> Result<(), T::Error> {
    t.remove_session(id)?;
    unindex(t, id, m)
}

/// Writes a session: its new index entries first, then the record, then
/// the old record's entries that the new one does not keep. The old
/// `expiry` entry is kept where it is at or before the new expiry and the
/// trees allow it to lag; the record then names it.
fn write<T: Trees>(
    t: &T,
    id: &SessionId,
    new: &NewRecord<'_>,
    old: Option<&Meta<'_>>,
) -> Result<(), T::Error> {
    let kept = old
        .map(|o| o.indexed_at)
        .filter(|&at| at == new.expires_at || (at < new.expires_at && t.may_lag()));
    let indexed_at = kept.unwrap_or(new.expires_at);
    if kept.is_none() {
        t.set_expiry(keys::expiry(indexed_at, id))?;
    }
    let old_user = old.and_then(|o| o.user);
    if let Some(user) = new.user
        && old_user != Some(user)
    {
        t.set_user(keys::user(user, id))?;
    }
    match indexed_at == new.expires_at {
        true => t.set_session(id, new.bytes)?,
        false => {
            let bytes = crate::record::with_indexed_at(new.bytes, indexed_at)
                .map_err(|e| T::abort(corrupt(id, e)))?;
            t.set_session(id, &bytes)?;
        }
    }
    if let Some(old) = old {
        if old.indexed_at != indexed_at {
            t.remove_expiry(keys::expiry(old.indexed_at, id))?;
        }
        if let Some(user) = old_user
            && new.user != Some(user)
        {
            t.remove_user(keys::user(user, id))?;
        }
    }
    Ok(())
}

pub(crate) fn put<T: Trees>(
    t: &T,
    id: &SessionId,
    expected: Option<u64>,
    new: &NewRecord<'_>,
    now_ms: u64,
) -> Result<Outcome, T::Error> {
    let stored = t.session(id)?;
    let old = match (&stored, expected) {
        (None, Some(_)) => return Ok(Outcome::Missing),
        (None, None) => None,
        (Some(bytes), _) => {
            let old = meta::<T>(id, bytes.as_ref())?;
            let live = old.expires_at > now_ms;
            match expected {
                _ if !live && expected.is_some() => return Ok(Outcome::Missing),
                // A new session whose id is taken by a live one: ids are
                // 256-bit random, so this is a caller's bug, never a clash.
                None if live => return Ok(Outcome::Conflict),
                Some(v) if v != old.version => return Ok(Outcome::Conflict),
                _ => Some(old),
            }
        }
    };
    write(t, id, new, old.as_ref())?;
    Ok(Outcome::Written)
}

/// Writes a session under an id drawn fresh from the CSPRNG, without
/// reading it first: no stored session can hold it.
pub(crate) fn put_new<T: Trees>(
    t: &T,
    id: &SessionId,
    new: &NewRecord<'_>,
) -> Result<Outcome, T::Error> {
    write(t, id, new, None)?;
    Ok(Outcome::Written)
}

pub(crate) fn rename<T: Trees>(
    t: &T,
    old_id: &SessionId,
    expected: u64,
    new_id: &SessionId,
    new: &NewRecord<'_>,
    now_ms: u64,
) -> Result<Outcome, T::Error> {
    // Every check before the first write: an error must leave no half-change.
    let Some(old) = t.session(old_id)? else {
        return Ok(Outcome::Missing);
    };
    let old = meta::<T>(old_id, old.as_ref())?;
    if old.expires_at <= now_ms {
        return Ok(Outcome::Missing);
    }
    if old.version != expected || t.session(new_id)?.is_some() {
        return Ok(Outcome::Conflict);
    }
    // The old id goes first: a prefix of this never leaves two live
    // copies of one session.
    remove(t, old_id, &old)?;
    write(t, new_id, new, None)?;
    Ok(Outcome::Written)
}

pub(crate) fn delete<T: Trees>(t: &T, id: &SessionId) -> Result<bool, T::Error> {
    let Some(old) = t.session(id)? else {
        return Ok(false);
    };
    let old = meta::<T>(id, old.as_ref())?;
    remove(t, id, &old)?;
    Ok(true)
}

/// Deletes the session only if it is still expired when re-read here: a
/// request may have touched it since the sweeper listed it. A session that
/// lives on with its `expiry` entry due (a lagging entry) has the entry
/// re-filed at its expiry: new entry, record, then the old entry's removal.
pub(crate) fn delete_if_expired<T: Trees>(
    t: &T,
    id: &SessionId,
    now_ms: u64,
) -> Result<bool, T::Error> {
    let Some(bytes) = t.session(id)? else {
        return Ok(false);
    };
    let old = meta::<T>(id, bytes.as_ref())?;
    if old.expires_at <= now_ms {
        remove(t, id, &old)?;
        return Ok(true);
    }
    if old.indexed_at <= now_ms {
        let refiled = crate::record::with_indexed_at(bytes.as_ref(), old.expires_at)
            .map_err(|e| T::abort(corrupt(id, e)))?;
        t.set_expiry(keys::expiry(old.expires_at, id))?;
        t.set_session(id, &refiled)?;
        t.remove_expiry(keys::expiry(old.indexed_at, id))?;
    }
    Ok(false)
}

/// The check of the three invariants, over plain iterators of the trees
/// (for stores that must be read whole anyway: memory, Redis). It holds
/// the trees in memory and runs [`check_streaming`] over them.
pub(crate) fn check<S, E, U>(sessions: S, expiry: E, users: U) -> Vec<super::Violation>
where
    S: IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    E: IntoIterator<Item = Vec<u8>>,
    U: IntoIterator<Item = Vec<u8>>,
{
    use std::collections::{BTreeSet, HashMap};

    struct Held {
        sessions: Vec<(Vec<u8>, Vec<u8>)>,
        by_id: HashMap<SessionId, usize>,
        expiry: BTreeSet<Vec<u8>>,
        users: BTreeSet<Vec<u8>>,
    }
    impl Lookups for Held {
        fn session(&self, id: &SessionId) -> crate::error::Result<Option<Vec<u8>>> {
            Ok(self.by_id.get(id).map(|&i| self.sessions[i].1.clone()))
        }
        fn has_expiry(&self, key: &[u8]) -> crate::error::Result<bool> {
            Ok(self.expiry.contains(key))
        }
        fn has_user(&self, key: &[u8]) -> crate::error::Result<bool> {
            Ok(self.users.contains(key))
        }
    }
    let sessions: Vec<(Vec<u8>, Vec<u8>)> = sessions.into_iter().collect();
    let by_id = sessions
        .iter()
        .enumerate()
        .filter_map(|(i, (k, _))| {
            <[u8; 32]>::try_from(k.as_slice())
                .ok()
                .map(|id| (SessionId::from_bytes(id), i))
        })
        .collect();
    let held = Held {
        by_id,
        expiry: expiry.into_iter().collect(),
        users: users.into_iter().collect(),
        sessions,
    };
    let expiry: Vec<Vec<u8>> = held.expiry.iter().cloned().collect();
    let users: Vec<Vec<u8>> = held.users.iter().cloned().collect();
    let sessions = held.sessions.iter().cloned().map(Ok);
    // Every lookup above is infallible.
    check_streaming(
        sessions,
        expiry.into_iter().map(Ok),
        users.into_iter().map(Ok),
        &held,
    )
    .unwrap_or_default()
}

/// Point lookups into a store's three trees, for [`check_streaming`].
pub(crate) trait Lookups {
    /// The stored bytes of a session.
    fn session(&self, id: &SessionId) -> crate::error::Result<Option<Vec<u8>>>;
    /// Whether this `expiry` key exists.
    fn has_expiry(&self, key: &[u8]) -> crate::error::Result<bool>;
    /// Whether this `users` key exists.
    fn has_user(&self, key: &[u8]) -> crate::error::Result<bool>;
}

/// The same check as [`check`], in memory bounded by what it finds rather
/// than by the store's size: it walks each tree once and looks the other
/// side of every link up by key, so a store of millions is checked without
/// holding its sessions (the crash check at open runs this).
pub(crate) fn check_streaming<S, E, U, L>(
    sessions: S,
    expiry: E,
    users: U,
    look: &L,
) -> crate::error::Result<Vec<super::Violation>>
where
    S: IntoIterator<Item = crate::error::Result<(Vec<u8>, Vec<u8>)>>,
    E: IntoIterator<Item = crate::error::Result<Vec<u8>>>,
    U: IntoIterator<Item = crate::error::Result<Vec<u8>>>,
    L: Lookups,
{
    use super::Violation;

    let mut out = Vec::new();
    for item in sessions {
        let (key, value) = item?;
        let Ok(id) = <[u8; 32]>::try_from(key.as_slice()).map(SessionId::from_bytes) else {
            out.push(Violation::BadIndexKey {
                tree: "sessions",
                key,
            });
            continue;
        };
        let m = match crate::record::decode(&value) {
            Ok((m, _)) => m,
            Err(e) => {
                out.push(Violation::Corrupt {
                    id,
                    reason: error_chain(&e),
                });
                continue;
            }
        };
        if !look.has_expiry(&keys::expiry(m.indexed_at, &id))? {
            out.push(Violation::MissingExpiry {
                id,
                expires_at: m.indexed_at,
            });
        }
        if let Some(user) = m.user
            && !look.has_user(&keys::user(user, &id))?
        {
            out.push(Violation::MissingUser {
                id,
                user: user.to_owned(),
            });
        }
    }
    // The session an index entry points at, if it exists and decodes: the
    // time of its expiry entry, and its user.
    let target = |id: &SessionId| -> crate::error::Result<Option<(u64, Option<String>)>> {
        Ok(look.session(id)?.and_then(|bytes| {
            crate::record::decode(&bytes)
                .ok()
                .map(|(m, _)| (m.indexed_at, m.user.map(str::to_owned)))
        }))
    };
    for key in expiry {
        let key = key?;
        let Some((at, id)) = keys::parse_expiry(&key) else {
            out.push(Violation::BadIndexKey {
                tree: "expiry",
                key,
            });
            continue;
        };
        if !matches!(target(&id)?, Some((indexed_at, _)) if indexed_at == at) {
            out.push(Violation::OrphanExpiry { id, at });
        }
    }
    for key in users {
        let key = key?;
        let Some((user, id)) = keys::parse_user(&key) else {
            out.push(Violation::BadIndexKey { tree: "users", key });
            continue;
        };
        if !matches!(target(&id)?, Some((_, Some(u))) if u == user) {
            out.push(Violation::OrphanUser { id, user });
        }
    }
    Ok(out)
}

/// An error and its sources, joined with ": ".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// Mends one violation that `check` reported, after re-reading what it is
/// about inside this atomic step (a writer may have fixed or changed it
/// since). Returns whether anything was changed.
///
/// The `sessions` tree is the source of truth: index entries are added or
/// removed to agree with it, and a record that does not decode is moved to
/// the quarantine tree (its index entries then become orphans, which the
/// next check finds and this removes).
pub(crate) fn fix<T: Trees>(t: &T, v: &super::Violation) -> Result<bool, T::Error> {
    use super::Violation;
    // The header of a session as stored now, if it has a readable one: the
    // time of its expiry entry, and its user.
    let header = |id: &SessionId| -> Result<Option<(u64, Option<String>)>, T::Error> {
        Ok(t.session(id)?.and_then(|bytes| {
            crate::record::decode(bytes.as_ref())
                .ok()
                .map(|(m, _)| (m.indexed_at, m.user.map(str::to_owned)))
        }))
    };
    match v {
        Violation::Corrupt { id, .. } => {
            let Some(bytes) = t.session(id)? else {
                return Ok(false);
            };
            if crate::record::decode(bytes.as_ref()).is_ok() {
                return Ok(false);
            }
            t.quarantine(id.as_bytes(), bytes.as_ref())?;
            t.remove_session(id)?;
            Ok(true)
        }
        Violation::MissingExpiry { id, expires_at } => match header(id)? {
            Some((at, _)) if at == *expires_at => {
                t.set_expiry(keys::expiry(at, id))?;
                Ok(true)
            }
            _ => Ok(false),
        },
        Violation::OrphanExpiry { id, at } => match header(id)? {
            Some((real, _)) if real == *at => Ok(false),
            _ => {
                t.remove_expiry(keys::expiry(*at, id))?;
                Ok(true)
            }
        },
        Violation::MissingUser { id, user } => match header(id)? {
            Some((_, Some(u))) if u == *user => {
                t.set_user(keys::user(user, id))?;
                Ok(true)
            }
            _ => Ok(false),
        },
        Violation::OrphanUser { id, user } => match header(id)? {
            Some((_, Some(u))) if u == *user => Ok(false),
            _ => {
                t.remove_user(keys::user(user, id))?;
                Ok(true)
            }
        },
        Violation::BadIndexKey { tree, key } => {
            let Some(tree) = Tree::by_name(tree) else {
                return Ok(false);
            };
            if tree == Tree::Sessions
                && let Some(bytes) = t.session_raw(key)?
            {
                t.quarantine(key, bytes.as_ref())?;
            }
            t.remove_raw(tree, key)?;
            Ok(true)
        }
    }
}
