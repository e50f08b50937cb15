//! The operator's tool against a running service, as an operator would use
//! it: the demo binary on a temporary store, users logged in over HTTP,
//! and every `sessiondb` command run on the live store through its control
//! socket. `revoke --user` makes that user's cookies answer 401 at once and
//! survives a kill -9; `export` runs while requests keep arriving; the
//! output of every read-only command is byte for byte what the same
//! command prints on the stopped store; `watch --json` prints a line a
//! second; `GET /metrics` serves the counters in Prometheus text.
#![cfg(all(feature = "cli", feature = "axum", feature = "metrics"))]

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

/// One HTTP/1.1 exchange: status, the `Set-Cookie` pair if any, body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<&str>,
) -> (u16, Option<String>, String) {
    let r = common::http(
        port,
        method,
        path,
        cookie,
        body.map(|b| ("application/json", b)),
    );
    (r.status, r.cookie, r.body)
}

/// Logs `user` in; returns the session's cookie.
fn login(port: u16, user: &str) -> String {
    let (status, cookie, body) = http(
        port,
        "POST",
        "/api/login",
        None,
        Some(&format!(r#"{{"user":"{user}"}}"#)),
    );
    assert_eq!(status, 200, "{body}");
    cookie.expect("a session cookie")
}

fn tool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sessiondb"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run sessiondb")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `args` on the live store: it must go through the socket and end
/// with `code`.
fn live(args: &[&str], code: i32) -> Output {
    let out = tool(args);
    let err = text(&out.stderr);
    assert!(
        err.contains("running the command inside it"),
        "{args:?} did not go through the socket: {err}"
    );
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}: {err}\n{}",
        text(&out.stdout)
    );
    out
}

/// `sessiondb import DIR` with `lines` on stdin.
fn import(dir: &str, lines: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessiondb"))
        .args(["import", dir])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("import");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.as_bytes())
        .expect("write");
    child.wait_with_output().expect("import")
}

fn kill(child: &mut std::process::Child, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    let _ = child.wait();
}

/// What `import` wrote on a live relaxed service is durable when the tool
/// returns, as on a stopped store: a kill -9 right after loses nothing.
#[test]
fn a_live_import_is_durable_when_the_tool_returns() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let d = data.to_str().expect("utf-8");
    let (mut demo, port) = common::start_demo(&data, &["--insecure-cookies"], None);
    login(port, "alice");
    let exported = text(&live(&["export", d], 0).stdout);
    let mut record: Value = serde_json::from_str(exported.trim()).expect("one record");
    let mut lines = String::new();
    for i in 0..20u8 {
        // Distinct ids (each ends in a character whose low bits are 0).
        record["id"] = Value::from(format!("{}{}A", "B".repeat(41), (b'a' + i) as char));
        record["user"] = Value::from(format!("imported{i}"));
        lines.push_str(&format!("{record}\n"));
    }
    let out = import(d, &lines);
    assert!(out.status.success(), "{}", text(&out.stderr));
    kill(&mut demo, "-KILL");
    let listed = text(&tool(&["list", d, "--json"]).stdout);
    assert_eq!(
        listed.lines().count(),
        21,
        "imports lost in a kill: {listed}"
    );
}

