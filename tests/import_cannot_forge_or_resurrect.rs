//! `Engine::import` (and so `sessiondb import`) cannot give a session a
//! longer life than this engine would, and an export taken before a
//! revocation cannot bring the revoked sessions back.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use sessiondb::{Engine, Error, Imported, SessionId, SessionRecord};

const HOUR: u64 = 3_600_000;

fn export(engine: &Engine) -> Vec<SessionRecord> {
    engine
        .admin()
        .records(None, 1000)
        .expect("records")
        .into_iter()
        .map(|(_, r)| r.expect("decodes"))
        .collect()
}

fn record(now: u64, user: Option<&str>) -> SessionRecord {
    SessionRecord {
        id: SessionId::generate().expect("rng"),
        version: 1,
        user: user.map(str::to_owned),
        created_at: now - 1000,
        last_seen: now - 500,
        expires_at: now + HOUR,
        absolute_deadline: now + HOUR,
        idle_timeout_ms: HOUR,
        data: BTreeMap::from([("k".to_owned(), vec![1, 2, 3])]),
    }
}

on_every_backend!(
    a_forged_lifetime_is_cut_to_this_engines,
    |env: common::Env| {
        let now = common::T0;
        let mut r = record(now, Some("mallory"));
        let decade = 10 * 365 * 24 * HOUR;
        r.absolute_deadline = r.created_at + decade;
        r.idle_timeout_ms = decade;
        r.expires_at = r.created_at + decade;
        assert_eq!(
            env.engine.admin().import(&r).expect("import"),
            Imported::Written
        );
        let stored = env
            .engine
            .admin()
            .record(&r.id)
            .expect("read")
            .expect("live");
        // The defaults: 30 minutes idle, 24 hours absolute.
        assert_eq!(stored.idle_timeout_ms, 30 * 60 * 1000);
        assert_eq!(stored.absolute_deadline, r.created_at + 24 * HOUR);
        assert_eq!(stored.expires_at, r.last_seen + 30 * 60 * 1000);
        env.assert_sound();
    }
);

on_every_backend!(
    impossible_times_and_sizes_are_refused,
    |env: common::Env| {
        let now = common::T0;
        let mut before = record(now, None);
        before.last_seen = before.created_at - 1;
        let mut future = record(now, None);
        future.last_seen = now + 2 * HOUR;
        future.created_at = now + HOUR;
        for r in [&before, &future] {
            let err = env.engine.admin().import(r).expect_err("refused");
            assert!(matches!(err, Error::InvalidRecord { .. }), "{err:?}");
            assert!(env.engine.admin().record(&r.id).expect("read").is_none());
        }
        let mut huge = record(now, None);
        huge.data.insert("blob".into(), vec![0; 200 * 1024]);
        assert!(matches!(
            env.engine.admin().import(&huge),
            Err(Error::TooLarge { .. })
        ));
        assert_eq!(env.engine.admin().stats().expect("stats").live_sessions, 0);
    }
);

on_every_backend!(
    an_export_from_before_a_revocation_brings_nothing_back,
    |env: common::Env| {
        let e = &env.engine;
        let logged_out = env.stored(1);
        let mut everywhere = Vec::new();
        for _ in 0..2 {
            let mut s = env.stored(2);
            e.login(&mut s, "uma").expect("login");
            everywhere.push(s);
        }
        let mut relogin = env.stored(3);
        let bystander = env.stored(4);
        let backup = export(e);
        assert_eq!(backup.len(), 5);

        env.advance(1);
        e.destroy(&logged_out).expect("logout");
        e.destroy_user("uma", None).expect("log out everywhere");
        let replaced = *relogin.id();
        e.login(&mut relogin, "vic").expect("login replaces the id");
        e.destroy(&bystander).expect("logout");
        // uma logs in again after the revocation: that session is hers to keep.
        env.advance(1);
        let mut fresh = e.create().expect("create");
        e.login(&mut fresh, "uma").expect("login");

        let revoked = [
            *logged_out.id(),
            *everywhere[0].id(),
            *everywhere[1].id(),
            replaced,
            *bystander.id(),
        ];
        for r in &backup {
            assert!(revoked.contains(&r.id));
            assert_eq!(
                e.admin().import(r).expect("import"),
                Imported::Revoked,
                "{:?}",
                r.id
            );
            assert!(e.admin().record(&r.id).expect("read").is_none());
        }
        // A later export of uma's new session imports into a store that lost it.
        let later = e.admin().record(fresh.id()).expect("read").expect("live");
        e.destroy(&fresh).expect("logout");
        assert_eq!(e.admin().import(&later).expect("import"), Imported::Revoked);
        env.assert_sound();
    }
);

