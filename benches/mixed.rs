//! 90 % loads / 10 % updates from 1, 2 and 8 threads on every contender:
//! operations per second over a fixed time, 10k live sessions, each
//! thread picking sessions at random.
//!
//! `cargo bench -p sessiondb-bench --bench mixed` (SESSIONDB_BENCH_SECS per point, default 3).
//! Prints a Markdown table, and JSON lines to `$SESSIONDB_BENCH_OUT` when
//! set (benches/run.sh collects them).

#[path = "contenders/mod.rs"]
mod contenders;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use contenders::Contender;

fn run(c: &Arc<dyn Contender>, cookies: &Arc<Vec<Vec<u8>>>, threads: usize, secs: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (c, cookies, stop, ops) = (c.clone(), cookies.clone(), stop.clone(), ops.clone());
            std::thread::spawn(move || {
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (t as u64 + 1);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let cookie = &cookies[(x % cookies.len() as u64) as usize];
                    let ok = match x % 10 {
                        0 => c.update(cookie),
                        _ => c.load(cookie),
                    };
                    assert!(ok, "{}: a live session went missing", c.name());
                    n += 1;
                }
                ops.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    contenders::rate_over(secs, &stop, &ops, handles)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = contenders::secs(3);
    let threads = [1, 2, 8];
    println!("90 % loads / 10 % updates, operations/s, {secs} s per point");
    println!("| contender | 1 thread | 2 threads | 8 threads |");
    println!("|---|---:|---:|---:|");
    for c in contenders::all(false) {
        let c: Arc<dyn Contender> = Arc::from(c);
        let cookies: Arc<Vec<_>> = Arc::new((0..10_000).map(|_| c.create()).collect());
        let mut row = format!("| {} |", c.name());
        for t in threads {
            let rate = run(&c, &cookies, t, secs);
            row += &format!(" {rate:.0} |");
            contenders::emit(
                "mixed",
                &format!("mixed_90_10_{t}t"),
                &c.name(),
                &[("ops_per_s", rate)],
            );
        }
        println!("{row}");
    }
}
