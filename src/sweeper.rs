//! The sweeper: one named background thread per engine that deletes
//! expired sessions.
//!
//! It is cleanup, not correctness: readers re-check expiry, so an expired
//! session is gone to them before the sweeper reaches it. Each pass reads
//! the `expiry` index up to now in batches of `sweep_batch` and deletes each
//! session in its own small transaction after re-reading it there (a request
//! may have touched it since), so readers never wait for a whole pass.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded, select, tick};

use crate::engine::Inner;
use crate::error::{Error, Result};

/// The running thread and the channel that stops it.
#[derive(Debug)]
pub(crate) struct Sweeper {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

impl Sweeper {
    pub fn spawn(inner: Arc<Inner>, every: Duration) -> Result<Self> {
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
                        recv(ticks) -> _ => {
                            if pass(&inner).is_err() {
                                inner.sweep_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        // A message or a dropped sender: either way, stop.
                        recv(stopped) -> _ => break,
                    }
                }
            })
            .map_err(|e| Error::Io {
                path: "<sweeper thread>".into(),
                source: e,
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

/// One pass: deletes every session expired as of its start.
pub(crate) fn pass(inner: &Inner) -> Result<u64> {
    let now = inner.now();
    let batch = inner.s.sweep_batch;
    let mut deleted = 0u64;
    loop {
        let ids = inner.backend.expired(now, batch)?;
        let n = inner.backend.delete_expired(&ids, now)?;
        deleted += n;
        let progress = n > 0;
        if progress {
            inner.after_sweep_delete()?;
        }
        // A short batch is the last; a batch that deleted nothing holds only
        // entries `check` reports, which re-reading would not change.
        if ids.len() < batch || !progress {
            break;
        }
    }
    // Revocations past their time (see `Engine::import`), in batches too.
    while inner.backend.forget_revocations(now, batch)? >= batch as u64 {}
    inner.swept.fetch_add(deleted, Ordering::Relaxed);
    inner.sweep_passes.fetch_add(1, Ordering::Relaxed);
    Ok(deleted)
}
