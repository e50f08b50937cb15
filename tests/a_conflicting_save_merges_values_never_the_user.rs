//! `Engine::save_merging`, the policy the axum layer applies at the end of
//! every request: two copies of one session both keep their writes (key by
//! key, the last to save wins a key both set), a merge never changes who
//! the session belongs to, and a destroyed session stays destroyed.
//! `Engine::update` hands back the copy it stored.

mod common;

use sessiondb::Error;

on_every_backend!(both_copies_keep_their_writes, |env: common::Env| {
    let first = env.stored(1);
    let id = *first.id();
    let mut a = env.engine.load_id(&id).expect("load").expect("live");
    let mut b = env.engine.load_id(&id).expect("load").expect("live");
    a.insert("a", "from a").expect("insert");
    a.insert("both", "a").expect("insert");
    b.insert("b", "from b").expect("insert");
    b.insert("both", "b").expect("insert");
    assert!(b.remove("k"));
    env.engine.save(&mut a).expect("a saves first");
    assert!(matches!(
        env.engine.save(&mut b.clone()),
        Err(Error::Conflict { .. })
    ));

    env.engine.save_merging(&mut b).expect("b merges");

    let stored = env.engine.load_id(&id).expect("load").expect("live");
    let text = |k: &str| stored.get::<String>(k).expect("decodes");
    assert_eq!(text("a").as_deref(), Some("from a"));
    assert_eq!(text("b").as_deref(), Some("from b"));
    assert_eq!(text("both").as_deref(), Some("b"), "the last to save wins");
    assert_eq!(
        stored.get::<u32>("k").expect("decodes"),
        None,
        "b's removal"
    );
    // `b` is now the stored copy: it sees a's value and saves without a
    // conflict.
    assert_eq!(
        b.get::<String>("a").expect("decodes").as_deref(),
        Some("from a")
    );
    assert!(!b.is_changed());
    b.insert("c", &3u8).expect("insert");
    env.engine
        .save(&mut b)
        .expect("no conflict after the merge");
    env.assert_sound();
});

on_every_backend!(a_destroyed_session_stays_destroyed, |env: common::Env| {
    let first = env.stored(1);
    let id = *first.id();
    let mut late = env.engine.load_id(&id).expect("load").expect("live");
    late.insert("late", &1u8).expect("insert");
    env.engine.destroy_id(&id).expect("destroy");

    let err = env.engine.save_merging(&mut late).expect_err("gone");
    assert!(matches!(err, Error::Gone { .. }), "{err:?}");
    assert!(env.engine.load_id(&id).expect("load").is_none());
    env.assert_sound();
});

on_every_backend!(a_merge_never_logs_the_old_id_in, |env: common::Env| {
    let first = env.stored(1);
    let old = *first.id();
    let mut stale = env.engine.load_id(&old).expect("load").expect("live");
    stale.insert("x", &1u8).expect("insert");
    // Another request logs in on this session: a new id carries the user.
    let mut other = env.engine.load_id(&old).expect("load").expect("live");
    env.engine.login(&mut other, "alice").expect("login");

    let err = env
        .engine
        .save_merging(&mut stale)
        .expect_err("the old id is gone");
    assert!(matches!(err, Error::Gone { .. }), "{err:?}");
    assert!(env.engine.load_id(&old).expect("load").is_none());
    let logged_in = env.engine.load_id(other.id()).expect("load").expect("live");
    assert_eq!(logged_in.user(), Some("alice"));
    assert_eq!(logged_in.get::<u8>("x").expect("decodes"), None);
});

on_every_backend!(update_returns_the_session_it_stored, |env: common::Env| {
    let first = env.stored(1);
    let (mut saved, n) = env
        .engine
        .update(first.id(), |s| {
            let n = s.get::<u32>("k").expect("decodes").unwrap_or(0) + 1;
            s.insert("k", &n).expect("insert");
            n
        })
        .expect("update")
        .expect("live");
    assert_eq!(n, 2);
    assert_eq!(saved.get::<u32>("k").expect("decodes"), Some(2));
    assert!(!saved.is_changed());
    // The copy is current: a save after it needs no reload.
    saved.insert("more", &1u8).expect("insert");
    env.engine.save(&mut saved).expect("no conflict");
});