#[test]
fn revocations_are_forgotten_after_an_absolute_timeout() {
    let env = common::Env::memory();
    let s = env.stored(1);
    let r = export(&env.engine).remove(0);
    env.engine.destroy(&s).expect("logout");
    env.engine
        .destroy_user("nobody", None)
        .expect("revoke a user");
    // The session, the user, and the store's own horizon entry (kept).
    assert!(format!("{:?}", env.engine).contains("revocations: 3"));
    env.advance(24 * 3600 - 10);
    env.engine.admin().sweep_now().expect("sweep");
    assert!(format!("{:?}", env.engine).contains("revocations: 3"));
    env.advance(20);
    env.engine.admin().sweep_now().expect("sweep");
    assert!(format!("{:?}", env.engine).contains("revocations: 1"));
    // By then the record is past its absolute deadline: still nothing back.
    assert_eq!(
        env.engine.admin().import(&r).expect("import"),
        Imported::Expired
    );
}

/// An import racing "log out everywhere" of the record's user: whatever
/// the order, the user's session created before the logout is not there
/// afterwards. 300 rounds.
#[test]
fn import_racing_log_out_everywhere_300_rounds() {
    let clock = sessiondb::ManualClock::new(common::T0);
    let engine = Arc::new(Engine::memory(common::config(&clock)).expect("memory"));
    for round in 0..300 {
        clock.advance(std::time::Duration::from_millis(5));
        let now = common::T0 + 5 * (round + 1);
        let r = record(now, Some("wes"));
        let start = Arc::new(Barrier::new(2));
        let importer = {
            let (engine, start, r) = (engine.clone(), start.clone(), r.clone());
            std::thread::spawn(move || {
                start.wait();
                engine.admin().import(&r).expect("import")
            })
        };
        start.wait();
        engine
            .destroy_user("wes", None)
            .expect("log out everywhere");
        let outcome = importer.join().expect("importer");
        assert!(
            engine.admin().record(&r.id).expect("read").is_none(),
            "round {round}: {outcome:?}, and the session is back"
        );
    }
    assert!(engine.admin().check().expect("check").is_empty());
}

/// Log out everywhere runs whole between the import's check and its
/// write: the walk finds nothing to delete, so the import must see the
/// revocation after writing and take its write back.
#[test]
fn log_out_everywhere_between_an_imports_check_and_write() {
    let (engine, _clock, counters) = hooked();
    let r = record(common::T0, Some("wes"));
    let e = engine.clone();
    common::arm(&counters.before_put, move || {
        assert_eq!(e.destroy_user("wes", None).expect("log out everywhere"), 0);
    });
    assert_eq!(
        engine.admin().import(&r).expect("import"),
        Imported::Revoked
    );
    assert!(engine.admin().record(&r.id).expect("read").is_none());
    assert!(engine.admin().check().expect("check").is_empty());
}

#[test]
fn the_revocation_is_kept_in_the_store_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = sessiondb::ManualClock::new(common::T0);
    let open = || Engine::open(dir.path(), common::config(&clock)).expect("open");
    let engine = open();
    let mut s = engine.create().expect("create");
    s.insert("k", "v").expect("insert");
    engine.save(&mut s).expect("save");
    let backup = export(&engine);
    engine.destroy(&s).expect("logout");
    drop(engine);
    let engine = open();
    assert_eq!(
        engine.admin().import(&backup[0]).expect("import"),
        Imported::Revoked
    );
}

/// An engine on a probe, shared so the probe's hooks can call it.
fn hooked() -> (Arc<Engine>, sessiondb::ManualClock, Arc<common::Counters>) {
    let clock = sessiondb::ManualClock::new(common::T0);
    let (probe, counters) = common::Probe::new();
    let engine =
        Arc::new(Engine::with_backend(Box::new(probe), common::config(&clock)).expect("engine"));
    (engine, clock, counters)
}

