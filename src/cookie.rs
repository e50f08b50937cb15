//! The `Cookie` request header in, the `Set-Cookie` response header out.
//!
//! Both directions are pure functions over bytes: no I/O, no clock, and no
//! allocation on the request path.
//!
//! # Reading
//!
//! [`pairs`] splits one `Cookie` header value the way browsers write it
//! (RFC 6265 §5.4, RFC 6265bis): pairs separated by `;` with or without a
//! space, whitespace around names and values ignored, a value in double quotes
//! unquoted, a piece without `=` taken as a value with an empty name. It works
//! on bytes, so a header that is not UTF-8 is read like any other.
//!
//! [`CookieConfig::find_session`] looks through every `Cookie` header of a
//! request for the session cookie. A name can appear more than once (a parent
//! domain can plant a cookie of the same name), so every candidate is tried
//! and the first that verifies wins. The work is bounded for any input: at
//! most [`MAX_SCAN_BYTES`] bytes are looked at and at most [`MAX_VERIFY`]
//! candidates reach the HMAC; anything past those limits is ignored.
//!
//! # Writing
//!
//! [`CookieConfig`] writes `Set-Cookie` values that are safe by default:
//! `HttpOnly`, `Secure`, `SameSite=Lax`, `Path=/`, and the `__Host-` name
//! prefix whenever its rules allow. Settings that would produce a malformed or
//! weaker-than-claimed header are refused by [`CookieBuilder::build`].

use std::fmt::Write as _;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::token::{KeyRing, Purpose, SessionId, Token};

/// The most bytes of `Cookie` headers that one lookup looks at, summed over
/// all headers of the request. Browsers cap a cookie at 4 KiB and send a few
/// dozen at most; anything past this is ignored.
pub const MAX_SCAN_BYTES: usize = 64 * 1024;

/// The most session-cookie candidates that one lookup verifies with HMAC.
/// Candidates of the wrong length are rejected without reaching the HMAC and
/// do not count.
pub const MAX_VERIFY: usize = 4;

const HOST_PREFIX: &str = "__Host-";
const SECURE_PREFIX: &str = "__Secure-";
/// RFC 6265bis caps attribute values at 1024 bytes.
const MAX_ATTRIBUTE_LEN: usize = 1024;
const MAX_NAME_LEN: usize = 128;

/// The `(name, value)` pairs of one `Cookie` header value; see [`pairs`].
#[derive(Debug, Clone)]
pub struct Pairs<'a> {
    rest: &'a [u8],
}

/// Splits one `Cookie` header value into `(name, value)` pairs.
///
/// Empty pieces (`a=1;;b=2`, a trailing `;`) are skipped. Never fails: bytes
/// that are not valid cookie syntax still split somewhere, and the caller
/// decides whether a name and value mean anything.
pub fn pairs(header: &[u8]) -> Pairs<'_> {
    Pairs { rest: header }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let (piece, rest) = match memchr::memchr(b';', self.rest) {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, &b""[..]),
            };
            self.rest = rest;
            let piece = trim(piece);
            if piece.is_empty() {
                continue;
            }
            return Some(match memchr::memchr(b'=', piece) {
                Some(i) => (trim(&piece[..i]), unquote(trim(&piece[i + 1..]))),
                None => (&b""[..], unquote(piece)),
            });
        }
        None
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn unquote(s: &[u8]) -> &[u8] {
    match s {
        [b'"', inner @ .., b'"'] => inner,
        _ => s,
    }
}

/// The `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SameSite {
    /// Sent only with same-site requests.
    Strict,
    /// Sent with same-site requests and top-level navigations (the default).
    Lax,
    /// Sent with every request; requires `Secure`.
    None,
}

impl SameSite {
    fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// Whether the cookie's name carries the `__Host-` prefix, which makes the
/// browser refuse the cookie unless it is `Secure`, has `Path=/` and no
/// `Domain`, so no other host or path can overwrite it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostPrefix {
    /// Add the prefix whenever the other settings allow it (the default).
    Auto,
    /// Always add it; settings that break its rules are an error.
    Require,
    /// Never add it.
    Off,
}

