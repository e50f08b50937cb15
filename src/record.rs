//! What one session holds, and its bytes on disk.
//!
//! # Stored value format, version 1
//!
//! The value of a session in the `sessions` tree (and, later, the value of a
//! session key in Redis):
//!
//! ```text
//!   offset  len  field
//!   0       1    format version, 0x01
//!   1       8    record version, u64 big-endian; +1 on every write
//!   9       8    expires_at, ms since the Unix epoch, u64 big-endian
//!   17      2    user id length n, u16 big-endian; 0 = no user
//!   19      n    user id, UTF-8
//!   19+n    ..   body: bincode 2 (standard config, serde) of `Body`
//! ```
//!
//! # Version 2: a record whose expiry entry lags
//!
//! The same, with one more field after `expires_at`:
//!
//! ```text
//!   0       1    format version, 0x02
//!   1       8    record version
//!   9       8    expires_at
//!   17      8    indexed_at: the time of the session's `expiry` entry,
//!                at or before expires_at (a decoder refuses one after it)
//!   25      2    user id length n
//!   27      n    user id
//!   27+n    ..   body
//! ```
//!
//! A touch or an update that only moves a session's expiry later leaves
//! its `expiry` entry where it was (see the sled backend); the record then
//! says where that entry is. A version 1 record's entry is at its
//! `expires_at`, and a record whose entry is there is written as version 1.
//!
//! The fixed header lets a backend keep its indexes (expiry, user) and check
//! versions without decoding the body, and lets a reader drop an expired
//! session before paying for bincode. The body holds the times and the named
//! values; each value is itself bincode of the caller's serde type, so one
//! value of a type the reader no longer knows does not make the whole
//! session unreadable.
//!
//! A decoder meets an unknown format version, a record version no store
//! can reach ([`MAX_VERSION`]), a truncated header, bad UTF-8, a body that
//! does not decode, or trailing bytes with a [`FormatError`],
//! never a panic; bincode's allocation limit keeps a hostile length prefix
//! from allocating more than [`MAX_DECODE_BYTES`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The stored-value format of a record whose expiry entry is at its
/// expiry time, which every record starts as.
pub const FORMAT_VERSION: u8 = 1;
/// The stored-value format of a record whose expiry entry lags behind its
/// expiry time.
pub const FORMAT_VERSION_LAGGING: u8 = 2;
const HEADER_LEN: usize = 19;
const HEADER_LEN_LAGGING: usize = 27;
/// The longest user id, in bytes.
pub const MAX_USER_LEN: usize = 1024;
/// Upper bound on what decoding one body may allocate.
pub const MAX_DECODE_BYTES: usize = 64 * 1024 * 1024;
/// Record versions at or past this (2^63) do not decode. No store writes
/// one session 2^63 times, so such a version is damage; refusing it leaves
/// whoever holds a decoded version 2^63 increments of room, so `+ 1` on a
/// version read back (a touch, then saves of the same copy) never
/// overflows.
pub const MAX_VERSION: u64 = 1 << 63;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_DECODE_BYTES>()
}

/// Why stored bytes are not a valid record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Shorter than the fixed header, or than the user id it announces.
    #[error("record truncated: {len} bytes")]
    Truncated {
        /// Length of the bytes found.
        len: usize,
    },
    /// A format version this build does not know.
    #[error("unknown record format version {0}")]
    UnknownVersion(u8),
    /// The user id is not UTF-8.
    #[error("user id is not UTF-8")]
    BadUser,
    /// The body did not decode.
    #[error("record body does not decode")]
    Body(#[source] bincode::error::DecodeError),
    /// Bytes after the body.
    #[error("{0} trailing bytes after the record body")]
    Trailing(usize),
    /// A record version of 2^63 or more: versions start at 1 and grow by
    /// one per write, so only damage gets there.
    #[error("record version {0} is past the largest a store can reach")]
    VersionOutOfRange(u64),
    /// A version 2 record whose expiry entry would come after its expiry:
    /// entries may lag, never lead.
    #[error("record's expiry entry at {indexed_at} is after its expiry at {expires_at}")]
    IndexLeads {
        /// The time of the entry the record names.
        indexed_at: u64,
        /// The record's expiry.
        expires_at: u64,
    },
}

