//! The demo will not sign with a key file that other users can read: such
//! a key may already be known, so it refuses to start, says which file and
//! what to do, and leaves the choice (chmod or a new key) to the operator.
//! Once the file is owner-only again, the demo starts with it.
#![cfg(feature = "axum")]

mod common;

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sessiondb::{Config, Engine, Key, KeyRing};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn start(data: &Path, port: u16) -> Child {
    Command::new(common::demo_binary())
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .env_remove("SESSIONDB_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo")
}

/// Waits until the demo exits (`Some(stderr)`) or listens (`None`).
fn exited_or_listening(child: &mut Child, port: u16) -> Option<String> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().expect("wait").is_some() {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                stderr.read_to_string(&mut err).expect("read stderr");
            }
            return Some(err);
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return None;
        }
        assert!(
            Instant::now() < until,
            "the demo neither started nor exited"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(mut child: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(child.wait().expect("wait").success());
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    use base64::Engine as _;
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("store");
    let key = [7u8; 32];
    let ring = KeyRing::new(1, Key::try_from(&key[..]).expect("key"));
    Engine::open(&data, Config::new(ring).sweeper(false))
        .and_then(Engine::close)
        .expect("make the store");
    let key_file = data.join("demo.key");
    std::fs::write(
        &key_file,
        base64::engine::general_purpose::STANDARD.encode(key),
    )
    .expect("write key");

    for mode in [0o644, 0o640, 0o604, 0o620] {
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let port = free_port();
        let mut child = start(&data, port);
        let Some(err) = exited_or_listening(&mut child, port) else {
            stop(child);
            panic!("the demo started with a key file of mode {mode:o}");
        };
        assert!(!child.wait().expect("wait").success());
        assert!(err.contains("demo.key"), "{err}");
        assert!(err.contains("chmod 600"), "{err}");
        let now = std::fs::metadata(&key_file)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(now & 0o777, mode, "the demo changed nothing");
    }

    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let port = free_port();
    let mut child = start(&data, port);
    if let Some(err) = exited_or_listening(&mut child, port) {
        panic!("the demo refused an owner-only key file: {err}");
    }
    stop(child);
}
