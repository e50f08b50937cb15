//! On Redis, every engine operation a request makes is one round trip: a
//! load that touches, a create, a save, a regenerate, a destroy. A proxy
//! between the engine and the server counts the commands the engine sends
//! (each one a request and its reply: the client is synchronous).
#![cfg(feature = "redis")]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sessiondb::{Engine, ManualClock};

/// Reads one RESP command (an array of bulk strings) from `r`; `None` at
/// the end of the stream.
fn read_command(r: &mut impl BufRead, out: &mut Vec<u8>) -> Option<()> {
    let mut line = Vec::new();
    if r.read_until(b'\n', &mut line).ok()? == 0 {
        return None;
    }
    out.extend_from_slice(&line);
    let n: usize = std::str::from_utf8(line.strip_prefix(b"*")?)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    for _ in 0..n {
        line.clear();
        r.read_until(b'\n', &mut line).ok()?;
        out.extend_from_slice(&line);
        let len: usize = std::str::from_utf8(line.strip_prefix(b"$")?)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let mut bulk = vec![0u8; len + 2];
        r.read_exact(&mut bulk).ok()?;
        out.extend_from_slice(&bulk);
    }
    Some(())
}

/// A TCP proxy in front of `upstream` that counts the commands clients
/// send through it; returns its URL.
fn counting_proxy(upstream: &str, count: Arc<AtomicU64>) -> String {
    let target = upstream
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(&target) else {
                continue;
            };
            let (mut to_server, mut to_client) = (
                server.try_clone().expect("clone"),
                client.try_clone().expect("clone"),
            );
            let count = count.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(client);
                let mut buf = Vec::new();
                while read_command(&mut r, &mut buf).is_some() {
                    count.fetch_add(1, Ordering::SeqCst);
                    if to_server.write_all(&buf).is_err() {
                        break;
                    }
                    buf.clear();
                }
            });
            std::thread::spawn(move || {
                let mut server = server;
                let _ = std::io::copy(&mut server, &mut to_client);
            });
        }
    });
    format!("redis://127.0.0.1:{port}/")
}

#[test]
fn every_request_operation_is_one_round_trip() {
    if !common::redis_available() {
        return;
    }
    let count = Arc::new(AtomicU64::new(0));
    let url = counting_proxy(&common::redis_url(), count.clone());
    let clock = ManualClock::new(common::T0);
    let options = sessiondb::RedisOptions::new(url).prefix(common::redis_prefix());
    let engine = Engine::with_backend(
        sessiondb::RedisBackend::open(options).expect("redis"),
        common::config(&clock),
    )
    .expect("open on redis");
    let trips = |what: &str, f: &mut dyn FnMut()| {
        let before = count.load(Ordering::SeqCst);
        f();
        let n = count.load(Ordering::SeqCst) - before;
        eprintln!("{what}: {n} round trips");
        n
    };
    // Once round, so that every script is loaded on the server (a script's
    // first call may cost a SCRIPT LOAD).
    let mut counts = Vec::new();
    for round in 0..2 {
        let mut s = engine.create().expect("create");
        s.insert("k", &1u32).expect("insert");
        let create = trips("create", &mut || engine.save(&mut s).expect("save"));
        let id = *s.id();
        clock.advance(Duration::from_secs(61));
        let touch = trips("load that touches", &mut || {
            let loaded = engine.load_id(&id).expect("load").expect("live");
            assert!(loaded.was_touched());
            s = loaded;
        });
        let hit = trips("load", &mut || {
            let loaded = engine.load_id(&id).expect("load").expect("live");
            assert!(!loaded.was_touched());
        });
        s.insert("k", &2u32).expect("insert");
        let save = trips("save", &mut || engine.save(&mut s).expect("save"));
        let regenerate = trips("regenerate", &mut || {
            engine.regenerate(&mut s).expect("regenerate");
        });
        assert!(engine.load_id(&id).expect("load").is_none());
        let destroy = trips("destroy", &mut || {
            assert!(engine.destroy(&s).expect("destroy"));
        });
        assert!(engine.load_id(s.id()).expect("load").is_none());
        if round == 1 {
            counts = vec![
                ("create", create),
                ("load that touches", touch),
                ("load", hit),
                ("save", save),
                ("regenerate", regenerate),
                ("destroy", destroy),
            ];
        }
    }
    for (what, n) in counts {
        assert_eq!(n, 1, "{what} took {n} round trips");
    }
}

/// The touch made in the read is the engine's touch: the session's expiry
/// moves, its version goes up (a save of the copy read before fails as a
/// conflict), and the last-seen time the engine reports is the new one.
#[test]
fn a_touch_in_the_read_slides_the_session() {
    if !common::redis_available() {
        return;
    }
    let env = common::Env::redis_with(|c| c);
    let mut before = env.stored(1);
    let first_expiry = before.expires_at();
    env.advance(20 * 60);
    let touched = env
        .engine
        .load_id(before.id())
        .expect("load")
        .expect("live");
    assert!(touched.was_touched());
    assert_eq!(touched.last_seen(), common::T0 + 20 * 60 * 1000);
    assert_eq!(touched.expires_at(), first_expiry + 20 * 60 * 1000);
    // Past the first expiry, still live: the index and the TTL moved too.
    env.advance(15 * 60);
    assert!(env.engine.load_id(before.id()).expect("load").is_some());
    assert_eq!(env.engine.admin().sweep_now().expect("sweep"), 0);
    before.insert("k", &2u32).expect("insert");
    assert!(matches!(
        env.engine.save(&mut before),
        Err(sessiondb::Error::Conflict { .. })
    ));
    env.assert_sound();
    let records = env.engine.admin().records(None, 100).expect("records");
    let (_, record) = records
        .iter()
        .find(|(id, _)| id == touched.id())
        .expect("listed");
    let record = record.as_ref().expect("decodes");
    assert_eq!(record.last_seen, common::T0 + 35 * 60 * 1000);
}
