//! Driving an axum app in a test: one request in, status, `Set-Cookie` and
//! body out.

use axum::Router;
use axum::body::Body;
use http::{StatusCode, header};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

/// What the app answered.
pub struct Reply {
    pub status: StatusCode,
    /// The whole `Set-Cookie` header, if one was sent.
    pub set_cookie: Option<String>,
    pub body: String,
}

impl Reply {
    /// The `name=value` pair of the `Set-Cookie` header, as a browser would
    /// send it back.
    pub fn cookie(&self) -> Option<String> {
        let header = self.set_cookie.as_deref()?;
        Some(header.split(';').next().unwrap_or(header).to_owned())
    }
}

/// Sends `req`, with an empty body, to `app`.
pub async fn send(app: &Router, req: http::request::Builder) -> Reply {
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let set_cookie = resp
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().expect("ascii").to_owned());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        set_cookie,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}