#[test]
fn every_command_works_on_the_live_store_and_prints_what_it_prints_offline() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let d = data.to_str().expect("utf-8");
    let (mut demo, port) = common::start_demo(&data, &["--insecure-cookies"], None);

    let alice = [login(port, "alice"), login(port, "alice")];
    let bob = login(port, "bob");
    for c in &alice {
        assert_eq!(http(port, "GET", "/api/me", Some(c), None).0, 200);
    }

    // The socket: owner-only, ours.
    let meta = std::fs::symlink_metadata(data.join("control.sock")).expect("socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // stats, with the engine's counters.
    let stats: Value =
        serde_json::from_slice(&live(&["stats", d, "--json"], 0).stdout).expect("json");
    assert_eq!(stats["live_sessions"], 3);
    assert_eq!(stats["users"], 2);
    assert!(stats["metrics"]["creates"].as_u64() >= Some(3), "{stats}");
    assert!(stats["metrics"]["loads_hit"].as_u64() >= Some(2), "{stats}");
    let shown = text(&live(&["stats", d], 0).stdout);
    assert!(shown.contains("since the service started"), "{shown}");

    // list, show, check, sweep.
    assert_eq!(
        text(&live(&["list", d, "--json"], 0).stdout)
            .lines()
            .count(),
        3
    );
    let alices = text(&live(&["list", d, "--user", "alice", "--json"], 0).stdout);
    assert_eq!(alices.lines().count(), 2);
    let bobs: Value =
        serde_json::from_str(text(&live(&["list", d, "--user", "bob", "--json"], 0).stdout).trim())
            .expect("json");
    let bob_hint = bobs["id"].as_str().expect("id").to_owned();
    let show: Value =
        serde_json::from_slice(&live(&["show", d, &bob_hint, "--json"], 0).stdout).expect("json");
    assert_eq!(show["user"], "bob");
    live(&["show", d, "zzzzzzzz"], 1);
    assert!(text(&live(&["check", d], 0).stdout).contains("the store is sound"));
    assert!(text(&live(&["sweep", d], 0).stdout).contains("swept 0"));

    // export while requests keep arriving.
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let traffic = std::thread::spawn({
        let (stop, made) = (stop.clone(), made.clone());
        move || {
            while !stop.load(Ordering::SeqCst) {
                let c = login(port, &format!("u{}", made.load(Ordering::SeqCst) % 50));
                assert_eq!(http(port, "GET", "/api/me", Some(&c), None).0, 200);
                made.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    while made.load(Ordering::SeqCst) < 20 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let file = tmp.path().join("export.jsonl");
    let out = live(&["export", d, "-o", file.to_str().expect("utf-8")], 0);
    let before = made.load(Ordering::SeqCst);
    let lines = std::fs::read_to_string(&file).expect("export");
    for line in lines.lines() {
        let v: Value = serde_json::from_str(line).expect("each record whole");
        assert_eq!(v["id"].as_str().map(str::len), Some(43), "{line}");
    }
    assert!(lines.lines().count() >= 3 + 20, "{}", text(&out.stderr));
    while made.load(Ordering::SeqCst) < before + 20 {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    traffic
        .join()
        .expect("requests kept being served during the export");

    // import: a record of a new id, for a new user.
    let mut record: Value =
        serde_json::from_str(lines.lines().next().expect("a line")).expect("json");
    record["id"] = Value::from("A".repeat(42) + "E");
    record["user"] = Value::from("carol");
    let out = import(d, &format!("{record}\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("imported 1 session(s)"),
        "{}",
        text(&out.stderr)
    );
    let carol = text(&live(&["list", d, "--user", "carol"], 0).stdout);
    assert_eq!(carol.lines().count(), 2, "{carol}");

    // watch: a JSON line a second.
    let mut watch = Command::new(env!("CARGO_BIN_EXE_sessiondb"))
        .args(["watch", d, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("watch");
    let mut seen = Vec::new();
    let mut reader = BufReader::new(watch.stdout.take().expect("stdout"));
    for _ in 0..2 {
        let mut line = String::new();
        reader.read_line(&mut line).expect("a line");
        seen.push(serde_json::from_str::<Value>(&line).expect("json"));
    }
    kill(&mut watch, "-INT");
    assert!(seen[0]["live_sessions"].as_u64() >= Some(4), "{}", seen[0]);
    assert!(
        seen[1]["loads_per_s"].is_number(),
        "a rate from the second: {}",
        seen[1]
    );

    // The metrics, scraped as Prometheus would.
    let (status, _, metrics) = http(port, "GET", "/metrics", None, None);
    assert_eq!(status, 200);
    for name in [
        "sessiondb_loads_total{outcome=\"hit\"}",
        "sessiondb_creates_total",
        "sessiondb_commit_seconds_bucket",
        "sessiondb_write_queue_depth",
        "sessiondb_poisoned 0",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }

    // Revoke alice: her cookies answer 401 at once; bob's still works.
    let out = live(&["revoke", d, "--user", "alice"], 0);
    assert!(text(&out.stdout).contains("revoked 2 session(s)"));
    for c in &alice {
        assert_eq!(http(port, "GET", "/api/me", Some(c), None).0, 401);
    }
    assert_eq!(http(port, "GET", "/api/me", Some(&bob), None).0, 200);

    // What the live store printed, for the comparison below.
    let read_only: Vec<Vec<&str>> = vec![
        vec!["list", d],
        vec!["list", d, "--json", "--full-ids"],
        vec!["list", d, "--user", "bob"],
        vec!["show", d, &bob_hint, "--json", "--values"],
        vec!["show", d, &bob_hint],
        vec!["show", d, "zzzzzzzz"],
        vec!["check", d, "--json"],
        vec!["export", d],
    ];
    let on_live: Vec<Output> = read_only.iter().map(|a| tool(a)).collect();

    // A kill -9 right after: the revocation was durable, and the output
    // of every read-only command on the stopped store is the same.
    kill(&mut demo, "-KILL");
    assert!(
        data.join("control.sock").exists(),
        "a crash leaves the socket"
    );
    for (args, was) in read_only.iter().zip(&on_live) {
        let now = tool(args);
        assert!(
            text(&now.stderr).contains("working on it directly"),
            "{args:?}: {}",
            text(&now.stderr)
        );
        assert_eq!(now.status.code(), was.status.code(), "{args:?}");
        assert_eq!(
            text(&now.stdout),
            text(&was.stdout),
            "{args:?}: live and offline differ"
        );
    }
    let alices = text(&tool(&["list", d, "--user", "alice", "--json"]).stdout);
    assert!(alices.is_empty(), "a revoked session is back: {alices}");

    // The next start replaces the stale socket, and the tool finds it.
    let (mut demo, _) = common::start_demo(&data, &["--insecure-cookies"], None);
    live(&["stats", d], 0);
    kill(&mut demo, "-TERM");
    assert!(
        !data.join("control.sock").exists(),
        "removed at a clean close"
    );
    let _ = Path::new(d);
}
