//! axum / tower integration (feature `axum`).
//!
//! [`SessionLayer`] wraps a service: before the handler it verifies the
//! request's session cookie and loads the session (off the async workers,
//! on tokio's blocking pool); after it, it stores what the handler changed
//! and sets or clears the cookie. Handlers take a [`SessionHandle`]:
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use sessiondb::web::{SessionHandle, SessionLayer, WebError};
//!
//! async fn visits(session: SessionHandle) -> Result<String, WebError> {
//!     let n: u64 = session.get("visits")?.unwrap_or(0) + 1;
//!     session.insert("visits", &n)?;
//!     Ok(format!("visit {n}"))
//! }
//!
//! # fn app(engine: Arc<sessiondb::Engine>) -> Router {
//! Router::new()
//!     .route("/", get(visits))
//!     .layer(SessionLayer::new(engine).csrf_guard(true))
//! # }
//! ```
//!
//! # What is written, and when
//! - Nothing for a request whose session did not change (a read past the
//!   engine's touch threshold writes the new last-seen time, as
//!   [`Engine::load`](crate::Engine::load) does).
//! - A new session is stored, and its cookie set, only once it holds a
//!   value or a user: visitors who never get one cost no disk.
//! - [`SessionHandle::login`], [`logout`](SessionHandle::logout),
//!   [`logout_everywhere`](SessionHandle::logout_everywhere) and
//!   [`update`](SessionHandle::update) reach the store when called, so a
//!   handler can answer with their outcome.
//!
//! # Two requests changing one session at once
//! Each request works on its own copy, and the layer stores it at the end
//! with [`Engine::save_merging`](crate::Engine::save_merging): when another request stored the session
//! in between, the engine lays this request's changes over the newer copy
//! key by key (the values it set, the values it removed) and saves again.
//! A merge never changes who a session belongs to: only
//! [`SessionHandle::login`] (a new id) and logging out do. Both requests'
//! writes survive; where both set the same key, the request that finished
//! last wins. A read-modify-write of one value (a counter) must use
//! [`SessionHandle::update`], which the engine retries on conflict, so N
//! concurrent increments end at N. If the session was destroyed in between
//! (a logout elsewhere), this request's changes are dropped rather than
//! bringing it back, and the response clears the cookie.
//!
//! # CSRF
//! The guard is on by default ([`SessionLayer::csrf_guard`] turns it off).
//! For every method but GET, HEAD, OPTIONS and TRACE it refuses, with a 403
//! and without calling the handler:
//! - a request whose `Sec-Fetch-Site` is `cross-site`, or whose `Origin`
//!   is not the request's own (its `Host`) or one named by
//!   [`SessionLayer::trusted_origin`] (`Origin: null` included). This holds
//!   on exempt paths too: it is what stops login CSRF, and what keeps a
//!   sibling subdomain (same-site, other origin) out;
//! - on paths not exempted by [`SessionLayer::csrf_exempt`], a request
//!   without the session's CSRF token in the `X-CSRF-Token` header or a
//!   `csrf_token` field of a URL-encoded form.
//!
//! [`SessionHandle::csrf_token`] is the session's keyed CSRF tag, masked
//! afresh on every call (against BREACH): no storage, it changes at login
//! with the id, and it reveals nothing of the session id, so a leaked token
//! (a logged header, a cached page) does not hand over the session. A
//! request without an `Origin` header (older browsers, non-browser clients)
//! still needs the token.
//!
//! # Errors
//! A storage error becomes a bare 500 (`internal error`), logged with
//! `tracing` at error level; nothing of it reaches the client. A missing,
//! forged or expired cookie is simply no session.

mod blocking;
mod csrf;
mod error;
mod handle;
mod layer;

pub use blocking::blocking;
pub use csrf::{CSRF_FIELD, CSRF_HEADER, MAX_FORM_BYTES};
pub use error::WebError;
pub use handle::SessionHandle;
pub use layer::{SessionLayer, SessionService};
