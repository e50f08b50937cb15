//! What only the Redis backend has to show: several engines on one Redis
//! see each other's changes at once, keys are namespaced, expiry is a TTL
//! with the index trimmed by the sweeper, and a Redis that goes away and
//! comes back is an error per call, then recovery.
#![cfg(feature = "redis")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Commands as _;
use sessiondb::{Engine, ManualClock, RedisBackend, RedisOptions};

fn engine_at(url: &str, prefix: &str, clock: &ManualClock) -> Engine {
    let backend = RedisBackend::open(RedisOptions::new(url).prefix(prefix)).expect("redis");
    Engine::with_backend(backend, common::config(clock)).expect("open on redis")
}

fn raw(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .expect("url")
        .get_connection()
        .expect("connect")
}

#[test]
fn engines_sharing_one_redis_see_each_others_logins_and_logouts_at_once() {
    if !common::redis_available() {
        return;
    }
    let (url, prefix) = (common::redis_url(), common::redis_prefix());
    let clock = ManualClock::new(common::T0);
    let a = engine_at(&url, &prefix, &clock);
    let b = engine_at(&url, &prefix, &clock);
    let cookie = |e: &Engine, s: &sessiondb::Session| {
        e.set_cookie(s).split(';').next().expect("pair").to_owned()
    };

    // Log in on instance A; instance B serves the next request.
    let mut s = a.create().expect("create");
    a.login(&mut s, "alice").expect("login");
    let c = cookie(&a, &s);
    let on_b = b
        .load([c.as_bytes()])
        .expect("load")
        .expect("B sees the login");
    assert_eq!(on_b.user(), Some("alice"));

    // Log out on B; A no longer serves it.
    assert!(b.destroy(&on_b).expect("destroy"));
    assert!(a.load([c.as_bytes()]).expect("load").is_none());

    // Two sessions of bob made on A, log out everywhere on B.
    let mut p = a.create().expect("create");
    a.login(&mut p, "bob").expect("login");
    let mut q = a.create().expect("create");
    a.login(&mut q, "bob").expect("login");
    assert_eq!(b.sessions_of("bob").expect("list").len(), 2);
    assert_eq!(b.destroy_user("bob", None).expect("logout all"), 2);
    assert!(a.sessions_of("bob").expect("list").is_empty());
    assert!(a.load_id(p.id()).expect("load").is_none());
    assert!(a.admin().check().expect("check").is_empty());
}

#[test]
fn concurrent_updates_from_two_engines_lose_nothing() {
    if !common::redis_available() {
        return;
    }
    let (url, prefix) = (common::redis_url(), common::redis_prefix());
    let clock = ManualClock::new(common::T0);
    let engines = [
        Arc::new(engine_at(&url, &prefix, &clock)),
        Arc::new(engine_at(&url, &prefix, &clock)),
    ];
    let mut s = engines[0].create().expect("create");
    s.insert("n", &0u64).expect("insert");
    engines[0].save(&mut s).expect("save");
    let id = *s.id();
    let per_thread = 25;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let e = engines[t % 2].clone();
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    e.update(&id, |s| {
                        let n: u64 = s.get("n").expect("decode").unwrap_or(0);
                        s.insert("n", &(n + 1)).expect("insert");
                    })
                    .expect("update")
                    .expect("live");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let s = engines[1].load_id(&id).expect("load").expect("live");
    // The stripe locks are per engine; across engines only the server-side
    // version check keeps every increment.
    assert_eq!(s.get::<u64>("n").expect("decode"), Some(8 * per_thread));
    // A stale copy is refused by the server.
    let mut stale = s.clone();
    engines[0]
        .update(&id, |s| s.insert("y", &1u8).expect("insert"))
        .expect("update");
    stale.insert("x", &1u8).expect("insert");
    assert!(matches!(
        engines[1].save(&mut stale),
        Err(sessiondb::Error::Conflict { .. })
    ));
}

#[test]
fn prefixes_keep_applications_apart() {
    if !common::redis_available() {
        return;
    }
    let url = common::redis_url();
    let clock = ManualClock::new(common::T0);
    let one = engine_at(&url, &common::redis_prefix(), &clock);
    let two = engine_at(&url, &common::redis_prefix(), &clock);
    let mut s = one.create().expect("create");
    one.login(&mut s, "alice").expect("login");
    assert!(two.load_id(s.id()).expect("load").is_none());
    assert!(two.sessions_of("alice").expect("list").is_empty());
    assert_eq!(two.admin().stats().expect("stats").live_sessions, 0);
    assert_eq!(one.admin().stats().expect("stats").live_sessions, 1);
}

