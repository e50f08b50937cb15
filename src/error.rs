//! The crate's one error type.

use std::io;

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
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
