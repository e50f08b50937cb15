//! Sliding expiry without a write per read: a read rewrites last_seen only
//! once it has fallen behind by more than the touch threshold.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::Env;

// Whether a read wrote shows in the stored record (its version and
// last-seen time), on every backend.
on_every_backend!(
    reads_within_the_threshold_do_not_touch,
    config = |c: sessiondb::Config| c.touch_threshold(Duration::from_secs(60)),
    |env: Env| {
        let s = env.stored(1);
        let stored_state = |env: &Env| {
            let record = env
                .engine
                .admin()
                .record(s.id())
                .expect("read")
                .expect("live");
            (record.version, record.last_seen)
        };
        let stored = stored_state(&env);
        assert_eq!(stored.1, common::T0);
        for _ in 0..60 {
            env.advance(1);
            let live = env.engine.load_id(s.id()).expect("load").expect("live");
            assert_eq!(live.last_seen(), common::T0);
            assert!(!live.was_touched());
        }
        assert_eq!(stored_state(&env), stored, "a read within 60 s wrote");

        env.advance(1);
        let touched = env.engine.load_id(s.id()).expect("load").expect("live");
        assert!(touched.was_touched());
        assert_eq!(touched.last_seen(), common::T0 + 61_000);
        assert_eq!(touched.expires_at(), common::T0 + 61_000 + 1_800_000);
        assert_eq!(stored_state(&env), (stored.0 + 1, common::T0 + 61_000));

        // The touched copy saves without conflict: the touch is its version.
        let mut touched = touched;
        touched.insert("k", &2u32).expect("insert");
        env.engine.save(&mut touched).expect("save after touch");
        env.assert_sound();
    }
);

/// The same, counted at the storage layer: no backend write at all.
#[test]
fn reads_within_the_threshold_do_not_write() {
    let (env, probe) = Env::probed(|c| c.touch_threshold(Duration::from_secs(60)));
    let s = env.stored(1);
    let writes = probe.writes.load(SeqCst);
    for _ in 0..60 {
        env.advance(1);
        let live = env.engine.load_id(s.id()).expect("load").expect("live");
        assert_eq!(live.last_seen(), common::T0);
    }
    assert_eq!(
        probe.writes.load(SeqCst),
        writes,
        "60 reads within 60 s wrote"
    );

    env.advance(1);
    let touched = env.engine.load_id(s.id()).expect("load").expect("live");
    assert_eq!(touched.last_seen(), common::T0 + 61_000);
    assert_eq!(touched.expires_at(), common::T0 + 61_000 + 1_800_000);
    assert_eq!(probe.writes.load(SeqCst), writes + 1);

    // The touched copy saves without conflict: the touch is its version.
    let mut touched = touched;
    touched.insert("k", &2u32).expect("insert");
    env.engine.save(&mut touched).expect("save after touch");
    env.assert_sound();
}

#[test]
fn a_threshold_not_under_the_idle_timeout_is_refused() {
    let clock = sessiondb::ManualClock::new(common::T0);
    let config = common::config(&clock)
        .idle_timeout(Duration::from_secs(60))
        .touch_threshold(Duration::from_secs(60));
    assert!(matches!(
        sessiondb::Engine::with_backend(sessiondb::MemoryBackend::new(), config),
        Err(sessiondb::Error::InvalidConfig {
            field: "touch_threshold",
            ..
        })
    ));
}
