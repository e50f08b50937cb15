//! The record cache in front of the `sessions` tree: a plain data
//! structure, with no locks and no I/O of its own.
//!
//! Per session it holds the newest value a reader may be given: a write
//! still queued for the committer (which the tree does not have yet), a
//! write already applied, or a record a load read from the tree. Writes
//! carry the sequence number the write-behind queue gave them (0: read
//! from the tree).
//!
//! # Invariants
//!
//! 1. An entry whose write is still queued (`seq > applied`) is never
//!    evicted: the tree does not have it yet, so a miss would read an older
//!    value.
//! 2. A cached value is always the session's newest: a record read from
//!    the tree is cached only if no write issued after the read began has
//!    been evicted since (`newest_evicted`), and the tree was not changed
//!    behind the queue's back meanwhile (`epoch`). Every write to this
//!    session issued before the read is in the tree by the time it is read;
//!    every write after is either still cached, where it wins, or counted in
//!    `newest_evicted`.
//! 3. Eviction is CLOCK: a lookup marks an entry; the hand passes over a
//!    marked entry once, clearing its mark.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::token::SessionId;

/// Bookkeeping bytes counted per entry and per ring slot.
const ENTRY_COST: usize = 96;
const SLOT_COST: usize = 40;

/// A session's newest value (`None`: deleted) and the sequence number of
/// the write that left it (0: read from the tree).
#[derive(Debug)]
struct Entry {
    seq: u64,
    value: Option<Arc<[u8]>>,
    /// Looked up since the eviction hand last passed.
    hot: bool,
    generation: u64,
}

fn cost(e: &Entry) -> usize {
    ENTRY_COST + e.value.as_ref().map_or(0, |v| v.len())
}

/// What a cache lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Cached {
    /// The session's newest value.
    Value(Arc<[u8]>),
    /// The session's newest write deleted it.
    Deleted,
}

/// Taken when a load starts reading the tree; [`RecordCache::fill`] checks
/// it to decide whether what the load read may be cached.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadTicket {
    issued: u64,
    epoch: u64,
}

/// See the [module docs](self).
#[derive(Debug, Default)]
pub(super) struct RecordCache {
    map: HashMap<SessionId, Entry>,
    /// Eviction order: (id, generation); a slot whose generation is not
    /// its entry's is stale and skipped.
    ring: VecDeque<(SessionId, u64)>,
    next_generation: u64,
    /// What `map` and `ring` hold, by `cost`.
    bytes: usize,
    /// The budget of `bytes`; queued writes may go over it.
    capacity: usize,
    /// The highest write sequence number evicted so far.
    newest_evicted: u64,
    /// Bumped when the tree changes other than through the queue.
    epoch: u64,
}

impl RecordCache {
    /// An empty cache of `capacity` bytes (0: only queued writes are kept).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    /// The newest value of `id`, if cached; marks it as recently used.
    pub fn lookup(&mut self, id: &SessionId) -> Option<Cached> {
        let e = self.map.get_mut(id)?;
        e.hot = true;
        Some(match &e.value {
            Some(v) => Cached::Value(v.clone()),
            None => Cached::Deleted,
        })
    }

    /// The newest value of `id`, if cached, without marking it: `Some(None)`
    /// if its newest write deleted it.
    pub fn peek(&self, id: &SessionId) -> Option<Option<&[u8]>> {
        self.map.get(id).map(|e| e.value.as_deref())
    }

    /// Records write `seq` (issued by the queue, > 0), which left `id` at
    /// `value` (`None`: deleted).
    pub fn record_write(&mut self, id: SessionId, seq: u64, value: Option<Arc<[u8]>>) {
        self.insert(id, seq, value);
    }

