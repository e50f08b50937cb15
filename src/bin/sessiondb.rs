//! `sessiondb`: the operator's tool. Inspect, sweep, check, repair, revoke,
//! export and import a store (the directory the engine's `open` and the
//! demo's `--data` take). Build with `--features cli`.
//!
//! Data goes to stdout, and nothing else does: messages and progress bars
//! go to stderr, and progress bars only when stderr is a terminal. Exit
//! status: 0 on success, 1 when the store has problems (`check`) or the
//! input does (`import`), 2 for usage errors and failures.
//!
//! User names, value keys and values come from whoever uses the service,
//! so nothing the tool prints lets them through raw: text output writes
//! control characters (C0, DEL, C1) and bidirectional formatting characters
//! as `\u{..}`, and JSON output writes them as `\uXXXX` (the same string to
//! a parser). A name cannot inject escape sequences into an operator's
//! terminal or reorder the line it is shown on.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize as _;
use serde_json::{Value, json};
use sessiondb::{
    Config, Durability, Engine, Error, FORMAT_VERSION, Imported, Key, KeyRing, SessionId,
    SessionRecord,
};

/// Records read per page when walking the whole store.
const PAGE: usize = 1000;

#[derive(Parser, Debug)]
#[command(
    name = "sessiondb",
    version,
    about = "Inspect and maintain a sessiondb store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Live sessions, users, expired awaiting sweep, bytes on disk, format.
    Stats {
        /// The store's directory.
        dir: PathBuf,
        #[command(flatten)]
        out: Out,
    },
    /// Live sessions with user, created, last seen and expiry.
    List {
        /// The store's directory.
        dir: PathBuf,
        /// Only this user's sessions.
        #[arg(long)]
        user: Option<String>,
        /// At most this many sessions.
        #[arg(long)]
        limit: Option<usize>,
        /// Whole ids instead of 8-character hints. Whole ids are bearer
        /// secrets only together with the signing key, but keep them out of
        /// tickets and chat all the same.
        #[arg(long)]
        full_ids: bool,
        #[command(flatten)]
        out: Out,
    },
    /// One session's metadata and keys.
    Show {
        /// The store's directory.
        dir: PathBuf,
        /// The session's id, or a unique prefix of it (such as its hint).
        /// Ids may start with `-`.
        #[arg(allow_hyphen_values = true)]
        id: String,
        /// Show the values (base64 of their encoding, and the text when a
        /// value is a string), not only their sizes.
        #[arg(long)]
        values: bool,
        #[command(flatten)]
        out: Out,
    },
    /// Destroy one session or all of a user's; prints how many.
    Revoke {
        /// The store's directory.
        dir: PathBuf,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Out,
    },
    /// Delete expired sessions now; prints how many.
    Sweep {
        /// The store's directory.
        dir: PathBuf,
        #[command(flatten)]
        out: Out,
    },
    /// Check the store's invariants; exit status 0 only when it is sound.
    Check {
        /// The store's directory.
        dir: PathBuf,
        /// Mend what the check finds (indexes rebuilt from the sessions,
        /// undecodable records moved to quarantine), then check again.
        #[arg(long)]
        repair: bool,
        #[command(flatten)]
        out: Out,
    },
    /// Write every live session as JSON lines, to stdout or a new file.
    /// The output is a secret: it holds every session's full id and values.
    Export {
        /// The store's directory.
        dir: PathBuf,
        /// Write to this file, made owner-only (0600); it must not exist.
        /// Prefer it to redirecting stdout, which leaves the mode to the
        /// shell's umask.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Read JSON lines (as `export` writes them) from stdin into the store.
    /// Every line is checked first; if any is bad, nothing is written.
    Import {
        /// The store's directory (made if it does not exist).
        dir: PathBuf,
    },
}

