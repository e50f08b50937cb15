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
//!   [`Engine::load`] does).
//! - A new session is stored, and its cookie set, only once it holds a
//!   value or a user: visitors who never get one cost no disk.
//! - [`SessionHandle::login`], [`logout`](SessionHandle::logout),
//!   [`logout_everywhere`](SessionHandle::logout_everywhere) and
//!   [`update`](SessionHandle::update) reach the store when called, so a
//!   handler can answer with their outcome.
//!
//! # Two requests changing one session at once
//! Each request works on its own copy, and the layer stores it at the end
//! with [`Engine::save_merging`]: when another request stored the session
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

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, COOKIE, HOST, ORIGIN, SET_COOKIE};
use http::request::Parts;
use http::{HeaderValue, Method, Request, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::engine::{Engine, SessionInfo};
use crate::error::{Error, Result};
use crate::session::Session;
use crate::token::SessionId;

/// The header the CSRF guard reads.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field the CSRF guard reads from URL-encoded bodies.
pub const CSRF_FIELD: &str = "csrf_token";
/// The most body bytes the guard buffers to find [`CSRF_FIELD`].
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Runs `f` on tokio's blocking pool, so a strict-durability wait (or any
/// disk read) never holds an async worker thread.
pub async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(Error::Storage(
            format!("a blocking session task failed: {e}").into(),
        )),
    }
}

/// A tower layer that gives every request its session.
#[derive(Debug, Clone)]
#[must_use]
pub struct SessionLayer {
    engine: Arc<Engine>,
    csrf_guard: bool,
    csrf_exempt: Arc<Vec<String>>,
    trusted_origins: Arc<Vec<String>>,
}

impl SessionLayer {
    /// A layer over `engine`, with the CSRF guard on.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            csrf_guard: true,
            csrf_exempt: Arc::new(Vec::new()),
            trusted_origins: Arc::new(Vec::new()),
        }
    }

    /// Turns the CSRF guard on or off (see the [module docs](self)).
    /// Default on; turn it off only for an API that no browser reaches
    /// with cookies, or that has its own guard.
    pub fn csrf_guard(mut self, on: bool) -> Self {
        self.csrf_guard = on;
        self
    }

    /// Exempts one exact path from the CSRF token check (a login endpoint,
    /// which runs before there is a session to bind a token to). The
    /// origin checks still apply to it.
    pub fn csrf_exempt(mut self, path: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.csrf_exempt).push(path.into());
        self
    }

    /// Accepts `Origin: <origin>` (for example `https://app.example.com`)
    /// besides the request's own, for a front end on another origin or a
    /// proxy that rewrites `Host`. Compared exactly, ASCII case aside.
    pub fn trusted_origin(mut self, origin: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.trusted_origins).push(origin.into());
        self
    }
}

impl<S> tower_layer::Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`SessionLayer`] makes.
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    layer: SessionLayer,
}

impl<S> tower_service::Service<Request<Body>> for SessionService<S>
where
    S: tower_service::Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The clone that was made ready is the one to call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            match handle(layer, inner, req).await {
                Ok(r) => Ok(r),
                Err(Failure::Inner(e)) => Err(e),
                Err(Failure::Session(e)) => Ok(WebError(e).into_response()),
            }
        })
    }
}

enum Failure<E> {
    Inner(E),
    Session(Error),
}

impl<E> From<Error> for Failure<E> {
    fn from(e: Error) -> Self {
        Failure::Session(e)
    }
}

async fn handle<S>(
    layer: SessionLayer,
    mut inner: S,
    req: Request<Body>,
) -> std::result::Result<Response, Failure<S::Error>>
where
    S: tower_service::Service<Request<Body>, Response = Response>,
{
    let engine = layer.engine.clone();
    if layer.csrf_guard && is_unsafe(req.method()) && !same_origin(&layer, &req) {
        return Ok(forbidden());
    }
    let cookies: Vec<Vec<u8>> = req
        .headers()
        .get_all(COOKIE)
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect();
    // Verifying the token is pure CPU; only a verified id reaches storage.
    let had_cookie = engine.session_id(cookies.iter().map(Vec::as_slice));
    let loaded = match had_cookie {
        Some(id) => {
            let e = engine.clone();
            blocking(move || e.load_id(&id)).await?
        }
        None => None,
    };

    let mut req = req;
    if layer.csrf_guard
        && is_unsafe(req.method())
        && !layer.csrf_exempt.iter().any(|p| p == req.uri().path())
    {
        let (ok, rebuilt) = csrf_passes(&engine, loaded.as_ref().map(Session::id), req).await;
        req = rebuilt;
        if !ok {
            return Ok(forbidden());
        }
    }

    let state = Arc::new(Mutex::new(State::new(loaded)));
    req.extensions_mut().insert(SessionHandle {
        engine: engine.clone(),
        state: state.clone(),
    });
    let mut response = inner.call(req).await.map_err(Failure::Inner)?;

    let taken = lock(&state).take_for_finish();
    let cookie = finish(&engine, taken, had_cookie.as_ref()).await?;
    if let Some(c) = cookie {
        match HeaderValue::from_str(&c) {
            Ok(v) => {
                response.headers_mut().append(SET_COOKIE, v);
            }
            Err(e) => return Err(Error::Storage(Box::new(e)).into()),
        }
    }
    Ok(response)
}

