//! Login is atomic under any interleaving: either a new id carries the
//! user, or nothing stored changed. An id planted in a victim's browser
//! (cookie tossing, a plain-HTTP man in the middle) must never become
//! logged in, whatever the attacker writes to it while the victim logs in.
//!
//! The deterministic tests put the attacker's write exactly between the
//! victim's load and the id change, through a clock whose next reading runs
//! a hook (login reads the clock right before it renames). The threaded
//! races run the two requests against each other hundreds of times.

mod common;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use sessiondb::{Clock, Config, Engine, Error, Session, SessionId};

type Hook = Box<dyn FnOnce() + Send>;

/// A clock that runs its armed hook (once) at its next reading.
#[derive(Clone, Default)]
struct HookClock {
    now: Arc<AtomicU64>,
    hook: Arc<Mutex<Option<Hook>>>,
}

impl fmt::Debug for HookClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HookClock")
    }
}

impl Clock for HookClock {
    fn now_ms(&self) -> u64 {
        let hook = self.hook.lock().expect("hook lock").take();
        if let Some(hook) = hook {
            hook();
        }
        self.now.load(Ordering::SeqCst)
    }
}

impl HookClock {
    fn new() -> Self {
        let c = Self::default();
        c.now.store(common::T0, Ordering::SeqCst);
        c
    }

    fn arm(&self, hook: impl FnOnce() + Send + 'static) {
        *self.hook.lock().expect("hook lock") = Some(Box::new(hook));
    }
}

fn config(clock: &HookClock) -> Config {
    Config::new(common::ring())
        .clock(clock.clone())
        .sweeper(false)
}

/// Engines on sled and on memory, with a hook clock.
fn engines() -> Vec<(Arc<Engine>, HookClock, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let sled_clock = HookClock::new();
    let sled = Engine::open(dir.path(), config(&sled_clock)).expect("open");
    let mem_clock = HookClock::new();
    let mem = Engine::memory(config(&mem_clock)).expect("memory");
    vec![
        (Arc::new(sled), sled_clock, Some(dir)),
        (Arc::new(mem), mem_clock, None),
    ]
}

/// The attacker's id: an anonymous stored session holding a cart.
fn planted(engine: &Engine) -> Session {
    let mut s = engine.create().expect("create");
    s.insert("cart", "book").expect("insert");
    engine.save(&mut s).expect("save");
    engine.load_id(s.id()).expect("load").expect("live")
}

/// What another request does: load, change a value, save.
fn write_counter(engine: &Engine, id: &SessionId, n: u64) {
    let mut s = engine.load_id(id).expect("load").expect("live");
    s.insert("counter", &n).expect("insert");
    engine.save(&mut s).expect("the other request's save");
}

/// The old id is gone, or at least names no user.
fn assert_not_logged_in(engine: &Engine, id: &SessionId) {
    if let Some(s) = engine.load_id(id).expect("load") {
        assert_eq!(s.user(), None, "the planted id got logged in");
    }
}

#[test]
fn login_retries_past_a_write_between_load_and_id_change() {
    for (engine, clock, _dir) in engines() {
        let mut victim = planted(&engine);
        let old = *victim.id();
        victim.insert("flash", "hello").expect("insert");
        let (e, id) = (engine.clone(), old);
        clock.arm(move || write_counter(&e, &id, 7));

        engine
            .login(&mut victim, "victim")
            .expect("a raced login retries and succeeds");

        assert_ne!(*victim.id(), old);
        assert_not_logged_in(&engine, &old);
        assert!(engine.load_id(&old).expect("load").is_none());
        let stored = engine.load_id(victim.id()).expect("load").expect("live");
        assert_eq!(stored.user(), Some("victim"));
        // Both the raced write and this copy's unsaved value survive, and
        // the anonymous cart carried over.
        assert_eq!(stored.get::<u64>("counter").expect("ok"), Some(7));
        assert_eq!(
            stored.get::<String>("flash").expect("ok").as_deref(),
            Some("hello")
        );
        assert_eq!(
            stored.get::<String>("cart").expect("ok").as_deref(),
            Some("book")
        );
        assert!(engine.admin().check().expect("check").is_empty());
    }
}