/// An import that runs whole right after a login renamed the old id away
/// (a crash there is the same window): the old id is revoked already.
#[test]
fn an_import_right_after_a_logins_rename_finds_the_old_id_revoked() {
    let backup: Arc<std::sync::Mutex<Option<SessionRecord>>> = Arc::default();
    let seen: Arc<std::sync::Mutex<Option<Imported>>> = Arc::default();
    let (engine, _clock, counters) = hooked();
    {
        let (backup, seen, e) = (backup.clone(), seen.clone(), engine.clone());
        common::arm(&counters.after_rename, move || {
            let r = backup.lock().expect("backup").take().expect("exported");
            *seen.lock().expect("seen") = Some(e.admin().import(&r).expect("import"));
        });
    }
    let mut s = engine.create().expect("create");
    s.insert("k", "v").expect("insert");
    engine.save(&mut s).expect("save");
    let old = *s.id();
    *backup.lock().expect("backup") = export(&engine).pop();
    engine.login(&mut s, "xia").expect("login");
    assert_eq!(*seen.lock().expect("seen"), Some(Imported::Revoked));
    assert!(engine.admin().record(&old).expect("read").is_none());
}

/// A regenerate that lands inside a log out everywhere's walk, after the
/// walk read the page that held the old id: the new id, which the walk
/// never saw, must not survive.
#[test]
fn a_regenerate_inside_a_log_out_everywhere_walk_does_not_survive_it() {
    let outcome: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let (engine, clock, counters) = hooked();
    let mut s = engine.create().expect("create");
    s.insert("k", "v").expect("insert");
    engine.login(&mut s, "yan").expect("login");
    clock.advance(std::time::Duration::from_millis(1));
    // Armed only now: the login walked the user's index too.
    {
        let (mut s, outcome, e) = (s.clone(), outcome.clone(), engine.clone());
        common::arm(&counters.after_user_page, move || {
            let r = e.regenerate(&mut s);
            *outcome.lock().expect("outcome") = Some(format!("{r:?} -> {:?}", s.id()));
        });
    }
    engine
        .destroy_user("yan", None)
        .expect("log out everywhere");
    let outcome = outcome.lock().expect("outcome").clone();
    assert!(outcome.is_some(), "the hook ran");
    assert!(
        engine.sessions_of("yan").expect("list").is_empty(),
        "a session of yan survived log out everywhere ({outcome:?})"
    );
    assert!(engine.admin().check().expect("check").is_empty());
}

// A session made by an instance whose clock runs ahead (within the minute
// of skew import allows), then logged out everywhere here: an export of it
// stays out, whatever the clocks say.
on_every_backend!(
    log_out_everywhere_needs_no_clock_to_agree,
    |env: common::Env| {
        let ahead = record(common::T0 + 30_000, Some("zed"));
        assert_eq!(
            env.engine.admin().import(&ahead).expect("import"),
            Imported::Written
        );
        let backup = export(&env.engine);
        env.engine
            .destroy_user("zed", None)
            .expect("log out everywhere");
        for r in &backup {
            assert_eq!(
                env.engine.admin().import(r).expect("import"),
                Imported::Revoked
            );
        }
    }
);

/// The operator's tool opens the store with default settings (24 h); the
/// service runs with 30 days. What the tool revokes stays revoked for the
/// service's 30 days, not the tool's 24 hours.
#[test]
fn revocations_outlive_the_longest_absolute_timeout_the_store_has_seen() {
    use std::time::Duration;
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = sessiondb::ManualClock::new(common::T0);
    let month = Duration::from_secs(30 * 24 * 3600);
    let service = || {
        let config = common::config(&clock)
            .absolute_timeout(month)
            .idle_timeout(month);
        Engine::open(dir.path(), config).expect("open")
    };
    let engine = service();
    let mut s = engine.create().expect("create");
    s.insert("k", "v").expect("insert");
    engine.save(&mut s).expect("save");
    let backup = export(&engine);
    engine.close().expect("close");

    let tool = Engine::open(dir.path(), common::config(&clock)).expect("open");
    tool.destroy(&s).expect("revoke");
    clock.advance(Duration::from_secs(2 * 24 * 3600));
    tool.admin().sweep_now().expect("sweep");
    tool.close().expect("close");

    let engine = service();
    assert_eq!(
        engine.admin().import(&backup[0]).expect("import"),
        Imported::Revoked
    );
}
