//! Every store format that was ever written must keep opening and reading
//! back exactly (the model: redb's `tests/backward_compatibility.rs`).
//!
//! `tests/stores/format1/` is a store written by format 1 (marker
//! "format 1", records of "Stored value format, version 1", the trees of
//! `src/backend/sled.rs`, sled 0.34), made once by
//! [`generate_format1_store`] and checked in. This test copies it to a
//! temporary directory, opens it with today's code and the key it was
//! written with, and checks every session, index and revocation in it
//! against the constants below, which were read off the generator's run.
//!
//! NEVER regenerate the checked-in files of an existing format, and never
//! edit the constants to match a new run: the point is that the bytes were
//! written by the old code. A new format gets a new directory
//! (`tests/stores/format2/`), a generator of its own, and a test of its own
//! next to this one, which stays.

use std::path::Path;
use std::time::Duration;

use sessiondb::{
    Config, Engine, Imported, Key, KeyRing, ManualClock, Purpose, SessionId, SessionRecord,
};

/// The key the store was written with (key id 1).
const KEY: [u8; 32] = [0x46; 32];
/// When the generator started: 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000;
/// The generator's clock when it closed the store; the test reopens at it.
const T_END: u64 = T0 + 10_000;
const DAY_MS: u64 = 24 * 3600 * 1000;
/// Long timeouts, so nothing in the store has expired at [`T_END`] (an
/// opened store sweeps what has).
const IDLE_MS: u64 = 30 * DAY_MS;
const ABSOLUTE_MS: u64 = 90 * DAY_MS;

fn ring() -> KeyRing {
    KeyRing::new(1, Key::try_from(&KEY[..]).expect("32 bytes"))
}

fn config(clock: &ManualClock) -> Config {
    Config::new(ring())
        .clock(clock.clone())
        .sweeper(false)
        .idle_timeout(Duration::from_millis(IDLE_MS))
        .absolute_timeout(Duration::from_millis(ABSOLUTE_MS))
}

fn store_dir(format: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("stores")
        .join(format)
}