#[test]
fn a_failed_login_leaves_the_session_exactly_as_it_was() {
    for (engine, clock, _dir) in engines() {
        let mut victim = planted(&engine);
        victim.insert("flash", "hello").expect("insert");
        let before = format!("{victim:?}");
        let (old, keys): (SessionId, Vec<String>) =
            (*victim.id(), victim.keys().map(str::to_owned).collect());
        // The session is destroyed (a logout in another tab) just before
        // the id change.
        let (e, id) = (engine.clone(), old);
        clock.arm(move || {
            e.destroy_id(&id).expect("destroy");
        });

        let err = engine.login(&mut victim, "victim").expect_err("gone");
        assert!(matches!(err, Error::Gone { .. }), "{err:?}");

        assert_eq!(*victim.id(), old);
        assert_eq!(victim.user(), None);
        assert!(victim.is_changed());
        assert_eq!(victim.keys().map(str::to_owned).collect::<Vec<_>>(), keys);
        assert_eq!(format!("{victim:?}"), before);
        // Nothing came back either.
        assert!(engine.load_id(&old).expect("load").is_none());
        assert!(engine.sessions_of("victim").expect("list").is_empty());
    }
}

/// The victim logs in on the planted id while the attacker hammers it with
/// writes; 500 rounds. Every login succeeds, on a new id, and the planted
/// id never carries the user.
#[test]
fn login_against_concurrent_writes_500_rounds() {
    let engine =
        Arc::new(Engine::memory(Config::new(common::ring()).sweeper(false)).expect("memory"));
    for round in 0..500u64 {
        let victim = planted(&engine);
        let old = *victim.id();
        let start = Arc::new(Barrier::new(2));
        let attacker = {
            let (engine, start) = (engine.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                for n in 0..20 {
                    let Some(mut s) = engine.load_id(&old).expect("load") else {
                        return;
                    };
                    s.insert("counter", &n).expect("insert");
                    match engine.save(&mut s) {
                        Ok(()) | Err(Error::Conflict { .. } | Error::Gone { .. }) => {}
                        Err(e) => panic!("attacker's save: {e}"),
                    }
                }
            })
        };
        let mut mine = victim.clone();
        start.wait();
        let result = engine.login(&mut mine, "victim");
        attacker.join().expect("attacker");
        result.unwrap_or_else(|e| panic!("round {round}: login failed: {e}"));
        assert_ne!(*mine.id(), old);
        assert_not_logged_in(&engine, &old);
        let stored = engine.load_id(mine.id()).expect("load").expect("live");
        assert_eq!(stored.user(), Some("victim"));
    }
    assert!(engine.admin().check().expect("check").is_empty());
}

#[test]
fn login_to_another_account_starts_empty_and_anonymous_or_same_user_keeps_values() {
    let engine = Engine::memory(Config::new(common::ring()).sweeper(false)).expect("memory");
    // Anonymous, with a cart: the cart survives login.
    let mut s = planted(&engine);
    engine.login(&mut s, "alice").expect("login");
    assert_eq!(
        s.get::<String>("cart").expect("ok").as_deref(),
        Some("book")
    );
    // The same user again: values kept, new id.
    s.insert("theme", "dark").expect("insert");
    engine.save(&mut s).expect("save");
    let alice_id = *s.id();
    engine.login(&mut s, "alice").expect("login again");
    assert_ne!(*s.id(), alice_id);
    assert_eq!(
        s.get::<String>("theme").expect("ok").as_deref(),
        Some("dark")
    );
    // Another user on this browser: nothing of alice's carries over, not
    // even a value set just before the call.
    s.insert("draft", "alice's secret").expect("insert");
    engine.login(&mut s, "bob").expect("login as bob");
    assert_eq!(s.user(), Some("bob"));
    assert_eq!(s.keys().count(), 0, "alice's values leaked to bob");
    let stored = engine.load_id(s.id()).expect("load").expect("live");
    assert_eq!(stored.keys().count(), 0);
    assert!(engine.sessions_of("alice").expect("list").is_empty());
}

#[cfg(feature = "axum")]
mod through_the_layer {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::post;
    use http::{Request, StatusCode, header};
    use sessiondb::web::{SessionHandle, SessionLayer, WebError};
    use tower::ServiceExt as _;

