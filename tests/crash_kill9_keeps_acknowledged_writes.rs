//! Kill -9 in the middle of writes: the test re-runs its own binary as a
//! child that writes from several threads and prints every operation before
//! (`B`) and after (`A`) the engine acknowledged it; the parent SIGKILLs it at
//! a random moment, reopens the store and checks:
//!
//! - both modes: the store opens, and `check()` finds every invariant true;
//! - strict mode: every acknowledged state is there (or the thread's one
//!   in-flight operation replaced it), and nothing acknowledged as destroyed
//!   has come back.
//!
//! Each child thread works only on its own sessions and its own user, so
//! its history is sequential and at most one of its operations is in
//! flight at the kill. Thread 0 also moves the shared manual clock and runs
//! sweeps, so kills land during sweeps and regenerations too.
//!
//! Quick setting (in `cargo test`): 50 kills. Long setting:
//! `SESSIONDB_CRASH_KILLS=2000 cargo test --release --test crash_kill9_keeps_acknowledged_writes -- --nocapture`.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessiondb::{Config, Durability, Engine, ManualClock, SessionId};

const IDLE_MS: u64 = 30 * 60 * 1000;
const THREADS: usize = 4;

/// splitmix64: a seeded generator, so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn config(clock: &ManualClock, strict: bool) -> Config {
    common::config(clock)
        .idle_timeout(Duration::from_millis(IDLE_MS))
        .absolute_timeout(Duration::from_secs(100 * 24 * 3600))
        .sweep_batch(8)
        .durability(if strict {
            Durability::Strict
        } else {
            Durability::Relaxed
        })
}

// ---------------------------------------------------------------- child --

