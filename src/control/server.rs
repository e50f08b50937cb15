//! The engine's side of the control socket: one acceptor thread, one
//! thread per connection (at most [`MAX_CONNECTIONS`]), each answering
//! requests through a handle on the engine that never closes it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::proto::{
    self, Hello, InfoItem, Line, MAX_PAGE, MAX_REQUEST_LINE, PAGE_BYTES, RecordItem, RepairReply,
    Reply, Request, StatsReply, VERSION, Welcome, WireRecord,
};
use super::{SOCKET, addressable};
use crate::engine::{Engine, panic_message};
use crate::error::{Error, Result};

/// Connections served at once; one more is told `busy` and closed.
pub const MAX_CONNECTIONS: usize = 8;

/// The longest a client may take to send its greeting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest one reply may take to write: a client that stops reading
/// mid-export loses its connection after this, and frees its thread.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the acceptor looks whether it should stop.
const ACCEPT_POLL: Duration = Duration::from_millis(100);

/// Records read from the store at a time while filling a page.
const SUB_PAGE: usize = 100;

/// Whether a peer with user id `peer` may use the engine of user `own`:
/// the same user, or root.
pub fn may_connect(peer: u32, own: u32) -> bool {
    peer == own || peer == 0
}

/// The connections being served: their streams (to shut down at stop) and
/// a signal when one ends.
#[derive(Debug, Default)]
struct Connections {
    live: Mutex<HashMap<u64, UnixStream>>,
    ended: Condvar,
    next: AtomicU64,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, UnixStream>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running control socket; [`stop`](Self::stop) ends it.
#[derive(Debug)]
pub(crate) struct Server {
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    connections: Arc<Connections>,
    /// The socket's path, and its inode, to remove it only if it is still
    /// ours.
    path: PathBuf,
    ino: u64,
}

impl Server {
    /// Listens on `dir/control.sock`, replacing a stale one: the caller
    /// holds the store's lock, so no live engine owns a socket there.
    pub fn start(dir: &Path, engine: &Engine) -> Result<Self> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        let path = dir.join(SOCKET);
        let tmp = dir.join(format!("{SOCKET}.{}.tmp", std::process::id()));
        let handle = File::open(dir).map_err(io(dir))?;
        for stale in [&path, &tmp] {
            match std::fs::remove_file(stale) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(stale)(e)),
                _ => {}
            }
        }
        // Bound under a temporary name, made owner-only, then renamed into
        // place: nobody can connect in between with a laxer mode.
        let listener = UnixListener::bind(addressable(&handle, &tmp)).map_err(io(&tmp))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        let ino = std::fs::symlink_metadata(&path).map_err(io(&path))?.ino();
        listener.set_nonblocking(true).map_err(io(&path))?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Connections::default());
        let acceptor = {
            let (stop, connections, engine) = (stop.clone(), connections.clone(), engine.view());
            let idle = engine.control_idle();
            std::thread::Builder::new()
                .name("sessiondb-ctl".into())
                .spawn(move || accept_loop(&listener, &stop, &connections, &engine, idle))
                .map_err(|source| Error::Thread {
                    name: "sessiondb-ctl",
                    source,
                })?
        };
        Ok(Self {
            stop,
            acceptor: Some(acceptor),
            connections,
            path,
            ino,
        })
    }

    /// Stops accepting, ends every connection (a command in progress
    /// finishes first: its reply fails), waits for their threads, and
    /// removes the socket.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let mut live = self.connections.lock();
        for stream in live.values() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        while !live.is_empty() {
            live = self
                .connections
                .ended
                .wait(live)
                .unwrap_or_else(|e| e.into_inner());
        }
        drop(live);
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn accept_loop(
    listener: &UnixListener,
    stop: &AtomicBool,
    connections: &Arc<Connections>,
    engine: &Engine,
    idle: Duration,
) {
    while !stop.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let mut fds = [rustix::event::PollFd::new(
                    listener,
                    rustix::event::PollFlags::IN,
                )];
                let timeout = rustix::event::Timespec {
                    tv_sec: 0,
                    tv_nsec: ACCEPT_POLL.as_nanos() as _,
                };
                let _ = rustix::event::poll(&mut fds, Some(&timeout));
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                // Out of descriptors, or the like: wait, do not spin.
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        if let Err(why) = peer_allowed(&stream) {
            refuse(&stream, &why);
            continue;
        }
        let mut live = connections.lock();
        if live.len() >= MAX_CONNECTIONS {
            drop(live);
            refuse(&stream, "busy: too many control connections; try again");
            continue;
        }
        let Ok(registered) = stream.try_clone() else {
            continue;
        };
        let id = connections.next.fetch_add(1, Ordering::Relaxed);
        live.insert(id, registered);
        drop(live);
        let (connections_, engine) = (connections.clone(), engine.view());
        let spawned = std::thread::Builder::new()
            .name("sessiondb-ctl-c".into())
            .spawn(move || {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    serve(&stream, &engine, idle)
                }));
                connections_.lock().remove(&id);
                connections_.ended.notify_all();
            });
        if spawned.is_err() {
            connections.lock().remove(&id);
            connections.ended.notify_all();
        }
    }
}

