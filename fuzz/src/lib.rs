//! The bodies of sessiondb's fuzz targets.
//!
//! Each `fuzz_targets/*.rs` calls one function here, and the library's
//! `tests/fuzz_corpus.rs` includes this same file to replay every committed
//! corpus input on stable Rust, so a regression is caught without nightly.
//! Every function takes raw bytes, exactly as libFuzzer hands them over.
//!
//! This file is also compiled as a module of an integration test, so it has
//! no inner attributes and names only crates that both builds depend on.

use arbitrary::{Arbitrary, Unstructured};
use sessiondb::__fuzz::pairs;
use sessiondb::{
    Backend as _, Config, CookieConfig, Engine, Error, HostPrefix, Imported, Key, KeyRing, Lookup,
    MAX_SCAN_BYTES, MAX_VERIFY, ManualClock, MemoryBackend, Outcome, Purpose, SameSite, SessionId,
    Token, Violation,
};

/// The signing key of the fuzz targets and of their seed corpus.
pub const FUZZ_KEY_1: [u8; 32] = [0x5a; 32];
/// An older key that the fuzz ring still verifies with.
pub const FUZZ_KEY_2: [u8; 32] = [0xa5; 32];

fn key(bytes: &[u8; 32]) -> Key {
    match Key::try_from(&bytes[..]) {
        Ok(key) => key,
        Err(e) => panic!("a 32-byte key is valid: {e}"),
    }
}

/// Key 1 signs; key 2 verifies only.
pub fn fuzz_ring() -> KeyRing {
    match KeyRing::new(1, key(&FUZZ_KEY_1)).with_verifier(2, key(&FUZZ_KEY_2)) {
        Ok(ring) => ring,
        Err(e) => panic!("distinct key ids: {e}"),
    }
}

