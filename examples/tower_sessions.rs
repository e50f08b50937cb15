//! A tower-sessions app on the sessiondb store: the one line that changes
//! is the store given to `SessionManagerLayer`.
//!
//! ```text
//! cargo run --release --example tower_sessions --features tower-sessions -- \
//!     --listen 127.0.0.1:8081 --data ./sessiondb-tower-data
//! curl -c jar -b jar http://localhost:8081/count    # {"count":1}, then 2, 3, ...
//! ```
//!
//! `GET /count` answers `{"count": N}`, N going up by one per request of
//! the session. Sessions expire after 30 minutes without a request; the
//! store's sweeper deletes them. Relaxed durability by default (a kill
//! loses at most the last second of counts); `--durability strict` makes
//! every count durable before it is answered. SIGTERM or Ctrl-C closes the
//! store cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Json;
use axum::routing::get;
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};
use sessiondb::{Config, Durability, Key, KeyRing, TowerStore};
use tower_sessions::{Expiry, Session, SessionManagerLayer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser, Debug)]
#[command(about = "A tower-sessions counter on the sessiondb store")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// The session store's directory (made on first start).
    #[arg(long, default_value = "./sessiondb-tower-data")]
    data: PathBuf,
    /// strict: every change is on disk before the response; relaxed:
    /// within a second.
    #[arg(long, value_enum, default_value_t = Mode::Relaxed)]
    durability: Mode,
    /// Cookies without `Secure`, for plain HTTP to a host other than
    /// localhost.
    #[arg(long)]
    insecure_cookies: bool,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum Mode {
    Strict,
    Relaxed,
}

/// Sessions end after this long without a request.
const INACTIVITY_MINUTES: u64 = 30;

/// The key of the count in the session.
const COUNT: &str = "count";

async fn count(session: Session) -> Result<Json<Value>, (axum::http::StatusCode, String)> {
    let internal = |e: tower_sessions::session::Error| {
        (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    };
    let n = session
        .get::<u64>(COUNT)
        .await
        .map_err(internal)?
        .unwrap_or(0)
        + 1;
    session.insert(COUNT, n).await.map_err(internal)?;
    Ok(Json(json!({ "count": n })))
}

fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    // The store never signs anything (tower-sessions names records by its
    // own cookie); the engine's configuration still wants a key.
    let config = Config::new(KeyRing::new(1, Key::generate()?))
        .durability(match args.durability {
            Mode::Strict => Durability::Strict,
            Mode::Relaxed => Durability::Relaxed,
        })
        // The session layer sets each record's expiry (below); these bound
        // what an import of an export may bring back.
        .idle_timeout(std::time::Duration::from_secs(INACTIVITY_MINUTES * 60))
        .absolute_timeout(TowerStore::DEFAULT_TIMEOUT);
    let store = TowerStore::open_with(&args.data, config)?;
    if let Some(r) = store.engine().recovery() {
        tracing::warn!(
            found = r.found.len(),
            "the last run did not close cleanly; store checked"
        );
    }
    let layer = SessionManagerLayer::new(store.clone())
        .with_secure(!args.insecure_cookies)
        .with_expiry(Expiry::OnInactivity(time::Duration::minutes(
            INACTIVITY_MINUTES as i64,
        )));
    let app = axum::Router::new().route("/count", get(count)).layer(layer);

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        tracing::info!(
            "listening on http://{}/count (data in {})",
            listener.local_addr()?,
            args.data.display()
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await?;
        Ok::<_, BoxError>(())
    })?;
    // Every handle the server held is gone: this closes the store.
    store.close()?;
    tracing::info!("store closed");
    Ok(())
}

/// Resolves at SIGTERM or Ctrl-C.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
