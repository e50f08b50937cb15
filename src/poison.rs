//! The one failure signal of an engine and its store.
//!
//! Once a write could not be made durable (a failed flush, at close too),
//! or the store could not apply a write as it was answered, the state on
//! disk is unknown. From then on every write is refused with
//! [`Error::Poisoned`], which carries the first cause, and the store is
//! never marked closed cleanly, so the next open runs the crash check
//! (fjall's `Poisoned`: "future writes will not be accepted as consistency
//! cannot be guaranteed"). A later flush that happens to succeed changes
//! nothing: on Linux a second `fdatasync` after an EIO can report success
//! for data that never reached the disk.

use std::sync::{Arc, OnceLock};

use crate::error::{Error, Result};
use crate::metrics::Meter;

/// Set once, never cleared; shared by the engine and its store.
#[derive(Debug, Default)]
pub(crate) struct Poison {
    cause: OnceLock<Arc<Error>>,
    /// Told when it is set (the `sessiondb_poisoned` gauge).
    meter: Option<Arc<Meter>>,
}

impl Poison {
    /// A signal whose setting `meter` publishes.
    pub fn watched_by(meter: Arc<Meter>) -> Self {
        Self {
            cause: OnceLock::new(),
            meter: Some(meter),
        }
    }

    /// `Err(Poisoned)` once poisoned.
    pub fn check(&self) -> Result<()> {
        match self.cause.get() {
            Some(cause) => Err(Error::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    pub fn is_set(&self) -> bool {
        self.cause.get().is_some()
    }

    /// Poisons with `cause` (the first cause is kept) and returns the error
    /// for whoever met it: [`Error::Poisoned`] with the kept cause.
    pub fn set(&self, cause: Error) -> Error {
        let kept = match cause {
            Error::Poisoned { cause } => self.cause.get_or_init(|| cause).clone(),
            other => self.cause.get_or_init(|| Arc::new(other)).clone(),
        };
        if let Some(meter) = &self.meter {
            meter.poisoned(true);
        }
        Error::Poisoned { cause: kept }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_cause_is_kept() {
        let p = Poison::default();
        assert!(p.check().is_ok());
        let first = p.set(Error::Storage("first".into()));
        let Error::Poisoned { cause } = &first else {
            panic!("{first:?}")
        };
        let source = |e: &Error| std::error::Error::source(e).map(ToString::to_string);
        assert_eq!(source(cause).as_deref(), Some("first"));
        let again = p.set(Error::Storage("second".into()));
        let Error::Poisoned { cause } = &again else {
            panic!("{again:?}")
        };
        assert_eq!(source(cause).as_deref(), Some("first"));
        assert!(matches!(p.check(), Err(Error::Poisoned { .. })));
    }

    /// Whatever sets it, the `sessiondb_poisoned` gauge goes to 1 (a
    /// failed batch in relaxed mode never reaches a flush).
    #[cfg(feature = "metrics")]
    #[test]
    fn setting_it_publishes_the_poisoned_gauge() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snap = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let p = Poison::watched_by(Arc::new(Meter::default()));
            let _ = p.set(Error::Storage("a failed batch".into()));
        });
        let gauge = snap
            .snapshot()
            .into_vec()
            .into_iter()
            .find(|(k, _, _, _)| k.key().name() == "sessiondb_poisoned")
            .map(|(_, _, _, v)| v);
        assert_eq!(gauge, Some(DebugValue::Gauge(1.0.into())));
    }
}
