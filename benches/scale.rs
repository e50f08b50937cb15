//! sessiondb on sled at scale (relaxed durability, default cache):
//!
//! - load and create latency (p50, p99) at 10k and 100k live sessions, and
//!   at 1M with `SESSIONDB_BENCH_SCALE=full`;
//! - with `full`: a sweep of 100k and of 1M expired sessions (its time, and
//!   the p50/p99 of two concurrent readers during it against idle);
//!   process RSS and bytes on disk per live session at 1M; reopen time of
//!   the 1M store and time to its first served load;
//! - the floor under these: bare sled, no engine, at the same sizes (random
//!   gets, and deleting every record with its expiry entry in transactions
//!   of 1000).
//!
//! `cargo bench -p sessiondb-bench --bench scale` (the `full` run takes about ten minutes).
//! Prints Markdown, and JSON lines to `$SESSIONDB_BENCH_OUT` when set.

#[path = "contenders/mod.rs"]
mod contenders;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sessiondb::{Config, Engine, ManualClock};

struct Out;

impl Out {
    fn emit(&mut self, workload: &str, fields: &[(&str, f64)]) {
        self.emit_as("sessiondb-sled-relaxed", workload, fields);
    }

    fn emit_as(&mut self, contender: &str, workload: &str, fields: &[(&str, f64)]) {
        let shown: Vec<String> = fields.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
        println!("  {workload} ({contender}): {}", shown.join(", "));
        contenders::emit("scale", workload, contender, fields);
    }
}

fn rss_bytes() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb * 1024.0)
}

/// Default settings but the bench's clock and no background sweeper;
/// `SESSIONDB_BENCH_CACHE_MB` overrides the cache, for exploring.
fn config(clock: &ManualClock) -> Config {
    let config = Config::new(contenders::ring())
        .clock(clock.clone())
        .sweeper(false);
    match std::env::var("SESSIONDB_BENCH_CACHE_MB")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(mb) => config.cache_capacity(mb << 20),
        None => config,
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// Creates `n` sessions from 8 threads; keeps every `keep_every`-th cookie.
fn populate(engine: &Arc<Engine>, n: usize, keep_every: usize) -> Vec<Vec<u8>> {
    let threads = 8;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                for i in (t..n).step_by(threads) {
                    let mut s = engine.create().expect("create");
                    for (k, v) in contenders::fields() {
                        s.insert(k, &v).expect("insert");
                    }
                    engine.save(&mut s).expect("save");
                    if i % keep_every == 0 {
                        let set = engine.set_cookie(&s);
                        kept.push(set.split(';').next().expect("pair").as_bytes().to_vec());
                    }
                }
                kept
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect()
}

/// Latencies in µs of `n` loads of random kept cookies.
fn load_latencies(engine: &Engine, cookies: &[Vec<u8>], n: usize, seed: u64) -> Vec<f64> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let c = &cookies[(x % cookies.len() as u64) as usize];
            let t = Instant::now();
            let s = engine.load([c.as_slice()]).expect("load");
            let us = t.elapsed().as_secs_f64() * 1e6;
            assert!(s.is_some(), "live session missing");
            us
        })
        .collect()
}

