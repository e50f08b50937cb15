//! The demo in a real headless Chromium, through chromedriver: log in,
//! reload, SIGKILL the demo and start it again on the same data, still
//! logged in with the counter intact; log out; and with a short idle
//! timeout, wait it out and see "session expired".
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's
//! `chromium` and `chromium-driver`; `.ci/run` installs them). Without them
//! the test prints a notice and passes, unless `SESSIONDB_E2E=1` demands it
//! (as `.ci/run` does). `SESSIONDB_E2E_SCREENSHOT=docs` also writes the
//! logged-in page to `docs/demo.png`.
#![cfg(feature = "axum")]

mod common;

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "{what} did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Demo {
    child: Child,
    port: u16,
}

impl Demo {
    fn start(data: &Path, extra: &[&str]) -> Self {
        let port = free_port();
        let log = std::fs::File::create(data.with_extension(format!("{port}.log"))).expect("log");
        let child = Command::new(common::demo_binary())
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data)
            .args(extra)
            .env_remove("SESSIONDB_KEY")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the demo");
        wait_for_port(port, "the demo");
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn kill9(mut self) {
        // std's kill is SIGKILL on Unix.
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Just enough of the W3C WebDriver protocol.
struct Browser {
    agent: ureq::Agent,
    base: String,
    driver: Child,
}

impl Browser {
    fn start(profile: &Path) -> Self {
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        wait_for_port(port, "chromedriver");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut b = Self {
            agent,
            base: format!("http://127.0.0.1:{port}"),
            driver,
        };
        // The flags this machine's closed network needs (see the env notes).
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--window-size=900,700",
                         format!("--user-data-dir={}", profile.display())],
            }
        }}});
        let v = b.send("POST", "/session", Some(caps));
        let id = v["sessionId"]
            .as_str()
            .expect("a WebDriver session")
            .to_owned();
        b.base = format!("{}/session/{id}", b.base);
        b
    }

    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let resp = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, b) => self.agent.post(&url).send_json(b.unwrap_or(json!({}))),
        };
        let mut resp = resp.expect("chromedriver answers");
        let status = resp.status();
        let v: Value = resp.body_mut().read_json().expect("JSON from chromedriver");
        assert!(status.is_success(), "{method} {path}: {v}");
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.send("POST", "/url", Some(json!({"url": url})));
    }

    fn reload(&self) {
        self.send("POST", "/refresh", None);
    }

    fn element(&self, css: &str) -> String {
        let v = self.send(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        match v["element-6066-11e4-a52e-4f735466cecf"].as_str() {
            Some(id) => id.to_owned(),
            None => panic!("no element {css}: {v}"),
        }
    }

    fn click(&self, css: &str) {
        let e = self.element(css);
        self.send("POST", &format!("/element/{e}/click"), None);
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.send("POST", &format!("/element/{e}/clear"), None);
        self.send(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        );
    }

    fn eval(&self, script: &str) -> Value {
        self.send(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    fn text(&self, id: &str) -> String {
        self.eval(&format!(
            "return document.getElementById('{id}').textContent"
        ))
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    fn visible(&self, id: &str) -> bool {
        self.eval(&format!(
            "const e = document.getElementById('{id}'); return !!e && !e.hidden && !e.closest('[hidden]')"
        ))
        .as_bool()
        .unwrap_or(false)
    }

    fn wait(&self, what: &str, secs: u64, ok: impl Fn(&Self) -> bool) {
        let until = Instant::now() + Duration::from_secs(secs);
        while !ok(self) {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self) -> Vec<u8> {
        let v = self.send("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .expect("PNG bytes")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.base).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn login_survives_kill9_then_logout_and_expiry_in_chromium() {
    let have = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !have {
        assert!(
            std::env::var("SESSIONDB_E2E").as_deref() != Ok("1"),
            "SESSIONDB_E2E=1 but {CHROMIUM} or {CHROMEDRIVER} is missing"
        );
        eprintln!(
            "skipped: no {CHROMIUM} / {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("store");
    let browser = Browser::start(&tmp.path().join("profile"));

    // The README's cookies (Secure, __Host-), which Chromium keeps for
    // http://127.0.0.1, a potentially trustworthy origin. Strict durability:
    // every answered request is on disk, so the kill below cannot race the
    // 500 ms relaxed flush and the test is exact.
    let strict = ["--durability", "strict"];
    let demo = Demo::start(&data, &strict);
    browser.go(&demo.url());
    browser.wait("the login form", 10, |b| b.visible("login-view"));
    assert!(
        !browser.visible("expired"),
        "no 'session expired' before any login"
    );
    browser.type_into("#user", "alice");
    browser.click("#login");
    browser.wait("alice's page", 10, |b| b.text("who") == "alice");
    assert_eq!(browser.text("flash"), "welcome back, alice");
    browser.click("#count");
    browser.wait("counter 1", 10, |b| b.text("counter") == "1");
    browser.click("#count");
    browser.wait("counter 2", 10, |b| b.text("counter") == "2");
    let countdown = browser.text("countdown");
    assert!(
        countdown.starts_with("29:") || countdown == "30:00",
        "{countdown}"
    );

    browser.reload();
    browser.wait("still alice after a reload", 10, |b| {
        b.text("who") == "alice"
    });
    assert!(!browser.visible("flash"), "the flash was shown once");

    // kill -9, then the same data directory again.
    demo.kill9();
    let demo = Demo::start(&data, &[]);
    browser.go(&demo.url());
    browser.wait("alice after a crash", 10, |b| b.text("who") == "alice");
    browser.wait("the session list", 10, |b| {
        b.eval("return document.querySelectorAll('#sessions tr').length")
            .as_u64()
            == Some(1)
    });
    browser.click("#count");
    browser.wait("counter 3: intact across the crash", 10, |b| {
        b.text("counter") == "3"
    });
    let png = browser.screenshot();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo.png");
    std::fs::write(&out, &png).expect("screenshot");
    if std::env::var("SESSIONDB_E2E_SCREENSHOT").as_deref() == Ok("docs") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).expect("docs/");
        std::fs::write(docs.join("demo.png"), &png).expect("docs/demo.png");
    }

    browser.click("#logout");
    browser.wait("the login form after logout", 10, |b| {
        b.visible("login-view")
    });
    assert!(!browser.visible("app-view"));
    browser.reload();
    browser.wait("still logged out after a reload", 10, |b| {
        b.visible("login-view")
    });
    demo.kill9();

    // A 3-second idle timeout: log in, wait, see "session expired".
    let demo = Demo::start(&data, &["--idle-timeout", "3"]);
    browser.go(&demo.url());
    browser.wait("the login form", 10, |b| b.visible("login-view"));
    browser.type_into("#user", "bob");
    browser.click("#login");
    browser.wait("bob's page", 10, |b| b.text("who") == "bob");
    browser.wait("'session expired'", 15, |b| {
        b.visible("expired") && b.visible("login-view")
    });
    assert_eq!(browser.text("expired"), "session expired");
    let mut log = String::new();
    let _ = std::fs::File::open(data.with_extension(format!("{}.log", demo.port)))
        .and_then(|mut f| f.read_to_string(&mut log));
    assert!(!log.contains("panicked"), "{log}");
}
