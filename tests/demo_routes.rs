//! Every route of the demo service, through the session layer, driven with
//! `tower::ServiceExt::oneshot` on a store with a manual clock.
#![cfg(feature = "axum")]

#[path = "../examples/demo/app.rs"]
#[allow(dead_code)]
mod app;
mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sessiondb::{Engine, ManualClock};
use tower::ServiceExt as _;

/// The demo on a fresh sled store, and what it needs to stay alive.
struct Demo {
    app: Router,
    engine: Arc<Engine>,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

impl Demo {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new(common::T0);
        let engine = Arc::new(
            Engine::open(
                dir.path(),
                common::config(&clock).idle_timeout(Duration::from_secs(1800)),
            )
            .expect("open"),
        );
        Self {
            app: app::router(engine.clone(), false),
            engine,
            clock,
            _dir: dir,
        }
    }

    fn browser(&self) -> Browser {
        Browser {
            app: self.app.clone(),
            cookie: None,
            csrf: None,
        }
    }
}

/// What a browser keeps between calls: the cookie and the CSRF token.
struct Browser {
    app: Router,
    cookie: Option<String>,
    csrf: Option<String>,
}

struct Reply {
    status: StatusCode,
    set_cookie: Vec<String>,
    json: Value,
}

impl Browser {
    async fn call(&mut self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(c) = &self.cookie {
            req = req.header(header::COOKIE, c);
        }
        if let Some(t) = &self.csrf {
            req = req.header("x-csrf-token", t);
        }
        let req = match body {
            Some(v) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let set_cookie: Vec<String> = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect();
        for c in &set_cookie {
            let pair = c.split(';').next().expect("pair").to_owned();
            if c.contains("Max-Age=0") {
                self.cookie = None;
            } else {
                self.cookie = Some(pair);
            }
        }
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            set_cookie,
            json,
        }
    }

    async fn login(&mut self, user: &str) -> Reply {
        let r = self
            .call("POST", "/api/login", Some(json!({"user": user})))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
        self.csrf = r.json["csrf"].as_str().map(str::to_owned);
        r
    }
}

#[tokio::test]
async fn login_sets_a_cookie_and_me_counts_visits_and_shows_the_flash_once() {
    let demo = Demo::new();
    let mut b = demo.browser();
    let r = b.login("alice").await;
    assert_eq!(r.json["user"], "alice");
    assert_eq!(r.set_cookie.len(), 1, "one Set-Cookie");
    assert!(r.set_cookie[0].contains("HttpOnly"));
    let expires = r.json["expires_at"].as_u64().expect("expires_at");
    assert_eq!(expires, common::T0 + 1_800_000);

    let me = b.call("GET", "/api/me", None).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json["user"], "alice");
    assert_eq!(me.json["visits"], 1);
    assert_eq!(me.json["flash"], "welcome back, alice");
    // Masked afresh on every answer.
    assert!(me.json["csrf"].is_string());
    assert_ne!(me.json["csrf"], r.json["csrf"]);
    let me = b.call("GET", "/api/me", None).await;
    assert_eq!(me.json["visits"], 2);
    assert_eq!(me.json["flash"], Value::Null, "a flash is shown once");
}