/// Writes `tests/stores/format1/` (only if it does not exist yet). Run it
/// once, when a format is new:
/// `cargo test --all-features --test old_stores_still_open -- --ignored`.
/// `SESSIONDB_STORE_OUT=dir` writes elsewhere, to look at what it makes.
#[test]
#[ignore = "writes the checked-in store of format 1: never rerun for an existing format"]
fn generate_format1_store() {
    let out = std::env::var_os("SESSIONDB_STORE_OUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| store_dir("format1"));
    assert!(
        !out.exists(),
        "{} exists: a checked-in store is never regenerated",
        out.display()
    );
    let clock = ManualClock::new(T0);
    let engine = Engine::open(&out, config(&clock)).expect("open");
    let tick = || clock.advance(Duration::from_secs(1));
    let say = |name: &str, id: &SessionId| println!("{name}: {}", id.to_base64());

    // An anonymous session with several values, saved three times.
    let mut anon = engine.create().expect("create");
    anon.insert("cart", &vec!["book", "pen"]).expect("insert");
    anon.insert("theme", "dark").expect("insert");
    engine.save(&mut anon).expect("save");
    tick();
    for visits in [2u32, 3] {
        engine
            .update(anon.id(), |s| s.insert("visits", &visits).expect("insert"))
            .expect("update")
            .expect("live");
    }
    say("anon", anon.id());

    // alice logs in from a session holding a cart, then gets a flash.
    tick();
    let mut alice = engine.create().expect("create");
    alice.insert("cart", &vec!["lamp"]).expect("insert");
    engine.login(&mut alice, "alice").expect("login");
    alice.insert("flash", "welcome back").expect("insert");
    engine.save(&mut alice).expect("save");
    say("alice", alice.id());

    // bob has two sessions.
    tick();
    for (name, n) in [("bob_1", 1u64), ("bob_2", 2)] {
        let mut bob = engine.create().expect("create");
        bob.insert("n", &n).expect("insert");
        engine.login(&mut bob, "bob").expect("login");
        say(name, bob.id());
    }

    // A user id beyond ASCII, a value of a few hundred bytes and an
    // optional and a tuple value.
    tick();
    let mut zoe = engine.create().expect("create");
    zoe.insert("blob", &vec![7u8; 300]).expect("insert");
    zoe.insert("maybe", &Some(42u32)).expect("insert");
    zoe.insert("pair", &(1u8, "one".to_owned()))
        .expect("insert");
    engine.login(&mut zoe, "zoë").expect("login");
    say("zoe", zoe.id());

    // Revoked, each of the three ways: a destroyed session, every session
    // of a user logged out everywhere, and the id a login replaced.
    tick();
    let mut gone = engine.create().expect("create");
    gone.insert("k", &1u8).expect("insert");
    engine.save(&mut gone).expect("save");
    say("destroyed", gone.id());
    assert!(engine.destroy(&gone).expect("destroy"));
    tick();
    for name in ["carol_1", "carol_2"] {
        let mut carol = engine.create().expect("create");
        engine.login(&mut carol, "carol").expect("login");
        say(name, carol.id());
    }
    tick();
    assert_eq!(engine.destroy_user("carol", None).expect("log out"), 2);
    tick();
    let mut dave = engine.create().expect("create");
    dave.insert("k", &2u8).expect("insert");
    engine.save(&mut dave).expect("save");
    say("dave_before_login", dave.id());
    engine.login(&mut dave, "dave").expect("login");
    say("dave", dave.id());

    clock.set(T_END);
    for (id, record) in engine.admin().records(None, 100).expect("records") {
        println!("{}: {:?}", id.to_base64(), record.expect("decodes"));
    }
    let violations = engine.admin().check().expect("check");
    assert!(violations.is_empty(), "{violations:#?}");
    engine.close().expect("close");
    // sled makes `blobs/` at open; git cannot hold it empty.
    let _ = std::fs::remove_dir(out.join("blobs"));
}

/// One live session of the store, as the generator left it.
struct Live {
    name: &'static str,
    id: &'static str,
    version: u64,
    user: Option<&'static str>,
    created_at: u64,
    last_seen: u64,
    /// The names of its values; each is checked by [`check_values`].
    values: &'static [&'static str],
}

const LIVE: &[Live] = &[
    Live {
        name: "anon",
        id: "-hyJWffs_v5sHnIDfX77fBjAWjELUCYhg1YjY-29nXE",
        version: 3,
        user: None,
        created_at: T0,
        last_seen: T0 + 1_000,
        values: &["cart", "theme", "visits"],
    },
    Live {
        name: "alice",
        id: "w8Uj1RVzWannyAYi1nUX9VUAEFqfqpHkBdljUtb4P3I",
        version: 2,
        user: Some("alice"),
        created_at: T0 + 2_000,
        last_seen: T0 + 2_000,
        values: &["cart", "flash"],
    },
    Live {
        name: "bob_1",
        id: "1k4vS8K_NG-qwG_JeRRb_rSGlGtJ2QbttG4qscvNrJs",
        version: 1,
        user: Some("bob"),
        created_at: T0 + 3_000,
        last_seen: T0 + 3_000,
        values: &["n"],
    },
    Live {
        name: "bob_2",
        id: "M8pHjSB8STnnks6QN-eRGVoWEdcMjazOEnU6cCE8rN0",
        version: 1,
        user: Some("bob"),
        created_at: T0 + 3_000,
        last_seen: T0 + 3_000,
        values: &["n"],
    },
    Live {
        name: "zoe",
        id: "brTVaraRVO9DJeZjFaZf3Y6lGbfChHtblggW99lgtbo",
        version: 1,
        user: Some("zoë"),
        created_at: T0 + 4_000,
        last_seen: T0 + 4_000,
        values: &["blob", "maybe", "pair"],
    },
    Live {
        name: "dave",
        id: "iD4Re0sBcl8jRhmwDPteSw-WRM8xBzW6afkErAQM1kc",
        version: 2,
        user: Some("dave"),
        created_at: T0 + 8_000,
        last_seen: T0 + 8_000,
        values: &["k"],
    },
];

