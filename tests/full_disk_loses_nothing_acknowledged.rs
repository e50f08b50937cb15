//! A full disk: writes fail with a clear error, nothing acknowledged before
//! is lost, and the store opens cleanly once there is room again.
//!
//! Runs on a real size-limited tmpfs mounted by the test (needs root, as CI
//! and the developers' machines have); where mounting is refused it falls
//! back to an injected flush failure, and prints which one ran.

mod common;

use sessiondb::{Durability, Engine, Error, ManualClock, SessionId};
use std::path::Path;
use std::process::Command;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> Option<Mount> {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mount(at.to_owned()))
}

#[test]
fn a_full_disk_fails_writes_clearly_and_loses_nothing() {
    let outer = tempfile::tempdir().expect("temp dir");
    let Some(_mount) = mount_tmpfs(outer.path(), "48m") else {
        eprintln!("full_disk: mounting tmpfs was refused; ran the injected-failure fallback");
        injected_fallback();
        return;
    };
    eprintln!("full_disk: running on a real 48 MiB tmpfs");
    // Room to give back once the disk is full: sled grows its log a segment
    // (8 MiB) at a time, and its recovery at the next open writes.
    let filler = outer.path().join("filler");
    std::fs::write(&filler, vec![0u8; 20 << 20]).expect("filler");
    let store = outer.path().join("store");
    let clock = ManualClock::new(common::T0);
    let config = || common::config(&clock).durability(Durability::Strict);
    let engine = Engine::open(&store, config()).expect("open");

    let mut acked: Vec<(SessionId, u32)> = Vec::new();
    let mut failure = None;
    for i in 0..100_000u32 {
        let mut s = engine.create().expect("create");
        s.insert("i", &i).expect("insert");
        s.insert("pad", &vec![i as u8; 4000]).expect("insert");
        match engine.save(&mut s) {
            Ok(()) => acked.push((*s.id(), i)),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("a 48 MiB disk fills up");
    let mut chain = failure.to_string();
    let mut source = std::error::Error::source(&failure);
    while let Some(inner) = source {
        chain.push_str(": ");
        chain.push_str(&inner.to_string());
        source = inner.source();
    }
    eprintln!(
        "full_disk: {} sessions acknowledged, then: {chain}",
        acked.len()
    );
    assert!(
        chain.contains("No space left on device") || chain.contains("os error 28"),
        "the error should say the disk is full: {chain}"
    );
    assert!(
        matches!(
            failure,
            Error::Storage(_) | Error::Io { .. } | Error::Poisoned { .. }
        ),
        "{failure:?}"
    );
    // Once a flush has failed, every write is refused; reads still work.
    let mut more = engine.create().expect("create");
    more.insert("x", &1u8).expect("insert");
    assert!(engine.save(&mut more).is_err());
    drop(engine);

    std::fs::remove_file(&filler).expect("make room");
    let engine = Engine::open(&store, config()).expect("opens with room again");
    // The engine was poisoned, so it was not closed cleanly: checked.
    assert!(engine.recovery().is_some());
    assert!(engine.admin().check().expect("check").is_empty());
    for (id, i) in &acked {
        let s = engine
            .load_id(id)
            .expect("load")
            .unwrap_or_else(|| panic!("acknowledged session {i} lost"));
        assert_eq!(s.get::<u32>("i").expect("decodes"), Some(*i));
    }
    // And it takes writes again.
    let mut s = engine.create().expect("create");
    s.insert("after", &true).expect("insert");
    engine.save(&mut s).expect("save with room");
    engine.close().expect("close");
}

fn injected_fallback() {
    let (env, probe) = common::Env::probed(|c| c.durability(Durability::Strict));
    let kept = env.stored(1);
    probe
        .fail_flush
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut s = env.engine.create().expect("create");
    s.insert("x", &1u8).expect("insert");
    let err = env.engine.save(&mut s).expect_err("the flush fails");
    assert!(
        matches!(&err, Error::Poisoned { cause } if matches!(**cause, Error::Storage(_))),
        "{err:?}"
    );
    assert!(matches!(
        env.engine.save(&mut s),
        Err(Error::Poisoned { .. })
    ));
    assert!(env.engine.load_id(kept.id()).expect("load").is_some());
}
