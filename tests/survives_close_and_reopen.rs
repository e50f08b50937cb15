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
    assert!(engine.admin().check().expect("check").is_empty());
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

#[test]
fn open_after_a_clean_close_skips_the_crash_check() {
    let env = common::Env::sled();
    env.stored(1);
    let dir = env.dir.expect("sled");
    env.engine.close().expect("close");
    assert!(dir.path().join("CLEAN").exists());
    let engine = Engine::open(dir.path(), common::config(&env.clock)).expect("reopen");
    assert!(engine.recovery().is_none());
    assert!(!dir.path().join("CLEAN").exists(), "taken at open");
}

#[test]
fn open_after_a_crash_checks_and_reports_a_sound_store() {
    let env = common::Env::sled();
    let s = env.stored(1);
    let dir = env.dir.expect("sled");
    env.engine.close().expect("close");
    // What a crash leaves: no clean mark.
    std::fs::remove_file(dir.path().join("CLEAN")).expect("remove");
    let engine = Engine::open(dir.path(), common::config(&env.clock)).expect("reopen");
    let recovery = engine.recovery().expect("unclean shutdown noticed");
    assert!(
        recovery.found.is_empty() && recovery.repair.is_none(),
        "{recovery:?}"
    );
    assert!(engine.load_id(s.id()).expect("load").is_some());
}
