//! The `sessiondb` binary, driven as an operator would, against stores the
//! tests make: stats, list, show, revoke, sweep, check (and repair of a
//! store damaged through sled directly), export/import round trips, bad
//! import lines, and a store held by another engine.
#![cfg(feature = "cli")]

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sessiondb::{Config, Engine, Key, KeyRing, ManualClock, Session};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

fn tool(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessiondb"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sessiondb");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(bytes) = stdin {
            input.write_all(bytes).expect("write stdin");
        }
    }
    child.wait_with_output().expect("wait")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o.stdout)))
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
    o
}

fn ring() -> KeyRing {
    KeyRing::new(1, Key::try_from(&[7u8; 32][..]).expect("key"))
}

fn session(engine: &Engine, user: Option<&str>, note: &str) -> Session {
    let mut s = engine.create().expect("create");
    s.insert("note", note).expect("insert");
    s.insert("n", &42u64).expect("insert");
    match user {
        Some(u) => engine.login(&mut s, u).expect("login"),
        None => engine.save(&mut s).expect("save"),
    }
    s
}

/// A store with three live sessions (alice x2, bob) and one anonymous,
/// plus two that expired a day ago.
fn make_store(dir: &Path) -> Vec<Session> {
    // Two days back: past the 24 h absolute timeout, so expired by now.
    let old = ManualClock::new(now_ms() - 48 * 3600 * 1000);
    let engine = Engine::open(dir, Config::new(ring()).clock(old).sweeper(false)).expect("open");
    session(&engine, Some("carol"), "old");
    session(&engine, None, "old");
    engine.close().expect("close");

    let engine = Engine::open(dir, Config::new(ring()).sweeper(false)).expect("reopen");
    let live = vec![
        session(&engine, Some("alice"), "phone"),
        session(&engine, Some("alice"), "laptop"),
        session(&engine, Some("bob"), "desk"),
        session(&engine, None, "anon"),
    ];
    engine.close().expect("close");
    live
}

#[test]
fn stats_list_show_revoke_sweep() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("store");
    let live = make_store(&dir);
    let d = dir.to_str().expect("utf-8 path");

    let s = json(&ok(tool(&["stats", d, "--json"], None)));
    assert_eq!(s["live_sessions"], 4, "{s}");
    assert_eq!(s["users"], 2 + 1, "alice, bob, and carol's unswept session");
    assert_eq!(s["expired_pending"], 2);
    assert!(s["bytes_on_disk"].as_u64().expect("bytes") > 0);
    assert_eq!(s["record_format"], 1);
    let human = text(&ok(tool(&["stats", d], None)).stdout);
    assert!(human.contains("live sessions:     4"), "{human}");

    let rows = text(&ok(tool(&["list", d], None)).stdout);
    assert_eq!(
        rows.lines().count(),
        1 + 4,
        "a header and 4 live sessions:\n{rows}"
    );
    for s in &live {
        assert!(rows.contains(&s.id().hint()));
        assert!(!rows.contains(&s.id().to_base64()), "hints only by default");
    }
    let full = text(&ok(tool(&["list", d, "--full-ids"], None)).stdout);
    assert!(full.contains(&live[0].id().to_base64()));
    let alice = text(&ok(tool(&["list", d, "--user", "alice", "--json"], None)).stdout);
    let alice: Vec<Value> = alice
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(alice.len(), 2);
    assert!(alice.iter().all(|v| v["user"] == "alice"));
    let one = text(&ok(tool(&["list", d, "--limit", "1"], None)).stdout);
    assert_eq!(one.lines().count(), 2);

    let hint = live[2].id().hint();
    let shown = json(&ok(tool(&["show", d, &hint, "--json"], None)));
    assert_eq!(shown["user"], "bob");
    assert_eq!(shown["id"], live[2].id().to_base64());
    let values = shown["values"].as_array().expect("values");
    assert_eq!(values.len(), 2);
    assert!(
        values.iter().all(|v| v.get("base64").is_none()),
        "sizes only"
    );
    let with_values = text(&ok(tool(&["show", d, &hint, "--values"], None)).stdout);
    assert!(with_values.contains("text \"desk\""), "{with_values}");
    let missing = tool(&["show", d, "zzzzzzzz"], None);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no session id starts with"));

    let r = text(&ok(tool(&["revoke", d, "--id", &hint], None)).stdout);
    assert_eq!(r.trim(), "revoked 1 session(s)");
    let r = json(&ok(tool(&["revoke", d, "--user", "alice", "--json"], None)));
    assert_eq!(r["revoked"], 2);
    let usage = tool(&["revoke", d], None);
    assert_eq!(usage.status.code(), Some(2), "--user or --id is required");

    let swept = text(&ok(tool(&["sweep", d], None)).stdout);
    assert_eq!(swept.trim(), "swept 2 expired session(s)");
    let s = json(&ok(tool(&["stats", d, "--json"], None)));
    assert_eq!(
        (s["live_sessions"].as_u64(), s["expired_pending"].as_u64()),
        (Some(1), Some(0))
    );
    ok(tool(&["check", d], None));
}

