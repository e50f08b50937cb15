//! Group commit: writers that need a flush share one.
//!
//! Each completed write takes a sequence number. A writer that needs its
//! write durable waits until the durable mark passes its number; if no flush
//! is running it runs one itself, covering every write numbered so far. So
//! with N writers waiting, one flush serves all of them, and throughput grows
//! with concurrency instead of staying at one fsync per write.
//!
//! A failed flush leaves the store's state on disk unknown: it poisons the
//! engine through its one [`Poison`], and every later write is refused.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::poison::Poison;

#[derive(Debug, Default)]
struct State {
    /// Writes completed (the last sequence number handed out).
    written: u64,
    /// Every write numbered up to here is durable.
    durable: u64,
    flushing: bool,
    /// Writers waiting for someone else's flush (for the tests).
    waiting: usize,
}

#[derive(Debug)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    flushed: Condvar,
    poison: Arc<Poison>,
}

impl GroupCommit {
    pub fn new(poison: Arc<Poison>) -> Self {
        Self {
            state: Mutex::default(),
            flushed: Condvar::new(),
            poison,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain counters, valid whatever a panicking holder did.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many completed writes are not yet known durable.
    #[cfg(feature = "tower-sessions")]
    pub fn unflushed(&self) -> u64 {
        let st = self.lock();
        st.written - st.durable
    }

    /// Records a completed write; returns its sequence number and how many
    /// writes are not yet known durable.
    pub fn note_write(&self) -> (u64, u64) {
        let mut st = self.lock();
        st.written += 1;
        (st.written, st.written - st.durable)
    }

    /// Returns once write `seq` is durable, running the flush if nobody is.
    /// A failed flush poisons: this caller and every later one get
    /// [`Error::Poisoned`](crate::Error::Poisoned) with its cause.
    pub fn wait_durable(&self, seq: u64, mut flush: impl FnMut() -> Result<()>) -> Result<()> {
        let mut st = self.lock();
        loop {
            self.poison.check()?;
            if st.durable >= seq {
                return Ok(());
            }
            if st.flushing {
                st.waiting += 1;
                st = self.flushed.wait(st).unwrap_or_else(|e| e.into_inner());
                st.waiting -= 1;
                continue;
            }
            st.flushing = true;
            let target = st.written;
            drop(st);
            let running = Running(self);
            let result = flush();
            std::mem::forget(running);
            st = self.lock();
            st.flushing = false;
            let failed = result.err().map(|e| self.poison.set(e));
            if failed.is_none() {
                st.durable = st.durable.max(target);
            }
            self.flushed.notify_all();
            if let Some(e) = failed {
                return Err(e);
            }
        }
    }
}

/// Held while a flush runs: if the flush panics, the store's state on disk
/// is as unknown as after a failed flush, and the writers waiting for it
/// must not wait forever.
struct Running<'a>(&'a GroupCommit);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.flushing = false;
        self.0.poison.set(Error::Storage("a flush panicked".into()));
        self.0.flushed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    /// One writer's flush is running; seven more writers arrive and wait.
    /// When it ends, one flush covers all seven: two flushes in all.
    #[test]
    fn writers_waiting_during_a_flush_share_the_next_one() {
        let gc = Arc::new(GroupCommit::new(Arc::default()));
        let flushes = Arc::new(AtomicUsize::new(0));
        let (started, is_started) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let first = {
            let (gc, flushes) = (gc.clone(), flushes.clone());
            std::thread::spawn(move || {
                let (seq, _) = gc.note_write();
                gc.wait_durable(seq, || {
                    flushes.fetch_add(1, Ordering::SeqCst);
                    started.send(()).expect("main waits");
                    released.recv().expect("main releases");
                    Ok(())
                })
            })
        };
        is_started.recv().expect("the first flush starts");
        let others: Vec<_> = (0..7)
            .map(|_| {
                let (gc, flushes) = (gc.clone(), flushes.clone());
                std::thread::spawn(move || {
                    let (seq, _) = gc.note_write();
                    gc.wait_durable(seq, || {
                        flushes.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })
                })
            })
            .collect();
        while gc.lock().waiting < 7 {
            std::thread::yield_now();
        }
        release.send(()).expect("first flush waits");
        first.join().expect("thread").expect("durable");
        for t in others {
            t.join().expect("thread").expect("durable");
        }
        assert_eq!(flushes.load(Ordering::SeqCst), 2);
        assert_eq!(gc.lock().durable, 8);
    }

    /// A flush that panics poisons, and a writer waiting for it gets an
    /// error instead of waiting forever.
    #[test]
    fn a_panicking_flush_poisons_and_wakes_the_waiters() {
        let gc = Arc::new(GroupCommit::new(Arc::default()));
        let (started, is_started) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let first = {
            let gc = gc.clone();
            std::thread::spawn(move || {
                let (seq, _) = gc.note_write();
                gc.wait_durable(seq, || {
                    started.send(()).expect("main waits");
                    released.recv().expect("main releases");
                    panic!("the disk driver panicked");
                })
            })
        };
        is_started.recv().expect("the flush starts");
        let (answer, answered) = mpsc::channel();
        {
            let gc = gc.clone();
            std::thread::spawn(move || {
                let (seq, _) = gc.note_write();
                let _ = answer.send(gc.wait_durable(seq, || Ok(())));
            });
        }
        while gc.lock().waiting < 1 {
            std::thread::yield_now();
        }
        release.send(()).expect("the flush waits");
        assert!(first.join().is_err(), "the panic reaches its own thread");
        let result = answered
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the waiter is woken, not left waiting forever");
        assert!(matches!(result, Err(Error::Poisoned { .. })), "{result:?}");
    }

    #[test]
    fn a_failed_flush_poisons_with_its_cause() {
        let poison = Arc::new(Poison::default());
        let gc = GroupCommit::new(poison.clone());
        let (seq, _) = gc.note_write();
        let err = gc.wait_durable(seq, || Err(Error::Storage("disk on fire".into())));
        let Err(Error::Poisoned { cause }) = err else {
            panic!("{err:?}")
        };
        assert!(matches!(*cause, Error::Storage(_)));
        assert!(matches!(poison.check(), Err(Error::Poisoned { .. })));
        // A later flush that would succeed changes nothing.
        let (seq, _) = gc.note_write();
        assert!(matches!(
            gc.wait_durable(seq, || Ok(())),
            Err(Error::Poisoned { .. })
        ));
    }
}