    async fn plant(session: SessionHandle) -> Result<&'static str, WebError> {
        session.insert("cart", "book")?;
        Ok("planted")
    }

    async fn login(session: SessionHandle) -> Result<&'static str, WebError> {
        session.insert("flash", "welcome")?;
        session.login("victim").await?;
        Ok("logged in")
    }

    async fn counter(session: SessionHandle) -> Result<String, WebError> {
        let n = session
            .update(|s| {
                let n = s.get::<u64>("n").ok().flatten().unwrap_or(0) + 1;
                s.insert("n", &n).map(|()| n)
            })
            .await?;
        Ok(format!("{n:?}"))
    }

    fn routes() -> Router {
        Router::new()
            .route("/plant", post(plant))
            .route("/login", post(login))
            .route("/counter", post(counter))
    }

    fn app(engine: Arc<Engine>) -> Router {
        routes().layer(SessionLayer::new(engine).csrf_guard(false))
    }

    async fn post_to(
        app: &Router,
        path: &str,
        cookie: Option<&str>,
    ) -> (StatusCode, Option<String>) {
        let mut r = Request::post(path);
        if let Some(c) = cookie {
            r = r.header(header::COOKIE, c);
        }
        let resp = app
            .clone()
            .oneshot(r.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let cookie = resp.headers().get(header::SET_COOKIE).map(|v| {
            let v = v.to_str().expect("ascii");
            v.split(';').next().expect("pair").to_owned()
        });
        (resp.status(), cookie)
    }

    async fn planted_cookie(app: &Router, engine: &Engine) -> (String, SessionId) {
        let (status, cookie) = post_to(app, "/plant", None).await;
        assert_eq!(status, StatusCode::OK);
        let cookie = cookie.expect("a cookie for the planted session");
        let id = engine.session_id([cookie.as_bytes()]).expect("verifies");
        (cookie, id)
    }

    #[tokio::test]
    async fn a_write_between_load_and_id_change_never_logs_in_the_old_id() {
        for (engine, clock, _dir) in engines() {
            // This login handler arms the hook after the layer's load: the
            // attacker's write lands between that load and the id change.
            let armed_login = {
                let (engine, clock) = (engine.clone(), clock.clone());
                move |session: SessionHandle| async move {
                    let id = session.id().expect("the planted session");
                    let e = engine.clone();
                    clock.arm(move || write_counter(&e, &id, 7));
                    session.login("victim").await?;
                    Ok::<_, WebError>("logged in")
                }
            };
            let app = routes()
                .route("/armed-login", post(armed_login))
                .layer(SessionLayer::new(engine.clone()).csrf_guard(false));
            let (cookie, old) = planted_cookie(&app, &engine).await;

            let (status, new_cookie) = post_to(&app, "/armed-login", Some(&cookie)).await;

            assert_not_logged_in(&engine, &old);
            assert_eq!(status, StatusCode::OK);
            let new_id = engine
                .session_id([new_cookie.expect("a new cookie").as_bytes()])
                .expect("verifies");
            assert_ne!(new_id, old);
            let s = engine.load_id(&new_id).expect("load").expect("live");
            assert_eq!(s.user(), Some("victim"));
            assert_eq!(s.get::<u64>("counter").expect("ok"), Some(7));
            assert!(engine.admin().check().expect("check").is_empty());
        }
    }

    /// The attack as reported: the victim's `POST /login` and the
    /// attacker's `POST /counter` on the planted id, 500 rounds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn login_against_concurrent_counter_requests_500_rounds() {
        let engine =
            Arc::new(Engine::memory(Config::new(common::ring()).sweeper(false)).expect("memory"));
        let app = app(engine.clone());
        for round in 0..500 {
            let (cookie, old) = planted_cookie(&app, &engine).await;
            let attackers: Vec<_> = (0..3)
                .map(|_| {
                    let (app, cookie) = (app.clone(), cookie.clone());
                    tokio::spawn(async move {
                        for _ in 0..3 {
                            post_to(&app, "/counter", Some(&cookie)).await;
                        }
                    })
                })
                .collect();
            let (status, _) = post_to(&app, "/login", Some(&cookie)).await;
            for a in attackers {
                a.await.expect("attacker");
            }
            assert_not_logged_in(&engine, &old);
            assert_eq!(status, StatusCode::OK, "round {round}: login failed");
        }
        assert!(engine.admin().check().expect("check").is_empty());
    }
}
