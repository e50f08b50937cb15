//! Random sequences of operations and clock moves, run in lockstep against
//! the sled engine, the memory engine and a plain reference model: every
//! observable result must agree, and `check()` must be clean after each
//! sequence (and after every reopen).

#[cfg(feature = "redis")]
mod common;
mod model;

use proptest::prelude::*;

use model::{Op, USERS};

/// Sled, memory and (with the `redis` feature) Redis against the model.
fn run(ops: &[Op]) {
    #[cfg(feature = "redis")]
    model::run_on(
        ops,
        common::redis_available().then(|| (common::redis_url(), common::redis_prefix())),
    );
    #[cfg(not(feature = "redis"))]
    model::run(ops);
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u32..4).prop_map(Op::Create),
        3 => any::<usize>().prop_map(Op::Read),
        3 => (any::<usize>(), 0u32..4).prop_map(|(i, v)| Op::Update(i, v)),
        2 => (any::<usize>(), 0..USERS).prop_map(|(i, u)| Op::Login(i, u)),
        1 => any::<usize>().prop_map(Op::Destroy),
        1 => (0..USERS, proptest::option::of(any::<usize>())).prop_map(|(u, k)| Op::LogoutAll(u, k)),
        3 => (0u32..400_000).prop_map(Op::Advance),
        1 => Just(Op::Sweep),
        1 => Just(Op::Reopen),
        2 => (any::<usize>(), prop_oneof![Just(0u8), any::<u8>()], any::<u8>())
            .prop_map(|(i, x, p)| Op::LoadCookie(i, x, p)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn engines_agree_with_the_model(ops in prop::collection::vec(op(), 1..60)) {
        run(&ops);
    }
}

#[test]
fn a_known_tricky_sequence() {
    use Op::*;
    run(&[
        Create(1),
        Login(0, 0),
        Create(2),
        Login(1, 0),
        Advance(350_000),
        Read(0),
        Advance(350_000),
        LogoutAll(0, Some(0)),
        Reopen,
        Update(0, 3),
        Advance(3_000_000),
        Sweep,
        Read(0),
    ]);
}
