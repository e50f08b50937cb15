//! The client's side: connect to a running engine's control socket and
//! call it as one would call the engine.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::proto::{
    self, Hello, InfoItem, Line, MAX_REPLY_LINE, RecordItem, RepairReply, Reply, Request,
    StatsReply, Welcome, WireRecord,
};
use super::{SOCKET, addressable};
use crate::engine::{Imported, SessionInfo, SessionRecord, Stats};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::token::SessionId;

/// A connection to the engine that holds a store; see the
/// [module docs](super).
///
/// Errors the engine returns arrive as [`Error::Remote`], whose text is
/// the engine's error's; trouble with the socket or the protocol is
/// [`Error::Io`] or [`Error::Control`].
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
    path: PathBuf,
    welcome: Welcome,
    buf: Vec<u8>,
    /// The store's directory, to connect again.
    dir: PathBuf,
    /// When the last reply came: past the engine's idle time, the next
    /// call connects again first instead of meeting a closed connection.
    last: std::time::Instant,
    /// Set by any failure other than the engine's own error: what is left
    /// in the stream is not the next reply, so the connection is done.
    broken: bool,
}

/// How long the engine may take to answer the greeting.
const WELCOME_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A reply, decoded straight into what was asked for.
#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Typed<T> {
    Ok(T),
    Error(String),
}

