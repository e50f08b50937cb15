//! The control socket, in process: its file (owner-only, replaced when
//! stale, gone after a clean close, reachable from a long path), every
//! request answered inside the engine, and what hostile clients cost:
//! garbage, huge lines, silence, too many connections, hanging up
//! mid-reply, another user. The tool over it is driven in
//! `tests/operate_a_live_service.rs`.
#![cfg(unix)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use sessiondb::control::proto::{Reply, Request};
use sessiondb::control::{Client, MAX_CONNECTIONS, SOCKET};
use sessiondb::{Config, Engine, Error, Imported, ManualClock};

const HELLO: &[u8] = b"{\"sessiondb\":\"control\",\"version\":1}\n";

fn config(clock: &ManualClock) -> Config {
    common::config(clock)
}

/// Connects and greets by hand; returns the stream after the welcome.
fn greeted(dir: &Path) -> (UnixStream, BufReader<UnixStream>) {
    let mut s = UnixStream::connect(dir.join(SOCKET)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(HELLO).expect("hello");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut line = String::new();
    r.read_line(&mut line).expect("welcome");
    assert!(line.contains("\"pid\""), "{line}");
    (s, r)
}

/// The next line, parsed as a reply; `None` at the end of the stream.
fn reply(r: &mut BufReader<UnixStream>) -> Option<Reply> {
    let mut line = String::new();
    match r.read_line(&mut line).expect("read") {
        0 => None,
        _ => Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))),
    }
}

fn is_error_containing(reply: Option<Reply>, text: &str) -> bool {
    matches!(reply, Some(Reply::Error(e)) if e.contains(text))
}

/// Reads until the server closes; fails past `limit`.
fn closed_within(r: &mut BufReader<UnixStream>, limit: Duration) -> bool {
    let start = Instant::now();
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    start.elapsed() < limit
}

