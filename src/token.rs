//! Session ids, signing keys and the signed token that a cookie carries.
//!
//! All of sessiondb's cryptography lives in this module.
//!
//! # Token format, version 1
//!
//! ```text
//! binary (69 bytes):
//!   offset  len  field
//!   0       1    format version, 0x01
//!   1       4    key id, u32 big-endian (which key of the ring signed)
//!   5       32   session id (32 bytes from the OS CSPRNG)
//!   37      32   tag = HMAC-SHA256(key, message)
//!
//! message = "sessiondb\0" || len(purpose) as u8 || purpose || binary[0..37]
//!
//! text: the 69 bytes in base64url without padding: exactly 92 characters
//!       from [A-Za-z0-9_-]. 69 is a multiple of 3, so there are no spare
//!       bits: every token has exactly one text form.
//! ```
//!
//! The tag covers the version, the key id, the id and the token's
//! [`Purpose`], so a tag made for one purpose (say a CSRF token) can never be
//! replayed as a session cookie, and a token cannot be re-labelled with another
//! key id or format version. The cookie's *name* is deliberately not covered:
//! renaming the cookie, or turning the `__Host-` prefix on, must not log every
//! user out.
//!
//! With a 7-byte purpose label the message is 55 bytes, which fits one SHA-256
//! block; each key keeps its HMAC state precomputed, so signing or verifying
//! costs two SHA-256 compressions.
//!
//! # CSRF tokens
//!
//! ```text
//! binary (69 bytes):
//!   offset  len  field
//!   0       1    CSRF format version, 0x01
//!   1       4    key id, u32 big-endian
//!   5       32   mask: 32 fresh bytes from the OS CSPRNG, new every token
//!   37      32   tag XOR mask
//!
//! tag  = HMAC-SHA256(key, "sessiondb\0" || 4 || "csrf" || 0x01 || key id || session id)
//! text = base64url without padding: 92 characters
//! ```
//!
//! Unlike a session token, a CSRF token does not carry the session id: it
//! ends up in pages, forms and headers, where a leak must not hand over the
//! session. The tag is a PRF output, so it reveals nothing of the id, and it
//! can only be checked by recomputing it from the session's id. The mask
//! makes every token's text different (as Django and Rails do), so
//! compression side channels (BREACH) cannot read the tag out of responses.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use rand::TryRng as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::{Zeroize as _, Zeroizing};

use crate::error::{Error, Result};

type HmacSha256 = hmac::Hmac<Sha256>;

/// Current token format version: the first byte of every token.
pub const TOKEN_VERSION: u8 = 1;
/// Length of a token in binary form.
const TOKEN_BIN_LEN: usize = 1 + 4 + SessionId::LEN + TAG_LEN;
/// Length of the part of the token that the tag covers.
const SIGNED_LEN: usize = 1 + 4 + SessionId::LEN;
const TAG_LEN: usize = 32;
/// Domain separation: no other protocol that might share a key starts its
/// MAC input with these bytes.
const DOMAIN: &[u8] = b"sessiondb\0";

/// A session id: 32 bytes from the operating system's CSPRNG.
///
/// The id is a bearer secret, so `Debug` shows only a short [hint](Self::hint).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; SessionId::LEN]);

impl SessionId {
    /// Length of a session id in bytes.
    pub const LEN: usize = 32;

    /// A fresh id from the operating system's random number generator.
    ///
    /// Never derived from time, a counter or a hash of either.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; Self::LEN];
        rand::rngs::SysRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| Error::Rng(e.into()))?;
        Ok(Self(bytes))
    }

    /// Wraps raw bytes, for ids read back from storage.
    pub const fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes, as stored.
    pub const fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    /// The full id in base64url (43 characters), for operators' tools.
    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parses the output of [`to_base64`](Self::to_base64); `None` for
    /// anything else.
    pub fn from_base64(text: &str) -> Option<Self> {
        let mut bytes = [0u8; Self::LEN];
        // 43 characters decode to exactly 32 bytes; the length check keeps
        // decode_slice from ever seeing more input than that.
        if text.len() != 43 {
            return None;
        }
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(Self::LEN) => Some(Self(bytes)),
            _ => None,
        }
    }

    /// The first 8 base64url characters (48 bits): enough to tell sessions
    /// apart in a list or a log line, not enough to hijack one.
    pub fn hint(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.0[..6])
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({}…)", self.hint())
    }
}

