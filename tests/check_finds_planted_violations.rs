//! `check()` reports every broken invariant planted behind the engine's back.

mod common;

use sessiondb::{Engine, SessionId, Violation};

#[test]
fn check_reports_each_planted_violation() {
    let env = common::Env::sled();
    let a = env.stored(1);
    let mut b = env.engine.create().expect("create");
    env.engine.login(&mut b, "frank").expect("login");
    let c = env.stored(3);
    env.assert_sound();
    let dir = env.dir.expect("sled");
    env.engine.close().expect("close");

    // Plant, straight through sled.
    let ghost = SessionId::from_bytes([0xEE; 32]);
    {
        let db = common::raw_sled(dir.path());
        let expiry = db.open_tree("expiry").expect("tree");
        let users = db.open_tree("users").expect("tree");
        let sessions = db.open_tree("sessions").expect("tree");
        // a: its expiry entry removed.
        let mut key = a.expires_at().to_be_bytes().to_vec();
        key.extend_from_slice(a.id().as_bytes());
        assert!(expiry.remove(&key).expect("remove").is_some());
        // b: its users entry removed, and one planted for a ghost.
        let mut ukey = (5u16).to_be_bytes().to_vec();
        ukey.extend_from_slice(b"frank");
        let mut bkey = ukey.clone();
        bkey.extend_from_slice(b.id().as_bytes());
        assert!(users.remove(&bkey).expect("remove").is_some());
        ukey.extend_from_slice(ghost.as_bytes());
        users.insert(ukey, &[][..]).expect("insert");
        // c: its record overwritten with garbage.
        sessions
            .insert(c.id().as_bytes(), &b"\x01garbage"[..])
            .expect("insert");
        // An expiry entry for nobody.
        let mut orphan = 42u64.to_be_bytes().to_vec();
        orphan.extend_from_slice(ghost.as_bytes());
        expiry.insert(orphan, &[][..]).expect("insert");
        db.flush().expect("flush");
    }

    let engine = Engine::open(dir.path(), common::config(&env.clock)).expect("reopen");
    let found = engine.admin().check().expect("check");
    let has = |f: &dyn Fn(&Violation) -> bool| found.iter().any(f);
    assert!(
        has(&|v| matches!(v, Violation::MissingExpiry { id, .. } if id == a.id())),
        "{found:#?}"
    );
    assert!(has(
        &|v| matches!(v, Violation::MissingUser { id, user } if id == b.id() && user == "frank")
    ));
    assert!(has(
        &|v| matches!(v, Violation::OrphanUser { id, .. } if *id == ghost)
    ));
    assert!(has(
        &|v| matches!(v, Violation::Corrupt { id, .. } if id == c.id())
    ));
    assert!(has(
        &|v| matches!(v, Violation::OrphanExpiry { id, at: 42 } if *id == ghost)
    ));
    // c's old expiry entry now points at a record whose header is unreadable.
    assert!(has(
        &|v| matches!(v, Violation::OrphanExpiry { id, .. } if id == c.id())
    ));
    assert_eq!(found.len(), 6, "{found:#?}");
    for v in &found {
        assert!(!v.to_string().is_empty());
    }
    // The damage stays local: the sound sessions still load.
    assert!(engine.load_id(b.id()).expect("load").is_some());
    assert!(matches!(
        engine.load_id(c.id()),
        Err(sessiondb::Error::Corrupt { .. })
    ));
}

#[test]
fn repair_mends_every_planted_violation_and_quarantines_garbage() {
    let env = common::Env::sled();
    let a = env.stored(1);
    let mut b = env.engine.create().expect("create");
    env.engine.login(&mut b, "gina").expect("login");
    let c = env.stored(3);
    let dir = env.dir.expect("sled");
    env.engine.close().expect("close");
    {
        let db = common::raw_sled(dir.path());
        let expiry = db.open_tree("expiry").expect("tree");
        let users = db.open_tree("users").expect("tree");
        let sessions = db.open_tree("sessions").expect("tree");
        let mut key = a.expires_at().to_be_bytes().to_vec();
        key.extend_from_slice(a.id().as_bytes());
        expiry.remove(&key).expect("remove");
        let mut bkey = 4u16.to_be_bytes().to_vec();
        bkey.extend_from_slice(b"gina");
        bkey.extend_from_slice(b.id().as_bytes());
        users.remove(&bkey).expect("remove");
        // Unknown format version, truncated, and a key that is no id.
        sessions
            .insert(c.id().as_bytes(), &b"\x09future format"[..])
            .expect("insert");
        sessions
            .insert([0xAA; 32], &b"\x01\x00"[..])
            .expect("insert");
        sessions
            .insert(&b"short key"[..], &b"whatever"[..])
            .expect("insert");
        expiry.insert(&b"bad"[..], &[][..]).expect("insert");
        db.flush().expect("flush");
    }
    let engine = Engine::open(dir.path(), common::config(&env.clock)).expect("reopen");
    let before = engine.admin().check().expect("check");
    assert!(before.len() >= 6, "{before:#?}");
    let report = engine.admin().repair().expect("repair");
    assert!(report.remaining.is_empty(), "{report:#?}");
    assert_eq!(
        report.quarantined, 3,
        "c, the 0xAA record and the short key"
    );
    assert!(engine.admin().check().expect("check").is_empty());
    // Sound sessions are whole again, including their index entries.
    assert!(engine.load_id(a.id()).expect("load").is_some());
    assert_eq!(engine.sessions_of("gina").expect("list").len(), 1);
    assert!(
        engine.load_id(c.id()).expect("load").is_none(),
        "moved aside"
    );
    // The sweeper finds a's expiry entry again.
    env.clock.advance(std::time::Duration::from_secs(31 * 60));
    assert_eq!(engine.admin().sweep_now().expect("sweep"), 2);
    // A second repair has nothing to do.
    assert!(engine.admin().repair().expect("repair").fixed.is_empty());
}

#[test]
fn repair_mends_the_memory_backend_too() {
    // The memory backend cannot be damaged from outside; a clean store
    // reports nothing to do.
    let env = common::Env::memory();
    env.stored(1);
    let report = env.engine.admin().repair().expect("repair");
    assert!(report.fixed.is_empty() && report.remaining.is_empty());
    assert_eq!(report.quarantined, 0);
}

#[test]
fn open_after_a_crash_repairs_and_reports_what_it_found() {
    let env = common::Env::sled();
    let a = env.stored(1);
    let dir = env.dir.expect("sled");
    env.engine.close().expect("close");
    {
        let db = common::raw_sled(dir.path());
        let expiry = db.open_tree("expiry").expect("tree");
        let mut key = a.expires_at().to_be_bytes().to_vec();
        key.extend_from_slice(a.id().as_bytes());
        expiry.remove(&key).expect("remove");
        db.flush().expect("flush");
    }
    std::fs::remove_file(dir.path().join("CLEAN")).expect("a crash leaves no mark");
    let engine = Engine::open(dir.path(), common::config(&env.clock)).expect("reopen");
    let recovery = engine.recovery().expect("noticed");
    assert!(
        matches!(recovery.found.as_slice(), [Violation::MissingExpiry { id, .. }] if id == a.id()),
        "{recovery:#?}"
    );
    let repair = recovery.repair.as_ref().expect("repaired");
    assert_eq!(repair.fixed.len(), 1);
    assert!(repair.remaining.is_empty());
    assert!(engine.admin().check().expect("check").is_empty());
}