/// Connects and runs `call` until it succeeds (a slot is free), failing
/// the test after `limit`.
fn served_within(dir: &Path, limit: Duration, call: impl Fn(&mut Client) -> Result<(), Error>) {
    let started = Instant::now();
    loop {
        match Client::connect(dir).and_then(|mut c| call(&mut c)) {
            Ok(()) => return,
            Err(e) => assert!(started.elapsed() < limit, "slots not freed: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_socket_is_owner_only_replaced_when_stale_and_gone_after_a_clean_close() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(common::T0);
    Engine::open(dir.path(), config(&clock))
        .expect("open")
        .close()
        .expect("close");
    let path = dir.path().join(SOCKET);
    assert!(!path.exists(), "no socket after a clean close");

    // What a crash leaves: a socket nobody listens on.
    drop(UnixListener::bind(&path).expect("bind a stale socket"));
    assert!(matches!(
        UnixStream::connect(&path).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused)
    ));
    let engine = Engine::open(dir.path(), config(&clock)).expect("open over a stale socket");
    let meta = std::fs::symlink_metadata(&path).expect("socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "owner-only");
    let client = Client::connect(dir.path()).expect("the new socket answers");
    assert_eq!(client.welcome().pid, std::process::id());
    assert_eq!(client.welcome().version, 1);
    drop(client);
    engine.close().expect("close");
    assert!(!path.exists());
    // No temporary names left behind either.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("sock"))
        .collect();
    assert!(names.is_empty(), "{names:?}");

    // Off when asked.
    let engine = Engine::open(dir.path(), config(&clock).control(false)).expect("open");
    assert!(!path.exists());
    engine.close().expect("close");
}

#[test]
fn a_store_path_too_long_for_a_socket_address_still_gets_one() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("d".repeat(120));
    assert!(dir.join(SOCKET).as_os_str().len() > 108);
    let clock = ManualClock::new(common::T0);
    let engine = Engine::open(&dir, config(&clock)).expect("open");
    let mut client = Client::connect(&dir).expect("connect through /proc/self/fd");
    assert_eq!(client.stats().expect("stats").0.live_sessions, 0);
    drop(client);
    engine.close().expect("close");
    assert!(!dir.join(SOCKET).exists());
}

#[test]
fn every_request_runs_inside_the_engine() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(common::T0);
    let engine = Engine::open(dir.path(), config(&clock)).expect("open");
    let mut ids = Vec::new();
    for i in 0..5u32 {
        let mut s = engine.create().expect("create");
        s.insert("n", &i).expect("insert");
        if i < 3 {
            engine.login(&mut s, "alice").expect("login");
        } else {
            engine.save(&mut s).expect("save");
        }
        ids.push((*s.id(), engine.set_cookie(&s)));
    }
    let mut c = Client::connect(dir.path()).expect("connect");

    let (stats, metrics) = c.stats().expect("stats");
    assert_eq!((stats.live_sessions, stats.users), (5, 1));
    assert_eq!(metrics.creates, 5, "{metrics:?}");
    assert_eq!(c.metrics().expect("metrics").creates, 5);

    // Pages: two records at a time, in id order, all of them.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = c.records(after.as_ref(), 2).expect("page");
        assert!(page.len() <= 2);
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        for (id, r) in page {
            assert_eq!(r.expect("decodes").id, id);
            seen.push(id);
        }
    }
    let mut expected: Vec<_> = ids.iter().map(|(id, _)| *id).collect();
    expected.sort_by_key(|id| *id.as_bytes());
    assert_eq!(seen, expected);

    let (first, _) = ids[3];
    let r = c.record(&first).expect("record").expect("live");
    assert_eq!(r.get::<u32>("n").expect("decode"), Some(3));
    assert_eq!(c.sessions_of("alice").expect("list").len(), 3);

    // Revoking through the socket: the engine's next load has no session.
    let cookie = |i: usize| ids[i].1.split(';').next().expect("pair").to_owned();
    assert!(engine.load([cookie(0).as_bytes()]).expect("load").is_some());
    assert_eq!(c.destroy_user("alice").expect("revoke"), 3);
    for i in 0..3 {
        assert!(engine.load([cookie(i).as_bytes()]).expect("load").is_none());
    }
    assert!(c.destroy_id(&first).expect("destroy"));
    assert!(engine.load([cookie(3).as_bytes()]).expect("load").is_none());
    assert!(!c.destroy_id(&first).expect("again"));

    // An engine error comes back as the engine's own text.
    let err = c.destroy_user("").expect_err("empty user");
    let local = engine.destroy_user("", None).expect_err("empty user");
    assert!(matches!(&err, Error::Remote { message } if *message == local.to_string()));

    // Import: a record exported here, into a second live engine.
    let exported = c.record(&ids[4].0).expect("record").expect("live");
    let other = tempfile::tempdir().expect("temp dir");
    let engine2 = Engine::open(other.path(), config(&clock)).expect("open");
    let mut c2 = Client::connect(other.path()).expect("connect");
    assert_eq!(c2.import(&exported).expect("import"), Imported::Written);
    assert_eq!(c2.import(&exported).expect("import"), Imported::Exists);
    let back = c2.record(&exported.id).expect("record").expect("live");
    assert_eq!(back.data, exported.data);

    clock.advance(Duration::from_secs(3 * 3600));
    assert_eq!(c.sweep_now().expect("sweep"), 1);
    assert!(c.check().expect("check").is_empty());
    assert!(c.repair().expect("repair").remaining.is_empty());
    drop((c, c2));
    engine2.close().expect("close");
    engine.close().expect("close");
}

