//! Strict-durability commits per second with 1, 8, 32 and 64 writer
//! threads, each commit a new ~200-byte session, in one run:
//!
//! - `sessiondb-sled-strict`: group commit (writers share one sled
//!   transaction and one flush + fdatasync);
//! - `one-sync-per-commit`: the same engine in relaxed mode, writers taking
//!   turns and each paying its own flush + fdatasync: the baseline;
//! - `tower-sqlite-full`: tower-sessions' SQLite store, WAL mode,
//!   `synchronous=FULL` (every commit fsynced).
//!
//! `cargo bench -p sessiondb-bench --bench strict_commits` (SESSIONDB_BENCH_SECS per point,
//! default 3).

#[path = "contenders/mod.rs"]
mod contenders;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use contenders::Contender;
use sessiondb::{Durability, Engine, ManualClock};

/// Runs `commit` from `threads` threads for `secs`; commits per second.
fn run(threads: usize, secs: u64, commit: Arc<dyn Fn() + Send + Sync>) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, commits, commit) = (stop.clone(), commits.clone(), commit.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    commit();
                    commits.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    contenders::rate_over(secs, &stop, &commits, handles)
}

fn group_commit(threads: usize, secs: u64) -> f64 {
    let c: Arc<dyn Contender> = Arc::new(contenders::SessionDb::sled(Durability::Strict));
    run(threads, secs, Arc::new(move || drop(c.create())))
}

fn sync_per_commit(threads: usize, secs: u64) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(contenders::T0);
    let config = contenders::config(&clock)
        .durability(Durability::Relaxed)
        .max_unflushed_writes(usize::MAX);
    let engine = Arc::new(Engine::open(dir.path(), config).expect("open"));
    let turn = Arc::new(Mutex::new(()));
    run(
        threads,
        secs,
        Arc::new(move || {
            let mut s = engine.create().expect("create");
            for (k, v) in contenders::fields() {
                s.insert(k, &v).expect("insert");
            }
            let _turn = turn.lock().expect("lock");
            engine.save(&mut s).expect("save");
            engine.flush().expect("flush");
        }),
    )
}

fn sqlite_full(threads: usize, secs: u64) -> f64 {
    let c: Arc<dyn Contender> = Arc::new(contenders::tower_sqlite(true));
    run(threads, secs, Arc::new(move || drop(c.create())))
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: only
    // run when asked to bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = contenders::secs(3);
    println!("strict commits/s, {secs} s per point");
    println!(
        "| writers | group commit | one sync per commit | ratio | tower-sqlite-full | ratio |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for threads in [1, 8, 32, 64] {
        let group = group_commit(threads, secs);
        let single = sync_per_commit(threads, secs);
        let sqlite = sqlite_full(threads, secs);
        println!(
            "| {threads} | {group:.0} | {single:.0} | {:.1}x | {sqlite:.0} | {:.1}x |",
            group / single,
            group / sqlite
        );
        let w = format!("strict_commits_{threads}w");
        contenders::emit(
            "strict",
            &w,
            "sessiondb-sled-strict",
            &[("commits_per_s", group)],
        );
        contenders::emit(
            "strict",
            &w,
            "one-sync-per-commit",
            &[("commits_per_s", single)],
        );
        contenders::emit(
            "strict",
            &w,
            "tower-sqlite-full",
            &[("commits_per_s", sqlite)],
        );
    }
}
