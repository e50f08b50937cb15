//! Replays every committed fuzz corpus input through the code the fuzz
//! targets run, so stable `cargo test` catches a regression of anything the
//! fuzzer once found (crashes are added to the corpus as `regression-*`).

use std::fs;
use std::path::Path;

#[path = "../fuzz/src/lib.rs"]
mod targets;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        run(&bytes);
        count += 1;
    }
    // Seeds alone are 5 or more per target; fewer means the corpus went missing.
    assert!(
        count >= 5,
        "{target}: only {count} corpus files in {}",
        dir.display()
    );
}

#[test]
fn cookie_header_corpus_replays_clean() {
    replay("cookie_header", targets::cookie_header);
}

#[test]
fn token_corpus_replays_clean() {
    replay("token", targets::token);
}

#[test]
fn set_cookie_corpus_replays_clean() {
    replay("set_cookie", targets::set_cookie);
}

#[test]
fn engine_ops_corpus_replays_clean() {
    replay("engine_ops", targets::engine_ops);
}

#[test]
fn record_corpus_replays_clean() {
    replay("record", targets::record);
}

#[cfg(unix)]
#[test]
fn control_request_corpus_replays_clean() {
    replay("control_request", targets::control_request);
}
