//! A sweep deletes the expired sessions and only those, in batches, with
//! their index entries, leaving every invariant true.

mod common;

use std::time::Duration;

use common::Env;

fn sweep(env: Env) {
    let mut doomed = Vec::new();
    let mut kept = Vec::new();
    for i in 0..25u32 {
        let mut s = env.engine.create().expect("create");
        s.insert("i", &i).expect("insert");
        if i % 3 == 0 {
            env.engine
                .login(&mut s, &format!("user{}", i % 4))
                .expect("login");
        } else {
            env.engine.save(&mut s).expect("save");
        }
        doomed.push(*s.id());
    }
    env.advance(20 * 60);
    for i in 0..25u32 {
        let s = env.stored(i);
        kept.push(*s.id());
    }
    // Keep one old session alive by reading it: its touch saves it.
    let rescued = doomed.pop().expect("one");
    env.engine.load_id(&rescued).expect("load").expect("live");
    kept.push(rescued);

    env.advance(11 * 60); // first batch idle 31 min, second 11 min
    let stats = env.engine.admin().stats().expect("stats");
    assert_eq!(stats.expired_pending, doomed.len() as u64);
    assert_eq!(
        env.engine.admin().sweep_now().expect("sweep"),
        doomed.len() as u64
    );
    for id in &kept {
        assert!(env.engine.load_id(id).expect("load").is_some());
    }
    let stats = env.engine.admin().stats().expect("stats");
    assert_eq!(stats.expired_pending, 0);
    assert_eq!(stats.live_sessions, kept.len() as u64);
    assert_eq!(stats.swept, doomed.len() as u64);
    assert_eq!(env.engine.admin().sweep_now().expect("sweep"), 0);
    // The rescued session (i = 24) belongs to user0; every other user's
    // sessions expired, and their index entries went with them.
    let user0 = env.engine.sessions_of("user0").expect("list");
    assert_eq!(
        user0.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![rescued]
    );
    for u in 1..4 {
        assert!(
            env.engine
                .sessions_of(&format!("user{u}"))
                .expect("list")
                .is_empty()
        );
    }
    env.assert_sound();
}

fn small_batches(c: sessiondb::Config) -> sessiondb::Config {
    c.sweep_batch(4)
}

on_every_backend!(in_small_batches, config = small_batches, sweep);

// The thread runs on real time (a 10 ms tick); the sessions' expiry runs on
// the manual clock, which the test moves once. No sleep decides the
// outcome: the test waits for the sweeper's own counter.
on_every_backend!(
    the_background_thread_sweeps_on_its_own,
    config = |c: sessiondb::Config| c.sweeper(true).sweep_interval(Duration::from_millis(10)),
    |env: Env| {
        let s = env.stored(1);
        env.advance(31 * 60);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while env.engine.admin().stats().expect("stats").swept == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the sweeper never ran"
            );
            std::thread::yield_now();
        }
        assert!(env.engine.load_id(s.id()).expect("load").is_none());
        assert_eq!(env.engine.admin().stats().expect("stats").live_sessions, 0);
    }
);
