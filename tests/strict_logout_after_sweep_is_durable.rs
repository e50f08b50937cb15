//! In strict mode a logout returns only once "gone" is on disk, even when
//! the session was already deleted by the sweeper, whose deletes never wait
//! for a flush. The crash harness found this: an acknowledged destroy of a
//! just-swept session came back after kill -9 (it was expired, so only a
//! clock that went back, like the reopened harness's, could serve it).

mod common;

use std::sync::atomic::Ordering::SeqCst;

use sessiondb::Durability;

#[test]
fn destroy_and_logout_everywhere_wait_for_the_sweepers_deletes() {
    let (env, counters) = common::Env::probed(|c| c.durability(Durability::Strict));
    let mut alone = env.engine.create().expect("create");
    alone.insert("k", &1u8).expect("insert");
    env.engine.save(&mut alone).expect("save");
    let mut mine = env.engine.create().expect("create");
    env.engine.login(&mut mine, "alice").expect("login");

    env.advance(31 * 60);
    assert_eq!(env.engine.admin().sweep_now().expect("sweep"), 2);
    let after_sweep = counters.flushes.load(SeqCst);

    // Both were deleted by the sweep, not by these calls...
    assert!(!env.engine.destroy_id(alone.id()).expect("destroy"));
    // ...which must still not return before the sweep's deletes are durable.
    assert_eq!(counters.flushes.load(SeqCst), after_sweep + 1);
    // Log out everywhere records its revocation (an old export must not
    // bring alice's sessions back), and waits for it: one more flush.
    assert_eq!(
        env.engine.destroy_user("alice", None).expect("logout all"),
        0
    );
    assert_eq!(counters.flushes.load(SeqCst), after_sweep + 2);
}
