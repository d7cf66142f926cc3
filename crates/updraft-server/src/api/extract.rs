//! Request extractors whose rejections are problem details, never axum's plain-text ones.
//!
//! As in Airflow (FastAPI), a request that does not fit the operation's schema (a body that is
//! not JSON or has wrong types, a query or path parameter of the wrong type) is 422.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::unprocessable(format!(
            "the request body does not fit the schema: {}",
            inner_text(&e.body_text())
        )),
        JsonRejection::JsonSyntaxError(e) => ApiError::unprocessable(format!(
            "the request body is not valid JSON: {}",
            inner_text(&e.body_text())
        )),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the request body must be JSON, with `Content-Type: application/json`",
        ),
        other => ApiError::new(other.status(), other.body_text()),
    }
}

/// axum's messages start with a generic sentence; keep the part that names the problem.
fn inner_text(text: &str) -> String {
    text.split_once(": ")
        .map_or(text, |(_, rest)| rest)
        .to_string()
}

/// Query parameters, deserialized as an HTML form (repeated keys make lists, as Airflow's
/// `?state=a&state=b`). Unknown parameters are ignored, as Airflow does.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        serde_html_form::from_str::<T>(query)
            .map(ApiQuery)
            .map_err(|e| ApiError::unprocessable(format!("invalid query parameters: {e}")))
    }
}

/// Path parameters.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(ApiError::unprocessable(
                format!("invalid path parameter: {}", e.body_text()),
            )),
            Err(other) => Err(ApiError::new(other.status(), other.body_text())),
        }
    }
}

/// What the client accepts, for the operations that can answer in plain text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    Json,
    Text,
}

impl<S: Send + Sync> FromRequestParts<S> for Accept {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(axum::http::header::ACCEPT) else {
            return Ok(Accept::Json);
        };
        let text = value.to_str().unwrap_or_default().to_ascii_lowercase();
        let mut best: Option<Accept> = None;
        for range in text.split(',') {
            let media = range.split(';').next().unwrap_or_default().trim();
            let choice = match media {
                "application/json" | "application/*" | "*/*" | "" => Some(Accept::Json),
                "text/plain" | "text/*" => Some(Accept::Text),
                _ => None,
            };
            // The first acceptable range wins (quality values are not weighed).
            if best.is_none() {
                best = choice;
            }
        }
        best.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_ACCEPTABLE,
                "this operation answers in application/json or text/plain",
            )
        })
    }
}
