//! The demo's routes, kept apart from `main` so the tests can drive them
//! through `tower::ServiceExt::oneshot` (tests/demo_routes.rs).

use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sessiondb::Engine;
use sessiondb::web::{SessionHandle, SessionLayer, WebError};

/// The longest user name the login form accepts, in characters.
pub const MAX_NAME: usize = 64;

#[derive(Clone)]
struct App {
    insecure: bool,
}

/// Every route of the demo, behind the session layer with the CSRF guard
/// on (login exempt: there is no session to bind a token to yet).
pub fn router(engine: Arc<Engine>, insecure_cookies: bool) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/login", post(login))
        .route("/api/csrf", get(csrf))
        .route("/api/me", get(me))
        .route("/api/counter", post(counter))
        .route("/api/sessions", get(sessions))
        .route("/api/logout", post(logout))
        .route("/api/logout-all", post(logout_all))
        .layer(
            SessionLayer::new(engine)
                .csrf_guard(true)
                .csrf_exempt("/api/login"),
        )
        .with_state(App {
            insecure: insecure_cookies,
        })
}

async fn page(State(app): State<App>) -> Html<String> {
    let banner = if app.insecure {
        r#"<p class="warn" id="insecure">Insecure cookies are on (--insecure-cookies): the session cookie is sent over plain HTTP. For localhost use only.</p>"#
    } else {
        ""
    };
    Html(include_str!("index.html").replace("<!--BANNER-->", banner))
}

fn no_session() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "no session"})),
    )
        .into_response()
}

fn logged_in(session: &SessionHandle) -> bool {
    session.user().is_some()
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

async fn login(
    session: SessionHandle,
    body: Result<Json<Login>, JsonRejection>,
) -> Result<Response, WebError> {
    let Ok(Json(Login { user })) = body else {
        return Ok(bad_request("send JSON {\"user\": \"<name>\"}"));
    };
    let user = user.trim().to_owned();
    if user.is_empty() || user.chars().count() > MAX_NAME {
        return Ok(bad_request(&format!(
            "the user name must be 1 to {MAX_NAME} characters"
        )));
    }
    session.login(&user).await?;
    // After the login: logging in as another account starts from an empty
    // session. The layer stores it when the handler returns.
    session.insert("flash", &format!("welcome back, {user}"))?;
    Ok(Json(json!({
        "user": user,
        "expires_at": session.expires_at(),
        "csrf": session.csrf_token()?,
    }))
    .into_response())
}

fn bad_request(msg: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": msg}))).into_response()
}

async fn csrf(session: SessionHandle) -> Result<Response, WebError> {
    Ok(match session.csrf_token()? {
        Some(t) if logged_in(&session) => Json(json!({"csrf": t})).into_response(),
        _ => no_session(),
    })
}

async fn me(session: SessionHandle) -> Result<Response, WebError> {
    if !logged_in(&session) {
        return Ok(no_session());
    }
    // One atomic read-modify-write: concurrent calls each count.
    let out = session
        .update(|s| {
            let visits = s.get::<u64>("visits").ok().flatten().unwrap_or(0) + 1;
            let flash = s.take::<String>("flash").ok().flatten();
            s.insert("visits", &visits).map(|()| (visits, flash))
        })
        .await?;
    let (visits, flash) = match out {
        Some(r) => r?,
        None => return Ok(no_session()),
    };
    Ok(Json(json!({
        "user": session.user(),
        "visits": visits,
        "expires_at": session.expires_at(),
        "flash": flash,
        "csrf": session.csrf_token()?,
    }))
    .into_response())
}

async fn counter(session: SessionHandle) -> Result<Response, WebError> {
    if !logged_in(&session) {
        return Ok(no_session());
    }
    let out = session
        .update(|s| {
            let n = s.get::<u64>("counter").ok().flatten().unwrap_or(0) + 1;
            s.insert("counter", &n).map(|()| n)
        })
        .await?;
    match out {
        Some(n) => Ok(Json(json!({"counter": n?})).into_response()),
        None => Ok(no_session()),
    }
}

async fn sessions(session: SessionHandle) -> Result<Response, WebError> {
    if !logged_in(&session) {
        return Ok(no_session());
    }
    let current = session.id();
    let list: Vec<_> = session
        .user_sessions()
        .await?
        .into_iter()
        .map(|i| {
            json!({
                "id_hint": i.id.hint(),
                "created_at": i.created_at,
                "last_seen": i.last_seen,
                "expires_at": i.expires_at,
                "current": Some(i.id) == current,
            })
        })
        .collect();
    Ok(Json(list).into_response())
}

async fn logout(session: SessionHandle) -> Result<Response, WebError> {
    if !session.exists() {
        return Ok(no_session());
    }
    session.logout().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn logout_all(session: SessionHandle) -> Result<Response, WebError> {
    if !logged_in(&session) {
        return Ok(no_session());
    }
    session.logout_everywhere().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
