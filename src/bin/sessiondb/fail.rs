//! A failure: what to print on stderr, and the exit status.

use std::process::ExitCode;

use sessiondb::Error;

/// A failure: what to print, and the exit status.
pub(crate) struct Fail(pub(crate) String, pub(crate) u8);

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        let hint = match &e {
            Error::Locked { .. } => {
                "\nhint: a running service holds the store, and its control socket was not \
                 reachable; try again, or stop the service"
            }
            Error::NotAStore { .. } => "\nhint: give the directory the service's --data names",
            _ => "",
        };
        Fail(format!("error: {e}{hint}"), 2)
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Self {
        Fail(format!("error: {e}"), 2)
    }
}

pub(crate) type Outcome = Result<ExitCode, Fail>;