#[test]
fn garbage_huge_lines_and_wrong_versions_are_refused_and_the_connection_closed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(common::T0);
    let engine = Engine::open(dir.path(), config(&clock)).expect("open");
    let path = dir.path().join(SOCKET);
    let raw = |bytes: &[u8]| {
        let mut s = UnixStream::connect(&path).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        // The server may hang up before reading all of it.
        let _ = s.write_all(bytes);
        BufReader::new(s)
    };

    let mut r = raw(b"GET / HTTP/1.1\r\n\r\n");
    assert!(is_error_containing(
        reply(&mut r),
        "not a sessiondb control greeting"
    ));
    assert!(reply(&mut r).is_none(), "closed");

    let mut r = raw(b"{\"sessiondb\":\"control\",\"version\":99}\n");
    assert!(is_error_containing(reply(&mut r), "version 99"));
    assert!(reply(&mut r).is_none(), "closed");

    // A greeting that never ends: refused after 1 MiB, not read to the end.
    let writer = std::thread::spawn({
        let path = path.clone();
        move || {
            let mut s = UnixStream::connect(&path).expect("connect");
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0usize;
            while sent < 64 * 1024 * 1024 {
                match s.write(&chunk) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
            sent
        }
    });
    let sent = writer.join().expect("writer");
    assert!(
        sent < 8 * 1024 * 1024,
        "the server stopped reading: {sent} bytes"
    );

    let (mut s, mut r) = greeted(dir.path());
    s.write_all(&vec![b' '; 2 * 1024 * 1024]).ok();
    s.write_all(b"\n").ok();
    assert!(is_error_containing(reply(&mut r), "longer than"));

    let (mut s, mut r) = greeted(dir.path());
    s.write_all(b"{\"op\":\"metrics\"}\n{\"op\":\"format_disk\"}\n{\"op\":\"metrics\"}\n")
        .expect("send");
    assert!(matches!(reply(&mut r), Some(Reply::Ok(_))));
    assert!(is_error_containing(reply(&mut r), "bad request"));
    assert!(reply(&mut r).is_none(), "closed after a bad request");

    // Still serving.
    assert!(
        Client::connect(dir.path())
            .expect("connect")
            .metrics()
            .is_ok()
    );
    engine.close().expect("close");
}

#[test]
fn silent_and_excess_clients_cost_bounded_time_and_never_stall_requests() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(common::T0);
    let idle = Duration::from_millis(300);
    let engine = Engine::open(dir.path(), config(&clock).control_idle_timeout(idle)).expect("open");
    let path = dir.path().join(SOCKET);
    // Fill every slot: half say nothing, half greet and then say nothing.
    let mut silent = Vec::new();
    for i in 0..MAX_CONNECTIONS {
        let s = if i % 2 == 0 {
            UnixStream::connect(&path).expect("connect")
        } else {
            greeted(dir.path()).0
        };
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        silent.push(BufReader::new(s));
    }
    // One more is told it must wait, also through the client (which
    // reads the reason even when its greeting could not be sent).
    let mut extra = BufReader::new(UnixStream::connect(&path).expect("connect"));
    assert!(is_error_containing(reply(&mut extra), "busy"));
    let err = Client::connect(dir.path()).expect_err("busy");
    assert!(err.to_string().contains("busy"), "{err}");
    // The service's own requests do not wait for any of them.
    let mut s = engine.create().expect("create");
    s.insert("k", &1u8).expect("insert");
    engine.save(&mut s).expect("save");
    assert!(engine.load_id(s.id()).expect("load").is_some());
    // The silent ones are dropped after the idle time.
    for r in &mut silent {
        assert!(closed_within(r, Duration::from_secs(10)), "dropped in time");
    }
    // Their slots are free again.
    served_within(dir.path(), Duration::from_secs(10), |c| {
        c.metrics().map(drop)
    });
    engine.close().expect("close");
}