/// What a request's session cookies name; see [`CookieConfig::lookup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// No session cookie verifies.
    Missing,
    /// Every session cookie that verifies names this id.
    Found(SessionId),
    /// Session cookies that verify name different ids, there were more
    /// candidates than [`MAX_VERIFY`], or one verified in headers too long
    /// to read whole: no session, and worth a warning.
    Ambiguous,
}

/// Settings for the session cookie, checked by [`build`](Self::build).
///
/// Every setter documents its default. The defaults produce
/// `__Host-sessiondb=<token>; Max-Age=<secs>; Path=/; Secure; HttpOnly; SameSite=Lax`.
#[derive(Debug, Clone)]
#[must_use]
pub struct CookieBuilder {
    name: String,
    path: String,
    domain: Option<String>,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
    host_prefix: HostPrefix,
    persistent: bool,
}

impl Default for CookieBuilder {
    fn default() -> Self {
        Self {
            name: "sessiondb".to_owned(),
            path: "/".to_owned(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            host_prefix: HostPrefix::Auto,
            persistent: true,
        }
    }
}

impl CookieBuilder {
    /// The cookie's name, before any `__Host-` prefix is added. Default
    /// `sessiondb`. Must be an RFC 6265 token of at most 128 bytes.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The `Path` attribute. Default `/`. Must start with `/` and hold only
    /// printable ASCII other than `;`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The `Domain` attribute. Default none (the cookie goes to the exact
    /// host only). Letters, digits, `-` and `.` only.
    pub fn domain(mut self, domain: Option<String>) -> Self {
        self.domain = domain;
        self
    }

    /// The `Secure` attribute. Default `true`. Turn it off only for plain-HTTP
    /// development on localhost.
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// The `HttpOnly` attribute. Default `true`: scripts cannot read the
    /// session cookie.
    pub fn http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// The `SameSite` attribute. Default [`SameSite::Lax`].
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// The `__Host-` prefix. Default [`HostPrefix::Auto`].
    pub fn host_prefix(mut self, host_prefix: HostPrefix) -> Self {
        self.host_prefix = host_prefix;
        self
    }

    /// Whether the cookie is persistent (carries `Max-Age`, so it outlives
    /// the browser window and expires with the session) or a browser-session
    /// cookie (no `Max-Age`; gone when the browser closes). Default `true`.
    pub fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    /// Checks the settings and fixes the cookie's final name.
    pub fn build(self) -> Result<CookieConfig> {
        let bad = |field, reason| Err(Error::InvalidCookie { field, reason });
        if self.name.is_empty() {
            return bad("name", "must not be empty");
        }
        if self.name.len() > MAX_NAME_LEN {
            return bad("name", "longer than 128 bytes");
        }
        if !self.name.bytes().all(is_token_byte) {
            return bad(
                "name",
                "may hold only letters, digits and !#$%&'*+-.^_`|~ (an RFC 6265 token)",
            );
        }
        if !self.path.starts_with('/') {
            return bad("path", "must start with '/'");
        }
        if self.path.len() > MAX_ATTRIBUTE_LEN {
            return bad("path", "longer than 1024 bytes");
        }
        if !self
            .path
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b';')
        {
            return bad(
                "path",
                "may hold only printable ASCII other than ';' (no control bytes, CR or LF)",
            );
        }
        if let Some(domain) = &self.domain {
            let host = domain.strip_prefix('.').unwrap_or(domain);
            if host.is_empty() || domain.len() > 253 {
                return bad("domain", "must be a host name of 1 to 253 bytes");
            }
            if !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return bad("domain", "may hold only letters, digits, '-' and '.'");
            }
        }
        if self.same_site == SameSite::None && !self.secure {
            return bad("same_site", "SameSite=None requires Secure");
        }

