//! Kill -9 in the middle of writes: the test re-runs its own binary as a
//! child that writes from several threads and prints every operation before
//! (`B`) and after (`A`) the engine acknowledged it; the parent SIGKILLs it at
//! a random moment, reopens the store and checks:
//!
//! - both modes: the store opens, and `check()` finds every invariant true;
//! - strict mode: every acknowledged state is there (or the thread's one
//!   in-flight operation replaced it), and nothing acknowledged as destroyed
//!   has come back;
//! - relaxed mode: every revocation acknowledged holds, with all its thread
//!   wrote before it.
//!
//! The child and the check are `tests/harness/`, shared with the power-cut
//! test.
//!
//! Quick setting (in `cargo test`): 50 kills. Long setting:
//! `SESSIONDB_CRASH_KILLS=2000 cargo test --release --test crash_kill9_keeps_acknowledged_writes -- --nocapture`.

mod common;
mod harness;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use common::Rng;
use harness::{Mix, Required};
use sessiondb::{Engine, ManualClock};

#[test]
#[ignore = "helper: run as a child process by kill9_loop"]
fn crash_child() {
    harness::child_main();
}

/// One kill: returns (acknowledged operations, whether the child was still
/// running when killed, the operations in flight at the kill).
fn one_kill(seed: u64, strict: bool) -> (usize, bool, Vec<String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rng = Rng(seed);
    let mut child = harness::spawn_child("crash_child", dir.path(), strict, seed, Mix::Full);
    let kill_after = rng.below(400);
    // One kill in three waits for a sweep to begin and lands in it: sweeps
    // are rare and quick, so random moments alone would seldom catch one.
    let aim_at_sweep = rng.below(3) == 0;
    while child.read() {
        let acks = child.acks;
        let sweep_begins = child
            .lines
            .last()
            .is_some_and(|(_, l)| l.starts_with("B 0 sweep"));
        let done = match aim_at_sweep {
            true => (sweep_begins && acks >= kill_after / 4) || acks >= 20 * kill_after.max(100),
            false => acks >= kill_after,
        };
        if done {
            break;
        }
    }
    let (running, _) = child.kill();

    let clock = ManualClock::new(common::T0);
    let engine = Engine::open(dir.path(), harness::config(&clock, strict))
        .unwrap_or_else(|e| panic!("seed {seed}: reopen after kill: {e}"));
    // A kill is an unclean shutdown: open checks the store and reports.
    let recovery = engine
        .recovery()
        .unwrap_or_else(|| panic!("seed {seed}: kill not detected"));
    // A kill may cut a write's ordered steps short: that leaves stale
    // index entries (which open removed), never a session without its
    // entries, never a damaged record.
    assert!(
        recovery.found.iter().all(|v| v.is_stale_entry()),
        "seed {seed} strict={strict}: at open: {recovery:#?}"
    );
    STALE_ENTRIES.fetch_add(recovery.found.len() as u64, Ordering::Relaxed);
    let violations = engine.admin().check().expect("check");
    assert!(
        violations.is_empty(),
        "seed {seed} strict={strict}: {violations:#?}"
    );
    let required = match strict {
        true => Required::AllAcknowledged,
        // The page cache survives a kill, but the write-behind queue does
        // not: only what a revocation flushed is certain.
        false => Required::Relaxed(None),
    };
    if let Err(e) = harness::verify(&engine, &child.lines, required) {
        panic!("seed {seed} strict={strict}: {e}");
    }
    (child.acked(), running, child.in_flight())
}

/// Stale index entries the opens after a kill found (and removed).
static STALE_ENTRIES: AtomicU64 = AtomicU64::new(0);

#[test]
fn kill9_loop() {
    let kills: u64 = std::env::var("SESSIONDB_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let base = harness::base_seed();
    let mut total_acks = 0;
    let mut killed_running = 0;
    let mut during: BTreeMap<String, u64> = BTreeMap::new();
    for k in 0..kills {
        let seed = base.wrapping_add(k);
        let strict = k % 2 == 0;
        let (acks, running, flying) = one_kill(seed, strict);
        total_acks += acks;
        killed_running += u64::from(running);
        let mode = if strict { "strict" } else { "relaxed" };
        for kind in flying {
            *during.entry(format!("{kind}/{mode}")).or_default() += 1;
        }
    }
    eprintln!(
        "kill9_loop: {kills} kills (half strict) from seed {base}, {total_acks} acknowledged \
         operations, {killed_running} kills while the child ran"
    );
    eprintln!("kill9_loop: kills that caught an operation in flight, by kind/mode: {during:?}");
    eprintln!(
        "kill9_loop: stale index entries found and removed at open: {}",
        STALE_ENTRIES.load(Ordering::Relaxed)
    );
    assert_eq!(
        killed_running, kills,
        "every kill must land while the child writes"
    );
}
