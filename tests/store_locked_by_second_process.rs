//! A store held by one process cannot be opened by another: the second gets
//! `Error::Locked` naming the path at once, not a hang. The holder is a real
//! second process: this test binary, re-run on its helper test.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sessiondb::{Engine, Error, ManualClock};

const DIR_VAR: &str = "SESSIONDB_TEST_HOLD_DIR";

#[test]
#[ignore = "helper: run as a child process by a_second_process_gets_the_lock_error"]
fn hold_store_until_stdin_closes() {
    let dir = std::env::var(DIR_VAR).expect("run by the parent test");
    let clock = ManualClock::new(common::T0);
    let engine = Engine::open(&dir, common::config(&clock)).expect("child opens");
    println!("READY");
    std::io::stdout().flush().expect("flush");
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).expect("stdin") > 0 {}
    engine.close().expect("close");
}

#[test]
fn a_second_process_gets_the_lock_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--ignored",
            "--exact",
            "hold_store_until_stdin_closes",
            "--nocapture",
        ])
        .env(DIR_VAR, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).expect("read") > 0,
            "child exited before READY"
        );
        if line.trim() == "READY" {
            break;
        }
    }

    let clock = ManualClock::new(common::T0);
    let started = Instant::now();
    let err = Engine::open(dir.path(), common::config(&clock)).expect_err("held by the child");
    // "At once": a blocking lock would wait until the child exits, which it
    // does not do until we close its stdin below.
    assert!(started.elapsed() < Duration::from_secs(10));
    match &err {
        Error::Locked { path, .. } => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");

    drop(child.stdin.take());
    assert!(child.wait().expect("child").success());
    let engine = Engine::open(dir.path(), common::config(&clock)).expect("free again");
    engine.close().expect("close");
}

#[test]
fn a_second_engine_in_the_same_process_gets_it_too() {
    let env = common::Env::sled();
    let again = Engine::open(env.path(), common::config(&env.clock));
    assert!(matches!(again, Err(Error::Locked { .. })));
}