#[derive(Args, Debug)]
struct Out {
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct Target {
    /// Every session of this user.
    #[arg(long)]
    user: Option<String>,
    /// This session (whole id, or a unique prefix; it may start with `-`).
    #[arg(long, allow_hyphen_values = true)]
    id: Option<String>,
}

/// A failure: what to print, and the exit status.
struct Fail(String, u8);

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        let hint = match &e {
            Error::Locked { .. } => {
                "\nhint: a running service holds the store; stop it first, or work on a copy \
                 made while it was stopped"
            }
            Error::NotAStore { .. } => "\nhint: give the directory the service's --data names",
            _ => "",
        };
        Fail(format!("error: {e}{hint}"), 2)
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Self {
        Fail(format!("error: {e}"), 2)
    }
}

type Outcome = Result<ExitCode, Fail>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(Fail(msg, code)) => {
            for line in msg.lines() {
                eprintln!("{}", printable(line));
            }
            ExitCode::from(code)
        }
    }
}

/// Characters that drive a terminal or reorder what it shows: C0 and C1
/// controls and DEL (`char::is_control`), and Unicode's bidirectional
/// formatting characters (embeddings, overrides, isolates, marks).
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every [unsafe](is_unsafe) character written as `\u{..}`:
/// for everything from the store that text output shows.
fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// serde_json's compact format, except that [unsafe](is_unsafe) characters
/// are written as `\uXXXX` too (serde_json escapes only C0 controls, `"`
/// and `\\`): the same JSON to any parser, and harmless on a terminal.
struct TerminalSafe;

