//! REST API v2, shaped like Airflow's public API.

use axum::Router;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
}