impl Client {
    /// Connects to the engine serving the store in `dir`, and greets it.
    ///
    /// Fails with [`Error::Io`] when nobody listens (`NotFound`: no
    /// socket; `ConnectionRefused`: a stale one; `PermissionDenied`: not
    /// the service's user), and [`Error::Control`] when the engine refuses.
    pub fn connect(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let path = dir.join(SOCKET);
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let handle = File::open(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
        let stream = UnixStream::connect(addressable(&handle, &path)).map_err(io)?;
        let mut client = Self {
            reader: BufReader::new(stream.try_clone().map_err(io)?),
            writer: BufWriter::new(stream),
            path: path.clone(),
            welcome: Welcome {
                sessiondb: String::new(),
                version: 0,
                engine: String::new(),
                pid: 0,
                idle_ms: None,
            },
            buf: Vec::new(),
            dir: dir.to_owned(),
            last: std::time::Instant::now(),
            broken: false,
        };
        let _ = client
            .reader
            .get_ref()
            .set_read_timeout(Some(WELCOME_TIMEOUT));
        // An engine that refuses (busy, not allowed) may hang up before it
        // reads the greeting: its reason is still there to read.
        let sent = client.send(&Hello::current());
        let line = match (sent, client.line()) {
            (_, Ok(line)) => line,
            (Err(e), Err(_)) | (Ok(()), Err(e)) => return Err(e),
        };
        client.welcome = match serde_json::from_slice::<Welcome>(line) {
            Ok(w) => w,
            Err(_) => {
                let why = match serde_json::from_slice::<Reply>(line) {
                    Ok(Reply::Error(why)) => why,
                    _ => "the socket does not speak the sessiondb control protocol".into(),
                };
                return Err(client.failed(why));
            }
        };
        // Commands may take long (a check of millions of sessions): no
        // timeout on their replies.
        let _ = client.reader.get_ref().set_read_timeout(None);
        Ok(client)
    }

    /// What the engine said when it accepted the connection (its version,
    /// its process id).
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    fn failed(&mut self, reason: impl Into<String>) -> Error {
        self.broken = true;
        Error::Control {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn send(&mut self, v: &impl serde::Serialize) -> Result<()> {
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let sent = serde_json::to_writer(&mut self.writer, v)
            .map_err(std::io::Error::from)
            .and_then(|()| self.writer.write_all(b"\n"))
            .and_then(|()| self.writer.flush());
        sent.map_err(|e| {
            self.broken = true;
            io(e)
        })
    }

    fn line(&mut self) -> Result<&[u8]> {
        let read = proto::read_line(&mut self.reader, &mut self.buf, MAX_REPLY_LINE);
        match read {
            Ok(Line::Whole) => Ok(&self.buf),
            Ok(Line::End) => Err(self.failed("the engine closed the connection")),
            Ok(Line::TooLong) => Err(self.failed("a reply longer than the protocol allows")),
            Err(source) => {
                self.broken = true;
                Err(Error::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        }
    }

    /// Sends `request` and returns the engine's reply, decoded as `T`.
    ///
    /// After any failure but the engine's own error ([`Error::Remote`]),
    /// the connection is not used again: every later call fails.
    pub fn call<T: DeserializeOwned>(&mut self, request: &Request) -> Result<T> {
        if self.broken {
            return Err(Error::Control {
                path: self.path.clone(),
                reason: "the connection failed earlier; connect again".into(),
            });
        }
        // The engine hangs up on a client idle past its time (a paused
        // `export | less`): connect again before that, never after.
        if let Some(idle) = self.welcome.idle_ms
            && self.last.elapsed() >= std::time::Duration::from_millis(idle / 4 * 3)
        {
            *self = Self::connect(&self.dir)?;
        }
        self.send(request)?;
        let reply = serde_json::from_slice::<Typed<T>>(self.line()?);
        self.last = std::time::Instant::now();
        match reply {
            Ok(Typed::Ok(v)) => Ok(v),
            Ok(Typed::Error(message)) => Err(Error::Remote { message }),
            Err(e) => Err(self.failed(format!("an unreadable reply: {e}"))),
        }
    }

    /// [`Admin::stats`](crate::Admin::stats) and
    /// [`Engine::metrics`](crate::Engine::metrics) of the running engine.
    pub fn stats(&mut self) -> Result<(Stats, Metrics)> {
        let r: StatsReply = self.call(&Request::Stats)?;
        Ok((r.stats, r.metrics))
    }

    /// [`Engine::metrics`](crate::Engine::metrics) of the running engine.
    pub fn metrics(&mut self) -> Result<Metrics> {
        self.call(&Request::Metrics)
    }

    /// As [`Admin::records`](crate::Admin::records); a page may hold fewer
    /// than `limit` (at most 1000, and about 4 MiB of JSON) without being
    /// the last: page on until one comes back empty.
    pub fn records(
        &mut self,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<(SessionId, Result<SessionRecord>)>> {
        let items: Vec<RecordItem> = self.call(&Request::Records {
            after: after.map(SessionId::to_base64),
            limit,
        })?;
        items
            .into_iter()
            .map(|item| {
                let id = proto::parse_id(&item.id).map_err(|e| self.failed(e))?;
                let record = match (item.record, item.error) {
                    (Some(r), _) => r.into_record().map_err(|message| Error::Remote { message }),
                    (None, Some(message)) => Err(Error::Remote { message }),
                    (None, None) => Err(self.failed("a record item with neither record nor error")),
                };
                Ok((id, record))
            })
            .collect()
    }

    /// As [`Admin::record`](crate::Admin::record).
    pub fn record(&mut self, id: &SessionId) -> Result<Option<SessionRecord>> {
        let r: Option<WireRecord> = self.call(&Request::Record { id: id.to_base64() })?;
        r.map(|r| r.into_record().map_err(|e| self.failed(e)))
            .transpose()
    }

    /// As [`Engine::sessions_of`](crate::Engine::sessions_of).
    pub fn sessions_of(&mut self, user: &str) -> Result<Vec<SessionInfo>> {
        let items: Vec<InfoItem> = self.call(&Request::SessionsOf {
            user: user.to_owned(),
        })?;
        items
            .into_iter()
            .map(|i| i.into_info().map_err(|e| self.failed(e)))
            .collect()
    }

    /// As [`Engine::destroy_user`](crate::Engine::destroy_user) with no
    /// session kept: durable when it returns.
    pub fn destroy_user(&mut self, user: &str) -> Result<usize> {
        self.call(&Request::DestroyUser {
            user: user.to_owned(),
        })
    }

    /// As [`Engine::destroy_id`](crate::Engine::destroy_id): durable when
    /// it returns.
    pub fn destroy_id(&mut self, id: &SessionId) -> Result<bool> {
        self.call(&Request::DestroyId { id: id.to_base64() })
    }

    /// As [`Admin::sweep_now`](crate::Admin::sweep_now).
    pub fn sweep_now(&mut self) -> Result<u64> {
        self.call(&Request::Sweep)
    }

    /// As [`Admin::check`](crate::Admin::check), as text; only violations
    /// that a second walk of the live store confirms.
    pub fn check(&mut self) -> Result<Vec<String>> {
        self.call(&Request::Check)
    }

    /// As [`Admin::repair`](crate::Admin::repair), violations as text.
    pub fn repair(&mut self) -> Result<RepairReply> {
        self.call(&Request::Repair)
    }

    /// As [`Engine::flush`](crate::Engine::flush): every write so far is
    /// durable when it returns.
    pub fn flush(&mut self) -> Result<()> {
        self.call(&Request::Flush)
    }

    /// As [`Admin::import`](crate::Admin::import).
    pub fn import(&mut self, record: &SessionRecord) -> Result<Imported> {
        let name: String = self.call(&Request::Import {
            record: WireRecord::from(record),
        })?;
        proto::imported_from(&name)
            .ok_or_else(|| self.failed(format!("unknown import outcome {name:?}")))
    }
}
