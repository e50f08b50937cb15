//! The CSRF guard: the origin checks, and the session's token in a header
//! or a form field. Nothing here reads storage: the token is checked
//! against the id the cookie names.

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, HOST, ORIGIN};
use http::{Method, Request, StatusCode};

use crate::engine::Engine;
use crate::token::SessionId;

/// The header the CSRF guard reads.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field the CSRF guard reads from URL-encoded bodies.
pub const CSRF_FIELD: &str = "csrf_token";
/// The most body bytes the guard buffers to find [`CSRF_FIELD`].
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// The guard's settings, as [`SessionLayer`](super::SessionLayer)'s
/// builder sets them.
#[derive(Debug, Clone)]
pub(super) struct Guard {
    pub(super) on: bool,
    pub(super) exempt: Arc<Vec<String>>,
    pub(super) trusted_origins: Arc<Vec<String>>,
}

impl Default for Guard {
    fn default() -> Self {
        Self {
            on: true,
            exempt: Arc::new(Vec::new()),
            trusted_origins: Arc::new(Vec::new()),
        }
    }
}

impl Guard {
    /// Whether the guard looks at this request at all: on, and an unsafe
    /// method.
    pub(super) fn applies(&self, req: &Request<Body>) -> bool {
        self.on && is_unsafe(req.method())
    }

    /// Whether this request's path needs the token.
    pub(super) fn wants_token(&self, req: &Request<Body>) -> bool {
        !self.exempt.iter().any(|p| p == req.uri().path())
    }

    /// The defence in depth before any token: a browser that says the request
    /// is cross-site, or names an origin other than the request's own or a
    /// trusted one, is refused. A request without these headers passes here
    /// (the token check still applies where the path is not exempt).
    pub(super) fn same_origin(&self, engine: &Engine, req: &Request<Body>) -> bool {
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
        if self
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
        if !https && engine.cookie_config().is_secure() && !is_loopback(authority) {
            return false;
        }
        let own = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        own.is_some_and(|own| !own.is_empty() && own.eq_ignore_ascii_case(authority))
    }
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

pub(super) fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        "cross-origin request, or missing or wrong CSRF token\n",
    )
        .into_response()
}

/// Checks the request's CSRF token against `id`, the session id its cookie
/// names (no cookie, no pass); gives the request back (rebuilt, if its body
/// had to be read for a form field). No storage: whether that session is
/// still live is for the handler to find out.
pub(super) async fn token_passes(
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
