//! The tower layer's own promises: storage waits never hold an async
//! worker, storage errors are a bare 500, unchanged sessions are not
//! written, conflicting requests lose no write, and the CSRF guard reads
//! form fields too.
#![cfg(feature = "axum")]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use sessiondb::web::{SessionHandle, SessionLayer, WebError};
use sessiondb::{Engine, ManualClock};
use tower::ServiceExt as _;

fn probed() -> (Arc<Engine>, Arc<common::Counters>) {
    let (env, counters) = common::Env::probed(|c| c);
    (Arc::new(env.engine), counters)
}

async fn set(session: SessionHandle, body: String) -> Result<String, WebError> {
    let (k, v) = body.split_once('=').unwrap_or(("k", "v"));
    session.insert(k, v)?;
    Ok(session.csrf_token()?.unwrap_or_default())
}

async fn read(session: SessionHandle) -> Result<String, WebError> {
    let mut keys: Vec<String> = Vec::new();
    for k in ["a", "b", "k"] {
        if let Some(v) = session.get::<String>(k)? {
            keys.push(format!("{k}={v}"));
        }
    }
    Ok(keys.join(","))
}

fn app(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/set", post(set))
        .route("/read", get(read))
        .route("/form", post(|| async { "ok" }))
        .layer(
            SessionLayer::new(engine)
                .csrf_guard(true)
                .csrf_exempt("/set"),
        )
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Option<String>, String) {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let cookie = resp.headers().get(header::SET_COOKIE).map(|v| {
        v.to_str()
            .expect("ascii")
            .split(';')
            .next()
            .expect("pair")
            .to_owned()
    });
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, cookie, String::from_utf8_lossy(&body).into_owned())
}

fn post_with(path: &str, cookie: Option<&str>, body: &str) -> Request<Body> {
    let mut r = Request::post(path);
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::from(body.to_owned())).expect("request")
}

fn get_with(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .expect("request")
}

#[test]
fn a_slow_store_never_holds_the_only_async_worker() {
    // One worker thread. If the layer called the store on it, the task that
    // releases the store could never run: the store would give up after
    // 10 s and the request would fail instead of answering 200.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (engine, counters) = probed();
        let app = app(engine);
        let (_, cookie, _) = send(&app, post_with("/set", None, "k=v")).await;
        let cookie = cookie.expect("a cookie for the new session");

        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel();
        *counters.gate.lock().expect("gate") = Some(common::Gate {
            started: started_tx,
            release: release_rx,
        });
        let request = tokio::spawn({
            let app = app.clone();
            async move { send(&app, get_with("/read", &cookie)).await }
        });
        // Runs on the same single worker while the store read is waiting.
        let releaser = tokio::spawn(async move {
            loop {
                if started_rx.try_recv().is_ok() {
                    release_tx.send(()).expect("release");
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        });
        let (status, _, body) = request.await.expect("request task");
        assert!(releaser.await.expect("releaser"));
        assert_eq!((status, body.as_str()), (StatusCode::OK, "k=v"));
    });
}

#[tokio::test]
async fn a_storage_error_is_a_bare_500() {
    let (engine, counters) = probed();
    let app = app(engine);
    let (_, cookie, _) = send(&app, post_with("/set", None, "k=v")).await;
    counters.fail_get.store(true, SeqCst);
    let (status, set_cookie, body) = send(&app, get_with("/read", &cookie.expect("cookie"))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, "internal error\n");
    assert!(!body.contains("secret") && !body.contains("injected"));
    assert!(set_cookie.is_none());
}