/// The header fields of a stored value, borrowed from its bytes.
///
/// `Debug` says whether there is a user, not who.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Meta<'a> {
    /// Record version: +1 on every write.
    pub version: u64,
    /// When the session expires, ms since the Unix epoch.
    pub expires_at: u64,
    /// The time of the session's `expiry` entry: `expires_at`, or earlier
    /// where the entry lags (format version 2).
    pub indexed_at: u64,
    /// The user the session belongs to, if any.
    pub user: Option<&'a str>,
}

impl std::fmt::Debug for Meta<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meta")
            .field("version", &self.version)
            .field("expires_at", &self.expires_at)
            .field("indexed_at", &self.indexed_at)
            .field("has_user", &self.user.is_some())
            .finish()
    }
}

impl<'a> Meta<'a> {
    /// Reads the header of a stored value; returns it and the body bytes.
    pub fn parse(bytes: &'a [u8]) -> Result<(Self, &'a [u8]), FormatError> {
        let truncated = FormatError::Truncated { len: bytes.len() };
        let header_len = match bytes.first() {
            None => return Err(truncated),
            Some(&FORMAT_VERSION) => HEADER_LEN,
            Some(&FORMAT_VERSION_LAGGING) => HEADER_LEN_LAGGING,
            Some(&v) => return Err(FormatError::UnknownVersion(v)),
        };
        if bytes.len() < header_len {
            return Err(truncated);
        }
        let (header, rest) = bytes.split_at(header_len);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let version = u64_at(1);
        if version >= MAX_VERSION {
            return Err(FormatError::VersionOutOfRange(version));
        }
        let expires_at = u64_at(9);
        let indexed_at = match header_len {
            HEADER_LEN_LAGGING => u64_at(17),
            _ => expires_at,
        };
        if indexed_at > expires_at {
            return Err(FormatError::IndexLeads {
                indexed_at,
                expires_at,
            });
        }
        let user_len = usize::from(u16::from_be_bytes([
            header[header_len - 2],
            header[header_len - 1],
        ]));
        if rest.len() < user_len {
            return Err(truncated);
        }
        let (user, body) = rest.split_at(user_len);
        let user = match user_len {
            0 => None,
            _ => Some(std::str::from_utf8(user).map_err(|_| FormatError::BadUser)?),
        };
        Ok((
            Meta {
                version,
                expires_at,
                indexed_at,
                user,
            },
            body,
        ))
    }
}