/// What a token is for. The purpose is covered by the tag, so a token made
/// for one purpose never verifies as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Purpose {
    /// The session cookie.
    Session,
    /// A CSRF token bound to a session.
    Csrf,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Session => b"session",
            Purpose::Csrf => b"csrf",
        }
    }
}

/// A secret HMAC-SHA256 signing key.
///
/// Holds the key as HMAC's 64-byte block key (the key zero-padded, or its
/// SHA-256 digest zero-padded when longer than 64 bytes, exactly as HMAC
/// itself does), plus the keyed HMAC state precomputed from it. `Debug`
/// never shows key material, and equality is constant-time. Dropping a key
/// (or any clone of it) overwrites both with zeros.
#[derive(Clone)]
pub struct Key {
    block: [u8; 64],
    mac: HmacSha256,
}

impl Key {
    /// The shortest key accepted: 32 bytes, HMAC-SHA256's security level.
    pub const MIN_LEN: usize = 32;

    /// A fresh 32-byte key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::SysRng
            .try_fill_bytes(&mut bytes[..])
            .map_err(|e| Error::Rng(e.into()))?;
        Self::try_from(&bytes[..])
    }

    /// Overwrites the key: the block with zeros, the HMAC state with that
    /// of an all-zero key (dropping the old state, which wipes itself; see
    /// below). Only `Drop` calls it.
    fn wipe(&mut self) {
        self.block.zeroize();
        self.mac = <HmacSha256 as KeyInit>::new(&[0u8; 64].into());
        #[cfg(test)]
        tests::WIPES.with(|n| n.set(n.get() + 1));
    }

    fn sign_parts(&self, purpose: Purpose, signed: &[u8]) -> HmacSha256 {
        let label = purpose.label();
        let mut mac = self.mac.clone();
        mac.update(DOMAIN);
        // Labels are short constants; the length byte keeps the message
        // unambiguous should a label ever be a prefix of another.
        mac.update(&[label.len() as u8]);
        mac.update(label);
        mac.update(signed);
        mac
    }
}

impl TryFrom<&[u8]> for Key {
    type Error = Error;

    /// Accepts any key of at least [`Key::MIN_LEN`] bytes.
    fn try_from(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < Self::MIN_LEN {
            return Err(Error::KeyTooShort {
                len: bytes.len(),
                min: Self::MIN_LEN,
            });
        }
        // Temporaries that hold key material are wiped too (`Zeroizing`).
        let mut block = Zeroizing::new([0u8; 64]);
        if bytes.len() > 64 {
            let mut digest = Sha256::digest(bytes);
            block[..32].copy_from_slice(&digest);
            digest.as_mut_slice().zeroize();
        } else {
            block[..bytes.len()].copy_from_slice(bytes);
        }
        // HMAC's key size is its block size, so `new` is infallible, and a
        // 64-byte key is used as is: HMAC(block, m) == HMAC(bytes, m).
        let mac = <HmacSha256 as KeyInit>::new(&(*block).into());
        Ok(Self { block: *block, mac })
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.wipe();
    }
}

// The HMAC state wipes itself when it drops only while sha2 is built with
// its `zeroize` feature (which turns on digest's and block-buffer's, see
// Cargo.toml); this stops the build if that feature is ever lost.
const _: fn() = || {
    fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    wiped_on_drop::<Sha256>();
};

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.block.ct_eq(&other.block).into()
    }
}

impl Eq for Key {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// A signed token in its cookie-safe text form (92 base64url characters).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Length of every token's text form.
    pub const LEN: usize = TOKEN_BIN_LEN / 3 * 4;

    /// The token's text, safe to put in a cookie value or a header.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    // A token is as good as the session it names: keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The keys a service signs and verifies with.
///
/// The newest key signs; older keys keep verifying until removed, so a key
/// can be rotated without logging anyone out, and retired once the longest
/// session lifetime has passed.
#[derive(Clone, Debug)]
pub struct KeyRing {
    signer: (u32, Key),
    /// Older keys, newest first: they verify but never sign.
    verifiers: Vec<(u32, Key)>,
}

impl KeyRing {
    /// The most keys a ring holds; bounds the work of a key-id lookup.
    pub const MAX_KEYS: usize = 16;

