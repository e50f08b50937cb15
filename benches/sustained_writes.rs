//! Sustained relaxed-mode creates: throughput and per-call latency (p50,
//! p99, max) from 1 and 8 threads with the default backlog bound (1000
//! unflushed writes), and from 1 thread with the bound off. With it off,
//! sled's buffers fill for the whole run and the final flush shows the
//! stall a caller would meet; the bound exists to prevent it.
//!
//! Two floors run beside it, on bare sled with no engine in front: what
//! sled alone takes to store a session record and its expiry entry, in
//! transactions of 1024 over two trees (the cheapest way to keep DESIGN's
//! invariants atomically), and as two plain inserts with no atomicity at
//! all. The engine cannot beat the first on this machine; the ratio to it
//! is the engine's own cost.
//!
//! `cargo bench -p sessiondb-bench --bench sustained_writes` (SESSIONDB_BENCH_SECS per run,
//! default 20; the targets are stated for 60).

#[path = "contenders/mod.rs"]
mod contenders;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sessiondb::{Engine, ManualClock};

/// `v1`: the engine's first write path (`Config::write_path_v1`), for the
/// side-by-side.
fn run(threads: usize, bound: Option<usize>, secs: u64, v1: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(contenders::T0);
    let mut config = contenders::config(&clock).write_path_v1(v1);
    config = match bound {
        Some(n) => config.max_unflushed_writes(n),
        None => config
            .max_unflushed_writes(usize::MAX)
            .flush_every(Duration::from_secs(3600)),
    };
    let engine = Arc::new(Engine::open(dir.path(), config).expect("open"));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut latencies_us: Vec<u32> = Vec::with_capacity(1 << 20);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let mut s = engine.create().expect("create");
                    for (k, v) in contenders::fields() {
                        s.insert(k, &v).expect("insert");
                    }
                    engine.save(&mut s).expect("save");
                    latencies_us.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                }
                latencies_us
            })
        })
        .collect();
    let mut latencies_us: Vec<u32> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    let flush_started = Instant::now();
    engine.flush().expect("flush");
    let final_flush = flush_started.elapsed();
    latencies_us.sort_unstable();
    let n = latencies_us.len();
    let pct = |p: f64| f64::from(latencies_us[((n as f64 * p) as usize).min(n - 1)]);
    let bound_name = bound.map_or("off".to_owned(), |n| format!("{n}"));
    let rate = n as f64 / elapsed;
    let max = f64::from(latencies_us[n - 1]);
    let flush_ms = final_flush.as_secs_f64() * 1000.0;
    let contender = match v1 {
        true => "sessiondb-sled-v1",
        false => "sessiondb-sled-relaxed",
    };
    println!(
        "| {contender} | {threads} | {bound_name} | {n} | {rate:.0} | {} | {} | {max} | {flush_ms:.1} |",
        pct(0.50),
        pct(0.99),
    );
    contenders::emit(
        "sustained",
        &format!("sustained_create_{threads}t_bound_{bound_name}"),
        contender,
        &[
            ("secs", secs as f64),
            ("creates_per_s", rate),
            ("p50_us", pct(0.50)),
            ("p99_us", pct(0.99)),
            ("max_us", max),
            ("final_flush_ms", flush_ms),
        ],
    );
}

/// Bare sled, one thread: a random 32-byte key with a record of `len`
/// bytes, and its expiry entry, per create; flushed every 1000 creates as
/// the engine's backlog bound does.
fn floor(transactional: bool, len: usize, secs: u64) {
    use sled::Transactional as _;
    let (_dir, db, sessions, expiry) = contenders::bare_sled();
    let value = vec![0x5a_u8; len];
    let mut at = contenders::T0;
    let mut n = 0u64;
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    while Instant::now() < deadline {
        let batch: Vec<([u8; 32], [u8; 40])> = (0..1000)
            .map(|_| {
                let id = *sessiondb::SessionId::generate().expect("id").as_bytes();
                at += 1;
                let mut key = [0u8; 40];
                key[..8].copy_from_slice(&at.to_be_bytes());
                key[8..].copy_from_slice(&id);
                (id, key)
            })
            .collect();
        let t = Instant::now();
        if transactional {
            (&sessions, &expiry)
                .transaction(|(s, e)| {
                    for (id, key) in &batch {
                        if s.get(id)?.is_none() {
                            s.insert(&id[..], &value[..])?;
                            e.insert(&key[..], &[][..])?;
                        }
                    }
                    Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
                })
                .expect("transaction");
        } else {
            for (id, key) in &batch {
                sessions.insert(&id[..], &value[..]).expect("insert");
                expiry.insert(&key[..], &[][..]).expect("insert");
            }
        }
        db.flush().expect("flush");
        slowest = slowest.max(t.elapsed());
        n += batch.len() as u64;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let name = if transactional {
        "floor_sled_transactions"
    } else {
        "floor_sled_plain_inserts"
    };
    let slowest_ms = slowest.as_secs_f64() * 1000.0;
    println!(
        "| {name} | {len}-byte records | {n} | {rate:.0} | | | slowest 1000: {slowest_ms:.1} ms | |"
    );
    contenders::emit(
        "sustained",
        name,
        "sled",
        &[
            ("secs", secs as f64),
            ("creates_per_s", rate),
            ("slowest_batch_ms", slowest_ms),
        ],
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = contenders::secs(20);
    println!("sustained relaxed creates of ~200-byte sessions, {secs} s per run");
    println!(
        "| engine | threads | backlog bound | creates | per s | p50 µs | p99 µs | max µs | final flush ms |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|");
    run(1, Some(1000), secs, false);
    run(8, Some(1000), secs, false);
    run(1, None, secs, false);
    run(1, Some(1000), secs, true);
    let len = contenders::record_len();
    floor(true, len, secs);
    floor(false, len, secs);
}
