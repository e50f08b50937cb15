//! The layer loads lazily: a request whose handler never takes a
//! `SessionHandle` reads nothing and writes nothing, not even the touch a
//! read past the touch threshold would write, and sends no `Set-Cookie`.
//! The CSRF guard checks a token without a read too. A handler that takes
//! the session pays for one load, however many handles it takes.
#![cfg(feature = "axum")]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;

use axum::Router;
use axum::routing::{get, post};
use http::{Request, StatusCode, header};
use sessiondb::web::{SessionHandle, SessionLayer, WebError};

async fn start(session: SessionHandle) -> Result<String, WebError> {
    session.insert("k", "v")?;
    Ok(session.csrf_token()?.unwrap_or_default())
}

async fn read(session: SessionHandle) -> Result<String, WebError> {
    Ok(session.get::<String>("k")?.unwrap_or_default())
}

/// Two handles in one handler: still one load.
async fn twice(a: SessionHandle, b: SessionHandle) -> Result<String, WebError> {
    Ok(format!(
        "{:?} {:?}",
        a.get::<String>("k")?,
        b.id().is_some()
    ))
}

fn app(engine: Arc<sessiondb::Engine>) -> Router {
    Router::new()
        .route("/start", post(start))
        .route("/read", get(read))
        .route("/twice", get(twice))
        // Handlers that never take the session: a page, an API call.
        .route("/page", get(|| async { "page" }))
        .route("/ping", post(|| async { "pong" }))
        .layer(SessionLayer::new(engine).csrf_exempt("/start"))
}

use common::web::send;

/// Storage calls so far: (reads, writes).
fn calls(counters: &common::Counters) -> (usize, usize) {
    (counters.gets.load(SeqCst), counters.writes.load(SeqCst))
}

#[tokio::test]
async fn a_handler_that_never_takes_the_session_reads_and_writes_nothing() {
    let (env, counters) = common::Env::probed(|c| c);
    let engine = Arc::new(env.engine);
    let app = app(engine.clone());
    let started = send(&app, Request::post("/start")).await;
    let pair = started.set_cookie.expect("a cookie for the new session");
    let cookie = pair.split(';').next().expect("name=value").to_owned();
    let token = started.body;
    // Past the touch threshold: any load now would also write a touch.
    env.clock.advance(std::time::Duration::from_secs(120));
    let before = calls(&counters);

    let page = send(&app, Request::get("/page").header(header::COOKIE, &cookie)).await;
    assert_eq!((page.status, page.body.as_str()), (StatusCode::OK, "page"));
    assert_eq!(calls(&counters), before, "a page reached storage");
    assert!(page.set_cookie.is_none());
    // An unsafe method: the CSRF guard checks the token against the
    // cookie's id, without a read.
    let ping = send(
        &app,
        Request::post("/ping")
            .header(header::COOKIE, &cookie)
            .header("x-csrf-token", &token),
    )
    .await;
    assert_eq!((ping.status, ping.body.as_str()), (StatusCode::OK, "pong"));
    assert!(ping.set_cookie.is_none());
    let refused = send(&app, Request::post("/ping").header(header::COOKIE, &cookie)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "no token, no pass");
    assert_eq!(calls(&counters), before, "a guarded post reached storage");

    // The counters do count: the session's first use reads it, and the
    // read past the threshold writes the touch.
    let r = send(&app, Request::get("/read").header(header::COOKIE, &cookie)).await;
    assert_eq!(r.body, "v");
    assert_eq!(calls(&counters), (before.0 + 1, before.1 + 1));
    assert!(r.set_cookie.is_some(), "the touch renews the cookie");

    // Two handles, one load.
    let loads = counters.gets.load(SeqCst);
    let r = send(&app, Request::get("/twice").header(header::COOKIE, &cookie)).await;
    assert_eq!(r.body, "Some(\"v\") true");
    assert_eq!(counters.gets.load(SeqCst), loads + 1);
}

#[tokio::test]
async fn a_dead_cookie_is_cleared_only_where_the_session_was_looked_up() {
    let (env, counters) = common::Env::probed(|c| c);
    let engine = Arc::new(env.engine);
    let app = app(engine.clone());
    let started = send(&app, Request::post("/start")).await;
    let pair = started.set_cookie.expect("cookie");
    let cookie = pair.split(';').next().expect("name=value").to_owned();
    let token = started.body;
    let id = engine.session_id([cookie.as_bytes()]).expect("verifies");
    engine.destroy_id(&id).expect("destroy");
    let before = calls(&counters);

    // Nobody looked, so nobody knows it is dead: the cookie stays.
    let page = send(&app, Request::get("/page").header(header::COOKIE, &cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(calls(&counters), before, "a page reached storage");
    assert!(page.set_cookie.is_none());
    // The token still proves the request came from a page served to this
    // cookie; the guard lets it through without a read, and a handler that
    // takes the session finds none.
    let ping = send(
        &app,
        Request::post("/ping")
            .header(header::COOKIE, &cookie)
            .header("x-csrf-token", &token),
    )
    .await;
    assert_eq!(ping.status, StatusCode::OK);
    assert_eq!(calls(&counters), before);

    let r = send(&app, Request::get("/read").header(header::COOKIE, &cookie)).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, ""));
    let cleared = r.set_cookie.expect("the dead cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}
