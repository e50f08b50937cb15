//! The CSRF guard is on by default, checks every method but the safe ones,
//! refuses cross-origin requests even on exempt paths (login CSRF), and its
//! token is a masked keyed tag that reveals nothing of the session id.
#![cfg(feature = "axum")]

mod common;

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, StatusCode, header};
use sessiondb::web::{SessionHandle, SessionLayer, WebError};
use sessiondb::{Config, Engine, Purpose};

fn engine() -> Arc<Engine> {
    Arc::new(
        Engine::with_backend(
            sessiondb::MemoryBackend::new(),
            Config::new(common::ring()).sweeper(false),
        )
        .expect("memory"),
    )
}

async fn start(session: SessionHandle) -> Result<String, WebError> {
    session.insert("k", "v")?;
    Ok(session.csrf_token()?.unwrap_or_default())
}

async fn login(session: SessionHandle) -> Result<&'static str, WebError> {
    session.login("alice").await?;
    Ok("logged in")
}

/// The layer with its defaults: nothing but `SessionLayer::new`.
fn app(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/start", post(start))
        .route("/login", post(login))
        .route("/action", any(|| async { "done" }))
        .layer(
            SessionLayer::new(engine)
                .csrf_exempt("/start")
                .csrf_exempt("/login"),
        )
}

use common::web::send;

/// A session and its CSRF token, made through `/start`.
async fn session(app: &Router) -> (String, String) {
    let r = send(
        app,
        Request::post("/start").header(header::HOST, "app.test"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    (r.cookie().expect("cookie"), r.body)
}

/// `method /action` with the session's cookie, and the token if given.
async fn act(app: &Router, method: &str, cookie: &str, token: Option<&str>) -> StatusCode {
    let mut req = Request::builder()
        .method(method)
        .uri("/action")
        .header(header::COOKIE, cookie);
    if let Some(t) = token {
        req = req.header("x-csrf-token", t);
    }
    send(app, req).await.status
}

#[tokio::test]
async fn every_unsafe_method_needs_the_token_by_default() {
    let app = app(engine());
    let (cookie, token) = session(&app).await;
    for method in ["POST", "PUT", "PATCH", "DELETE", "PURGE", "LOCK"] {
        let without = act(&app, method, &cookie, None).await;
        assert_eq!(without, StatusCode::FORBIDDEN, "{method} without a token");
        let with = act(&app, method, &cookie, Some(&token)).await;
        assert_eq!(with, StatusCode::OK, "{method} with the token");
    }
    for method in ["GET", "HEAD", "OPTIONS", "TRACE"] {
        let safe = act(&app, method, &cookie, None).await;
        assert_eq!(safe, StatusCode::OK, "{method} is safe");
    }
}

#[tokio::test]
async fn cross_origin_requests_are_refused_even_on_exempt_paths() {
    let engine = engine();
    let app = app(engine.clone());
    // Login CSRF: a page elsewhere posts the attacker's login form.
    for (name, value) in [
        ("origin", "https://evil.example"),
        // A sibling subdomain is same-site, yet another origin.
        ("origin", "https://evil.app.test"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let r = send(
            &app,
            Request::post("/login")
                .header(header::HOST, "app.test")
                .header(name, value),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{name}: {value}");
        assert!(r.cookie().is_none());
    }
    assert_eq!(engine.admin().stats().expect("stats").live_sessions, 0);
    // With Secure cookies, a plain-HTTP page on the same host (a man in
    // the middle's) is another origin.
    let r = send(
        &app,
        Request::post("/login")
            .header(header::HOST, "app.test")
            .header(header::ORIGIN, "http://app.test"),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "http origin, Secure cookie"
    );
    // The page's own origin, or no Origin at all, may log in.
    for origin in [Some("https://app.test"), Some("HTTPS://APP.test"), None] {
        let mut req = Request::post("/login").header(header::HOST, "app.test");
        if let Some(o) = origin {
            req = req
                .header(header::ORIGIN, o)
                .header("sec-fetch-site", "same-origin");
        }
        let r = send(&app, req).await;
        assert_eq!(r.status, StatusCode::OK, "{origin:?}");
    }
    // A cross-origin request carrying a valid token is refused all the same.
    let (cookie, token) = session(&app).await;
    let r = send(
        &app,
        Request::post("/action")
            .header(header::HOST, "app.test")
            .header(header::ORIGIN, "https://evil.example")
            .header(header::COOKIE, &cookie)
            .header("x-csrf-token", &token),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn plain_http_origins_pass_on_loopback_or_without_secure_cookies() {
    let local = app(engine());
    for host in ["127.0.0.1:8080", "localhost:3000", "[::1]:8080"] {
        let r = send(
            &local,
            Request::post("/login")
                .header(header::HOST, host)
                .header(header::ORIGIN, format!("http://{host}")),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{host}");
    }
    let insecure = Engine::with_backend(
        sessiondb::MemoryBackend::new(),
        Config::new(common::ring())
            .sweeper(false)
            .cookie(sessiondb::CookieBuilder::default().secure(false)),
    )
    .expect("memory");
    let lan = app(Arc::new(insecure));
    let r = send(
        &lan,
        Request::post("/login")
            .header(header::HOST, "lan.test:8080")
            .header(header::ORIGIN, "http://lan.test:8080"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_trusted_origin_is_accepted() {
    let app = Router::new().route("/login", post(login)).layer(
        SessionLayer::new(engine())
            .csrf_exempt("/login")
            .trusted_origin("https://front.example"),
    );
    let r = send(
        &app,
        Request::post("/login")
            .header(header::HOST, "api.example")
            .header(header::ORIGIN, "https://front.example"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[test]
fn the_token_is_masked_afresh_and_holds_no_id() {
    let engine = engine();
    let s = {
        let mut s = engine.create().expect("create");
        s.insert("k", "v").expect("insert");
        engine.save(&mut s).expect("save");
        s
    };
    let id = s.id();
    let a = engine.csrf_token(id).expect("token");
    let b = engine.csrf_token(id).expect("token");
    assert_ne!(a, b, "every token is masked afresh");
    assert!(engine.verify_csrf(id, a.as_bytes()));
    assert!(engine.verify_csrf(id, b.as_bytes()));
    for token in [&a, &b] {
        let bytes = URL_SAFE_NO_PAD.decode(token).expect("base64url");
        assert!(
            !bytes
                .windows(6)
                .any(|w| id.as_bytes().windows(6).any(|x| x == w)),
            "the token carries part of the session id"
        );
        assert!(!token.contains(&id.to_base64()[..8]));
        // Neither a session cookie nor an old-style signed CSRF token.
        assert!(
            engine
                .key_ring()
                .verify(Purpose::Session, token.as_bytes())
                .is_none()
        );
        assert!(
            engine
                .key_ring()
                .verify(Purpose::Csrf, token.as_bytes())
                .is_none()
        );
    }
    // Another session's token, a tampered one, and garbage fail.
    let other = engine.create().expect("create");
    assert!(!engine.verify_csrf(other.id(), a.as_bytes()));
    let mut tampered = a.clone().into_bytes();
    tampered[50] = if tampered[50] == b'A' { b'B' } else { b'A' };
    assert!(!engine.verify_csrf(id, &tampered));
    assert!(!engine.verify_csrf(id, b""));
    assert!(!engine.verify_csrf(id, &[b'A'; 4096]));
}