        let lower = self.name.to_ascii_lowercase();
        let named_host = lower.starts_with(&HOST_PREFIX.to_ascii_lowercase());
        let named_secure = lower.starts_with(&SECURE_PREFIX.to_ascii_lowercase());
        let host_rules_hold = self.secure && self.path == "/" && self.domain.is_none();
        if named_secure && !self.secure {
            return bad("name", "a __Secure- name requires Secure");
        }
        let add_prefix = match self.host_prefix {
            _ if named_host || named_secure => {
                if named_secure && self.host_prefix == HostPrefix::Require {
                    return bad("host_prefix", "the name already has a __Secure- prefix");
                }
                false
            }
            HostPrefix::Off => false,
            HostPrefix::Auto => host_rules_hold,
            HostPrefix::Require => true,
        };
        if (add_prefix || named_host) && !host_rules_hold {
            return bad(
                "host_prefix",
                "a __Host- cookie requires Secure, Path=/ and no Domain",
            );
        }
        let prefix_dropped = (self.host_prefix == HostPrefix::Auto
            && !named_host
            && !named_secure
            && !host_rules_hold)
            .then(|| {
                let mut why = Vec::new();
                if !self.secure {
                    why.push("it is not Secure");
                }
                if self.path != "/" {
                    why.push("its Path is not /");
                }
                if self.domain.is_some() {
                    why.push("it has a Domain");
                }
                format!(
                    "the session cookie {:?} goes without the __Host- prefix because {}: \
                     a sibling subdomain or a plain-HTTP page can then set a cookie of \
                     the same name (cookie tossing)",
                    self.name,
                    why.join(" and ")
                )
            });
        let name = if add_prefix {
            format!("{HOST_PREFIX}{}", self.name)
        } else {
            self.name
        };
        Ok(CookieConfig {
            prefix_dropped,
            name,
            path: self.path,
            domain: self.domain,
            secure: self.secure,
            http_only: self.http_only,
            same_site: self.same_site,
            persistent: self.persistent,
        })
    }
}

/// RFC 6265 `cookie-name` is an RFC 2616 token.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Checked cookie settings: finds the session cookie in a request and writes
/// the `Set-Cookie` value of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    /// Why [`HostPrefix::Auto`] could not add the prefix, if it could not.
    prefix_dropped: Option<String>,
    name: String,
    path: String,
    domain: Option<String>,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
    persistent: bool,
}

impl Default for CookieConfig {
    /// The defaults of [`CookieBuilder`]: `__Host-sessiondb`, `Path=/`,
    /// `Secure`, `HttpOnly`, `SameSite=Lax`, persistent.
    fn default() -> Self {
        Self {
            prefix_dropped: None,
            name: format!("{HOST_PREFIX}sessiondb"),
            path: "/".to_owned(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            persistent: true,
        }
    }
}

impl CookieConfig {
    /// Starts from the defaults.
    pub fn builder() -> CookieBuilder {
        CookieBuilder::default()
    }

    /// The cookie's name as sent, prefix included.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the cookie carries `Max-Age`.
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// Whether the cookie carries `Secure`.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// Why the `__Host-` prefix was left off, when [`HostPrefix::Auto`]
    /// found its rules broken (not `Secure`, a `Path` other than `/`, a
    /// `Domain`); `None` when the cookie has it, or it was turned off on
    /// purpose. The engine logs it once at open.
    pub fn host_prefix_warning(&self) -> Option<&str> {
        self.prefix_dropped.as_deref()
    }

    /// The session id named by the session cookie in `headers`, or `None`
    /// (also when the cookies are [ambiguous](Lookup::Ambiguous)).
    pub fn find_session<'h, I>(&self, ring: &KeyRing, headers: I) -> Option<SessionId>
    where
        I: IntoIterator<Item = &'h [u8]>,
    {
        match self.lookup(ring, headers) {
            Lookup::Found(id) => Some(id),
            Lookup::Missing | Lookup::Ambiguous => None,
        }
    }

    /// What the session cookies in `headers` name.
    ///
    /// `headers` are the raw values of every `Cookie` header of the request,
    /// in order. At most [`MAX_SCAN_BYTES`] bytes are looked at and at most
    /// [`MAX_VERIFY`] candidates verified. A name may appear several times
    /// (a browser sends every cookie whose domain and path match): copies
    /// that do not verify are ignored, copies that verify must all name the
    /// same id, and two that name different ids are
    /// [`Lookup::Ambiguous`]: someone set a second session cookie beside
    /// ours (cookie tossing from a sibling domain or a plain-HTTP page), and
    /// neither can be trusted to be the user's own. A verifying cookie found
    /// in headers longer than the budget is ambiguous too: the unread rest
    /// could hold another.
    pub fn lookup<'h, I>(&self, ring: &KeyRing, headers: I) -> Lookup
    where
        I: IntoIterator<Item = &'h [u8]>,
    {
        self.lookup_counting(ring, headers).0
    }

