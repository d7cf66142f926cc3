//! The web UI: server-rendered HTML, a little JavaScript, live updates over SSE.

use axum::Router;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
}
