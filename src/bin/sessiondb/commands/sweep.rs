//! `sessiondb sweep`: delete expired sessions now.

use std::process::ExitCode;

use serde_json::json;
use sessiondb::Engine;

use crate::fail::Outcome;
use crate::output::{print_json, spinner};

pub(crate) fn sweep(engine: Engine, as_json: bool) -> Outcome {
    let bar = spinner("sweeping expired sessions");
    let n = engine.admin().sweep_now()?;
    bar.finish_and_clear();
    engine.close()?;
    if as_json {
        print_json(&json!({"swept": n}))?;
    } else {
        println!("swept {n} expired session(s)");
    }
    Ok(ExitCode::SUCCESS)
}
