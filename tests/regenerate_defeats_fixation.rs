//! Regenerating (and logging in) gives the session a new id in one step:
//! the old cookie stops working, the data and user move over.

mod common;

use sessiondb::Error;

on_every_backend!(
    regenerate_moves_the_data_and_kills_the_old_id,
    |env: common::Env| {
        // An attacker plants a session id in the victim's browser...
        let planted = env.stored(1);
        let planted_cookie = env.cookie(&planted);
        // ...the victim logs in with it.
        let mut s = env
            .engine
            .load([planted_cookie.as_bytes()])
            .expect("load")
            .expect("live");
        s.insert("cart", "book").expect("insert");
        env.engine.login(&mut s, "victim").expect("login");
        assert_ne!(s.id(), planted.id());
        assert!(s.needs_cookie());

        assert!(
            env.engine
                .load([planted_cookie.as_bytes()])
                .expect("load")
                .is_none()
        );
        let fresh = env
            .engine
            .load([env.cookie(&s).as_bytes()])
            .expect("load")
            .expect("live");
        assert_eq!(fresh.user(), Some("victim"));
        assert_eq!(
            fresh.get::<String>("cart").expect("ok").as_deref(),
            Some("book")
        );
        assert_eq!(fresh.get::<u32>("k").expect("ok"), Some(1));
        assert_eq!(fresh.created_at(), planted.created_at());
        let mine = env.engine.sessions_of("victim").expect("list");
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].id, *s.id());
        env.assert_sound();
    }
);

on_every_backend!(
    regenerating_a_stale_copy_retries_on_the_fresh_one,
    |env: common::Env| {
        let s = env.stored(1);
        let mut a = env.engine.load_id(s.id()).expect("load").expect("live");
        let mut b = a.clone();
        env.engine.regenerate(&mut a).expect("first wins");
        assert!(matches!(
            env.engine.regenerate(&mut b),
            Err(Error::Gone { .. })
        ));
        let mut c = env.engine.load_id(a.id()).expect("load").expect("live");
        let mut d = c.clone();
        c.insert("k", &2u32).expect("insert");
        env.engine.save(&mut c).expect("save");
        d.insert("mine", &3u32).expect("insert");
        // A write in between is not a reason to fail: the id change retries on
        // the fresh copy, with this copy's unsaved value laid over it.
        env.engine.regenerate(&mut d).expect("retried");
        assert_ne!(d.id(), c.id());
        assert!(env.engine.load_id(c.id()).expect("load").is_none());
        let fresh = env.engine.load_id(d.id()).expect("load").expect("live");
        assert_eq!(fresh.get::<u32>("k").expect("ok"), Some(2));
        assert_eq!(fresh.get::<u32>("mine").expect("ok"), Some(3));
        env.assert_sound();
    }
);

on_every_backend!(logging_in_a_new_session_stores_it, |env: common::Env| {
    let mut s = env.engine.create().expect("create");
    env.engine.login(&mut s, "bob").expect("login");
    assert!(!s.is_new());
    assert_eq!(env.engine.sessions_of("bob").expect("list").len(), 1);
    env.assert_sound();
});
