//! `sessiondb stats`: live sessions, users, expired awaiting the sweep,
//! bytes on disk, formats; on a live store, the engine's counters too.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;
use sessiondb::{FORMAT_VERSION, Metrics};

use crate::fail::Outcome;
use crate::output::{print_json, printable, time};
use crate::store::Store;

pub(crate) fn stats(store: &Store, dir: &Path, as_json: bool) -> Outcome {
    let (s, metrics) = store.stats()?;
    let marker = std::fs::read_to_string(dir.join("SESSIONDB")).unwrap_or_default();
    let store_format = marker
        .lines()
        .find_map(|l| l.strip_prefix("format "))
        .unwrap_or("?")
        .to_owned();
    if as_json {
        let mut v = json!({
            "live_sessions": s.live_sessions,
            "users": s.users,
            "expired_pending": s.expired_pending,
            "bytes_on_disk": s.bytes_on_disk,
            "store_format": store_format,
            "record_format": FORMAT_VERSION,
        });
        if let Some(m) = &metrics {
            v["metrics"] = serde_json::to_value(m).map_err(std::io::Error::from)?;
        }
        print_json(&v)?;
    } else {
        println!("live sessions:     {}", s.live_sessions);
        println!("users:             {}", s.users);
        println!("expired, unswept:  {}", s.expired_pending);
        println!("bytes on disk:     {}", s.bytes_on_disk);
        println!(
            "format:            store {}, record {FORMAT_VERSION}",
            printable(&store_format)
        );
        if let Some(m) = &metrics {
            print_metrics(m);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `part / whole`, or 0.
pub(crate) fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The running engine's counters, as `stats` shows them on a live store.
fn print_metrics(m: &Metrics) {
    println!("since the service started, {} s ago:", m.uptime_ms / 1000);
    println!(
        "  loads:           {} hit, {} miss; {} forged cookies",
        m.loads_hit, m.loads_miss, m.loads_forged
    );
    println!(
        "  writes:          {} created, {} saved, {} conflicts, {} destroyed",
        m.creates, m.saves, m.save_conflicts, m.destroys
    );
    println!(
        "  sweeps:          {} passes, {} swept, {} failed, last {}",
        m.sweeps,
        m.swept,
        m.sweep_errors,
        m.last_sweep_at.map_or_else(|| "never".to_owned(), time)
    );
    println!(
        "  commits:         {} batches, {:.1} writes each, {:.0} µs each",
        m.commit_batches,
        ratio(m.commit_writes, m.commit_batches),
        ratio(m.commit_micros, m.commit_batches)
    );
    println!(
        "  flushes:         {}, {:.0} µs each",
        m.flushes,
        ratio(m.flush_micros, m.flushes)
    );
    println!("  write queue:     {}", m.write_queue_depth);
    println!(
        "  record cache:    {:.1}% of loads ({} hits, {} reads of sled)",
        100.0 * ratio(m.cache_hits, m.cache_hits + m.cache_misses),
        m.cache_hits,
        m.cache_misses
    );
    println!(
        "  poisoned:        {}",
        if m.poisoned {
            "YES: a write could not be made durable; every write is refused until restart"
        } else {
            "no"
        }
    );
}
