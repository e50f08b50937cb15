//! The crash harness shared by the kill -9 and the power-cut tests: a child
//! process that writes from several threads and prints every operation
//! before (`B`) and after (`A`) the engine acknowledged it, and the
//! parent's check of a reopened store against what was acknowledged.
//!
//! Each child thread works only on its own sessions and its own user, so
//! its history is sequential and at most one of its operations is in
//! flight at the end. Thread 0 also moves the shared manual clock and runs
//! sweeps, so the end lands during sweeps and regenerations too.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sessiondb::{Config, Durability, Engine, ManualClock, SessionId};

use crate::common::{self, Rng};

pub const IDLE_MS: u64 = 30 * 60 * 1000;
pub const THREADS: usize = 4;

pub fn config(clock: &ManualClock, strict: bool) -> Config {
    common::config(clock)
        .idle_timeout(Duration::from_millis(IDLE_MS))
        .absolute_timeout(Duration::from_secs(100 * 24 * 3600))
        .sweep_batch(8)
        // Room for the occasional big session: records this large would
        // reach sled's blob files with sled's default segments.
        .max_session_bytes(sessiondb::MAX_SESSION_BYTES)
        .durability(if strict {
            Durability::Strict
        } else {
            Durability::Relaxed
        })
}

// ---------------------------------------------------------------- child --

/// The child's whole life: run by a test function marked `#[ignore]` that
/// the parent starts with [`spawn_child`]. Writes until it is killed.
pub fn child_main() {
    let dir = std::env::var("SESSIONDB_CRASH_DIR").expect("run by the parent test");
    let strict = std::env::var("SESSIONDB_CRASH_MODE").as_deref() == Ok("strict");
    let seed: u64 = std::env::var("SESSIONDB_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("seed");
    // A panic in any thread ends the child at once, without closing the
    // engine (which would mark the store clean): the parent then finds the
    // child dead before its kill, and fails.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("child: {info}");
        std::process::abort();
    }));
    let clock = ManualClock::new(common::T0);
    let engine = Arc::new(Engine::open(&dir, config(&clock, strict)).expect("child opens"));
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let say = {
        let out = out.clone();
        move |line: String| {
            let mut out = out.lock().expect("stdout");
            writeln!(out, "{line}").expect("write");
            out.flush().expect("flush");
        }
    };
    say("READY".into());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (engine, clock, say) = (engine.clone(), clock.clone(), say.clone());
            std::thread::spawn(move || child_thread(t, seed, &engine, &clock, &say))
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}

/// How the child's threads write.
#[derive(Debug, Clone, Copy)]
pub enum Mix {
    /// The whole mix, as fast as the engine goes: create, update, login,
    /// destroy, log out everywhere, sweeps.
    Full,
    /// Only creates, updates and sweeps, with a pause between operations:
    /// no revocation flushes the queue and the write-bound flush rarely
    /// comes, so what a relaxed store keeps is down to its time window.
    PacedWrites,
}

