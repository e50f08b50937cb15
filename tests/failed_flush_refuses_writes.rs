//! After a flush fails, the store's state on disk is unknown: the engine
//! refuses every later write with a clear error instead of pretending.

mod common;

use std::sync::atomic::Ordering::SeqCst;

use common::Env;
use sessiondb::{Durability, Error};

#[test]
fn a_failed_strict_flush_poisons_the_engine() {
    let (env, probe) = Env::probed(|c| c.durability(Durability::Strict));
    let s = env.stored(1);
    assert!(probe.flushes.load(SeqCst) >= 1, "strict saves flush");
    probe.fail_flush.store(true, SeqCst);
    let mut copy = env.engine.load_id(s.id()).expect("load").expect("live");
    copy.insert("k", &2u32).expect("insert");
    // The write whose flush failed gets the failure, as its cause.
    let err = env.engine.save(&mut copy).expect_err("the flush fails");
    let Error::Poisoned { cause } = &err else {
        panic!("{err:?}")
    };
    assert!(matches!(**cause, Error::Storage(_)), "{cause:?}");
    // Even with the disk back, writes stay refused until reopened.
    probe.fail_flush.store(false, SeqCst);
    let mut other = env.engine.create().expect("create");
    other.insert("x", &1u8).expect("insert");
    assert!(matches!(
        env.engine.save(&mut other),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(
        env.engine.destroy(&s),
        Err(Error::Poisoned { .. })
    ));
    // Reads still work.
    assert!(env.engine.load_id(s.id()).expect("load").is_some());
    let msg = err.to_string();
    assert!(msg.contains("refuses writes"), "{msg}");
}

#[test]
fn relaxed_mode_flushes_when_the_backlog_fills() {
    let (env, probe) = Env::probed(|c| c.max_unflushed_writes(10));
    for i in 0..35 {
        env.stored(i);
    }
    assert_eq!(probe.flushes.load(SeqCst), 3, "one flush per 10 writes");
}
