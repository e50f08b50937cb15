//! `sessiondb list`: live sessions, all or one user's, as a table or JSON lines.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::UNIX_EPOCH;

use indicatif::ProgressBar;
use serde_json::json;
use sessiondb::SessionId;

use crate::fail::Outcome;
use crate::output::{printable, time, write_json};
use crate::store::{Store, each_record};

pub(crate) fn list(
    store: &Store,
    user: Option<&str>,
    limit: Option<usize>,
    full_ids: bool,
    as_json: bool,
) -> Outcome {
    let limit = limit.unwrap_or(usize::MAX);
    let show_id = |id: &SessionId| {
        if full_ids { id.to_base64() } else { id.hint() }
    };
    let mut rows: Vec<(String, Option<String>, u64, u64, u64)> = Vec::new();
    let mut corrupt = 0usize;
    match user {
        Some(u) => {
            for i in store.sessions_of(u)?.into_iter().take(limit) {
                rows.push((
                    show_id(&i.id),
                    Some(u.to_owned()),
                    i.created_at,
                    i.last_seen,
                    i.expires_at,
                ));
            }
        }
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            each_record(store, &ProgressBar::hidden(), |id, r| {
                if rows.len() >= limit {
                    return Ok(false);
                }
                match r {
                    Ok(r) if r.expires_at > now => rows.push((
                        show_id(&id),
                        r.user,
                        r.created_at,
                        r.last_seen,
                        r.expires_at,
                    )),
                    Ok(_) => {}
                    Err(_) => corrupt += 1,
                }
                Ok(rows.len() < limit)
            })?;
        }
    }
    let mut out = std::io::stdout().lock();
    if as_json {
        for (id, user, c, l, e) in &rows {
            let v =
                json!({"id": id, "user": user, "created_at": c, "last_seen": l, "expires_at": e});
            write_json(&mut out, &v)?;
        }
    } else {
        let w = if full_ids { 43 } else { 8 };
        writeln!(
            out,
            "{:<w$}  {:<16} {:<20} {:<20} expires",
            "id", "user", "created", "last seen"
        )?;
        for (id, user, c, l, e) in &rows {
            writeln!(
                out,
                "{:<w$}  {:<16} {:<20} {:<20} {}",
                id,
                printable(user.as_deref().unwrap_or("-")),
                time(*c),
                time(*l),
                time(*e)
            )?;
        }
    }
    if corrupt > 0 {
        eprintln!("note: {corrupt} record(s) do not decode; `sessiondb check` lists them");
    }
    Ok(ExitCode::SUCCESS)
}
