//! axum-login's own login flow on the sessiondb store, with "log out
//! everywhere" through the store's user index.
//!
//! ```text
//! cargo run --release --example axum_login --features tower-sessions
//! curl -c jar -b jar -d 'username=alice&password=alice-pw' http://localhost:8082/login
//! curl -c jar -b jar http://localhost:8082/protected
//! curl -c jar -b jar -X POST http://localhost:8082/logout-everywhere
//! ```
//!
//! Two users, `alice` (password `alice-pw`) and `bob` (`bob-pw`). Routes:
//! - `POST /login`, form `username`, `password`: 303 to `/protected`, or
//!   401;
//! - `GET /protected`: `{"user": NAME}`, or 401 without a login;
//! - `GET /sessions`: the user's sessions, from the store's user index;
//! - `POST /logout`: this session only;
//! - `POST /logout-everywhere`: every session of the user, on every
//!   device, durably (`{"logged_out": N}`).
//!
//! The only sessiondb-specific lines are the store's (`TowerStore::open_with`,
//! indexing axum-login's user id) and the log out everywhere handler's.
//! Cookies are tower-sessions' defaults (`SameSite=Strict`, `HttpOnly`,
//! `Secure`): a cross-site form cannot carry them, which is this example's
//! CSRF defence.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use axum_login::{AuthManagerLayerBuilder, AuthUser, AuthnBackend, UserId, login_required};
use clap::{Parser, ValueEnum};
use serde::Deserialize;
use serde_json::json;
use sessiondb::{Config, Durability, Key, KeyRing, TowerStore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_sessions::{Expiry, SessionManagerLayer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser, Debug)]
#[command(about = "axum-login on the sessiondb store, with log out everywhere")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8082")]
    listen: SocketAddr,
    /// The session store's directory (made on first start).
    #[arg(long, default_value = "./sessiondb-axum-login-data")]
    data: PathBuf,
    /// strict: every change is on disk before the response; relaxed:
    /// within a second (logins and logouts are durable in both).
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

/// A user of the fixed list.
#[derive(Clone)]
struct User {
    id: i64,
    name: &'static str,
    /// SHA-256 of the password, kept in memory only. (A real app keeps a
    /// salted, slow hash: argon2 or `password-auth`.)
    pw_hash: [u8; 32],
    /// What axum-login stores in the session to check it against the user
    /// on every request: a value that changes when the credentials do
    /// (here fixed), never derived from the password, because it is
    /// written into every session record on disk.
    auth_hash: Vec<u8>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl AuthUser for User {
    type Id = i64;

    fn id(&self) -> i64 {
        self.id
    }

    fn session_auth_hash(&self) -> &[u8] {
        &self.auth_hash
    }
}

#[derive(Clone)]
struct Backend {
    users: std::sync::Arc<HashMap<i64, User>>,
}

impl Backend {
    fn fixed() -> Self {
        let user = |id, name, pw: &str| User {
            id,
            name,
            pw_hash: Sha256::digest(pw.as_bytes()).into(),
            // A real app stores a random value per user and replaces it at
            // every password change, logging out every session.
            auth_hash: Sha256::digest(format!("{name}: credentials version 1")).to_vec(),
        };
        Self {
            users: std::sync::Arc::new(HashMap::from([
                (1, user(1, "alice", "alice-pw")),
                (2, user(2, "bob", "bob-pw")),
            ])),
        }
    }
}

#[derive(Clone, Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

impl AuthnBackend for Backend {
    type User = User;
    type Credentials = Credentials;
    type Error = std::convert::Infallible;

    async fn authenticate(&self, creds: Credentials) -> Result<Option<User>, Self::Error> {
        let offered: [u8; 32] = Sha256::digest(creds.password.as_bytes()).into();
        Ok(self
            .users
            .values()
            .find(|u| u.name == creds.username && bool::from(u.pw_hash.ct_eq(&offered)))
            .cloned())
    }

    async fn get_user(&self, id: &UserId<Self>) -> Result<Option<User>, Self::Error> {
        Ok(self.users.get(id).cloned())
    }
}

type AuthSession = axum_login::AuthSession<Backend>;

fn internal(e: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
}

async fn login(mut auth: AuthSession, Form(creds): Form<Credentials>) -> Response {
    let user = match auth.authenticate(creds).await {
        Ok(Some(user)) => user,
        Ok(None) => return (StatusCode::UNAUTHORIZED, "bad user name or password").into_response(),
        Err(e) => return internal(e),
    };
    if let Err(e) = auth.login(&user).await {
        return internal(e);
    }
    Redirect::to("/protected").into_response()
}

async fn protected(auth: AuthSession) -> Response {
    match auth.user {
        Some(user) => Json(json!({ "user": user.name })).into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn sessions(State(store): State<TowerStore>, auth: AuthSession) -> Response {
    let Some(user) = auth.user else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let current = auth.session.id();
    match store.sessions_of(&user.id().to_string()).await {
        Ok(list) => Json(json!({
            "sessions": list.iter().map(|s| json!({
                // Enough to tell them apart, never a whole id.
                "id_hint": s.id.to_string().chars().take(8).collect::<String>(),
                "created_at": s.created_at,
                "expires_at": s.expires_at,
                "current": Some(s.id) == current,
            })).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}

async fn logout(mut auth: AuthSession) -> Response {
    match auth.logout().await {
        Ok(_) => Redirect::to("/").into_response(),
        Err(e) => internal(e),
    }
}

async fn logout_everywhere(State(store): State<TowerStore>, mut auth: AuthSession) -> Response {
    let Some(user) = auth.user.clone() else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    // axum-login keeps `user.id()` in the session; the store indexes it as
    // its text. Durable before it returns, in either durability mode.
    let n = match store.destroy_user(&user.id().to_string(), None).await {
        Ok(n) => n,
        Err(e) => return internal(e),
    };
    // This session's record is gone already; forget it here too.
    if let Err(e) = auth.logout().await {
        return internal(e);
    }
    Json(json!({ "logged_out": n })).into_response()
}

async fn home(auth: AuthSession) -> Json<serde_json::Value> {
    Json(json!({ "user": auth.user.map(|u| u.name) }))
}

fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let config = Config::new(KeyRing::new(1, Key::generate()?))
        .durability(match args.durability {
            Mode::Strict => Durability::Strict,
            Mode::Relaxed => Durability::Relaxed,
        })
        // The session layer sets each record's expiry (a week without a
        // request); these bound what an import of an export may bring back,
        // and how long logouts are remembered against such imports.
        .idle_timeout(std::time::Duration::from_secs(7 * 24 * 3600))
        .absolute_timeout(std::time::Duration::from_secs(7 * 24 * 3600));
    let store =
        TowerStore::open_with(&args.data, config)?.index_users_at(TowerStore::AXUM_LOGIN_USER)?;
    let sessions_layer = SessionManagerLayer::new(store.clone())
        .with_secure(!args.insecure_cookies)
        .with_expiry(Expiry::OnInactivity(time::Duration::days(7)));
    let auth_layer = AuthManagerLayerBuilder::new(Backend::fixed(), sessions_layer).build();
    let app = Router::new()
        .route("/protected", get(protected))
        .route("/sessions", get(sessions))
        .route("/logout-everywhere", post(logout_everywhere))
        .route_layer(login_required!(Backend))
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .layer(auth_layer)
        .with_state(store.clone());

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        tracing::info!(
            "listening on http://{}/ (data in {})",
            listener.local_addr()?,
            args.data.display()
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await?;
        Ok::<_, BoxError>(())
    })?;
    store.close()?;
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
