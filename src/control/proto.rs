//! The control protocol's messages, their JSON form, and the bounded line
//! reader both sides use.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::engine::{Imported, SessionInfo, SessionRecord, Stats};
use crate::metrics::Metrics;
use crate::token::SessionId;

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// The longest request line the engine reads (an import carries one
/// record: at most 96 KiB, about 128 KiB in base64, plus escapes). A
/// longer line is refused and the connection closed after reading no more
/// than this.
pub const MAX_REQUEST_LINE: usize = 1024 * 1024;

/// The longest reply line the client reads: a page of records is cut at
/// [`PAGE_BYTES`] of JSON, violation lists at 10,000 entries and 8 MiB,
/// so a reply stays far below this.
pub const MAX_REPLY_LINE: usize = 64 * 1024 * 1024;

/// The most records one `records` reply holds.
pub const MAX_PAGE: usize = 1000;

/// A `records` reply stops after the record that brings its JSON past
/// this many bytes, so neither side holds more than a few MiB of a
/// streaming export at once.
pub const PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The client's first line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hello {
    /// Always `"control"`.
    pub sessiondb: String,
    /// The protocol version the client speaks.
    pub version: u32,
}

impl Hello {
    /// This build's greeting.
    pub fn current() -> Self {
        Self {
            sessiondb: "control".into(),
            version: VERSION,
        }
    }
}

/// The engine's answer to a [`Hello`] it accepts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Welcome {
    /// Always `"control"`.
    pub sessiondb: String,
    /// The protocol version of this connection.
    pub version: u32,
    /// The engine's crate version.
    pub engine: String,
    /// The serving process.
    pub pid: u32,
    /// How long the engine waits for the next request before it hangs
    /// up, in ms: a client idle for longer connects again first.
    #[serde(default)]
    pub idle_ms: Option<u64>,
}

/// What a client asks, one JSON object per line, named by `op`.
///
/// Read through [`RawRequest`], a plain struct that refuses unknown fields,
/// so that no part of a request is buffered on the way (serde buffers the
/// whole object of an internally tagged enum first).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case", try_from = "RawRequest")]
#[non_exhaustive]
pub enum Request {
    /// [`Stats`] and [`Metrics`]: a [`StatsReply`].
    Stats,
    /// [`Metrics`] alone (cheap: no walk of the store).
    Metrics,
    /// One page of stored records after `after` (a whole id), at most
    /// `limit` (capped at [`MAX_PAGE`]): a list of [`RecordItem`].
    Records {
        /// The last id of the previous page.
        after: Option<String>,
        /// At most this many.
        limit: usize,
    },
    /// The live record with this whole id, or `null`.
    Record {
        /// A whole id.
        id: String,
    },
    /// A user's sessions: a list of [`InfoItem`].
    SessionsOf {
        /// The user.
        user: String,
    },
    /// Log a user out everywhere: how many sessions went.
    DestroyUser {
        /// The user.
        user: String,
    },
    /// Destroy one session: whether it existed.
    DestroyId {
        /// A whole id.
        id: String,
    },
    /// One sweeper pass now: how many sessions it deleted.
    Sweep,
    /// The store's violations, as text; on a live store only those that a
    /// second pass confirms.
    Check,
    /// Repair: a [`RepairReply`].
    Repair,
    /// Make every write so far durable (`Engine::flush`): what a tool
    /// that wrote asks before it exits.
    Flush,
    /// Import one record: `"written"`, `"exists"`, `"expired"` or
    /// `"revoked"`.
    Import {
        /// The record.
        record: WireRecord,
    },
}

/// Every field any request has, read in one pass.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequest {
    op: String,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    record: Option<WireRecord>,
}

impl TryFrom<RawRequest> for Request {
    type Error = String;

