//! Properties of signing and verifying, over random keys, ids and cookies.

use std::cell::Cell;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use sessiondb::{CookieConfig, Key, KeyRing, Purpose, SessionId, TOKEN_VERSION, Token};

fn key_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 32..=100)
}

fn purpose() -> impl Strategy<Value = Purpose> {
    prop_oneof![Just(Purpose::Session), Just(Purpose::Csrf)]
}

fn key(bytes: &[u8]) -> Key {
    Key::try_from(bytes).expect("at least 32 bytes")
}

proptest! {
    #[test]
    fn sign_then_verify_round_trips(k in key_bytes(), kid: u32, id: [u8; 32], p in purpose()) {
        let ring = KeyRing::new(kid, key(&k));
        let id = SessionId::from_bytes(id);
        let token = ring.sign(p, &id);
        prop_assert_eq!(token.as_str().len(), Token::LEN);
        prop_assert_eq!(ring.verify(p, token.as_str().as_bytes()), Some(id));
    }

    #[test]
    fn any_single_bit_flip_of_the_text_fails(k in key_bytes(), id: [u8; 32], pos in 0..Token::LEN, bit in 0u8..8) {
        let ring = KeyRing::new(1, key(&k));
        let token = ring.sign(Purpose::Session, &SessionId::from_bytes(id));
        let mut bytes = token.as_str().as_bytes().to_vec();
        bytes[pos] ^= 1 << bit;
        prop_assert_eq!(ring.verify(Purpose::Session, &bytes), None);
    }

    #[test]
    fn any_single_bit_flip_of_the_binary_fails(k in key_bytes(), id: [u8; 32], pos in 0usize..69, bit in 0u8..8) {
        // Flipping the decoded bytes and re-encoding reaches the HMAC (or the
        // version and key id checks) with well-formed base64.
        let ring = KeyRing::new(1, key(&k));
        let token = ring.sign(Purpose::Session, &SessionId::from_bytes(id));
        let mut bin = URL_SAFE_NO_PAD.decode(token.as_str()).expect("our token");
        bin[pos] ^= 1 << bit;
        let reencoded = URL_SAFE_NO_PAD.encode(&bin);
        prop_assert_eq!(ring.verify(Purpose::Session, reencoded.as_bytes()), None);
    }

    #[test]
    fn rotated_out_keys_fail(old in key_bytes(), new in key_bytes(), id: [u8; 32]) {
        prop_assume!(old != new);
        let id = SessionId::from_bytes(id);
        let mut ring = KeyRing::new(1, key(&old));
        let before = ring.sign(Purpose::Session, &id);
        ring.rotate(2, key(&new)).expect("fresh id");
        let after = ring.sign(Purpose::Session, &id);
        prop_assert_eq!(ring.verify(Purpose::Session, before.as_str().as_bytes()), Some(id));
        ring.remove(1).expect("verifying key");
        prop_assert_eq!(ring.verify(Purpose::Session, before.as_str().as_bytes()), None);
        prop_assert_eq!(ring.verify(Purpose::Session, after.as_str().as_bytes()), Some(id));
        // A ring that never held the old key rejects its tokens too.
        let fresh = KeyRing::new(1, key(&new));
        prop_assert_eq!(fresh.verify(Purpose::Session, before.as_str().as_bytes()), None);
    }

    #[test]
    fn our_cookie_is_found_among_random_others(
        others in prop::collection::vec(("[A-Za-z0-9_.-]{1,20}", "[!#-+\\--:<-\\[\\]-~]{0,60}"), 0..30),
        at: prop::sample::Index,
        tight: bool,
        quoted: bool,
        id: [u8; 32],
    ) {
        let cookies = CookieConfig::default();
        let ring = KeyRing::new(9, key(&[3; 32]));
        let id = SessionId::from_bytes(id);
        let token = ring.sign(Purpose::Session, &id);
        let mut jar: Vec<String> = others
            .iter()
            .filter(|(n, _)| n != cookies.name())
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let value = if quoted { format!("\"{}\"", token.as_str()) } else { token.as_str().to_owned() };
        jar.insert(at.index(jar.len() + 1), format!("{}={value}", cookies.name()));
        let header = jar.join(if tight { ";" } else { "; " });
        prop_assert_eq!(cookies.find_session(&ring, [header.as_bytes()]), Some(id));
        // The same header without our cookie finds nothing.
        let without: Vec<&str> = header
            .split(';')
            .filter(|c| !c.trim_start().starts_with(cookies.name()))
            .collect();
        prop_assert_eq!(cookies.find_session(&ring, [without.join(";").as_bytes()]), None);
    }
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Another token, to splice into ours or to stand in for it.
#[derive(Debug, Clone)]
enum Other {
    /// Same key, another id.
    Id([u8; 32]),
    /// Another key under the same key id, same id.
    Key(Vec<u8>),
    /// Same key and id, signed for the other purpose.
    Purpose,
}

/// How an input near a valid session token is made. Arbitrary bytes
/// almost never have the token's length, let alone its alphabet, so they
/// stop at the first check; these mostly get as far as the tag.
#[derive(Debug, Clone)]
enum Mutation {
    /// One character replaced by another of the base64url alphabet.
    Substitute { at: usize, with: u8 },
    /// One bit of the decoded bytes flipped, then re-encoded.
    FlipBit { bit: usize },
    /// Two characters swapped.
    Swap { a: usize, b: usize },
    /// The first `at` characters of ours, the rest of another token.
    Splice { at: usize, other: Other },
    /// Another token whole.
    Foreign(Other),
    /// Our version and key id (the first 8 characters hold both, and the
    /// id's first byte), then random base64url text.
    RandomBody(Vec<u8>),
    /// Cut short.
    Truncate { len: usize },
    /// Extra bytes after the token.
    Extend(Vec<u8>),
    /// Anything at all.
    Arbitrary(Vec<u8>),
}

fn other() -> impl Strategy<Value = Other> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(Other::Id),
        key_bytes().prop_map(Other::Key),
        Just(Other::Purpose),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let alphabet_char = prop::sample::select(ALPHABET);
    prop_oneof![
        3 => (0..Token::LEN, alphabet_char.clone())
            .prop_map(|(at, with)| Mutation::Substitute { at, with }),
        2 => (0..69 * 8usize).prop_map(|bit| Mutation::FlipBit { bit }),
        1 => (0..Token::LEN, 0..Token::LEN).prop_map(|(a, b)| Mutation::Swap { a, b }),
        2 => (0..=Token::LEN, other()).prop_map(|(at, other)| Mutation::Splice { at, other }),
        2 => other().prop_map(Mutation::Foreign),
        2 => prop::collection::vec(alphabet_char, Token::LEN - 8)
            .prop_map(Mutation::RandomBody),
        1 => (0..Token::LEN).prop_map(|len| Mutation::Truncate { len }),
        1 => prop::collection::vec(any::<u8>(), 1..8).prop_map(Mutation::Extend),
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Mutation::Arbitrary),
    ]
}

