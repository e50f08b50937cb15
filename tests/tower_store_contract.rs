//! The tower-sessions store through its own traits (`SessionStore`,
//! `ExpiredDeletion`), on the memory backend and on sled in both
//! durability modes: the trait's contract, where tower-sessions' own stores
//! break it, and the user index that log out everywhere walks.
#![cfg(feature = "tower-sessions")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sessiondb::{Config, Durability, Engine, ManualClock, TowerStore};
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};

/// A store under test and what keeps it alive.
struct Env {
    name: &'static str,
    store: TowerStore,
    clock: ManualClock,
    _dir: Option<tempfile::TempDir>,
}

impl Env {
    fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    /// An instant `secs` from the engine clock's now.
    fn in_secs(&self, secs: i64) -> OffsetDateTime {
        let now = i128::from(sessiondb::Clock::now_ms(&self.clock)) * 1_000_000;
        OffsetDateTime::from_unix_timestamp_nanos(now + i128::from(secs) * 1_000_000_000)
            .expect("time")
    }

    fn record(&self, secs: i64, data: &[(&str, Value)]) -> Record {
        Record {
            id: Id::default(),
            data: data
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            expiry_date: self.in_secs(secs),
        }
    }

    fn stats(&self) -> sessiondb::Stats {
        self.store.engine().admin().stats().expect("stats")
    }

    fn assert_sound(&self) {
        let v = self.store.engine().admin().check().expect("check");
        assert!(v.is_empty(), "{}: {v:#?}", self.name);
    }
}

fn config(clock: &ManualClock) -> Config {
    common::config(clock)
}

fn memory() -> Env {
    let clock = ManualClock::new(common::T0);
    let engine = Engine::with_backend(sessiondb::MemoryBackend::new(), config(&clock))
        .expect("memory engine");
    Env {
        name: "memory",
        store: TowerStore::new(Arc::new(engine))
            .index_users_at(TowerStore::AXUM_LOGIN_USER)
            .expect("pointer"),
        clock,
        _dir: None,
    }
}

fn sled(durability: Durability) -> Env {
    let clock = ManualClock::new(common::T0);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = TowerStore::open_with(dir.path(), config(&clock).durability(durability))
        .expect("open")
        .index_users_at(TowerStore::AXUM_LOGIN_USER)
        .expect("pointer");
    Env {
        name: match durability {
            Durability::Strict => "sled-strict",
            _ => "sled-relaxed",
        },
        store,
        clock,
        _dir: Some(dir),
    }
}

fn every_env() -> Vec<Env> {
    vec![
        memory(),
        sled(Durability::Strict),
        sled(Durability::Relaxed),
    ]
}

