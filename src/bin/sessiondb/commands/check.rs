//! `sessiondb check`: the store's invariants, and `--repair`.

use std::process::ExitCode;

use crate::store::Store;
use serde_json::json;

use crate::fail::Outcome;
use crate::output::{print_json, printable, spinner};

pub(crate) fn check(store: Store, repair: bool, as_json: bool) -> Outcome {
    let bar = spinner("checking");
    let found = store.check()?;
    bar.finish_and_clear();
    let report = if repair && !found.is_empty() {
        let bar = spinner("repairing");
        let r = store.repair()?;
        bar.finish_and_clear();
        Some(r)
    } else {
        None
    };
    let remaining = match &report {
        Some(r) => r.remaining.len(),
        None => found.len(),
    };
    if as_json {
        print_json(&json!({
            "found": found,
            "repaired": report.as_ref().map(|r| r.fixed_count),
            "quarantined": report.as_ref().map(|r| r.quarantined),
            "remaining": report.as_ref().map_or(&found, |r| &r.remaining),
            "sound": remaining == 0,
        }))?;
    } else {
        for v in &found {
            println!("problem: {}", printable(v));
        }
        if let Some(r) = &report {
            println!(
                "repaired {} problem(s); {} record(s) in quarantine",
                r.fixed_count, r.quarantined
            );
            for v in &r.remaining {
                println!("still broken: {}", printable(v));
            }
        }
        println!(
            "{}",
            if remaining == 0 {
                "the store is sound"
            } else {
                "the store is NOT sound"
            }
        );
    }
    store.close()?;
    Ok(if remaining == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
