//! No sweeper thread outlives its engine, whether closed or dropped, on
//! any backend.
//! (One test in this binary, so no other engine's thread is counted.)

mod common;

use std::time::Duration;

fn sweeper_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("linux /proc")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "sessiondb-sweep")
        .count()
}

/// Zero sweeper threads, allowing for the kernel's bookkeeping: `join`
/// returns once the thread has cleared its tid on exit, a moment before the
/// kernel drops it from /proc/self/task (seen once, in a loaded full run).
/// A thread that was not joined would stay listed, and this would fail.
fn no_sweeper_threads() -> bool {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while sweeper_threads() != 0 {
        if std::time::Instant::now() > until {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

#[test]
fn close_and_drop_both_join_the_sweeper() {
    assert_eq!(sweeper_threads(), 0);
    let with_thread =
        |c: sessiondb::Config| c.sweeper(true).sweep_interval(Duration::from_millis(5));

    let env = common::Env::sled_with(with_thread);
    assert_eq!(sweeper_threads(), 1);
    env.engine.close().expect("close");
    assert!(no_sweeper_threads());

    let env = common::Env::memory_with(with_thread);
    assert_eq!(sweeper_threads(), 1);
    drop(env);
    assert!(no_sweeper_threads());

    #[cfg(feature = "redis")]
    if let Some(env) = common::Env::redis_or_skip(with_thread) {
        assert_eq!(sweeper_threads(), 1);
        env.engine.close().expect("close");
        assert!(no_sweeper_threads());
    }
}