/// The same stored value with its expiry entry at `indexed_at` (at or
/// before its expiry): version 2 where the entry lags, version 1 where it
/// is at the expiry.
pub fn with_indexed_at(bytes: &[u8], indexed_at: u64) -> Result<Vec<u8>, FormatError> {
    let (meta, body) = Meta::parse(bytes)?;
    if indexed_at > meta.expires_at {
        return Err(FormatError::IndexLeads {
            indexed_at,
            expires_at: meta.expires_at,
        });
    }
    let user = meta.user.unwrap_or("");
    // The user's length fit the header it came from.
    let user_len = user.len() as u16;
    let lagging = indexed_at != meta.expires_at;
    let mut out = Vec::with_capacity(HEADER_LEN_LAGGING + user.len() + body.len());
    out.push(match lagging {
        true => FORMAT_VERSION_LAGGING,
        false => FORMAT_VERSION,
    });
    out.extend_from_slice(&meta.version.to_be_bytes());
    out.extend_from_slice(&meta.expires_at.to_be_bytes());
    if lagging {
        out.extend_from_slice(&indexed_at.to_be_bytes());
    }
    out.extend_from_slice(&user_len.to_be_bytes());
    out.extend_from_slice(user.as_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// The body of a record: times and named values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Body {
    /// When the session was created, ms since the Unix epoch.
    pub created_ms: u64,
    /// When the session was last seen (as of the last write).
    pub last_seen_ms: u64,
    /// `created_ms + absolute timeout`: the session never outlives this.
    pub absolute_deadline_ms: u64,
    /// The idle timeout in force for this session, in ms.
    pub idle_timeout_ms: u64,
    /// Named values, each bincode of the caller's serde type.
    pub data: BTreeMap<String, Vec<u8>>,
}

impl Body {
    /// `min(last_seen + idle, created + absolute)`.
    pub fn expires_at(&self) -> u64 {
        self.last_seen_ms
            .saturating_add(self.idle_timeout_ms)
            .min(self.absolute_deadline_ms)
    }
}

/// Frames a stored value: the header, then `body` (the backends' part of
/// the format).
pub fn frame(
    version: u64,
    expires_at: u64,
    user: Option<&str>,
    body: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let user = user.unwrap_or("");
    let user_len = u16::try_from(user.len()).map_err(|_| EncodeError::UserTooLong)?;
    let mut out = Vec::with_capacity(framed_len(user.len(), body.len()));
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&expires_at.to_be_bytes());
    out.extend_from_slice(&user_len.to_be_bytes());
    out.extend_from_slice(user.as_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// The length of a framed value whose user is `user_len` bytes long.
pub fn framed_len(user_len: usize, body_len: usize) -> usize {
    HEADER_LEN + user_len + body_len
}

/// Encodes a body (the engine's part of the format).
pub fn encode_body(body: &Body) -> Result<Vec<u8>, EncodeError> {
    // One allocation: the values, their names, and room for the lengths
    // and times (varints, at most 10 bytes each).
    let size = 48
        + body
            .data
            .iter()
            .map(|(k, v)| k.len() + v.len() + 20)
            .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    bincode::serde::encode_into_std_write(body, &mut out, bincode_config())
        .map_err(EncodeError::Body)?;
    Ok(out)
}

/// Decodes a body; the whole of `bytes` must be used.
pub fn decode_body(bytes: &[u8]) -> Result<Body, FormatError> {
    let (decoded, used): (Body, usize) =
        bincode::serde::decode_from_slice(bytes, bincode_config()).map_err(FormatError::Body)?;
    if used != bytes.len() {
        return Err(FormatError::Trailing(bytes.len() - used));
    }
    Ok(decoded)
}

/// Encodes a whole stored value, a framed body: for the tests (the engine
/// encodes bodies, the backends frame them).
#[cfg(test)]
pub fn encode(version: u64, user: Option<&str>, body: &Body) -> Result<Vec<u8>, EncodeError> {
    frame(version, body.expires_at(), user, &encode_body(body)?)
}

/// Why a record could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The user id does not fit the header.
    #[error("user id longer than 65535 bytes")]
    UserTooLong,
    /// bincode refused the body.
    #[error("record body does not encode")]
    Body(#[source] bincode::error::EncodeError),
}

/// Decodes a whole stored value into its header and body.
pub fn decode(bytes: &[u8]) -> Result<(Meta<'_>, Body), FormatError> {
    let (meta, body) = Meta::parse(bytes)?;
    Ok((meta, decode_body(body)?))
}

/// Encodes one named value (any serde type).
pub fn encode_value<T: Serialize + ?Sized>(
    value: &T,
) -> Result<Vec<u8>, bincode::error::EncodeError> {
    bincode::serde::encode_to_vec(value, bincode_config())
}

/// Decodes one named value; the whole of `bytes` must be used.
pub fn decode_value<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, bincode::error::DecodeError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, bincode_config())?;
    if used != bytes.len() {
        return Err(bincode::error::DecodeError::OtherString(format!(
            "{} trailing bytes: the value was stored as another type",
            bytes.len() - used
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Body {
        let mut data = BTreeMap::new();
        data.insert("n".to_owned(), encode_value(&7u32).expect("encodes"));
        Body {
            created_ms: 1_000,
            last_seen_ms: 2_000,
            absolute_deadline_ms: 100_000,
            idle_timeout_ms: 5_000,
            data,
        }
    }

    #[test]
    fn round_trip_with_and_without_user() {
        for user in [None, Some("alice"), Some("ünïcode")] {
            let bytes = encode(9, user, &body()).expect("encodes");
            let (meta, decoded) = decode(&bytes).expect("decodes");
            assert_eq!(meta.version, 9);
            assert_eq!(meta.expires_at, 7_000);
            assert_eq!(meta.user, user);
            assert_eq!(decoded, body());
        }
    }

    #[test]
    fn expiry_is_the_earlier_of_idle_and_absolute() {
        let mut b = body();
        assert_eq!(b.expires_at(), 7_000);
        b.absolute_deadline_ms = 6_000;
        assert_eq!(b.expires_at(), 6_000);
        b.last_seen_ms = u64::MAX;
        assert_eq!(b.expires_at(), 6_000);
    }

    /// A lagging record names its entry and keeps everything else; one
    /// whose entry is back at its expiry is version 1 again, byte for byte.
    #[test]
    fn a_lagging_entry_round_trips_and_never_leads() {
        let good = encode(5, Some("bob"), &body()).expect("encodes");
        let (m, b) = decode(&good).expect("decodes");
        assert_eq!((m.indexed_at, m.expires_at), (7_000, 7_000));
        let lagging = with_indexed_at(&good, 6_000).expect("reframes");
        assert_eq!(lagging[0], FORMAT_VERSION_LAGGING);
        assert_eq!(lagging.len(), good.len() + 8);
        let (lm, lb) = decode(&lagging).expect("decodes");
        assert_eq!(lm.indexed_at, 6_000);
        assert_eq!(
            (lm.version, lm.expires_at, lm.user),
            (5, 7_000, Some("bob"))
        );
        assert_eq!(lb, b);
        assert_eq!(with_indexed_at(&lagging, 7_000).expect("reframes"), good);
        assert!(matches!(
            with_indexed_at(&good, 7_001),
            Err(FormatError::IndexLeads { .. })
        ));
        // Stored bytes whose entry leads are damage, not a record.
        let mut leads = lagging.clone();
        leads[17..25].copy_from_slice(&7_001u64.to_be_bytes());
        assert!(matches!(
            decode(&leads),
            Err(FormatError::IndexLeads {
                indexed_at: 7_001,
                expires_at: 7_000
            })
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let good = encode(1, Some("bob"), &body()).expect("encodes");
        for len in 0..good.len() {
            assert!(decode(&good[..len]).is_err(), "prefix of {len} bytes");
        }
        let mut unknown = good.clone();
        unknown[0] = 3;
        assert!(matches!(
            decode(&unknown),
            Err(FormatError::UnknownVersion(3))
        ));
        let lagging = with_indexed_at(&good, 100).expect("reframes");
        for len in 0..lagging.len() {
            assert!(decode(&lagging[..len]).is_err(), "prefix of {len} bytes");
        }
        assert!(matches!(decode(&[7]), Err(FormatError::UnknownVersion(7))));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(decode(&trailing), Err(FormatError::Trailing(1))));
        for version in [MAX_VERSION, u64::MAX] {
            let past = encode(version, None, &body()).expect("encodes");
            assert!(matches!(
                decode(&past),
                Err(FormatError::VersionOutOfRange(v)) if v == version
            ));
        }
        assert!(decode(&encode(MAX_VERSION - 1, None, &body()).expect("encodes")).is_ok());
        let mut bad_user = good.clone();
        bad_user[HEADER_LEN] = 0xff;
        assert!(matches!(decode(&bad_user), Err(FormatError::BadUser)));
        // A body claiming a huge map must fail on the limit, not allocate.
        let mut huge = good[..HEADER_LEN + 3].to_vec();
        huge.extend_from_slice(&[
            1, 2, 3, 4, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ]);
        assert!(decode(&huge).is_err());
    }

    #[test]
    fn a_value_read_as_another_type_is_an_error() {
        let bytes = encode_value(&"text").expect("encodes");
        assert!(decode_value::<u8>(&bytes).is_err());
        assert_eq!(decode_value::<String>(&bytes).expect("same type"), "text");
    }
}