    /// A ring with one key, which signs and verifies.
    pub fn new(id: u32, key: Key) -> Self {
        Self {
            signer: (id, key),
            verifiers: Vec::new(),
        }
    }

    /// Makes `key` the signing key; the previous keys keep verifying.
    pub fn rotate(&mut self, id: u32, key: Key) -> Result<()> {
        self.check_new(id)?;
        let old = std::mem::replace(&mut self.signer, (id, key));
        self.verifiers.insert(0, old);
        Ok(())
    }

    /// Adds an older key that verifies but never signs (for a service that
    /// restarts after a rotation and must still accept its old cookies).
    pub fn with_verifier(mut self, id: u32, key: Key) -> Result<Self> {
        self.check_new(id)?;
        self.verifiers.push((id, key));
        Ok(self)
    }

    /// Removes a verifying key: tokens it signed stop verifying at once.
    pub fn remove(&mut self, id: u32) -> Result<()> {
        if self.signer.0 == id {
            return Err(Error::RemoveSigningKey(id));
        }
        match self.verifiers.iter().position(|(k, _)| *k == id) {
            None => Err(Error::UnknownKeyId(id)),
            Some(i) => {
                self.verifiers.remove(i);
                Ok(())
            }
        }
    }

    /// The id of the key that signs.
    pub fn signing_key_id(&self) -> u32 {
        self.signer.0
    }

    /// Ids of every key in the ring, the signing key first.
    pub fn key_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys().map(|(id, _)| *id)
    }

    fn keys(&self) -> impl Iterator<Item = &(u32, Key)> {
        std::iter::once(&self.signer).chain(&self.verifiers)
    }

    fn check_new(&self, id: u32) -> Result<()> {
        if self.keys().any(|(k, _)| *k == id) {
            return Err(Error::DuplicateKeyId(id));
        }
        if 1 + self.verifiers.len() >= Self::MAX_KEYS {
            return Err(Error::KeyRingFull {
                max: Self::MAX_KEYS,
            });
        }
        Ok(())
    }

    fn key(&self, id: u32) -> Option<&Key> {
        self.keys().find(|(k, _)| *k == id).map(|(_, key)| key)
    }

    /// Signs `id` for `purpose` with the signing key.
    pub fn sign(&self, purpose: Purpose, id: &SessionId) -> Token {
        let (key_id, key) = &self.signer;
        let mut bin = [0u8; TOKEN_BIN_LEN];
        bin[0] = TOKEN_VERSION;
        bin[1..5].copy_from_slice(&key_id.to_be_bytes());
        bin[5..SIGNED_LEN].copy_from_slice(id.as_bytes());
        let tag = key
            .sign_parts(purpose, &bin[..SIGNED_LEN])
            .finalize()
            .into_bytes();
        bin[SIGNED_LEN..].copy_from_slice(&tag);
        Token(URL_SAFE_NO_PAD.encode(bin))
    }

    /// The session id in `token`, if it is exactly a well-formed token of
    /// the current format, signed for `purpose` by a key in this ring.
    ///
    /// Anything else is `None`. The work is constant for any input: a length
    /// check first, then at most one base64 decode of 92 bytes and one HMAC.
    /// The tag comparison is constant-time.
    pub fn verify(&self, purpose: Purpose, token: &[u8]) -> Option<SessionId> {
        if token.len() != Token::LEN {
            return None;
        }
        let (bin, key) = self.decode::<TOKEN_BIN_LEN>(token, TOKEN_VERSION)?;
        let (signed, tag) = bin.split_at(SIGNED_LEN);
        key.sign_parts(purpose, signed).verify_slice(tag).ok()?;
        let mut id = [0u8; SessionId::LEN];
        id.copy_from_slice(&bin[5..SIGNED_LEN]);
        Some(SessionId(id))
    }

