//! Repair on Redis: each step of [`fix`](super::super::Maintenance::fix)
//! WATCHes what it reads and queues its writes in one MULTI/EXEC, which the
//! server refuses if a watched key changed meanwhile.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redis::{Commands as _, Connection};

use super::super::keys;
use super::super::ops::{self, Tree, Trees};
use super::{RedisBackend, b64};
use crate::error::Error;
use crate::token::SessionId;

pub(super) enum FixError {
    Redis(redis::RedisError),
    Engine(Error),
}

/// One repair step: reads WATCH what they read; writes queue up and run in
/// one MULTI/EXEC, which the server refuses if a watched key changed.
pub(super) struct Fix<'a> {
    pub backend: &'a RedisBackend,
    pub conn: std::cell::RefCell<&'a mut Connection>,
    pub writes: std::cell::RefCell<redis::Pipeline>,
}

impl Fix<'_> {
    fn watched_hget(&self, key: &str, field: &str) -> Result<Option<Vec<u8>>, FixError> {
        let mut c = self.conn.borrow_mut();
        redis::cmd("WATCH")
            .arg(key)
            .query::<()>(&mut **c)
            .map_err(FixError::Redis)?;
        c.hget(key, field).map_err(FixError::Redis)
    }

    fn raw_skey(&self, key: &[u8]) -> Vec<u8> {
        let mut k = format!("{}s:", self.backend.prefix).into_bytes();
        k.extend_from_slice(key);
        k
    }
}

impl Trees for Fix<'_> {
    type Error = FixError;
    type Bytes = Vec<u8>;

    fn abort(e: Error) -> FixError {
        FixError::Engine(e)
    }

    fn session(&self, id: &SessionId) -> Result<Option<Vec<u8>>, FixError> {
        self.watched_hget(&self.backend.skey(id), "d")
    }

    fn set_session(&self, id: &SessionId, value: &[u8]) -> Result<(), FixError> {
        // Repair writes back bytes as found: their header is all it has.
        let (m, _) =
            crate::record::Meta::parse(value).map_err(|e| FixError::Engine(ops::corrupt(id, e)))?;
        let (v, u, e) = (
            m.version.to_string(),
            m.user.unwrap_or("").to_owned(),
            m.expires_at.to_string(),
        );
        self.writes
            .borrow_mut()
            .hset_multiple(self.backend.skey(id), &[("v", v), ("u", u), ("e", e)])
            .ignore()
            .hset(self.backend.skey(id), "d", value)
            .ignore();
        Ok(())
    }

    fn remove_session(&self, id: &SessionId) -> Result<(), FixError> {
        self.writes.borrow_mut().del(self.backend.skey(id)).ignore();
        Ok(())
    }

    fn set_expiry(&self, key: [u8; 40]) -> Result<(), FixError> {
        if let Some((at, id)) = keys::parse_expiry(&key) {
            self.writes
                .borrow_mut()
                .zadd(self.backend.xkey(), b64(&id), at)
                .ignore();
        }
        Ok(())
    }

    fn remove_expiry(&self, key: [u8; 40]) -> Result<(), FixError> {
        if let Some((_, id)) = keys::parse_expiry(&key) {
            self.writes
                .borrow_mut()
                .zrem(self.backend.xkey(), b64(&id))
                .ignore();
        }
        Ok(())
    }

    fn set_user(&self, key: Vec<u8>) -> Result<(), FixError> {
        if let Some((user, id)) = keys::parse_user(&key) {
            let e = self
                .watched_hget(&self.backend.skey(&id), "e")?
                .and_then(|e| String::from_utf8(e).ok()?.parse::<u64>().ok())
                .unwrap_or(0);
            self.writes
                .borrow_mut()
                .zadd(self.backend.ukey(&user), b64(&id), e)
                .ignore();
        }
        Ok(())
    }

    fn remove_user(&self, key: Vec<u8>) -> Result<(), FixError> {
        if let Some((user, id)) = keys::parse_user(&key) {
            self.writes
                .borrow_mut()
                .zrem(self.backend.ukey(&user), b64(&id))
                .ignore();
        }
        Ok(())
    }

    fn remove_raw(&self, tree: Tree, key: &[u8]) -> Result<(), FixError> {
        let mut w = self.writes.borrow_mut();
        match tree {
            Tree::Sessions => {
                w.del(self.raw_skey(key)).ignore();
            }
            Tree::Expiry => {
                w.zrem(self.backend.xkey(), key).ignore();
            }
            Tree::Users => {
                // user_prefix(user) ++ member: a u16 length, the user, the rest.
                if let Some((len, rest)) = key.split_first_chunk::<2>() {
                    let n = usize::from(u16::from_be_bytes(*len));
                    if rest.len() >= n {
                        let (user, member) = rest.split_at(n);
                        let mut k = format!("{}u:", self.backend.prefix).into_bytes();
                        k.extend_from_slice(user);
                        w.zrem(k, member).ignore();
                    }
                }
            }
        }
        Ok(())
    }

    fn session_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, FixError> {
        let k = self.raw_skey(key);
        let mut c = self.conn.borrow_mut();
        redis::cmd("WATCH")
            .arg(&k)
            .query::<()>(&mut **c)
            .map_err(FixError::Redis)?;
        c.hget(k, "d").map_err(FixError::Redis)
    }

    fn quarantine(&self, key: &[u8], value: &[u8]) -> Result<(), FixError> {
        let name = match <[u8; 32]>::try_from(key) {
            Ok(id) => b64(&SessionId::from_bytes(id)),
            Err(_) => URL_SAFE_NO_PAD.encode(key),
        };
        self.writes
            .borrow_mut()
            .hset(format!("{}q:{name}", self.backend.prefix), "d", value)
            .ignore();
        Ok(())
    }
    fn may_lag(&self) -> bool {
        // Redis keeps its expiry index by score; its records never lag.
        false
    }
}
