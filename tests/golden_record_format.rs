//! Golden bytes of the stored record, format version 1 (documented in
//! `src/record.rs`, "Stored value format, version 1"), both ways: the
//! engine writes exactly these bytes for a fixed session, and these bytes,
//! put into a store by hand, read back as exactly these fields.
//!
//! The vectors are written out byte by byte from the documented layout, not
//! computed by the crate. If one of these fails, the record format changed:
//! every store on disk holds format 1, so a change needs a new format
//! version (and a decoder that still reads this one), never a new vector.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use sessiondb::{
    Config, Engine, FORMAT_VERSION, Key, KeyRing, ManualClock, SessionId, SessionRecord,
};

const T0: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// alice's session: record version 1, two values, stored by
/// [`Engine::import`] with the engine's clock at T0 + 60 s.
#[rustfmt::skip]
const ALICE: &[u8] = &[
    // header
    0x01,                                           // format version 1
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // record version 1, u64 BE
    0x00, 0x00, 0x01, 0x9b, 0x76, 0xf7, 0x09, 0xa0, // expires_at T0 + 1_860_000, u64 BE
    0x00, 0x05,                                     // user length 5, u16 BE
    b'a', b'l', b'i', b'c', b'e',                   // user
    // body: bincode 2 standard (varint integers: 0xfc = u32 LE follows,
    // 0xfd = u64 LE follows; lengths as varints)
    0xfd, 0x00, 0xa8, 0xda, 0x76, 0x9b, 0x01, 0x00, 0x00, // created_ms T0
    0xfd, 0x60, 0x92, 0xdb, 0x76, 0x9b, 0x01, 0x00, 0x00, // last_seen_ms T0 + 60_000
    0xfd, 0x00, 0x04, 0x01, 0x7c, 0x9b, 0x01, 0x00, 0x00, // absolute_deadline_ms T0 + 24 h
    0xfc, 0x40, 0x77, 0x1b, 0x00,                         // idle_timeout_ms 1_800_000
    0x02,                                                 // data: 2 entries, in key order
    0x04, b'c', b'a', b'r', b't',                         //   "cart"
    0x06, 0x01, 0x04, b'b', b'o', b'o', b'k',             //   6 bytes: vec!["book"]
    0x01, b'n',                                           //   "n"
    0x03, 0xfb, 0x2c, 0x01,                               //   3 bytes: 300u32 (0xfb = u16 LE)
];

/// An anonymous session at record version 5 with no values.
#[rustfmt::skip]
const ANONYMOUS: &[u8] = &[
    0x01,                                           // format version 1
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, // record version 5
    0x00, 0x00, 0x01, 0x9b, 0x76, 0xf7, 0xf4, 0x00, // expires_at T0 + 1_920_000
    0x00, 0x00,                                     // no user
    0xfd, 0x00, 0xa8, 0xda, 0x76, 0x9b, 0x01, 0x00, 0x00, // created_ms T0
    0xfd, 0xc0, 0x7c, 0xdc, 0x76, 0x9b, 0x01, 0x00, 0x00, // last_seen_ms T0 + 120_000
    0xfd, 0x00, 0x04, 0x01, 0x7c, 0x9b, 0x01, 0x00, 0x00, // absolute_deadline_ms T0 + 24 h
    0xfc, 0x40, 0x77, 0x1b, 0x00,                         // idle_timeout_ms 1_800_000
    0x00,                                                 // data: empty
];

const ALICE_ID: [u8; 32] = [0xa1; 32];
const ANONYMOUS_ID: [u8; 32] = [0x5e; 32];
const DAY_MS: u64 = 24 * 3600 * 1000;
const IDLE_MS: u64 = 30 * 60 * 1000;

/// The fields [`ALICE`] holds.
fn alice() -> SessionRecord {
    SessionRecord {
        id: SessionId::from_bytes(ALICE_ID),
        version: 1,
        user: Some("alice".to_owned()),
        created_at: T0,
        last_seen: T0 + 60_000,
        expires_at: T0 + 60_000 + IDLE_MS,
        absolute_deadline: T0 + DAY_MS,
        idle_timeout: std::time::Duration::from_millis(IDLE_MS),
        data: BTreeMap::from([
            ("cart".to_owned(), vec![0x01, 0x04, b'b', b'o', b'o', b'k']),
            ("n".to_owned(), vec![0xfb, 0x2c, 0x01]),
        ]),
    }
}

