//! What the engine counts for operators, and where it publishes it.
//!
//! The engine keeps its own counters (plain atomics, a few nanoseconds
//! each), read back whole by [`Engine::metrics`](crate::Engine::metrics),
//! by `sessiondb stats` and `sessiondb watch` on a live store (through the
//! [control socket](crate::control)). With the feature `metrics`, each
//! event is also published through the [`metrics`](https://docs.rs/metrics)
//! crate's facade, so any exporter an application installs sees it; names
//! start with `sessiondb_`:
//!
//! | name | kind | what |
//! |---|---|---|
//! | `sessiondb_loads_total{outcome}` | counter | `hit`: a load found a live session; `miss`: a load found none (gone, expired); `forged`: a request carried a cookie of ours that does not verify, or several naming different sessions (counted when the cookie is read, load or not) |
//! | `sessiondb_creates_total` | counter | new sessions stored (their first save, a login, an import) |
//! | `sessiondb_saves_total` | counter | saves of stored sessions |
//! | `sessiondb_save_conflicts_total` | counter | writes that met a concurrent write of the same session (version conflicts; `update` and `save_merging` retry them, `save` returns them) |
//! | `sessiondb_destroys_total` | counter | sessions destroyed: logouts, revocations, log out everywhere, the per-user limit |
//! | `sessiondb_sweeps_total` | counter | sweeper passes |
//! | `sessiondb_swept_total` | counter | expired sessions the sweeper deleted |
//! | `sessiondb_sweep_errors_total` | counter | sweeper passes that failed |
//! | `sessiondb_commit_batches_total` | counter | transactions the sled store's writer committed |
//! | `sessiondb_commit_batch_size` | histogram | writes per committed transaction |
//! | `sessiondb_commit_seconds` | histogram | time per committed transaction |
//! | `sessiondb_flushes_total` | counter | flushes to stable storage the engine waited for |
//! | `sessiondb_flush_seconds` | histogram | time per such flush (sled's log written and synced) |
//! | `sessiondb_write_queue_depth` | gauge | writes answered but not yet committed to sled |
//! | `sessiondb_cache_hits_total`, `sessiondb_cache_misses_total` | counter | reads of a session's record (by requests, and by the engine's own checks and the operator's tool) that the record cache in front of sled answered, and that read sled |
//! | `sessiondb_poisoned` | gauge | 1 once a write could not be made durable (every write is refused until restart), else 0 |
//!
//! The names carry no label per engine: they assume one engine per
//! process (a second engine adds to the same counters, and its open sets
//! the gauges back to 0).
//!
//! A handle of the `metrics` facade binds to the recorder installed when it
//! is made, so the engine makes them at each event, never caches them: an
//! exporter installed after [`Engine::open`](crate::Engine::open) still
//! sees everything from its installation on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The engine's counters, shared by the engine, its store's writer and
/// its sweeper.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    loads_hit: AtomicU64,
    loads_miss: AtomicU64,
    loads_forged: AtomicU64,
    creates: AtomicU64,
    saves: AtomicU64,
    save_conflicts: AtomicU64,
    destroys: AtomicU64,
    commit_batches: AtomicU64,
    commit_writes: AtomicU64,
    commit_micros: AtomicU64,
    flushes: AtomicU64,
    flush_micros: AtomicU64,
    queue_depth: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
}

/// How a load went, for [`Meter::load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Load {
    Hit,
    Miss,
    Forged,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Publishes through the `metrics` facade, when the feature is on.
macro_rules! publish {
    ($($body:tt)*) => {
        #[cfg(feature = "metrics")]
        {
            $($body)*
        }
    };
}

