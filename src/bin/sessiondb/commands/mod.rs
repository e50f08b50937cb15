//! One file per command; each prints its result and returns the exit
//! status.

mod check;
mod export;
mod import;
mod list;
mod revoke;
mod show;
pub(crate) mod stats;
mod sweep;
mod watch;

pub(crate) use check::check;
pub(crate) use export::export;
pub(crate) use import::import;
pub(crate) use list::list;
pub(crate) use revoke::revoke;
pub(crate) use show::show;
pub(crate) use stats::stats;
pub(crate) use sweep::sweep;
pub(crate) use watch::watch;