#[test]
#[ignore = "helper: run as a child process by kill9_loop"]
fn crash_child() {
    let dir = std::env::var("SESSIONDB_CRASH_DIR").expect("run by kill9_loop");
    let strict = std::env::var("SESSIONDB_CRASH_MODE").as_deref() == Ok("strict");
    let seed: u64 = std::env::var("SESSIONDB_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("seed");
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

fn child_thread(t: usize, seed: u64, engine: &Engine, clock: &ManualClock, say: &impl Fn(String)) {
    let mut rng = Rng(seed ^ (t as u64).wrapping_mul(0x1234_5678_9ABC));
    let user = format!("user{t}");
    let mut mine: Vec<SessionId> = Vec::new();
    let now = || sessiondb::Clock::now_ms(clock);
    loop {
        let pick = |rng: &mut Rng, mine: &Vec<SessionId>| {
            (!mine.is_empty()).then(|| mine[rng.below(mine.len() as u64) as usize])
        };
        match rng.below(100) {
            0..=29 => {
                let v = rng.below(1_000_000) as u32;
                let c0 = now();
                let mut s = engine.create().expect("create");
                s.insert("v", &v).expect("insert");
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
                match engine.load_id(&id).expect("load") {
                    Some(mut s) => {
                        engine.login(&mut s, &user).expect("login");
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
                // Move time (so sessions expire) and sweep.
                // Now and then a whole idle timeout passes, so that the
                // sweep has many sessions to delete, in several batches.
                let step = match rng.below(4) {
                    0 => IDLE_MS,
                    _ => rng.below(IDLE_MS / 3),
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

#[derive(Debug, Clone, PartialEq)]
struct Known {
    value: u32,
    user: Option<String>,
    /// Clock reading before the last acknowledged write: last_seen is at
    /// least this, so the session cannot expire before it + IDLE_MS.
    written_at: u64,
}

/// What the acknowledged history of one child thread says must be true.
#[derive(Debug, Default)]
struct ThreadModel {
    live: HashMap<SessionId, Known>,
    destroyed: HashSet<SessionId>,
    /// The `B` line of the operation in flight at the kill, if any.
    in_flight: Option<Vec<String>>,
}

fn id(s: &str) -> SessionId {
    SessionId::from_base64(s).expect("an id the child printed")
}

fn replay(lines: &[String]) -> (Vec<ThreadModel>, u64) {
    let mut models: Vec<ThreadModel> = (0..THREADS).map(|_| ThreadModel::default()).collect();
    let mut clock_max = common::T0;
    for line in lines {
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
        let m = &mut models[t];
        if f[0] == "B" {
            if f[2] == "advance" {
                clock_max = clock_max.max(f[3].parse().expect("ms"));
            }
            m.in_flight = Some(f);
            continue;
        }
        m.in_flight = None;
        let num = |i: usize| f[i].parse::<u64>().expect("number");
        match f[2].as_str() {
            "create" => {
                m.live.insert(
                    id(&f[3]),
                    Known {
                        value: num(4) as u32,
                        user: None,
                        written_at: num(5),
                    },
                );
            }
            "update" => {
                let k = m.live.get_mut(&id(&f[3])).expect("updated a known session");
                k.value = num(4) as u32;
                k.written_at = num(5);
            }
            "login" => {
                let old = id(&f[3]);
                let mut k = m.live.remove(&old).expect("logged in a known session");
                m.destroyed.insert(old);
                k.user = Some(format!("user{t}"));
                k.written_at = num(5);
                m.live.insert(id(&f[4]), k);
            }
            "destroy" => {
                let gone = id(&f[3]);
                m.live.remove(&gone);
                m.destroyed.insert(gone);
            }
            "logoutall" => {
                let user = Some(format!("user{t}"));
                let ids: Vec<_> = m
                    .live
                    .iter()
                    .filter(|(_, k)| k.user == user)
                    .map(|(i, _)| *i)
                    .collect();
                for i in ids {
                    m.live.remove(&i);
                    m.destroyed.insert(i);
                }
            }
            // Expired and swept (or about to be): no longer predicted.
            "gone" => {
                m.live.remove(&id(&f[3]));
            }
            _ => {}
        }
    }
    (models, clock_max)
}

/// Checks the reopened store against the acknowledged history (strict).
fn verify_strict(engine: &Engine, models: &[ThreadModel], clock_max: u64) -> Result<(), String> {
    for (t, m) in models.iter().enumerate() {
        let flight = m.in_flight.as_ref();
        let in_flight_on =
            |i: &SessionId| flight.is_some_and(|f| f.len() > 3 && f[3] == i.to_base64());
        let logout_in_flight = flight.is_some_and(|f| f[2] == "logoutall");
        for (i, k) in &m.live {
            let may_have_expired = clock_max >= k.written_at + IDLE_MS;
            let touched = in_flight_on(i) || (logout_in_flight && k.user.is_some());
            match engine.load_id(i).map_err(|e| format!("load: {e}"))? {
                None if may_have_expired || touched => {}
                None => {
                    return Err(format!(
                        "thread {t}: acknowledged session {} lost",
                        i.hint()
                    ));
                }
                Some(s) => {
                    let value: Option<u32> = s.get("v").map_err(|e| e.to_string())?;
                    let in_flight_value = flight
                        .filter(|f| f[2] == "update" && in_flight_on(i))
                        .map(|f| f[4].parse::<u32>().expect("value"));
                    let user_ok = s.user() == k.user.as_deref()
                        || (in_flight_on(i) && s.user() == Some(&format!("user{t}")));
                    if (value != Some(k.value) && value != in_flight_value) || !user_ok {
                        return Err(format!(
                            "thread {t}: session {} holds {value:?}/{:?}, acknowledged {k:?}, in flight {flight:?}",
                            i.hint(),
                            s.user()
                        ));
                    }
                }
            }
        }
        for i in &m.destroyed {
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
    Ok(())
}

/// The kinds of operation in flight (begun, not acknowledged) when the
/// child died, one per thread at most.
fn in_flight(lines: &[String]) -> Vec<String> {
    let mut open: HashMap<&str, &str> = HashMap::new();
    for line in lines {
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

/// One kill: returns (acknowledged operations, whether the child was still
/// running when killed, the operations in flight at the kill).
fn one_kill(seed: u64, strict: bool) -> (usize, bool, Vec<String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rng = Rng(seed);
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--ignored",
            "--exact",
            "crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SESSIONDB_CRASH_DIR", dir.path())
        .env(
            "SESSIONDB_CRASH_MODE",
            if strict { "strict" } else { "relaxed" },
        )
        .env("SESSIONDB_CRASH_SEED", seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut lines = Vec::new();
    let kill_after = rng.below(400);
    let mut acks = 0;
    let mut line = String::new();
    // The store exists once the child says READY; a kill before that would
    // test nothing (a store never opened is new, hence clean). libtest's own
    // "test crash_child ... " has no newline, so READY ends a line rather
    // than filling one; a few lines of libtest chatter come before it.
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
    // One kill in three waits for a sweep to begin and lands in it: sweeps
    // are rare and quick, so random moments alone would seldom catch one.
    let aim_at_sweep = rng.below(3) == 0;
    loop {
        line.clear();
        if out.read_line(&mut line).expect("read") == 0 {
            break;
        }
        acks += u64::from(line.starts_with("A "));
        lines.push(line.trim_end().to_owned());
        let sweep_begins = line.starts_with("B 0 sweep");
        let done = match aim_at_sweep {
            true => (sweep_begins && acks >= kill_after / 4) || acks >= 20 * kill_after.max(100),
            false => acks >= kill_after,
        };
        if done {
            break;
        }
    }
    let running = child.try_wait().expect("try_wait").is_none();
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    // Whatever the child wrote before it died is in the pipe: drain it.
    for rest in out.lines() {
        lines.push(rest.expect("read"));
    }
    let acked = lines.iter().filter(|l| l.starts_with("A ")).count();

    let clock = ManualClock::new(common::T0);
    let engine = Engine::open(dir.path(), config(&clock, strict))
        .unwrap_or_else(|e| panic!("seed {seed}: reopen after kill: {e}"));
    // A kill is an unclean shutdown: open checks the store and reports.
    let recovery = engine
        .recovery()
        .unwrap_or_else(|| panic!("seed {seed}: kill not detected"));
    assert!(
        recovery.found.is_empty(),
        "seed {seed} strict={strict}: at open: {recovery:#?}"
    );
    let violations = engine.admin().check().expect("check");
    assert!(
        violations.is_empty(),
        "seed {seed} strict={strict}: {violations:#?}"
    );
    if strict {
        let (models, clock_max) = replay(&lines);
        if let Err(e) = verify_strict(&engine, &models, clock_max) {
            panic!("seed {seed}: {e}");
        }
    }
    (acked, running, in_flight(&lines))
}

#[test]
fn kill9_loop() {
    let kills: u64 = std::env::var("SESSIONDB_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let base: u64 = std::env::var("SESSIONDB_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let mut total_acks = 0;
    let mut killed_running = 0;
    let mut during: std::collections::BTreeMap<String, u64> = Default::default();
    for k in 0..kills {
        let seed = base.wrapping_add(k);
        let strict = k % 2 == 0;
        let (acks, running, flying) = one_kill(seed, strict);
        total_acks += acks;
        killed_running += u64::from(running);
        let mode = if strict { "strict" } else { "relaxed" };
        for kind in flying {
            *during.entry(format!("{kind}/{mode}")).or_default() += 1;
        }
    }
    eprintln!(
        "kill9_loop: {kills} kills (half strict) from seed {base}, {total_acks} acknowledged \
         operations, {killed_running} kills while the child ran"
    );
    eprintln!("kill9_loop: kills that caught an operation in flight, by kind/mode: {during:?}");
    assert_eq!(
        killed_running, kills,
        "every kill must land while the child writes"
    );
}
