//! `sessiondb watch`: a running service's main figures, every second.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sessiondb::Metrics;

use crate::commands::stats::ratio;
use crate::fail::{Fail, Outcome};
use crate::output::{time, write_json};
use crate::store::Store;

const TICK: Duration = Duration::from_secs(1);

/// Counting sessions and users walks the store's indexes (seconds on a
/// store of millions), so it is redone at most every tick and never more
/// than a tenth of the time: a big store's counts refresh less often.
const STATS_SHARE: u32 = 10;

pub(crate) fn watch(store: &Store, as_json: bool) -> Outcome {
    if !matches!(store, Store::Live(_)) {
        return Err(Fail(
            "error: nothing to watch: no service holds the store (watch shows a running \
             service's figures; `sessiondb stats` reads a stopped store)"
                .into(),
            2,
        ));
    }
    let mut out = std::io::stdout().lock();
    let redraw = !as_json && std::io::stdout().is_terminal();
    let mut prev: Option<(Instant, Metrics)> = None;
    let mut counts = None;
    let mut counts_due = Instant::now();
    loop {
        let tick = Instant::now();
        let m = if tick >= counts_due {
            let (s, m) = store.stats()?;
            let cost = tick.elapsed();
            counts = Some(s);
            counts_due = tick + (cost * STATS_SHARE).max(TICK);
            m.unwrap_or_default()
        } else {
            store.metrics()?.unwrap_or_default()
        };
        let rates = prev
            .as_ref()
            .map(|(at, p)| Rates::between(p, &m, tick - *at));
        let (live, users) = counts
            .as_ref()
            .map_or((None, None), |s| (Some(s.live_sessions), Some(s.users)));
        if as_json {
            write_json(&mut out, &line(&m, live, users, rates.as_ref()))?;
        } else {
            if redraw {
                // Home, and clear the screen.
                write!(out, "\x1b[H\x1b[2J")?;
            }
            screen(&mut out, &m, live, users, rates.as_ref())?;
            if !redraw {
                writeln!(out)?;
            }
        }
        out.flush()?;
        prev = Some((tick, m));
        std::thread::sleep(TICK.saturating_sub(tick.elapsed()));
    }
    #[allow(unreachable_code)]
    Ok(ExitCode::SUCCESS)
}

/// Per-second rates between two snapshots.
struct Rates {
    loads: f64,
    hits: f64,
    misses: f64,
    forged: f64,
    creates: f64,
    saves: f64,
    destroys: f64,
    commits: f64,
    swept: f64,
}

impl Rates {
    fn between(a: &Metrics, b: &Metrics, took: Duration) -> Self {
        let secs = took.as_secs_f64().max(1e-3);
        let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
        let loads = |m: &Metrics| m.loads_hit + m.loads_miss;
        Self {
            loads: per(loads(a), loads(b)),
            hits: per(a.loads_hit, b.loads_hit),
            misses: per(a.loads_miss, b.loads_miss),
            forged: per(a.loads_forged, b.loads_forged),
            creates: per(a.creates, b.creates),
            saves: per(a.saves, b.saves),
            destroys: per(a.destroys, b.destroys),
            commits: per(a.commit_batches, b.commit_batches),
            swept: per(a.swept, b.swept),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn line(m: &Metrics, live: Option<u64>, users: Option<u64>, r: Option<&Rates>) -> Value {
    let rate = |f: fn(&Rates) -> f64| r.map(|r| (f(r) * 10.0).round() / 10.0);
    json!({
        "at": time(now_ms()),
        "uptime_ms": m.uptime_ms,
        "live_sessions": live,
        "users": users,
        "loads_per_s": rate(|r| r.loads),
        "hits_per_s": rate(|r| r.hits),
        "misses_per_s": rate(|r| r.misses),
        "forged_per_s": rate(|r| r.forged),
        "creates_per_s": rate(|r| r.creates),
        "saves_per_s": rate(|r| r.saves),
        "destroys_per_s": rate(|r| r.destroys),
        "commits_per_s": rate(|r| r.commits),
        "swept_per_s": rate(|r| r.swept),
        "write_queue_depth": m.write_queue_depth,
        "cache_hit_rate": ratio(m.cache_hits, m.cache_hits + m.cache_misses),
        "sweeps": m.sweeps,
        "last_sweep_at": m.last_sweep_at.map(time),
        "poisoned": m.poisoned,
    })
}

fn screen(
    out: &mut impl std::io::Write,
    m: &Metrics,
    live: Option<u64>,
    users: Option<u64>,
    r: Option<&Rates>,
) -> std::io::Result<()> {
    let n = |v: Option<u64>| v.map_or_else(|| "…".to_owned(), |v| v.to_string());
    let f = |f: fn(&Rates) -> f64| r.map_or_else(|| "…".to_owned(), |r| format!("{:.1}", f(r)));
    writeln!(
        out,
        "sessiondb watch  {}  (up {} s; Ctrl-C to stop)",
        time(now_ms()),
        m.uptime_ms / 1000
    )?;
    writeln!(out, "sessions       {:>12}", n(live))?;
    writeln!(out, "users          {:>12}", n(users))?;
    writeln!(
        out,
        "loads/s        {:>12}   hit {} miss {} forged {}",
        f(|r| r.loads),
        f(|r| r.hits),
        f(|r| r.misses),
        f(|r| r.forged)
    )?;
    writeln!(
        out,
        "writes/s       {:>12}   created {} saved {} destroyed {}",
        f(|r| r.creates + r.saves),
        f(|r| r.creates),
        f(|r| r.saves),
        f(|r| r.destroys)
    )?;
    writeln!(out, "commits/s      {:>12}", f(|r| r.commits))?;
    writeln!(out, "write queue    {:>12}", m.write_queue_depth)?;
    writeln!(
        out,
        "cache hits     {:>11.1}%",
        100.0 * ratio(m.cache_hits, m.cache_hits + m.cache_misses)
    )?;
    writeln!(
        out,
        "last sweep     {:>12}   {} swept in all ({}/s now)",
        m.last_sweep_at.map_or_else(|| "never".to_owned(), time),
        m.swept,
        f(|r| r.swept)
    )?;
    if m.poisoned {
        writeln!(
            out,
            "POISONED: a write could not be made durable; every write is refused until restart"
        )?;
    }
    Ok(())
}
