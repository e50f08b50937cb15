//! A store directory that `open` makes is owner-only (0700): the records
//! in it name every session, so no other local user may read them. A
//! directory that already exists keeps the mode its owner gave it.

#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use sessiondb::{Engine, ManualClock};

/// The permission bits, in octal.
fn mode(path: &Path) -> String {
    let mode = std::fs::metadata(path).expect("stat").permissions().mode();
    format!("{:o}", mode & 0o777)
}

#[test]
fn a_new_store_directory_is_owner_only() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(common::T0);
    // Parents made on the way are owner-only too.
    let dir = tmp.path().join("parent").join("store");
    let engine = Engine::open(&dir, common::config(&clock)).expect("open");
    engine.close().expect("close");
    assert_eq!(mode(&dir), "700", "the store directory");
    assert_eq!(mode(&tmp.path().join("parent")), "700", "its new parent");
}

#[test]
fn an_existing_directory_keeps_its_mode() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(common::T0);
    let dir = tmp.path().join("store");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    let engine = Engine::open(&dir, common::config(&clock)).expect("opens all the same");
    engine.close().expect("close");
    assert_eq!(mode(&dir), "750");
}
