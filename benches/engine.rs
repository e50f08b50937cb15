//! Engine costs on sled and on the memory backend, side by side in one run:
//! load of a live session from its `Cookie` header, and create + save of a
//! session holding ~200 bytes. (The benchmark issue goes deeper.)

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sessiondb::{Config, Engine, Key, KeyRing};

fn config() -> Config {
    let ring = KeyRing::new(1, Key::try_from(&[42u8; 32][..]).expect("32 bytes"));
    Config::new(ring).sweeper(false)
}

/// ~200 bytes of session data, as a small login session holds.
fn fill(s: &mut sessiondb::Session) {
    s.insert("user_name", "alice.example").expect("insert");
    s.insert("roles", &["reader", "writer", "admin"])
        .expect("insert");
    s.insert("csrf_seed", &[7u8; 32]).expect("insert");
    s.insert("cart", &vec![("sku-1234", 2u32), ("sku-9876", 1u32)])
        .expect("insert");
    s.insert("theme", "dark").expect("insert");
    s.insert("visits", &17u64).expect("insert");
    s.insert("flash", "Welcome back, alice.example!")
        .expect("insert");
}

fn engines() -> Vec<(&'static str, Engine, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let sled = Engine::open(dir.path(), config()).expect("open");
    let memory = Engine::memory(config()).expect("open");
    vec![("sled", sled, Some(dir)), ("memory", memory, None)]
}

fn bench(c: &mut Criterion) {
    let engines = engines();

    let mut g = c.benchmark_group("load_hit");
    for (name, engine, _) in &engines {
        // 10k live sessions, load one of them by cookie.
        let mut cookies = Vec::new();
        for _ in 0..10_000 {
            let mut s = engine.create().expect("create");
            fill(&mut s);
            engine.save(&mut s).expect("save");
            let set = engine.set_cookie(&s);
            cookies.push(set.split(';').next().expect("pair").to_owned());
        }
        let mut i = 0;
        g.bench_function(*name, |b| {
            b.iter(|| {
                i = (i + 7919) % cookies.len();
                black_box(engine.load([cookies[i].as_bytes()]).expect("load"))
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("create_save");
    for (name, engine, _) in &engines {
        g.bench_function(*name, |b| {
            b.iter_batched(
                || (),
                |()| {
                    let mut s = engine.create().expect("create");
                    fill(&mut s);
                    engine.save(&mut s).expect("save");
                    s
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
