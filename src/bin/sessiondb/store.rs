//! Opening a store, directly or through the control socket of the service
//! that holds it; walking its records, and finding a session by a prefix of
//! its id.

use std::cell::RefCell;
use std::path::Path;

use indicatif::ProgressBar;
use sessiondb::control::Client;
use sessiondb::control::proto::RepairReply;
use sessiondb::{
    Config, Durability, Engine, Error, Imported, Key, KeyRing, Metrics, SessionId, SessionInfo,
    SessionRecord, Stats,
};

use crate::fail::Fail;

/// Records read per page when walking the whole store.
pub(crate) const PAGE: usize = 1000;

/// The store a command works on: opened here, or inside the running
/// service that holds it, through its control socket. Every command calls
/// these and nothing else, so its output is the same either way.
pub(crate) enum Store {
    Local(Engine),
    Live(RefCell<Client>),
}

impl Store {
    /// Statistics; on a live store, the engine's counters too.
    pub(crate) fn stats(&self) -> sessiondb::Result<(Stats, Option<Metrics>)> {
        match self {
            Self::Local(e) => Ok((e.admin().stats()?, None)),
            Self::Live(c) => c.borrow_mut().stats().map(|(s, m)| (s, Some(m))),
        }
    }

    /// The running engine's counters (live stores only).
    pub(crate) fn metrics(&self) -> sessiondb::Result<Option<Metrics>> {
        match self {
            Self::Local(_) => Ok(None),
            Self::Live(c) => c.borrow_mut().metrics().map(Some),
        }
    }

    pub(crate) fn records(
        &self,
        after: Option<&SessionId>,
        limit: usize,
    ) -> sessiondb::Result<Vec<(SessionId, sessiondb::Result<SessionRecord>)>> {
        match self {
            Self::Local(e) => e.admin().records(after, limit),
            Self::Live(c) => c.borrow_mut().records(after, limit),
        }
    }

    pub(crate) fn record(&self, id: &SessionId) -> sessiondb::Result<Option<SessionRecord>> {
        match self {
            Self::Local(e) => e.admin().record(id),
            Self::Live(c) => c.borrow_mut().record(id),
        }
    }

    pub(crate) fn sessions_of(&self, user: &str) -> sessiondb::Result<Vec<SessionInfo>> {
        match self {
            Self::Local(e) => e.sessions_of(user),
            Self::Live(c) => c.borrow_mut().sessions_of(user),
        }
    }

    pub(crate) fn destroy_user(&self, user: &str) -> sessiondb::Result<usize> {
        match self {
            Self::Local(e) => e.destroy_user(user, None),
            Self::Live(c) => c.borrow_mut().destroy_user(user),
        }
    }

    pub(crate) fn destroy_id(&self, id: &SessionId) -> sessiondb::Result<bool> {
        match self {
            Self::Local(e) => e.destroy_id(id),
            Self::Live(c) => c.borrow_mut().destroy_id(id),
        }
    }

    pub(crate) fn sweep_now(&self) -> sessiondb::Result<u64> {
        match self {
            Self::Local(e) => e.admin().sweep_now(),
            Self::Live(c) => c.borrow_mut().sweep_now(),
        }
    }

    /// The violations, as text.
    pub(crate) fn check(&self) -> sessiondb::Result<Vec<String>> {
        match self {
            Self::Local(e) => Ok(e.admin().check()?.iter().map(ToString::to_string).collect()),
            Self::Live(c) => c.borrow_mut().check(),
        }
    }

    pub(crate) fn repair(&self) -> sessiondb::Result<RepairReply> {
        match self {
            Self::Local(e) => {
                let r = e.admin().repair()?;
                let text = |v: &[sessiondb::Violation]| v.iter().map(ToString::to_string).collect();
                Ok(RepairReply {
                    fixed: text(&r.fixed),
                    fixed_count: r.fixed.len() as u64,
                    quarantined: r.quarantined,
                    remaining: text(&r.remaining),
                })
            }
            Self::Live(c) => c.borrow_mut().repair(),
        }
    }

    pub(crate) fn import(&self, r: &SessionRecord) -> sessiondb::Result<Imported> {
        match self {
            Self::Local(e) => e.admin().import(r),
            Self::Live(c) => c.borrow_mut().import(r),
        }
    }