    /// The `N` bytes of a token's text, if it is exactly their base64url
    /// spelling, starts with `version`, and names a key of this ring.
    /// Strict decoding: no padding, no whitespace, and (N being a multiple
    /// of 3) no trailing bits, so a token has only one accepted spelling.
    fn decode<const N: usize>(&self, text: &[u8], version: u8) -> Option<([u8; N], &Key)> {
        if text.len() != N / 3 * 4 {
            return None;
        }
        let mut bin = [0u8; N];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bin) {
            Ok(n) if n == N => {}
            _ => return None,
        }
        if bin.first() != Some(&version) {
            return None;
        }
        let key_id = u32::from_be_bytes([*bin.get(1)?, *bin.get(2)?, *bin.get(3)?, *bin.get(4)?]);
        let key = self.key(key_id)?;
        Some((bin, key))
    }

    /// A CSRF token for the session `id`: the session's CSRF tag under the
    /// signing key (an HMAC of the id for the CSRF purpose, which reveals
    /// nothing of the id), masked with 32 fresh random bytes: 92 base64url
    /// characters. Every call gives another text for the same tag, so a
    /// compressed response does not leak it (BREACH).
    pub fn csrf_token(&self, id: &SessionId) -> Result<String> {
        let (key_id, key) = &self.signer;
        let mut mask = [0u8; TAG_LEN];
        rand::rngs::SysRng
            .try_fill_bytes(&mut mask)
            .map_err(|e| Error::Rng(e.into()))?;
        let tag = csrf_tag(key, *key_id, id);
        let mut bin = [0u8; CSRF_BIN_LEN];
        bin[0] = CSRF_VERSION;
        bin[1..5].copy_from_slice(&key_id.to_be_bytes());
        bin[5..5 + TAG_LEN].copy_from_slice(&mask);
        for (out, (t, m)) in bin[5 + TAG_LEN..].iter_mut().zip(tag.iter().zip(&mask)) {
            *out = t ^ m;
        }
        Ok(URL_SAFE_NO_PAD.encode(bin))
    }

    /// `true` if `token` is a CSRF token of the session `id` from
    /// [`csrf_token`](Self::csrf_token), under any key of this ring: it is
    /// unmasked and its tag recomputed, then compared in constant time.
    /// Bounded work for any input: a length check first, then one base64
    /// decode of 92 bytes and one HMAC.
    pub fn verify_csrf(&self, id: &SessionId, token: &[u8]) -> bool {
        if token.len() != CSRF_LEN {
            return false;
        }
        let Some((bin, key)) = self.decode::<CSRF_BIN_LEN>(token, CSRF_VERSION) else {
            return false;
        };
        let key_id = u32::from_be_bytes([bin[1], bin[2], bin[3], bin[4]]);
        let (mask, masked) = bin[5..].split_at(TAG_LEN);
        let mut tag = [0u8; TAG_LEN];
        for (out, (t, m)) in tag.iter_mut().zip(masked.iter().zip(mask)) {
            *out = t ^ m;
        }
        csrf_tag(key, key_id, id).ct_eq(&tag).into()
    }
}

/// Format version of CSRF tokens: their first byte.
const CSRF_VERSION: u8 = 1;
/// A CSRF token in binary: version, key id, mask, masked tag.
const CSRF_BIN_LEN: usize = 1 + 4 + TAG_LEN + TAG_LEN;
/// A CSRF token's text length: 92 base64url characters.
const CSRF_LEN: usize = CSRF_BIN_LEN / 3 * 4;