    fn insert(&mut self, id: SessionId, seq: u64, value: Option<Arc<[u8]>>) {
        self.next_generation += 1;
        let entry = Entry {
            seq,
            value,
            hot: false,
            generation: self.next_generation,
        };
        self.bytes += cost(&entry) + SLOT_COST;
        if let Some(old) = self.map.insert(id, entry) {
            self.bytes = self.bytes.saturating_sub(cost(&old));
        }
        self.ring.push_back((id, self.next_generation));
    }

    /// A ticket for a read of the tree that starts now, when the queue has
    /// issued writes up to `issued`.
    pub fn ticket(&self, issued: u64) -> ReadTicket {
        ReadTicket {
            issued,
            epoch: self.epoch,
        }
    }

    /// Caches a record read from the tree under `ticket`, if that is safe
    /// (invariant 2); then evicts down to the budget.
    pub fn fill(&mut self, id: &SessionId, value: &[u8], ticket: ReadTicket, applied: u64) {
        if self.capacity == 0
            || self.map.contains_key(id)
            || self.newest_evicted > ticket.issued
            || self.epoch != ticket.epoch
        {
            return;
        }
        self.insert(*id, 0, Some(Arc::from(value)));
        self.evict(applied);
    }

    /// Evicts entries whose writes are applied (every write up to
    /// `applied` is) until within the budget.
    pub fn evict(&mut self, applied: u64) {
        // Every slot is looked at at most twice (once to clear its mark).
        let mut budget = 2 * self.ring.len() + 1;
        while self.bytes > self.capacity && budget > 0 {
            budget -= 1;
            let Some((id, generation)) = self.ring.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(SLOT_COST);
            let Some(e) = self.map.get_mut(&id) else {
                continue;
            };
            if e.generation != generation {
                continue;
            }
            if e.seq > applied || e.hot {
                e.hot = false;
                self.ring.push_back((id, generation));
                self.bytes += SLOT_COST;
                continue;
            }
            self.newest_evicted = self.newest_evicted.max(e.seq);
            self.bytes = self.bytes.saturating_sub(cost(e));
            self.map.remove(&id);
        }
    }

    /// Drops every entry whose write is applied (queued writes stay) and
    /// refuses fills of reads already in flight: for when the tree changed
    /// behind the queue's back.
    pub fn forget_reads(&mut self, applied: u64) {
        self.map.retain(|_, e| e.seq > applied);
        self.epoch += 1;
        let map = &self.map;
        self.ring
            .retain(|(id, g)| map.get(id).is_some_and(|e| e.generation == *g));
        self.bytes = self.map.values().map(cost).sum::<usize>() + self.ring.len() * SLOT_COST;
    }

    /// Sessions cached.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Bytes counted against the budget.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The budget.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// What the cache sits in front of: the newest value of each session
    /// (`truth`), the writes queued in order, and the tree they are
    /// applied to.
    #[derive(Default)]
    struct Model {
        truth: BTreeMap<u8, Option<u8>>,
        tree: BTreeMap<u8, Option<u8>>,
        queue: VecDeque<(u64, u8, Option<u8>)>,
        issued: u64,
        applied: u64,
        /// Loads that read the tree and have not yet filled the cache.
        reads: Vec<(u8, Option<u8>, ReadTicket)>,
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write(u8, Option<u8>),
        Apply(usize),
        StartLoad(u8),
        FinishLoad(usize),
        /// A repair: the tree changes behind the queue (which is drained
        /// first, as `fix` drains it).
        ChangeBehind(u8, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        let id = 0u8..6;
        prop_oneof![
            4 => (id.clone(), proptest::option::weighted(0.8, any::<u8>()))
                .prop_map(|(i, v)| Op::Write(i, v)),
            3 => (0usize..4).prop_map(Op::Apply),
            4 => id.clone().prop_map(Op::StartLoad),
            3 => (0usize..4).prop_map(Op::FinishLoad),
            1 => (id, any::<u8>()).prop_map(|(i, v)| Op::ChangeBehind(i, v)),
        ]
    }

    fn sid(i: u8) -> SessionId {
        SessionId::from_bytes([i; 32])
    }