fn child_thread(t: usize, seed: u64, engine: &Engine, clock: &ManualClock, say: &impl Fn(String)) {
    let mut rng = Rng(seed ^ (t as u64).wrapping_mul(0x1234_5678_9ABC));
    let user = format!("user{t}");
    let mut mine: Vec<SessionId> = Vec::new();
    let now = || sessiondb::Clock::now_ms(clock);
    let paced = std::env::var("SESSIONDB_CRASH_MIX").as_deref() == Ok("paced-writes");
    loop {
        let pick = |rng: &mut Rng, mine: &Vec<SessionId>| {
            (!mine.is_empty()).then(|| mine[rng.below(mine.len() as u64) as usize])
        };
        let mut dice = rng.below(100);
        if paced {
            std::thread::sleep(Duration::from_millis(10));
            // Creates, updates, and (thread 0) sweeps: no revocations.
            dice = match dice {
                0..=29 | 94.. => dice,
                _ => 30 + dice % 35,
            };
        }
        match dice {
            0..=29 => {
                let v = rng.below(1_000_000) as u32;
                let c0 = now();
                let mut s = engine.create().expect("create");
                s.insert("v", &v).expect("insert");
                // A leaf of such sessions weighs more than sled's default
                // blob threshold (128 KiB); see src/backend/sled/mod.rs.
                if rng.below(50) == 0 {
                    s.insert("pad", &"x".repeat(90 * 1024)).expect("insert");
                }
                say(format!("B {t} create {} {v} {c0}", s.id().to_base64()));
                engine.save(&mut s).expect("save");
                say(format!("A {t} create {} {v} {c0}", s.id().to_base64()));
                mine.push(*s.id());
            }
            30..=64 => {
                let Some(id) = pick(&mut rng, &mine) else {
                    continue;
                };
                let v = rng.below(1_000_000) as u32;
                let c0 = now();
                say(format!("B {t} update {} {v} {c0}", id.to_base64()));
                let done = engine
                    .update(&id, |s| s.insert("v", &v).expect("insert"))
                    .expect("update");
                match done {
                    Some(_) => say(format!("A {t} update {} {v} {c0}", id.to_base64())),
                    None => {
                        say(format!("A {t} gone {}", id.to_base64()));
                        mine.retain(|m| *m != id);
                    }
                }
            }
            65..=79 => {
                let Some(id) = pick(&mut rng, &mine) else {
                    continue;
                };
                let c0 = now();
                say(format!("B {t} login {} {c0}", id.to_base64()));
                let loaded = engine.load_id(&id).expect("load");
                // Thread 0 may move the clock and sweep the session away
                // between the load and the login.
                let logged_in = loaded.map(|mut s| match engine.login(&mut s, &user) {
                    Ok(()) => Some(s),
                    Err(sessiondb::Error::Gone { .. }) => None,
                    Err(e) => panic!("login: {e}"),
                });
                match logged_in.flatten() {
                    Some(s) => {
                        say(format!(
                            "A {t} login {} {} {c0}",
                            id.to_base64(),
                            s.id().to_base64()
                        ));
                        mine.retain(|m| *m != id);
                        mine.push(*s.id());
                    }
                    None => {
                        say(format!("A {t} gone {}", id.to_base64()));
                        mine.retain(|m| *m != id);
                    }
                }
            }
            80..=89 => {
                let Some(id) = pick(&mut rng, &mine) else {
                    continue;
                };
                say(format!("B {t} destroy {}", id.to_base64()));
                engine.destroy_id(&id).expect("destroy");
                say(format!("A {t} destroy {}", id.to_base64()));
                mine.retain(|m| *m != id);
            }
            90..=93 => {
                say(format!("B {t} logoutall"));
                engine.destroy_user(&user, None).expect("destroy_user");
                say(format!("A {t} logoutall"));
            }
            _ if t == 0 => {
                // Move time (so sessions expire) and sweep. Now and then a
                // whole idle timeout passes, so that the sweep has many
                // sessions to delete, in several batches; otherwise time
                // moves slowly, so that most sessions stay live and their
                // loss would show (a session the clock may have expired
                // can be swept, so its absence proves nothing). Half an
                // idle timeout now and then makes the expiry entries of
                // sessions updated since fall due while they live on: the
                // sweep re-files them (lagging entries). Paced runs never
                // jump.
                let step = match rng.below(16) {
                    0 if !paced => IDLE_MS,
                    1 if !paced => IDLE_MS / 2,
                    _ => rng.below(IDLE_MS / 200),
                };
                let to = now() + step;
                say(format!("B {t} advance {to}"));
                clock.set(to);
                say(format!("A {t} advance {to}"));
                say(format!("B {t} sweep"));
                let n = engine.admin().sweep_now().expect("sweep");
                say(format!("A {t} sweep {n}"));
            }
            _ => {}
        }
    }
}

// --------------------------------------------------------------- parent --

/// A running child and the lines it printed, each with when the parent
/// read it (never before the child wrote it).
pub struct Run {
    child: Child,
    out: BufReader<ChildStdout>,
    stderr: tempfile::NamedTempFile,
    pub lines: Vec<(Instant, String)>,
    pub acks: u64,
}

