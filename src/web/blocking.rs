//! Storage calls run on tokio's blocking pool, never on an async worker.

use crate::error::{Error, Result};

/// Runs `f` on tokio's blocking pool, so a strict-durability wait (or any
/// disk read) never holds an async worker thread.
pub(super) async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        // The task panicked or the runtime is shutting down: the cause
        // stays the error's source.
        Err(e) => Err(Error::Storage(Box::new(e))),
    }
}
