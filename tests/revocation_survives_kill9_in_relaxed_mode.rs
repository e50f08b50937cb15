//! Logout, log out everywhere and the id change of login are durable in
//! relaxed mode too: once they return, a kill -9 cannot bring back the
//! session they took away.
//!
//! The test re-runs its own binary as a child on a relaxed store whose
//! background flush never comes (a 10-minute interval, no backlog bound):
//! whatever is on disk at the kill is there because the call made it so.
//! The child prints `ACK` once the calls have returned and then waits; the
//! parent SIGKILLs it, reopens the store and looks.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use sessiondb::{Config, Durability, Engine, SessionId};

fn config() -> Config {
    Config::new(common::ring())
        .sweeper(false)
        .durability(Durability::Relaxed)
        .flush_every(Duration::from_secs(600))
        .max_unflushed_writes(1_000_000)
}

#[test]
#[ignore = "helper: run as a child process by the test below"]
fn revocation_child() {
    let dir = std::env::var("SESSIONDB_REVOKE_DIR").expect("run by the parent");
    let engine = Engine::open(&dir, config()).expect("child opens");
    let stored = |user: Option<&str>| {
        let mut s = engine.create().expect("create");
        s.insert("k", "v").expect("insert");
        match user {
            Some(u) => engine.login(&mut s, u).expect("login"),
            None => engine.save(&mut s).expect("save"),
        }
        s
    };
    let logged_out = stored(Some("carol"));
    let everywhere = [stored(Some("dave")), stored(Some("dave"))];
    let mut login = stored(None);
    // Everything so far is on disk; what follows must get there by itself.
    engine.flush().expect("flush");
    let before_login = *login.id();
    // A write the test does not care about, queued before the revocations.
    let _noise = stored(None);

    engine.destroy(&logged_out).expect("logout");
    engine
        .destroy_user("dave", None)
        .expect("log out everywhere");
    engine.login(&mut login, "erin").expect("login");

    println!(
        "\nACK {} {} {} {} {}",
        logged_out.id().to_base64(),
        everywhere[0].id().to_base64(),
        everywhere[1].id().to_base64(),
        before_login.to_base64(),
        login.id().to_base64(),
    );
    // Wait for the kill; never close (a close would flush).
    std::thread::sleep(Duration::from_secs(120));
    std::process::abort();
}

#[test]
fn revocations_are_durable_in_relaxed_mode() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--ignored",
            "--exact",
            "revocation_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SESSIONDB_REVOKE_DIR", dir.path())
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

    let ids: Vec<SessionId> = ack
        .split_whitespace()
        .skip(1)
        .map(|t| SessionId::from_base64(t).expect("an id"))
        .collect();
    let [logged_out, dave_a, dave_b, before_login, after_login] = ids[..] else {
        panic!("bad ACK line: {ack}");
    };
    let engine = Engine::open(dir.path(), config()).expect("reopen");
    assert!(
        engine.recovery().is_some(),
        "the child did not close cleanly"
    );
    let gone = |id: &SessionId, what: &str| {
        assert!(
            engine.load_id(id).expect("load").is_none(),
            "{what} came back after kill -9"
        );
    };
    gone(&logged_out, "a logged-out session");
    gone(&dave_a, "a session logged out everywhere");
    gone(&dave_b, "a session logged out everywhere");
    gone(&before_login, "the id a login replaced");
    let s = engine
        .load_id(&after_login)
        .expect("load")
        .expect("the logged-in session is there");
    assert_eq!(s.user(), Some("erin"));
    assert!(engine.sessions_of("dave").expect("list").is_empty());
    assert!(engine.admin().check().expect("check").is_empty());
}

/// A logout that finds its session already deleted by someone else (the
/// sweeper, a log out everywhere still walking, whose deletes are not yet
/// flushed) still waits for the disk before it says the session is gone.
#[test]
fn a_logout_that_finds_nothing_still_waits_for_the_disk() {
    use std::sync::atomic::Ordering::SeqCst;
    let (env, counters) = common::Env::probed(|c| c);
    let s = env.stored(1);
    // Everything noted so far is durable: what follows must flush anyway,
    // for its own revocation and for deletes nobody has noted yet.
    env.engine.flush().expect("flush");
    let flushes = counters.flushes.load(SeqCst);
    assert!(
        !env.engine
            .destroy_id(&SessionId::generate().expect("rng"))
            .expect("destroy")
    );
    assert!(counters.flushes.load(SeqCst) > flushes, "no flush");
    assert!(env.engine.destroy(&s).expect("destroy"));
}