/// The fields [`ANONYMOUS`] holds.
fn anonymous() -> SessionRecord {
    SessionRecord {
        id: SessionId::from_bytes(ANONYMOUS_ID),
        version: 5,
        user: None,
        created_at: T0,
        last_seen: T0 + 120_000,
        expires_at: T0 + 120_000 + IDLE_MS,
        absolute_deadline: T0 + DAY_MS,
        idle_timeout: std::time::Duration::from_millis(IDLE_MS),
        data: BTreeMap::new(),
    }
}

/// The defaults the vectors assume (30 min idle, 24 h absolute), spelled
/// out so a change of defaults does not move them.
fn open(dir: &Path, clock: &ManualClock) -> Engine {
    let key = Key::try_from(&[0x42; 32][..]).expect("32 bytes");
    let config = Config::new(KeyRing::new(1, key))
        .clock(clock.clone())
        .sweeper(false)
        .idle_timeout(Duration::from_millis(IDLE_MS))
        .absolute_timeout(Duration::from_millis(DAY_MS));
    Engine::open(dir, config).expect("open")
}

#[test]
fn the_documented_layout_is_format_version_1() {
    assert_eq!(FORMAT_VERSION, 1);
    assert_eq!(ALICE[0], FORMAT_VERSION);
    assert_eq!(ANONYMOUS[0], FORMAT_VERSION);
}

#[test]
fn a_fixed_session_is_stored_as_the_golden_bytes() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(T0 + 60_000);
    let engine = open(tmp.path(), &clock);
    let mut record = alice();
    // What import ignores: the version restarts at 1, expiry is computed.
    record.version = 77;
    record.expires_at = 0;
    assert!(matches!(
        engine.admin().import(&record),
        Ok(sessiondb::Imported::Written)
    ));
    engine.close().expect("close");

    let db = common::raw_sled(tmp.path());
    let sessions = db.open_tree("sessions").expect("sessions tree");
    let stored = sessions.get(ALICE_ID).expect("read").expect("stored");
    assert_eq!(
        stored.as_ref(),
        ALICE,
        "the stored bytes of alice's session changed:\n got {:02x?}\nwant {ALICE:02x?}",
        stored.as_ref()
    );
}

#[test]
fn the_golden_bytes_read_back_as_their_fields() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(T0 + 120_000);
    // An empty store, made by the engine, then filled by hand: the records
    // and their index entries exactly as `src/backend/sled.rs` documents.
    open(tmp.path(), &clock).close().expect("close");
    {
        let db = common::raw_sled(tmp.path());
        let tree = |name: &str| db.open_tree(name).expect("tree");
        let (sessions, expiry, users) = (tree("sessions"), tree("expiry"), tree("users"));
        for (id, bytes) in [(ALICE_ID, ALICE), (ANONYMOUS_ID, ANONYMOUS)] {
            sessions.insert(id, bytes).expect("insert");
            // expiry: expires_at u64 BE ++ id; the header holds the same 8 bytes.
            expiry
                .insert([&bytes[9..17], &id[..]].concat(), &[][..])
                .expect("insert");
        }
        // users: user length u16 BE ++ user ++ id.
        users
            .insert(
                [&[0x00, 0x05][..], b"alice", &ALICE_ID[..]].concat(),
                &[][..],
            )
            .expect("insert");
        db.flush().expect("flush");
    }

    let engine = open(tmp.path(), &clock);
    let records: Vec<SessionRecord> = engine
        .admin()
        .records(None, 10)
        .expect("records")
        .into_iter()
        .map(|(_, r)| r.expect("decodes"))
        .collect();
    // Ids sort 0x5e.. before 0xa1..
    assert_eq!(records, vec![anonymous(), alice()]);
    assert_eq!(
        records[1].get::<Vec<String>>("cart").expect("decodes"),
        Some(vec!["book".to_owned()])
    );
    assert_eq!(records[1].get::<u32>("n").expect("decodes"), Some(300));
    let violations = engine.admin().check().expect("check");
    assert!(violations.is_empty(), "{violations:#?}");
    let listed = engine.sessions_of("alice").expect("list");
    assert_eq!(
        listed.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![SessionId::from_bytes(ALICE_ID)]
    );
    let session = engine
        .load_id(&SessionId::from_bytes(ALICE_ID))
        .expect("load")
        .expect("live");
    assert_eq!(session.user(), Some("alice"));
    assert_eq!(session.get::<u32>("n").expect("decodes"), Some(300));
    engine.close().expect("close");
}