#[test]
fn a_client_that_hangs_up_mid_reply_frees_its_slot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(common::T0);
    let engine = Engine::open(dir.path(), config(&clock)).expect("open");
    let value = "v".repeat(4000);
    for _ in 0..1500 {
        let mut s = engine.create().expect("create");
        s.insert("big", &value).expect("insert");
        engine.save(&mut s).expect("save");
    }
    // More hang-ups than slots: each must end its thread, or the later
    // ones would never get a slot.
    for _ in 0..MAX_CONNECTIONS * 2 {
        let started = Instant::now();
        let mut s = loop {
            let mut s = UnixStream::connect(dir.path().join(SOCKET)).expect("connect");
            // A refused client may find the connection closed before its
            // greeting is sent: the refusal is still there to read.
            let _ = s.write_all(HELLO);
            let mut line = String::new();
            let _ = BufReader::new(s.try_clone().expect("clone")).read_line(&mut line);
            if line.contains("\"pid\"") {
                break s;
            }
            assert!(line.contains("busy") || line.is_empty(), "{line}");
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "slots not freed"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let req = serde_json::to_string(&Request::Records {
            after: None,
            limit: 1000,
        })
        .expect("json");
        s.write_all(format!("{req}\n").as_bytes()).expect("send");
        drop(s);
    }
    served_within(dir.path(), Duration::from_secs(30), |c| {
        let page = c.records(None, 1000)?;
        assert!(!page.is_empty() && page.len() <= 1000);
        Ok(())
    });
    engine.close().expect("close");
}

/// A page is cut by the size of its JSON, keys and all, not by the
/// values alone: records of many small values stay within a page's bound.
#[test]
fn a_page_of_records_is_bounded_by_its_size_on_the_wire() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(common::T0);
    let engine =
        Engine::open(dir.path(), config(&clock).max_session_bytes(96 * 1024)).expect("open");
    // About 60 KiB of JSON per record, nearly all of it key names.
    for _ in 0..200 {
        let mut s = engine.create().expect("create");
        for k in 0..1500u32 {
            s.insert(&format!("cart:item:{k:08}"), &0u8)
                .expect("insert");
        }
        engine.save(&mut s).expect("save");
    }
    let (mut s, mut r) = greeted(dir.path());
    s.write_all(b"{\"op\":\"records\",\"after\":null,\"limit\":1000}\n")
        .expect("send");
    let mut line = String::new();
    r.read_line(&mut line).expect("reply");
    let bound = sessiondb::control::proto::PAGE_BYTES + 256 * 1024;
    assert!(line.len() <= bound, "a page of {} bytes", line.len());
    let Ok(Reply::Ok(serde_json::Value::Array(items))) = serde_json::from_str(&line) else {
        panic!("not a page")
    };
    assert!(items.len() < 200, "cut short: {} records", items.len());
    // Paging on still reaches every record.
    let mut c = Client::connect(dir.path()).expect("connect");
    let (mut n, mut after) = (0, None);
    loop {
        let page = c.records(after.as_ref(), 1000).expect("page");
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        n += page.len();
    }
    assert_eq!(n, 200);
    drop(c);
    engine.close().expect("close");
}

/// A socket that cannot be made costs the live tool, never the service.
#[test]
fn a_store_whose_socket_cannot_be_made_still_opens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(common::T0);
    Engine::open(dir.path(), config(&clock))
        .expect("open")
        .close()
        .expect("close");
    // A directory where the socket goes: it cannot be removed or replaced.
    std::fs::create_dir_all(dir.path().join(SOCKET).join("x")).expect("mkdir");
    let engine = Engine::open(dir.path(), config(&clock)).expect("opens without a socket");
    let mut s = engine.create().expect("create");
    s.insert("k", &1u8).expect("insert");
    engine.save(&mut s).expect("serves");
    assert!(Client::connect(dir.path()).is_err());
    engine.close().expect("close");
    assert!(dir.path().join(SOCKET).join("x").exists(), "left alone");
}

