//! A user keeps at most `Config::max_sessions_per_user` sessions: a login
//! past it logs out that user's oldest. Listing and logging out a user walk
//! the user's index a page at a time, never all of it at once.

mod common;

use std::sync::atomic::Ordering::SeqCst;

use sessiondb::{Error, Session};

fn logged_in(env: &common::Env, user: &str) -> Session {
    let mut s = env.engine.create().expect("create");
    env.engine.login(&mut s, user).expect("login");
    s
}

on_every_backend!(
    a_login_past_the_limit_logs_out_the_oldest,
    config = |c: sessiondb::Config| c.max_sessions_per_user(3),
    |env: common::Env| {
        let mut sessions = Vec::new();
        for _ in 0..5 {
            sessions.push(logged_in(&env, "ann"));
            env.advance(1);
        }
        let other = logged_in(&env, "bea");
        let listed: Vec<_> = env
            .engine
            .sessions_of("ann")
            .expect("list")
            .into_iter()
            .map(|i| i.id)
            .collect();
        let newest: Vec<_> = sessions[2..].iter().map(|s| *s.id()).collect();
        assert_eq!(listed, newest, "the three newest, oldest first");
        for s in &sessions[..2] {
            assert!(env.engine.load_id(s.id()).expect("load").is_none());
        }
        // Other users are untouched.
        assert!(env.engine.load_id(other.id()).expect("load").is_some());
        env.assert_sound();
    }
);

on_every_backend!(
    the_limit_never_logs_out_the_session_logging_in,
    config = |c: sessiondb::Config| c.max_sessions_per_user(1),
    |env: common::Env| {
        let first = logged_in(&env, "ann");
        // Same clock reading: the new session is no newer than the old one.
        let second = logged_in(&env, "ann");
        assert!(env.engine.load_id(first.id()).expect("load").is_none());
        assert!(env.engine.load_id(second.id()).expect("load").is_some());
    }
);

#[test]
fn a_zero_limit_is_refused() {
    let clock = sessiondb::ManualClock::new(common::T0);
    let err = sessiondb::Engine::with_backend(
        sessiondb::MemoryBackend::new(),
        common::config(&clock).max_sessions_per_user(0),
    )
    .expect_err("refused");
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "max_sessions_per_user",
                ..
            }
        ),
        "{err:?}"
    );
}

/// Thousands of sessions of one user (the limit raised out of the way):
/// listing, logging out everywhere and logging in read the index in pages.
#[test]
fn per_user_work_reads_the_index_in_bounded_pages() {
    const N: usize = 3_000;
    let (env, counters) = common::Env::probed(|c| c.max_sessions_per_user(N + 10));
    for _ in 0..N {
        logged_in(&env, "bot");
    }
    assert_eq!(env.engine.sessions_of("bot").expect("list").len(), N);
    let keep = logged_in(&env, "bot");
    assert_eq!(
        env.engine
            .destroy_user("bot", Some(keep.id()))
            .expect("destroy"),
        N
    );
    let largest = counters.largest_user_page.load(SeqCst);
    assert!(largest > 0, "the index was read");
    assert!(largest <= 256, "a page of {largest} ids");
    assert_eq!(env.engine.sessions_of("bot").expect("list").len(), 1);
}

/// The listing is bounded by the limit whatever the index holds (a limit
/// lowered after the fact): the newest, oldest first.
#[test]
fn listing_returns_at_most_the_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = sessiondb::ManualClock::new(common::T0);
    let open = |limit: usize| {
        sessiondb::Engine::open(
            dir.path(),
            common::config(&clock).max_sessions_per_user(limit),
        )
        .expect("open")
    };
    let engine = open(100);
    let mut ids = Vec::new();
    for _ in 0..10 {
        let mut s = engine.create().expect("create");
        engine.login(&mut s, "cy").expect("login");
        ids.push(*s.id());
        clock.advance(std::time::Duration::from_secs(1));
    }
    engine.close().expect("close");
    let engine = open(4);
    let listed: Vec<_> = engine
        .sessions_of("cy")
        .expect("list")
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(listed, ids[6..]);
}