#[test]
fn expiry_is_a_ttl_and_the_sweeper_trims_the_indexes() {
    if !common::redis_available() {
        return;
    }
    let (url, prefix) = (common::redis_url(), common::redis_prefix());
    let clock = ManualClock::new(common::T0);
    let e = engine_at(&url, &prefix, &clock);
    let mut s = e.create().expect("create");
    e.login(&mut s, "alice").expect("login");
    let mut r = raw(&url);
    let key = format!("{prefix}:s:{}", s.id().to_base64());
    let ttl: i64 = r.pttl(&key).expect("pttl");
    // The default idle timeout is 30 minutes.
    assert!((1_790_000..=1_800_000).contains(&ttl), "ttl {ttl} ms");
    let ukey = format!("{prefix}:u:alice");
    assert!(
        r.pttl::<_, i64>(&ukey).expect("pttl") > 0,
        "the user index expires too"
    );

    // Past the idle timeout by the engine's clock: never listed, never
    // served, even before any sweep (Redis's own clock is behind).
    clock.advance(Duration::from_secs(31 * 60));
    assert!(e.sessions_of("alice").expect("list").is_empty());
    assert!(e.load_id(s.id()).expect("load").is_none());
    assert_eq!(r.zcard::<_, u64>(&ukey).expect("zcard"), 1);
    // The sweeper's pass trims both indexes.
    assert_eq!(e.admin().sweep_now().expect("sweep"), 1);
    assert_eq!(r.zcard::<_, u64>(&ukey).expect("zcard"), 0);
    assert_eq!(r.zcard::<_, u64>(format!("{prefix}:x")).expect("zcard"), 0);
    assert!(!r.exists::<_, bool>(&key).expect("exists"));
    assert!(e.admin().check().expect("check").is_empty());
}

#[test]
fn index_members_of_sessions_redis_expired_are_dropped() {
    if !common::redis_available() {
        return;
    }
    let (url, prefix) = (common::redis_url(), common::redis_prefix());
    let clock = ManualClock::new(common::T0);
    let e = engine_at(&url, &prefix, &clock);
    let mut old = e.create().expect("create");
    e.login(&mut old, "alice").expect("login");
    clock.advance(Duration::from_secs(31 * 60));
    // What Redis does when the TTL runs out (its clock is not injectable).
    let mut r = raw(&url);
    let _: () = r
        .del(format!("{prefix}:s:{}", old.id().to_base64()))
        .expect("del");
    let ukey = format!("{prefix}:u:alice");
    assert_eq!(r.zcard::<_, u64>(&ukey).expect("zcard"), 1);
    // Awaiting upkeep is not a broken invariant.
    assert!(e.admin().check().expect("check").is_empty());
    // alice logs in again: her set drops the dead member.
    let mut new = e.create().expect("create");
    e.login(&mut new, "alice").expect("login");
    let members: Vec<String> = r.zrange(&ukey, 0, -1).expect("zrange");
    assert_eq!(members, vec![new.id().to_base64()]);
    // The sweeper drops it from the expiry index, deleting nothing.
    assert_eq!(e.admin().sweep_now().expect("sweep"), 0);
    let x: Vec<String> = r.zrange(format!("{prefix}:x"), 0, -1).expect("zrange");
    assert_eq!(x, vec![new.id().to_base64()]);
    assert!(e.admin().check().expect("check").is_empty());
}

#[test]
fn a_redis_outage_is_an_error_per_call_then_recovery() {
    if !common::redis_available() {
        return;
    }
    let server = common::RedisServer::start(0);
    let (url, port) = (server.url(), server.port);
    let clock = ManualClock::new(common::T0);
    let e = engine_at(&url, &common::redis_prefix(), &clock);
    let mut s = e.create().expect("create");
    s.insert("k", &1u8).expect("insert");
    e.save(&mut s).expect("save");
    assert!(e.load_id(s.id()).expect("load").is_some());

    server.stop();
    for _ in 0..3 {
        let started = Instant::now();
        assert!(matches!(
            e.load_id(s.id()),
            Err(sessiondb::Error::Storage(_))
        ));
        let mut t = e.create().expect("create needs no server");
        t.insert("k", &2u8).expect("insert");
        assert!(e.save(&mut t).is_err());
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "errors come at once, not after a hang"
        );
    }

    // Redis returns on the same port (empty: it kept nothing on disk).
    let server = common::RedisServer::start(port);
    let mut t = e.create().expect("create");
    t.insert("k", &3u8).expect("insert");
    e.save(&mut t).expect("save after recovery");
    let back = e.load_id(t.id()).expect("load").expect("live");
    assert_eq!(back.get::<u8>("k").expect("decode"), Some(3));
    drop(server);
}

/// The test servers tell theirs from another on the same port (two tests
/// of one binary once took one port, and one stopped the other's server).
#[test]
fn a_test_server_never_takes_another_servers_port_for_its_own() {
    if !common::redis_available() || std::env::var_os("SESSIONDB_TEST_REDIS").is_some() {
        return;
    }
    let first = common::RedisServer::start(0);
    assert!(common::RedisServer::try_start(first.port).is_none());
    let mut c = raw(&first.url());
    let _: () = c.set("still", 1).expect("the first server still answers");
}