#[test]
fn check_fails_on_a_damaged_store_and_repair_mends_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("store");
    let live = make_store(&dir);
    {
        let db = common::raw_sled(&dir);
        let sessions = db.open_tree("sessions").expect("tree");
        sessions
            .insert(live[0].id().as_bytes(), &b"\x01garbage"[..])
            .expect("plant garbage");
        let users = db.open_tree("users").expect("tree");
        let mut key = 5u16.to_be_bytes().to_vec();
        key.extend_from_slice(b"ghost");
        key.extend_from_slice(&[0xEE; 32]);
        users.insert(key, &[][..]).expect("plant orphan");
        db.flush().expect("flush");
    }
    let d = dir.to_str().expect("utf-8 path");
    let bad = tool(&["check", d], None);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad.stdout));
    let out = text(&bad.stdout);
    assert!(out.contains(&live[0].id().hint()), "{out}");
    assert!(
        out.lines().filter(|l| l.starts_with("problem:")).count() >= 2,
        "{out}"
    );
    assert!(out.contains("NOT sound"));

    let fixed = json(&ok(tool(&["check", d, "--repair", "--json"], None)));
    assert_eq!(fixed["sound"], true, "{fixed}");
    assert_eq!(fixed["quarantined"], 1);
    let again = text(&ok(tool(&["check", d], None)).stdout);
    assert!(again.contains("the store is sound"));
    // The damaged record is out of the way; the others still list.
    let rows = text(&ok(tool(&["list", d], None)).stdout);
    assert_eq!(rows.lines().count(), 1 + 3);
}

#[test]
fn export_then_import_reproduces_every_live_session() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let live = make_store(&a);
    let (a, b) = (a.to_str().expect("utf-8"), b.to_str().expect("utf-8"));
    let exported = ok(tool(&["export", a], None));
    let lines = text(&exported.stdout);
    assert_eq!(lines.lines().count(), 4, "live sessions only:\n{lines}");
    for l in lines.lines() {
        let v: Value = serde_json::from_str(l).expect("stdout holds only JSON lines");
        assert!(v["id"].is_string() && v["data"].is_object());
    }
    let imported = ok(tool(&["import", b], Some(&exported.stdout)));
    assert!(text(&imported.stderr).contains("imported 4 session(s)"));
    let again = ok(tool(&["export", b], None));
    assert_eq!(text(&again.stdout), lines, "the round trip is exact");

    // And through the engine: same ids, users, times and values.
    let engine = Engine::open(b, Config::new(ring()).sweeper(false)).expect("open b");
    for s in &live {
        let r = engine
            .admin()
            .record(s.id())
            .expect("read")
            .expect("present");
        assert_eq!(r.user.as_deref(), s.user());
        assert_eq!((r.created_at, r.last_seen), (s.created_at(), s.last_seen()));
        assert_eq!(r.expires_at, s.expires_at());
        assert_eq!(
            r.get::<String>("note").expect("decode"),
            s.get("note").expect("decode")
        );
        assert_eq!(r.get::<u64>("n").expect("decode"), Some(42));
    }
    drop(engine);
    // An id that starts with `-` is still an id, not a flag.
    let dash = sessiondb::SessionId::from_bytes([0xF8; 32]);
    assert!(dash.to_base64().starts_with('-'));
    let mut line: Value =
        serde_json::from_str(lines.lines().next().expect("a line")).expect("json");
    line["id"] = Value::String(dash.to_base64());
    ok(tool(&["import", b], Some(line.to_string().as_bytes())));
    let shown = json(&ok(tool(&["show", b, &dash.hint(), "--json"], None)));
    assert_eq!(shown["id"], dash.to_base64());
    let r = text(&ok(tool(&["revoke", b, "--id", &dash.hint()], None)).stdout);
    assert_eq!(r.trim(), "revoked 1 session(s)");
    // Importing the same lines again would overwrite: refused, nothing written.
    let twice = tool(&["import", b], Some(&exported.stdout));
    assert_eq!(twice.status.code(), Some(1));
    assert!(text(&twice.stderr).contains("already in the store"));
}

