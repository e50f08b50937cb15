//! Expiry is min(last_seen + idle, created + absolute), and an expired
//! session is gone to readers at once, before any sweep.

mod common;

use std::time::Duration;

use common::Env;

fn short(c: sessiondb::Config) -> sessiondb::Config {
    c.idle_timeout(Duration::from_secs(600))
        .absolute_timeout(Duration::from_secs(3600))
        .touch_threshold(Duration::from_secs(10))
}

fn idle_expiry(env: Env) {
    let s = env.stored(1);
    assert_eq!(s.expires_at(), common::T0 + 600_000);
    env.advance(599);
    assert!(env.engine.load_id(s.id()).expect("load").is_some());
    // That read touched it: the idle clock restarted at +599 s.
    env.advance(599);
    assert!(env.engine.load_id(s.id()).expect("load").is_some());
    env.advance(601);
    assert!(env.engine.load_id(s.id()).expect("load").is_none());
    // Not swept, yet invisible; the sweeper then removes it.
    assert_eq!(
        env.engine.admin().stats().expect("stats").expired_pending,
        1
    );
    assert_eq!(env.engine.admin().sweep_now().expect("sweep"), 1);
    env.assert_sound();
}

fn absolute_expiry(env: Env) {
    let s = env.stored(1);
    // Active every 5 minutes: idle never fires, absolute does at one hour.
    for _ in 0..11 {
        env.advance(300);
        assert!(env.engine.load_id(s.id()).expect("load").is_some());
    }
    env.advance(299);
    let live = env.engine.load_id(s.id()).expect("load").expect("live");
    assert_eq!(live.expires_at(), common::T0 + 3_600_000);
    env.advance(1);
    assert!(env.engine.load_id(s.id()).expect("load").is_none());
    // A save of a copy taken before expiry does not revive it.
    let mut stale = live;
    stale.insert("k", &9u32).expect("insert");
    assert!(matches!(
        env.engine.save(&mut stale),
        Err(sessiondb::Error::Gone { .. })
    ));
}

on_every_backend!(idle, config = short, idle_expiry);
on_every_backend!(absolute, config = short, absolute_expiry);