    /// [`lookup`](Self::lookup), and whether a cookie of ours (our name, a
    /// token's length) failed to verify: a forged or stale-key cookie, for
    /// the engine's counters.
    pub(crate) fn lookup_counting<'h, I>(&self, ring: &KeyRing, headers: I) -> (Lookup, bool)
    where
        I: IntoIterator<Item = &'h [u8]>,
    {
        let mut failed = false;
        let mut budget = MAX_SCAN_BYTES;
        let mut verifies = MAX_VERIFY;
        let mut found: Option<SessionId> = None;
        // Whether bytes were left unread: a cookie of ours may hide there.
        let mut cut = false;
        for header in headers {
            // Every header costs at least one byte of budget, so a flood of
            // empty headers is bounded too.
            if budget == 0 {
                cut = true;
                break;
            }
            cut |= header.len() > budget;
            let header = &header[..header.len().min(budget)];
            budget = budget.saturating_sub(header.len().max(1));
            for (name, value) in pairs(header) {
                if name != self.name.as_bytes() || value.len() != Token::LEN {
                    continue;
                }
                if verifies == 0 {
                    // Too many candidates to decide: trust none of them.
                    return (Lookup::Ambiguous, failed);
                }
                verifies -= 1;
                match (ring.verify(Purpose::Session, value), found) {
                    (None, _) => failed = true,
                    (Some(id), None) => found = Some(id),
                    (Some(id), Some(first)) if id == first => {}
                    (Some(_), Some(_)) => return (Lookup::Ambiguous, failed),
                }
            }
        }
        let lookup = match found {
            // Padding that pushes the rest of the header past the budget
            // must not hide a second cookie of ours: fail closed.
            Some(_) if cut => Lookup::Ambiguous,
            Some(id) => Lookup::Found(id),
            None => Lookup::Missing,
        };
        (lookup, failed)
    }

    /// The `Set-Cookie` value that hands `token` to the browser.
    ///
    /// `expires_in` is how long the session has left; a persistent cookie
    /// carries it as `Max-Age` in whole seconds, rounded down so the cookie
    /// never outlives the session. A browser-session cookie ignores it.
    pub fn set_cookie(&self, token: &Token, expires_in: Duration) -> String {
        let max_age = self.persistent.then_some(expires_in.as_secs());
        self.render(token.as_str(), max_age)
    }

    /// The `Set-Cookie` value that makes the browser drop the cookie: empty
    /// value, `Max-Age=0`, and the same name, path and domain as the cookie
    /// it removes.
    pub fn removal(&self) -> String {
        self.render("", Some(0))
    }