#[test]
fn bad_import_lines_are_reported_by_number_and_nothing_is_written() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    make_store(&a);
    let exported = ok(tool(&["export", a.to_str().expect("utf-8")], None));
    let good: Vec<String> = text(&exported.stdout).lines().map(str::to_owned).collect();
    let mut huge: Value = serde_json::from_str(&good[2]).expect("json");
    huge["data"]["blob"] = Value::String("A".repeat(200_000));
    let input = [
        good[0].clone(),
        "{not json".to_owned(),
        good[1].replace("\"id\":\"", "\"id\":\"x"),
        huge.to_string(),
        good[3].clone(),
        good[0].clone(),
    ]
    .join("\n");
    let b = b.to_str().expect("utf-8");
    let out = tool(&["import", b], Some(input.as_bytes()));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("line 2: not JSON"), "{err}");
    assert!(err.contains("line 3: `id`"), "{err}");
    assert!(err.contains("line 6: session"), "{err}");
    assert!(err.contains("nothing was imported"), "{err}");
    // Without the syntax errors, the oversized record is caught by the dry run.
    let input = [good[0].clone(), huge.to_string()].join("\n");
    let out = tool(&["import", b], Some(input.as_bytes()));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("line 2:"),
        "{}",
        text(&out.stderr)
    );
    let s = json(&ok(tool(&["stats", b, "--json"], None)));
    assert_eq!(s["live_sessions"], 0, "nothing half-written");
}

