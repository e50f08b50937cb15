//! A session over the size limit is refused with its size and the limit;
//! nothing is written or truncated.

mod common;

use sessiondb::Error;

on_every_backend!(oversized_sessions_are_refused_whole, |env: common::Env| {
    let mut s = env.stored(1);
    s.insert("blob", &vec![7u8; 70 * 1024]).expect("insert");
    match env.engine.save(&mut s) {
        Err(Error::TooLarge { size, limit }) => {
            assert_eq!(limit, 64 * 1024);
            assert!(size > 70 * 1024, "{size}");
            let msg = Error::TooLarge { size, limit }.to_string();
            assert!(
                msg.contains(&size.to_string()) && msg.contains("65536"),
                "{msg}"
            );
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let stored = env.engine.load_id(s.id()).expect("load").expect("live");
    assert_eq!(stored.get::<Vec<u8>>("blob").expect("ok"), None);
    assert_eq!(stored.get::<u32>("k").expect("ok"), Some(1));
    // Shrunk under the limit, the same copy saves.
    s.insert("blob", &vec![7u8; 1024]).expect("insert");
    env.engine.save(&mut s).expect("fits now");
    env.assert_sound();
});
