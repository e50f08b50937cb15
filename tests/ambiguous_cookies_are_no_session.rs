//! Two session cookies that both verify but name different sessions are
//! cookie tossing: the request has no session, and a warning is logged. A
//! cookie configuration that cannot carry the `__Host-` prefix says so once
//! at open instead of dropping it silently.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use sessiondb::{Config, CookieBuilder, Engine};

/// Collects what `tracing` logs while `f` runs.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&sink.0.lock().expect("sink")).into_owned();
    (out, text)
}

on_every_backend!(
    a_tossed_second_cookie_means_no_session,
    |env: common::Env| {
        let mine = env.stored(1);
        let tossed = env.stored(2);
        let (a, b) = (env.cookie(&mine), env.cookie(&tossed));
        // Alone, each cookie works.
        assert!(env.engine.load([a.as_bytes()]).expect("load").is_some());
        for header in [format!("{a}; {b}"), format!("{b}; {a}")] {
            let (loaded, log) = logged(|| env.engine.load([header.as_bytes()]).expect("load"));
            assert!(loaded.is_none(), "an ambiguous pair picked a session");
            assert!(log.contains("WARN"), "{log}");
            assert!(log.contains("different sessions"), "{log}");
            // Across two Cookie headers too.
            assert!(
                env.engine
                    .load([a.as_bytes(), b.as_bytes()])
                    .expect("load")
                    .is_none()
            );
        }
        // The same cookie twice is no ambiguity.
        let twice = format!("{a}; {a}");
        assert!(env.engine.load([twice.as_bytes()]).expect("load").is_some());
    }
);

#[test]
fn a_cookie_that_cannot_carry_the_host_prefix_says_so_once_at_open() {
    for (cookie, why) in [
        (CookieBuilder::default().secure(false), "not Secure"),
        (CookieBuilder::default().path("/app"), "Path is not /"),
        (
            CookieBuilder::default().domain(Some("example.com".into())),
            "has a Domain",
        ),
    ] {
        let config = Config::new(common::ring()).sweeper(false).cookie(cookie);
        let (engine, log) = logged(|| {
            Engine::with_backend(sessiondb::MemoryBackend::new(), config).expect("memory")
        });
        assert_eq!(log.matches("__Host-").count(), 1, "{log}");
        assert!(log.contains(why), "{log}");
        assert!(engine.cookie_config().host_prefix_warning().is_some());
    }
    // The defaults carry the prefix, and say nothing.
    let config = Config::new(common::ring()).sweeper(false);
    let (engine, log) =
        logged(|| Engine::with_backend(sessiondb::MemoryBackend::new(), config).expect("memory"));
    assert!(log.is_empty(), "{log}");
    assert!(engine.cookie_config().name().starts_with("__Host-"));
    assert!(engine.cookie_config().host_prefix_warning().is_none());
}
