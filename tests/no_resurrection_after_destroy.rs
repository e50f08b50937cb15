//! After logout, no copy of the session can bring it back.

mod common;

use sessiondb::Error;

on_every_backend!(saves_after_destroy_fail, |env: common::Env| {
    let s = env.stored(1);
    let cookie = env.cookie(&s);
    let mut copy = env.engine.load_id(s.id()).expect("load").expect("live");
    assert!(env.engine.destroy(&s).expect("destroy"));
    assert!(
        !env.engine.destroy(&s).expect("destroy again"),
        "already gone"
    );
    copy.insert("k", &2u32).expect("insert");
    assert!(matches!(
        env.engine.save(&mut copy),
        Err(Error::Gone { .. })
    ));
    assert!(matches!(
        env.engine.regenerate(&mut copy),
        Err(Error::Gone { .. })
    ));
    assert!(env.engine.update(s.id(), |_| ()).expect("update").is_none());
    assert!(
        env.engine
            .load([cookie.as_bytes()])
            .expect("load")
            .is_none()
    );
    env.assert_sound();
});
