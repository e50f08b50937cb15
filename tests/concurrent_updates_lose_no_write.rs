//! N threads each incrementing one counter through `update` end at exactly N
//! (times the rounds): version checks plus retries lose nothing.

mod common;

use std::sync::Arc;

use common::Env;

fn hammer(env: Env) {
    let s = env.stored(0);
    let id = *s.id();
    let engine = Arc::new(env.engine);
    let threads = 8;
    let rounds = 50;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for _ in 0..rounds {
                    engine
                        .update(&id, |s| {
                            let n: u32 = s.get("k").expect("decodes").unwrap_or(0);
                            s.insert("k", &(n + 1)).expect("insert");
                        })
                        .expect("update")
                        .expect("session exists");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    let s = engine.load_id(&id).expect("load").expect("live");
    assert_eq!(s.get::<u32>("k").expect("decodes"), Some(threads * rounds));
    assert!(engine.admin().check().expect("check").is_empty());
}

on_every_backend!(relaxed, hammer);
on_every_backend!(
    strict,
    config = |c: sessiondb::Config| c.durability(sessiondb::Durability::Strict),
    hammer
);
