//! Helpers shared by the scenario tests: engines on each backend with a
//! manual clock, and a macro that runs one scenario against every backend.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::Path;
use std::time::Duration;

use sessiondb::{Config, Engine, Key, KeyRing, ManualClock, Session};

/// A fixed start time (2026-01-01T00:00:00Z), far from 0 so subtraction
/// bugs show.
pub const T0: u64 = 1_767_225_600_000;

pub fn ring() -> KeyRing {
    KeyRing::new(1, Key::try_from(&[0x42u8; 32][..]).expect("32 bytes"))
}

/// Defaults, a manual clock, and no sweeper thread (tests sweep by hand).
pub fn config(clock: &ManualClock) -> Config {
    Config::new(ring()).clock(clock.clone()).sweeper(false)
}

/// An engine under test and what it needs to stay alive.
pub struct Env {
    pub engine: Engine,
    pub clock: ManualClock,
    pub dir: Option<tempfile::TempDir>,
}

impl Env {
    pub fn sled() -> Self {
        Self::sled_with(|c| c)
    }

    pub fn sled_with(f: impl FnOnce(Config) -> Config) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new(T0);
        let engine = Engine::open(dir.path(), f(config(&clock))).expect("open");
        Self {
            engine,
            clock,
            dir: Some(dir),
        }
    }

    pub fn memory() -> Self {
        Self::memory_with(|c| c)
    }

    pub fn memory_with(f: impl FnOnce(Config) -> Config) -> Self {
        let clock = ManualClock::new(T0);
        let engine = Engine::memory(f(config(&clock))).expect("open");
        Self {
            engine,
            clock,
            dir: None,
        }
    }

    pub fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    /// A stored session holding `("k", v)`.
    pub fn stored(&self, v: u32) -> Session {
        let mut s = self.engine.create().expect("create");
        s.insert("k", &v).expect("insert");
        self.engine.save(&mut s).expect("save");
        s
    }

    /// The `Cookie` header a browser would send for `s`.
    pub fn cookie(&self, s: &Session) -> String {
        let set = self.engine.set_cookie(s);
        set.split(';').next().expect("name=value").to_owned()
    }

    pub fn assert_sound(&self) {
        let violations = self.engine.check().expect("check");
        assert!(violations.is_empty(), "{violations:#?}");
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("a sled env").path()
    }
}

/// Runs `$body` (a fn taking `Env`) against the sled and memory backends.
#[macro_export]
macro_rules! on_every_backend {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn sled() {
                ($body)($crate::common::Env::sled());
            }
            #[test]
            fn memory() {
                ($body)($crate::common::Env::memory());
            }
        }
    };
}
