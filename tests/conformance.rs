//! The basic semantics every backend must share, run against each.

mod common;

use sessiondb::{Error, Session};

on_every_backend!(saved_session_loads_from_its_cookie, |env: common::Env| {
    let s = env.stored(7);
    let cookie = env.cookie(&s);
    let loaded = env
        .engine
        .load([cookie.as_bytes()])
        .expect("load")
        .expect("live");
    assert_eq!(loaded.id(), s.id());
    assert_eq!(loaded.get::<u32>("k").expect("decodes"), Some(7));
    assert!(!loaded.is_new());
    env.assert_sound();
});

on_every_backend!(empty_new_sessions_are_not_written, |env: common::Env| {
    let mut s = env.engine.create().expect("create");
    env.engine.save(&mut s).expect("save");
    assert!(s.is_new());
    assert!(env.engine.load_id(s.id()).expect("load").is_none());
    assert_eq!(env.engine.admin().stats().expect("stats").live_sessions, 0);
    // Inserting then removing leaves it empty: still nothing written.
    s.insert("x", &1u8).expect("insert");
    s.remove("x");
    env.engine.save(&mut s).expect("save");
    assert!(env.engine.load_id(s.id()).expect("load").is_none());
});

on_every_backend!(values_are_typed_and_flash_reads_once, |env: common::Env| {
    let mut s = env.engine.create().expect("create");
    s.insert("name", "alice").expect("insert");
    s.insert("list", &vec![1u64, 2, 3]).expect("insert");
    s.insert("flash", "welcome back").expect("insert");
    env.engine.save(&mut s).expect("save");

    let mut s = env.engine.load_id(s.id()).expect("load").expect("live");
    assert_eq!(
        s.get::<String>("name").expect("ok").as_deref(),
        Some("alice")
    );
    assert_eq!(s.get::<Vec<u64>>("list").expect("ok"), Some(vec![1, 2, 3]));
    assert!(matches!(s.get::<u8>("name"), Err(Error::Decode { .. })));
    assert_eq!(
        s.take::<String>("flash").expect("ok").as_deref(),
        Some("welcome back")
    );
    env.engine.save(&mut s).expect("save");

    let s = env.engine.load_id(s.id()).expect("load").expect("live");
    assert_eq!(s.get::<String>("flash").expect("ok"), None);
    assert_eq!(s.keys().collect::<Vec<_>>(), vec!["list", "name"]);
});

on_every_backend!(
    forged_and_unknown_cookies_are_no_session,
    |env: common::Env| {
        let s = env.stored(1);
        let good = env.cookie(&s);
        let mut forged = good.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            env.engine
                .load([&forged[..]])
                .expect("load")
                .map(|s: Session| *s.id()),
            None
        );
        // Well signed, but never stored.
        let unsaved = env.engine.create().expect("create");
        let cookie = env.cookie(&unsaved);
        assert!(
            env.engine
                .load([cookie.as_bytes()])
                .expect("load")
                .is_none()
        );
        assert!(env.engine.load(std::iter::empty()).expect("load").is_none());
    }
);

on_every_backend!(stale_copies_conflict, |env: common::Env| {
    let s = env.stored(1);
    let mut a = env.engine.load_id(s.id()).expect("load").expect("live");
    let mut b = a.clone();
    a.insert("k", &2u32).expect("insert");
    env.engine.save(&mut a).expect("first save wins");
    b.insert("k", &3u32).expect("insert");
    assert!(matches!(
        env.engine.save(&mut b),
        Err(Error::Conflict { .. })
    ));
    let now = env.engine.load_id(s.id()).expect("load").expect("live");
    assert_eq!(now.get::<u32>("k").expect("ok"), Some(2));
    env.assert_sound();
});

on_every_backend!(user_ids_are_checked, |env: common::Env| {
    let mut s = env.engine.create().expect("create");
    assert!(matches!(
        env.engine.login(&mut s, ""),
        Err(Error::InvalidUser { .. })
    ));
    let long = "u".repeat(1025);
    assert!(matches!(
        env.engine.login(&mut s, &long),
        Err(Error::InvalidUser { .. })
    ));
    assert!(s.user().is_none());
});

on_every_backend!(set_cookie_carries_the_time_left, |env: common::Env| {
    let s = env.stored(1);
    let set = env.engine.set_cookie(&s);
    assert!(set.contains("; Max-Age=1800;"), "{set}");
    env.advance(600);
    let s = env.engine.load_id(s.id()).expect("load").expect("live");
    assert!(
        env.engine.set_cookie(&s).contains("; Max-Age=1800;"),
        "touched at +600 s"
    );
    assert!(env.engine.removal_cookie().contains("Max-Age=0"));
});
