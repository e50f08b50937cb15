//! The engine's side of the control socket: one acceptor thread, one
//! thread per connection (at most [`MAX_CONNECTIONS`]), each answering
//! requests through a handle on the engine that never closes it.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Mode};

use super::proto::{
    self, Hello, InfoItem, Line, MAX_PAGE, MAX_REQUEST_LINE, PAGE_BYTES, RecordItem, RepairReply,
    Reply, Request, StatsReply, VERSION, Welcome, WireRecord,
};
use super::{SOCKET, addressable};
use crate::engine::{Engine, panic_message};
use crate::error::{Error, Result};

/// Connections served at once; one more is told `busy` and closed.
pub const MAX_CONNECTIONS: usize = 8;

/// The longest a client may take to send its whole greeting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest one whole reply may take to write: a client that stops
/// reading mid-export loses its connection after this, and frees its slot.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The most the acceptor spends telling a refused client why.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the acceptor waits after a failed `accept` (out of
/// descriptors, say) before it tries again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The acceptor's longest wait in `poll` without a wake-up.
const POLL_GUARD: rustix::event::Timespec = rustix::event::Timespec {
    tv_sec: 1,
    tv_nsec: 0,
};

/// Records read from the store at a time while filling a page.
const SUB_PAGE: usize = 100;

/// The most violations one `check` or `repair` reply lists (and at most
/// [`MAX_VIOLATION_BYTES`] of their text); past it, a last line says how
/// many more there are.
pub const MAX_VIOLATIONS: usize = 10_000;

/// The most text of violations one list carries.
const MAX_VIOLATION_BYTES: usize = 8 * 1024 * 1024;

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

/// Takes a connection off the list when dropped: declared before the
/// connection's engine handle and stream, so it runs after both are gone.
struct Finished(Arc<Connections>, u64);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.lock().remove(&self.1);
        self.0.ended.notify_all();
    }
}

/// A running control socket; [`stop`](Self::stop) ends it.
#[derive(Debug)]
pub(crate) struct Server {
    stop: Arc<AtomicBool>,
    /// Written to at stop: wakes the acceptor from its `poll`.
    wake: UnixStream,
    acceptor: Option<JoinHandle<()>>,
    connections: Arc<Connections>,
    /// The store's directory, open: every name is handled relative to it.
    dir: File,
    /// The socket's device and inode, to remove it only if it is ours.
    dev_ino: (u64, u64),
}

/// A file's device and inode (their types differ between platforms).
#[allow(clippy::unnecessary_cast)]
fn dev_ino(s: &rustix::fs::Stat) -> (u64, u64) {
    (s.st_dev as u64, s.st_ino as u64)
}

fn io_at(dir: &Path, name: &str) -> impl FnOnce(std::io::Error) -> Error {
    let path = dir.join(name);
    move |source| Error::Io { path, source }
}

