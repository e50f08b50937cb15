//! Opening a store, walking its records, and finding a session by a prefix
//! of its id.

use std::path::Path;

use indicatif::ProgressBar;
use sessiondb::{Config, Durability, Engine, Key, KeyRing, SessionId, SessionRecord};

use crate::fail::Fail;

/// Records read per page when walking the whole store.
pub(crate) const PAGE: usize = 1000;

/// Opens a store that must already exist (so a typo is not a new store).
pub(crate) fn open_existing(dir: &Path) -> Result<Engine, Fail> {
    if !dir.join("SESSIONDB").exists() {
        return Err(Fail(
            format!(
                "error: {} is not a sessiondb store (no SESSIONDB marker)\n\
                 hint: give the directory the service's --data names",
                dir.display()
            ),
            2,
        ));
    }
    open(dir)
}

/// The tool never issues cookies, so a throwaway key signs nothing.
/// Relaxed durability, and every command that writes ends in `close`, so
/// what it changed is on disk when it exits.
pub(crate) fn config() -> Result<Config, Fail> {
    Ok(Config::new(KeyRing::new(0, Key::generate()?))
        .sweeper(false)
        .durability(Durability::Relaxed))
}

pub(crate) fn open(dir: &Path) -> Result<Engine, Fail> {
    let engine = Engine::open(dir, config()?)?;
    if let Some(r) = engine.recovery() {
        eprintln!(
            "note: the store was not closed cleanly; the check at open found {} problem(s){}",
            r.found.len(),
            if r.repair.is_some() {
                " and repaired them"
            } else {
                ""
            }
        );
    }
    Ok(engine)
}

/// Calls `f` on every stored record, page by page.
pub(crate) fn each_record(
    engine: &Engine,
    bar: &ProgressBar,
    mut f: impl FnMut(SessionId, sessiondb::Result<SessionRecord>) -> Result<bool, Fail>,
) -> Result<(), Fail> {
    let mut after = None;
    loop {
        let page = engine.admin().records(after.as_ref(), PAGE)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = Some(*last);
        for (id, r) in page {
            bar.inc(1);
            if !f(id, r)? {
                return Ok(());
            }
        }
    }
}

/// The one session whose id is `text` or starts with it.
pub(crate) fn resolve(engine: &Engine, text: &str) -> Result<SessionId, Fail> {
    if let Some(id) = SessionId::from_base64(text) {
        return Ok(id);
    }
    if text.len() < 4 {
        return Err(Fail(
            format!("error: give at least 4 characters of the id (got {text:?})"),
            2,
        ));
    }
    let mut found = Vec::new();
    each_record(engine, &ProgressBar::hidden(), |id, _| {
        if id.to_base64().starts_with(text) {
            found.push(id);
        }
        Ok(found.len() < 2)
    })?;
    match found.as_slice() {
        [id] => Ok(*id),
        [] => Err(Fail(
            format!("error: no session id starts with {text:?}"),
            1,
        )),
        _ => Err(Fail(
            format!("error: more than one session id starts with {text:?}; give more of it"),
            2,
        )),
    }
}
