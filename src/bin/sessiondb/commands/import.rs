//! `sessiondb import`: JSON lines from stdin, all checked before any is written.

use std::collections::HashSet;
use std::io::BufRead as _;
use std::process::ExitCode;

use sessiondb::{Engine, Imported};

use crate::fail::{Fail, Outcome};
use crate::jsonl::from_line;
use crate::output::{printable, spinner};
use crate::store::{Store, config};

pub(crate) fn import(store: Store) -> Outcome {
    let bar = spinner("reading");
    let mut records = Vec::new();
    let mut bad = Vec::new();
    let mut seen = HashSet::new();
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line?;
        bar.inc(1);
        if line.trim().is_empty() {
            continue;
        }
        match from_line(&line) {
            Ok(r) if !seen.insert(r.id) => {
                bad.push(format!(
                    "line {}: session {} appears twice",
                    n + 1,
                    r.id.hint()
                ));
            }
            Ok(r) => match store.record(&r.id) {
                Ok(Some(_)) => bad.push(format!(
                    "line {}: session {} is already in the store",
                    n + 1,
                    r.id.hint()
                )),
                Ok(None) => records.push((n + 1, r)),
                // The store or the connection to it failed, not the line.
                Err(e @ (sessiondb::Error::Io { .. } | sessiondb::Error::Control { .. })) => {
                    return Err(e.into());
                }
                Err(e) => bad.push(format!("line {}: {e}", n + 1)),
            },
            Err(e) => bad.push(format!("line {}: {e}", n + 1)),
        }
    }
    bar.finish_and_clear();
    // A dry run into memory first, under the same rules (size limit, user
    // names), so a record the store would refuse is a bad line now, not
    // a failure halfway through the real import.
    if bad.is_empty() {
        let dry = Engine::with_backend(sessiondb::MemoryBackend::new(), config()?)?;
        for (line, r) in &records {
            if let Err(e) = dry.admin().import(r) {
                bad.push(format!("line {line}: {e}"));
            }
        }
    }
    if !bad.is_empty() {
        for b in &bad {
            eprintln!("{}", printable(b));
        }
        eprintln!("{} bad line(s); nothing was imported", bad.len());
        return Ok(ExitCode::from(1));
    }
    let bar = spinner("importing");
    let (mut written, mut expired, mut revoked) = (0u64, 0u64, 0u64);
    for (line, r) in &records {
        match store.import(r) {
            Ok(Imported::Written) => written += 1,
            Ok(Imported::Expired) => expired += 1,
            Ok(Imported::Revoked) => revoked += 1,
            // Exists, or any outcome this tool does not know.
            Ok(_) => {
                return Err(Fail(
                    format!(
                        "error: line {line}: session {} appeared in the store while importing; {written} were imported before it",
                        r.id.hint()
                    ),
                    2,
                ));
            }
            Err(e) => {
                return Err(Fail(
                    format!("error: line {line}: {e}; {written} were imported before it"),
                    2,
                ));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    store.close()?;
    eprintln!(
        "imported {written} session(s); skipped {expired} already expired, {revoked} revoked since"
    );
    Ok(ExitCode::SUCCESS)
}
