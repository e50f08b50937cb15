//! Revocations: what a logout records so that no copy of a session it
//! took away can come back (an import, a login racing a log out
//! everywhere).
//!
//! Keys are the engine's own bytes in the backend's revocation store
//! (see [`Backend::revoke`](crate::Backend::revoke)):
//!
//! ```text
//! i ++ session id (32 bytes)          one session, by id
//! u ++ user (UTF-8)                   every session of a user created at or before it
//! m:longest-absolute-timeout-ms       not a revocation: how long they are kept
//! ```

use super::Engine;
use crate::backend::Backend;
use crate::config::Settings;
use crate::error::Result;
use crate::token::SessionId;

/// One session, by id: no record of this id may come back.
pub fn session_key(id: &SessionId) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = b'i';
    k[1..].copy_from_slice(id.as_bytes());
    k
}

/// Every session of a user created at or before the revocation.
pub fn user_key(user: &str) -> Vec<u8> {
    [&b"u"[..], user.as_bytes()].concat()
}

/// Not a revocation: the store's record of the longest absolute timeout
/// an engine has opened it with, kept in the revocations' own store
/// (whose `revoke` keeps the largest `at` it was given) and never
/// forgotten. Revocations must outlive every session they cover, and an
/// engine with shorter settings (the operator's tool, with defaults)
/// must not record or forget them sooner than the service would.
pub const HORIZON: &[u8] = b"m:longest-absolute-timeout-ms";

/// Reads the store's horizon, raising it to this engine's absolute
/// timeout first if that is longer.
pub fn horizon(backend: &dyn Backend, s: &Settings) -> Result<u64> {
    // Forever, for the horizon's own entry: a hundred years.
    const KEEP_MS: u64 = 100 * 365 * 24 * 3600 * 1000;
    let now = s.clock.now_ms();
    let stored = backend.revoked_at(HORIZON, now)?.unwrap_or(0);
    if stored < s.absolute_ms {
        backend.revoke(HORIZON, s.absolute_ms, now.saturating_add(KEEP_MS))?;
    }
    Ok(stored.max(s.absolute_ms))
}

impl Engine {
    /// Records that `id` was revoked, before it is deleted: an export taken
    /// earlier must not bring it back ([`Admin::import`](crate::Admin::import)).
    /// Kept for the longest absolute timeout any engine has used on this
    /// store, past which no record of it could be alive anyway.
    pub(super) fn revoke_session(&self, id: &SessionId, now: u64) -> Result<()> {
        let until = now.saturating_add(self.shared.horizon_ms);
        self.shared.backend.revoke(&session_key(id), now, until)
    }

    /// When `user` was last logged out everywhere, if that is still kept.
    pub(super) fn user_revoked_at(&self, user: &str) -> Result<Option<u64>> {
        self.shared
            .backend
            .revoked_at(&user_key(user), self.shared.now())
    }

    /// Whether `user` was logged out everywhere at or after `created`.
    pub(super) fn user_revoked_since(&self, user: &str, created: u64, now: u64) -> Result<bool> {
        Ok(self
            .shared
            .backend
            .revoked_at(&user_key(user), now)?
            .is_some_and(|at| created <= at))
    }

    /// After an id change: whether a log out everywhere of `user` covers
    /// the session, given the user's revocation as read before the change.
    /// It does if one was recorded during the change (whatever the clocks
    /// say), or one is later than the session's creation. A revocation in
    /// the very millisecond the session was created, and already there
    /// before the change, does not: it came first (a login right after a
    /// log out everywhere).
    pub(super) fn revoked_meanwhile(
        &self,
        user: &str,
        before: Option<u64>,
        created: u64,
    ) -> Result<bool> {
        Ok(match self.user_revoked_at(user)? {
            Some(at) => Some(at) != before || at > created,
            None => false,
        })
    }
}