/// The CSRF tag of a session: HMAC under the [`Purpose::Csrf`] label over
/// the CSRF format version, the key id and the session id. A PRF output:
/// it tells nothing of the id it was made from.
fn csrf_tag(key: &Key, key_id: u32, id: &SessionId) -> [u8; TAG_LEN] {
    let mut signed = [0u8; SIGNED_LEN];
    signed[0] = CSRF_VERSION;
    signed[1..5].copy_from_slice(&key_id.to_be_bytes());
    signed[5..].copy_from_slice(id.as_bytes());
    key.sign_parts(Purpose::Csrf, &signed)
        .finalize()
        .into_bytes()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fill: u8) -> Key {
        Key::try_from(&[fill; 32][..]).expect("32 bytes is long enough")
    }

    thread_local! {
        /// How many keys this test's thread has wiped.
        pub(super) static WIPES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn mac_of(mac: &HmacSha256) -> [u8; 32] {
        let mut mac = mac.clone();
        mac.update(b"abc");
        mac.finalize().into_bytes().into()
    }

    #[test]
    fn wipe_leaves_nothing_of_the_key() {
        let mut k = key(0xAB);
        let keyed = mac_of(&k.mac);
        k.wipe();
        assert_eq!(k.block, [0u8; 64], "key bytes left after wipe");
        let blank = <HmacSha256 as KeyInit>::new(&[0u8; 64].into());
        assert_ne!(mac_of(&k.mac), keyed, "HMAC state still keyed after wipe");
        assert_eq!(mac_of(&k.mac), mac_of(&blank));
    }

    #[test]
    fn every_key_and_clone_is_wiped_on_drop() {
        let before = WIPES.with(std::cell::Cell::get);
        let k = key(1);
        let copy = k.clone();
        drop(copy);
        drop(k);
        drop(KeyRing::new(1, key(2)));
        assert_eq!(
            WIPES.with(std::cell::Cell::get) - before,
            3,
            "a dropped key was not wiped"
        );
    }

    #[test]
    fn token_text_has_fixed_length_and_alphabet() {
        let ring = KeyRing::new(7, key(1));
        let id = SessionId::generate().expect("OS RNG");
        let token = ring.sign(Purpose::Session, &id);
        assert_eq!(token.as_str().len(), Token::LEN);
        assert_eq!(Token::LEN, 92);
        assert!(
            token
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(
            ring.verify(Purpose::Session, token.as_str().as_bytes()),
            Some(id)
        );
    }

    #[test]
    fn purpose_is_bound() {
        let ring = KeyRing::new(1, key(1));
        let id = SessionId::from_bytes([9; 32]);
        let csrf = ring.sign(Purpose::Csrf, &id);
        assert_eq!(
            ring.verify(Purpose::Session, csrf.as_str().as_bytes()),
            None
        );
        assert_eq!(
            ring.verify(Purpose::Csrf, csrf.as_str().as_bytes()),
            Some(id)
        );
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(matches!(
            Key::try_from(&[0u8; 31][..]),
            Err(Error::KeyTooShort { len: 31, min: 32 })
        ));
        assert!(Key::try_from(&[0u8; 32][..]).is_ok());
        assert!(Key::try_from(&[0u8; 200][..]).is_ok());
    }

    #[test]
    fn long_keys_match_plain_hmac() {
        // The stored block key must behave exactly like HMAC with the
        // original key, for every length class.
        for len in [32usize, 63, 64, 65, 100] {
            let raw: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let ours = Key::try_from(&raw[..]).expect("long enough");
            let mut plain = <HmacSha256 as KeyInit>::new_from_slice(&raw).expect("any length");
            plain.update(b"abc");
            let mut mine = ours.mac.clone();
            mine.update(b"abc");
            assert_eq!(
                plain.finalize().into_bytes(),
                mine.finalize().into_bytes(),
                "len {len}"
            );
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let k = Key::try_from(&[0xAB; 32][..]).expect("long enough");
        let shown = format!("{k:?} {:?}", KeyRing::new(1, k.clone()));
        assert!(!shown.to_lowercase().contains("ab, "), "{shown}");
        assert!(!shown.contains("171"), "{shown}");
        let id = SessionId::from_bytes([0xCD; 32]);
        let dbg = format!("{id:?}");
        assert!(dbg.len() < 24, "{dbg}");
        assert!(!dbg.contains(&id.to_base64()), "{dbg}");
        let token = KeyRing::new(1, key(2)).sign(Purpose::Session, &id);
        assert!(!format!("{token:?}").contains(token.as_str()));
    }

    #[test]
    fn key_equality() {
        assert_eq!(key(1), key(1));
        assert_ne!(key(1), key(2));
        // Same HMAC key after padding, so equal: HMAC cannot tell them apart.
        let mut padded = [0u8; 40];
        padded[..32].copy_from_slice(&[1; 32]);
        assert_eq!(
            Key::try_from(&padded[..]).expect("long enough"),
            key(1).clone()
        );
    }

    #[test]
    fn ring_rotation_and_removal() {
        let mut ring = KeyRing::new(1, key(1));
        let id = SessionId::from_bytes([3; 32]);
        let old = ring.sign(Purpose::Session, &id);
        ring.rotate(2, key(2)).expect("new id");
        assert_eq!(ring.signing_key_id(), 2);
        let new = ring.sign(Purpose::Session, &id);
        assert_ne!(old, new);
        assert_eq!(
            ring.verify(Purpose::Session, old.as_str().as_bytes()),
            Some(id)
        );
        assert_eq!(
            ring.verify(Purpose::Session, new.as_str().as_bytes()),
            Some(id)
        );
        assert!(matches!(
            ring.rotate(1, key(3)),
            Err(Error::DuplicateKeyId(1))
        ));
        assert!(matches!(ring.remove(2), Err(Error::RemoveSigningKey(2))));
        assert!(matches!(ring.remove(9), Err(Error::UnknownKeyId(9))));
        ring.remove(1).expect("verifying key");
        assert_eq!(ring.verify(Purpose::Session, old.as_str().as_bytes()), None);
        assert_eq!(
            ring.verify(Purpose::Session, new.as_str().as_bytes()),
            Some(id)
        );
        assert_eq!(ring.key_ids().collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn ring_is_bounded() {
        let mut ring = KeyRing::new(0, key(0));
        for i in 1..KeyRing::MAX_KEYS as u32 {
            ring.rotate(i, key(i as u8)).expect("room left");
        }
        assert!(matches!(
            ring.rotate(99, key(99)),
            Err(Error::KeyRingFull { max: 16 })
        ));
    }

    #[test]
    fn wrong_version_or_key_id_is_rejected() {
        let ring = KeyRing::new(5, key(5));
        let id = SessionId::from_bytes([1; 32]);
        let token = ring.sign(Purpose::Session, &id);
        let mut bin = URL_SAFE_NO_PAD
            .decode(token.as_str())
            .expect("our own token");
        bin[0] = 2;
        assert_eq!(
            ring.verify(Purpose::Session, URL_SAFE_NO_PAD.encode(&bin).as_bytes()),
            None
        );
        bin[0] = 1;
        bin[4] = 6; // key id 6, which the ring lacks
        assert_eq!(
            ring.verify(Purpose::Session, URL_SAFE_NO_PAD.encode(&bin).as_bytes()),
            None
        );
    }

    #[test]
    fn padded_or_standard_alphabet_forms_are_rejected() {
        use base64::engine::general_purpose::STANDARD_NO_PAD;
        let ring = KeyRing::new(5, key(5));
        // Bytes 0xFB spell "-_v7" in base64url, so this token holds both
        // characters the standard alphabet spells differently ('+', '/'):
        // the id sits at bytes 5..37 of the token, whatever the tag is.
        let token = ring.sign(Purpose::Session, &SessionId::from_bytes([0xFB; 32]));
        let text = token.as_str();
        assert!(text.contains('-') && text.contains('_'), "{text}");
        let bin = URL_SAFE_NO_PAD.decode(text).expect("our token");
        for other in [
            text.replace('-', "+").replace('_', "/"),
            text.replacen('-', "+", 1),
            text.replacen('_', "/", 1),
        ] {
            // The same bytes in the other alphabet: only the spelling is wrong.
            assert_ne!(other, text);
            assert_eq!(
                STANDARD_NO_PAD
                    .decode(other.replace('-', "+").replace('_', "/"))
                    .expect("standard base64"),
                bin
            );
            assert_eq!(ring.verify(Purpose::Session, other.as_bytes()), None);
        }
        let padded = format!("{text}==");
        assert_eq!(ring.verify(Purpose::Session, padded.as_bytes()), None);
        assert_eq!(ring.verify(Purpose::Session, b""), None);
        assert_eq!(
            ring.verify(Purpose::Session, text.as_bytes()),
            Some(SessionId::from_bytes([0xFB; 32]))
        );
    }

    #[test]
    fn session_id_text_round_trip() {
        let id = SessionId::generate().expect("OS RNG");
        assert_eq!(SessionId::from_base64(&id.to_base64()), Some(id));
        assert_eq!(id.hint().len(), 8);
        assert!(id.to_base64().starts_with(&id.hint()));
        assert_eq!(SessionId::from_base64("short"), None);
        assert_eq!(SessionId::from_base64(&"!".repeat(43)), None);
        assert_ne!(SessionId::generate().expect("OS RNG"), id);
    }
}
