//! A session saved before `close` is there after reopening the directory,
//! with its user index and expiry intact.

mod common;

use sessiondb::Engine;

#[test]
fn sessions_survive_close_and_reopen() {
    let env = common::Env::sled();
    let mut s = env.engine.create().expect("create");
    s.insert("cart", &vec!["book", "pen"]).expect("insert");
    env.engine.login(&mut s, "alice").expect("login");
    let cookie = env.cookie(&s);
    let dir = env.dir.expect("sled");
    env.engine.close().expect("close");

    let engine = Engine::open(dir.path(), common::config(&env.clock)).expect("reopen");
    let loaded = engine
        .load([cookie.as_bytes()])
        .expect("load")
        .expect("live");
    assert_eq!(loaded.user(), Some("alice"));
    assert_eq!(
        loaded.get::<Vec<String>>("cart").expect("decodes"),
        Some(vec!["book".to_owned(), "pen".to_owned()])
    );
    assert_eq!(engine.sessions_of("alice").expect("list").len(), 1);
    assert!(engine.check().expect("check").is_empty());
}

#[test]
fn dropping_without_close_also_persists() {
    let env = common::Env::sled();
    let s = env.stored(5);
    let dir = env.dir.expect("sled");
    drop(env.engine);
    let engine = Engine::open(dir.path(), common::config(&env.clock)).expect("reopen");
    let loaded = engine.load_id(s.id()).expect("load").expect("live");
    assert_eq!(loaded.get::<u32>("k").expect("decodes"), Some(5));
}
