//! Expiry entries may lag behind a session's expiry, never lead it: a touch
//! writes the record alone, and the sweeper re-files an entry it finds due
//! on a session that lives on. These tests hold the sweeper to it through
//! the engine, on every backend (Redis keeps no lagging entries; there the
//! same sweeps must give the same results).

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use common::{Env, Rng};
use sessiondb::SessionId;

/// Sessions touched after their first expiry entry sit at the head of the
/// expiry index, more of them than one sweep batch: the sweep must re-file
/// them and go on to the expired session behind them, not stop at a batch
/// that deleted nothing.
fn expired_sessions_behind_lagging_entries_are_swept(env: Env) {
    let touched: Vec<SessionId> = (0..3).map(|i| *env.stored(i).id()).collect();
    env.advance(60);
    let doomed = *env.stored(9).id();
    env.advance(19 * 60);
    for id in &touched {
        // Past the touch threshold: the load writes a later expiry.
        env.engine.load_id(id).expect("load").expect("live");
    }
    // The touched sessions' first entries (T0 + 30 min) are due, and
    // `doomed` (created at T0 + 1 min) has expired; the touched sessions
    // live until T0 + 50 min.
    env.advance(11 * 60 + 1);
    assert_eq!(env.engine.admin().sweep_now().expect("sweep"), 1);
    assert!(env.engine.load_id(&doomed).expect("load").is_none());
    let stats = env.engine.admin().stats().expect("stats");
    assert_eq!((stats.live_sessions, stats.expired_pending), (3, 0));
    for id in &touched {
        assert!(env.engine.load_id(id).expect("load").is_some());
    }
    env.assert_sound();
    // Their re-filed entries fall due when they expire, and go with them.
    env.advance(30 * 60);
    assert_eq!(env.engine.admin().sweep_now().expect("sweep"), 3);
    let stats = env.engine.admin().stats().expect("stats");
    assert_eq!((stats.live_sessions, stats.expired_pending), (0, 0));
    env.assert_sound();
}

on_every_backend!(
    behind_lagging_entries,
    config = |c: sessiondb::Config| c.sweep_batch(2),
    expired_sessions_behind_lagging_entries_are_swept
);

/// Updates racing sweeps, 300 rounds: every update moves a session's
/// expiry later (its entry lags), the clock jumps past first entries, and
/// sweeps re-file and delete from another thread. A session is never swept
/// while live, and the invariants hold after every round.
fn updates_racing_sweeps_never_lose_a_live_session(env: Env) {
    const ROUNDS: u64 = 300;
    for round in 0..ROUNDS {
        let ids: Vec<SessionId> = (0..6).map(|i| *env.stored(i).id()).collect();
        // The latest expiry each session was written with.
        let written: Mutex<HashMap<SessionId, u64>> = Mutex::new(HashMap::new());
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let (env, ids, written) = (&env, &ids, &written);
                s.spawn(move || {
                    let mut rng = Rng(round * 2 + t + 1);
                    for _ in 0..12 {
                        let id = ids[rng.below(ids.len() as u64) as usize];
                        let updated = env
                            .engine
                            .update(&id, |s| s.insert("t", &t).expect("insert"))
                            .expect("update");
                        if let Some((s, ())) = updated {
                            let mut w = written.lock().expect("lock");
                            let e = w.entry(id).or_default();
                            *e = (*e).max(s.expires_at());
                        }
                    }
                });
            }
            for _ in 0..4 {
                env.clock.advance(Duration::from_secs(9 * 60));
                env.engine.admin().sweep_now().expect("sweep");
            }
        });
        let now = sessiondb::Clock::now_ms(&env.clock);
        for (id, expires_at) in written.into_inner().expect("lock") {
            if expires_at > now {
                assert!(
                    env.engine.load_id(&id).expect("load").is_some(),
                    "round {round}: a session live until {expires_at} was gone at {now}"
                );
            }
        }
        let violations = env.engine.admin().check().expect("check");
        assert!(violations.is_empty(), "round {round}: {violations:#?}");
        env.advance(31 * 60);
        env.engine.admin().sweep_now().expect("sweep");
    }
    let stats = env.engine.admin().stats().expect("stats");
    assert_eq!(stats.live_sessions, 0);
    env.assert_sound();
}

on_every_backend!(
    racing_sweeps,
    config = |c: sessiondb::Config| c.sweep_batch(2).touch_threshold(Duration::ZERO),
    updates_racing_sweeps_never_lose_a_live_session
);