    fn try_from(r: RawRequest) -> Result<Self, String> {
        let op = r.op.as_str();
        let need =
            |v: Option<String>, field: &str| v.ok_or_else(|| format!("`{op}` needs `{field}`"));
        let takes = |present: bool, field: &str, ops: &[&str]| match present && !ops.contains(&op) {
            true => Err(format!("`{op}` takes no `{field}`")),
            false => Ok(()),
        };
        takes(r.after.is_some(), "after", &["records"])?;
        takes(r.limit.is_some(), "limit", &["records"])?;
        takes(r.id.is_some(), "id", &["record", "destroy_id"])?;
        takes(r.user.is_some(), "user", &["sessions_of", "destroy_user"])?;
        takes(r.record.is_some(), "record", &["import"])?;
        Ok(match op {
            "stats" => Self::Stats,
            "metrics" => Self::Metrics,
            "records" => Self::Records {
                after: r.after,
                limit: r.limit.ok_or("`records` needs `limit`")?,
            },
            "record" => Self::Record {
                id: need(r.id, "id")?,
            },
            "sessions_of" => Self::SessionsOf {
                user: need(r.user, "user")?,
            },
            "destroy_user" => Self::DestroyUser {
                user: need(r.user, "user")?,
            },
            "destroy_id" => Self::DestroyId {
                id: need(r.id, "id")?,
            },
            "sweep" => Self::Sweep,
            "check" => Self::Check,
            "repair" => Self::Repair,
            "flush" => Self::Flush,
            "import" => Self::Import {
                record: r.record.ok_or("`import` needs `record`")?,
            },
            other => {
                return Err(format!(
                    "unknown op {:?}",
                    other.chars().take(32).collect::<String>()
                ));
            }
        })
    }
}

/// The engine's answer to a request: `{"ok": ...}` or `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// What was asked.
    Ok(serde_json::Value),
    /// Why not: the text of the engine's error.
    Error(String),
}

/// The reply to [`Request::Stats`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatsReply {
    /// What `Admin::stats` says.
    pub stats: Stats,
    /// What `Engine::metrics` says.
    pub metrics: Metrics,
}

/// A session record on the wire: ids whole, values in base64.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireRecord {
    /// The whole id.
    pub id: String,
    /// The stored version.
    pub version: u64,
    /// Its user.
    pub user: Option<String>,
    /// Created, ms since the Unix epoch.
    pub created_at: u64,
    /// Last seen, ms since the Unix epoch.
    pub last_seen: u64,
    /// Expires, ms since the Unix epoch.
    pub expires_at: u64,
    /// Expires whatever happens, ms since the Unix epoch.
    pub absolute_deadline: u64,
    /// Idle timeout, ms.
    pub idle_timeout_ms: u64,
    /// Each value's stored encoding, in base64.
    pub data: BTreeMap<String, String>,
}

impl From<&SessionRecord> for WireRecord {
    fn from(r: &SessionRecord) -> Self {
        Self {
            id: r.id.to_base64(),
            version: r.version,
            user: r.user.clone(),
            created_at: r.created_at,
            last_seen: r.last_seen,
            expires_at: r.expires_at,
            absolute_deadline: r.absolute_deadline,
            idle_timeout_ms: u64::try_from(r.idle_timeout.as_millis()).unwrap_or(u64::MAX),
            data: r
                .data
                .iter()
                .map(|(k, v)| (k.clone(), STANDARD.encode(v)))
                .collect(),
        }
    }
}

impl WireRecord {
    /// The record, or what is wrong with it.
    pub fn into_record(self) -> Result<SessionRecord, String> {
        let id = parse_id(&self.id)?;
        let mut data = BTreeMap::new();
        for (k, v) in self.data {
            let bytes = STANDARD
                .decode(v.as_bytes())
                .map_err(|_| format!("value `{k}` is not base64"))?;
            data.insert(k, bytes);
        }
        Ok(SessionRecord {
            id,
            version: self.version,
            user: self.user,
            created_at: self.created_at,
            last_seen: self.last_seen,
            expires_at: self.expires_at,
            absolute_deadline: self.absolute_deadline,
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            data,
        })
    }
}

/// One item of a `records` page: the record, or why it does not decode.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordItem {
    /// The whole id.
    pub id: String,
    /// The record, when it decodes.
    pub record: Option<WireRecord>,
    /// The error that names it, when it does not.
    pub error: Option<String>,
}

/// One of a user's sessions on the wire.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InfoItem {
    /// The whole id.
    pub id: String,
    /// Created, ms since the Unix epoch.
    pub created_at: u64,
    /// Last seen, ms since the Unix epoch.
    pub last_seen: u64,
    /// Expires, ms since the Unix epoch.
    pub expires_at: u64,
}

impl From<&SessionInfo> for InfoItem {
    fn from(i: &SessionInfo) -> Self {
        Self {
            id: i.id.to_base64(),
            created_at: i.created_at,
            last_seen: i.last_seen,
            expires_at: i.expires_at,
        }
    }
}

