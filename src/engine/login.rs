//! Logging in and changing a session's id: the one way a session gets a
//! user, and the defence against session fixation.

use super::{Engine, UPDATE_RETRIES, Wait, check_user};
use crate::backend::Outcome;
use crate::error::{Error, Result};
use crate::record::Body;
use crate::session::Session;
use crate::token::SessionId;

impl Engine {
    /// Gives the session a new id, keeping its data (and storing its pending
    /// changes); the old id stops working in the same atomic step. Call it
    /// whenever privileges change, so an id planted before (session
    /// fixation) is worthless after it; [`login`](Self::login) does.
    ///
    /// If another request stored the session in between, it retries on the
    /// fresh copy with this copy's unsaved values laid over it, so an
    /// unrelated write never makes it fail. It returns once the change is
    /// durable, in either durability mode: after a crash the old id must not
    /// work again. On failure `session` is left exactly as it was:
    /// [`Error::Gone`] if the session was destroyed or expired meanwhile.
    pub fn regenerate(&self, session: &mut Session) -> Result<()> {
        self.change_id(session, None)
    }

    /// Logs `user` in: a new id carrying the user, in one atomic step with
    /// the old id's deletion, durable before it returns (in either
    /// durability mode). Either the new id carries the user, or nothing
    /// stored changed and `session` is exactly as it was (an error).
    ///
    /// What the new session holds:
    /// - from an anonymous session, or one of the same `user`: its values,
    ///   this copy's unsaved ones included (a cart survives login);
    /// - from a session of a *different* user: nothing. It starts empty
    ///   (Django's `flush`), so no value of one account leaks into
    ///   another; set the new session's values after this call.
    ///
    /// Either way the session's times start again: created now, with a
    /// fresh absolute deadline. Races are retried as in
    /// [`regenerate`](Self::regenerate). If the user then has more than
    /// [`Config::max_sessions_per_user`](crate::Config::max_sessions_per_user) sessions, their oldest are
    /// destroyed (never this one).
    pub fn login(&self, session: &mut Session, user: &str) -> Result<()> {
        check_user(user)?;
        self.change_id(session, Some(user))
    }

    /// The id change behind [`regenerate`](Self::regenerate) and
    /// [`login`](Self::login). It works on copies and writes `session` back
    /// only once the new id is durable.
    fn change_id(&self, session: &mut Session, login: Option<&str>) -> Result<()> {
        let shared = &self.shared;
        shared.poison.check()?;
        // In-process updaters of the old id wait their turn, so they cannot
        // starve this rename with conflicts; released once it is done.
        let turn = self.stripe(&session.id);
        // The old id is revoked before it is renamed away, as every revoker
        // does: an import racing this call then meets the revocation once
        // the old id is gone, and a crash between the two leaves only a
        // revocation of a live id (which blocks nothing but importing it).
        // The old id's revocation goes with the first rename (one round
        // trip where the store can, revoke-then-rename where it cannot);
        // a session never stored has nothing to revoke.
        let old_key = super::revocation::session_key(&session.id);
        let revoked_at = shared.now();
        let mut revocation = session.version.is_some().then(|| {
            crate::backend::Revocation::new(
                &old_key,
                revoked_at,
                revoked_at.saturating_add(shared.horizon_ms),
            )
        });
        // The user the new id will carry, and that user's revocation as it
        // stands before the change (see the check after the rename).
        let user = login.or(session.user.as_deref()).map(str::to_owned);
        let revoked_before = match &user {
            Some(u) => self.user_revoked_at(u)?,
            None => None,
        };
        // `from` is the copy whose stored version the rename expects: the
        // caller's, then after a conflict the fresh stored one with the
        // caller's unsaved values replayed over it.
        let mut from = session.clone();
        for _ in 0..UPDATE_RETRIES {
            let now = shared.now();
            let mut next = from.clone();
            next.id = SessionId::generate()?;
            next.body.last_seen_ms = next.body.last_seen_ms.max(now);
            if let Some(user) = login {
                if next.user.as_deref().is_some_and(|u| u != user) {
                    // Another account's session: nothing of it carries over.
                    next.pending.clear();
                    next.body.data.clear();
                }
                let data = std::mem::take(&mut next.body.data);
                next.body = Body {
                    data,
                    ..self.fresh_body(now)
                };
                next.user = Some(user.to_owned());
            }
            let version = from.version.map_or(1, |v| v + 1);
            let outcome = match from.version {
                // Never stored and still empty: a new id is all it takes.
                None if next.is_empty() => Outcome::Written,
                None => {
                    let value = shared.encode(version, next.user.as_deref(), &next.body)?;
                    // `next.id` was drawn from the CSPRNG just above.
                    shared.backend.put_new(&next.id, &value, now)?
                }
                Some(expected) => {
                    let value = shared.encode(version, next.user.as_deref(), &next.body)?;
                    shared.backend.rename_revoking(
                        &from.id,
                        expected,
                        &next.id,
                        &value,
                        now,
                        revocation.take(),
                    )?
                }
            };
            match outcome {
                Outcome::Written => {
                    if from.version.is_some() || !next.is_empty() {
                        shared.meter.saved(true);
                    }
                }
                // A fresh id that is taken: astronomically unlikely; draw again.
                Outcome::Conflict if from.version.is_none() => continue,
                Outcome::Conflict => {
                    // Another request stored the session in between.
                    let Some(mut fresh) = self.read(&from.id, now)? else {
                        return Err(Error::Gone {
                            id_hint: from.id.hint(),
                        });
                    };
                    session.replay_pending(&mut fresh);
                    from = fresh;
                    continue;
                }
                Outcome::Missing => {
                    return Err(Error::Gone {
                        id_hint: from.id.hint(),
                    });
                }
            }
            let stored = !(from.version.is_none() && next.is_empty());
            if stored {
                next.stored_at(version);
            }
            drop(turn);
            next.renewed = true;
            next.touched = false;
            if let Some(user) = user.as_deref()
                && self.revoked_meanwhile(user, revoked_before, next.body.created_ms)?
            {
                // A log out everywhere covers this session, and its walk of
                // the user's index may have passed the new id's place before
                // the rename landed: it wins.
                self.revoke_session(&next.id, now)?;
                let gone = shared.backend.delete(&next.id)?;
                shared.meter.destroyed(u64::from(gone));
                shared.after_write(Wait::Always)?;
                return Err(Error::Gone {
                    id_hint: from.id.hint(),
                });
            }
            if let Some(user) = login
                && let Err(e) = self.trim_user(user, &next.id, now)
            {
                // The login itself is done; the limit is upkeep.
                tracing::warn!(error = %e, "could not log out a user's oldest sessions");
            }
            if stored {
                shared.after_write(Wait::Always)?;
            }
            *session = next;
            return Ok(());
        }
        Err(Error::Conflict {
            id_hint: session.id.hint(),
        })
    }
}
