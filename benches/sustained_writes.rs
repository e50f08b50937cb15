//! Sustained relaxed-mode creates: throughput and per-call latency (p50,
//! p99, max), with the engine's backlog bound at several sizes and off.
//! With it off, sled's buffers fill for the whole run and the final flush shows
//! the stall a caller would meet.
//!
//! `cargo bench --bench sustained_writes` (SESSIONDB_BENCH_SECS per run,
//! default 20).

use std::time::{Duration, Instant};

use sessiondb::{Config, Engine, Key, KeyRing};

fn run(bound: Option<usize>, secs: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ring = KeyRing::new(1, Key::try_from(&[42u8; 32][..]).expect("32 bytes"));
    let mut config = Config::new(ring).sweeper(false);
    config = match bound {
        Some(n) => config.max_unflushed_writes(n),
        None => config
            .max_unflushed_writes(usize::MAX)
            .flush_every(Duration::from_secs(3600)),
    };
    let engine = Engine::open(dir.path(), config).expect("open");
    let mut latencies_us: Vec<u32> = Vec::with_capacity(4_000_000);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    while Instant::now() < deadline {
        let t = Instant::now();
        let mut s = engine.create().expect("create");
        s.insert("user", "alice").expect("insert");
        s.insert("payload", &[7u8; 150][..]).expect("insert");
        engine.save(&mut s).expect("save");
        latencies_us.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let flush_started = Instant::now();
    engine.flush().expect("flush");
    let final_flush = flush_started.elapsed();
    latencies_us.sort_unstable();
    let n = latencies_us.len();
    let pct = |p: f64| latencies_us[((n as f64 * p) as usize).min(n - 1)];
    println!(
        "| {} | {n} | {:.0} | {} | {} | {} | {:.1} |",
        bound.map_or("off".to_owned(), |n| format!("{n} writes")),
        n as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        latencies_us[n - 1],
        final_flush.as_secs_f64() * 1000.0,
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = std::env::var("SESSIONDB_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    println!("sustained relaxed creates, 1 thread, {secs} s per run");
    println!("| backlog bound | creates | per s | p50 µs | p99 µs | max µs | final flush ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for bound in [Some(1000), Some(250), Some(100), None] {
        run(bound, secs);
    }
}
