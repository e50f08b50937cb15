//! One request's session: what the layer and the request's handles share.
//!
//! It starts as the id the cookie names, verified but not looked up. The
//! first [`SessionHandle`](super::SessionHandle) extracted loads it (once,
//! however many are taken); after the handler, the layer stores what
//! changed. A request that never takes a handle reads and writes nothing.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::OnceCell;

use super::blocking;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::session::Session;
use crate::token::SessionId;

/// One request's session, shared (in an `Arc`) by the layer and the
/// handles of the request.
#[derive(Debug)]
pub(super) struct RequestSession {
    engine: Arc<Engine>,
    /// The id the request's cookie names: its signature verified, its
    /// session not yet looked up.
    cookie_id: Option<SessionId>,
    /// Set once the session was looked up, whatever was found. A load that
    /// failed leaves it unset: the request then stores nothing.
    loaded: OnceCell<()>,
    state: Mutex<State>,
}

/// What the request did to its session, once loaded.
#[derive(Debug, Default)]
pub(super) struct State {
    /// The handler's working copy; `None` until one exists. It knows its
    /// own unsaved changes, which a merge after a conflict replays.
    pub(super) current: Option<Session>,
    /// Logged out (or out everywhere) during this request.
    pub(super) destroyed: bool,
    /// Bumped by every change a handle makes, so an `update` can tell
    /// whether the copy changed while it ran.
    pub(super) changes: u64,
}

impl RequestSession {
    pub(super) fn new(engine: Arc<Engine>, cookie_id: Option<SessionId>) -> Self {
        Self {
            engine,
            cookie_id,
            loaded: OnceCell::new(),
            state: Mutex::new(State::default()),
        }
    }

    pub(super) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Looks the session up, on the blocking pool, unless that was done:
    /// the only read a request makes, and the touch (a write) that a read
    /// past the touch threshold brings.
    pub(super) async fn load(&self) -> Result<()> {
        self.loaded
            .get_or_try_init(|| async {
                let found = match self.cookie_id {
                    Some(id) => {
                        let engine = self.engine.clone();
                        blocking(move || engine.load_id(&id)).await?
                    }
                    None => None,
                };
                self.lock().current = found;
                Ok::<_, Error>(())
            })
            .await
            .map(|_| ())
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A handler that panicked mid-change leaves a copy that is merely
        // unsaved-in-part; the layer still decides from what is there.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores what the request changed; returns the `Set-Cookie` value to
    /// send, if any. Nothing at all for a session never loaded: nothing
    /// was read, so nothing changed, and the cookie is left as it is (even
    /// one naming a session that has expired: nobody looked).
    pub(super) async fn store(&self) -> Result<Option<String>> {
        if !self.loaded.initialized() {
            return Ok(None);
        }
        let engine = &self.engine;
        let (current, destroyed) = {
            let mut st = self.lock();
            (st.current.take(), st.destroyed)
        };
        if destroyed {
            return Ok(Some(engine.removal_cookie()));
        }
        let Some(mut current) = current else {
            // A cookie that named no live session: clear it.
            return Ok(self.cookie_id.map(|_| engine.removal_cookie()));
        };
        let e = engine.clone();
        let saved = blocking(move || match e.save_merging(&mut current) {
            Ok(()) => Ok(Some(current)),
            Err(Error::Gone { .. }) => Ok(None),
            Err(other) => Err(other),
        })
        .await?;
        Ok(match saved {
            None => Some(engine.removal_cookie()),
            // Still empty, so never stored: nothing for the browser to hold.
            Some(s) if s.is_new() => None,
            // A new id (made, or logged in, during the request), or a touch
            // that renews a persistent cookie's lifetime.
            Some(s) if self.cookie_id.as_ref() != Some(s.id()) || s.was_touched() => {
                Some(engine.set_cookie(&s))
            }
            Some(_) => None,
        })
    }
}