#[tokio::test]
async fn reads_write_nothing_and_cookieless_visits_store_nothing() {
    let (engine, counters) = probed();
    // What opening the store wrote (its revocation horizon) is not a visit's.
    let opened = counters.writes.load(SeqCst);
    let app = app(engine.clone());
    let (status, cookie, _) = send(
        &app,
        Request::get("/read").body(Body::empty()).expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(cookie.is_none(), "no value, no session, no cookie");
    assert_eq!(counters.writes.load(SeqCst), opened);

    let (_, cookie, _) = send(&app, post_with("/set", None, "k=v")).await;
    let cookie = cookie.expect("cookie");
    let writes = counters.writes.load(SeqCst);
    for _ in 0..5 {
        let (_, set_cookie, body) = send(&app, get_with("/read", &cookie)).await;
        assert_eq!(body, "k=v");
        assert!(set_cookie.is_none(), "an unchanged session sends no cookie");
    }
    assert_eq!(counters.writes.load(SeqCst), writes, "reads wrote nothing");
}

#[tokio::test]
async fn two_requests_changing_one_session_at_once_both_keep_their_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(common::T0);
    let engine = Arc::new(Engine::open(dir.path(), common::config(&clock)).expect("open"));
    // Both handlers load the session, then wait for each other before
    // changing it, so the second save finds the first one's version.
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let app = Router::new()
        .route("/set", post(set))
        .route("/read", get(read))
        .route(
            "/together",
            post({
                let barrier = barrier.clone();
                move |session: SessionHandle, body: String| {
                    let barrier = barrier.clone();
                    async move {
                        barrier.wait().await;
                        let (k, v) = body.split_once('=').unwrap_or(("x", "x"));
                        session.insert(k, v)?;
                        Ok::<_, WebError>("ok")
                    }
                }
            }),
        )
        .layer(SessionLayer::new(engine.clone()).csrf_guard(false));
    let (_, cookie, _) = send(&app, post_with("/set", None, "k=v")).await;
    let cookie = cookie.expect("cookie");
    let a = tokio::spawn({
        let (app, c) = (app.clone(), cookie.clone());
        async move { send(&app, post_with("/together", Some(&c), "a=1")).await }
    });
    let b = tokio::spawn({
        let (app, c) = (app.clone(), cookie.clone());
        async move { send(&app, post_with("/together", Some(&c), "b=2")).await }
    });
    assert_eq!(a.await.expect("a").0, StatusCode::OK);
    assert_eq!(b.await.expect("b").0, StatusCode::OK);
    let (_, _, body) = send(&app, get_with("/read", &cookie)).await;
    assert_eq!(body, "a=1,b=2,k=v");
}

#[tokio::test]
async fn the_csrf_guard_reads_the_form_field_and_refuses_a_wrong_one() {
    let (engine, _) = probed();
    let app = app(engine);
    let (_, cookie, token) = send(&app, post_with("/set", None, "k=v")).await;
    let cookie = cookie.expect("cookie");
    let form = |body: String| {
        Request::post("/form")
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request")
    };
    let ok = send(&app, form(format!("name=x&csrf_token={token}"))).await;
    assert_eq!((ok.0, ok.2.as_str()), (StatusCode::OK, "ok"));
    let mut wrong = token.clone().into_bytes();
    wrong[40] = if wrong[40] == b'A' { b'B' } else { b'A' };
    let wrong = String::from_utf8(wrong).expect("ascii");
    let bad = send(&app, form(format!("csrf_token={wrong}"))).await;
    assert_eq!(bad.0, StatusCode::FORBIDDEN);
    let none = send(&app, form("name=x".into())).await;
    assert_eq!(none.0, StatusCode::FORBIDDEN);
    // Safe methods pass without a token.
    assert_eq!(
        send(&app, get_with("/read", &cookie)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_login_then_an_update_in_one_request_still_sends_the_new_cookie() {
    let (engine, _) = probed();
    let app = Router::new()
        .route("/set", post(set))
        .route(
            "/login-and-count",
            post(|session: SessionHandle| async move {
                session.login("alice").await?;
                let n = session
                    .update(|s| {
                        let n = s.get::<u32>("n").ok().flatten().unwrap_or(0) + 1;
                        s.insert("n", &n).map(|()| n)
                    })
                    .await?;
                Ok::<_, WebError>(format!("{n:?}"))
            }),
        )
        .route(
            "/who",
            get(|session: SessionHandle| async move {
                format!(
                    "{:?} {:?}",
                    session.user(),
                    session.get::<u32>("n").ok().flatten()
                )
            }),
        )
        .layer(SessionLayer::new(engine.clone()).csrf_guard(false));
    let (_, planted, _) = send(&app, post_with("/set", None, "k=v")).await;
    let planted = planted.expect("cookie");
    let (status, cookie, body) =
        send(&app, post_with("/login-and-count", Some(&planted), "")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "Some(Ok(1))"));
    let cookie = cookie.expect("the logged-in id's cookie");
    assert_ne!(cookie, planted);
    let (_, _, who) = send(&app, get_with("/who", &cookie)).await;
    assert_eq!(who, "Some(\"alice\") Some(1)");
}
