//! Hostile `Cookie` headers reach the engine's request path and each one is
//! "no session": no panic, no storage read or write, bounded time.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sessiondb::{Key, KeyRing, Purpose, SessionId};

#[test]
fn every_hostile_header_is_no_session_without_touching_storage() {
    let (env, probe) = common::Env::probed(|c| c);
    let name = env.engine.cookie_config().name().to_owned();
    let live = env.stored(1);
    let good = env.cookie(&live);
    let token = good.split_once('=').expect("pair").1.to_owned();

    let destroyed = env.stored(2);
    let destroyed_cookie = env.cookie(&destroyed);
    env.engine.destroy(&destroyed).expect("destroy");
    let expiring = env.stored(3);
    let expired_cookie = env.cookie(&expiring);

    let removed_key = KeyRing::new(7, Key::try_from(&[9u8; 32][..]).expect("32 bytes"));
    let by_removed_key = removed_key.sign(Purpose::Session, live.id());
    let csrf_token = env.engine.key_ring().sign(Purpose::Csrf, live.id());
    let mut resigned = URL_SAFE_NO_PAD.decode(&token).expect("our token");
    resigned[5] ^= 1; // another id, old tag
    let unknown_id = env
        .engine
        .key_ring()
        .sign(Purpose::Session, &SessionId::from_bytes([0x77; 32]));

    let mut hostile: Vec<(String, Vec<Vec<u8>>)> = vec![
        (
            "huge value".into(),
            vec![format!("{name}={}", "A".repeat(1 << 20)).into_bytes()],
        ),
        ("huge header of junk".into(), vec![vec![b'x'; 4 << 20]]),
        (
            "thousands of cookies".into(),
            vec![
                (0..5000)
                    .map(|i| format!("c{i}=v"))
                    .collect::<Vec<_>>()
                    .join("; ")
                    .into_bytes(),
            ],
        ),
        (
            "thousands of our name".into(),
            vec![
                (0..5000)
                    .map(|_| format!("{name}={}", "B".repeat(92)))
                    .collect::<Vec<_>>()
                    .join("; ")
                    .into_bytes(),
            ],
        ),
        (
            "thousands of headers".into(),
            (0..10_000).map(|_| b"a=b".to_vec()).collect(),
        ),
        (
            "NUL and high bytes".into(),
            vec![
                format!("{name}=\0\u{ff}").into_bytes(),
                b"\xff\xfe\x00=\x00".to_vec(),
            ],
        ),
        (
            "truncated token".into(),
            vec![format!("{name}={}", &token[..60]).into_bytes()],
        ),
        (
            "token plus one".into(),
            vec![format!("{name}={token}A").into_bytes()],
        ),
        (
            "re-signed id".into(),
            vec![format!("{name}={}", URL_SAFE_NO_PAD.encode(&resigned)).into_bytes()],
        ),
        (
            "removed key".into(),
            vec![format!("{name}={}", by_removed_key.as_str()).into_bytes()],
        ),
        (
            "CSRF token as session".into(),
            vec![format!("{name}={}", csrf_token.as_str()).into_bytes()],
        ),
        ("empty".into(), vec![Vec::new()]),
        ("no headers".into(), vec![]),
    ];
    // Well-signed, so they cost one read each (and still no write).
    let signed_but_dead: Vec<(String, Vec<Vec<u8>>)> = vec![
        (
            "destroyed session".into(),
            vec![destroyed_cookie.into_bytes()],
        ),
        (
            "unknown id".into(),
            vec![format!("{name}={}", unknown_id.as_str()).into_bytes()],
        ),
        ("expired session".into(), vec![expired_cookie.into_bytes()]),
    ];
    env.advance(31 * 60); // expires `expiring` (and `live`, which was read last at T0)
    hostile.push((
        "valid token, duplicated 4x junk first".into(),
        vec![format!("{name}=x; {name}=y; {name}=z; {name}=w; {name}={token}").into_bytes()],
    ));

    let writes = probe.writes.load(SeqCst);
    let reads = probe.gets.load(SeqCst);
    for (what, headers) in &hostile {
        let started = Instant::now();
        let found = env
            .engine
            .load(headers.iter().map(Vec::as_slice))
            .expect(what);
        assert!(found.is_none(), "{what}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{what}: {:?}",
            started.elapsed()
        );
    }
    // Forged or malformed: no storage access at all. (The last case carries
    // a valid token, whose session has expired by now: one read.)
    assert_eq!(
        probe.gets.load(SeqCst),
        reads + 1,
        "only the one valid token was looked up"
    );
    for (what, headers) in &signed_but_dead {
        let found = env
            .engine
            .load(headers.iter().map(Vec::as_slice))
            .expect(what);
        assert!(found.is_none(), "{what}");
    }
    assert_eq!(
        probe.writes.load(SeqCst),
        writes,
        "no hostile header caused a write"
    );
    assert_eq!(probe.gets.load(SeqCst), reads + 1 + signed_but_dead.len());
}