/// The engine hangs up on a client idle past its time; a client that
/// knows it connects again before its next call instead of failing (a
/// paused `export | less`).
#[test]
fn an_idle_client_connects_again_instead_of_failing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(common::T0);
    let idle = Duration::from_millis(300);
    let engine = Engine::open(dir.path(), config(&clock).control_idle_timeout(idle)).expect("open");
    let mut c = Client::connect(dir.path()).expect("connect");
    assert_eq!(c.welcome().idle_ms, Some(300));
    let first = c.welcome().pid;
    c.metrics().expect("metrics");
    // Past the idle time: the engine has hung up by now.
    std::thread::sleep(idle * 2);
    c.metrics().expect("a call after the idle time still works");
    assert_eq!(c.welcome().pid, first);
    engine.close().expect("close");
}

#[test]
fn close_does_not_wait_for_connected_clients() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(common::T0);
    // The default idle timeout (60 s): close must not wait it out.
    let engine = Engine::open(dir.path(), config(&clock)).expect("open");
    let (_s, mut idle) = greeted(dir.path());
    let (_s2, mut quiet) = greeted(dir.path());
    let started = Instant::now();
    engine.close().expect("close");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "close waited for clients"
    );
    assert!(reply(&mut idle).is_none(), "hung up");
    assert!(reply(&mut quiet).is_none(), "hung up");
    // The store is free and the next engine serves again.
    let engine = Engine::open(dir.path(), config(&clock)).expect("reopen");
    assert!(Client::connect(dir.path()).is_ok());
    engine.close().expect("close");
}

/// Run by [`another_user_is_refused`] as uid 65534: connects to the socket
/// named in the environment and prints what happened. A no-op otherwise.
#[test]
fn child_connects_as_another_user() {
    let Ok(path) = std::env::var("SESSIONDB_CONTROL_CHILD") else {
        return;
    };
    match UnixStream::connect(&path) {
        Err(e) => println!("RESULT connect failed: {:?}", e.kind()),
        Ok(mut s) => {
            let _ = s.write_all(HELLO);
            let mut line = String::new();
            let _ = BufReader::new(s).read_line(&mut line);
            println!("RESULT answered: {}", line.trim());
        }
    }
}

/// Another user may not connect: the socket's mode stops them, and where
/// the mode is opened up anyway, the engine's peer-credentials check does.
/// Needs root (to run a process as another uid); elsewhere the rule itself
/// is unit-tested (`control::server::tests`).
#[test]
fn another_user_is_refused() {
    use std::os::unix::process::CommandExt as _;
    if rustix_euid() != 0 {
        eprintln!("NOTICE: another_user_is_refused needs root to switch uid; skipped");
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("store");
    let clock = ManualClock::new(common::T0);
    let engine = Engine::open(&dir, config(&clock)).expect("open");
    // The child runs a copy of this test binary that uid 65534 can reach.
    let exe = tmp.path().join("child");
    std::fs::copy(std::env::current_exe().expect("own path"), &exe).expect("copy");
    for p in [tmp.path(), dir.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o711)).expect("chmod");
    }
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let socket = dir.join(SOCKET);
    let run = || {
        let out = std::process::Command::new(&exe)
            .args(["--exact", "child_connects_as_another_user", "--nocapture"])
            .env("SESSIONDB_CONTROL_CHILD", &socket)
            .uid(65534)
            .gid(65534)
            .output()
            .expect("run the child");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no result: {text}"))
    };
    assert_eq!(
        run(),
        "connect failed: PermissionDenied",
        "the mode stops them"
    );
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let answer = run();
    assert!(
        answer.contains("permission denied: uid 65534"),
        "peer credentials stop them: {answer}"
    );
    engine.close().expect("close");
}

fn rustix_euid() -> u32 {
    // The test's own view, without a dependency: the owner of a file it
    // just made is its effective uid.
    use std::os::unix::fs::MetadataExt as _;
    let f = tempfile::NamedTempFile::new().expect("temp file");
    f.as_file().metadata().expect("metadata").uid()
}