/// Whether the peer is this engine's user or root (`SO_PEERCRED`).
fn peer_allowed(stream: &UnixStream) -> std::result::Result<(), String> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let own = rustix::process::geteuid().as_raw();
        match rustix::net::sockopt::socket_peercred(stream) {
            Ok(cred) if may_connect(cred.uid.as_raw(), own) => Ok(()),
            Ok(cred) => Err(format!(
                "permission denied: uid {} may not control this engine (run as uid {own} or root)",
                cred.uid.as_raw()
            )),
            Err(e) => Err(format!("permission denied: peer credentials unknown ({e})")),
        }
    }
    // Elsewhere the socket's mode (0600, in a 0700 directory) decides.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = stream;
        Ok(())
    }
}

fn refuse(stream: &UnixStream, why: &str) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = write_line(&mut BufWriter::new(stream), &Reply::Error(why.to_owned()));
}

fn write_line(out: &mut BufWriter<&UnixStream>, v: &impl serde::Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, v)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// One connection: the greeting, then requests until the client closes,
/// goes quiet for `idle`, sends something unreadable, or the engine stops.
pub(crate) fn serve(stream: &UnixStream, engine: &Engine, idle: Duration) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut out = BufWriter::new(stream);
    let mut buf = Vec::new();
    stream.set_read_timeout(Some(HELLO_TIMEOUT.min(idle)))?;
    if proto::read_line(&mut reader, &mut buf, MAX_REQUEST_LINE)? != Line::Whole {
        return write_line(&mut out, &Reply::Error("expected a greeting line".into()));
    }
    match serde_json::from_slice::<Hello>(&buf) {
        Ok(h) if h.sessiondb == "control" && h.version == VERSION => {}
        Ok(h) if h.sessiondb == "control" => {
            return write_line(
                &mut out,
                &Reply::Error(format!(
                    "unsupported control protocol version {}; this engine speaks {VERSION}",
                    h.version
                )),
            );
        }
        _ => {
            return write_line(
                &mut out,
                &Reply::Error("not a sessiondb control greeting".into()),
            );
        }
    }
    write_line(
        &mut out,
        &Welcome {
            sessiondb: "control".into(),
            version: VERSION,
            engine: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
        },
    )?;
    stream.set_read_timeout(Some(idle))?;
    loop {
        match proto::read_line(&mut reader, &mut buf, MAX_REQUEST_LINE)? {
            Line::Whole => {}
            Line::End => return Ok(()),
            Line::TooLong => {
                return write_line(
                    &mut out,
                    &Reply::Error(format!(
                        "request longer than {MAX_REQUEST_LINE} bytes; closing"
                    )),
                );
            }
        }
        let request = match proto::parse_request(&buf) {
            Ok(r) => r,
            Err(why) => return write_line(&mut out, &Reply::Error(why)),
        };
        let reply = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            answer(engine, request)
        })) {
            Ok(Ok(value)) => Reply::Ok(value),
            Ok(Err(e)) => Reply::Error(e.to_string()),
            Err(panic) => Reply::Error(format!(
                "the engine panicked: {}",
                panic_message(panic.as_ref())
            )),
        };
        write_line(&mut out, &reply)?;
    }
}

