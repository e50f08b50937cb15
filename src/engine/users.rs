//! A user's sessions: listing them, logging them out everywhere, and
//! keeping each user under the per-user cap, a page of the user's index at
//! a time so that no number of sessions is ever held in memory at once.

use std::collections::{BTreeMap, BTreeSet};

use super::{Engine, Wait, check_user, revocation};
use crate::error::{Error, Result};
use crate::token::SessionId;

/// Ids read from a user's index at a time: per-user work never holds more.
const USER_PAGE: usize = 256;

/// One of a user's sessions, as listed by [`Engine::sessions_of`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session's id.
    pub id: SessionId,
    /// Created, ms since the Unix epoch.
    pub created_at: u64,
    /// Last seen, ms since the Unix epoch.
    pub last_seen: u64,
    /// Expires, ms since the Unix epoch.
    pub expires_at: u64,
}

impl Engine {
    /// Calls `each` with every id in `user`'s index, a page at a time, so
    /// that no number of sessions is ever held in memory at once.
    fn each_of_user(
        &self,
        user: &str,
        mut each: impl FnMut(SessionId) -> Result<()>,
    ) -> Result<()> {
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let page = self
                .shared
                .backend
                .user_sessions(user, cursor.as_deref(), USER_PAGE)?;
            for id in page.ids {
                each(id)?;
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// The live sessions of `user`, oldest first: at most
    /// [`Config::max_sessions_per_user`](crate::Config::max_sessions_per_user) of them, the newest. The user's
    /// index is read a page at a time, so memory stays bounded by that limit
    /// whatever the index holds.
    pub fn sessions_of(&self, user: &str) -> Result<Vec<SessionInfo>> {
        check_user(user)?;
        let now = self.shared.now();
        let cap = self.shared.settings.max_sessions_per_user;
        let mut newest: BTreeMap<(u64, SessionId), SessionInfo> = BTreeMap::new();
        self.each_of_user(user, |id| {
            let Some(s) = self.read(&id, now)? else {
                return Ok(());
            };
            if s.user() != Some(user) {
                return Ok(());
            }
            newest.insert(
                (s.created_at(), id),
                SessionInfo {
                    id,
                    created_at: s.created_at(),
                    last_seen: s.last_seen(),
                    expires_at: s.expires_at(),
                },
            );
            if newest.len() > cap {
                newest.pop_first();
            }
            Ok(())
        })?;
        Ok(newest.into_values().collect())
    }

    /// Destroys `user`'s oldest sessions beyond the per-user limit, never
    /// `keep` (the session just logged in). The index is counted first
    /// (cheap, no records read); only a user over the limit pays for reading
    /// the records, a page at a time, keeping the newest in a bounded set.
    pub(super) fn trim_user(&self, user: &str, keep: &SessionId, now: u64) -> Result<()> {
        let cap = self.shared.settings.max_sessions_per_user;
        let mut count = 0usize;
        self.each_of_user(user, |_| {
            count += 1;
            Ok(())
        })?;
        if count <= cap {
            return Ok(());
        }
        // The newest `cap - 1` others, besides `keep`.
        let room = cap.saturating_sub(1);
        let mut newest: BTreeSet<(u64, SessionId)> = BTreeSet::new();
        let mut evict: Vec<SessionId> = Vec::new();
        self.each_of_user(user, |id| {
            if id == *keep {
                return Ok(());
            }
            let created = match self.read(&id, now) {
                Ok(Some(s)) => s.created_at(),
                // Expired or gone: the sweeper's, not ours. A record that
                // does not decode is for check and repair; it must not make
                // a login fail.
                Ok(None) | Err(Error::Corrupt { .. }) => return Ok(()),
                Err(e) => return Err(e),
            };
            newest.insert((created, id));
            if newest.len() > room
                && let Some((_, oldest)) = newest.pop_first()
            {
                evict.push(oldest);
            }
            if evict.len() >= USER_PAGE {
                for id in evict.drain(..) {
                    self.revoke_session(&id, now)?;
                    let gone = self.shared.backend.delete(&id)?;
                    self.shared.meter.destroyed(u64::from(gone));
                }
            }
            Ok(())
        })?;
        for id in evict {
            self.revoke_session(&id, now)?;
            let gone = self.shared.backend.delete(&id)?;
            self.shared.meter.destroyed(u64::from(gone));
        }
        Ok(())
    }

    /// Deletes every session of `user` except `keep` ("log out everywhere
    /// else"); returns how many were deleted. It works a page of the user's
    /// index at a time, and returns once the deletions are durable, in
    /// either durability mode.
    pub fn destroy_user(&self, user: &str, keep: Option<&SessionId>) -> Result<usize> {
        check_user(user)?;
        self.shared.poison.check()?;
        // First the revocation, then the deletions: an import racing this
        // call either meets the revocation or is deleted by the walk.
        let now = self.shared.now();
        let until = now.saturating_add(self.shared.horizon_ms);
        self.shared
            .backend
            .revoke(&revocation::user_key(user), now, until)?;
        let mut n = 0;
        self.each_of_user(user, |id| {
            if Some(&id) == keep {
                return Ok(());
            }
            // Each id too, so no clock has to agree with this one's for an
            // old export of it to stay out.
            self.revoke_session(&id, now)?;
            if self.shared.backend.delete(&id)? {
                n += 1;
            }
            Ok(())
        })?;
        self.shared.meter.destroyed(n as u64);
        self.shared.after_write(Wait::Always)?;
        Ok(n)
    }
}
