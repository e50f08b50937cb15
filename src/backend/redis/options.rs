//! How to reach Redis, and keeping its password out of every message.

/// Options of [`RedisBackend::open`](super::RedisBackend::open).
///
/// `Debug`, and every error about the URL, show it with its password
/// replaced by `***`.
#[derive(Clone)]
pub struct RedisOptions {
    /// Where Redis is, as `redis://[user:password@]host:port/db` (or
    /// `redis+unix:///path?pass=password` for a socket).
    pub url: String,
    /// Prepended (with a `:`) to every key, so several applications can
    /// share one Redis. Default `sessiondb`. Must be non-empty, without
    /// whitespace or the glob characters `*?[]\`.
    pub prefix: String,
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Byte ranges of the passwords in a Redis URL: the userinfo's
/// (`redis://user:secret@host`) and any `pass` or `password` query
/// value (`redis+unix:///run/redis.sock?pass=secret`). Covering too much
/// of a malformed URL is fine, missing a password is not: so the
/// userinfo runs to the last `@` (a `/` in a password ends the URL's
/// authority early, but not the password).
fn password_spans(url: &str) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    let start = url.find("://").map_or(0, |i| i + 3);
    if let Some(at) = url[start..].rfind('@').map(|i| start + i)
        && let Some(colon) = url[start..at].find(':')
    {
        spans.push(start + colon + 1..at);
    }
    if let Some(q) = url[start..].find('?').map(|i| start + i + 1) {
        let query_end = url[q..].find('#').map_or(url.len(), |i| q + i);
        let mut pair_start = q;
        for pair in url[q..query_end].split('&') {
            if let Some((name, _)) = pair.split_once('=')
                && (name == "pass" || name == "password")
            {
                spans.push(pair_start + name.len() + 1..pair_start + pair.len());
            }
            pair_start += pair.len() + 1;
        }
    }
    spans.retain(|r| !r.is_empty());
    spans.sort_by_key(|r| r.start);
    spans
}

/// `url` with every password in it replaced by `***`.
pub(super) fn redact(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut pos = 0;
    for span in password_spans(url) {
        if span.start >= pos {
            out.push_str(&url[pos..span.start]);
            out.push_str("***");
        }
        pos = pos.max(span.end);
    }
    out.push_str(&url[pos..]);
    out
}

/// `text` (say, an error from the redis crate) with the URL's passwords,
/// wherever they appear, replaced by `***`.
pub(super) fn scrub(text: &str, url: &str) -> String {
    password_spans(url)
        .into_iter()
        .fold(text.to_owned(), |text, span| {
            text.replace(&url[span], "***")
        })
}

/// Characters `SCAN MATCH` reads as a pattern: a prefix holding one would
/// let this backend's scans reach keys outside its prefix.
pub(super) const GLOB: &[char] = &['*', '?', '[', ']', '\\'];

impl RedisOptions {
    /// Options for the Redis at `url`, with the default prefix.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "sessiondb".into(),
        }
    }

    /// Sets the key prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_every_password_form() {
        for (url, shown) in [
            ("redis://u:pw@h:1/0", "redis://u:***@h:1/0"),
            ("redis://:pw@h", "redis://:***@h"),
            ("redis://u@h", "redis://u@h"),
            ("redis://h:6379/", "redis://h:6379/"),
            // An unencoded '@' or '/' in the password: up to the last '@'.
            ("redis://u:p@w/d@h", "redis://u:***@h"),
            (
                "redis+unix:///s?pass=pw&db=1",
                "redis+unix:///s?pass=***&db=1",
            ),
            (
                "redis+unix:///s?password=pw#x",
                "redis+unix:///s?password=***#x",
            ),
            // Overlapping forms: too much hidden, never too little.
            ("redis://u:a?pass=b@h", "redis://u:***"),
            ("u:pw@h", "u:***@h"),
            ("", ""),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
        assert_eq!(
            scrub("bad u:pw@h and pw", "redis://u:pw@h"),
            "bad u:***@h and ***"
        );
        assert_eq!(scrub("no password", "redis://h"), "no password");
    }
}
