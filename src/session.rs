//! One session, as a request sees it: a copy of the stored record that
//! remembers what changed since it was read.
//!
//! The engine loads, saves and renames sessions; this module holds what a
//! copy knows about itself. Its fields are the engine's to set
//! (`pub(crate)`), and only the engine sets them.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::record::{self, Body};
use crate::token::SessionId;

/// One session, as loaded or created. Change it, then [`Engine::save`](crate::Engine::save) it.
///
/// A `Session` is a copy: two requests holding copies of one session cannot
/// both save changes; the second gets [`Error::Conflict`](crate::Error::Conflict) (see
/// [`Engine::update`](crate::Engine::update) for the retrying form).
///
/// Its user is set only by [`Engine::login`](crate::Engine::login), which also changes the id, and
/// removed only by destroying the session: nothing else changes who a
/// session belongs to.
///
/// `Debug` shows the id's hint and counts, never the values or the user.
#[derive(Clone)]
pub struct Session {
    pub(crate) id: SessionId,
    /// The stored version this copy was read at; `None` if never stored.
    pub(crate) version: Option<u64>,
    pub(crate) user: Option<String>,
    pub(crate) body: Body,
    /// Values set (`Some`) or removed (`None`) since this copy was read or
    /// last stored: what a retry after a conflict lays over the fresh copy.
    pub(crate) pending: BTreeMap<String, Option<Vec<u8>>>,
    pub(crate) changed: bool,
    /// The id changed since the browser last got a cookie.
    pub(crate) renewed: bool,
    /// This load moved the last-seen time (the touch threshold had passed),
    /// so a persistent cookie's lifetime can be renewed too.
    pub(crate) touched: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("version", &self.version)
            .field("has_user", &self.user.is_some())
            .field("values", &self.body.data.len())
            .field("pending", &self.pending.len())
            .field("changed", &self.changed)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The session's id.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// `true` until the session is first stored.
    pub fn is_new(&self) -> bool {
        self.version.is_none()
    }

    /// `true` if the session has changes not yet saved.
    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// `true` if the browser needs a new cookie: the session is new or its
    /// id changed ([`Engine::regenerate`](crate::Engine::regenerate), [`Engine::login`](crate::Engine::login)).
    pub fn needs_cookie(&self) -> bool {
        self.renewed
    }

    /// `true` if the session holds no values and no user.
    pub fn is_empty(&self) -> bool {
        self.body.data.is_empty() && self.user.is_none()
    }

    /// `true` if loading this session moved its last-seen time forward
    /// (and wrote it): the moment to renew a persistent cookie's Max-Age.
    pub fn was_touched(&self) -> bool {
        self.touched
    }

    /// The user this session belongs to.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// When the session was created, ms since the Unix epoch.
    pub fn created_at(&self) -> u64 {
        self.body.created_ms
    }

    /// When the session was last seen, ms since the Unix epoch (as of the
    /// last write; reads within the touch threshold do not move it).
    pub fn last_seen(&self) -> u64 {
        self.body.last_seen_ms
    }

    /// When the session expires unless seen again, ms since the Unix epoch.
    pub fn expires_at(&self) -> u64 {
        self.body.expires_at()
    }

    /// The value named `key`, decoded as `T`; `None` if absent.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        decode_named(&self.body.data, key)
    }

    /// Sets the value named `key`.
    pub fn insert<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<()> {
        let bytes = record::encode_value(value).map_err(|e| Error::Encode {
            key: key.to_owned(),
            source: Box::new(e),
        })?;
        self.set_raw(key, Some(&bytes));
        Ok(())
    }

    /// Removes the value named `key`; `true` if it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        let there = self.body.data.contains_key(key);
        self.set_raw(key, None);
        there
    }

    /// Reads and removes the value named `key`: a flash message, shown once.
    /// The removal is stored by the next save.
    pub fn take<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>> {
        let value = self.get(key)?;
        self.remove(key);
        Ok(value)
    }

    /// The names of the values held.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.body.data.keys().map(String::as_str)
    }

    /// Sets (`Some`) or removes (`None`) an encoded value, noting it as
    /// pending when it changes anything.
    pub(crate) fn set_raw(&mut self, key: &str, bytes: Option<&[u8]>) {
        let changed = match bytes {
            Some(b) if self.body.data.get(key).map(Vec::as_slice) != Some(b) => {
                self.body.data.insert(key.to_owned(), b.to_vec());
                true
            }
            Some(_) => false,
            None => self.body.data.remove(key).is_some(),
        };
        if changed {
            self.pending
                .insert(key.to_owned(), bytes.map(<[u8]>::to_vec));
            self.changed = true;
        }
    }

    /// Lays this copy's unsaved changes (values set or removed since it was
    /// read) over `onto`, a fresher copy of the same session. Only values:
    /// the user and the id are never carried from one copy to another.
    pub(crate) fn replay_pending(&self, onto: &mut Session) {
        for (key, value) in &self.pending {
            onto.set_raw(key, value.as_deref());
        }
    }

    /// Marks the copy as stored at `version`.
    pub(crate) fn stored_at(&mut self, version: u64) {
        self.version = Some(version);
        self.pending.clear();
        self.changed = false;
    }
}

/// The value named `key` in a session's data, decoded as `T`.
pub(crate) fn decode_named<T: DeserializeOwned>(
    data: &BTreeMap<String, Vec<u8>>,
    key: &str,
) -> Result<Option<T>> {
    let Some(bytes) = data.get(key) else {
        return Ok(None);
    };
    record::decode_value(bytes)
        .map(Some)
        .map_err(|e| Error::Decode {
            key: key.to_owned(),
            source: Box::new(e),
        })
}
