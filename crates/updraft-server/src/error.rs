//! Errors: [`ServerError`] for starting the server, [`ApiError`] for requests (rendered as
//! RFC 9457 problem details, the shape Airflow's API uses: `type`, `title`, `status`, `detail`).

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "refusing to serve on {addr} with authentication turned off (auth.enabled = false): \
         anyone who can reach it could run tasks. Turn authentication back on (remove \
         auth.enabled = false / UPDRAFT__AUTH__ENABLED), or bind a loopback address \
         (api.host = \"127.0.0.1\")"
    )]
    UnauthenticatedPublicBind { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// A request's failure, as problem details.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    #[serde(rename = "status")]
    pub status_code: u16,
    pub title: String,
    pub detail: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            status_code: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            detail: detail.into(),
            kind: "about:blank".to_string(),
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }

    /// A request that does not fit the operation's schema (Airflow's 422).
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

impl From<updraft_store::StoreError> for ApiError {
    fn from(e: updraft_store::StoreError) -> Self {
        use updraft_store::StoreError as E;
        match e {
            E::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            E::Conflict(message) => ApiError::conflict(message),
            E::Invalid(message) => ApiError::bad_request(message),
            other => {
                tracing::error!("store error: {other}");
                ApiError::internal("the metadata database failed; see the server log")
            }
        }
    }
}