/// Describes every metric (units and help texts, shown as `# HELP` by
/// exporters that print them). Safe to call more than once; the engine
/// calls it at open.
pub fn describe() {
    publish!({
        use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
        describe_counter!(
            "sessiondb_loads_total",
            Unit::Count,
            "Session loads by outcome: hit, miss; forged: cookies that do not verify"
        );
        describe_counter!(
            "sessiondb_creates_total",
            Unit::Count,
            "New sessions stored (a first save, a login)"
        );
        describe_counter!(
            "sessiondb_saves_total",
            Unit::Count,
            "Saves of stored sessions"
        );
        describe_counter!(
            "sessiondb_save_conflicts_total",
            Unit::Count,
            "Writes that met a concurrent write of the same session"
        );
        describe_counter!(
            "sessiondb_destroys_total",
            Unit::Count,
            "Sessions destroyed: logouts, revocations, log out everywhere"
        );
        describe_counter!("sessiondb_sweeps_total", Unit::Count, "Sweeper passes");
        describe_counter!(
            "sessiondb_swept_total",
            Unit::Count,
            "Expired sessions the sweeper deleted"
        );
        describe_counter!(
            "sessiondb_sweep_errors_total",
            Unit::Count,
            "Sweeper passes that failed"
        );
        describe_counter!(
            "sessiondb_commit_batches_total",
            Unit::Count,
            "Transactions the sled store's writer committed"
        );
        describe_histogram!(
            "sessiondb_commit_batch_size",
            Unit::Count,
            "Writes per committed transaction"
        );
        describe_histogram!(
            "sessiondb_commit_seconds",
            Unit::Seconds,
            "Time per committed transaction"
        );
        describe_counter!(
            "sessiondb_flushes_total",
            Unit::Count,
            "Flushes to stable storage the engine waited for"
        );
        describe_histogram!(
            "sessiondb_flush_seconds",
            Unit::Seconds,
            "Time per flush to stable storage"
        );
        describe_gauge!(
            "sessiondb_write_queue_depth",
            Unit::Count,
            "Writes answered but not yet committed to sled"
        );
        describe_counter!(
            "sessiondb_cache_hits_total",
            Unit::Count,
            "Loads the record cache answered"
        );
        describe_counter!(
            "sessiondb_cache_misses_total",
            Unit::Count,
            "Loads that read sled"
        );
        describe_gauge!(
            "sessiondb_poisoned",
            Unit::Count,
            "1 once a write could not be made durable (writes refused until restart)"
        );
    });
}

impl Meter {
    /// A meter whose gauges are published at their starting values, so
    /// an exporter shows them before the first event.
    pub fn new() -> Self {
        describe();
        let meter = Self::default();
        meter.queued(0);
        meter.poisoned(false);
        meter
    }

