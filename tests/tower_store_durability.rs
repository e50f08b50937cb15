//! The tower-sessions store under kill -9 and under power cuts: a delete
//! (a logout) and a log out everywhere are durable once they return, in
//! relaxed mode too; in strict mode every acknowledged create and save is
//! there afterwards.
//!
//! The test re-runs its own binary as a child on a store whose background
//! flush never comes (a 10-minute interval, no backlog bound). The child
//! prints `ACK` once its calls have returned and waits; the parent SIGKILLs
//! it and, in the power-cut tests, cuts the power under it: the child ran
//! on the lazy file system (`tests/lazyfs/`), which then forgets whatever
//! was never synced. Then the parent reopens the store and looks. A kill
//! alone loses only what sled had not yet written to its log; the power
//! cut loses everything unsynced, so only it shows that a call synced.
#![cfg(feature = "tower-sessions")]

// The lazy file system uses a part of it.
mod common;
#[cfg(target_os = "linux")]
mod lazyfs;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use sessiondb::{Config, Durability, Key, KeyRing, TowerStore};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::SessionStore;

fn config(durability: Durability) -> Config {
    Config::new(KeyRing::new(1, Key::try_from(&[9u8; 32][..]).expect("key")))
        .sweeper(false)
        .durability(durability)
        .flush_every(Duration::from_secs(600))
        .max_unflushed_writes(1_000_000)
}

fn durability() -> Durability {
    match std::env::var("SESSIONDB_TOWER_MODE").as_deref() {
        Ok("strict") => Durability::Strict,
        _ => Durability::Relaxed,
    }
}

fn record(user: u64, n: u64) -> Record {
    Record {
        id: Id::default(),
        data: [
            ("axum-login.data".to_owned(), json!({"user_id": user})),
            ("n".to_owned(), json!(n)),
        ]
        .into(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    }
}

#[test]
#[ignore = "helper: run as a child process by the tests below"]
fn tower_child() {
    let dir = std::env::var("SESSIONDB_TOWER_DIR").expect("run by the parent");
    let store = TowerStore::open_with(&dir, config(durability()))
        .expect("child opens")
        .index_users_at(TowerStore::AXUM_LOGIN_USER)
        .expect("pointer");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut logged_out = record(1, 0);
        let (mut everywhere_a, mut everywhere_b) = (record(2, 0), record(2, 0));
        let mut kept = record(3, 0);
        for r in [
            &mut logged_out,
            &mut everywhere_a,
            &mut everywhere_b,
            &mut kept,
        ] {
            store.create(r).await.expect("create");
        }
        if durability() == Durability::Relaxed {
            // Everything so far is on disk; what follows must get there by
            // itself.
            store.engine().flush().expect("flush");
        }
        // Each mode's calls under test come last, so that no later call's
        // flush covers for them: the deletes in relaxed mode, the writes
        // in strict mode (which must be there after the kill).
        let deletes = async {
            assert_eq!(store.destroy_user("2", None).await.expect("everywhere"), 2);
            store.delete(&logged_out.id).await.expect("delete");
        };
        let mut created = record(4, 1);
        let writes = async {
            store.create(&mut created).await.expect("create");
            kept.data.insert("n".into(), json!(2));
            store.save(&kept).await.expect("save");
        };
        match durability() {
            Durability::Strict => {
                deletes.await;
                writes.await;
            }
            _ => {
                writes.await;
                deletes.await;
            }
        }
        println!(
            "\nACK {} {} {} {} {}",
            logged_out.id, everywhere_a.id, everywhere_b.id, kept.id, created.id
        );
    });
    // Wait for the kill; never close (a close would flush).
    std::thread::sleep(Duration::from_secs(120));
    std::process::abort();
}

/// Runs the child on `dir` in `mode` until it acknowledges, then kills it;
/// returns the ids it acknowledged.
fn killed_child(mode: &str, dir: &Path) -> Vec<Id> {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--ignored",
            "--exact",
            "tower_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SESSIONDB_TOWER_DIR", dir)
        .env("SESSIONDB_TOWER_MODE", mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let out = BufReader::new(child.stdout.take().expect("stdout"));
    let ack = out
        .lines()
        .map(|l| l.expect("child's stdout"))
        .find(|l| l.starts_with("ACK "))
        .expect("the child acknowledged");
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    ack.split_whitespace()
        .skip(1)
        .map(|t| t.parse::<Id>().expect("an id"))
        .collect()
}

/// Reopens the store in `dir` and checks what the child acknowledged.
fn check(mode: &str, durability: Durability, dir: &Path, ids: &[Id]) {
    let [logged_out, everywhere_a, everywhere_b, kept, created] = ids[..] else {
        panic!("bad ACK line: {ids:?}");
    };
    let store = TowerStore::open_with(dir, config(durability))
        .expect("reopen")
        .index_users_at(TowerStore::AXUM_LOGIN_USER)
        .expect("pointer");
    assert!(
        store.engine().recovery().is_some(),
        "the child did not close cleanly"
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        for (id, what) in [
            (logged_out, "a deleted session"),
            (everywhere_a, "a session logged out everywhere"),
            (everywhere_b, "a session logged out everywhere"),
        ] {
            assert_eq!(
                store.load(&id).await.expect("load"),
                None,
                "{mode}: {what} came back"
            );
        }
        assert!(store.sessions_of("2").await.expect("list").is_empty());
        let kept = store
            .load(&kept)
            .await
            .expect("load")
            .expect("kept is there");
        if durability == Durability::Strict {
            assert_eq!(
                kept.data["n"],
                json!(2),
                "strict: an acknowledged save was lost"
            );
            let created = store.load(&created).await.expect("load");
            assert!(created.is_some(), "strict: an acknowledged create was lost");
        }
    });
    let violations = store.engine().admin().check().expect("check");
    assert!(violations.is_empty(), "{violations:#?}");
}

fn after_kill(mode: &str, durability: Durability) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ids = killed_child(mode, dir.path());
    check(mode, durability, dir.path(), &ids);
}

/// The child on the lazy file system; the power cut after the kill keeps
/// only what was synced.
#[cfg(target_os = "linux")]
fn after_power_cut(mode: &str, durability: Durability) {
    let backing = tempfile::tempdir().expect("temp dir");
    let at = tempfile::tempdir().expect("mount point");
    let Some(m) = lazyfs::LazyMount::mount_or_skip(backing.path(), at.path()) else {
        return;
    };
    let ids = killed_child(mode, &m.path().join("store"));
    m.cut_power(lazyfs::Cut::Clean).expect("cut the power");
    check(mode, durability, &backing.path().join("store"), &ids);
}

#[test]
fn deletes_and_log_out_everywhere_are_durable_in_relaxed_mode() {
    after_kill("relaxed", Durability::Relaxed);
}

#[test]
fn every_acknowledged_write_is_durable_in_strict_mode() {
    after_kill("strict", Durability::Strict);
}

#[cfg(target_os = "linux")]
#[test]
fn deletes_and_log_out_everywhere_survive_a_power_cut_in_relaxed_mode() {
    after_power_cut("relaxed", Durability::Relaxed);
}

#[cfg(target_os = "linux")]
#[test]
fn every_acknowledged_write_survives_a_power_cut_in_strict_mode() {
    after_power_cut("strict", Durability::Strict);
}
