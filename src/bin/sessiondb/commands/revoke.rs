//! `sessiondb revoke`: destroy one session or every session of a user.

use std::process::ExitCode;

use serde_json::json;

use crate::cli::Target;
use crate::fail::{Fail, Outcome};
use crate::output::print_json;
use crate::store::{Store, resolve};

pub(crate) fn revoke(store: Store, target: Target, as_json: bool) -> Outcome {
    let n = match (target.user, target.id) {
        (Some(u), _) => store.destroy_user(&u)?,
        (None, Some(id)) => {
            let id = resolve(&store, &id)?;
            usize::from(store.destroy_id(&id)?)
        }
        (None, None) => return Err(Fail("error: give --user or --id".into(), 2)),
    };
    store.close()?;
    if as_json {
        print_json(&json!({"revoked": n}))?;
    } else {
        println!("revoked {n} session(s)");
    }
    Ok(ExitCode::SUCCESS)
}
