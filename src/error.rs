//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// A boxed error from a storage backend, source kept.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in sessiondb.
///
/// A cookie that is missing, malformed, forged or signed by a removed key is
/// *not* an error: it is "no session" (`None`). Errors are for bad
/// configuration and system failures, so a caller can map every `Err` to a
/// server-side problem (HTTP 500) without leaking anything to the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A signing key shorter than [`Key::MIN_LEN`](crate::Key::MIN_LEN) bytes was offered.
    #[error("signing key too short: {len} bytes, at least {min} required")]
    KeyTooShort {
        /// Length of the offered key, in bytes.
        len: usize,
        /// The minimum accepted length, in bytes.
        min: usize,
    },

    /// A key id was added to a key ring that already holds it.
    #[error("key id {0} is already in the key ring")]
    DuplicateKeyId(u32),

    /// A key ring operation named a key id that the ring does not hold.
    #[error("key id {0} is not in the key ring")]
    UnknownKeyId(u32),

    /// The signing key cannot be removed from its ring; rotate first.
    #[error("key id {0} is the signing key and cannot be removed; rotate to a new key first")]
    RemoveSigningKey(u32),

    /// A key ring may hold at most [`KeyRing::MAX_KEYS`](crate::KeyRing::MAX_KEYS) keys.
    #[error("key ring is full ({max} keys); remove an old key first")]
    KeyRingFull {
        /// The ring's capacity.
        max: usize,
    },

    /// A cookie setting would produce an unsafe or malformed `Set-Cookie` header.
    #[error("invalid cookie setting `{field}`: {reason}")]
    InvalidCookie {
        /// Which setting was refused (`name`, `path`, `domain`, `same_site`, ...).
        field: &'static str,
        /// Why it was refused.
        reason: &'static str,
    },

    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Rng(#[source] io::Error),

    /// A setting of [`Config`](crate::Config) is out of range.
    #[error("invalid setting `{field}`: {reason}")]
    InvalidConfig {
        /// Which setting.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },

    /// Another process (or another engine in this one) holds the store.
    #[error(
        "the session store at {} is in use by another process (or another open engine); \
         close that one first",
        path.display()
    )]
    Locked {
        /// The store's directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: BoxError,
    },

    /// The directory exists but does not hold a sessiondb store.
    #[error("{} is not a sessiondb store: {reason}", path.display())]
    NotAStore {
        /// The directory.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },

    /// A file-system operation on the store failed.
    #[error("I/O error on {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The storage backend failed.
    #[error("storage backend failed")]
    Storage(#[source] BoxError),

    /// Reading the store panicked: sled panics when pages its log points
    /// at are missing or unreadable (seen only after power cuts, on stores
    /// whose records reached sled's blob files). Open refuses such a store
    /// rather than serve it with whole key ranges gone. sled's own
    /// recovery may have written to it already; it stays marked as not
    /// closed cleanly, so every later open checks it again.
    #[error("the store in {path} is damaged: reading it panicked ({reason})")]
    Damaged {
        /// The store's directory.
        path: std::path::PathBuf,
        /// The panic's message (sled's own words).
        reason: String,
    },

    /// A stored record does not decode. Other sessions are unaffected.
    #[error("session {id_hint}: stored record is corrupt")]
    Corrupt {
        /// The first characters of the session's id.
        id_hint: String,
        /// What is wrong with it.
        #[source]
        source: crate::record::FormatError,
    },

    /// The session changed since this copy was loaded: load it again (or use
    /// [`Engine::update`](crate::Engine::update), which retries).
    #[error("session {id_hint} was changed by another request since it was loaded")]
    Conflict {
        /// The first characters of the session's id.
        id_hint: String,
    },

    /// The session was destroyed or expired since it was loaded; it is not
    /// brought back.
    #[error("session {id_hint} no longer exists (destroyed or expired)")]
    Gone {
        /// The first characters of the session's id.
        id_hint: String,
    },

    /// The encoded session exceeds the configured maximum. Nothing was
    /// written or truncated.
    #[error("session is {size} bytes encoded, over the limit of {limit} bytes")]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// A user id that is empty or too long.
    #[error("user id must be 1 to {max} bytes, got {len}")]
    InvalidUser {
        /// The offered length.
        len: usize,
        /// The most accepted.
        max: usize,
    },

    /// A record offered to [`Admin::import`](crate::Admin::import) has
    /// times no session of this engine can have. Nothing was written.
    #[error("session {id_hint}: record refused: {reason}")]
    InvalidRecord {
        /// The first characters of the session's id.
        id_hint: String,
        /// What is impossible about it.
        reason: &'static str,
    },

    /// A tower-sessions record ([`TowerStore`](crate::TowerStore)) that
    /// cannot be stored as it is (its user is not a string or a number, it
    /// uses the reserved key), or a stored one that does not read back.
    /// Nothing was written.
    #[error("tower-sessions record {id_hint}: {reason}")]
    TowerRecord {
        /// The first characters of the record's tower-sessions id.
        id_hint: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A named value could not be encoded.
    #[error("session value `{key}` does not encode")]
    Encode {
        /// The value's name.
        key: String,
        /// bincode's error.
        #[source]
        source: BoxError,
    },

    /// A session's record could not be encoded.
    #[error("the session record does not encode")]
    EncodeRecord(#[source] BoxError),

    /// A named value did not decode as the requested type.
    #[error("session value `{key}` does not decode as the requested type")]
    Decode {
        /// The value's name.
        key: String,
        /// bincode's error.
        #[source]
        source: BoxError,
    },

    /// A write could not be made durable (a flush failed, at close too) or
    /// the store could not apply a write as it was answered, so its state on
    /// disk is unknown: writes are refused until the engine is reopened, and
    /// the store is not marked closed cleanly (the next open checks it).
    #[error("the store refuses writes until it is reopened: a write could not be made durable")]
    Poisoned {
        /// The first failure, shared by every error that reports it.
        #[source]
        cause: std::sync::Arc<Error>,
    },

    /// A background thread (the sweeper, the sled committer) could not be
    /// started.
    #[error("could not start the {name} thread")]
    Thread {
        /// The thread's name.
        name: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },

    /// The backend does not offer what was asked (a custom backend without
    /// [`Maintenance`](crate::Maintenance)).
    #[error("the backend does not support {what}")]
    Unsupported {
        /// What was asked.
        what: &'static str,
    },

    /// The engine was closed.
    #[error("the engine is closed")]
    Closed,

    /// What a running engine answered through its
    /// [control socket](crate::control): the text of its own error.
    #[error("{message}")]
    Remote {
        /// The engine's error, as it displays it.
        message: String,
    },

    /// The control socket at `path` did not behave: the engine refused the
    /// connection, closed it, or answered what the protocol does not allow.
    #[error("control socket {}: {reason}", path.display())]
    Control {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