impl InfoItem {
    /// The listing entry, or what is wrong with it.
    pub fn into_info(self) -> Result<SessionInfo, String> {
        Ok(SessionInfo {
            id: parse_id(&self.id)?,
            created_at: self.created_at,
            last_seen: self.last_seen,
            expires_at: self.expires_at,
        })
    }
}

/// The reply to [`Request::Repair`]: violations as text (at most 10,000
/// of each, and a line counting the rest).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RepairReply {
    /// The violations mended.
    pub fixed: Vec<String>,
    /// How many were mended.
    pub fixed_count: u64,
    /// Records in quarantine afterwards.
    pub quarantined: u64,
    /// What a check still finds.
    pub remaining: Vec<String>,
}

/// How [`Imported`] is written on the wire.
pub fn imported_name(i: Imported) -> &'static str {
    match i {
        Imported::Written => "written",
        Imported::Exists => "exists",
        Imported::Expired => "expired",
        Imported::Revoked => "revoked",
    }
}

/// [`imported_name`] read back.
pub fn imported_from(name: &str) -> Option<Imported> {
    Some(match name {
        "written" => Imported::Written,
        "exists" => Imported::Exists,
        "expired" => Imported::Expired,
        "revoked" => Imported::Revoked,
        _ => return None,
    })
}

/// A whole id, or a message naming what came instead (never echoing
/// more than a few characters of it).
pub fn parse_id(text: &str) -> Result<SessionId, String> {
    SessionId::from_base64(text).ok_or_else(|| {
        format!(
            "not a session id ({} characters; ids are 43 base64url characters)",
            text.len()
        )
    })
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line is in the buffer, its newline removed.
    Whole,
    /// The peer closed the connection before a whole line (anything it
    /// sent is dropped).
    End,
    /// The line is longer than the limit; what was read of it is dropped.
    TooLong,
}

/// Reads one `\n`-terminated line into `buf` (cleared first), reading at
/// most `limit + 1` bytes however long the line is, so a peer that never
/// sends a newline costs bounded memory.
pub fn read_line(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Line> {
    use std::io::Read as _;
    buf.clear();
    let n = reader
        .by_ref()
        .take((limit as u64).saturating_add(1))
        .read_until(b'\n', buf)?;
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(Line::Whole);
    }
    buf.clear();
    Ok(if n > limit { Line::TooLong } else { Line::End })
}

/// A request line parsed; the error says what is wrong, cut to 200
/// characters (serde's messages may quote what they read).
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    serde_json::from_slice(line).map_err(|e| {
        let mut why = format!("bad request: {e}");
        if let Some((cut, _)) = why.char_indices().nth(200) {
            why.truncate(cut);
            why.push('…');
        }
        why
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_cut_at_the_limit_and_never_read_past_it() {
        let mut input = std::io::Cursor::new(vec![b'x'; 10_000]);
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut input, &mut buf, 100).expect("read"),
            Line::TooLong
        );
        assert_eq!(input.position(), 101, "read no further than limit + 1");
        assert!(buf.is_empty());

        let mut input = std::io::Cursor::new(b"{\"op\":\"stats\"}\r\nrest".to_vec());
        assert_eq!(
            read_line(&mut input, &mut buf, 100).expect("read"),
            Line::Whole
        );
        assert_eq!(parse_request(&buf), Ok(Request::Stats));
        assert_eq!(
            read_line(&mut input, &mut buf, 100).expect("read"),
            Line::End,
            "no newline before the end"
        );
    }

    #[test]
    fn requests_round_trip_and_garbage_is_an_error() {
        let r = Request::Records {
            after: None,
            limit: 5,
        };
        let text = serde_json::to_string(&r).expect("json");
        assert_eq!(text, r#"{"op":"records","after":null,"limit":5}"#);
        assert_eq!(parse_request(text.as_bytes()), Ok(r));
        for bad in [
            &b"garbage"[..],
            b"{}",
            b"{\"op\":\"drop_tables\"}",
            b"{\"op\":\"records\",\"limit\":-1}",
            b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
            b"\xff\xfe",
            b"{\"op\":\"stats\",\"padding\":[0,0,0,0]}",
            b"{\"op\":\"stats\",\"user\":\"alice\"}",
            b"{\"op\":\"destroy_user\"}",
            b"{\"op\":\"records\",\"after\":null}",
        ] {
            let e = parse_request(bad).expect_err("refused");
            assert!(e.starts_with("bad request"), "{e}");
        }
    }
}