    fn render(&self, value: &str, max_age: Option<u64>) -> String {
        let mut out = String::with_capacity(self.name.len() + value.len() + 80);
        // `write!` to a String cannot fail.
        let _ = write!(out, "{}={}", self.name, value);
        if let Some(secs) = max_age {
            let _ = write!(out, "; Max-Age={secs}");
        }
        let _ = write!(out, "; Path={}", self.path);
        if let Some(domain) = &self.domain {
            let _ = write!(out, "; Domain={domain}");
        }
        if self.secure {
            out.push_str("; Secure");
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        let _ = write!(out, "; SameSite={}", self.same_site.as_str());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Key;

    fn all(header: &[u8]) -> Vec<(&[u8], &[u8])> {
        pairs(header).collect()
    }

    #[test]
    fn pairs_as_browsers_send_them() {
        let want: Vec<(&[u8], &[u8])> = vec![(b"a", b"1"), (b"b", b"2"), (b"c", b"3")];
        assert_eq!(all(b"a=1; b=2; c=3"), want);
        assert_eq!(all(b"a=1;b=2;c=3"), want);
        assert_eq!(all(b"  a = 1 ;\tb=2;  c=3 ; "), want);
        assert_eq!(all(b"a=\"1\"; b=2;;c=3;"), want);
        assert!(all(b"").is_empty());
        assert!(all(b" ; ;; ").is_empty());
    }

    #[test]
    fn pairs_edge_cases() {
        // No '=': a value with an empty name (what `document.cookie = "x"` sends).
        assert_eq!(all(b"x"), vec![(&b""[..], &b"x"[..])]);
        // Only the first '=' splits.
        assert_eq!(all(b"a==b=c"), vec![(&b"a"[..], &b"=b=c"[..])]);
        // A lone quote is not a quoted value.
        assert_eq!(all(b"a=\""), vec![(&b"a"[..], &b"\""[..])]);
        assert_eq!(all(b"a=\"\""), vec![(&b"a"[..], &b""[..])]);
        // Non-UTF-8 bytes pass through.
        assert_eq!(
            all(b"\xff=\xfe\x00"),
            vec![(&b"\xff"[..], &b"\xfe\x00"[..])]
        );
    }

    fn ring() -> KeyRing {
        KeyRing::new(1, Key::try_from(&[7u8; 32][..]).expect("32 bytes"))
    }

    #[test]
    fn finds_our_cookie_among_others_and_headers() {
        let cfg = CookieConfig::default();
        let ring = ring();
        let id = SessionId::from_bytes([4; 32]);
        let token = ring.sign(Purpose::Session, &id);
        let ours = format!("{}={}", cfg.name(), token.as_str());
        let h1 = b"theme=dark; lang=en".to_vec();
        let h2 = format!("x=1; {ours}; y=2");
        assert_eq!(cfg.find_session(&ring, [&h1[..], h2.as_bytes()]), Some(id));
        let quoted = format!("{}=\"{}\"", cfg.name(), token.as_str());
        assert_eq!(cfg.find_session(&ring, [quoted.as_bytes()]), Some(id));
        assert_eq!(cfg.find_session(&ring, [&h1[..]]), None);
        assert_eq!(cfg.find_session(&ring, std::iter::empty()), None);
    }

    #[test]
    fn two_verifying_cookies_naming_different_ids_are_ambiguous() {
        let cfg = CookieConfig::default();
        let ring = ring();
        let mine = ring.sign(Purpose::Session, &SessionId::from_bytes([5; 32]));
        let tossed = ring.sign(Purpose::Session, &SessionId::from_bytes([6; 32]));
        for header in [
            format!(
                "{n}={}; {n}={}",
                tossed.as_str(),
                mine.as_str(),
                n = cfg.name()
            ),
            format!(
                "{n}={}; {n}={}",
                mine.as_str(),
                tossed.as_str(),
                n = cfg.name()
            ),
        ] {
            assert_eq!(cfg.lookup(&ring, [header.as_bytes()]), Lookup::Ambiguous);
            assert_eq!(cfg.find_session(&ring, [header.as_bytes()]), None);
        }
        // Across headers too.
        let h1 = format!("{}={}", cfg.name(), mine.as_str());
        let h2 = format!("{}={}", cfg.name(), tossed.as_str());
        assert_eq!(
            cfg.lookup(&ring, [h1.as_bytes(), h2.as_bytes()]),
            Lookup::Ambiguous
        );
        // The same id twice is no ambiguity.
        let twice = format!(
            "{n}={}; {n}={}",
            mine.as_str(),
            mine.as_str(),
            n = cfg.name()
        );
        assert_eq!(
            cfg.lookup(&ring, [twice.as_bytes()]),
            Lookup::Found(SessionId::from_bytes([5; 32]))
        );
    }

    #[test]
    fn forged_duplicates_are_ignored() {
        let cfg = CookieConfig::default();
        let ring = ring();
        let other = KeyRing::new(1, Key::try_from(&[8u8; 32][..]).expect("32 bytes"));
        let id = SessionId::from_bytes([5; 32]);
        let planted = other.sign(Purpose::Session, &SessionId::from_bytes([6; 32]));
        let good = ring.sign(Purpose::Session, &id);
        let header = format!(
            "{n}=junk; {n}={}; {n}={}",
            planted.as_str(),
            good.as_str(),
            n = cfg.name()
        );
        assert_eq!(cfg.find_session(&ring, [header.as_bytes()]), Some(id));
    }

    #[test]
    fn verification_attempts_are_capped() {
        let cfg = CookieConfig::default();
        let ring = ring();
        let good = ring.sign(Purpose::Session, &SessionId::from_bytes([5; 32]));
        let forged = "A".repeat(Token::LEN);
        let mut header = String::new();
        for _ in 0..MAX_VERIFY {
            header.push_str(&format!("{}={forged}; ", cfg.name()));
        }
        header.push_str(&format!("{}={}", cfg.name(), good.as_str()));
        assert_eq!(cfg.find_session(&ring, [header.as_bytes()]), None);
    }

    #[test]
    fn scan_budget_is_enforced() {
        let cfg = CookieConfig::default();
        let ring = ring();
        let id = SessionId::from_bytes([5; 32]);
        let good = format!(
            "{}={}",
            cfg.name(),
            ring.sign(Purpose::Session, &id).as_str()
        );
        let filler = vec![b'x'; MAX_SCAN_BYTES];
        assert_eq!(
            cfg.find_session(&ring, [&filler[..], good.as_bytes()]),
            None
        );
        let empties = vec![&b""[..]; MAX_SCAN_BYTES];
        assert_eq!(
            cfg.find_session(&ring, empties.into_iter().chain([good.as_bytes()])),
            None
        );
        assert_eq!(
            cfg.find_session(&ring, [&filler[..100], good.as_bytes()]),
            Some(id)
        );
    }

    /// A sibling domain sets its own valid cookie first (a longer Path
    /// sorts first) and pads the header past the budget, so the user's own
    /// cookie is never read: found-but-cut is ambiguous, not the attacker's.
    #[test]
    fn a_verifying_cookie_in_a_cut_header_is_ambiguous() {
        let cfg = CookieConfig::default();
        let ring = ring();
        let planted = format!(
            "{}={}",
            cfg.name(),
            ring.sign(Purpose::Session, &SessionId::from_bytes([6; 32]))
                .as_str()
        );
        let mine = format!(
            "{}={}",
            cfg.name(),
            ring.sign(Purpose::Session, &SessionId::from_bytes([5; 32]))
                .as_str()
        );
        let padding = format!("pad={}", "p".repeat(MAX_SCAN_BYTES));
        let one_header = format!("{planted}; {padding}; {mine}");
        assert_eq!(
            cfg.lookup(&ring, [one_header.as_bytes()]),
            Lookup::Ambiguous
        );
        assert_eq!(
            cfg.lookup(
                &ring,
                [planted.as_bytes(), padding.as_bytes(), mine.as_bytes()]
            ),
            Lookup::Ambiguous
        );
        // Nothing found in a cut header is simply no session.
        assert_eq!(cfg.lookup(&ring, [padding.as_bytes()]), Lookup::Missing);
    }

    #[test]
    fn default_set_cookie_is_safe() {
        let cfg = CookieConfig::builder().build().expect("defaults are valid");
        assert_eq!(cfg, CookieConfig::default());
        let token = ring().sign(Purpose::Session, &SessionId::from_bytes([1; 32]));
        let header = cfg.set_cookie(&token, Duration::from_millis(1_800_999));
        assert_eq!(
            header,
            format!(
                "__Host-sessiondb={}; Max-Age=1800; Path=/; Secure; HttpOnly; SameSite=Lax",
                token.as_str()
            )
        );
        assert_eq!(
            cfg.removal(),
            "__Host-sessiondb=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax"
        );
    }

    #[test]
    fn browser_session_cookie_has_no_max_age() {
        let cfg = CookieConfig::builder()
            .persistent(false)
            .build()
            .expect("valid");
        let token = ring().sign(Purpose::Session, &SessionId::from_bytes([1; 32]));
        assert!(
            !cfg.set_cookie(&token, Duration::from_secs(60))
                .contains("Max-Age")
        );
        assert!(cfg.removal().contains("Max-Age=0"));
    }

    #[test]
    fn host_prefix_rules() {
        // Auto drops the prefix when its rules cannot hold.
        let plain = CookieConfig::builder()
            .secure(false)
            .build()
            .expect("valid");
        assert_eq!(plain.name(), "sessiondb");
        let sub = CookieConfig::builder().path("/app").build().expect("valid");
        assert_eq!(sub.name(), "sessiondb");
        assert!(sub.removal().contains("Path=/app"));
        // Require refuses them.
        for b in [
            CookieConfig::builder().secure(false),
            CookieConfig::builder().path("/app"),
            CookieConfig::builder().domain(Some("example.com".into())),
        ] {
            assert!(matches!(
                b.host_prefix(HostPrefix::Require).build(),
                Err(Error::InvalidCookie {
                    field: "host_prefix",
                    ..
                })
            ));
        }
        // A name that already carries the prefix is held to its rules.
        assert!(
            CookieConfig::builder()
                .name("__Host-x")
                .secure(false)
                .build()
                .is_err()
        );
        assert!(
            CookieConfig::builder()
                .name("__host-x")
                .host_prefix(HostPrefix::Off)
                .path("/a")
                .build()
                .is_err()
        );
        let named = CookieConfig::builder()
            .name("__Host-x")
            .build()
            .expect("valid");
        assert_eq!(named.name(), "__Host-x");
        assert!(
            CookieConfig::builder()
                .name("__Secure-x")
                .secure(false)
                .build()
                .is_err()
        );
        let off = CookieConfig::builder()
            .host_prefix(HostPrefix::Off)
            .build()
            .expect("valid");
        assert_eq!(off.name(), "sessiondb");
    }

    #[test]
    fn unsafe_attribute_values_are_refused() {
        let cases: Vec<(CookieBuilder, &str)> = vec![
            (CookieConfig::builder().name(""), "name"),
            (CookieConfig::builder().name("a b"), "name"),
            (CookieConfig::builder().name("a;b"), "name"),
            (CookieConfig::builder().name("a=b"), "name"),
            (CookieConfig::builder().name("a\r\nSet-Cookie: x"), "name"),
            (CookieConfig::builder().name("é"), "name"),
            (CookieConfig::builder().name("n".repeat(129)), "name"),
            (CookieConfig::builder().path("app"), "path"),
            (CookieConfig::builder().path("/a;b"), "path"),
            (CookieConfig::builder().path("/a\r\nX: y"), "path"),
            (CookieConfig::builder().path("/a\x00"), "path"),
            (
                CookieConfig::builder().path(format!("/{}", "p".repeat(1024))),
                "path",
            ),
            (CookieConfig::builder().domain(Some("".into())), "domain"),
            (CookieConfig::builder().domain(Some(".".into())), "domain"),
            (
                CookieConfig::builder().domain(Some("a.com;x".into())),
                "domain",
            ),
            (
                CookieConfig::builder().domain(Some("a.com\n".into())),
                "domain",
            ),
            (
                CookieConfig::builder()
                    .secure(false)
                    .same_site(SameSite::None),
                "same_site",
            ),
        ];
        for (builder, field) in cases {
            let shown = format!("{builder:?}");
            match builder.build() {
                Err(Error::InvalidCookie { field: f, .. }) => assert_eq!(f, field, "{shown}"),
                other => panic!("{shown} gave {other:?}"),
            }
        }
    }

    #[test]
    fn non_default_attributes_are_written() {
        let cfg = CookieConfig::builder()
            .name("sid")
            .path("/app")
            .domain(Some(".example.com".into()))
            .http_only(false)
            .same_site(SameSite::Strict)
            .build()
            .expect("valid");
        assert_eq!(
            cfg.removal(),
            "sid=; Max-Age=0; Path=/app; Domain=.example.com; Secure; SameSite=Strict"
        );
        let none = CookieConfig::builder()
            .same_site(SameSite::None)
            .build()
            .expect("Secure is on");
        assert!(
            none.removal()
                .ends_with("; Secure; HttpOnly; SameSite=None")
        );
    }
}
