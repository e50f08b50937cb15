//! SIGTERM (what service managers send) and Ctrl-C (SIGINT) stop the demo
//! cleanly: it exits 0 with the sweeper joined and the store flushed and
//! marked closed, so the next open runs no crash check. A session made
//! just before the signal, in relaxed mode, is still there.
#![cfg(feature = "axum")]

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;

use sessiondb::{Config, Engine, Key, KeyRing};

fn post_login(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let body = r#"{"user":"alice"}"#;
    write!(
        s,
        "POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("reply");
    reply
}

fn stops_cleanly_on(signal: &str) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("store");
    let key = [9u8; 32];
    let (mut child, port) = common::start_demo(&data, &[], Some(&base64_key(&key)));
    let reply = post_login(port);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let code = child.wait().expect("wait");
    assert!(code.success(), "{signal}: exit {code:?}");
    assert!(data.join("CLEAN").exists(), "the store was marked closed");

    let ring = KeyRing::new(1, Key::try_from(&key[..]).expect("key"));
    let engine = Engine::open(&data, Config::new(ring).sweeper(false)).expect("reopen");
    assert!(
        engine.recovery().is_none(),
        "a clean close needs no crash check"
    );
    assert_eq!(engine.sessions_of("alice").expect("list").len(), 1);
}

fn base64_key(key: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(key)
}

#[test]
fn sigterm_closes_the_store_cleanly() {
    stops_cleanly_on("-TERM");
}

#[test]
fn ctrl_c_closes_the_store_cleanly() {
    stops_cleanly_on("-INT");
}