impl Server {
    /// Listens on `dir/control.sock`. Whatever is there is stale: the
    /// caller holds the store's lock, so no live engine owns a socket
    /// there. So are temporary names a crash left behind.
    pub fn start(dir: &Path, engine: &Engine) -> Result<Self> {
        let handle = File::open(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
        let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == SOCKET || (name.starts_with(SOCKET) && name.ends_with(".tmp")) {
                rustix::fs::unlinkat(&handle, name.as_ref(), AtFlags::empty())
                    .map_err(|e| io_at(dir, &name)(e.into()))?;
            }
        }
        let tmp = format!("{SOCKET}.{}.tmp", std::process::id());
        let listener = match Self::bind(dir, &handle, &tmp) {
            Ok(l) => l,
            Err(e) => {
                let _ = rustix::fs::unlinkat(&handle, tmp.as_str(), AtFlags::empty());
                return Err(e);
            }
        };
        let stat = rustix::fs::statat(&handle, SOCKET, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_at(dir, SOCKET)(e.into()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Connections::default());
        // A socket pair rather than a pipe: std makes it close-on-exec.
        let (woken, wake) = UnixStream::pair().map_err(io_at(dir, SOCKET))?;
        let acceptor = {
            let (stop, connections, engine) = (stop.clone(), connections.clone(), engine.view());
            std::thread::Builder::new()
                .name("sessiondb-ctl".into())
                .spawn(move || accept_loop(&listener, &woken, &stop, &connections, &engine))
                .map_err(|source| Error::Thread {
                    name: "sessiondb-ctl",
                    source,
                })?
        };
        Ok(Self {
            stop,
            wake,
            acceptor: Some(acceptor),
            connections,
            dir: handle,
            dev_ino: dev_ino(&stat),
        })
    }

    /// Binds under the temporary name `tmp`, makes it owner-only, and only
    /// then renames it into place: nobody connects in between with a laxer
    /// mode.
    fn bind(dir: &Path, handle: &File, tmp: &str) -> Result<UnixListener> {
        let listener = UnixListener::bind(addressable(handle, &dir.join(tmp)))
            .map_err(|e| io_at(dir, tmp)(e))?;
        rustix::fs::chmodat(handle, tmp, Mode::from_raw_mode(0o600), AtFlags::empty())
            .map_err(|e| io_at(dir, tmp)(e.into()))?;
        rustix::fs::renameat(handle, tmp, handle, SOCKET)
            .map_err(|e| io_at(dir, SOCKET)(e.into()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| io_at(dir, SOCKET)(e))?;
        Ok(listener)
    }

    /// Stops accepting, ends every connection and waits for their threads,
    /// and removes the socket. A command in progress stops at its next
    /// step (a page, a batch, a fix); a walk of the whole store (`check`)
    /// runs to its end first.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = (&self.wake).write(b"!");
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
        let ours = rustix::fs::statat(&self.dir, SOCKET, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|s| dev_ino(&s) == self.dev_ino);
        if ours {
            let _ = rustix::fs::unlinkat(&self.dir, SOCKET, AtFlags::empty());
        }
    }
}

fn accept_loop(
    listener: &UnixListener,
    woken: &UnixStream,
    stop: &Arc<AtomicBool>,
    connections: &Arc<Connections>,
    engine: &Engine,
) {
    while !stop.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Until a client comes, or `stop` writes to the pipe.
                let mut fds = [
                    rustix::event::PollFd::new(listener, rustix::event::PollFlags::IN),
                    rustix::event::PollFd::new(woken, rustix::event::PollFlags::IN),
                ];
                // The timeout only guards against a lost wake-up.
                let _ = rustix::event::poll(&mut fds, Some(&POLL_GUARD));
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                // Out of descriptors, or the like: wait, do not spin.
                std::thread::sleep(ACCEPT_RETRY);
                continue;
            }
        };
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
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
        let finished = Finished(connections.clone(), id);
        let (engine, stop) = (engine.view(), stop.clone());
        let spawned = std::thread::Builder::new()
            .name("sessiondb-ctl-c".into())
            .spawn(move || {
                // Dropped in reverse: the handle and the stream go first,
                // then the connection is off the list.
                let finished = finished;
                let (stream, engine, stop) = (stream, engine, stop);
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    serve_until(&stream, &engine, &|| !stop.load(Ordering::SeqCst))
                }));
                drop((engine, stream, stop));
                drop(finished);
            });
        // A thread that could not start dropped its closure, and with it
        // its `Finished`.
        let _ = spawned;
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

/// Tells a client why it is not served, without waiting for it.
fn refuse(stream: &UnixStream, why: &str) {
    let mut out = BufWriter::new(Timed::new(stream, REFUSE_TIMEOUT));
    let _ = write_reply_within(&mut out, &Reply::Error(why.to_owned()), REFUSE_TIMEOUT);
}

/// The stream, read and written against a deadline for a whole line or
/// reply (the socket's own timeouts restart at every byte), and written
/// without `SIGPIPE` should the peer be gone.
struct Timed<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl<'a> Timed<'a> {
    fn new(stream: &'a UnixStream, within: Duration) -> Self {
        Self {
            stream,
            deadline: Instant::now() + within,
        }
    }