    pub fn load(&self, outcome: Load) {
        let (counter, _label) = match outcome {
            Load::Hit => (&self.loads_hit, "hit"),
            Load::Miss => (&self.loads_miss, "miss"),
            Load::Forged => (&self.loads_forged, "forged"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        publish!(::metrics::counter!("sessiondb_loads_total", "outcome" => _label).increment(1));
    }

    /// A session stored for the first time (`new`), or again.
    pub fn saved(&self, new: bool) {
        if new {
            self.creates.fetch_add(1, Ordering::Relaxed);
            publish!(::metrics::counter!("sessiondb_creates_total").increment(1));
        } else {
            self.saves.fetch_add(1, Ordering::Relaxed);
            publish!(::metrics::counter!("sessiondb_saves_total").increment(1));
        }
    }

    pub fn conflict(&self) {
        self.save_conflicts.fetch_add(1, Ordering::Relaxed);
        publish!(::metrics::counter!("sessiondb_save_conflicts_total").increment(1));
    }

    pub fn destroyed(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.destroys.fetch_add(n, Ordering::Relaxed);
        publish!(::metrics::counter!("sessiondb_destroys_total").increment(n));
    }

    /// One sweeper pass: how many it deleted, or that it failed.
    pub fn swept(&self, _result: Result<u64, ()>) {
        publish!(match _result {
            Ok(n) => {
                ::metrics::counter!("sessiondb_sweeps_total").increment(1);
                ::metrics::counter!("sessiondb_swept_total").increment(n);
            }
            Err(()) => ::metrics::counter!("sessiondb_sweep_errors_total").increment(1),
        });
    }

    /// One transaction of `writes` writes committed in `took`; `queued`
    /// writes are still waiting after it.
    pub fn committed(&self, writes: usize, took: Duration, queued: u64) {
        self.commit_batches.fetch_add(1, Ordering::Relaxed);
        self.commit_writes
            .fetch_add(writes as u64, Ordering::Relaxed);
        self.commit_micros
            .fetch_add(micros(took), Ordering::Relaxed);
        self.queue_depth.store(queued, Ordering::Relaxed);
        publish!({
            ::metrics::counter!("sessiondb_commit_batches_total").increment(1);
            ::metrics::histogram!("sessiondb_commit_batch_size").record(writes as f64);
            ::metrics::histogram!("sessiondb_commit_seconds").record(took);
            ::metrics::gauge!("sessiondb_write_queue_depth").set(queued as f64);
        });
    }

    /// Writes answered but not yet committed, as of now.
    pub fn queued(&self, queued: u64) {
        self.queue_depth.store(queued, Ordering::Relaxed);
        publish!(::metrics::gauge!("sessiondb_write_queue_depth").set(queued as f64));
    }

    pub fn flushed(&self, took: Duration) {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.flush_micros.fetch_add(micros(took), Ordering::Relaxed);
        publish!({
            ::metrics::counter!("sessiondb_flushes_total").increment(1);
            ::metrics::histogram!("sessiondb_flush_seconds").record(took);
        });
    }

    /// A load the record cache answered (`hit`), or one that read sled.
    pub fn cache(&self, hit: bool) {
        if hit {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            publish!(::metrics::counter!("sessiondb_cache_hits_total").increment(1));
        } else {
            self.cache_misses.fetch_add(1, Ordering::Relaxed);
            publish!(::metrics::counter!("sessiondb_cache_misses_total").increment(1));
        }
    }

    pub fn poisoned(&self, _on: bool) {
        publish!(::metrics::gauge!("sessiondb_poisoned").set(if _on { 1.0 } else { 0.0 }));
    }

    /// Everything counted so far; the sweeper's figures and the poisoned
    /// state come from their owners.
    pub fn snapshot(&self) -> Metrics {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Metrics {
            loads_hit: get(&self.loads_hit),
            loads_miss: get(&self.loads_miss),
            loads_forged: get(&self.loads_forged),
            creates: get(&self.creates),
            saves: get(&self.saves),
            save_conflicts: get(&self.save_conflicts),
            destroys: get(&self.destroys),
            commit_batches: get(&self.commit_batches),
            commit_writes: get(&self.commit_writes),
            commit_micros: get(&self.commit_micros),
            flushes: get(&self.flushes),
            flush_micros: get(&self.flush_micros),
            write_queue_depth: get(&self.queue_depth),
            cache_hits: get(&self.cache_hits),
            cache_misses: get(&self.cache_misses),
            ..Metrics::default()
        }
    }
}

/// The engine's counters since it opened: see [`Engine::metrics`]. Counts
/// only grow; rates are the difference of two snapshots over their
/// `uptime_ms`.
///
/// [`Engine::metrics`]: crate::Engine::metrics
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Metrics {
    /// Milliseconds since the engine opened.
    pub uptime_ms: u64,
    /// Loads that found a live session.
    pub loads_hit: u64,
    /// Loads with a valid cookie whose session is gone or expired.
    pub loads_miss: u64,
    /// Requests with a cookie of ours that does not verify, or with
    /// cookies naming different sessions.
    pub loads_forged: u64,
    /// Sessions stored for the first time (a first save, a login, an
    /// import).
    pub creates: u64,
    /// Saves of stored sessions.
    pub saves: u64,
    /// Writes that met a concurrent write of the same session.
    pub save_conflicts: u64,
    /// Sessions destroyed (logout, revoke, log out everywhere, the
    /// per-user limit).
    pub destroys: u64,
    /// Sweeper passes completed.
    pub sweeps: u64,
    /// Expired sessions the sweeper deleted.
    pub swept: u64,
    /// Sweeper passes that failed.
    pub sweep_errors: u64,
    /// When the last sweeper pass finished, ms since the Unix epoch (by
    /// the engine's clock); `None` before the first.
    pub last_sweep_at: Option<u64>,
    /// Transactions the sled store's writer committed.
    pub commit_batches: u64,
    /// Writes in those transactions.
    pub commit_writes: u64,
    /// Time spent committing them, in microseconds.
    pub commit_micros: u64,
    /// Flushes to stable storage the engine waited for.
    pub flushes: u64,
    /// Time spent in them, in microseconds.
    pub flush_micros: u64,
    /// Writes answered but not yet committed to sled.
    pub write_queue_depth: u64,
    /// Reads of a session's record that the record cache in front of
    /// sled answered (requests' loads, and the engine's own reads).
    pub cache_hits: u64,
    /// Reads of a session's record that read sled.
    pub cache_misses: u64,
    /// A write could not be made durable: every write is refused until the
    /// service restarts (and the next open checks the store).
    pub poisoned: bool,
}
