//! `sessiondb sweep`: delete expired sessions now.

use std::process::ExitCode;

use serde_json::json;

use crate::store::Store;

use crate::fail::Outcome;
use crate::output::{print_json, spinner};

pub(crate) fn sweep(store: Store, as_json: bool) -> Outcome {
    let bar = spinner("sweeping expired sessions");
    let n = store.sweep_now()?;
    bar.finish_and_clear();
    store.close()?;
    if as_json {
        print_json(&json!({"swept": n}))?;
    } else {
        println!("swept {n} expired session(s)");
    }
    Ok(ExitCode::SUCCESS)
}