    /// The time left, or `TimedOut`.
    fn left(&self) -> std::io::Result<Duration> {
        match self.deadline.checked_duration_since(Instant::now()) {
            Some(d) if !d.is_zero() => Ok(d),
            _ => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        (&*self.stream).read(buf)
    }
}

impl Write for Timed<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        // Linux has MSG_NOSIGNAL (std uses it for UnixStream only from Rust
        // 1.90); elsewhere a Rust program ignores SIGPIPE from its start.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        return Ok(rustix::net::send(
            self.stream,
            buf,
            rustix::net::SendFlags::NOSIGNAL,
        )?);
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        return (&*self.stream).write(buf);
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn write_reply(out: &mut BufWriter<Timed<'_>>, v: &impl serde::Serialize) -> std::io::Result<()> {
    write_reply_within(out, v, WRITE_TIMEOUT)
}

fn write_reply_within(
    out: &mut BufWriter<Timed<'_>>,
    v: &impl serde::Serialize,
    within: Duration,
) -> std::io::Result<()> {
    out.get_mut().deadline = Instant::now() + within;
    serde_json::to_writer(&mut *out, v)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Writes `{"ok":PAYLOAD}` where `payload` is JSON already.
fn write_ok(out: &mut BufWriter<Timed<'_>>, payload: &[u8]) -> std::io::Result<()> {
    out.get_mut().deadline = Instant::now() + WRITE_TIMEOUT;
    out.write_all(b"{\"ok\":")?;
    out.write_all(payload)?;
    out.write_all(b"}\n")?;
    out.flush()
}

/// One connection: the greeting, then requests until the client closes,
/// goes quiet for `idle`, sends something unreadable, or the engine stops
/// (`keep_going` says no).
pub(crate) fn serve_until(
    stream: &UnixStream,
    engine: &Engine,
    keep_going: &dyn Fn() -> bool,
) -> std::io::Result<()> {
    let idle = engine.control_idle();
    let mut reader = BufReader::new(Timed::new(stream, HELLO_TIMEOUT.min(idle)));
    let mut out = BufWriter::new(Timed::new(stream, WRITE_TIMEOUT));
    let mut buf = Vec::new();
    if proto::read_line(&mut reader, &mut buf, MAX_REQUEST_LINE)? != Line::Whole {
        return write_reply(&mut out, &Reply::Error("expected a greeting line".into()));
    }
    match serde_json::from_slice::<Hello>(&buf) {
        Ok(h) if h.sessiondb == "control" && h.version == VERSION => {}
        Ok(h) if h.sessiondb == "control" => {
            return write_reply(
                &mut out,
                &Reply::Error(format!(
                    "unsupported control protocol version {}; this engine speaks {VERSION}",
                    h.version
                )),
            );
        }
        _ => {
            return write_reply(
                &mut out,
                &Reply::Error("not a sessiondb control greeting".into()),
            );
        }
    }
    write_reply(
        &mut out,
        &Welcome {
            sessiondb: "control".into(),
            version: VERSION,
            engine: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            idle_ms: Some(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX)),
        },
    )?;
    loop {
        reader.get_mut().deadline = Instant::now() + idle;
        match proto::read_line(&mut reader, &mut buf, MAX_REQUEST_LINE)? {
            Line::Whole => {}
            Line::End => return Ok(()),
            Line::TooLong => {
                return write_reply(
                    &mut out,
                    &Reply::Error(format!(
                        "request longer than {MAX_REQUEST_LINE} bytes; closing"
                    )),
                );
            }
        }
        let request = match proto::parse_request(&buf) {
            Ok(r) => r,
            Err(why) => return write_reply(&mut out, &Reply::Error(why)),
        };
        let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            answer(engine, request, keep_going)
        }));
        match answered {
            Ok(Ok(payload)) => write_ok(&mut out, &payload)?,
            Ok(Err(e)) => write_reply(&mut out, &Reply::Error(e.to_string()))?,
            Err(panic) => write_reply(
                &mut out,
                &Reply::Error(format!(
                    "the engine panicked: {}",
                    panic_message(panic.as_ref())
                )),
            )?,
        }
    }
}

fn json(v: impl serde::Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(&v).map_err(|e| Error::Storage(Box::new(e)))
}

fn id_of(text: &str) -> Result<crate::SessionId> {
    proto::parse_id(text).map_err(|message| Error::Remote { message })
}

