//! The tower [`Layer`](tower_layer::Layer) and its service: the flow of one
//! request, from the cookie to the `Set-Cookie`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderValue, Request};

use super::blocking;
use super::csrf::{self, Guard};
use super::error::WebError;
use super::handle::{Finish, SessionHandle, State, lock};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::session::Session;
use crate::token::SessionId;

/// A tower layer that gives every request its session.
#[derive(Debug, Clone)]
#[must_use]
pub struct SessionLayer {
    engine: Arc<Engine>,
    guard: Guard,
}

impl SessionLayer {
    /// A layer over `engine`, with the CSRF guard on.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            guard: Guard::default(),
        }
    }

    /// Turns the CSRF guard on or off (see the [module docs](super)).
    /// Default on; turn it off only for an API that no browser reaches
    /// with cookies, or that has its own guard.
    pub fn csrf_guard(mut self, on: bool) -> Self {
        self.guard.on = on;
        self
    }

    /// Exempts one exact path from the CSRF token check (a login endpoint,
    /// which runs before there is a session to bind a token to). The
    /// origin checks still apply to it.
    pub fn csrf_exempt(mut self, path: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.guard.exempt).push(path.into());
        self
    }

    /// Accepts `Origin: <origin>` (for example `https://app.example.com`)
    /// besides the request's own, for a front end on another origin or a
    /// proxy that rewrites `Host`. Compared exactly, ASCII case aside.
    pub fn trusted_origin(mut self, origin: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.guard.trusted_origins).push(origin.into());
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
    let guarded = layer.guard.applies(&req);
    if guarded && !layer.guard.same_origin(&engine, &req) {
        return Ok(csrf::forbidden());
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
    if guarded && layer.guard.wants_token(&req) {
        let (ok, rebuilt) =
            csrf::token_passes(&engine, loaded.as_ref().map(Session::id), req).await;
        req = rebuilt;
        if !ok {
            return Ok(csrf::forbidden());
        }
    }

    let state = Arc::new(Mutex::new(State::new(loaded)));
    req.extensions_mut()
        .insert(SessionHandle::new(engine.clone(), state.clone()));
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
