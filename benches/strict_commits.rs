//! Strict-durability commits per second with 1, 8 and 64 writer threads,
//! against the baseline of one flush + fdatasync per commit (writers take
//! turns, each paying its own sync), on the same disk in the same run.
//!
//! `cargo bench --bench strict_commits` (SESSIONDB_BENCH_SECS per point,
//! default 3).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sessiondb::{Config, Durability, Engine, Key, KeyRing};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    GroupCommit,
    SyncPerCommit,
}

fn run(threads: usize, mode: Mode, secs: u64) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let ring = KeyRing::new(1, Key::try_from(&[42u8; 32][..]).expect("32 bytes"));
    let durability = match mode {
        Mode::GroupCommit => Durability::Strict,
        Mode::SyncPerCommit => Durability::Relaxed,
    };
    let config = Config::new(ring)
        .sweeper(false)
        .durability(durability)
        .max_unflushed_writes(usize::MAX);
    let engine = Arc::new(Engine::open(dir.path(), config).expect("open"));
    let turn = Arc::new(Mutex::new(()));
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (engine, turn, stop, commits) =
                (engine.clone(), turn.clone(), stop.clone(), commits.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut s = engine.create().expect("create");
                    s.insert("user", "alice").expect("insert");
                    s.insert("payload", &[7u8; 150][..]).expect("insert");
                    match mode {
                        Mode::GroupCommit => engine.save(&mut s).expect("save"),
                        Mode::SyncPerCommit => {
                            let _turn = turn.lock().expect("lock");
                            engine.save(&mut s).expect("save");
                            engine.flush().expect("flush");
                        }
                    }
                    commits.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("thread");
    }
    commits.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // useful either: only run when asked to bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = std::env::var("SESSIONDB_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    println!("strict commits/s, {secs} s per point");
    println!("| writers | group commit | one sync per commit | ratio |");
    println!("|---:|---:|---:|---:|");
    for threads in [1, 8, 32, 64] {
        let group = run(threads, Mode::GroupCommit, secs);
        let single = run(threads, Mode::SyncPerCommit, secs);
        println!(
            "| {threads} | {group:.0} | {single:.0} | {:.1}x |",
            group / single
        );
    }
}
