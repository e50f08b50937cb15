//! The Redis URL's password never shows: not in `Debug` of the options,
//! not in the error of a URL that does not parse or a server that cannot
//! be reached. A key prefix with glob characters, which would let the
//! backend's `SCAN MATCH` reach other applications' keys, is refused.
//! None of this needs a Redis server: every case fails before or at the
//! first connect, to a port where nothing listens.
#![cfg(feature = "redis")]

use sessiondb::{Error, RedisBackend, RedisOptions};

const SECRET: &str = "hunter2-s3cret";

/// The error and every source under it, as a log line would show them.
fn chain(e: &Error) -> String {
    let mut text = format!("{e} / {e:?}");
    let mut cur = std::error::Error::source(e);
    while let Some(inner) = cur {
        text.push_str(&format!(" / {inner} / {inner:?}"));
        cur = inner.source();
    }
    text
}

fn open_error(url: &str) -> Error {
    match RedisBackend::open(RedisOptions::new(url)) {
        Ok(b) => panic!("{url} opened: {b:?}"),
        Err(e) => e,
    }
}

#[test]
fn debug_of_the_options_redacts_the_password() {
    for (url, shown) in [
        (
            format!("redis://app:{SECRET}@127.0.0.1:6379/0"),
            "redis://app:***@127.0.0.1:6379/0",
        ),
        (format!("redis://:{SECRET}@cache/"), "redis://:***@cache/"),
        (
            format!("redis+unix:///run/redis.sock?db=2&pass={SECRET}"),
            "redis+unix:///run/redis.sock?db=2&pass=***",
        ),
    ] {
        let dbg = format!("{:?}", RedisOptions::new(url.as_str()).prefix("myapp"));
        assert!(!dbg.contains(SECRET), "{dbg}");
        assert!(dbg.contains(shown), "{dbg}");
        assert!(dbg.contains("myapp"), "{dbg}");
    }
    // No password: nothing to hide, the URL shows as it is.
    let plain = format!("{:?}", RedisOptions::new("redis://127.0.0.1:6379/"));
    assert!(plain.contains("redis://127.0.0.1:6379/"), "{plain}");
}

#[test]
fn errors_never_show_the_password() {
    for url in [
        // Does not parse: a port that is not a number.
        format!("redis://app:{SECRET}@127.0.0.1:port/"),
        // Does not parse: a '/' in the password ends the authority early.
        format!("redis://app:{}/{}@127.0.0.1/", &SECRET[..4], &SECRET[4..]),
        // Parses, but nothing listens there.
        format!("redis://app:{SECRET}@127.0.0.1:1/"),
        format!("redis+unix:///nonexistent/redis.sock?pass={SECRET}"),
    ] {
        let e = open_error(&url);
        let text = chain(&e);
        assert!(!text.contains(&SECRET[4..]), "{url}: {text}");
    }
    let e = open_error(&format!("redis://app:{SECRET}@127.0.0.1:port/"));
    assert!(
        matches!(&e, Error::InvalidConfig { field: "url", reason } if reason.contains("app:***@")),
        "{e:?}"
    );
}

#[test]
fn a_prefix_with_glob_characters_is_refused() {
    for prefix in ["app*", "a?p", "a[bc]", "ap]p", "a\\*"] {
        let r = RedisBackend::open(RedisOptions::new("redis://127.0.0.1:1/").prefix(prefix));
        assert!(
            matches!(
                r,
                Err(Error::InvalidConfig {
                    field: "prefix",
                    ..
                })
            ),
            "prefix {prefix:?}: {r:?}"
        );
    }
    // An ordinary prefix gets as far as connecting.
    let r = RedisBackend::open(RedisOptions::new("redis://127.0.0.1:1/").prefix("my-app.v2"));
    assert!(matches!(r, Err(Error::Storage(_))), "{r:?}");
}
