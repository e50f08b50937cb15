//! No sweeper thread outlives its engine, whether closed or dropped.
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

#[test]
fn close_and_drop_both_join_the_sweeper() {
    assert_eq!(sweeper_threads(), 0);
    let with_thread =
        |c: sessiondb::Config| c.sweeper(true).sweep_interval(Duration::from_millis(5));

    let env = common::Env::sled_with(with_thread);
    assert_eq!(sweeper_threads(), 1);
    env.engine.close().expect("close");
    assert_eq!(sweeper_threads(), 0);

    let env = common::Env::memory_with(with_thread);
    assert_eq!(sweeper_threads(), 1);
    drop(env);
    assert_eq!(sweeper_threads(), 0);
}
