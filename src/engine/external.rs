//! Records whose expiry the caller sets: what a store for another session
//! library (tower-sessions, `src/tower.rs`) needs of the engine. They are
//! ordinary records in the same trees, so the indexes, the crash check,
//! the sweeper, durability, the size limit and the operator's tool all
//! cover them; only the policy differs: no sliding expiry, no touch on
//! read, no id change at login. The caller writes the times it wants into
//! the [`Body`] (its `expires_at()` is the record's expiry).

use super::{Engine, Wait, check_user};
use crate::Durability;
use crate::backend::Outcome;
use crate::error::Result;
use crate::metrics::Load;
use crate::record::Body;
use crate::token::SessionId;

/// A live record as stored.
#[derive(Debug)]
pub(crate) struct Raw {
    /// Its version: a conditional write names it.
    pub version: u64,
    /// The user its index entry names.
    pub user: Option<String>,
    /// Its times and values.
    pub body: Body,
}

/// What [`Engine::write_raw`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// Stored, durable as configured.
    Stored,
    /// Not stored: a live record has the id (a create), or the stored
    /// version is not the expected one (a replace).
    Conflict,
    /// Not stored: the record to replace is gone or expired.
    Missing,
    /// Stored, then deleted again: a log out everywhere of its user was
    /// recorded while it was written (or in the same millisecond), and its
    /// walk of the user's index may have passed the record's place before
    /// the write landed. It wins, as it does over an engine login in the
    /// same race.
    Revoked,
}

impl Engine {
    /// The engine clock's now, ms since the Unix epoch.
    pub(crate) fn now_ms(&self) -> u64 {
        self.shared.now()
    }

    /// Whether the store is the sled store on local disk, whose reads and
    /// unsynced writes take microseconds; not a backend of unknown speed
    /// (Redis over the network, the caller's own).
    pub(crate) fn is_local(&self) -> bool {
        self.shared.local
    }

    /// Whether a write made now may wait for the disk: in strict mode, or
    /// once the backlog of unflushed writes reaches its bound. (A relaxed
    /// write racing others to that bound may still wait once.)
    pub(crate) fn write_may_wait(&self) -> bool {
        let s = &self.shared.settings;
        s.durability == Durability::Strict
            || self.shared.commit.unflushed() + 1 >= s.max_unflushed_writes as u64
    }

    /// The live record with this id, as stored (no touch). Counted as a
    /// load, hit or miss, if `counted` (a request's read, not a write's).
    pub(crate) fn read_raw(&self, id: &SessionId, counted: bool) -> Result<Option<Raw>> {
        let read = self.read(id, self.shared.now());
        if let Ok(found) = &read
            && counted
        {
            self.shared.meter.load(match found {
                Some(_) => Load::Hit,
                None => Load::Miss,
            });
        }
        Ok(read?.map(|s| Raw {
            version: s.version.unwrap_or_default(),
            user: s.user,
            body: s.body,
        }))
    }

    /// Writes `body` under `id` for `user`: a new record when `expected`
    /// is `None` (an expired record of the id counts as free), else a
    /// replacement of version `expected` (whose user was `stored_user`),
    /// never of a deleted or expired record. Durable as configured before
    /// it returns. Fails past the size limit ([`Error::TooLarge`]) or for
    /// a user the index cannot hold ([`Error::InvalidUser`]), writing
    /// nothing.
    ///
    /// [`Error::TooLarge`]: crate::Error::TooLarge
    /// [`Error::InvalidUser`]: crate::Error::InvalidUser
    pub(crate) fn write_raw(
        &self,
        id: &SessionId,
        expected: Option<u64>,
        stored_user: Option<&str>,
        user: Option<&str>,
        body: &Body,
    ) -> Result<Written> {
        let shared = &self.shared;
        if let Some(u) = user {
            check_user(u)?;
        }
        shared.poison.check()?;
        let version = expected.map_or(1, |v| v + 1);
        let value = shared.encode(version, user, body)?;
        // A record that joins a user's index now may slip past a log out
        // everywhere walking that index: the user's revocation before the
        // write tells whether one ran into it (see `Written::Revoked`). A
        // record already in the index needs no such care: a log out
        // everywhere deletes it, and the version check then fails.
        let joins = user.filter(|u| stored_user != Some(*u));
        let began = shared.now();
        let revoked_before = match joins {
            Some(u) => self.user_revoked_at(u)?,
            None => None,
        };
        let now = shared.now();
        match shared.backend.put(id, expected, &value, now)? {
            Outcome::Written => shared.meter.saved(expected.is_none()),
            Outcome::Conflict => {
                if expected.is_some() {
                    shared.meter.conflict();
                }
                return Ok(Written::Conflict);
            }
            Outcome::Missing => return Ok(Written::Missing),
        }
        // Revoked if a log out everywhere of the user was recorded during
        // the write, or is stamped in or after the millisecond the write
        // began (two in one millisecond leave the stamp unchanged; a tie
        // goes to the log out everywhere).
        if let Some(u) = joins
            && let Some(after) = self.user_revoked_at(u)?
            && (Some(after) != revoked_before || after >= began)
        {
            self.revoke_session(id, now)?;
            let gone = shared.backend.delete(id)?;
            shared.meter.destroyed(u64::from(gone));
            shared.after_write(Wait::Always)?;
            return Ok(Written::Revoked);
        }
        shared.after_write(Wait::AsConfigured)?;
        Ok(Written::Stored)
    }
}