/// Starts the test binary's child function `name` on the store in `dir`,
/// and waits until the store is open (a kill before that would test
/// nothing: a store never opened is new, hence clean).
pub fn spawn_child(name: &str, dir: &std::path::Path, strict: bool, seed: u64, mix: Mix) -> Run {
    let stderr = tempfile::NamedTempFile::new().expect("a file for the child's stderr");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--ignored",
            "--exact",
            name,
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SESSIONDB_CRASH_DIR", dir)
        .env(
            "SESSIONDB_CRASH_MODE",
            if strict { "strict" } else { "relaxed" },
        )
        .env("SESSIONDB_CRASH_SEED", seed.to_string())
        .env(
            "SESSIONDB_CRASH_MIX",
            match mix {
                Mix::Full => "full",
                Mix::PacedWrites => "paced-writes",
            },
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr.reopen().expect("reopen")))
        .spawn()
        .expect("spawn child");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    // libtest's own "test crash_child ... " has no newline, so READY ends a
    // line rather than filling one; a few lines of libtest chatter come
    // before it.
    let mut line = String::new();
    let mut ready = false;
    for _ in 0..8 {
        line.clear();
        if out.read_line(&mut line).expect("read") == 0 {
            break;
        }
        if line.trim_end().ends_with("READY") {
            ready = true;
            break;
        }
    }
    assert!(
        ready,
        "seed {seed}: child never said READY (last line {line:?})"
    );
    Run {
        child,
        out,
        stderr,
        lines: Vec::new(),
        acks: 0,
    }
}

impl Run {
    /// Reads the child's next line; false once it has closed its output.
    pub fn read(&mut self) -> bool {
        let mut line = String::new();
        if self.out.read_line(&mut line).expect("read") == 0 {
            return false;
        }
        self.acks += u64::from(line.starts_with("A "));
        self.lines
            .push((Instant::now(), line.trim_end().to_owned()));
        true
    }

    /// SIGKILLs the child; returns whether it was still running, and the
    /// instant of the kill. Then drains what it printed before it died.
    pub fn kill(&mut self) -> (bool, Instant) {
        let running = self.child.try_wait().expect("try_wait").is_none();
        let at = Instant::now();
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
        while self.read() {}
        (running, at)
    }

    /// What the child wrote to stderr (a panic's message, say).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    pub fn acked(&self) -> usize {
        self.lines
            .iter()
            .filter(|(_, l)| l.starts_with("A "))
            .count()
    }

    /// The kinds of operation in flight (begun, not acknowledged) when the
    /// child died, one per thread at most.
    pub fn in_flight(&self) -> Vec<String> {
        let mut open: HashMap<&str, &str> = HashMap::new();
        for (_, line) in &self.lines {
            let mut f = line.split(' ');
            match (f.next(), f.next(), f.next()) {
                (Some("B"), Some(t), Some(kind)) => {
                    open.insert(t, kind);
                }
                (Some("A"), Some(t), _) => {
                    open.remove(t);
                }
                _ => {}
            }
        }
        open.into_values().map(str::to_owned).collect()
    }
}

/// What the reopened store must hold.
#[derive(Debug, Clone, Copy)]
pub enum Required {
    /// Strict: every acknowledged operation.
    AllAcknowledged,
    /// Relaxed: every operation acknowledged before this instant (none, if
    /// `None`), and every revocation (destroy, login, log out everywhere),
    /// which is durable when acknowledged in both modes, with all that
    /// thread did before it.
    Relaxed(Option<Instant>),
}

#[derive(Debug, Clone, PartialEq)]
struct Known {
    value: u32,
    user: Option<String>,
    /// Clock reading before the last acknowledged write: last_seen is at
    /// least this, so the session cannot expire before it + IDLE_MS.
    written_at: u64,
}

/// One operation of one thread: its `B` line, and its `A` line with when
/// the parent read it, once acknowledged.
struct Op {
    begun: Vec<String>,
    done: Option<(Instant, Vec<String>)>,
}

impl Op {
    fn kind(&self) -> &str {
        &self.begun[2]
    }

    /// Whether it was acknowledged as a revocation (a login that found
    /// its session expired revoked nothing).
    fn is_revocation(&self) -> bool {
        self.done
            .as_ref()
            .is_some_and(|(_, f)| matches!(f[2].as_str(), "destroy" | "login" | "logoutall"))
    }
}