/// `localhost`, `127.0.0.0/8` or `[::1]`, with or without a port.
fn is_loopback(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Every method but the safe ones of RFC 9110 (an unknown one too, such
/// as `PURGE`).
fn is_unsafe(m: &Method) -> bool {
    !matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The defence in depth before any token: a browser that says the request
/// is cross-site, or names an origin other than the request's own or a
/// trusted one, is refused. A request without these headers passes here
/// (the token check still applies where the path is not exempt).
fn same_origin(layer: &SessionLayer, req: &Request<Body>) -> bool {
    let headers = req.headers();
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return false;
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if layer
        .trusted_origins
        .iter()
        .any(|t| t.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    // `scheme://host[:port]`; "null" and anything else fails to split.
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let https = scheme.eq_ignore_ascii_case("https");
    if !https && !scheme.eq_ignore_ascii_case("http") {
        return false;
    }
    // With Secure cookies the site is HTTPS: a page served over plain HTTP
    // on the same host (injected by a man in the middle) is another origin.
    // Loopback stays allowed over HTTP, as browsers treat it as secure.
    if !https && layer.engine.cookie_config().is_secure() && !is_loopback(authority) {
        return false;
    }
    let own = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    own.is_some_and(|own| !own.is_empty() && own.eq_ignore_ascii_case(authority))
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        "cross-origin request, or missing or wrong CSRF token\n",
    )
        .into_response()
}

/// Checks the request's CSRF token against the session; gives the request
/// back (rebuilt, if its body had to be read for a form field).
async fn csrf_passes(
    engine: &Engine,
    id: Option<&SessionId>,
    req: Request<Body>,
) -> (bool, Request<Body>) {
    let Some(id) = id else {
        return (false, req);
    };
    if let Some(v) = req.headers().get(CSRF_HEADER) {
        return (engine.verify_csrf(id, v.as_bytes()), req);
    }
    let is_form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return (false, req);
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return (false, Request::from_parts(parts, Body::empty()));
    };
    let ok = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .is_some_and(|(_, v)| engine.verify_csrf(id, v.as_bytes()));
    (ok, Request::from_parts(parts, Body::from(bytes)))
}

/// What a request did to its session.
#[derive(Debug)]
struct State {
    /// The handler's working copy; `None` until one exists. It knows its
    /// own unsaved changes, which a merge after a conflict replays.
    current: Option<Session>,
    /// Logged out (or out everywhere) during this request.
    destroyed: bool,
    /// Bumped by every change the handle makes, so an `update` can tell
    /// whether the copy changed while it ran.
    changes: u64,
}

impl State {
    fn new(loaded: Option<Session>) -> Self {
        Self {
            current: loaded,
            destroyed: false,
            changes: 0,
        }
    }

    fn take_for_finish(&mut self) -> Finish {
        Finish {
            current: self.current.take(),
            destroyed: self.destroyed,
        }
    }
}

struct Finish {
    current: Option<Session>,
    destroyed: bool,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A handler that panicked mid-change leaves a copy that is merely
    // unsaved-in-part; the layer still decides from what is there.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stores the request's changes; returns the `Set-Cookie` value to send.
/// `cookie_id` is the id the request's cookie named.
async fn finish(
    engine: &Arc<Engine>,
    f: Finish,
    cookie_id: Option<&SessionId>,
) -> Result<Option<String>> {
    if f.destroyed {
        return Ok(Some(engine.removal_cookie()));
    }
    let Some(mut current) = f.current else {
        // A cookie that named no live session: clear it.
        return Ok(cookie_id.map(|_| engine.removal_cookie()));
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
        // A new id (made, or logged in, during the request), or a touch that
        // renews a persistent cookie's lifetime.
        Some(s) if cookie_id != Some(s.id()) || s.was_touched() => Some(engine.set_cookie(&s)),
        Some(_) => None,
    })
}

/// The request's session, as a handler sees it.
///
/// Take it as a handler argument (the layer must be installed; otherwise
/// the extractor answers 500 and logs why). Reads and writes of values
/// work on the request's copy and are stored by the layer when the handler
/// returns; the `async` methods reach the store at once.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    engine: Arc<Engine>,
    state: Arc<Mutex<State>>,
}

impl<S: Send + Sync> FromRequestParts<S> for SessionHandle {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<SessionHandle>()
            .cloned()
            .ok_or_else(|| {
                WebError(Error::InvalidConfig {
                    field: "layer",
                    reason: "SessionHandle used on a route without SessionLayer".into(),
                })
            })
    }
}

impl SessionHandle {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The state, to change it.
    fn change(&self) -> MutexGuard<'_, State> {
        let mut st = lock(&self.state);
        st.changes += 1;
        st
    }

    /// The engine behind the layer.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
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
            st.current = Some(self.engine.create()?);
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
        self.id().map(|id| self.engine.csrf_token(&id)).transpose()
    }

    /// Logs `user` in through [`Engine::login`]: a new id carrying the user
    /// (the old one stops working), durable before it returns. See there
    /// for which values carry over. On an error the request's session is
    /// exactly as it was before the call.
    pub async fn login(&self, user: &str) -> Result<()> {
        let before = self.state().current.clone();
        let mut session = match before {
            Some(s) => s,
            None => self.engine.create()?,
        };
        let (e, user) = (self.engine.clone(), user.to_owned());
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
                let e = self.engine.clone();
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
        let e = self.engine.clone();
        blocking(move || e.destroy_user(&user, None)).await
    }

    /// The live sessions of this session's user (empty without a user).
    pub async fn user_sessions(&self) -> Result<Vec<SessionInfo>> {
        let Some(user) = self.user() else {
            return Ok(Vec::new());
        };
        let e = self.engine.clone();
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
        let e = self.engine.clone();
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

/// A sessiondb error as an HTTP response: a bare 500, the error logged.
#[derive(Debug)]
pub struct WebError(pub Error);

impl From<Error> for WebError {
    fn from(e: Error) -> Self {
        WebError(e)
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self.0, "session store error");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
    }
}