/// Revoked sessions: (name, id, user, created_at). None of them may load,
/// nor come back by import.
const REVOKED: &[(&str, &str, Option<&str>, u64)] = &[
    // destroyed
    (
        "destroyed",
        "2IAcRWpJZkvfpqZq7DR_f4vL0qMlVCKCEuC-YtTFshk",
        None,
        T0 + 5_000,
    ),
    // carol logged out everywhere
    (
        "carol_1",
        "bzGVE4X3P6gDCOmw3JNykYoSrDq3VQf01vHkFaKyYb0",
        Some("carol"),
        T0 + 6_000,
    ),
    (
        "carol_2",
        "MMRzJ6aDRjFvBmLFinUvRd9clRo3WG60X31LYUVC84Q",
        Some("carol"),
        T0 + 6_000,
    ),
    // the id dave's login replaced
    (
        "dave_before_login",
        "Rqjq_B3ZxpB3NNcoy3DZvoLmHwMB6PWzkhf1zTQWCSQ",
        None,
        T0 + 8_000,
    ),
];

/// The cookie alice's browser holds: her id signed with [`KEY`], computed
/// independently (Python's hmac, the layout of `src/token.rs`).
const ALICE_COOKIE: &str = "__Host-sessiondb=AQAAAAHDxSPVFXNZqefIBiLWdRf1VQAQWp-qkeQF2WNS1vg_crrhihGmUj7OottCmLNmC02-jgNIFgQlqM1TBYjQKYuC";

fn id(text: &str) -> SessionId {
    SessionId::from_base64(text).expect("a session id")
}

/// Checks the typed values of the live session `name`.
fn check_values(name: &str, r: &SessionRecord) {
    match name {
        "anon" => {
            assert_eq!(
                r.get::<Vec<String>>("cart").expect("decodes"),
                Some(vec!["book".to_owned(), "pen".to_owned()])
            );
            assert_eq!(
                r.get::<String>("theme").expect("decodes").as_deref(),
                Some("dark")
            );
            assert_eq!(r.get::<u32>("visits").expect("decodes"), Some(3));
        }
        "alice" => {
            assert_eq!(
                r.get::<Vec<String>>("cart").expect("decodes"),
                Some(vec!["lamp".to_owned()])
            );
            assert_eq!(
                r.get::<String>("flash").expect("decodes").as_deref(),
                Some("welcome back")
            );
        }
        "bob_1" => assert_eq!(r.get::<u64>("n").expect("decodes"), Some(1)),
        "bob_2" => assert_eq!(r.get::<u64>("n").expect("decodes"), Some(2)),
        "zoe" => {
            assert_eq!(
                r.get::<Vec<u8>>("blob").expect("decodes"),
                Some(vec![7; 300])
            );
            assert_eq!(
                r.get::<Option<u32>>("maybe").expect("decodes"),
                Some(Some(42))
            );
            assert_eq!(
                r.get::<(u8, String)>("pair").expect("decodes"),
                Some((1, "one".to_owned()))
            );
        }
        "dave" => assert_eq!(r.get::<u8>("k").expect("decodes"), Some(2)),
        other => panic!("no values listed for {other}"),
    }
}

