//! How a storage error reaches the client: as nothing but a 500.

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::error::Error;

/// A sessiondb error as an HTTP response: a bare 500, the error logged.
#[derive(Debug)]
pub struct WebError(pub Error);

impl From<Error> for WebError {
    fn from(e: Error) -> Self {
        WebError(e)
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self.0, "session store error");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
    }
}