fn id(s: &str) -> SessionId {
    SessionId::from_base64(s).expect("an id the child printed")
}

/// Splits the child's lines into each thread's operations, and returns the
/// latest clock reading it may have reached.
fn threads(lines: &[(Instant, String)]) -> (Vec<Vec<Op>>, u64) {
    let mut ops: Vec<Vec<Op>> = (0..THREADS).map(|_| Vec::new()).collect();
    let mut clock_max = common::T0;
    for (at, line) in lines {
        let f: Vec<String> = line.split(' ').map(str::to_owned).collect();
        // Only the child's own lines; libtest prints too. A line cut short
        // by the kill does not parse and so counts as not acknowledged.
        let well_formed = matches!(f[0].as_str(), "A" | "B")
            && f.len() >= 3
            && f.iter().skip(3).all(|w| !w.is_empty());
        let Some(t) = f
            .get(1)
            .and_then(|t| t.parse::<usize>().ok())
            .filter(|t| *t < THREADS)
        else {
            continue;
        };
        if !well_formed {
            continue;
        }
        if f[0] == "B" {
            if f[2] == "advance" {
                clock_max = clock_max.max(f[3].parse().expect("ms"));
            }
            ops[t].push(Op {
                begun: f,
                done: None,
            });
        } else if let Some(op) = ops[t].last_mut().filter(|op| op.done.is_none()) {
            op.done = Some((*at, f));
        }
    }
    (ops, clock_max)
}

