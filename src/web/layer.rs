//! The tower [`Layer`](tower_layer::Layer) and its service: the flow of one
//! request, from the cookie to the `Set-Cookie`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderValue, Request};

use super::csrf::{self, Guard};
use super::error::WebError;
use super::request::RequestSession;
use crate::engine::Engine;
use crate::error::Error;

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

/// One request: the guard, the handler, then what the handler changed is
/// stored. Nothing here reads storage: the session is loaded by the first
/// [`SessionHandle`](super::SessionHandle) the handler takes.
async fn handle<S>(
    layer: SessionLayer,
    mut inner: S,
    mut req: Request<Body>,
) -> std::result::Result<Response, Failure<S::Error>>
where
    S: tower_service::Service<Request<Body>, Response = Response>,
{
    let engine = layer.engine;
    let guarded = layer.guard.applies(&req);
    if guarded && !layer.guard.same_origin(&engine, &req) {
        return Ok(csrf::forbidden());
    }
    // Verifying the cookie is pure CPU, bounded for any input.
    let cookie_id = engine.session_id(req.headers().get_all(COOKIE).iter().map(|v| v.as_bytes()));
    if guarded && layer.guard.wants_token(&req) {
        // Against the id the cookie names, without looking it up (see
        // "CSRF" in the module docs).
        let (ok, rebuilt) = csrf::token_passes(&engine, cookie_id.as_ref(), req).await;
        req = rebuilt;
        if !ok {
            return Ok(csrf::forbidden());
        }
    }

    let session = Arc::new(RequestSession::new(engine, cookie_id));
    req.extensions_mut().insert(session.clone());
    let mut response = inner.call(req).await.map_err(Failure::Inner)?;

    if let Some(cookie) = session.store().await? {
        match HeaderValue::from_str(&cookie) {
            Ok(v) => {
                response.headers_mut().append(SET_COOKIE, v);
            }
            Err(e) => return Err(Error::Storage(Box::new(e)).into()),
        }
    }
    Ok(response)
}
