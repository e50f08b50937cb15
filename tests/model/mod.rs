//! The reference model of the engine and a lockstep runner, shared by the
//! model-based property test (tests/model_based.rs) and the `engine_ops`
//! fuzz target (fuzz/src/lib.rs), which include this file.
//!
//! The model is plain data and the rules of DESIGN.md: expiry is
//! min(last_seen + idle, created + absolute), reads touch past the
//! threshold, writes set last_seen, and nothing else happens.

#![allow(dead_code, reason = "each includer uses a different subset")]

use std::collections::BTreeMap;
use std::time::Duration;

use sessiondb::{Config, Engine, Key, KeyRing, ManualClock, SessionId};

pub const T0: u64 = 1_767_225_600_000;
pub const IDLE: u64 = 600_000;
pub const ABSOLUTE: u64 = 3_600_000;
pub const TOUCH: u64 = 30_000;
pub const USERS: u8 = 3;

pub fn settings(clock: &ManualClock) -> Config {
    let ring = KeyRing::new(1, Key::try_from(&[0x42u8; 32][..]).expect("32 bytes"));
    Config::new(ring)
        .clock(clock.clone())
        .sweeper(false)
        .idle_timeout(Duration::from_millis(IDLE))
        .absolute_timeout(Duration::from_millis(ABSOLUTE))
        .touch_threshold(Duration::from_millis(TOUCH))
        // A cache this small (1 KiB of it holds records in front of sled)
        // evicts all along, so its bookkeeping is under test too.
        .cache_capacity(8 * 1024)
        // The model keeps every login; trimming is tested on its own
        // (tests/sessions_per_user_are_bounded.rs).
        .max_sessions_per_user(1 << 20)
}

/// One step of a sequence. Slots are indexes into the sessions created so
/// far (taken modulo their count).
#[derive(Debug, Clone, arbitrary::Arbitrary)]
pub enum Op {
    Create(u32),
    Read(usize),
    Update(usize, u32),
    Login(usize, u8),
    Destroy(usize),
    LogoutAll(u8, Option<usize>),
    Advance(u32),
    Sweep,
    Reopen,
    /// A load through a `Cookie` header; a non-zero `xor` corrupts the
    /// token's byte at `pos` first, which must read as no session.
    LoadCookie(usize, u8, u8),
}

/// What a test can see of an operation's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Nothing,
    /// A live session's value (`None` once a login to another account
    /// emptied it) and user; `None` for no session.
    Read(Option<(Option<u32>, Option<String>)>),
    Existed(bool),
    Count(u64),
}

#[derive(Debug, Clone)]
struct ModelSession {
    value: Option<u32>,
    user: Option<String>,
    created: u64,
    last_seen: u64,
}

impl ModelSession {
    fn expires(&self) -> u64 {
        (self.last_seen + IDLE).min(self.created + ABSOLUTE)
    }
}

/// The reference: stored sessions by slot, and the rules of DESIGN.md.
#[derive(Debug, Default)]
pub struct Model {
    slots: Vec<Option<ModelSession>>,
}

impl Model {
    /// The live session in slot `i`, touched as a read touches it.
    fn live(&mut self, i: usize, now: u64) -> Option<&mut ModelSession> {
        let s = self.slots.get_mut(i)?.as_mut()?;
        if s.expires() <= now {
            return None;
        }
        if now - s.last_seen > TOUCH {
            s.last_seen = now;
        }
        Some(s)
    }