#[tokio::test]
async fn bad_names_are_400_with_a_json_error() {
    let demo = Demo::new();
    let mut b = demo.browser();
    for name in ["", "   ", &"x".repeat(app::MAX_NAME + 1)] {
        let r = b
            .call("POST", "/api/login", Some(json!({"user": name})))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name:?}");
        assert!(r.json["error"].is_string());
        assert!(r.set_cookie.is_empty(), "no session for a refused login");
    }
    let r = b.call("POST", "/api/login", Some(json!({"name": 1}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(demo.engine.admin().stats().expect("stats").live_sessions, 0);
}

#[tokio::test]
async fn no_or_bad_cookie_is_401_everywhere() {
    let demo = Demo::new();
    let mut b = demo.browser();
    for (m, p) in [
        ("GET", "/api/me"),
        ("GET", "/api/csrf"),
        ("GET", "/api/sessions"),
    ] {
        let r = b.call(m, p, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{p}");
        assert_eq!(r.json, json!({"error": "no session"}));
    }
    b.cookie = Some(format!("__Host-sessiondb={}", "A".repeat(92)));
    let r = b.call("GET", "/api/me", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A forged cookie names no session: nothing to clear, nothing written.
    assert!(r.set_cookie.is_empty());
    assert_eq!(demo.engine.admin().stats().expect("stats").live_sessions, 0);
}

#[tokio::test]
async fn posts_need_the_sessions_csrf_token() {
    let demo = Demo::new();
    let mut alice = demo.browser();
    alice.login("alice").await;
    let token = alice.csrf.take();
    let r = alice.call("POST", "/api/counter", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no token");
    let mut bob = demo.browser();
    bob.login("bob").await;
    alice.csrf = bob.csrf.clone();
    let r = alice.call("POST", "/api/counter", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "another session's token");
    alice.csrf = token;
    let r = alice.call("POST", "/api/counter", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json, json!({"counter": 1}));
    // Each answer masks the token afresh; every one of them works.
    let r = alice.call("GET", "/api/csrf", None).await;
    let fresh = r.json["csrf"].as_str().map(str::to_owned);
    assert!(fresh.is_some());
    assert_ne!(fresh, alice.csrf);
    alice.csrf = fresh;
    let r = alice.call("POST", "/api/counter", None).await;
    assert_eq!(r.json, json!({"counter": 2}));
}

#[tokio::test]
async fn login_changes_the_id_so_a_planted_cookie_is_worthless() {
    let demo = Demo::new();
    let mut b = demo.browser();
    b.login("alice").await;
    let first = b.cookie.clone();
    // Logging in again (as someone else, from the same browser) regenerates.
    b.login("mallory-victim").await;
    assert_ne!(b.cookie, first);
    let mut attacker = demo.browser();
    attacker.cookie = first;
    let r = attacker.call("GET", "/api/me", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn concurrent_counters_with_one_cookie_end_at_n() {
    let demo = Demo::new();
    let mut b = demo.browser();
    b.login("alice").await;
    let n = 40;
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let mut c = Browser {
                app: demo.app.clone(),
                cookie: b.cookie.clone(),
                csrf: b.csrf.clone(),
            };
            tokio::spawn(async move { c.call("POST", "/api/counter", None).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("task"), StatusCode::OK);
    }
    let r = b.call("POST", "/api/counter", None).await;
    assert_eq!(r.json, json!({"counter": n + 1}));
}

#[tokio::test]
async fn an_idle_session_expires_and_the_cookie_is_cleared() {
    let demo = Demo::new();
    let mut b = demo.browser();
    b.login("alice").await;
    demo.clock.advance(Duration::from_secs(1799));
    assert_eq!(b.call("GET", "/api/me", None).await.status, StatusCode::OK);
    // That read was past the touch threshold, so it moved the expiry.
    demo.clock.advance(Duration::from_secs(1799));
    assert_eq!(b.call("GET", "/api/me", None).await.status, StatusCode::OK);
    demo.clock.advance(Duration::from_secs(1801));
    let cookie = b.cookie.clone();
    let r = b.call("GET", "/api/me", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.set_cookie.len(), 1);
    assert!(r.set_cookie[0].contains("Max-Age=0"), "{:?}", r.set_cookie);
    assert!(cookie.is_some() && b.cookie.is_none());
}

#[tokio::test]
async fn sessions_lists_the_users_live_sessions_and_marks_this_one() {
    let demo = Demo::new();
    let mut phone = demo.browser();
    phone.login("alice").await;
    demo.clock.advance(Duration::from_secs(5));
    let mut laptop = demo.browser();
    laptop.login("alice").await;
    let mut other = demo.browser();
    other.login("bob").await;

    let r = laptop.call("GET", "/api/sessions", None).await;
    let list = r.json.as_array().expect("a list");
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["current"], false);
    assert_eq!(list[1]["current"], true);
    assert_eq!(list[0]["created_at"], common::T0);
    assert_eq!(list[1]["created_at"], common::T0 + 5000);
    for s in list {
        assert_eq!(s["id_hint"].as_str().map(str::len), Some(8));
        assert!(s["last_seen"].is_u64() && s["expires_at"].is_u64());
    }
}

#[tokio::test]
async fn logout_is_204_clears_the_cookie_and_the_session_is_gone() {
    let demo = Demo::new();
    let mut b = demo.browser();
    b.login("alice").await;
    let old = b.cookie.clone();
    let r = b.call("POST", "/api/logout", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.set_cookie.iter().any(|c| c.contains("Max-Age=0")));
    b.cookie = old;
    assert_eq!(
        b.call("GET", "/api/me", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(demo.engine.admin().stats().expect("stats").live_sessions, 0);
}

#[tokio::test]
async fn logout_all_ends_every_session_of_the_user_only() {
    let demo = Demo::new();
    let mut a1 = demo.browser();
    let mut a2 = demo.browser();
    let mut bob = demo.browser();
    a1.login("alice").await;
    a2.login("alice").await;
    bob.login("bob").await;
    let r = a1.call("POST", "/api/logout-all", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.set_cookie.iter().any(|c| c.contains("Max-Age=0")));
    assert_eq!(
        a2.call("GET", "/api/me", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        bob.call("GET", "/api/me", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_page_says_when_insecure_cookies_are_on() {
    let demo = Demo::new();
    let mut b = demo.browser();
    let page = |app: Router| async move {
        let r = app
            .oneshot(Request::get("/").body(Body::empty()).expect("req"))
            .await
            .expect("infallible");
        assert_eq!(r.status(), StatusCode::OK);
        let bytes = r.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    };
    let secure = page(b.app.clone()).await;
    assert!(secure.contains("login-form") && !secure.contains("Insecure cookies are on"));
    b.app = app::router(demo.engine.clone(), true);
    assert!(
        page(b.app.clone())
            .await
            .contains("Insecure cookies are on")
    );
}