fn json(v: impl serde::Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| Error::Storage(Box::new(e)))
}

fn id_of(text: &str) -> Result<crate::SessionId> {
    proto::parse_id(text).map_err(|message| Error::Remote { message })
}

/// Runs one request inside the engine.
fn answer(engine: &Engine, request: Request) -> Result<serde_json::Value> {
    let admin = engine.admin();
    match request {
        Request::Stats => json(StatsReply {
            stats: admin.stats()?,
            metrics: engine.metrics(),
        }),
        Request::Metrics => json(engine.metrics()),
        Request::Records { after, limit } => {
            let after = after.as_deref().map(id_of).transpose()?;
            json(records_page(engine, after, limit.min(MAX_PAGE))?)
        }
        Request::Record { id } => json(admin.record(&id_of(&id)?)?.as_ref().map(WireRecord::from)),
        Request::SessionsOf { user } => json(
            engine
                .sessions_of(&user)?
                .iter()
                .map(InfoItem::from)
                .collect::<Vec<_>>(),
        ),
        Request::DestroyUser { user } => json(engine.destroy_user(&user, None)?),
        Request::DestroyId { id } => json(engine.destroy_id(&id_of(&id)?)?),
        Request::Sweep => json(admin.sweep_now()?),
        Request::Check => {
            // The walk takes no snapshot: a write in flight can show as a
            // violation for a moment. Only what a second walk, after the
            // queue is applied, finds again is reported.
            let first = admin.check()?;
            if first.is_empty() {
                return json(Vec::<String>::new());
            }
            engine.flush()?;
            let confirmed: Vec<String> = admin
                .check()?
                .into_iter()
                .filter(|v| first.contains(v))
                .map(|v| v.to_string())
                .collect();
            json(confirmed)
        }
        Request::Repair => {
            let r = admin.repair()?;
            json(RepairReply {
                fixed: r.fixed.iter().map(ToString::to_string).collect(),
                quarantined: r.quarantined,
                remaining: r.remaining.iter().map(ToString::to_string).collect(),
            })
        }
        Request::Import { record } => {
            let record = record
                .into_record()
                .map_err(|message| Error::Remote { message })?;
            json(proto::imported_name(admin.import(&record)?))
        }
    }
}

/// Up to `limit` records after `after`, read a sub-page at a time and cut
/// once their values pass [`PAGE_BYTES`].
fn records_page(
    engine: &Engine,
    mut after: Option<crate::SessionId>,
    limit: usize,
) -> Result<Vec<RecordItem>> {
    let mut items = Vec::new();
    let mut bytes = 0usize;
    while items.len() < limit && bytes < PAGE_BYTES {
        let page = engine
            .admin()
            .records(after.as_ref(), SUB_PAGE.min(limit - items.len()))?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        for (id, r) in page {
            let item = match r {
                Ok(r) => {
                    bytes += r.data.values().map(Vec::len).sum::<usize>() + 256;
                    RecordItem {
                        id: id.to_base64(),
                        record: Some(WireRecord::from(&r)),
                        error: None,
                    }
                }
                Err(e) => RecordItem {
                    id: id.to_base64(),
                    record: None,
                    error: Some(e.to_string()),
                },
            };
            items.push(item);
            if bytes >= PAGE_BYTES {
                break;
            }
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_user_or_root_may_connect() {
        assert!(may_connect(1000, 1000));
        assert!(may_connect(0, 1000), "root may");
        assert!(may_connect(0, 0));
        assert!(!may_connect(1001, 1000));
        assert!(!may_connect(1000, 0), "only root may use root's engine");
        assert!(!may_connect(65534, 0));
    }
}
