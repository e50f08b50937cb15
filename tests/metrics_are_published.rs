//! The engine's counters, as `Engine::metrics` reads them and as the
//! `metrics` facade publishes them (feature `metrics`): one scenario with
//! a known count of each event, checked on both sides. Its own test
//! binary, because the facade's recorder is global.
#![cfg(feature = "metrics")]

mod common;

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use sessiondb::{Durability, Engine, Error, ManualClock};

/// What the recorder holds: taking it resets counters, so once.
type Published = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// The value published under `name` (with `outcome` as its label, if
/// given): counters and gauges as numbers, histograms as their count.
fn published(all: &Published, name: &str, outcome: Option<&str>) -> Option<f64> {
    all.iter()
        .find(|(k, _, _, _)| {
            let key = k.key();
            key.name() == name
                && outcome
                    .is_none_or(|o| key.labels().any(|l| l.key() == "outcome" && l.value() == o))
        })
        .map(|(_, _, _, v)| match v {
            DebugValue::Counter(n) => *n as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(h) => h.len() as f64,
        })
}

#[test]
fn every_counted_event_is_published_and_read_back() {
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");

    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(common::T0);
    let engine = Engine::open(
        dir.path(),
        common::config(&clock).durability(Durability::Strict),
    )
    .expect("open");
    // Published from the start, before any event.
    let start: Published = snap.snapshot().into_vec();
    assert_eq!(published(&start, "sessiondb_poisoned", None), Some(0.0));
    assert_eq!(
        published(&start, "sessiondb_write_queue_depth", None),
        Some(0.0)
    );

    // Three sessions stored (two by save, one by login), one saved again.
    let mut a = engine.create().expect("create");
    a.insert("n", &1u8).expect("insert");
    engine.save(&mut a).expect("save");
    let mut b = engine.create().expect("create");
    b.insert("n", &1u8).expect("insert");
    engine.save(&mut b).expect("save");
    let mut c = engine.create().expect("create");
    c.insert("cart", &1u8).expect("insert");
    engine.login(&mut c, "carol").expect("login");
    a.insert("n", &2u8).expect("insert");
    engine.save(&mut a).expect("save again");

    // A stale copy of `a` conflicts.
    let cookie = |s: &sessiondb::Session| {
        engine
            .set_cookie(s)
            .split(';')
            .next()
            .expect("pair")
            .to_owned()
    };
    let mut stale = engine
        .load([cookie(&a).as_bytes()])
        .expect("load")
        .expect("hit");
    let mut fresh = engine
        .load([cookie(&a).as_bytes()])
        .expect("load")
        .expect("hit");
    fresh.insert("n", &3u8).expect("insert");
    engine.save(&mut fresh).expect("save");
    stale.insert("n", &4u8).expect("insert");
    assert!(matches!(
        engine.save(&mut stale),
        Err(Error::Conflict { .. })
    ));

    // Destroy `b`: its cookie then misses. A forged cookie is counted.
    let b_cookie = cookie(&b);
    assert!(engine.destroy(&b).expect("destroy"));
    assert!(engine.load([b_cookie.as_bytes()]).expect("load").is_none());
    let mut forged = b_cookie.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    assert!(engine.load([&forged[..]]).expect("load").is_none());

    // Expire everything; one sweep deletes the two left.
    clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(engine.admin().sweep_now().expect("sweep"), 2);
    // The sweep's deletes do not wait for the disk: let the queue empty.
    engine.flush().expect("flush");

    let m = engine.metrics();
    assert_eq!((m.creates, m.saves), (3, 2), "{m:?}");
    assert_eq!(
        (m.loads_hit, m.loads_miss, m.loads_forged),
        (2, 1, 1),
        "{m:?}"
    );
    assert_eq!(m.save_conflicts, 1, "{m:?}");
    assert_eq!(m.destroys, 1, "{m:?}");
    assert_eq!((m.sweeps, m.swept, m.sweep_errors), (1, 2, 0), "{m:?}");
    assert_eq!(m.last_sweep_at, Some(common::T0 + 24 * 3600 * 1000));
    assert!(m.commit_batches >= 1 && m.commit_writes >= m.commit_batches);
    assert!(m.flushes >= 1, "strict mode waits for flushes: {m:?}");
    assert!(!m.poisoned);
    assert_eq!(m.write_queue_depth, 0);

    let all: Published = snap.snapshot().into_vec();
    let p = |name, outcome| published(&all, name, outcome);
    assert_eq!(p("sessiondb_creates_total", None), Some(3.0));
    assert_eq!(p("sessiondb_saves_total", None), Some(2.0));
    assert_eq!(p("sessiondb_loads_total", Some("hit")), Some(2.0));
    assert_eq!(p("sessiondb_loads_total", Some("miss")), Some(1.0));
    assert_eq!(p("sessiondb_loads_total", Some("forged")), Some(1.0));
    assert_eq!(p("sessiondb_save_conflicts_total", None), Some(1.0));
    assert_eq!(p("sessiondb_destroys_total", None), Some(1.0));
    assert_eq!(p("sessiondb_sweeps_total", None), Some(1.0));
    assert_eq!(p("sessiondb_swept_total", None), Some(2.0));
    assert_eq!(
        p("sessiondb_commit_batches_total", None),
        Some(m.commit_batches as f64)
    );
    assert_eq!(
        p("sessiondb_commit_batch_size", None),
        Some(m.commit_batches as f64),
        "one sample per batch"
    );
    assert_eq!(
        p("sessiondb_commit_seconds", None),
        Some(m.commit_batches as f64)
    );
    assert_eq!(p("sessiondb_flushes_total", None), Some(m.flushes as f64));
    assert_eq!(p("sessiondb_flush_seconds", None), Some(m.flushes as f64));
    assert_eq!(
        p("sessiondb_cache_hits_total", None).unwrap_or(0.0)
            + p("sessiondb_cache_misses_total", None).unwrap_or(0.0),
        (m.cache_hits + m.cache_misses) as f64
    );
    assert_eq!(p("sessiondb_write_queue_depth", None), Some(0.0));
    assert_eq!(p("sessiondb_poisoned", None), Some(0.0));
    engine.close().expect("close");
}
