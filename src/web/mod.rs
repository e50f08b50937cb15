//! axum / tower integration (feature `axum`).
//!
//! [`SessionLayer`] wraps a service: before the handler it verifies the
//! request's session cookie (no storage) and runs the CSRF guard; the
//! session is loaded when the handler takes a [`SessionHandle`]; after the
//! handler, the layer stores what it changed and sets or clears the cookie.
//! Every storage call runs on tokio's blocking pool, never on an async
//! worker.
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
//! # Loading is lazy
//! A request whose handler does not take a [`SessionHandle`] costs no
//! storage at all: no read, no touch, no `Set-Cookie` (a static page, a
//! health check, an API call that needs no session). The first
//! [`SessionHandle`] extracted in a request loads the session; more
//! handles in the same request share that one load.
//!
//! The load happens in the extractor rather than on first use of each
//! accessor (as tower-sessions' `Session` does): the accessors
//! ([`get`](SessionHandle::get), [`insert`](SessionHandle::insert),
//! [`user`](SessionHandle::user), ...) are synchronous, a load must not
//! block an async worker, and taking the handle is already the handler
//! saying it needs the session. The price: a handler that takes a handle
//! but uses it on one branch only pays the read on every branch; give that
//! branch a handler of its own if it matters.
//!
//! A cookie naming a session that has expired is cleared only by a request
//! that looked the session up; the others leave it alone.
//!
//! # What is written, and when
//! - Nothing for a request that did not take a [`SessionHandle`].
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
//! The token is checked against the id the request's cookie names, without
//! looking the session up: like the cookie's signature, it is pure CPU. A
//! token proves that the request came from a page served to this cookie,
//! which is all the guard has to know; whether the session is still live
//! is the handler's to see ([`SessionHandle::exists`]). So a form posted
//! with the token of a session that has since expired reaches its handler,
//! which finds no session, as a GET would (before loading became lazy it
//! was a 403).
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
mod request;

use blocking::blocking;
pub use csrf::{CSRF_FIELD, CSRF_HEADER, MAX_FORM_BYTES};
pub use error::WebError;
pub use handle::SessionHandle;
pub use layer::{SessionLayer, SessionService};