    fn apply(&mut self, op: &Op, now: u64) -> Seen {
        let n = self.slots.len().max(1);
        match *op {
            Op::Create(v) => {
                self.slots.push(Some(ModelSession {
                    value: Some(v),
                    user: None,
                    created: now,
                    last_seen: now,
                }));
                Seen::Nothing
            }
            Op::Read(i) => Seen::Read(self.live(i % n, now).map(|s| (s.value, s.user.clone()))),
            // A corrupted token is no session, and touches nothing.
            Op::LoadCookie(_, xor, _) if xor != 0 => Seen::Read(None),
            Op::LoadCookie(i, _, _) => {
                Seen::Read(self.live(i % n, now).map(|s| (s.value, s.user.clone())))
            }
            Op::Update(i, v) => Seen::Existed(match self.live(i % n, now) {
                Some(s) => {
                    if s.value != Some(v) {
                        s.value = Some(v);
                        s.last_seen = now;
                    }
                    true
                }
                None => false,
            }),
            Op::Login(i, u) => Seen::Existed(match self.live(i % n, now) {
                Some(s) => {
                    let user = format!("user{u}");
                    // Another account's session starts empty; a login
                    // starts the session's times again.
                    if s.user.as_ref().is_some_and(|old| *old != user) {
                        s.value = None;
                    }
                    s.user = Some(user);
                    s.created = now;
                    s.last_seen = now;
                    true
                }
                None => false,
            }),
            Op::Destroy(i) => {
                Seen::Existed(self.slots.get_mut(i % n).and_then(Option::take).is_some())
            }
            Op::LogoutAll(u, keep) => {
                let user = format!("user{u}");
                let keep = keep.map(|k| k % n);
                let mut count = 0;
                for (i, slot) in self.slots.iter_mut().enumerate() {
                    if Some(i) != keep
                        && slot
                            .as_ref()
                            .is_some_and(|s| s.user.as_ref() == Some(&user))
                    {
                        *slot = None;
                        count += 1;
                    }
                }
                Seen::Count(count)
            }
            Op::Sweep => {
                let mut count = 0;
                for slot in &mut self.slots {
                    if slot.as_ref().is_some_and(|s| s.expires() <= now) {
                        *slot = None;
                        count += 1;
                    }
                }
                Seen::Count(count)
            }
            Op::Advance(_) | Op::Reopen => Seen::Nothing,
        }
    }

    /// Per user: (slot, created, last_seen, expires) of live sessions.
    fn listing(&self, now: u64) -> Vec<Vec<(usize, u64, u64, u64)>> {
        (0..USERS)
            .map(|u| {
                let user = format!("user{u}");
                let mut v: Vec<_> = self
                    .slots
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| Some((i, s.as_ref()?)))
                    .filter(|(_, s)| s.user.as_ref() == Some(&user) && s.expires() > now)
                    .map(|(i, s)| (i, s.created, s.last_seen, s.expires()))
                    .collect();
                v.sort();
                v
            })
            .collect()
    }
}

/// An engine under test, with its own slot-to-id map (ids are random).
pub struct Subject {
    engine: Option<Engine>,
    ids: Vec<Option<SessionId>>,
    dir: Option<tempfile::TempDir>,
    clock: ManualClock,
    /// On Redis: the key prefix, so a reopen is a new engine on the same data.
    #[cfg(feature = "redis")]
    redis: Option<(String, String)>,
}