/// Copies a checked-in store, so that opening it (which writes) leaves
/// the original as it is.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn a_format1_store_reads_back_exactly() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("store");
    copy_dir(&store_dir("format1"), &dir);
    let clock = ManualClock::new(T_END);
    let engine = Engine::open(&dir, config(&clock)).expect("open a format 1 store");
    if let Some(recovery) = engine.recovery() {
        assert!(recovery.found.is_empty(), "{recovery:#?}");
    }

    // Every session, and nothing else.
    let records: Vec<SessionRecord> = engine
        .admin()
        .records(None, 100)
        .expect("records")
        .into_iter()
        .map(|(id, r)| r.unwrap_or_else(|e| panic!("{id:?} does not decode: {e}")))
        .collect();
    let mut want: Vec<SessionId> = LIVE.iter().map(|l| id(l.id)).collect();
    want.sort();
    assert_eq!(records.iter().map(|r| r.id).collect::<Vec<_>>(), want);
    for live in LIVE {
        let r = records
            .iter()
            .find(|r| r.id == id(live.id))
            .expect("listed");
        let name = live.name;
        assert_eq!(r.version, live.version, "{name}: version");
        assert_eq!(r.user.as_deref(), live.user, "{name}: user");
        assert_eq!(r.created_at, live.created_at, "{name}: created_at");
        assert_eq!(r.last_seen, live.last_seen, "{name}: last_seen");
        assert_eq!(r.expires_at, live.last_seen + IDLE_MS, "{name}: expires_at");
        assert_eq!(
            r.absolute_deadline,
            live.created_at + ABSOLUTE_MS,
            "{name}: absolute_deadline"
        );
        assert_eq!(
            r.idle_timeout,
            std::time::Duration::from_millis(IDLE_MS),
            "{name}: idle_timeout"
        );
        assert_eq!(
            r.data.keys().map(String::as_str).collect::<Vec<_>>(),
            live.values,
            "{name}: value names"
        );
        check_values(name, r);
    }

    // The indexes agree with the records.
    let violations = engine.admin().check().expect("check");
    assert!(violations.is_empty(), "{violations:#?}");
    let stats = engine.admin().stats().expect("stats");
    assert_eq!(stats.live_sessions, LIVE.len() as u64);
    assert_eq!(stats.expired_pending, 0);
    let ids_of = |user: &str| {
        let mut ids: Vec<SessionId> = engine
            .sessions_of(user)
            .expect("list")
            .iter()
            .map(|s| s.id)
            .collect();
        ids.sort();
        ids
    };
    for user in ["alice", "bob", "zoë", "dave", "carol"] {
        let mut want: Vec<SessionId> = LIVE
            .iter()
            .filter(|l| l.user == Some(user))
            .map(|l| id(l.id))
            .collect();
        want.sort();
        assert_eq!(ids_of(user), want, "sessions of {user}");
    }

    // The cookie alice's browser holds still logs her in.
    let alice = engine
        .load([ALICE_COOKIE.as_bytes()])
        .expect("load")
        .expect("alice's cookie loads her session");
    assert_eq!(alice.id(), &id(LIVE[1].id));
    assert_eq!(alice.user(), Some("alice"));
    assert_eq!(
        alice.get::<String>("flash").expect("decodes").as_deref(),
        Some("welcome back")
    );
    // And so does every other live session's, signed with the store's key.
    let cookie_of = |id: &SessionId| {
        format!(
            "{}={}",
            engine.cookie_config().name(),
            ring().sign(Purpose::Session, id).as_str()
        )
    };
    for live in LIVE {
        let cookie = cookie_of(&id(live.id));
        let session = engine.load([cookie.as_bytes()]).expect("load");
        assert_eq!(
            session.map(|s| *s.id()),
            Some(id(live.id)),
            "{}'s cookie",
            live.name
        );
    }

    // What was revoked stays dead: its cookie loads nothing, and an export
    // taken before the revocation does not bring it back.
    for &(name, text, user, created_at) in REVOKED {
        let cookie = cookie_of(&id(text));
        assert!(
            engine.load([cookie.as_bytes()]).expect("load").is_none(),
            "{name}'s cookie loads"
        );
        let old = SessionRecord {
            id: id(text),
            version: 1,
            user: user.map(str::to_owned),
            created_at,
            last_seen: created_at,
            expires_at: created_at + IDLE_MS,
            absolute_deadline: created_at + ABSOLUTE_MS,
            idle_timeout: std::time::Duration::from_millis(IDLE_MS),
            data: Default::default(),
        };
        assert_eq!(
            engine.admin().import(&old).expect("import"),
            Imported::Revoked,
            "{name} came back by import"
        );
    }
    // The same import of a session never revoked is written: the refusals
    // above come from the store's revocations, not from import refusing all.
    let fresh = SessionRecord {
        id: SessionId::from_bytes([0xee; 32]),
        version: 1,
        user: Some("erin".to_owned()),
        created_at: T0 + 6_000,
        last_seen: T0 + 6_000,
        expires_at: 0,
        absolute_deadline: T0 + 6_000 + ABSOLUTE_MS,
        idle_timeout: std::time::Duration::from_millis(IDLE_MS),
        data: Default::default(),
    };
    assert_eq!(
        engine.admin().import(&fresh).expect("import"),
        Imported::Written
    );
    engine.close().expect("close");
}

