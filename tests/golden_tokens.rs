//! Golden vectors: a fixed key and id must give these exact bytes, forever
//! for token format version 1. They were computed by `fuzz/make_seeds.py`
//! with Python's hmac module, independently of this crate. If one of these
//! fails, the token format changed: that logs out every user, so it needs a
//! new format version, not a new vector.

use std::time::Duration;

use sessiondb::{CookieConfig, Key, KeyRing, Purpose, SessionId, TOKEN_VERSION};

const GOLDEN_KEY: [u8; 32] = [0x5a; 32];
const GOLDEN_TOKEN: &str =
    "AQAAAAEAAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eH3IuVcXkTCzfFo9dsoXTT8QItxAfUSvRkXSW559VkTrL";

fn golden_id() -> SessionId {
    let mut id = [0u8; 32];
    for (i, b) in id.iter_mut().enumerate() {
        *b = i as u8;
    }
    SessionId::from_bytes(id)
}

fn golden_ring() -> KeyRing {
    KeyRing::new(1, Key::try_from(&GOLDEN_KEY[..]).expect("32 bytes"))
}

#[test]
fn fixed_key_and_id_sign_to_the_golden_token() {
    assert_eq!(TOKEN_VERSION, 1);
    let token = golden_ring().sign(Purpose::Session, &golden_id());
    assert_eq!(token.as_str(), GOLDEN_TOKEN);
}

#[test]
fn the_golden_token_verifies_to_the_fixed_id() {
    assert_eq!(
        golden_ring().verify(Purpose::Session, GOLDEN_TOKEN.as_bytes()),
        Some(golden_id())
    );
}

#[test]
fn the_golden_set_cookie_is_stable() {
    let token = golden_ring().sign(Purpose::Session, &golden_id());
    assert_eq!(
        CookieConfig::default().set_cookie(&token, Duration::from_secs(1800)),
        format!(
            "__Host-sessiondb={GOLDEN_TOKEN}; Max-Age=1800; Path=/; Secure; HttpOnly; SameSite=Lax"
        )
    );
}