fn latency_at(out: &mut Out, n: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(contenders::T0);
    let engine = Arc::new(Engine::open(dir.path(), config(&clock)).expect("open"));
    let started = Instant::now();
    let cookies = populate(&engine, n, (n / 20_000).max(1));
    let fill_s = started.elapsed().as_secs_f64();
    engine.flush().expect("flush");
    let mut loads = load_latencies(&engine, &cookies, 50_000, 7);
    let mut creates: Vec<f64> = (0..5_000)
        .map(|_| {
            let t = Instant::now();
            let mut s = engine.create().expect("create");
            for (k, v) in contenders::fields() {
                s.insert(k, &v).expect("insert");
            }
            engine.save(&mut s).expect("save");
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    out.emit(
        &format!("scale_{n}"),
        &[
            ("sessions", n as f64),
            ("fill_per_s", n as f64 / fill_s),
            ("load_p50_us", pct(&mut loads, 0.50)),
            ("load_p99_us", pct(&mut loads, 0.99)),
            ("create_p50_us", pct(&mut creates, 0.50)),
            ("create_p99_us", pct(&mut creates, 0.99)),
        ],
    );
}

/// Two readers load live sessions all along; `n` expired sessions are
/// swept. Reader latencies before (idle) and during the sweep. `v1`: the
/// engine's first write path (`Config::write_path_v1`), for the
/// side-by-side.
fn sweep(out: &mut Out, n: usize, v1: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(contenders::T0);
    let config = config(&clock).write_path_v1(v1);
    let engine = Arc::new(Engine::open(dir.path(), config).expect("open"));
    populate(&engine, n, usize::MAX);
    // Past the absolute timeout (24 h): all of them expire.
    clock.advance(Duration::from_secs(25 * 3600));
    let live = populate(&engine, 10_000, 1);
    engine.flush().expect("flush");

    let sweeping = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let live = Arc::new(live);
    // `SESSIONDB_BENCH_READERS` sets how many readers (default 2).
    let n_readers: u64 = std::env::var("SESSIONDB_BENCH_READERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let readers: Vec<_> = (0..n_readers)
        .map(|r| {
            let (engine, live, sweeping, stop) =
                (engine.clone(), live.clone(), sweeping.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut idle, mut during) = (Vec::new(), Vec::new());
                let mut x = 0x1234_5678u64 + r;
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let c = &live[(x % live.len() as u64) as usize];
                    let in_sweep = sweeping.load(Ordering::Relaxed);
                    let t = Instant::now();
                    assert!(engine.load([c.as_slice()]).expect("load").is_some());
                    let us = t.elapsed().as_secs_f64() * 1e6;
                    if in_sweep && sweeping.load(Ordering::Relaxed) {
                        during.push(us);
                    } else if !in_sweep {
                        idle.push(us);
                    }
                }
                (idle, during)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    sweeping.store(true, Ordering::Relaxed);
    let t = Instant::now();
    let swept = engine.admin().sweep_now().expect("sweep");
    let sweep_s = t.elapsed().as_secs_f64();
    sweeping.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let (mut idle, mut during) = (Vec::new(), Vec::new());
    for h in readers {
        let (i, d) = h.join().expect("reader");
        idle.extend(i);
        during.extend(d);
    }
    assert_eq!(swept, n as u64, "the sweep deletes exactly the expired");
    let idle_p99 = pct(&mut idle, 0.99);
    let during_p99 = pct(&mut during, 0.99);
    let contender = match v1 {
        true => "sessiondb-sled-v1",
        false => "sessiondb-sled-relaxed",
    };
    out.emit_as(
        contender,
        &format!("sweep_{n}"),
        &[
            ("expired", n as f64),
            ("sweep_s", sweep_s),
            ("idle_p50_us", pct(&mut idle, 0.50)),
            ("idle_p99_us", idle_p99),
            ("during_p50_us", pct(&mut during, 0.50)),
            ("during_p99_us", during_p99),
            ("p99_ratio", during_p99 / idle_p99),
            ("idle_max_us", pct(&mut idle, 1.0)),
            ("during_max_us", pct(&mut during, 1.0)),
            ("loads_during", during.len() as f64),
        ],
    );
}

/// The floor under `latency_at` and `sweep`: bare sled with no engine in
/// front, the same cache, `n` records of the engine's size and their expiry
/// entries. Random gets of live ids (p50, p99), then deleting all `n` as a
/// sweep must: in transactions of 1000 over both trees, each re-reading the
/// record first. No readers run during the deletes.
fn floor(n: usize, len: usize) {
    use sled::Transactional as _;
    let (_dir, db, sessions, expiry) = contenders::bare_sled();
    let value = vec![0x5a_u8; len];
    let mut entries: Vec<([u8; 32], [u8; 40])> = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let id = *sessiondb::SessionId::generate().expect("id").as_bytes();
        let mut key = [0u8; 40];
        key[..8].copy_from_slice(&(contenders::T0 + i).to_be_bytes());
        key[8..].copy_from_slice(&id);
        entries.push((id, key));
    }
    for chunk in entries.chunks(1000) {
        let (mut s, mut e) = (sled::Batch::default(), sled::Batch::default());
        for (id, key) in chunk {
            s.insert(&id[..], &value[..]);
            e.insert(&key[..], &[][..]);
        }
        sessions.apply_batch(s).expect("fill");
        expiry.apply_batch(e).expect("fill");
    }
    db.flush().expect("flush");
    let mut x = 7u64;
    let mut loads: Vec<f64> = (0..50_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (id, _) = &entries[(x % n as u64) as usize];
            let t = Instant::now();
            let v = sessions.get(id).expect("get");
            let us = t.elapsed().as_secs_f64() * 1e6;
            assert!(v.is_some());
            us
        })
        .collect();
    let t = Instant::now();
    for chunk in entries.chunks(1000) {
        (&sessions, &expiry)
            .transaction(|(s, e)| {
                for (id, key) in chunk {
                    if s.get(id)?.is_some() {
                        s.remove(&id[..])?;
                        e.remove(&key[..])?;
                    }
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .expect("delete");
    }
    db.flush().expect("flush");
    let delete_s = t.elapsed().as_secs_f64();
    assert!(sessions.is_empty() && expiry.is_empty());
    contenders::emit(
        "scale",
        &format!("floor_{n}"),
        "sled",
        &[
            ("sessions", n as f64),
            ("load_p50_us", pct(&mut loads, 0.50)),
            ("load_p99_us", pct(&mut loads, 0.99)),
            ("delete_all_s", delete_s),
        ],
    );
    println!(
        "  bare sled at {n}: get p50 {:.1} µs, p99 {:.1} µs; deleting all {n}: {delete_s:.2} s",
        pct(&mut loads, 0.50),
        pct(&mut loads, 0.99)
    );
}

/// RSS and disk per live session at `n`; reopen and first load.
fn memory(out: &mut Out, n: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(contenders::T0);
    let before = rss_bytes();
    let engine = Arc::new(Engine::open(dir.path(), config(&clock)).expect("open"));
    let cookies = populate(&engine, n, 1000);
    engine.flush().expect("flush");
    let _ = load_latencies(&engine, &cookies, 10_000, 3);
    let rss = rss_bytes() - before;
    let disk = engine.admin().stats().expect("stats").bytes_on_disk as f64;
    let engine = Arc::into_inner(engine).expect("one owner");
    engine.close().expect("close");

    let t = Instant::now();
    let engine = Engine::open(dir.path(), config(&clock)).expect("reopen");
    let reopen_s = t.elapsed().as_secs_f64();
    let first = engine.load([cookies[0].as_slice()]).expect("load");
    let first_load_s = t.elapsed().as_secs_f64();
    assert!(first.is_some());
    out.emit(
        &format!("memory_{n}"),
        &[
            ("sessions", n as f64),
            ("rss_bytes_per_session", rss / n as f64),
            ("disk_bytes_per_session", disk / n as f64),
            ("reopen_s", reopen_s),
            ("first_load_s", first_load_s),
        ],
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let full = std::env::var("SESSIONDB_BENCH_SCALE").as_deref() == Ok("full");
    // `SESSIONDB_BENCH_ONLY=memory,latency,floor,sweep` runs a subset.
    let only = std::env::var("SESSIONDB_BENCH_ONLY").ok();
    let part = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|p| p == name))
    };
    let mut out = Out;
    println!(
        "scale (sessiondb on sled, relaxed){}",
        if full { ", full" } else { "" }
    );
    // Memory first, in a process that has not yet grown for other runs.
    if full && part("memory") {
        memory(&mut out, 1_000_000);
    }
    let mut sizes = vec![10_000, 100_000];
    if full {
        sizes.push(1_000_000);
    }
    if part("latency") {
        for &n in &sizes {
            latency_at(&mut out, n);
        }
    }
    if part("floor") {
        let len = contenders::record_len();
        for &n in &sizes {
            floor(n, len);
        }
    }
    if part("sweep") {
        // `SESSIONDB_BENCH_SWEEPS=100000,1000000` picks the sizes.
        let sizes: Vec<usize> = match std::env::var("SESSIONDB_BENCH_SWEEPS") {
            Ok(v) => v.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
            Err(_) if full => vec![100_000, 1_000_000],
            Err(_) => vec![10_000],
        };
        for n in sizes {
            sweep(&mut out, n, false);
            sweep(&mut out, n, true);
        }
    }
    if !full {
        println!("  (SESSIONDB_BENCH_SCALE=full adds 1M sessions, sweeps of 100k and 1M, memory)");
    }
}