/// A format 1 store keeps the 512 KiB sled segments it was made with (sled
/// refuses to change them), and with them sled's blob files for leaves of
/// big sessions. If such a file is lost (a power cut can do that, see
/// src/backend/sled/mod.rs), opening the store is an error naming it,
/// never a panic out of `open`, and never a store served with sessions
/// silently missing.
#[test]
fn a_lost_blob_file_of_an_old_store_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("store");
    copy_dir(&store_dir("format1"), &dir);
    let clock = ManualClock::new(T_END);
    let config = || config(&clock).max_session_bytes(sessiondb::MAX_SESSION_BYTES);
    let engine = Engine::open(&dir, config()).expect("open a format 1 store");
    let pad = "x".repeat(sessiondb::MAX_SESSION_BYTES - 200);
    for _ in 0..100 {
        let mut s = engine.create().expect("create");
        s.insert("pad", &pad).expect("insert");
        engine.save(&mut s).expect("save");
    }
    engine.close().expect("close");
    let conf = std::fs::read(dir.join("conf")).expect("sled's conf");
    assert!(
        String::from_utf8_lossy(&conf).contains("segment_size: 524288"),
        "the old segment size is kept"
    );
    let blobs: Vec<_> = std::fs::read_dir(dir.join("blobs"))
        .expect("blobs")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(
        !blobs.is_empty(),
        "old segments put leaves of big sessions in blob files"
    );
    for blob in &blobs {
        std::fs::remove_file(blob).expect("lose a blob");
    }
    // As a cut leaves it: not closed cleanly, so open checks every tree.
    std::fs::remove_file(dir.join("CLEAN")).expect("unclean");
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Engine::open(&dir, config()).map(drop)
    }));
    match opened {
        Ok(Err(e)) => {
            let msg = e.to_string();
            assert!(msg.contains("damaged") || msg.contains("storage"), "{msg}");
        }
        Ok(Ok(())) => panic!("a store missing {} blob files opened", blobs.len()),
        Err(_) => panic!("Engine::open panicked on a damaged store"),
    }
}

/// An old store whose sled `conf` was lost (sled 0.34 never synced it, so a
/// power cut could leave it empty) still opens with the segment size it
/// was made with, not the one new stores get: sled would take an empty
/// `conf` for none, and misread the log with the wrong size.
#[test]
fn an_old_store_whose_sled_conf_was_lost_keeps_its_segments() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("store");
    copy_dir(&store_dir("format1"), &dir);
    assert!(
        !dir.join("SEGMENT_SIZE").exists(),
        "made before the engine recorded it"
    );
    std::fs::write(dir.join("conf"), b"").expect("lose the conf");
    let clock = ManualClock::new(T_END);
    let engine = Engine::open(&dir, config(&clock)).expect("open");
    let records = engine.admin().records(None, 100).expect("records");
    assert_eq!(records.len(), LIVE.len(), "every session is read back");
    engine.close().expect("close");
    let conf = std::fs::read(dir.join("conf")).expect("conf");
    assert!(
        String::from_utf8_lossy(&conf).contains("segment_size: 524288"),
        "{}",
        String::from_utf8_lossy(&conf)
    );
}

/// A new store records the segment size the engine chose for it.
#[test]
fn a_new_store_records_its_segment_size() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(T_END);
    Engine::open(tmp.path(), config(&clock))
        .expect("open")
        .close()
        .expect("close");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("SEGMENT_SIZE")).expect("recorded"),
        "8388608\n"
    );
}
