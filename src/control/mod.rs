//! The control socket: how the `sessiondb` operator's tool works on a
//! store that a running service holds.
//!
//! sled holds a store exclusively, so no second process can open it while
//! the service runs. Instead, an engine on a sled store listens on a Unix
//! domain socket in the store's directory, `DIR/control.sock`, while it is
//! open ([`Config::control`](crate::Config::control), on by default), and
//! runs operators' requests inside itself. The tool tries to open the
//! store; when a running service holds it, it connects here and runs the
//! same command with the same output.
//!
//! # Who may connect
//!
//! The socket is made owner-only (`0600`, bound under a temporary name and
//! renamed into place, in the store's `0700` directory), and on Linux every
//! connection's peer credentials (`SO_PEERCRED`) are checked: only the
//! engine's own user and root are served. (Elsewhere the mode alone
//! decides.) The socket is removed at a clean
//! close; one left behind by a crash is replaced at the next open (the
//! engine holds the store's lock by then, so no live engine owns it).
//!
//! # The protocol (version 1)
//!
//! JSON, one object per `\n`-terminated line. The client greets with
//! `{"sessiondb":"control","version":1}`; the engine answers with a
//! [`Welcome`](proto::Welcome) (`{"sessiondb":"control","version":1,
//! "engine":"0.1.0","pid":1234,"idle_ms":60000}`) or `{"error":"..."}` and
//! closes. Then each request (a [`Request`](proto::Request), named by
//! `"op"`) gets one reply line, `{"ok":...}` or `{"error":"..."}`. Large
//! listings stream as pages: `records` returns at most 1000 records and
//! about 4 MiB of JSON per reply, and the client asks for the next page
//! after the last id, so an export of any size holds one page at a time on
//! either side. A [`Client`] idle for most of `idle_ms` connects again
//! before its next request.
//!
//! # What hostile input costs
//!
//! - A request line longer than 1 MiB is refused after reading at most
//!   1 MiB of it (and one more buffer of 8 KiB), and the connection
//!   closed.
//! - A line that is not a request gets an error and the connection closed.
//! - A client that sends nothing is dropped after 5 seconds (its
//!   greeting) or the idle timeout (60 seconds, between requests).
//! - A client that stops reading is dropped once a reply has waited 30
//!   seconds to be written; one that disconnects mid-reply ends its
//!   connection only (writes never raise `SIGPIPE`).
//! - At most 8 connections are served at once; more are told `busy`.
//! - Each connection has its own thread; requests of the service never
//!   wait for the socket, and a panic answering one request is that
//!   request's error.

mod client;
pub mod proto;
pub(crate) mod server;

use std::fs::File;
use std::path::{Path, PathBuf};

pub use client::Client;
pub(crate) use server::Server;
pub use server::{MAX_CONNECTIONS, may_connect};

/// The socket's file name in the store's directory.
pub const SOCKET: &str = "control.sock";

/// A path to `path` that fits in a socket address (`sun_path` holds 108
/// bytes): `path` itself when short enough, else the same file reached
/// through `handle`, an open descriptor of its directory
/// (`/proc/self/fd/N/NAME`, Linux).
fn addressable(handle: &File, path: &Path) -> PathBuf {
    const SUN_PATH: usize = 100;
    if path.as_os_str().len() < SUN_PATH {
        return path.to_owned();
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(name) = path.file_name() {
        use std::os::fd::AsRawFd as _;
        return PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd())).join(name);
    }
    let _ = handle;
    path.to_owned()
}
