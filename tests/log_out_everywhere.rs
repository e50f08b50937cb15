//! Per-user index: list a user's sessions, and destroy them all, optionally
//! keeping the current one.

mod common;

on_every_backend!(
    log_out_everywhere_else_keeps_the_current,
    |env: common::Env| {
        let mut ids = Vec::new();
        for device in 0..4u32 {
            let mut s = env.engine.create().expect("create");
            s.insert("device", &device).expect("insert");
            env.engine.login(&mut s, "carol").expect("login");
            ids.push(*s.id());
            env.advance(1);
        }
        let other = {
            let mut s = env.engine.create().expect("create");
            env.engine.login(&mut s, "dave").expect("login");
            *s.id()
        };
        let listed = env.engine.sessions_of("carol").expect("list");
        assert_eq!(listed.iter().map(|i| i.id).collect::<Vec<_>>(), ids);
        assert!(listed.windows(2).all(|w| w[0].created_at < w[1].created_at));
        assert!(
            listed
                .iter()
                .all(|i| i.expires_at == i.last_seen + 1_800_000)
        );

        let current = ids[2];
        assert_eq!(
            env.engine
                .destroy_user("carol", Some(&current))
                .expect("destroy"),
            3
        );
        let left = env.engine.sessions_of("carol").expect("list");
        assert_eq!(left.iter().map(|i| i.id).collect::<Vec<_>>(), vec![current]);
        for id in ids.iter().filter(|id| **id != current) {
            assert!(env.engine.load_id(id).expect("load").is_none());
        }
        assert_eq!(env.engine.destroy_user("carol", None).expect("destroy"), 1);
        assert!(env.engine.sessions_of("carol").expect("list").is_empty());
        assert!(
            env.engine.load_id(&other).expect("load").is_some(),
            "dave untouched"
        );
        assert_eq!(env.engine.admin().stats().expect("stats").users, 1);
        env.assert_sound();
    }
);

on_every_backend!(expired_sessions_are_not_listed, |env: common::Env| {
    let mut s = env.engine.create().expect("create");
    env.engine.login(&mut s, "erin").expect("login");
    env.advance(31 * 60);
    assert!(env.engine.sessions_of("erin").expect("list").is_empty());
});