    /// A value of `v` bytes, so sizes (and evictions) vary.
    fn bytes(v: u8) -> Arc<[u8]> {
        Arc::from(vec![v; usize::from(v % 7) * 10 + 1])
    }

    fn run(capacity: usize, ops: &[Op]) {
        let mut cache = RecordCache::new(capacity);
        let mut m = Model::default();
        for op in ops {
            match *op {
                Op::Write(i, v) => {
                    m.issued += 1;
                    m.truth.insert(i, v);
                    m.queue.push_back((m.issued, i, v));
                    cache.record_write(sid(i), m.issued, v.map(bytes));
                    cache.evict(m.applied);
                }
                Op::Apply(n) => {
                    for _ in 0..n {
                        let Some((seq, i, v)) = m.queue.pop_front() else {
                            break;
                        };
                        m.tree.insert(i, v);
                        m.applied = seq;
                    }
                    cache.evict(m.applied);
                }
                Op::StartLoad(i) => match cache.lookup(&sid(i)) {
                    Some(found) => {
                        let want = m.truth.get(&i).copied().flatten();
                        let got = match found {
                            Cached::Value(b) => Some(b),
                            Cached::Deleted => None,
                        };
                        assert_eq!(got, want.map(bytes), "lookup of {i}");
                    }
                    None => {
                        let ticket = cache.ticket(m.issued);
                        let read = m.tree.get(&i).copied().flatten();
                        // A miss reads the tree: it must be the newest.
                        assert_eq!(read, m.truth.get(&i).copied().flatten(), "miss of {i}");
                        m.reads.push((i, read, ticket));
                    }
                },
                Op::FinishLoad(k) => {
                    if m.reads.is_empty() {
                        continue;
                    }
                    let (i, read, ticket) = m.reads.remove(k % m.reads.len());
                    if let Some(v) = read {
                        cache.fill(&sid(i), &bytes(v), ticket, m.applied);
                    }
                }
                Op::ChangeBehind(i, v) => {
                    while let Some((seq, j, w)) = m.queue.pop_front() {
                        m.tree.insert(j, w);
                        m.applied = seq;
                    }
                    m.tree.insert(i, Some(v));
                    m.truth.insert(i, Some(v));
                    cache.forget_reads(m.applied);
                }
            }
            // Invariant 2: whatever is cached is the newest value.
            for (&i, &want) in &m.truth {
                if let Some(got) = cache.peek(&sid(i)) {
                    assert_eq!(got, want.map(bytes).as_deref(), "cached {i} after {op:?}");
                }
            }
            // Invariant 1: queued writes stay cached.
            for &(_, i, _) in &m.queue {
                assert!(cache.peek(&sid(i)).is_some(), "queued write of {i} evicted");
            }
            if m.queue.is_empty() && !matches!(op, Op::StartLoad(_)) {
                assert!(cache.bytes() <= cache.capacity(), "over budget");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// A cache of a few entries, so evictions race the loads all along.
        #[test]
        fn the_cache_only_ever_holds_the_newest_value(
            capacity in 0usize..600,
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            run(capacity, &ops);
        }
    }

    /// The race that invariant 2 exists for: a load reads version 1; a
    /// write of version 2 is issued, applied and evicted; the load must not
    /// then cache version 1.
    #[test]
    fn a_slow_load_does_not_cache_what_a_write_replaced() {
        let a = sid(1);
        let mut cache = RecordCache::new(300);
        let ticket = cache.ticket(0);
        cache.record_write(a, 1, Some(Arc::from(&b"v2"[..])));
        for i in 2..20u8 {
            cache.record_write(sid(i), u64::from(i), Some(Arc::from(&[i; 50][..])));
        }
        cache.evict(19);
        assert!(cache.peek(&a).is_none(), "the write was evicted");
        cache.fill(&a, b"v1", ticket, 19);
        assert_eq!(cache.peek(&a), None, "a stale read was cached");
    }
}
