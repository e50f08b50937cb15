//! `open` is where configuration fails, with errors that say what is wrong.

mod common;

use std::time::Duration;

use sessiondb::{Config, CookieConfig, Engine, Error, ManualClock};

fn field_of(r: sessiondb::Result<Engine>) -> &'static str {
    match r {
        Err(Error::InvalidConfig { field, .. }) => field,
        Err(Error::InvalidCookie { field, .. }) => field,
        other => panic!("expected a settings error, got {other:?}"),
    }
}

#[test]
fn out_of_range_settings_are_refused() {
    let clock = ManualClock::new(common::T0);
    let c = || common::config(&clock);
    assert_eq!(
        field_of(Engine::with_backend(
            sessiondb::MemoryBackend::new(),
            c().idle_timeout(Duration::ZERO)
        )),
        "idle_timeout"
    );
    assert_eq!(
        field_of(Engine::with_backend(
            sessiondb::MemoryBackend::new(),
            c().absolute_timeout(Duration::ZERO)
        )),
        "absolute_timeout"
    );
    assert_eq!(
        field_of(Engine::with_backend(
            sessiondb::MemoryBackend::new(),
            c().max_session_bytes(10)
        )),
        "max_session_bytes"
    );
    assert_eq!(
        field_of(Engine::with_backend(
            sessiondb::MemoryBackend::new(),
            c().max_session_bytes(1 << 30)
        )),
        "max_session_bytes"
    );
    assert_eq!(
        field_of(Engine::with_backend(
            sessiondb::MemoryBackend::new(),
            c().sweep_batch(0)
        )),
        "sweep_batch"
    );
    assert_eq!(
        field_of(Engine::with_backend(
            sessiondb::MemoryBackend::new(),
            c().sweep_interval(Duration::ZERO)
        )),
        "sweep_interval"
    );
    assert_eq!(
        field_of(Engine::with_backend(
            sessiondb::MemoryBackend::new(),
            c().max_unflushed_writes(0)
        )),
        "max_unflushed_writes"
    );
    assert_eq!(
        field_of(Engine::with_backend(
            sessiondb::MemoryBackend::new(),
            c().cookie(CookieConfig::builder().path("x"))
        )),
        "path"
    );
    // A sled store with bad settings is refused before anything is created.
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store");
    assert_eq!(
        field_of(Engine::open(&store, c().sweep_batch(0))),
        "sweep_batch"
    );
    assert!(!store.exists());
    let _ = Config::new(common::ring());
}

#[test]
fn a_directory_of_other_files_is_not_a_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("notes.txt"), "mine").expect("write");
    let clock = ManualClock::new(common::T0);
    match Engine::open(dir.path(), common::config(&clock)) {
        Err(e @ Error::NotAStore { .. }) => {
            assert!(e.to_string().contains(&dir.path().display().to_string()));
        }
        other => panic!("expected NotAStore, got {other:?}"),
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        1,
        "nothing written"
    );

    let file = dir.path().join("notes.txt");
    assert!(matches!(
        Engine::open(&file, common::config(&clock)),
        Err(Error::NotAStore { .. })
    ));
    std::fs::write(dir.path().join("SESSIONDB"), "something else").expect("write");
    assert!(matches!(
        Engine::open(dir.path(), common::config(&clock)),
        Err(Error::NotAStore { .. })
    ));
}

#[test]
fn a_store_path_that_cannot_be_made_is_a_clear_io_error() {
    // Permission bits do not stop root (CI runs as root), so the test uses
    // a path beneath a regular file, which no user can create.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    let store = file.join("store");
    let clock = ManualClock::new(common::T0);
    match Engine::open(&store, common::config(&clock)) {
        Err(e @ Error::Io { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&store.display().to_string()), "{msg}");
        }
        other => panic!("expected an I/O error naming the path, got {other:?}"),
    }
}
