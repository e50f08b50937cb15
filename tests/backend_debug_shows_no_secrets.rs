//! `{:?}` of an engine (and so of its backend) shows settings and counts,
//! never what the store holds: no record bytes, values, user names or ids.
//! Debug output ends up in logs and panic messages.

mod common;

use sessiondb::{Engine, ManualClock, Session};

const VALUE: &str = "value-marker-5f0c9e";
const USER: &str = "user-marker-a71b2d";

/// A session holding the markers, saved.
fn store_one(engine: &Engine) -> Session {
    let mut s = engine.create().expect("create");
    s.insert("secret", VALUE).expect("insert");
    engine.login(&mut s, USER).expect("login");
    // A load too, so a read cache holds the record.
    engine.load_id(s.id()).expect("load").expect("live")
}

/// Where `shown` gives away `secret`: as text, or as the list of byte
/// values that `Debug` of a `[u8]` prints.
fn leaks(shown: &str, secret: &[u8]) -> Option<&'static str> {
    let text = String::from_utf8_lossy(secret);
    let bytes = secret
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if shown.contains(&*text) {
        Some("as text")
    } else if shown.contains(&bytes) {
        Some("as bytes")
    } else {
        None
    }
}

fn assert_shows_nothing_stored(shown: &str, session: &Session) {
    let id = session.id().to_base64();
    for (what, secret) in [
        ("a value", VALUE.as_bytes()),
        ("a user", USER.as_bytes()),
        ("an id", &session.id().as_bytes()[..]),
        ("an id", id.as_bytes()),
    ] {
        if let Some(how) = leaks(shown, secret) {
            panic!(
                "Debug shows {what} {how}: {}",
                &shown[..shown.len().min(2000)]
            );
        }
    }
}

#[test]
fn sled_backend_debug_shows_no_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(common::T0);
    let engine = Engine::open(dir.path(), common::config(&clock)).expect("open");
    let session = store_one(&engine);
    let shown = format!("{engine:?}");
    assert_shows_nothing_stored(&shown, &session);
    assert!(shown.contains("SledBackend"), "{shown}");
    // Once the writes are in sled's trees too, not only in the write queue.
    engine.flush().expect("flush");
    assert_shows_nothing_stored(&format!("{engine:#?}"), &session);
}

#[test]
fn memory_backend_debug_shows_no_records() {
    let clock = ManualClock::new(common::T0);
    let engine = Engine::with_backend(sessiondb::MemoryBackend::new(), common::config(&clock))
        .expect("open");
    let session = store_one(&engine);
    assert_shows_nothing_stored(&format!("{engine:?}"), &session);
}

#[cfg(feature = "redis")]
#[test]
fn redis_backend_debug_shows_no_records() {
    let Some(env) = common::Env::redis_or_skip(|c| c) else {
        return;
    };
    let session = store_one(&env.engine);
    let shown = format!("{:?}", env.engine);
    assert_shows_nothing_stored(&shown, &session);
    assert!(shown.contains("RedisBackend"), "{shown}");
}

#[test]
fn a_session_its_record_and_the_layer_show_no_values_either() {
    let clock = ManualClock::new(common::T0);
    let engine = Engine::with_backend(sessiondb::MemoryBackend::new(), common::config(&clock))
        .expect("open");
    let session = store_one(&engine);
    assert_shows_nothing_stored(&format!("{session:?}"), &session);
    assert_shows_nothing_stored(&format!("{session:#?}"), &session);
    let record = engine
        .admin()
        .record(session.id())
        .expect("read")
        .expect("live");
    assert_shows_nothing_stored(&format!("{record:?}"), &session);
    #[cfg(feature = "axum")]
    {
        let layer = sessiondb::web::SessionLayer::new(std::sync::Arc::new(engine));
        assert_shows_nothing_stored(&format!("{layer:?}"), &session);
    }
}

#[test]
fn violations_pages_and_record_headers_show_no_ids_or_users() {
    let clock = ManualClock::new(common::T0);
    let engine = Engine::with_backend(sessiondb::MemoryBackend::new(), common::config(&clock))
        .expect("open");
    let session = store_one(&engine);
    let violations = [
        sessiondb::Violation::MissingUser {
            id: *session.id(),
            user: USER.to_owned(),
        },
        sessiondb::Violation::BadIndexKey {
            tree: "users",
            key: session.id().as_bytes().to_vec(),
        },
    ];
    assert_shows_nothing_stored(&format!("{violations:?}"), &session);
    let page =
        sessiondb::UserPage::new(vec![*session.id()], Some(session.id().as_bytes().to_vec()));
    assert_shows_nothing_stored(&format!("{page:?}"), &session);
    // A session as a backend stores it.
    let stored = sessiondb::Stored::new(1, common::T0, Some(USER.to_owned()), USER.into());
    assert_shows_nothing_stored(&format!("{stored:?}"), &session);
}
