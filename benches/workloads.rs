//! One request's worth of work on every contender, side by side in one run
//! (criterion; one group per workload, one function per contender):
//!
//! - `load_hit`: a live session from its `Cookie` header (10k live);
//! - `load_miss_forged`: a cookie whose tag does not verify;
//! - `load_miss_unknown`: a well-signed id that names no session;
//! - `create_save`: a new session holding ~200 bytes, stored;
//! - `update`: read, bump a counter, write back;
//! - `touch`: a read that moves last-seen (sessiondb: past the threshold);
//! - `destroy`, `regenerate`.
//!
//! The contenders are described in `benches/contenders/mod.rs`.
//! `cargo bench -p sessiondb-bench --bench workloads`; `benches/run.sh` writes BENCHMARKS.md.

#[path = "contenders/mod.rs"]
mod contenders;

use std::hint::black_box;
use std::time::Duration;

use contenders::Contender;
use criterion::{BatchSize, BenchmarkGroup, Criterion, criterion_group, criterion_main};

const LIVE: usize = 10_000;

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g
}

struct Loaded {
    contender: Box<dyn Contender>,
    cookies: Vec<Vec<u8>>,
}

/// Cycles through `cookies` with a stride, so consecutive loads touch
/// unrelated sessions.
struct Cycle(usize);

impl Cycle {
    fn next<'a>(&mut self, v: &'a [Vec<u8>]) -> &'a [u8] {
        self.0 = (self.0 + 7919) % v.len();
        &v[self.0]
    }
}

fn bench(c: &mut Criterion) {
    let all: Vec<Loaded> = contenders::all(true)
        .into_iter()
        .map(|contender| {
            let n = if contender.durable() { 500 } else { LIVE };
            let cookies = (0..n).map(|_| contender.create()).collect();
            Loaded { contender, cookies }
        })
        .collect();
    let forged = {
        let mut f = all[0].cookies[0].clone();
        let last = f.len() - 1;
        f[last] = if f[last] == b'A' { b'B' } else { b'A' };
        f
    };
    let unknown =
        contenders::Tokens::default().header(&sessiondb::SessionId::generate().expect("id"));

    let mut g = group(c, "load_hit");
    for l in all.iter().filter(|l| !l.contender.durable()) {
        let mut i = Cycle(0);
        g.bench_function(l.contender.name(), |b| {
            b.iter(|| assert!(l.contender.load(i.next(&l.cookies))))
        });
    }
    g.finish();

    for (name, cookie) in [
        ("load_miss_forged", &forged),
        ("load_miss_unknown", &unknown),
    ] {
        let mut g = group(c, name);
        for l in all.iter().filter(|l| !l.contender.durable()) {
            g.bench_function(l.contender.name(), |b| {
                b.iter(|| assert!(!l.contender.load(black_box(cookie))))
            });
        }
        g.finish();
    }

    let mut g = group(c, "create_save");
    for l in &all {
        g.bench_function(l.contender.name(), |b| {
            b.iter(|| black_box(l.contender.create()))
        });
    }
    g.finish();

    let mut g = group(c, "update");
    for l in &all {
        let mut i = Cycle(0);
        g.bench_function(l.contender.name(), |b| {
            b.iter(|| assert!(l.contender.update(i.next(&l.cookies))))
        });
    }
    g.finish();

    let mut g = group(c, "touch");
    for l in all.iter().filter(|l| !l.contender.durable()) {
        let mut i = Cycle(0);
        g.bench_function(l.contender.name(), |b| {
            b.iter(|| assert!(l.contender.touch(i.next(&l.cookies))))
        });
    }
    g.finish();

    let mut g = group(c, "destroy");
    for l in &all {
        g.bench_function(l.contender.name(), |b| {
            b.iter_batched(
                || l.contender.create(),
                |cookie| assert!(l.contender.destroy(&cookie)),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();

    let mut g = group(c, "regenerate");
    for l in &all {
        g.bench_function(l.contender.name(), |b| {
            b.iter_batched(
                || l.contender.create(),
                |cookie| assert!(l.contender.regenerate(&cookie).is_some()),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