impl Subject {
    fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("open")
    }

    fn id(&self, i: usize) -> Option<SessionId> {
        let n = self.ids.len().max(1);
        self.ids.get(i % n).copied().flatten()
    }

    fn apply(&mut self, op: &Op) -> Seen {
        let n = self.ids.len().max(1);
        match *op {
            Op::Create(v) => {
                let mut s = self.engine().create().expect("create");
                s.insert("v", &v).expect("insert");
                self.engine().save(&mut s).expect("save");
                self.ids.push(Some(*s.id()));
                Seen::Nothing
            }
            Op::Read(i) => Seen::Read(self.id(i).and_then(|id| {
                let s = self.engine().load_id(&id).expect("load")?;
                Some((
                    s.get::<u32>("v").expect("decodes"),
                    s.user().map(str::to_owned),
                ))
            })),
            Op::LoadCookie(i, xor, pos) => {
                // A slot with no session yet: corrupt a token of a never
                // stored id, which must read as no session all the same.
                let id = self.id(i).unwrap_or(SessionId::from_bytes([0x5e; 32]));
                let engine = self.engine();
                let token = engine.key_ring().sign(sessiondb::Purpose::Session, &id);
                let mut value = token.as_str().as_bytes().to_vec();
                let at = usize::from(pos) % value.len();
                value[at] ^= xor;
                let mut header =
                    format!("theme=dark; {}=", engine.cookie_config().name()).into_bytes();
                header.extend_from_slice(&value);
                let loaded = engine.load([header.as_slice()]).expect("load");
                Seen::Read(loaded.map(|s| {
                    (
                        s.get::<u32>("v").expect("decodes"),
                        s.user().map(str::to_owned),
                    )
                }))
            }
            Op::Update(i, v) => Seen::Existed(self.id(i).is_some_and(|id| {
                self.engine()
                    .update(&id, |s| s.insert("v", &v).expect("insert"))
                    .expect("update")
                    .is_some()
            })),
            Op::Login(i, u) => {
                let Some(id) = self.id(i) else {
                    return Seen::Existed(false);
                };
                let Some(mut s) = self.engine().load_id(&id).expect("load") else {
                    return Seen::Existed(false);
                };
                self.engine()
                    .login(&mut s, &format!("user{u}"))
                    .expect("login");
                self.ids[i % n] = Some(*s.id());
                Seen::Existed(true)
            }
            Op::Destroy(i) => {
                let existed = match self.id(i) {
                    Some(id) => self.engine().destroy_id(&id).expect("destroy"),
                    None => false,
                };
                if let Some(slot) = self.ids.get_mut(i % n) {
                    *slot = None;
                }
                Seen::Existed(existed)
            }
            Op::LogoutAll(u, keep) => {
                let keep = keep.and_then(|k| self.id(k));
                let n = self
                    .engine()
                    .destroy_user(&format!("user{u}"), keep.as_ref())
                    .expect("destroy_user");
                Seen::Count(n as u64)
            }
            Op::Sweep => Seen::Count(self.engine().admin().sweep_now().expect("sweep")),
            Op::Advance(_) => Seen::Nothing,
            Op::Reopen => {
                if let Some(dir) = &self.dir {
                    self.engine.take().expect("open").close().expect("close");
                    let config = settings(&self.clock);
                    self.engine = Some(Engine::open(dir.path(), config).expect("reopen"));
                    assert!(self.engine().admin().check().expect("check").is_empty());
                }
                #[cfg(feature = "redis")]
                if let Some((url, prefix)) = &self.redis {
                    self.engine.take().expect("open").close().expect("close");
                    let options = sessiondb::RedisOptions::new(url.clone()).prefix(prefix.clone());
                    let config = settings(&self.clock);
                    self.engine = Some(Engine::open_redis(options, config).expect("reopen"));
                    assert!(self.engine().admin().check().expect("check").is_empty());
                }
                Seen::Nothing
            }
        }
    }

    fn listing(&self) -> Vec<Vec<(usize, u64, u64, u64)>> {
        let slot_of: BTreeMap<SessionId, usize> = self
            .ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| Some(((*id)?, i)))
            .collect();
        (0..USERS)
            .map(|u| {
                let mut v: Vec<_> = self
                    .engine()
                    .sessions_of(&format!("user{u}"))
                    .expect("list")
                    .into_iter()
                    .map(|s| (slot_of[&s.id], s.created_at, s.last_seen, s.expires_at))
                    .collect();
                v.sort();
                v
            })
            .collect()
    }
}

pub fn run(ops: &[Op]) {
    run_on(ops, None);
}

/// [`run`], plus a Redis engine at `redis` (url, key prefix) as a third
/// subject when the `redis` feature is on.
pub fn run_on(ops: &[Op], redis: Option<(String, String)>) {
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().expect("temp dir");
    let sled = Engine::open(dir.path(), settings(&clock)).expect("open");
    let memory = Engine::memory(settings(&clock)).expect("open");
    #[allow(unused_mut, reason = "pushed to with the redis feature")]
    let mut subjects = vec![
        (
            "sled",
            Subject {
                engine: Some(sled),
                ids: vec![],
                dir: Some(dir),
                clock: clock.clone(),
                #[cfg(feature = "redis")]
                redis: None,
            },
        ),
        (
            "memory",
            Subject {
                engine: Some(memory),
                ids: vec![],
                dir: None,
                clock: clock.clone(),
                #[cfg(feature = "redis")]
                redis: None,
            },
        ),
    ];
    #[cfg(not(feature = "redis"))]
    let _ = redis;
    #[cfg(feature = "redis")]
    if let Some((url, prefix)) = redis {
        let options = sessiondb::RedisOptions::new(url.clone()).prefix(prefix.clone());
        let engine = Engine::open_redis(options, settings(&clock)).expect("open on redis");
        subjects.push((
            "redis",
            Subject {
                engine: Some(engine),
                ids: vec![],
                dir: None,
                clock: clock.clone(),
                redis: Some((url, prefix)),
            },
        ));
    }
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        if let Op::Advance(ms) = op {
            clock.advance(Duration::from_millis(u64::from(*ms)));
        }
        let now = sessiondb::Clock::now_ms(&clock);
        let want = model.apply(op, now);
        let listing = model.listing(now);
        for (name, subject) in &mut subjects {
            let got = subject.apply(op);
            assert_eq!(got, want, "step {step} {op:?} on {name}");
            assert_eq!(
                subject.listing(),
                listing,
                "listing after step {step} {op:?} on {name}"
            );
        }
    }
    for (name, s) in &subjects {
        let found = s.engine().admin().check().expect("check");
        assert!(found.is_empty(), "{name}: {found:#?}");
    }
}