/// Arbitrary bytes as the `Cookie` headers of one request (split at `\n`).
///
/// - `pairs` never panics and yields trimmed names and values free of `;`;
/// - `find_session` finds a session only if the input holds that session's
///   exact token as produced by `sign`;
/// - a valid cookie appended in a header of its own is found, unless the
///   input used up the scan budget or the verification budget first.
pub fn cookie_header(data: &[u8]) {
    let headers: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    for header in &headers {
        let mut count = 0usize;
        for (name, value) in pairs(header) {
            assert!(!name.contains(&b';') && !value.contains(&b';'));
            assert!(!name.starts_with(b" ") && !name.ends_with(b" "));
            assert!(!name.starts_with(b"\t") && !name.ends_with(b"\t"));
            count += 1;
        }
        assert!(count <= header.len());
    }

    let ring = fuzz_ring();
    let one_key = KeyRing::new(1, key(&FUZZ_KEY_1));
    let old_key = KeyRing::new(2, key(&FUZZ_KEY_2));
    let cookies = CookieConfig::default();
    if let Some(id) = cookies.find_session(&ring, headers.iter().copied()) {
        let signed_by_1 = one_key.sign(Purpose::Session, &id);
        let signed_by_2 = old_key.sign(Purpose::Session, &id);
        assert!(
            contains(data, signed_by_1.as_str().as_bytes())
                || contains(data, signed_by_2.as_str().as_bytes()),
            "a session was found whose token is not in the input"
        );
    }

    let id = SessionId::from_bytes([0x11; 32]);
    let ours = format!(
        "{}={}",
        cookies.name(),
        ring.sign(Purpose::Session, &id).as_str()
    );
    let candidates = headers
        .iter()
        .flat_map(|h| pairs(h))
        .filter(|(n, v)| *n == cookies.name().as_bytes() && v.len() == Token::LEN)
        .count();
    let budget_used = headers.iter().map(|h| h.len().max(1)).sum::<usize>();
    let mut with_ours = headers.clone();
    with_ours.push(ours.as_bytes());
    let found = cookies.lookup(&ring, with_ours.iter().copied());
    if candidates < MAX_VERIFY && budget_used + ours.len() <= MAX_SCAN_BYTES {
        // Ours is found, unless the input carries a real token of another
        // id: then the two disagree, and the request has no session.
        let another = headers
            .iter()
            .flat_map(|h| pairs(h))
            .filter(|(n, _)| *n == cookies.name().as_bytes())
            .filter_map(|(_, v)| ring.verify(Purpose::Session, v))
            .any(|other| other != id);
        let want = if another {
            Lookup::Ambiguous
        } else {
            Lookup::Found(id)
        };
        assert_eq!(found, want, "our own cookie among the input's");
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Arbitrary bytes as a token, and as an id plus edits to a real token.
///
/// - only what `sign` produced verifies (differential against re-signing);
/// - any edit of a real token fails; the wrong purpose fails.
pub fn token(data: &[u8]) {
    let ring = fuzz_ring();
    let one_key = KeyRing::new(1, key(&FUZZ_KEY_1));
    let old_key = KeyRing::new(2, key(&FUZZ_KEY_2));
    for purpose in [Purpose::Session, Purpose::Csrf] {
        if let Some(id) = ring.verify(purpose, data) {
            let by_1 = one_key.sign(purpose, &id);
            let by_2 = old_key.sign(purpose, &id);
            assert!(
                data == by_1.as_str().as_bytes() || data == by_2.as_str().as_bytes(),
                "verified bytes that sign did not produce"
            );
        }
    }

    let Some((id_bytes, edits)) = data.split_first_chunk::<32>() else {
        return;
    };
    let id = SessionId::from_bytes(*id_bytes);
    let token = ring.sign(Purpose::Session, &id);
    let original = token.as_str().as_bytes();
    let mut edited = original.to_vec();
    for edit in edits.chunks(2) {
        match edit {
            // An edit that removes or appends changes the length.
            [0xff, n] => edited.truncate(usize::from(*n) % (edited.len() + 1)),
            [0xfe, b] => edited.push(*b),
            [pos, xor] if !edited.is_empty() => {
                let i = usize::from(*pos) % edited.len();
                edited[i] ^= xor;
            }
            _ => {}
        }
    }
    let got = ring.verify(Purpose::Session, &edited);
    if edited == original {
        assert_eq!(got, Some(id));
    } else {
        assert_eq!(got, None, "an edited token verified");
    }
    assert_eq!(ring.verify(Purpose::Csrf, original), None);
}

/// Structured settings and neighbours for the `Set-Cookie` round trip.
#[derive(Arbitrary, Debug)]
pub struct SetCookieInput {
    name: Option<String>,
    path: Option<String>,
    domain: Option<String>,
    secure: bool,
    http_only: bool,
    same_site: u8,
    host_prefix: u8,
    persistent: bool,
    id: [u8; 32],
    expires_in_secs: u32,
    others: Vec<(String, String)>,
    position: u8,
    tight: bool,
    quoted: bool,
    own_header: bool,
    planted: bool,
}

/// Arbitrary bytes decoded as [`SetCookieInput`], as libFuzzer does it.
///
/// - a config that builds writes a `Set-Cookie` of printable ASCII whose
///   attributes are the ones asked for, with the `__Host-` rules held;
/// - the `name=value` it sets, placed among other cookies in a `Cookie`
///   header as a browser would, is found again with the same session id.
pub fn set_cookie(data: &[u8]) {
    if let Ok(input) = SetCookieInput::arbitrary_take_rest(Unstructured::new(data)) {
        set_cookie_round_trip(&input);
    }
}

fn set_cookie_round_trip(input: &SetCookieInput) {
    let mut builder = CookieConfig::builder()
        .secure(input.secure)
        .http_only(input.http_only)
        .persistent(input.persistent)
        .domain(input.domain.clone())
        .same_site(match input.same_site % 3 {
            0 => SameSite::Lax,
            1 => SameSite::Strict,
            _ => SameSite::None,
        })
        .host_prefix(match input.host_prefix % 3 {
            0 => HostPrefix::Auto,
            1 => HostPrefix::Require,
            _ => HostPrefix::Off,
        });
    if let Some(name) = &input.name {
        builder = builder.name(name.clone());
    }
    if let Some(path) = &input.path {
        builder = builder.path(path.clone());
    }
    let Ok(cookies) = builder.build() else {
        return;
    };

    let ring = fuzz_ring();
    let id = SessionId::from_bytes(input.id);
    let token = ring.sign(Purpose::Session, &id);
    let expires = std::time::Duration::from_secs(u64::from(input.expires_in_secs));
    let header = cookies.set_cookie(&token, expires);
    assert!(
        header.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "{header:?}"
    );

    let mut parts = header.split("; ");
    let first = parts.next().unwrap_or_default();
    assert_eq!(first, format!("{}={}", cookies.name(), token.as_str()));
    let attrs: Vec<&str> = parts.collect();
    let has = |a: &str| attrs.contains(&a);
    assert_eq!(has("Secure"), input.secure);
    assert_eq!(has("HttpOnly"), input.http_only);
    assert_eq!(
        attrs.iter().any(|a| a.starts_with("Max-Age=")),
        input.persistent
    );
    if input.persistent {
        assert!(has(&format!("Max-Age={}", input.expires_in_secs)));
    }
    if has("SameSite=None") {
        assert!(has("Secure"));
    }
    if cookies.name().to_ascii_lowercase().starts_with("__host-") {
        assert!(has("Secure") && has("Path=/"));
        assert!(!attrs.iter().any(|a| a.starts_with("Domain=")));
    }
    let removal = cookies.removal();
    assert!(removal.starts_with(&format!("{}=; Max-Age=0", cookies.name())));

    // A browser's Cookie header: other well-formed cookies, ours among them.
    let mut jar: Vec<String> = input
        .others
        .iter()
        .filter_map(|(name, value)| {
            let name: String = name.chars().filter(|c| is_token_char(*c)).collect();
            let value: String = value.chars().filter(|c| is_cookie_octet(*c)).collect();
            (!name.is_empty() && name != cookies.name()).then(|| format!("{name}={value}"))
        })
        .collect();
    let value = if input.quoted {
        format!("\"{}\"", token.as_str())
    } else {
        token.as_str().to_owned()
    };
    let at = usize::from(input.position) % (jar.len() + 1);
    jar.insert(at, format!("{}={value}", cookies.name()));
    if input.planted {
        // A parent domain's cookie of the same name, signed by someone else.
        let forged = "A".repeat(Token::LEN);
        jar.insert(0, format!("{}={forged}", cookies.name()));
    }
    let sep = if input.tight { ";" } else { "; " };
    let request: Vec<String> = if input.own_header {
        let ours = jar.remove(at + usize::from(input.planted));
        vec![jar.join(sep), ours]
    } else {
        vec![jar.join(sep)]
    };
    let total: usize = request.iter().map(|h| h.len().max(1)).sum();
    if total <= MAX_SCAN_BYTES {
        assert_eq!(
            cookies.find_session(&ring, request.iter().map(|h| h.as_bytes())),
            Some(id),
            "{request:?}"
        );
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// RFC 6265 `cookie-octet`.
fn is_cookie_octet(c: char) -> bool {
    matches!(c, '\x21' | '\x23'..='\x2b' | '\x2d'..='\x3a' | '\x3c'..='\x5b' | '\x5d'..='\x7e')
}

#[path = "../../tests/model/mod.rs"]
mod model;

/// Arbitrary bytes as a sequence of engine operations (create, read,
/// update, login, destroy, log out everywhere, clock moves, sweeps,
/// reopens, loads through corrupted cookies), run in lockstep on the sled
/// engine, the memory engine and the reference model of
/// `tests/model/mod.rs`: every result must agree and `check()` stay clean.
pub fn engine_ops(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut ops = Vec::new();
    while ops.len() < 48 {
        match model::Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    model::run(&ops);
}

/// The `record` target's clock: records expiring after this are live.
pub const RECORD_NOW_MS: u64 = 1_767_225_600_000;

fn record_engine(backend: MemoryBackend) -> Engine {
    let config = Config::new(fuzz_ring())
        .clock(ManualClock::new(RECORD_NOW_MS))
        .sweeper(false);
    match Engine::with_backend(backend, config) {
        Ok(engine) => engine,
        Err(e) => panic!("a memory engine opens: {e}"),
    }
}

/// Arbitrary bytes as a stored record, decoded every way the engine does.
///
/// - parsing the header and the full decode end in a value or an error,
///   never a panic, and allocate no more than bincode's limit allows;
/// - a store takes every record whose header parses;
/// - stored, a record that decodes agrees with its header, reads back the
///   same through `record` and `load_id`, and leaves `check()` clean; one
///   that does not is `Error::Corrupt` to every reader and a `Corrupt`
///   violation to `check()`, and `repair()` quarantines it and leaves the
///   store sound;
/// - a decoded record imported into another store reads back the same.
pub fn record(data: &[u8]) {
    let id = SessionId::from_bytes([0x33; 32]);
    // A header that does not parse never reaches a store through its API.
    let Ok(meta) = sessiondb::__fuzz::parse_record(data) else {
        return;
    };
    let backend = MemoryBackend::new();
    match backend.put(&id, None, &meta, 0) {
        Ok(Outcome::Written) => {}
        put => panic!("put {put:?} of a record whose header parsed"),
    }
    let engine = record_engine(backend);
    let mut scanned = match engine.admin().records(None, 2) {
        Ok(page) => page,
        Err(e) => panic!("scan: {e}"),
    };
    assert_eq!(scanned.len(), 1, "one record stored");
    let Some((scanned_id, decoded)) = scanned.pop() else {
        return;
    };
    assert_eq!(scanned_id, id);
    let live = meta.expires_at > RECORD_NOW_MS;
    let found = match engine.admin().check() {
        Ok(found) => found,
        Err(e) => panic!("check: {e}"),
    };
    match decoded {
        Ok(r) => {
            assert_eq!(r.version, meta.version);
            assert_eq!(r.expires_at, meta.expires_at);
            assert_eq!(r.user, meta.user);
            assert!(found.is_empty(), "a record that decodes: {found:?}");
            match engine.admin().record(&id) {
                Ok(Some(again)) => assert!(live && again == r, "{again:?} != {r:?}"),
                Ok(None) => assert!(!live, "a live record read as absent"),
                Err(e) => panic!("a record that decodes in a scan fails to read: {e}"),
            }
            match engine.load_id(&id) {
                Ok(Some(session)) => {
                    assert!(live);
                    assert_eq!(session.user(), r.user.as_deref());
                }
                Ok(None) => assert!(!live, "a live record loaded as absent"),
                Err(e) => panic!("a record that decodes fails to load: {e}"),
            }
            reimport(&r);
        }
        Err(Error::Corrupt { .. }) => {
            assert!(
                found
                    .iter()
                    .any(|v| matches!(v, Violation::Corrupt { id: bad, .. } if *bad == id)),
                "check missed a record that does not decode: {found:?}"
            );
            // Expired, it is absent before anyone decodes it.
            match engine.admin().record(&id) {
                Err(Error::Corrupt { .. }) => assert!(live),
                Ok(None) => assert!(!live),
                other => panic!("read of a corrupt record: {other:?}"),
            }
            match engine.load_id(&id) {
                Err(Error::Corrupt { .. }) => assert!(live),
                Ok(None) => assert!(!live),
                other => panic!("load of a corrupt record: {other:?}"),
            }
            let report = match engine.admin().repair() {
                Ok(report) => report,
                Err(e) => panic!("repair: {e}"),
            };
            assert!(report.remaining.is_empty(), "{report:?}");
            assert_eq!(report.quarantined, 1);
            assert!(matches!(engine.admin().check().as_deref(), Ok([])));
        }
        Err(e) => panic!("a stored record failed with {e}, not Corrupt"),
    }
}

/// Imports a decoded record into a fresh store: it must read back with the
/// same user, times and values (the version restarts at 1, and the expiry
/// is recomputed from the times, so a header that disagreed is mended).
fn reimport(r: &sessiondb::SessionRecord) {
    let engine = record_engine(MemoryBackend::new());
    // Refusals (a user id over the limit, a session too large) are fine.
    let Ok(Imported::Written) = engine.admin().import(r) else {
        return;
    };
    let again = match engine.admin().records(None, 2) {
        Ok(mut page) if page.len() == 1 => match page.pop() {
            Some((_, Ok(again))) => again,
            other => panic!("an imported record does not read back: {other:?}"),
        },
        other => panic!("scan after import: {other:?}"),
    };
    assert_eq!(again.id, r.id);
    assert_eq!(again.user, r.user);
    // Lifetimes longer than this engine's settings (the defaults: 24 h
    // absolute, 30 min idle) are cut to them, never lengthened.
    let (absolute, idle) = (24 * 3600 * 1000, 30 * 60 * 1000);
    assert_eq!(
        (again.created_at, again.last_seen, again.absolute_deadline),
        (
            r.created_at,
            r.last_seen,
            r.absolute_deadline
                .min(r.created_at.saturating_add(absolute))
        )
    );
    assert_eq!(
        again.idle_timeout,
        r.idle_timeout.min(std::time::Duration::from_millis(idle))
    );
    assert_eq!(again.data, r.data);
    assert!(matches!(engine.admin().check().as_deref(), Ok([])));
}

/// Arbitrary bytes as everything a client of the control socket sends
/// (lines split at `\n`), served by the real connection loop against an
/// engine on the memory backend:
///
/// - the server never panics, and answers with whole JSON lines only;
/// - it answers the greeting and then at most one line per request line;
/// - a first line that is not this version's greeting gets one error line
///   and nothing else.
pub fn control_request(data: &[u8]) {
    let clock = ManualClock::new(1_700_000_000_000);
    let engine = match Engine::with_backend(
        MemoryBackend::new(),
        Config::new(fuzz_ring()).clock(clock).sweeper(false),
    ) {
        Ok(e) => e,
        Err(e) => panic!("open: {e}"),
    };
    let out = match sessiondb::__fuzz::control_session(&engine, data) {
        Ok(out) => out,
        Err(e) => panic!("socket pair: {e}"),
    };
    let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
    assert_eq!(lines.last(), Some(&&b""[..]), "every reply ends its line");
    let replies = &lines[..lines.len() - 1];
    for line in replies {
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(line) {
            panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(line));
        }
    }
    let first = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let greeted = data.contains(&b'\n')
        && serde_json::from_slice::<sessiondb::control::proto::Hello>(first)
            .is_ok_and(|h| h == sessiondb::control::proto::Hello::current());
    if greeted {
        let requests = data.split(|&b| b == b'\n').count();
        assert!(
            replies.len() <= requests,
            "{} replies to {requests} lines",
            replies.len()
        );
        assert!(
            serde_json::from_slice::<sessiondb::control::proto::Welcome>(replies[0]).is_ok(),
            "the greeting is answered with a welcome"
        );
    } else {
        assert_eq!(replies.len(), 1, "one error line for a bad greeting");
        assert!(
            matches!(
                serde_json::from_slice::<sessiondb::control::proto::Reply>(replies[0]),
                Ok(sessiondb::control::proto::Reply::Error(_))
            ),
            "{:?}",
            String::from_utf8_lossy(replies[0])
        );
    }
}