    /// Closes a store opened here; asks a live one to flush. Either way,
    /// what the command changed is on disk when this returns.
    pub(crate) fn close(self) -> sessiondb::Result<()> {
        match self {
            Self::Local(e) => e.close(),
            Self::Live(c) => c.into_inner().flush(),
        }
    }
}

/// Opens a store that must already exist (so a typo is not a new store).
pub(crate) fn open_existing(dir: &Path) -> Result<Store, Fail> {
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
/// what it changed is on disk when it exits. No control socket: nobody
/// else works on a store the tool holds for a moment.
pub(crate) fn config() -> Result<Config, Fail> {
    Ok(Config::new(KeyRing::new(0, Key::generate()?))
        .sweeper(false)
        .control(false)
        .durability(Durability::Relaxed))
}

/// Opens the store here, or, when a running service holds it, connects to
/// that service's control socket. Says on stderr which.
pub(crate) fn open(dir: &Path) -> Result<Store, Fail> {
    // A service that stops between the two tries frees the store: try
    // again, once.
    for last in [false, true] {
        match Engine::open(dir, config()?) {
            Ok(engine) => {
                eprintln!("note: no service holds the store; working on it directly");
                if let Some(r) = engine.recovery() {
                    eprintln!(
                        "note: the store was not closed cleanly; the check at open found {} \
                         problem(s){}",
                        r.found.len(),
                        if r.repair.is_some() {
                            " and repaired them"
                        } else {
                            ""
                        }
                    );
                }
                return Ok(Store::Local(engine));
            }
            Err(Error::Locked { .. }) => match Client::connect(dir) {
                Ok(client) => {
                    eprintln!(
                        "note: a running service (pid {}) holds the store; running the command \
                         inside it, through {}",
                        client.welcome().pid,
                        dir.join(sessiondb::control::SOCKET).display()
                    );
                    return Ok(Store::Live(RefCell::new(client)));
                }
                Err(Error::Io { source, .. })
                    if !last
                        && matches!(
                            source.kind(),
                            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                        ) =>
                {
                    continue;
                }
                Err(e) => return Err(not_reachable(dir, e)),
            },
            Err(e) => return Err(e.into()),
        }
    }
    Err(Fail(
        "error: the store is neither free nor served".into(),
        2,
    ))
}

/// The running service that holds the store, through its control socket;
/// never the store itself (`watch` has nothing to show of a stopped store,
/// and opening it would hold the lock a starting service needs).
pub(crate) fn connect_live(dir: &Path) -> Result<Store, Fail> {
    match Client::connect(dir) {
        Ok(client) => {
            eprintln!(
                "note: a running service (pid {}) holds the store; watching it through {}",
                client.welcome().pid,
                dir.join(sessiondb::control::SOCKET).display()
            );
            Ok(Store::Live(RefCell::new(client)))
        }
        Err(e) => Err(Fail(
            format!(
                "error: nothing to watch: no running service answers on {}: {e}\n\
                 hint: watch shows a running service's figures; `sessiondb stats` reads a \
                 stopped store",
                dir.join(sessiondb::control::SOCKET).display()
            ),
            2,
        )),
    }
}

/// Why a held store cannot be worked on, and what to do.
fn not_reachable(dir: &Path, e: Error) -> Fail {
    let held = format!(
        "error: a running service holds {}, and its control socket cannot be used",
        dir.display()
    );
    let hint = match &e {
        Error::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                "hint: the service has no control socket (it is still starting, it runs \
                 with Config::control(false), or it is a sessiondb older than this tool); try \
                 again, or stop it first"
            }
            std::io::ErrorKind::PermissionDenied => {
                "hint: run the tool as the service's user (or root)"
            }
            _ => "hint: stop the service first, or work on a copy made while it was stopped",
        },
        _ => "hint: run the tool as the service's user (or root), with a version that matches it",
    };
    Fail(format!("{held}: {e}\n{hint}"), 2)
}

/// Calls `f` on every stored record, page by page.
pub(crate) fn each_record(
    store: &Store,
    bar: &ProgressBar,
    mut f: impl FnMut(SessionId, sessiondb::Result<SessionRecord>) -> Result<bool, Fail>,
) -> Result<(), Fail> {
    let mut after = None;
    loop {
        let page = store.records(after.as_ref(), PAGE)?;
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
pub(crate) fn resolve(store: &Store, text: &str) -> Result<SessionId, Fail> {
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
    each_record(store, &ProgressBar::hidden(), |id, _| {
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