impl serde_json::ser::Formatter for TerminalSafe {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if is_unsafe(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                // Every unsafe character is in the BMP: one \uXXXX.
                write!(writer, "\\u{:04x}", u32::from(c))?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// Writes `v` as one line of [terminal-safe](TerminalSafe) JSON.
fn write_json(out: &mut impl std::io::Write, v: &Value) -> std::io::Result<()> {
    v.serialize(&mut serde_json::Serializer::with_formatter(
        &mut *out,
        TerminalSafe,
    ))?;
    writeln!(out)
}

fn run(command: Command) -> Outcome {
    match command {
        Command::Stats { dir, out } => stats(&open_existing(&dir)?, &dir, out.json),
        Command::List {
            dir,
            user,
            limit,
            full_ids,
            out,
        } => list(
            &open_existing(&dir)?,
            user.as_deref(),
            limit,
            full_ids,
            out.json,
        ),
        Command::Show {
            dir,
            id,
            values,
            out,
        } => show(&open_existing(&dir)?, &id, values, out.json),
        Command::Revoke { dir, target, out } => revoke(open_existing(&dir)?, target, out.json),
        Command::Sweep { dir, out } => sweep(open_existing(&dir)?, out.json),
        Command::Check { dir, repair, out } => check(open_existing(&dir)?, repair, out.json),
        Command::Export { dir, output } => export(&open_existing(&dir)?, output.as_deref()),
        Command::Import { dir } => import(open(&dir)?),
    }
}

/// Opens a store that must already exist (so a typo is not a new store).
fn open_existing(dir: &Path) -> Result<Engine, Fail> {
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
fn config() -> Result<Config, Fail> {
    Ok(Config::new(KeyRing::new(0, Key::generate()?))
        .sweeper(false)
        .durability(Durability::Relaxed))
}

fn open(dir: &Path) -> Result<Engine, Fail> {
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

fn print_json(v: &Value) -> Result<(), Fail> {
    write_json(&mut std::io::stdout().lock(), v)?;
    Ok(())
}

fn time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn spinner(what: &str) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {pos} ({per_sec}, {elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Calls `f` on every stored record, page by page.
fn each_record(
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
fn resolve(engine: &Engine, text: &str) -> Result<SessionId, Fail> {
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

fn stats(engine: &Engine, dir: &Path, as_json: bool) -> Outcome {
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

fn list(
    engine: &Engine,
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
            for i in engine.sessions_of(u)?.into_iter().take(limit) {
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
            each_record(engine, &ProgressBar::hidden(), |id, r| {
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

fn show(engine: &Engine, id: &str, values: bool, as_json: bool) -> Outcome {
    let id = resolve(engine, id)?;
    let Some(r) = engine.admin().record(&id)? else {
        return Err(Fail(
            format!("error: session {} is not live (expired or gone)", id.hint()),
            1,
        ));
    };
    let value_of = |k: &str, bytes: &[u8]| {
        let mut v = json!({"key": k, "encoded_bytes": bytes.len()});
        if values {
            v["base64"] = json!(STANDARD.encode(bytes));
            if let Ok(Some(text)) = r.get::<String>(k) {
                v["text"] = json!(text);
            }
        }
        v
    };
    let keys: Vec<Value> = r.data.iter().map(|(k, b)| value_of(k, b)).collect();
    if as_json {
        print_json(&json!({
            "id": id.to_base64(),
            "user": r.user,
            "version": r.version,
            "created_at": r.created_at,
            "last_seen": r.last_seen,
            "expires_at": r.expires_at,
            "absolute_deadline": r.absolute_deadline,
            "idle_timeout_ms": r.idle_timeout_ms,
            "values": keys,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("id:            {}", id.to_base64());
    println!(
        "user:          {}",
        printable(r.user.as_deref().unwrap_or("-"))
    );
    println!("version:       {}", r.version);
    println!("created:       {}", time(r.created_at));
    println!("last seen:     {}", time(r.last_seen));
    println!("expires:       {}", time(r.expires_at));
    println!("deadline:      {}", time(r.absolute_deadline));
    println!("idle timeout:  {} s", r.idle_timeout_ms / 1000);
    println!("values:        {}", r.data.len());
    for v in keys {
        let key = printable(v["key"].as_str().unwrap_or_default());
        print!("  {key}: {} bytes", v["encoded_bytes"]);
        if let Some(t) = v.get("text").and_then(Value::as_str) {
            // Debug quotes and escapes controls; `printable` adds the rest.
            print!(", text {}", printable(&format!("{t:?}")));
        } else if let Some(b) = v.get("base64").and_then(Value::as_str) {
            print!(", base64 {b}");
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

fn revoke(engine: Engine, target: Target, as_json: bool) -> Outcome {
    let n = match (target.user, target.id) {
        (Some(u), _) => engine.destroy_user(&u, None)?,
        (None, Some(id)) => {
            let id = resolve(&engine, &id)?;
            usize::from(engine.destroy_id(&id)?)
        }
        (None, None) => return Err(Fail("error: give --user or --id".into(), 2)),
    };
    engine.close()?;
    if as_json {
        print_json(&json!({"revoked": n}))?;
    } else {
        println!("revoked {n} session(s)");
    }
    Ok(ExitCode::SUCCESS)
}

fn sweep(engine: Engine, as_json: bool) -> Outcome {
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

fn check(engine: Engine, repair: bool, as_json: bool) -> Outcome {
    let bar = spinner("checking");
    let found = engine.admin().check()?;
    bar.finish_and_clear();
    let report = if repair && !found.is_empty() {
        let bar = spinner("repairing");
        let r = engine.admin().repair()?;
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
            "found": found.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "repaired": report.as_ref().map(|r| r.fixed.len()),
            "quarantined": report.as_ref().map(|r| r.quarantined),
            "remaining": report.as_ref().map_or_else(
                || found.iter().map(ToString::to_string).collect::<Vec<_>>(),
                |r| r.remaining.iter().map(ToString::to_string).collect()),
            "sound": remaining == 0,
        }))?;
    } else {
        for v in &found {
            println!("problem: {}", printable(&v.to_string()));
        }
        if let Some(r) = &report {
            println!(
                "repaired {} problem(s); {} record(s) in quarantine",
                r.fixed.len(),
                r.quarantined
            );
            for v in &r.remaining {
                println!("still broken: {}", printable(&v.to_string()));
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
    engine.close()?;
    Ok(if remaining == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn to_line(r: &SessionRecord) -> Value {
    let data: BTreeMap<&str, String> = r
        .data
        .iter()
        .map(|(k, v)| (k.as_str(), STANDARD.encode(v)))
        .collect();
    json!({
        "id": r.id.to_base64(),
        "user": r.user,
        "created_at": r.created_at,
        "last_seen": r.last_seen,
        "expires_at": r.expires_at,
        "absolute_deadline": r.absolute_deadline,
        "idle_timeout_ms": r.idle_timeout_ms,
        "data": data,
    })
}

/// Where `export` writes: a new owner-only file, or stdout.
fn export_sink(output: Option<&Path>) -> Result<Box<dyn std::io::Write>, Fail> {
    let Some(path) = output else {
        warn_if_stdout_is_shared();
        return Ok(Box::new(std::io::stdout().lock()));
    };
    let mut options = std::fs::OpenOptions::new();
    // create_new: never truncate a file that may be readable by others (a
    // mode only applies to a file being made), and never follow a link.
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(file) => Ok(Box::new(file)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Fail(
            format!(
                "error: {} exists; export writes only a new file",
                path.display()
            ),
            2,
        )),
        Err(e) => Err(Fail(format!("error: {}: {e}", path.display()), 2)),
    }
}

/// Redirected stdout gets the shell's umask (often world-readable): say so.
fn warn_if_stdout_is_shared() {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        use std::os::unix::fs::PermissionsExt as _;
        let shared = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map(std::fs::File::from)
            .and_then(|f| f.metadata())
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o077 != 0);
        if shared {
            eprintln!(
                "warning: the export goes to a file others may read; it holds every session's \
                 full id and values. Use --output FILE, which makes it owner-only."
            );
        }
    }
}

fn export(engine: &Engine, output: Option<&Path>) -> Outcome {
    let mut out = std::io::BufWriter::new(export_sink(output)?);
    let bar = spinner("exporting");
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (mut written, mut corrupt) = (0u64, 0u64);
    each_record(engine, &bar, |id, r| {
        match r {
            Ok(r) if r.expires_at > now => {
                write_json(&mut out, &to_line(&r))?;
                written += 1;
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("skipped {}: {e}", id.hint());
                corrupt += 1;
            }
        }
        Ok(true)
    })?;
    out.flush()?;
    bar.finish_and_clear();
    eprintln!("exported {written} live session(s)");
    Ok(if corrupt == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{corrupt} record(s) could not be read; `sessiondb check` lists them");
        ExitCode::from(1)
    })
}

/// One line of `export`'s output, parsed.
fn from_line(line: &str) -> Result<SessionRecord, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let num = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("`{k}` must be a non-negative integer"))
    };
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .and_then(SessionId::from_base64)
        .ok_or("`id` must be a session id (43 base64url characters)")?;
    let user = match v.get("user") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) if !u.is_empty() => Some(u.clone()),
        Some(_) => return Err("`user` must be a non-empty string or null".into()),
    };
    let mut data = BTreeMap::new();
    match v.get("data") {
        Some(Value::Object(m)) => {
            for (k, b) in m {
                let bytes = b
                    .as_str()
                    .and_then(|s| STANDARD.decode(s).ok())
                    .ok_or_else(|| format!("data value `{k}` must be base64"))?;
                data.insert(k.clone(), bytes);
            }
        }
        None => {}
        Some(_) => return Err("`data` must be an object".into()),
    }
    Ok(SessionRecord {
        id,
        version: 1,
        user,
        created_at: num("created_at")?,
        last_seen: num("last_seen")?,
        expires_at: num("expires_at")?,
        absolute_deadline: num("absolute_deadline")?,
        idle_timeout_ms: num("idle_timeout_ms")?,
        data,
    })
}

fn import(engine: Engine) -> Outcome {
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
            Ok(r) => match engine.admin().record(&r.id) {
                Ok(Some(_)) => bad.push(format!(
                    "line {}: session {} is already in the store",
                    n + 1,
                    r.id.hint()
                )),
                Ok(None) => records.push((n + 1, r)),
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
        let dry = Engine::memory(config()?)?;
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
        match engine.admin().import(r) {
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
    engine.close()?;
    eprintln!(
        "imported {written} session(s); skipped {expired} already expired, {revoked} revoked since"
    );
    Ok(ExitCode::SUCCESS)
}
