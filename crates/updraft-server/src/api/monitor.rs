//! `/monitor/health` and `/version`.

use axum::Json;
use axum::extract::State;

use super::models::{
    BaseInfoResponse, HealthInfoResponse, SchedulerInfoResponse, TriggererInfoResponse, VersionInfo,
};
use crate::AppState;
use crate::auth::{self, Action, Identity, Resource};
use crate::error::ApiError;
use crate::state::SchedulerStatus;

/// What this server can tell: the metadata database answers a query; a scheduler holds the
/// database's scheduler lock (updraft records no heartbeats, so none is reported). updraft has
/// no triggerer and no separate DAG processor.
#[utoipa::path(
    get,
    path = "/monitor/health",
    tag = "Monitor",
    responses((status = 200, description = "Successful response", body = HealthInfoResponse))
)]
pub async fn get_health(
    State(state): State<AppState>,
    identity: Identity,
) -> Result<Json<HealthInfoResponse>, ApiError> {
    auth::authorize(&identity, Action::Read, Resource::Health)?;
    let database = match state.store.pools().await {
        Ok(_) => "healthy",
        Err(e) => {
            tracing::warn!("health check: the metadata database failed: {e}");
            "unhealthy"
        }
    };
    let scheduler = match state.scheduler_status() {
        SchedulerStatus::Running => Some("healthy".to_string()),
        SchedulerStatus::NotRunning => Some("unhealthy".to_string()),
        SchedulerStatus::Unknown => None,
    };
    Ok(Json(HealthInfoResponse {
        metadatabase: BaseInfoResponse {
            status: Some(database.to_string()),
        },
        scheduler: SchedulerInfoResponse {
            status: scheduler,
            latest_scheduler_heartbeat: None,
        },
        triggerer: TriggererInfoResponse {
            status: None,
            latest_triggerer_heartbeat: None,
        },
        dag_processor: None,
    }))
}

/// The server's version.
#[utoipa::path(
    get,
    path = "/version",
    tag = "Version",
    responses((status = 200, description = "Successful response", body = VersionInfo))
)]
pub async fn get_version(identity: Identity) -> Result<Json<VersionInfo>, ApiError> {
    auth::authorize(&identity, Action::Read, Resource::Health)?;
    Ok(Json(VersionInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        git_version: None,
    }))
}
