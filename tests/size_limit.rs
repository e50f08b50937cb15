//! A session over the size limit is refused with its size and the limit;
//! nothing is written or truncated.

mod common;

use sessiondb::Error;

on_every_backend!(oversized_sessions_are_refused_whole, |env: common::Env| {
    let mut s = env.stored(1);
    s.insert("blob", &vec![7u8; 70 * 1024]).expect("insert");
    match env.engine.save(&mut s) {
        Err(Error::TooLarge { size, limit }) => {
            assert_eq!(limit, 64 * 1024);
            assert!(size > 70 * 1024, "{size}");
            let msg = Error::TooLarge { size, limit }.to_string();
            assert!(
                msg.contains(&size.to_string()) && msg.contains("65536"),
                "{msg}"
            );
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let stored = env.engine.load_id(s.id()).expect("load").expect("live");
    assert_eq!(stored.get::<Vec<u8>>("blob").expect("ok"), None);
    assert_eq!(stored.get::<u32>("k").expect("ok"), Some(1));
    // Shrunk under the limit, the same copy saves.
    s.insert("blob", &vec![7u8; 1024]).expect("insert");
    env.engine.save(&mut s).expect("fits now");
    env.assert_sound();
});

/// Sessions at the largest size allowed, enough of them that sled's leaves
/// fill with them, never bring sled to write a blob file: sled does not
/// keep those safe across a power cut (src/backend/sled/mod.rs, "No blob
/// files"). With sled's default segments this store would hold dozens.
#[test]
fn the_largest_sessions_never_reach_sled_blob_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = sessiondb::ManualClock::new(common::T0);
    let engine = sessiondb::Engine::open(
        dir.path(),
        common::config(&clock).max_session_bytes(sessiondb::MAX_SESSION_BYTES),
    )
    .expect("open");
    let pad = "x".repeat(sessiondb::MAX_SESSION_BYTES - 200);
    for _ in 0..300 {
        let mut s = engine.create().expect("create");
        s.insert("pad", &pad).expect("insert");
        engine.save(&mut s).expect("a session at the limit saves");
    }
    engine.flush().expect("flush");
    let blobs: Vec<_> = std::fs::read_dir(dir.path().join("blobs"))
        .expect("sled's blobs directory")
        .collect();
    assert!(blobs.is_empty(), "{} blob files", blobs.len());
}

#[test]
fn a_limit_past_the_blob_free_size_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = sessiondb::ManualClock::new(common::T0);
    let err = sessiondb::Engine::open(
        dir.path(),
        common::config(&clock).max_session_bytes(sessiondb::MAX_SESSION_BYTES + 1),
    )
    .expect_err("over the limit");
    assert!(
        matches!(err, Error::InvalidConfig { .. }) && err.to_string().contains("96 KiB"),
        "{err}"
    );
}