#[test]
fn a_store_held_by_a_service_without_a_control_socket_gives_an_error_and_a_hint() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("store");
    make_store(&dir);
    let _service =
        Engine::open(&dir, Config::new(ring()).sweeper(false).control(false)).expect("open");
    let started = std::time::Instant::now();
    let out = tool(&["stats", dir.to_str().expect("utf-8"), "--json"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(started.elapsed() < Duration::from_secs(20), "no hang");
    let err = text(&out.stderr);
    assert!(err.contains("a running service holds"), "{err}");
    assert!(
        err.contains("hint: the service has no control socket"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing but data on stdout");
    let not_store = tool(&["stats", tmp.path().to_str().expect("utf-8")], None);
    assert_eq!(not_store.status.code(), Some(2));
    assert!(text(&not_store.stderr).contains("not a sessiondb store"));
}

/// Whether `bytes` hold anything that drives a terminal or reorders a line:
/// a control character other than a newline, or a bidi formatting one.
fn inert(bytes: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    match text.chars().find(|&c| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    }) {
        Some(c) => Err(format!("raw {c:?} in {text:?}")),
        None => Ok(()),
    }
}

#[test]
fn names_and_keys_from_the_store_never_reach_the_terminal_raw() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("store");
    // A title-setting OSC, a C1 CSI, a right-to-left override, DEL.
    let evil = "mallory\x1b]0;pwned\x07\u{9b}2J\u{202e}nimda\x7f";
    let key = "note\x1b[2J\u{2066}";
    let engine = Engine::open(&dir, Config::new(ring()).sweeper(false)).expect("open");
    let mut s = engine.create().expect("create");
    s.insert(key, "red\x1b[31m\u{85}").expect("insert");
    engine.login(&mut s, evil).expect("login");
    engine.close().expect("close");
    let d = dir.to_str().expect("utf-8 path");
    let hint = s.id().hint();

    let mut runs = vec![
        vec!["stats", d],
        vec!["list", d],
        vec!["list", d, "--full-ids"],
        vec!["list", d, "--user", evil],
        vec!["show", d, &hint],
        vec!["show", d, &hint, "--values"],
    ];
    let with_json: Vec<Vec<&str>> = runs
        .iter()
        .map(|r| r.iter().copied().chain(["--json"]).collect())
        .collect();
    runs.extend(with_json);
    runs.push(vec!["export", d]);
    for args in &runs {
        let out = ok(tool(args, None));
        assert!(!out.stdout.is_empty(), "{args:?} printed nothing");
        inert(&out.stdout).unwrap_or_else(|e| panic!("{args:?} stdout: {e}"));
        inert(&out.stderr).unwrap_or_else(|e| panic!("{args:?} stderr: {e}"));
    }

    // Shown escaped, and JSON still carries the exact name.
    let rows = text(&ok(tool(&["list", d], None)).stdout);
    assert!(
        rows.contains(r"mallory\u{1b}]0;pwned\u{7}\u{9b}2J\u{202e}nimda\u{7f}"),
        "{rows}"
    );
    let shown = json(&ok(tool(&["show", d, &hint, "--json", "--values"], None)));
    assert_eq!(shown["user"], evil);
    assert_eq!(shown["values"][0]["key"], key);
    let exported = ok(tool(&["export", d], None));
    let b = tmp.path().join("b");
    ok(tool(
        &["import", b.to_str().expect("utf-8")],
        Some(&exported.stdout),
    ));
    let again = Engine::open(&b, Config::new(ring()).sweeper(false)).expect("open b");
    let r = again
        .admin()
        .record(s.id())
        .expect("read")
        .expect("imported");
    assert_eq!(r.user.as_deref(), Some(evil), "the round trip is exact");
    drop(again);

    // A check that names the user in a problem, and an import that names a key.
    {
        let db = common::raw_sled(&dir);
        let mut orphan = (evil.len() as u16).to_be_bytes().to_vec();
        orphan.extend_from_slice(evil.as_bytes());
        orphan.extend_from_slice(&[0xEE; 32]);
        db.open_tree("users")
            .expect("tree")
            .insert(orphan, &[][..])
            .expect("plant orphan");
        db.flush().expect("flush");
    }
    let bad = tool(&["check", d], None);
    assert_eq!(bad.status.code(), Some(1));
    inert(&bad.stdout).unwrap_or_else(|e| panic!("check: {e}"));
    let line = format!(
        r#"{{"id":"{}","data":{{"{}":"!"}}}}"#,
        "A".repeat(43),
        "k\\u001b[2J"
    );
    let refused = tool(
        &["import", b.to_str().expect("utf-8")],
        Some(line.as_bytes()),
    );
    assert_eq!(refused.status.code(), Some(1));
    inert(&refused.stderr).unwrap_or_else(|e| panic!("import: {e}"));
}

#[test]
fn export_to_a_file_makes_it_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("store");
    make_store(&dir);
    let d = dir.to_str().expect("utf-8 path");
    let file = tmp.path().join("backup.jsonl");
    let f = file.to_str().expect("utf-8 path");

    let out = ok(tool(&["export", d, "--output", f], None));
    assert!(out.stdout.is_empty(), "the lines go to the file");
    let mode = std::fs::metadata(&file).expect("stat").permissions().mode();
    assert_eq!(format!("{:o}", mode & 0o777), "600", "export file mode");
    let lines = std::fs::read(&file).expect("read");
    assert_eq!(
        lines,
        ok(tool(&["export", d], None)).stdout,
        "same as stdout"
    );
    assert_eq!(text(&lines).lines().count(), 4);

    // An existing file (whatever its mode) is never overwritten.
    let again = tool(&["export", d, "-o", f], None);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("exists"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(std::fs::read(&file).expect("read"), lines);

    // Redirected to a file others can read: the tool says so.
    let shared = tmp.path().join("shared.jsonl");
    let sink = std::fs::File::create(&shared).expect("create");
    sink.set_permissions(std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let out = Command::new(env!("CARGO_BIN_EXE_sessiondb"))
        .args(["export", d])
        .stdout(sink)
        .output()
        .expect("run sessiondb");
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("warning:"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&shared).expect("read"), lines);
}

/// `watch` only ever connects: on a stopped store it says there is nothing
/// to watch, and never opens the store (which would take the lock a
/// starting service needs, and run the crash check).
#[test]
fn watch_never_opens_a_stopped_store() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("store");
    make_store(&dir);
    std::fs::remove_file(dir.join("CLEAN")).expect("as after a crash");
    let out = tool(&["watch", dir.to_str().expect("utf-8"), "--json"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("nothing to watch"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    assert!(!dir.join("CLEAN").exists(), "the store was opened");
}

#[test]
fn list_limit_zero_lists_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("store");
    make_store(&dir);
    let d = dir.to_str().expect("utf-8");
    for args in [
        &["list", d, "--limit", "0", "--json"][..],
        &["list", d, "--limit", "0", "--user", "alice", "--json"][..],
    ] {
        let out = ok(tool(args, None));
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    }
}
