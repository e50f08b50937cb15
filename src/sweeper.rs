//! The sweeper: one named background thread per engine that deletes
//! expired sessions.
//!
//! It is cleanup, not correctness: readers re-check expiry, so an expired
//! session is gone to them before the sweeper reaches it. Each pass reads
//! the `expiry` index up to now in batches and deletes each session in its
//! own small transaction after re-reading it there (a request may have
//! touched it since), so readers never wait for a whole pass.
//!
//! The module knows the backend and nothing above it: the engine hands the
//! thread the pass to run, and reads the counters the sweeper keeps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded, select, tick};

use crate::backend::Backend;
use crate::error::{Error, Result};

/// What the sweeper has done since the engine opened.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Sessions deleted.
    pub swept: AtomicU64,
    /// Passes completed.
    pub passes: AtomicU64,
    /// Passes that failed.
    pub errors: AtomicU64,
    /// When the last pass finished, as of its `now` (0: none yet).
    pub last_pass_ms: AtomicU64,
}

/// The running thread and the channel that stops it.
#[derive(Debug)]
pub(crate) struct Sweeper {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

impl Sweeper {
    /// Starts the thread: it runs `pass` every `every` (the pass counts
    /// its own failures).
    pub fn spawn(
        every: Duration,
        mut pass: impl FnMut() -> Result<u64> + Send + 'static,
    ) -> Result<Self> {
        let (stop, stopped) = bounded::<()>(1);
        let (started, is_started) = bounded::<()>(1);
        let ticks = tick(every);
        let handle = std::thread::Builder::new()
            // 15 bytes: Linux shows at most that much of a thread name in ps and top.
            .name("sessiondb-sweep".into())
            .spawn(move || {
                // The thread's name is set by now: tell `spawn` it is running.
                let _ = started.send(());
                loop {
                    select! {
                        // A failed pass is counted by the pass itself.
                        recv(ticks) -> _ => {
                            let _ = pass();
                        }
                        // A message or a dropped sender: either way, stop.
                        recv(stopped) -> _ => break,
                    }
                }
            })
            .map_err(|source| Error::Thread {
                name: "sessiondb-sweep",
                source,
            })?;
        // Either the thread said it runs, or it is gone (sender dropped).
        let _ = is_started.recv();
        Ok(Self { stop, handle })
    }

    /// Stops the thread and waits for it; a pass in progress finishes its
    /// current session first.
    pub fn stop(self) {
        let _ = self.stop.send(());
        // A panicked sweeper has nothing left to clean up.
        let _ = self.handle.join();
    }
}

/// One pass: deletes every session expired as of `now`, `batch` at a time,
/// calling `after_delete` after each batch that deleted anything (the
/// engine's write bookkeeping); then forgets revocations past their time.
/// Returns how many sessions it deleted.
pub(crate) fn pass(
    backend: &dyn Backend,
    now: u64,
    batch: usize,
    counters: &Counters,
    mut after_delete: impl FnMut() -> Result<()>,
) -> Result<u64> {
    let mut deleted = 0u64;
    let mut last = Vec::new();
    loop {
        let ids = backend.expired(now, batch)?;
        // The same batch again: it holds only entries that re-reading does
        // not change (stale ones, which `check` reports).
        if ids.is_empty() || ids == last {
            break;
        }
        let n = backend.delete_expired(&ids, now)?;
        deleted += n;
        if n > 0 {
            after_delete()?;
        }
        // A short batch is the last. A full one that deleted nothing may
        // have re-filed lagging entries of live sessions: look again.
        if ids.len() < batch {
            break;
        }
        last = ids;
    }
    while backend.forget_revocations(now, batch)? >= batch as u64 {}
    counters.swept.fetch_add(deleted, Ordering::Relaxed);
    counters.passes.fetch_add(1, Ordering::Relaxed);
    counters.last_pass_ms.store(now, Ordering::Relaxed);
    Ok(deleted)
}
