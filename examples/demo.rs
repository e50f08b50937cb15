//! The demo service: the seed articles' login flow on sessiondb, surviving
//! restarts. `cargo run --release --example demo --features axum`, then
//! open http://127.0.0.1:8080/ (add `--insecure-cookies` for plain HTTP in
//! browsers that refuse `Secure` cookies on localhost).
//!
//! Routes: `GET /` (the page), `POST /api/login`, `GET /api/csrf`,
//! `GET /api/me`, `POST /api/counter`, `GET /api/sessions`,
//! `POST /api/logout`, `POST /api/logout-all`. Every POST but login needs
//! the session's CSRF token in `X-CSRF-Token`. `GET /metrics`: the
//! engine's counters in Prometheus text (a real service would serve it on
//! an internal address only).
//!
//! While it runs, `sessiondb stats ./sessiondb-data` (and every other
//! command of the operator's tool) works on its live store, through the
//! store's control socket.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{Parser, ValueEnum};
use metrics_exporter_prometheus::Matcher;
use sessiondb::{Config, CookieConfig, Durability, Engine, Key, KeyRing, SessionId};

#[path = "demo/app.rs"]
mod app;

type BoxError = Box<dyn std::error::Error>;

/// The demo's key file, inside the data directory, owner-only.
const KEY_FILE: &str = "demo.key";

#[derive(Parser, Debug)]
#[command(about = "sessiondb demo: log in, count visits, survive restarts")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The session store's directory (made on first start).
    #[arg(long, default_value = "./sessiondb-data")]
    data: PathBuf,
    /// Idle timeout in seconds (the seed's 30 minutes by default).
    #[arg(long, default_value_t = 1800)]
    idle_timeout: u64,
    /// strict: every change is on disk before the response; relaxed: within
    /// 500 ms.
    #[arg(long, value_enum, default_value_t = Mode::Relaxed)]
    durability: Mode,
    /// Cookies without `Secure` (and without the `__Host-` prefix), for
    /// plain-HTTP use on localhost. The page says when this is on.
    #[arg(long)]
    insecure_cookies: bool,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum Mode {
    Strict,
    Relaxed,
}

fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    if args.idle_timeout < 2 {
        return Err("--idle-timeout must be at least 2 seconds".into());
    }
    // Before the engine opens, so its gauges are there from the start.
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[
                0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full("sessiondb_commit_batch_size".into()),
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
        )?
        .install_recorder()?;
    let (key, new_key) = signing_key(&args.data)?;
    let idle = Duration::from_secs(args.idle_timeout);
    let config = Config::new(KeyRing::new(1, key))
        .idle_timeout(idle)
        // A read writes at most once per threshold; keep it well inside
        // short idle timeouts too.
        .touch_threshold(Duration::from_secs(60).min(idle / 4))
        .durability(match args.durability {
            Mode::Strict => Durability::Strict,
            Mode::Relaxed => Durability::Relaxed,
        })
        .cookie(CookieConfig::builder().secure(!args.insecure_cookies));
    let engine = Arc::new(Engine::open(&args.data, config)?);
    if let Some(r) = engine.recovery() {
        tracing::warn!(
            found = r.found.len(),
            "the last run did not close cleanly; store checked"
        );
    }
    // The store's directory must be empty or a store when it opens, so a
    // new key is written only now, beside the store.
    if let Some(bytes) = new_key {
        save_key(&args.data, &bytes)?;
    }

    let scrape = prometheus.clone();
    let app = app::router(engine.clone(), args.insecure_cookies).route(
        "/metrics",
        axum::routing::get(move || async move {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                scrape.render(),
            )
        }),
    );

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        // The exporter's histograms need their upkeep.
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                prometheus.run_upkeep();
            }
        });
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        tracing::info!(
            "listening on http://{}/ (data in {})",
            listener.local_addr()?,
            args.data.display()
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
    })?;
    drop(runtime);
    // Sweeper joined, store flushed and marked cleanly closed.
    match Arc::try_unwrap(engine) {
        Ok(engine) => engine.close()?,
        Err(engine) => engine.flush()?,
    }
    tracing::info!("closed cleanly");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot watch SIGTERM: {e}");
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

/// The key from `SESSIONDB_KEY` (base64), else the data directory's key
/// file, else a new one (with its bytes, to be saved once the store exists).
///
/// A key file that other users can read (any group or other permission
/// bit) is refused, as OpenSSH refuses such a private key: the key may
/// already be known to someone else, and quietly fixing the mode would
/// keep signing with it. The operator decides: `chmod 600` if no one else
/// can have read it, or delete it for a new key (which logs everyone out).
fn signing_key(data: &Path) -> Result<(Key, Option<[u8; 32]>), BoxError> {
    if let Ok(text) = std::env::var("SESSIONDB_KEY") {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| format!("SESSIONDB_KEY is not base64: {e}"))?;
        return Ok((Key::try_from(&bytes[..])?, None));
    }
    let path = data.join(KEY_FILE);
    match std::fs::File::open(&path) {
        Ok(mut file) => {
            // The mode of the file opened, so what is checked is what is read.
            let mode = file.metadata()?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(format!(
                    "{} is readable or writable by other users (mode {mode:03o}), so the \
                     key may not be secret any more. If no one else can have read it, \
                     `chmod 600` it; otherwise delete it, and a new key is made at the \
                     next start (every user is logged out).",
                    path.display()
                )
                .into());
            }
            let mut text = String::new();
            file.read_to_string(&mut text)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let bytes = STANDARD
                .decode(text.trim())
                .map_err(|e| format!("{} is not base64: {e}", path.display()))?;
            Ok((Key::try_from(&bytes[..])?, None))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // 32 bytes from the OS CSPRNG, the same source session ids use.
            let bytes = *SessionId::generate()?.as_bytes();
            Ok((Key::try_from(&bytes[..])?, Some(bytes)))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display()).into()),
    }
}

/// Writes the key file owner-only (0600), via a temporary file and a
/// rename so a crash never leaves half a key.
fn save_key(data: &Path, key: &[u8]) -> Result<(), BoxError> {
    let tmp = data.join(format!("{KEY_FILE}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(STANDARD.encode(key).as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, data.join(KEY_FILE))?;
    std::fs::File::open(data)?.sync_all()?;
    tracing::info!(
        "made a new signing key in {}",
        data.join(KEY_FILE).display()
    );
    Ok(())
}