/// axum-login's session data for `user_id`.
fn logged_in(user_id: Value) -> (&'static str, Value) {
    (
        "axum-login.data",
        json!({"user_id": user_id, "auth_hash": [1, 2, 3]}),
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_record_comes_back_exactly_as_saved() {
    rt().block_on(async {
        for env in every_env() {
            let mut r = env.record(
                600,
                &[
                    ("n", json!(1)),
                    ("cart", json!({"items": ["book", 2, null], "total": 1.5})),
                    logged_in(json!(7)),
                ],
            );
            r.expiry_date += time::Duration::nanoseconds(123_456);
            env.store.create(&mut r).await.expect("create");
            let back = env.store.load(&r.id).await.expect("load");
            assert_eq!(back.as_ref(), Some(&r), "{}", env.name);
            env.assert_sound();
        }
    });
}

#[test]
fn create_never_overwrites_a_live_record() {
    rt().block_on(async {
        for env in every_env() {
            let mut first = env.record(600, &[("owner", json!("first"))]);
            env.store.create(&mut first).await.expect("create");
            let mut second = env.record(600, &[("owner", json!("second"))]);
            second.id = first.id;
            env.store.create(&mut second).await.expect("create");
            assert_ne!(second.id, first.id, "{}: a new id is drawn", env.name);
            assert_eq!(
                env.store.load(&first.id).await.expect("load"),
                Some(first.clone()),
                "{}: the first record is intact",
                env.name
            );
            assert_eq!(
                env.store.load(&second.id).await.expect("load"),
                Some(second),
                "{}",
                env.name
            );
            assert_eq!(env.stats().live_sessions, 2, "{}", env.name);
        }
    });
}

#[test]
fn create_may_reuse_the_id_of_an_expired_record() {
    rt().block_on(async {
        for env in every_env() {
            let mut old = env.record(10, &[("n", json!(1))]);
            env.store.create(&mut old).await.expect("create");
            env.advance(11);
            let mut new = env.record(600, &[("n", json!(2))]);
            new.id = old.id;
            env.store.create(&mut new).await.expect("create");
            assert_eq!(
                new.id, old.id,
                "{}: an expired record is no record",
                env.name
            );
            assert_eq!(
                env.store.load(&new.id).await.expect("load"),
                Some(new),
                "{}",
                env.name
            );
            env.assert_sound();
        }
    });
}

#[test]
fn an_expired_record_loads_as_none_before_any_sweep() {
    rt().block_on(async {
        for env in every_env() {
            let mut r = env.record(10, &[("n", json!(1))]);
            env.store.create(&mut r).await.expect("create");
            env.advance(9);
            assert!(env.store.load(&r.id).await.expect("load").is_some());
            env.advance(1);
            assert_eq!(
                env.store.load(&r.id).await.expect("load"),
                None,
                "{}: expired at its expiry date",
                env.name
            );
            let s = env.stats();
            assert_eq!((s.live_sessions, s.expired_pending), (0, 1), "{}", env.name);
        }
    });
}

#[test]
fn save_replaces_data_and_expiry() {
    rt().block_on(async {
        for env in every_env() {
            let mut r = env.record(10, &[("n", json!(1))]);
            env.store.create(&mut r).await.expect("create");
            env.advance(5);
            r.data.insert("n".into(), json!(2));
            r.data.insert("more".into(), json!("x"));
            r.expiry_date = env.in_secs(3600);
            env.store.save(&r).await.expect("save");
            env.advance(60);
            assert_eq!(
                env.store.load(&r.id).await.expect("load"),
                Some(r.clone()),
                "{}: the later expiry holds",
                env.name
            );
            let records = env.store.engine().admin().records(None, 10).expect("list");
            assert_eq!(records.len(), 1);
            let stored = records[0].1.as_ref().expect("decodes");
            assert_eq!(stored.created_at, common::T0, "{}", env.name);
            assert_eq!(stored.last_seen, common::T0 + 5_000, "{}", env.name);
            env.assert_sound();
        }
    });
}

#[test]
fn a_save_after_delete_does_not_bring_the_session_back() {
    rt().block_on(async {
        for env in every_env() {
            let mut r = env.record(600, &[logged_in(json!(7))]);
            env.store.create(&mut r).await.expect("create");
            let loaded = env.store.load(&r.id).await.expect("load").expect("live");
            // A logout (another request) deletes it; this request then
            // saves its copy.
            env.store.delete(&r.id).await.expect("delete");
            let mut copy = loaded;
            copy.data.insert("later".into(), json!(true));
            env.store
                .save(&copy)
                .await
                .expect("a lost save is no error");
            assert_eq!(
                env.store.load(&r.id).await.expect("load"),
                None,
                "{}",
                env.name
            );
            assert_eq!(env.stats().live_sessions, 0, "{}", env.name);
            env.assert_sound();
        }
    });
}

#[test]
fn a_save_after_expiry_or_sweep_does_not_bring_the_session_back() {
    rt().block_on(async {
        for env in every_env() {
            let mut swept = env.record(5, &[("n", json!(2))]);
            env.store.create(&mut swept).await.expect("create");
            let mut expired = env.record(10, &[("n", json!(1))]);
            env.store.create(&mut expired).await.expect("create");
            env.advance(6);
            env.store.delete_expired().await.expect("sweep");
            env.advance(5);
            // `swept` is gone; `expired` is still stored, expired.
            let s = env.stats();
            assert_eq!((s.live_sessions, s.expired_pending), (0, 1), "{}", env.name);
            // Both copies now try to live on with a new expiry.
            for r in [&mut expired, &mut swept] {
                r.expiry_date = env.in_secs(3600);
                env.store.save(r).await.expect("save");
                assert_eq!(
                    env.store.load(&r.id).await.expect("load"),
                    None,
                    "{}",
                    env.name
                );
            }
            // A save of an id never created writes nothing either.
            let never = env.record(600, &[("n", json!(3))]);
            env.store.save(&never).await.expect("save");
            assert_eq!(env.store.load(&never.id).await.expect("load"), None);
            assert_eq!(env.stats().live_sessions, 0, "{}", env.name);
        }
    });
}

#[test]
fn delete_of_a_missing_record_is_fine() {
    rt().block_on(async {
        for env in every_env() {
            env.store.delete(&Id::default()).await.expect("delete");
        }
    });
}

#[test]
fn delete_expired_deletes_exactly_the_expired() {
    rt().block_on(async {
        for env in every_env() {
            let mut live = Vec::new();
            for i in 0..5 {
                let mut short = env.record(10 + i, &[("n", json!(i))]);
                env.store.create(&mut short).await.expect("create");
                let mut long = env.record(3600 + i, &[("n", json!(i))]);
                env.store.create(&mut long).await.expect("create");
                live.push(long);
            }
            // One of engine's own sessions beside them, expiring too.
            env.advance(100);
            assert_eq!(env.stats().expired_pending, 5, "{}", env.name);
            env.store.delete_expired().await.expect("sweep");
            let s = env.stats();
            assert_eq!((s.live_sessions, s.expired_pending), (5, 0), "{}", env.name);
            for r in &live {
                assert_eq!(
                    env.store.load(&r.id).await.expect("load").as_ref(),
                    Some(r),
                    "{}",
                    env.name
                );
            }
            env.assert_sound();
        }
    });
}

#[test]
fn records_over_the_size_limit_are_an_encode_error_and_store_nothing() {
    rt().block_on(async {
        for env in every_env() {
            let mut r = env.record(600, &[("big", json!("x".repeat(200_000)))]);
            let err = env.store.create(&mut r).await.expect_err("too large");
            assert!(matches!(err, session_store::Error::Encode(_)), "{err:?}");
            assert_eq!(env.stats().live_sessions, 0, "{}", env.name);
            // And the reserved key.
            let mut r = env.record(600, &[(TowerStore::EXPIRY_KEY, json!(1))]);
            let err = env.store.create(&mut r).await.expect_err("reserved");
            assert!(matches!(err, session_store::Error::Encode(_)), "{err:?}");
        }
    });
}

#[test]
fn tower_records_and_engine_sessions_share_a_store_soundly() {
    rt().block_on(async {
        let env = sled(Durability::Relaxed);
        let engine = env.store.engine().clone();
        let mut s = engine.create().expect("create");
        s.insert("k", &1u32).expect("insert");
        engine.login(&mut s, "7").expect("login");
        let mut r = env.record(600, &[logged_in(json!(7))]);
        env.store.create(&mut r).await.expect("create");
        env.assert_sound();
        // The tower store lists only its own; log out everywhere takes both.
        let listed = env.store.sessions_of("7").await.expect("list");
        assert_eq!(listed.iter().map(|t| t.id).collect::<Vec<_>>(), [r.id]);
        assert_eq!(env.store.destroy_user("7", None).await.expect("destroy"), 2);
        assert_eq!(env.stats().live_sessions, 0);
        env.assert_sound();
    });
}

#[test]
fn the_store_works_outside_a_tokio_runtime() {
    let env = memory();
    let mut r = env.record(600, &[("n", json!(1))]);
    poll_once(env.store.create(&mut r)).expect("create");
    assert!(poll_once(env.store.load(&r.id)).expect("load").is_some());
}

/// Polls `f` once on this thread: outside a runtime the store's calls run
/// inline, so they are ready at the first poll.
fn poll_once<T>(f: impl std::future::Future<Output = T>) -> T {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the call waited outside a runtime"),
    }
}

// ------------------------------------------------------------ users ----

#[test]
fn the_user_index_follows_axum_login_data() {
    rt().block_on(async {
        for env in every_env() {
            let mut a = env.record(600, &[logged_in(json!(7))]);
            let mut b = env.record(600, &[logged_in(json!("7"))]);
            let mut named = env.record(600, &[logged_in(json!("alice"))]);
            let mut anonymous = env.record(600, &[("n", json!(1))]);
            let mut no_user = env.record(600, &[logged_in(Value::Null)]);
            for r in [&mut a, &mut b, &mut named, &mut anonymous, &mut no_user] {
                env.store.create(r).await.expect("create");
                env.advance(1);
            }
            let ids =
                |l: Vec<sessiondb::TowerSession>| l.into_iter().map(|s| s.id).collect::<Vec<_>>();
            // A number and its decimal text are one user, as
            // `user.id().to_string()` names it.
            assert_eq!(
                ids(env.store.sessions_of("7").await.expect("list")),
                [a.id, b.id],
                "{}",
                env.name
            );
            assert_eq!(
                ids(env.store.sessions_of("alice").await.expect("list")),
                [named.id]
            );
            assert_eq!(env.stats().users, 2, "{}", env.name);

            // A user changed by a save moves in the index.
            let mut moved = b.clone();
            moved
                .data
                .insert("axum-login.data".into(), json!({"user_id": "alice"}));
            env.store.save(&moved).await.expect("save");
            assert_eq!(ids(env.store.sessions_of("7").await.expect("list")), [a.id]);
            assert_eq!(
                ids(env.store.sessions_of("alice").await.expect("list")),
                [b.id, named.id]
            );
            // And logging out (axum-login flushes the data) leaves it.
            let mut out = a.clone();
            out.data.clear();
            env.store.save(&out).await.expect("save");
            assert!(env.store.sessions_of("7").await.expect("list").is_empty());
            env.assert_sound();
        }
    });
}

#[test]
fn a_user_the_index_cannot_hold_is_an_encode_error() {
    rt().block_on(async {
        for env in every_env() {
            for bad in [
                json!({"id": 7}),
                json!([7]),
                json!(true),
                json!(""),
                json!("u".repeat(1025)),
            ] {
                let mut r = env.record(600, &[logged_in(bad.clone())]);
                let err = env.store.create(&mut r).await.expect_err("refused");
                assert!(
                    matches!(err, session_store::Error::Encode(_)),
                    "{bad}: {err:?}"
                );
            }
            assert_eq!(env.stats().live_sessions, 0, "{}", env.name);
        }
    });
}

#[test]
fn the_pointer_is_a_json_pointer() {
    let env = memory();
    assert!(env.store.clone().index_users_at("user").is_err());
    rt().block_on(async {
        // The whole value of a key, and an escaped key.
        let store = env.store.clone().index_users_at("/a~1b").expect("pointer");
        let mut r = env.record(600, &[("a/b", json!("carol"))]);
        store.create(&mut r).await.expect("create");
        assert_eq!(store.sessions_of("carol").await.expect("list").len(), 1);
    });
}

#[test]
fn log_out_everywhere_deletes_the_users_sessions_but_the_one_kept() {
    rt().block_on(async {
        for env in every_env() {
            let mut mine = Vec::new();
            for _ in 0..3 {
                let mut r = env.record(600, &[logged_in(json!(7))]);
                env.store.create(&mut r).await.expect("create");
                mine.push(r);
            }
            let mut other = env.record(600, &[logged_in(json!(8))]);
            env.store.create(&mut other).await.expect("create");
            let n = env
                .store
                .destroy_user("7", Some(&mine[0].id))
                .await
                .expect("destroy");
            assert_eq!(n, 2, "{}", env.name);
            assert!(env.store.load(&mine[0].id).await.expect("load").is_some());
            for r in &mine[1..] {
                assert_eq!(env.store.load(&r.id).await.expect("load"), None);
                // Their requests' saves do not bring them back.
                env.store.save(r).await.expect("save");
                assert_eq!(env.store.load(&r.id).await.expect("load"), None);
            }
            assert!(env.store.load(&other.id).await.expect("load").is_some());
            assert_eq!(env.store.destroy_user("7", None).await.expect("destroy"), 1);
            env.assert_sound();
        }
    });
}

/// The racy point on purpose: a log out everywhere of the user runs whole
/// between the create's read of the user's revocation and its write (so its
/// walk of the index cannot see the record). The log out everywhere wins.
#[test]
fn a_log_out_everywhere_during_a_create_wins() {
    let (env, engine, counters) = probed();
    rt().block_on(async {
        let mut before = env.record(600, &[logged_in(json!(7))]);
        env.store.create(&mut before).await.expect("create");
        let everywhere = engine.clone();
        common::arm(&counters.before_put, move || {
            assert_eq!(everywhere.destroy_user("7", None).expect("destroy"), 1);
        });
        let mut racing = env.record(600, &[logged_in(json!(7))]);
        env.store.create(&mut racing).await.expect("create");
        assert_eq!(env.store.load(&before.id).await.expect("load"), None);
        assert_eq!(
            env.store.load(&racing.id).await.expect("load"),
            None,
            "a create that raced a log out everywhere of its user survived it"
        );
        env.assert_sound();
        // Without the race a login after a log out everywhere stands (in a
        // later millisecond: a tie goes to the log out everywhere).
        env.clock.advance(Duration::from_millis(1));
        let mut after = env.record(600, &[logged_in(json!(7))]);
        env.store.create(&mut after).await.expect("create");
        assert!(env.store.load(&after.id).await.expect("load").is_some());
    });
}

/// An engine on a probe (hooks at the racy points) and a store on it.
fn probed() -> (Env, Arc<Engine>, Arc<common::Counters>) {
    let (probe, counters) = common::Probe::new();
    let clock = ManualClock::new(common::T0);
    let engine = Arc::new(Engine::with_backend(probe, config(&clock)).expect("engine"));
    let store = TowerStore::new(engine.clone())
        .index_users_at(TowerStore::AXUM_LOGIN_USER)
        .expect("pointer");
    let env = Env {
        name: "probe",
        store,
        clock,
        _dir: None,
    };
    (env, engine, counters)
}

/// The same race, with a first log out everywhere of the user earlier in
/// the same millisecond: the second must still be seen (the revocation
/// must change though the clock did not).
#[test]
fn a_second_log_out_everywhere_in_the_same_millisecond_also_wins() {
    let (env, engine, counters) = probed();
    rt().block_on(async {
        assert_eq!(engine.destroy_user("7", None).expect("destroy"), 0);
        let everywhere = engine.clone();
        common::arm(&counters.before_put, move || {
            everywhere.destroy_user("7", None).expect("destroy");
        });
        let mut racing = env.record(600, &[logged_in(json!(7))]);
        env.store.create(&mut racing).await.expect("create");
        assert_eq!(
            env.store.load(&racing.id).await.expect("load"),
            None,
            "a create survived a log out everywhere in the millisecond of an earlier one"
        );
        env.assert_sound();
    });
}

/// A save that gives an anonymous session its user, racing a log out
/// everywhere of that user: the log out everywhere wins here too.
#[test]
fn a_log_out_everywhere_during_a_save_that_sets_the_user_wins() {
    let (env, engine, counters) = probed();
    rt().block_on(async {
        let mut r = env.record(600, &[("n", json!(1))]);
        env.store.create(&mut r).await.expect("create");
        let everywhere = engine.clone();
        common::arm(&counters.before_put, move || {
            everywhere.destroy_user("7", None).expect("destroy");
        });
        let (k, v) = logged_in(json!(7));
        r.data.insert(k.to_owned(), v);
        env.store.save(&r).await.expect("save");
        assert_eq!(env.store.load(&r.id).await.expect("load"), None);
        env.assert_sound();
    });
}

/// "Log out everywhere else" while the kept session is being saved: the
/// kept session stays, with the save's data; only the others go.
#[test]
fn log_out_everywhere_else_never_takes_the_kept_session_mid_save() {
    let (env, _engine, counters) = probed();
    rt().block_on(async {
        let mut kept = env.record(600, &[logged_in(json!(7))]);
        env.store.create(&mut kept).await.expect("create");
        let mut other = env.record(600, &[logged_in(json!(7))]);
        env.store.create(&mut other).await.expect("create");
        let keep = kept.id;
        let store = env.store.clone();
        common::arm(&counters.before_put, move || {
            let n = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime")
                .block_on(store.destroy_user("7", Some(&keep)))
                .expect("destroy");
            assert_eq!(n, 1);
        });
        kept.data.insert("n".into(), json!(2));
        env.store.save(&kept).await.expect("save");
        assert_eq!(
            env.store.load(&kept.id).await.expect("load"),
            Some(kept.clone()),
            "the session kept by log out everywhere else was lost"
        );
        assert_eq!(env.store.load(&other.id).await.expect("load"), None);
        env.assert_sound();
    });
}

/// Threads, hundreds of rounds: requests keep saving their copies of a
/// user's sessions while another request logs the user out everywhere.
/// Once it has returned, no session of the user is left and none comes
/// back, whatever the interleaving.
#[test]
fn saves_racing_a_log_out_everywhere_never_bring_a_session_back() {
    let env = sled(Durability::Relaxed);
    let rt = rt();
    for round in 0..300 {
        // A new millisecond: a create in the millisecond of a log out
        // everywhere of its user loses to it.
        env.clock.advance(Duration::from_millis(1));
        let records: Vec<Record> = rt.block_on(async {
            let mut v = Vec::new();
            for i in 0..3 {
                let mut r = env.record(600, &[logged_in(json!(7)), ("i", json!(i))]);
                env.store.create(&mut r).await.expect("create");
                v.push(r);
            }
            v
        });
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
        let stop = Arc::new(AtomicBool::new(false));
        // Saves each saver has finished.
        let done: Arc<Vec<AtomicU64>> = Arc::new((0..3).map(|_| AtomicU64::new(0)).collect());
        let savers: Vec<_> = records
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, mut r)| {
                let store = env.store.clone();
                let (stop, done) = (stop.clone(), done.clone());
                let handle = rt.handle().clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(SeqCst) {
                        n += 1;
                        r.data.insert("n".into(), json!(n));
                        handle.block_on(store.save(&r)).expect("save");
                        done[i].fetch_add(1, SeqCst);
                    }
                })
            })
            .collect();
        let destroyed = rt
            .block_on(env.store.destroy_user("7", None))
            .expect("destroy");
        assert_eq!(destroyed, 3, "round {round}");
        // Every saver saves twice more after the log out everywhere
        // returned (counted, not timed), in a later millisecond (so no tie
        // with the log out everywhere covers for the save), then stops.
        env.clock.advance(Duration::from_millis(1));
        let after: Vec<u64> = done.iter().map(|d| d.load(SeqCst)).collect();
        while done.iter().zip(&after).any(|(d, a)| d.load(SeqCst) < a + 2) {
            std::thread::yield_now();
        }
        stop.store(true, SeqCst);
        for s in savers {
            s.join().expect("saver");
        }
        rt.block_on(async {
            for r in &records {
                assert_eq!(
                    env.store.load(&r.id).await.expect("load"),
                    None,
                    "round {round}"
                );
            }
            assert!(env.store.sessions_of("7").await.expect("list").is_empty());
        });
    }
    env.assert_sound();
}

/// Two requests of one session save at once, hundreds of times: every save
/// lands whole (last writer wins, as tower-sessions expects), none fails.
#[test]
fn concurrent_saves_of_one_session_all_succeed() {
    let env = sled(Durability::Relaxed);
    let rt = rt();
    let mut r = env.record(600, &[("n", json!(0))]);
    rt.block_on(env.store.create(&mut r)).expect("create");
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let store = env.store.clone();
            let mut r = r.clone();
            let handle = rt.handle().clone();
            std::thread::spawn(move || {
                for n in 0..300 {
                    r.data.insert("n".into(), json!(n));
                    r.data.insert("writer".into(), json!(w));
                    handle.block_on(store.save(&r)).expect("save");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    let last = rt
        .block_on(env.store.load(&r.id))
        .expect("load")
        .expect("live");
    assert_eq!(last.data["n"], json!(299));
    env.assert_sound();
}
