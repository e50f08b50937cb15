//! Properties of signing and verifying, over random keys, ids and cookies.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use sessiondb::{CookieConfig, Key, KeyRing, Purpose, SessionId, Token};

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

    #[test]
    fn arbitrary_bytes_never_verify(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let ring = KeyRing::new(1, key(&[1; 32]));
        prop_assert_eq!(ring.verify(Purpose::Session, &bytes), None);
    }
}
