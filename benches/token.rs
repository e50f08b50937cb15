//! Token and cookie costs: sign, verify, and finding the session cookie in a
//! realistic 1 KiB `Cookie` header of 20 cookies. The `baseline` group is a
//! plain HMAC-SHA256 over 32 bytes, measured in the same run, so the others
//! can be quoted as ratios to it.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{KeyInit, Mac};
use sessiondb::{CookieConfig, Key, KeyRing, Purpose, SessionId, Token};

fn ring() -> KeyRing {
    KeyRing::new(1, Key::try_from(&[42u8; 32][..]).expect("32 bytes"))
}

/// 20 cookies, about 1 KiB, ours the 15th: the shape of a real browser's
/// header on a site with analytics, consent and preference cookies.
fn realistic_header(cookies: &CookieConfig, token: &Token) -> String {
    let mut parts: Vec<String> = (0..19)
        .map(|i| format!("cookie_{i:02}={}", "v".repeat(35 + i % 7)))
        .collect();
    parts.insert(14, format!("{}={}", cookies.name(), token.as_str()));
    parts.join("; ")
}

fn bench(c: &mut Criterion) {
    let ring = ring();
    let cookies = CookieConfig::default();
    let id = SessionId::from_bytes([7; 32]);
    let token = ring.sign(Purpose::Session, &id);
    let header = realistic_header(&cookies, &token);
    assert!((900..1200).contains(&header.len()), "{}", header.len());
    assert_eq!(cookies.find_session(&ring, [header.as_bytes()]), Some(id));
    let forged_header = header.replace(&token.as_str()[80..], &"A".repeat(12));
    assert_eq!(
        cookies.find_session(&ring, [forged_header.as_bytes()]),
        None
    );

    let mut g = c.benchmark_group("token");
    g.bench_function("baseline_hmac_sha256_32B", |b| {
        let mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&[42u8; 32]).expect("any length");
        b.iter(|| {
            let mut m = mac.clone();
            m.update(black_box(&[7u8; 32]));
            black_box(m.finalize().into_bytes())
        })
    });
    g.bench_function("sign", |b| {
        b.iter(|| ring.sign(Purpose::Session, black_box(&id)))
    });
    g.bench_function("verify", |b| {
        b.iter(|| ring.verify(Purpose::Session, black_box(token.as_str().as_bytes())))
    });
    g.bench_function("scan_1KiB_20_cookies_and_verify", |b| {
        b.iter(|| cookies.find_session(&ring, [black_box(header.as_bytes())]))
    });
    g.bench_function("scan_1KiB_forged", |b| {
        b.iter(|| cookies.find_session(&ring, [black_box(forged_header.as_bytes())]))
    });
    g.bench_function("set_cookie", |b| {
        b.iter(|| cookies.set_cookie(black_box(&token), Duration::from_secs(1800)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
