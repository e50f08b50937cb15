//! `sessiondb stats`: live sessions, users, expired awaiting the sweep, bytes on disk, formats.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;
use sessiondb::{Engine, FORMAT_VERSION};

use crate::fail::Outcome;
use crate::output::{print_json, printable};

pub(crate) fn stats(engine: &Engine, dir: &Path, as_json: bool) -> Outcome {
    let s = engine.admin().stats()?;
    let marker = std::fs::read_to_string(dir.join("SESSIONDB")).unwrap_or_default();
    let store_format = marker
        .lines()
        .find_map(|l| l.strip_prefix("format "))
        .unwrap_or("?")
        .to_owned();
    if as_json {
        print_json(&json!({
            "live_sessions": s.live_sessions,
            "users": s.users,
            "expired_pending": s.expired_pending,
            "bytes_on_disk": s.bytes_on_disk,
            "store_format": store_format,
            "record_format": FORMAT_VERSION,
        }))?;
    } else {
        println!("live sessions:     {}", s.live_sessions);
        println!("users:             {}", s.users);
        println!("expired, unswept:  {}", s.expired_pending);
        println!("bytes on disk:     {}", s.bytes_on_disk);
        println!(
            "format:            store {}, record {FORMAT_VERSION}",
            printable(&store_format)
        );
    }
    Ok(ExitCode::SUCCESS)
}
