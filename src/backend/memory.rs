//! The memory backend: the same trees and the same logic as sled, in
//! process memory behind one lock. Nothing survives the process. It is the
//! benchmark baseline and a fast double for tests.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{RwLock, RwLockWriteGuard};

use super::ops::{self, Tree, Trees};
use super::{Backend, BackendStats, Maintenance, Outcome, Stored, UserPage, Violation, keys};
use crate::error::{Error, Result};
use crate::record::FormatError;
use crate::token::SessionId;

#[derive(Default)]
struct State {
    sessions: HashMap<SessionId, Vec<u8>>,
    expiry: BTreeSet<[u8; 40]>,
    users: BTreeSet<Vec<u8>>,
    quarantine: HashMap<Vec<u8>, Vec<u8>>,
    /// Revocations: key -> (at, until), and (until, key) to forget them.
    revoked: HashMap<Vec<u8>, (u64, u64)>,
    revoked_due: BTreeSet<(u64, Vec<u8>)>,
}

/// Sessions in process memory, behind one lock, with the same trees and
/// the same write logic as the sled backend. Nothing survives the process.
///
/// `Debug` shows counts only, never a record.
#[derive(Default)]
pub struct MemoryBackend {
    state: RwLock<State>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.read();
        f.debug_struct("MemoryBackend")
            .field("sessions", &state.sessions.len())
            .field("users_entries", &state.users.len())
            .field("quarantined", &state.quarantine.len())
            .field("revocations", &state.revoked.len())
            .finish()
    }
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        // A panic while holding the lock cannot leave the trees half-changed
        // in a way `check` would not report, so a poisoned lock is used as is.
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn atomically<R>(&self, f: impl FnOnce(&Txn<'_>) -> Result<R>) -> Result<R> {
        let mut guard = self.write();
        let txn = Txn(RefCell::new(&mut guard));
        f(&txn)
    }
}

/// The caller's session, as the trees index it and store it.
fn new_record<'a>(session: &'a Stored, bytes: &'a [u8]) -> ops::NewRecord<'a> {
    ops::NewRecord {
        expires_at: session.expires_at,
        user: session.user.as_deref(),
        bytes,
    }
}

struct Txn<'a>(RefCell<&'a mut State>);

impl Trees for Txn<'_> {
    type Error = Error;
    type Bytes = Vec<u8>;

    fn abort(e: Error) -> Error {
        e
    }
    fn session(&self, id: &SessionId) -> Result<Option<Vec<u8>>> {
        Ok(self.0.borrow().sessions.get(id).cloned())
    }
    fn set_session(&self, id: &SessionId, value: &[u8]) -> Result<()> {
        self.0.borrow_mut().sessions.insert(*id, value.to_vec());
        Ok(())
    }
    fn remove_session(&self, id: &SessionId) -> Result<()> {
        self.0.borrow_mut().sessions.remove(id);
        Ok(())
    }
    fn set_expiry(&self, key: [u8; 40]) -> Result<()> {
        self.0.borrow_mut().expiry.insert(key);
        Ok(())
    }
    fn remove_expiry(&self, key: [u8; 40]) -> Result<()> {
        self.0.borrow_mut().expiry.remove(&key);
        Ok(())
    }
    fn set_user(&self, key: Vec<u8>) -> Result<()> {
        self.0.borrow_mut().users.insert(key);
        Ok(())
    }
    fn remove_user(&self, key: Vec<u8>) -> Result<()> {
        self.0.borrow_mut().users.remove(&key);
        Ok(())
    }
    fn remove_raw(&self, tree: Tree, key: &[u8]) -> Result<()> {
        let mut state = self.0.borrow_mut();
        match tree {
            Tree::Sessions => {
                if let Ok(id) = <[u8; 32]>::try_from(key) {
                    state.sessions.remove(&SessionId::from_bytes(id));
                }
            }
            Tree::Expiry => {
                if let Ok(k) = <[u8; 40]>::try_from(key) {
                    state.expiry.remove(&k);
                }
            }
            Tree::Users => {
                state.users.remove(key);
            }
        }
        Ok(())
    }
    fn session_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        // Every key of the memory map is a well-formed id.
        match <[u8; 32]>::try_from(key) {
            Ok(id) => self.session(&SessionId::from_bytes(id)),
            Err(_) => Ok(None),
        }
    }
    fn quarantine(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.0
            .borrow_mut()
            .quarantine
            .insert(key.to_vec(), value.to_vec());
        Ok(())
    }
    fn may_lag(&self) -> bool {
        true
    }
}

impl Backend for MemoryBackend {
    fn get(&self, id: &SessionId, now_ms: u64) -> Result<Option<Stored>> {
        let state = self.read();
        let Some(value) = state.sessions.get(id) else {
            return Ok(None);
        };
        Stored::unframe_live(id, value, now_ms)
    }

    fn put(
        &self,
        id: &SessionId,
        expected: Option<u64>,
        session: &Stored,
        now_ms: u64,
    ) -> Result<Outcome> {
        let bytes = session.frame()?;
        let new = new_record(session, &bytes);
        self.atomically(|t| ops::put(t, id, expected, &new, now_ms))
    }

    fn rename(
        &self,
        old: &SessionId,
        expected: u64,
        new: &SessionId,
        session: &Stored,
        now_ms: u64,
    ) -> Result<Outcome> {
        let bytes = session.frame()?;
        let record = new_record(session, &bytes);
        self.atomically(|t| ops::rename(t, old, expected, new, &record, now_ms))
    }

