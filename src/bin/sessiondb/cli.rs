//! The command line: every command, flag and argument, as clap reads them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "sessiondb",
    version,
    about = "Inspect and maintain a sessiondb store"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Live sessions, users, expired awaiting sweep, bytes on disk, format.
    Stats {
        /// The store's directory.
        dir: PathBuf,
        #[command(flatten)]
        out: Out,
    },
    /// A running service's main figures, redrawn every second until
    /// Ctrl-C: sessions, users, rates per second, write queue, last sweep.
    Watch {
        /// The store's directory (a running service must hold it).
        dir: PathBuf,
        /// One JSON line per second instead of a screen.
        #[command(flatten)]
        out: Out,
    },
    /// Live sessions with user, created, last seen and expiry.
    List {
        /// The store's directory.
        dir: PathBuf,
        /// Only this user's sessions.
        #[arg(long)]
        user: Option<String>,
        /// At most this many sessions.
        #[arg(long)]
        limit: Option<usize>,
        /// Whole ids instead of 8-character hints. Whole ids are bearer
        /// secrets only together with the signing key, but keep them out of
        /// tickets and chat all the same.
        #[arg(long)]
        full_ids: bool,
        #[command(flatten)]
        out: Out,
    },
    /// One session's metadata and keys.
    Show {
        /// The store's directory.
        dir: PathBuf,
        /// The session's id, or a unique prefix of it (such as its hint).
        /// Ids may start with `-`.
        #[arg(allow_hyphen_values = true)]
        id: String,
        /// Show the values (base64 of their encoding, and the text when a
        /// value is a string), not only their sizes.
        #[arg(long)]
        values: bool,
        #[command(flatten)]
        out: Out,
    },
    /// Destroy one session or all of a user's; prints how many.
    Revoke {
        /// The store's directory.
        dir: PathBuf,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Out,
    },
    /// Delete expired sessions now; prints how many.
    Sweep {
        /// The store's directory.
        dir: PathBuf,
        #[command(flatten)]
        out: Out,
    },
    /// Check the store's invariants; exit status 0 only when it is sound.
    Check {
        /// The store's directory.
        dir: PathBuf,
        /// Mend what the check finds (indexes rebuilt from the sessions,
        /// undecodable records moved to quarantine), then check again.
        #[arg(long)]
        repair: bool,
        #[command(flatten)]
        out: Out,
    },
    /// Write every live session as JSON lines, to stdout or a new file.
    /// The output is a secret: it holds every session's full id and values.
    Export {
        /// The store's directory.
        dir: PathBuf,
        /// Write to this file, made owner-only (0600); it must not exist.
        /// Prefer it to redirecting stdout, which leaves the mode to the
        /// shell's umask.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Read JSON lines (as `export` writes them) from stdin into the store.
    /// Every line is checked first; if any is bad, nothing is written.
    Import {
        /// The store's directory (made if it does not exist).
        dir: PathBuf,
    },
}

#[derive(Args, Debug)]
pub(crate) struct Out {
    /// Machine-readable output.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub(crate) struct Target {
    /// Every session of this user.
    #[arg(long)]
    pub(crate) user: Option<String>,
    /// This session (whole id, or a unique prefix; it may start with `-`).
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) id: Option<String>,
}
