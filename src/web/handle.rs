//! The session as a handler sees it: [`SessionHandle`], and the extractor
//! that loads it.

use std::sync::{Arc, MutexGuard};

use axum::extract::FromRequestParts;
use http::request::Parts;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::blocking;
use super::error::WebError;
use super::request::{RequestSession, State};
use crate::engine::{Engine, SessionInfo};
use crate::error::{Error, Result};
use crate::session::Session;
use crate::token::SessionId;

/// The request's session, as a handler sees it.
///
/// Take it as a handler argument (the layer must be installed; otherwise
/// the extractor answers 500 and logs why). Taking it is what loads the
/// session: a handler that does not take one costs no storage read (see
/// the [module docs](super#loading-is-lazy)). Reads and writes of values
/// work on the request's copy and are stored by the layer when the handler
/// returns; the `async` methods reach the store at once.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    request: Arc<RequestSession>,
}

impl<S: Send + Sync> FromRequestParts<S> for SessionHandle {
    type Rejection = WebError;

    /// Loads the request's session (on tokio's blocking pool), unless a
    /// handle taken before did; a storage error is the rejection (a 500).
    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        let request = parts
            .extensions
            .get::<Arc<RequestSession>>()
            .cloned()
            .ok_or_else(|| {
                WebError(Error::InvalidConfig {
                    field: "layer",
                    reason: "SessionHandle used on a route without SessionLayer".into(),
                })
            })?;
        request.load().await?;
        Ok(Self { request })
    }
}

impl SessionHandle {
    fn state(&self) -> MutexGuard<'_, State> {
        self.request.lock()
    }

    /// The state, to change it.
    fn change(&self) -> MutexGuard<'_, State> {
        let mut st = self.request.lock();
        st.changes += 1;
        st
    }

    /// The engine behind the layer.
    pub fn engine(&self) -> &Arc<Engine> {
        self.request.engine()
    }

    /// `true` if the request has a live session (loaded, or made during it).
    pub fn exists(&self) -> bool {
        self.state().current.is_some()
    }

    /// The session's id, if there is a session.
    pub fn id(&self) -> Option<SessionId> {
        self.state().current.as_ref().map(|s| *s.id())
    }

    /// The user the session belongs to.
    pub fn user(&self) -> Option<String> {
        self.state()
            .current
            .as_ref()
            .and_then(|s| s.user().map(str::to_owned))
    }

    /// When the session expires unless seen again, ms since the Unix epoch.
    pub fn expires_at(&self) -> Option<u64> {
        self.state().current.as_ref().map(Session::expires_at)
    }

    /// When the session was created, ms since the Unix epoch.
    pub fn created_at(&self) -> Option<u64> {
        self.state().current.as_ref().map(Session::created_at)
    }

    /// The value named `key`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match &self.state().current {
            Some(s) => s.get(key),
            None => Ok(None),
        }
    }

    /// Sets the value named `key`, making a session if there is none.
    pub fn insert<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let mut st = self.change();
        if st.current.is_none() {
            st.current = Some(self.engine().create()?);
            st.destroyed = false;
        }
        match st.current.as_mut() {
            Some(s) => s.insert(key, value),
            None => Ok(()),
        }
    }

    /// Removes the value named `key`; `true` if it was there.
    pub fn remove(&self, key: &str) -> bool {
        self.change()
            .current
            .as_mut()
            .is_some_and(|s| s.remove(key))
    }

    /// Reads and removes the value named `key` (a flash message).
    pub fn take<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.change().current.as_mut() {
            Some(s) => s.take(key),
            None => Ok(None),
        }
    }

    /// A CSRF token of this session, if there is one (see the module
    /// docs): masked afresh on every call, and changed when the id is, at
    /// login. Fails only if the OS random number generator does.
    pub fn csrf_token(&self) -> Result<Option<String>> {
        self.id()
            .map(|id| self.engine().csrf_token(&id))
            .transpose()
    }

    /// Logs `user` in through [`Engine::login`]: a new id carrying the user
    /// (the old one stops working), durable before it returns. See there
    /// for which values carry over. On an error the request's session is
    /// exactly as it was before the call.
    pub async fn login(&self, user: &str) -> Result<()> {
        let before = self.state().current.clone();
        let mut session = match before {
            Some(s) => s,
            None => self.engine().create()?,
        };
        let (e, user) = (self.engine().clone(), user.to_owned());
        let session = blocking(move || e.login(&mut session, &user).map(|()| session)).await?;
        let mut st = self.change();
        st.current = Some(session);
        st.destroyed = false;
        Ok(())
    }

    /// Destroys the session; the response removes the cookie. `true` if
    /// there was a stored session.
    pub async fn logout(&self) -> Result<bool> {
        let id = {
            let mut st = self.change();
            st.destroyed = true;
            st.current.take().map(|s| *s.id())
        };
        match id {
            Some(id) => {
                let e = self.engine().clone();
                blocking(move || e.destroy_id(&id)).await
            }
            None => Ok(false),
        }
    }

    /// Destroys every session of this session's user, this one included;
    /// returns how many. No user, no change (`Ok(0)`).
    pub async fn logout_everywhere(&self) -> Result<usize> {
        let Some(user) = self.user() else {
            return Ok(0);
        };
        {
            let mut st = self.change();
            st.destroyed = true;
            st.current = None;
        }
        let e = self.engine().clone();
        blocking(move || e.destroy_user(&user, None)).await
    }

    /// The live sessions of this session's user (empty without a user).
    pub async fn user_sessions(&self) -> Result<Vec<SessionInfo>> {
        let Some(user) = self.user() else {
            return Ok(Vec::new());
        };
        let e = self.engine().clone();
        blocking(move || e.sessions_of(&user)).await
    }

    /// Reads, changes and stores the session at once, retried by the engine
    /// when another request changed it in between: the way to change one
    /// value from its old one (a counter). `f` may run more than once.
    /// `Ok(None)` if there is no stored session.
    ///
    /// This request's unsaved changes are stored first (merged as at the end
    /// of a request), so `f` sees them, and the request's copy is then the
    /// one `f`'s run stored.
    pub async fn update<R, F>(&self, f: F) -> Result<Option<R>>
    where
        F: FnMut(&mut Session) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (mut mine, seen) = {
            let st = self.state();
            match st.current.as_ref().filter(|s| !s.is_new()) {
                Some(s) => (s.clone(), st.changes),
                None => return Ok(None),
            }
        };
        let e = self.engine().clone();
        let updated = blocking(move || {
            match e.save_merging(&mut mine) {
                Ok(()) => {}
                Err(Error::Gone { .. }) => return Ok(None),
                Err(other) => return Err(other),
            }
            e.update(mine.id(), f)
        })
        .await?;
        let mut st = self.state();
        if st.changes != seen {
            // The handle changed the copy while this ran (a concurrent
            // future of the same request): keep that copy; the save at the
            // end of the request merges it over what this stored.
            return Ok(updated.map(|(_, out)| out));
        }
        st.changes += 1;
        Ok(match updated {
            Some((saved, out)) => {
                st.current = Some(saved);
                Some(out)
            }
            None => {
                st.current = None;
                None
            }
        })
    }
}