/// Applies `m` to `token` (signed by `key` under key id `kid` for `id`).
/// Also returns the other token the mutation used, if it is one this ring
/// accepts (another id under the same key), with its id: a splice can
/// give it back whole.
fn apply(
    m: &Mutation,
    token: &str,
    key: &[u8],
    kid: u32,
    id: &SessionId,
) -> (Vec<u8>, Option<(Vec<u8>, SessionId)>) {
    let other_token = |other: &Other| {
        let (ring, id, purpose) = match other {
            Other::Id(bytes) => (
                KeyRing::new(kid, self::key(key)),
                SessionId::from_bytes(*bytes),
                Purpose::Session,
            ),
            Other::Key(other_key) => (
                KeyRing::new(kid, self::key(other_key)),
                *id,
                Purpose::Session,
            ),
            Other::Purpose => (KeyRing::new(kid, self::key(key)), *id, Purpose::Csrf),
        };
        let text = ring.sign(purpose, &id).as_str().as_bytes().to_vec();
        let valid = matches!(other, Other::Id(_)).then(|| (text.clone(), id));
        (text, valid)
    };
    let mut text = token.as_bytes().to_vec();
    let mut valid = None;
    match m {
        Mutation::Substitute { at, with } => text[*at] = *with,
        Mutation::FlipBit { bit } => {
            let mut bin = URL_SAFE_NO_PAD.decode(token).expect("our token");
            bin[bit / 8] ^= 1 << (bit % 8);
            text = URL_SAFE_NO_PAD.encode(&bin).into_bytes();
        }
        Mutation::Swap { a, b } => text.swap(*a, *b),
        Mutation::Splice { at, other } => {
            let (other, other_valid) = other_token(other);
            text.truncate(*at);
            text.extend_from_slice(&other[*at..]);
            valid = other_valid;
        }
        Mutation::Foreign(other) => (text, valid) = other_token(other),
        Mutation::RandomBody(body) => {
            text.truncate(8);
            text.extend_from_slice(body);
        }
        Mutation::Truncate { len } => text.truncate(*len),
        Mutation::Extend(extra) => text.extend_from_slice(extra),
        Mutation::Arbitrary(bytes) => text.clone_from(bytes),
    }
    (text, valid)
}

/// Whether `input` passes every check `verify` makes before the tag: the
/// length, strict base64url, the version byte, a key id of the ring.
fn reaches_the_tag(input: &[u8], kid: u32) -> bool {
    input.len() == Token::LEN
        && URL_SAFE_NO_PAD
            .decode(input)
            .is_ok_and(|bin| bin[0] == TOKEN_VERSION && bin[1..5] == kid.to_be_bytes())
}

#[test]
fn only_the_token_itself_verifies_among_its_near_misses() {
    let (total, reached, rejected_at_the_tag) = (Cell::new(0), Cell::new(0), Cell::new(0));
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let inputs = (key_bytes(), any::<u32>(), any::<[u8; 32]>(), mutation());
    let result = runner.run(&inputs, |(k, kid, id, m)| {
        let id = SessionId::from_bytes(id);
        let ring = KeyRing::new(kid, key(&k));
        let token = ring.sign(Purpose::Session, &id);
        let (input, other) = apply(&m, token.as_str(), &k, kid, &id);
        // Some mutations give a valid token back (a swap of equal
        // characters, a splice at either end): that, and only that,
        // verifies, to its own id.
        let expected = if input == token.as_str().as_bytes() {
            Some(id)
        } else {
            other.and_then(|(text, other_id)| (input == text).then_some(other_id))
        };
        prop_assert_eq!(ring.verify(Purpose::Session, &input), expected, "{:?}", m);
        total.set(total.get() + 1);
        if reaches_the_tag(&input, kid) {
            reached.set(reached.get() + 1);
            if expected.is_none() {
                rejected_at_the_tag.set(rejected_at_the_tag.get() + 1);
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Most inputs get past the length, base64, version and key-id checks,
    // so what is tested is the tag: arbitrary bytes of 0..200 bytes reach it
    // about never.
    let (total, reached, at_tag) = (total.get(), reached.get(), rejected_at_the_tag.get());
    println!("{reached} of {total} inputs reached the tag check; {at_tag} were refused there");
    assert!(
        at_tag * 2 >= total,
        "only {at_tag} of {total} inputs were refused by the tag check"
    );
}
