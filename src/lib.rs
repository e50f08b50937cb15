//! sessiondb: an embedded, crash-safe HTTP session engine.
//!
//! A web service links sessiondb in, points it at a directory, and keeps its
//! server-side sessions there: no Redis, no memcached, no database server.
//! The browser holds only a signed token naming its session.
//!
//! # Status
//!
//! This release holds the layer that faces the network first: session ids,
//! signing keys, the signed token, and the `Cookie` / `Set-Cookie` codec. The
//! storage engine (sled trees, sweeper, durability) builds on it next.
//!
//! # Quick start
//!
//! ```
//! use std::time::Duration;
//! use sessiondb::{CookieConfig, Key, KeyRing, Purpose, SessionId};
//!
//! # fn main() -> sessiondb::Result<()> {
//! // One key signs; keep it secret and stable across restarts.
//! let ring = KeyRing::new(1, Key::generate()?);
//! let cookies = CookieConfig::default();
//!
//! // A new session: a random id, signed into a token, sent as a cookie.
//! let id = SessionId::generate()?;
//! let token = ring.sign(Purpose::Session, &id);
//! let set_cookie = cookies.set_cookie(&token, Duration::from_secs(30 * 60));
//! assert!(set_cookie.starts_with("__Host-sessiondb="));
//! assert!(set_cookie.contains("; HttpOnly"));
//!
//! // The next request: find and verify the session cookie.
//! let header = format!("theme=dark; {}", set_cookie.split(';').next().unwrap_or(""));
//! assert_eq!(cookies.find_session(&ring, [header.as_bytes()]), Some(id));
//!
//! // A forged or tampered cookie is simply "no session".
//! assert_eq!(cookies.find_session(&ring, [&b"__Host-sessiondb=forged"[..]]), None);
//! # Ok(())
//! # }
//! ```
//!
//! # Tokens
//!
//! A token is 92 base64url characters: a format version, the id of the key
//! that signed it, the 32-byte session id, and an HMAC-SHA256 tag over all
//! three and the token's [`Purpose`]. Verification is constant-time and needs
//! no storage, so a forged cookie costs one HMAC at most and never a disk
//! read. A [`KeyRing`] signs with its newest key and verifies with older ones
//! until they are removed. The byte layout is documented in the `token`
//! module's source.
//!
//! # Cookies
//!
//! [`CookieConfig`] is safe by default: `HttpOnly`, `Secure`, `SameSite=Lax`,
//! `Path=/`, and the `__Host-` prefix whenever its rules allow. Settings that
//! would weaken or break the header are refused by [`CookieBuilder::build`].
//! Reading a request's `Cookie` headers is bounded work for any input: see
//! [`MAX_SCAN_BYTES`] and [`MAX_VERIFY`].

// Library code never panics on a failed Result; tests may.
#![cfg_attr(not(test), deny(clippy::expect_used))]

mod backend;
mod clock;
mod commit;
mod config;
mod cookie;
mod engine;
mod error;
mod record;
mod sweeper;
mod token;

pub use backend::memory::MemoryBackend;
pub use backend::{Backend, BackendStats, Outcome, Violation};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, Durability};
pub use cookie::{
    CookieBuilder, CookieConfig, HostPrefix, MAX_SCAN_BYTES, MAX_VERIFY, Pairs, SameSite, pairs,
};
pub use engine::{Engine, Session, SessionInfo, Stats};
pub use error::{BoxError, Error, Result};
pub use record::FormatError;
pub use token::{Key, KeyRing, Purpose, SessionId, TOKEN_VERSION, Token};

/// The README's examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