    fn delete(&self, id: &SessionId) -> Result<bool> {
        self.atomically(|t| ops::delete(t, id))
    }

    fn expired(&self, now_ms: u64, limit: usize) -> Result<Vec<SessionId>> {
        let state = self.read();
        Ok(state
            .expiry
            .iter()
            .map_while(|k| keys::parse_expiry(k).filter(|(at, _)| *at <= now_ms))
            .take(limit)
            .map(|(_, id)| id)
            .collect())
    }

    fn delete_expired(&self, ids: &[SessionId], now_ms: u64) -> Result<u64> {
        self.atomically(|t| {
            let mut n = 0;
            for id in ids {
                n += u64::from(ops::delete_if_expired(t, id, now_ms)?);
            }
            Ok(n)
        })
    }

    fn user_sessions(&self, user: &str, cursor: Option<&[u8]>, limit: usize) -> Result<UserPage> {
        let prefix = keys::user_prefix(user);
        let start = match cursor {
            Some(after) => Bound::Excluded([prefix.as_slice(), after].concat()),
            None => Bound::Included(prefix.clone()),
        };
        let state = self.read();
        let ids: Vec<SessionId> = state
            .users
            .range((start, Bound::Unbounded))
            .take_while(|k| k.starts_with(&prefix))
            .filter_map(|k| keys::parse_user(k).map(|(_, id)| id))
            .take(limit.max(1))
            .collect();
        let next = match ids.last() {
            Some(last) if ids.len() >= limit.max(1) => Some(last.as_bytes().to_vec()),
            _ => None,
        };
        Ok(UserPage::new(ids, next))
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn revoke(&self, key: &[u8], at_ms: u64, until_ms: u64) -> Result<()> {
        let mut state = self.write();
        let (at, until) = match state.revoked.get(key) {
            Some(&(at, until)) => (at.max(at_ms), until.max(until_ms)),
            None => (at_ms, until_ms),
        };
        if let Some(&(_, old)) = state.revoked.get(key) {
            state.revoked_due.remove(&(old, key.to_vec()));
        }
        state.revoked_due.insert((until, key.to_vec()));
        state.revoked.insert(key.to_vec(), (at, until));
        Ok(())
    }

    fn revoked_at(&self, key: &[u8], now_ms: u64) -> Result<Option<u64>> {
        Ok(self
            .read()
            .revoked
            .get(key)
            .filter(|(_, until)| *until > now_ms)
            .map(|(at, _)| *at))
    }

    fn forget_revocations(&self, now_ms: u64, limit: usize) -> Result<u64> {
        let mut state = self.write();
        let mut n = 0;
        while n < limit as u64 {
            match state.revoked_due.first() {
                Some((until, _)) if *until <= now_ms => {}
                _ => break,
            }
            if let Some((_, key)) = state.revoked_due.pop_first() {
                state.revoked.remove(&key);
                n += 1;
            }
        }
        Ok(n)
    }

    fn maintenance(&self) -> Option<&dyn Maintenance> {
        Some(self)
    }
}

impl Maintenance for MemoryBackend {
    fn scan(
        &self,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<(SessionId, std::result::Result<Stored, FormatError>)>> {
        let state = self.read();
        let mut ids: Vec<&SessionId> = state
            .sessions
            .keys()
            .filter(|id| after.is_none_or(|a| *id > a))
            .collect();
        ids.sort_unstable();
        Ok(ids
            .into_iter()
            .take(limit)
            .map(|id| {
                let bytes = state.sessions.get(id).map_or(&[][..], Vec::as_slice);
                (*id, Stored::parse(bytes))
            })
            .collect())
    }

    fn stats(&self, now_ms: u64) -> Result<BackendStats> {
        let state = self.read();
        // A due entry may lag behind a session that lives on: count the
        // sessions that really expired.
        let expired_pending = state
            .expiry
            .iter()
            .map_while(|k| keys::parse_expiry(&k[..]).filter(|(at, _)| *at <= now_ms))
            .filter(|(_, id)| {
                state.sessions.get(id).is_some_and(|v| {
                    crate::record::Meta::parse(v).is_ok_and(|(m, _)| m.expires_at <= now_ms)
                })
            })
            .count() as u64;
        let mut users = 0u64;
        let mut last: Option<Vec<u8>> = None;
        for key in &state.users {
            let prefix = key[..key.len().saturating_sub(32)].to_vec();
            if last.as_ref() != Some(&prefix) {
                users += 1;
                last = Some(prefix);
            }
        }
        Ok(BackendStats {
            live_sessions: (state.sessions.len() as u64).saturating_sub(expired_pending),
            expired_pending,
            users,
            bytes_on_disk: 0,
        })
    }

    fn check(&self) -> Result<Vec<Violation>> {
        let state = self.read();
        Ok(ops::check(
            state
                .sessions
                .iter()
                .map(|(id, v)| (id.as_bytes().to_vec(), v.clone())),
            state.expiry.iter().map(|k| k.to_vec()),
            state.users.iter().cloned(),
        ))
    }

    fn fix(&self, violation: &Violation) -> Result<bool> {
        self.atomically(|t| ops::fix(t, violation))
    }

    fn quarantined(&self) -> Result<u64> {
        Ok(self.read().quarantine.len() as u64)
    }
}
