//! The two tower-sessions examples, run as their own processes and driven
//! over HTTP: the counter of `examples/tower_sessions.rs` through a kill -9
//! in both durability modes, and axum-login's flow with log out everywhere
//! in `examples/axum_login.rs`.
#![cfg(all(feature = "tower-sessions", unix))]

mod common;
#[cfg(target_os = "linux")]
mod lazyfs;

use std::process::Child;
use std::time::Duration;

use common::{Reply, http};
use serde_json::{Value, json};

fn json_of(r: &Reply) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {r:?}"))
}

/// `GET /count` with `cookie`; the count and the cookie to keep.
fn count(port: u16, cookie: Option<&str>) -> (u64, String) {
    let r = http(port, "GET", "/count", cookie, None);
    assert_eq!(r.status, 200, "{r:?}");
    let n = json_of(&r)["count"].as_u64().expect("a count");
    let cookie = r
        .cookie
        .or_else(|| cookie.map(str::to_owned))
        .expect("a session cookie");
    (n, cookie)
}

fn kill9(mut child: Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
}

fn counter_survives_kill9(mode: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("store");
    let args = ["--durability", mode];
    let (child, port) = common::start_example("tower_sessions", &data, &args, None);
    let (n, cookie) = count(port, None);
    assert_eq!(n, 1);
    assert!(
        cookie.starts_with("id="),
        "tower-sessions' cookie: {cookie}"
    );
    for want in 2..=3 {
        let (n, _) = count(port, Some(&cookie));
        assert_eq!(n, want, "{mode}: one more per request");
    }
    // A second browser has its own count.
    assert_eq!(count(port, None).0, 1);
    if mode == "relaxed" {
        // The documented window is two flush intervals (1 s by default);
        // wait three times that.
        std::thread::sleep(Duration::from_secs(3));
    }
    kill9(child);

    let (child, port) = common::start_example("tower_sessions", &data, &args, None);
    let (n, _) = count(port, Some(&cookie));
    assert_eq!(n, 4, "{mode}: the count did not survive kill -9");
    kill9(child);
}

#[test]
fn the_counter_continues_after_kill9_in_strict_mode_at_once() {
    counter_survives_kill9("strict");
}

#[test]
fn the_counter_continues_after_kill9_in_relaxed_mode_after_the_flush_window() {
    counter_survives_kill9("relaxed");
}

/// The same through a power cut: the example runs on a lazy file system
/// that forgets whatever was never synced; after the kill the power is
/// cut and the example restarts on what survived. Strict mode's counts are
/// synced before they are answered; relaxed mode's within its window.
#[cfg(target_os = "linux")]
fn counter_survives_a_power_cut(mode: &str) {
    let backing = tempfile::tempdir().expect("temp dir");
    let at = tempfile::tempdir().expect("mount point");
    let Some(m) = lazyfs::LazyMount::mount_or_skip(backing.path(), at.path()) else {
        return;
    };
    let args = ["--durability", mode];
    let (child, port) =
        common::start_example("tower_sessions", &m.path().join("store"), &args, None);
    let (_, cookie) = count(port, None);
    for want in 2..=3 {
        assert_eq!(count(port, Some(&cookie)).0, want);
    }
    if mode == "relaxed" {
        std::thread::sleep(Duration::from_secs(3));
    }
    kill9(child);
    m.cut_power(lazyfs::Cut::Clean).expect("cut the power");

    let data = backing.path().join("store");
    let (child, port) = common::start_example("tower_sessions", &data, &args, None);
    let (n, _) = count(port, Some(&cookie));
    assert_eq!(n, 4, "{mode}: the count did not survive the power cut");
    kill9(child);
}

#[cfg(target_os = "linux")]
#[test]
fn the_counter_survives_a_power_cut_in_strict_mode_at_once() {
    counter_survives_a_power_cut("strict");
}

#[cfg(target_os = "linux")]
#[test]
fn the_counter_survives_a_power_cut_in_relaxed_mode_after_the_flush_window() {
    counter_survives_a_power_cut("relaxed");
}

const FORM: &str = "application/x-www-form-urlencoded";

/// Logs in with `user`'s password; returns the session cookie.
fn login(port: u16, user: &str) -> String {
    let body = format!("username={user}&password={user}-pw");
    let r = http(port, "POST", "/login", None, Some((FORM, &body)));
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.location.as_deref(), Some("/protected"));
    r.cookie.expect("a session cookie")
}

fn whoami(port: u16, cookie: &str) -> Option<String> {
    let r = http(port, "GET", "/protected", Some(cookie), None);
    match r.status {
        200 => Some(json_of(&r)["user"].as_str().expect("a name").to_owned()),
        401 => None,
        _ => panic!("{r:?}"),
    }
}

#[test]
fn axum_login_logs_in_lists_and_logs_out_everywhere() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("store");
    let args = ["--durability", "strict"];
    let (child, port) = common::start_example("axum_login", &data, &args, None);

    // Refused logins and anonymous requests.
    let bad = http(
        port,
        "POST",
        "/login",
        None,
        Some((FORM, "username=alice&password=nope")),
    );
    assert_eq!(bad.status, 401, "{bad:?}");
    assert_eq!(http(port, "GET", "/protected", None, None).status, 401);

    let laptop = login(port, "alice");
    let phone = login(port, "alice");
    let bob = login(port, "bob");
    assert_ne!(laptop, phone);
    assert_eq!(whoami(port, &laptop).as_deref(), Some("alice"));
    assert_eq!(whoami(port, &phone).as_deref(), Some("alice"));

    // The user index lists alice's two sessions, this one marked.
    let r = http(port, "GET", "/sessions", Some(&laptop), None);
    assert_eq!(r.status, 200, "{r:?}");
    let listed = json_of(&r)["sessions"].as_array().expect("a list").clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(
        listed
            .iter()
            .filter(|s| s["current"] == json!(true))
            .count(),
        1
    );

    // Logging out one device leaves the other.
    let r = http(port, "POST", "/logout", Some(&phone), None);
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(whoami(port, &phone), None);
    assert_eq!(whoami(port, &laptop).as_deref(), Some("alice"));
    let tablet = login(port, "alice");

    // Log out everywhere from the laptop: the tablet is out too, bob is not.
    let r = http(port, "POST", "/logout-everywhere", Some(&laptop), None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(json_of(&r)["logged_out"], json!(2));
    assert_eq!(whoami(port, &laptop), None);
    assert_eq!(whoami(port, &tablet), None);
    assert_eq!(whoami(port, &bob).as_deref(), Some("bob"));

    // After kill -9 and a restart, the same holds.
    kill9(child);
    let (child, port) = common::start_example("axum_login", &data, &args, None);
    assert_eq!(whoami(port, &bob).as_deref(), Some("bob"));
    assert_eq!(whoami(port, &laptop), None);
    assert_eq!(whoami(port, &tablet), None);
    let again = login(port, "alice");
    assert_eq!(whoami(port, &again).as_deref(), Some("alice"));
    kill9(child);
}