/// Violations as text, at most [`MAX_VIOLATIONS`] of them and a line that
/// counts the rest.
fn listed(all: impl ExactSizeIterator<Item = String>) -> Vec<String> {
    let n = all.len();
    let mut out = Vec::new();
    let mut bytes = 0;
    for v in all {
        if out.len() == MAX_VIOLATIONS || bytes + v.len() > MAX_VIOLATION_BYTES {
            break;
        }
        bytes += v.len();
        out.push(v);
    }
    if out.len() < n {
        out.push(format!(
            "... and {} more (the control socket lists {MAX_VIOLATIONS} or 8 MiB; run check \
             on the stopped store for all)",
            n - out.len()
        ));
    }
    out
}

/// Runs one request inside the engine; returns the reply's JSON.
fn answer(engine: &Engine, request: Request, keep_going: &dyn Fn() -> bool) -> Result<Vec<u8>> {
    let admin = engine.admin();
    match request {
        Request::Stats => json(StatsReply {
            stats: admin.stats()?,
            metrics: engine.metrics(),
        }),
        Request::Metrics => json(engine.metrics()),
        Request::Records { after, limit } => {
            let after = after.as_deref().map(id_of).transpose()?;
            records_page(engine, after, limit.min(MAX_PAGE), keep_going)
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
        Request::Sweep => json(admin.sweep_while(keep_going)?),
        Request::Check => {
            // The walk takes no snapshot: a write in flight can show as a
            // violation for a moment. Only what a second walk, after the
            // queue is applied, finds again is reported.
            let first: HashSet<String> = admin.check()?.iter().map(ToString::to_string).collect();
            if first.is_empty() {
                return json(Vec::<String>::new());
            }
            if !keep_going() {
                return Err(Error::Closed);
            }
            engine.flush()?;
            let confirmed: Vec<String> = admin
                .check()?
                .iter()
                .map(ToString::to_string)
                .filter(|v| first.contains(v))
                .collect();
            json(listed(confirmed.into_iter()))
        }
        Request::Repair => {
            let r = admin.repair_while(keep_going)?;
            json(RepairReply {
                fixed: listed(r.fixed.iter().map(ToString::to_string)),
                fixed_count: r.fixed.len() as u64,
                quarantined: r.quarantined,
                remaining: listed(r.remaining.iter().map(ToString::to_string)),
            })
        }
        Request::Flush => json(engine.flush()?),
        Request::Import { record } => {
            let record = record
                .into_record()
                .map_err(|message| Error::Remote { message })?;
            json(proto::imported_name(admin.import(&record)?))
        }
    }
}

/// Up to `limit` records after `after`, as the JSON of a list of
/// [`RecordItem`], read a sub-page at a time and cut once the JSON passes
/// [`PAGE_BYTES`]: a page holds at most that plus one record.
fn records_page(
    engine: &Engine,
    mut after: Option<crate::SessionId>,
    limit: usize,
    keep_going: &dyn Fn() -> bool,
) -> Result<Vec<u8>> {
    let mut out = b"[".to_vec();
    let mut n = 0usize;
    'pages: while n < limit && out.len() < PAGE_BYTES {
        if !keep_going() {
            return Err(Error::Closed);
        }
        let page = engine
            .admin()
            .records(after.as_ref(), SUB_PAGE.min(limit - n))?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        for (id, r) in page {
            let item = match r {
                Ok(r) => RecordItem {
                    id: id.to_base64(),
                    record: Some(WireRecord::from(&r)),
                    error: None,
                },
                Err(e) => RecordItem {
                    id: id.to_base64(),
                    record: None,
                    error: Some(e.to_string()),
                },
            };
            if n > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, &item).map_err(|e| Error::Storage(Box::new(e)))?;
            n += 1;
            if out.len() >= PAGE_BYTES {
                break 'pages;
            }
        }
    }
    out.push(b']');
    Ok(out)
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

    #[test]
    fn long_violation_lists_are_cut_and_counted() {
        let short = listed((0..3).map(|i| i.to_string()));
        assert_eq!(short, ["0", "1", "2"]);
        let long = listed((0..MAX_VIOLATIONS + 5).map(|i| i.to_string()));
        assert_eq!(long.len(), MAX_VIOLATIONS + 1);
        assert!(long[MAX_VIOLATIONS].contains("and 5 more"), "{long:?}");
    }
}
