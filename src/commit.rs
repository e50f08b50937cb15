//! Group commit: writers that need a flush share one.
//!
//! Each completed write takes a sequence number. A writer that needs its
//! write durable waits until the durable mark passes its number; if no flush
//! is running it runs one itself, covering every write numbered so far. So
//! with N writers waiting, one flush serves all of them, and throughput grows
//! with concurrency instead of staying at one fsync per write.
//!
//! A failed flush leaves the store's state on disk unknown, so the commit
//! log poisons itself: every later write is refused (fjall's rule).

use std::sync::{Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};

#[derive(Debug, Default)]
struct State {
    /// Writes completed (the last sequence number handed out).
    written: u64,
    /// Every write numbered up to here is durable.
    durable: u64,
    flushing: bool,
    failed: bool,
}

#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    flushed: Condvar,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain counters, valid whatever a panicking holder did.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses writes once a flush has failed.
    pub fn check_writable(&self) -> Result<()> {
        if self.lock().failed {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// Records a completed write; returns its sequence number and how many
    /// writes are not yet known durable.
    pub fn note_write(&self) -> (u64, u64) {
        let mut st = self.lock();
        st.written += 1;
        (st.written, st.written - st.durable)
    }

    /// Returns once write `seq` is durable, running the flush if nobody is.
    pub fn wait_durable(&self, seq: u64, mut flush: impl FnMut() -> Result<()>) -> Result<()> {
        let mut st = self.lock();
        loop {
            if st.failed {
                return Err(Error::Poisoned);
            }
            if st.durable >= seq {
                return Ok(());
            }
            if st.flushing {
                st = self.flushed.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.flushing = true;
            let target = st.written;
            drop(st);
            let result = flush();
            st = self.lock();
            st.flushing = false;
            match result {
                Ok(()) => st.durable = st.durable.max(target),
                Err(e) => {
                    st.failed = true;
                    self.flushed.notify_all();
                    return Err(e);
                }
            }
            self.flushed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn concurrent_writers_share_flushes() {
        let gc = Arc::new(GroupCommit::default());
        let flushes = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (gc, flushes) = (gc.clone(), flushes.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let (seq, _) = gc.note_write();
                        gc.wait_durable(seq, || {
                            flushes.fetch_add(1, Ordering::SeqCst);
                            std::thread::yield_now();
                            Ok(())
                        })
                        .expect("no failure");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let st = gc.lock();
        assert_eq!(st.written, 800);
        assert_eq!(st.durable, 800);
        assert!(flushes.load(Ordering::SeqCst) <= 800);
    }

    #[test]
    fn a_failed_flush_poisons() {
        let gc = GroupCommit::default();
        let (seq, _) = gc.note_write();
        let err = gc.wait_durable(seq, || Err(Error::Storage("disk on fire".into())));
        assert!(matches!(err, Err(Error::Storage(_))));
        assert!(matches!(gc.check_writable(), Err(Error::Poisoned)));
        let (seq, _) = gc.note_write();
        assert!(matches!(
            gc.wait_durable(seq, || Ok(())),
            Err(Error::Poisoned)
        ));
    }
}