/// Checks the reopened store against the acknowledged history.
pub fn verify(
    engine: &Engine,
    lines: &[(Instant, String)],
    required: Required,
) -> Result<VerifyReport, String> {
    let (threads, clock_max) = threads(lines);
    let mut report = VerifyReport::default();
    for (t, ops) in threads.iter().enumerate() {
        let user = format!("user{t}");
        // How many of the thread's operations must be on disk.
        let must = match required {
            Required::AllAcknowledged => ops.iter().filter(|op| op.done.is_some()).count(),
            Required::Relaxed(before) => ops
                .iter()
                .enumerate()
                .filter(|(_, op)| match &op.done {
                    Some((at, _)) => op.is_revocation() || before.is_some_and(|b| *at <= b),
                    None => false,
                })
                .map(|(i, _)| i + 1)
                .max()
                .unwrap_or(0),
        };
        report.required_ops += must;
        // The state those operations left.
        let mut live: HashMap<SessionId, Known> = HashMap::new();
        let mut destroyed: HashSet<SessionId> = HashSet::new();
        for op in &ops[..must] {
            let Some((_, f)) = &op.done else {
                // An operation in flight before a required one: only in
                // relaxed mode, where a later revocation flushed past it.
                continue;
            };
            let num = |i: usize| f[i].parse::<u64>().expect("number");
            match f[2].as_str() {
                "create" => {
                    live.insert(
                        id(&f[3]),
                        Known {
                            value: num(4) as u32,
                            user: None,
                            written_at: num(5),
                        },
                    );
                }
                "update" => {
                    let k = live.get_mut(&id(&f[3])).expect("updated a known session");
                    k.value = num(4) as u32;
                    k.written_at = num(5);
                }
                "login" => {
                    let old = id(&f[3]);
                    let mut k = live.remove(&old).expect("logged in a known session");
                    destroyed.insert(old);
                    k.user = Some(user.clone());
                    k.written_at = num(5);
                    live.insert(id(&f[4]), k);
                }
                "destroy" => {
                    let gone = id(&f[3]);
                    live.remove(&gone);
                    destroyed.insert(gone);
                }
                "logoutall" => {
                    let mine = Some(user.clone());
                    live.retain(|i, k| {
                        let keep = k.user != mine;
                        if !keep {
                            destroyed.insert(*i);
                        }
                        keep
                    });
                }
                // Expired and swept (or about to be): no longer predicted.
                "gone" => {
                    live.remove(&id(&f[3]));
                }
                _ => {}
            }
        }
        // What the operations after those (acknowledged or in flight) may
        // have done: later values, a user, or the session gone.
        let mut later_values: HashMap<SessionId, Vec<u32>> = HashMap::new();
        let mut may_go: HashSet<SessionId> = HashSet::new();
        let mut may_log_in: HashSet<SessionId> = HashSet::new();
        let mut logout_later = false;
        for op in &ops[must..] {
            let f = &op.begun;
            match f[2].as_str() {
                "update" => {
                    later_values
                        .entry(id(&f[3]))
                        .or_default()
                        .push(f[4].parse().expect("value"));
                }
                "login" => {
                    may_go.insert(id(&f[3]));
                    may_log_in.insert(id(&f[3]));
                }
                "destroy" => {
                    may_go.insert(id(&f[3]));
                }
                "logoutall" => logout_later = true,
                _ => {}
            }
            // A revocation acknowledged at any time is durable.
            if let Some((_, done)) = &op.done {
                match done[2].as_str() {
                    "destroy" => {
                        destroyed.insert(id(&done[3]));
                    }
                    "login" => {
                        destroyed.insert(id(&done[3]));
                    }
                    _ => {}
                }
            }
        }
        for (i, k) in &live {
            let may_have_expired = clock_max >= k.written_at + IDLE_MS;
            match may_have_expired {
                true => report.sessions_maybe_swept += 1,
                false => report.sessions_checked += 1,
            }
            let gone_ok =
                may_have_expired || may_go.contains(i) || (logout_later && k.user.is_some());
            match engine.load_id(i).map_err(|e| format!("load: {e}"))? {
                None if gone_ok => {}
                None => {
                    return Err(format!(
                        "thread {t}: acknowledged session {} lost ({k:?}); {must} of its ops required; its history: {}",
                        i.hint(),
                        history(ops, i)
                    ));
                }
                Some(s) => {
                    let value: Option<u32> = s.get("v").map_err(|e| e.to_string())?;
                    let value_ok = value == Some(k.value)
                        || value
                            .is_some_and(|v| later_values.get(i).is_some_and(|l| l.contains(&v)));
                    let user_ok = s.user() == k.user.as_deref()
                        || (may_log_in.contains(i) && s.user() == Some(user.as_str()));
                    if !value_ok || !user_ok {
                        return Err(format!(
                            "thread {t}: session {} holds {value:?}/{:?}, acknowledged {k:?}; {must} of its ops required; its history: {}",
                            i.hint(),
                            s.user(),
                            history(ops, i)
                        ));
                    }
                }
            }
        }
        for i in &destroyed {
            report.destroyed_checked += 1;
            if engine
                .load_id(i)
                .map_err(|e| format!("load: {e}"))?
                .is_some()
            {
                return Err(format!(
                    "thread {t}: destroyed session {} came back",
                    i.hint()
                ));
            }
        }
    }
    Ok(report)
}

/// The operations of one thread that name `i`, and its revocations, for
/// a failure's message.
fn history(ops: &[Op], i: &SessionId) -> String {
    let b64 = i.to_base64();
    ops.iter()
        .enumerate()
        .filter(|(_, op)| op.begun.contains(&b64) || op.kind() == "logoutall")
        .map(|(n, op)| {
            let done = op.done.as_ref().map(|(_, f)| f.join(" "));
            format!("\n  #{n} {} -> {done:?}", op.begun.join(" "))
        })
        .collect()
}

/// What [`verify`] looked at.
#[derive(Debug, Default, Clone, Copy)]
pub struct VerifyReport {
    /// Operations that had to be on disk.
    pub required_ops: usize,
    /// Sessions that had to be there, with their acknowledged state.
    pub sessions_checked: usize,
    /// Sessions the clock may have expired before a sweep: checked when
    /// there, but their absence proves nothing.
    pub sessions_maybe_swept: usize,
    /// Destroyed (or replaced) ids checked to stay gone.
    pub destroyed_checked: usize,
}

/// A base seed from the environment (`SESSIONDB_CRASH_SEED`, to replay a
/// run) or the time.
pub fn base_seed() -> u64 {
    std::env::var("SESSIONDB_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}
