//! `/monitor/health`, `/monitor/metrics` (also served at `/metrics`) and `/version`.

use axum::Json;
use axum::extract::State;

use super::models::{
    BaseInfoResponse, HealthInfoResponse, SchedulerInfoResponse, TriggererInfoResponse, VersionInfo,
};
use crate::AppState;
use crate::auth::{self, Action, Caller, Resource};
use crate::error::ApiError;
use chrono::Utc;
use updraft_store::JobState;

/// The metadata database is healthy while it answers a query and its writes work (none failed
/// for a reason of the database's own, a full disk say, within the last seconds: see
/// `AdminStore::write_failure`); the scheduler is healthy while some scheduler job's latest
/// heartbeat is within the health-check threshold (Airflow's rule), and its newest heartbeat
/// is reported. While the database is away both are unhealthy. updraft has no triggerer and no
/// separate DAG processor.
#[utoipa::path(
    get,
    path = "/monitor/health",
    tag = "Monitor",
    responses((status = 200, description = "Successful response", body = HealthInfoResponse))
)]
pub async fn get_health(
    State(state): State<AppState>,
    Caller(identity): Caller,
) -> Result<Json<HealthInfoResponse>, ApiError> {
    auth::authorize(&identity, Action::Read, Resource::Health)?;
    let (database, scheduler, latest) = match state.store.schedulers(64).await {
        Ok(jobs) => {
            let latest = jobs
                .iter()
                .filter(|job| job.state == JobState::Running)
                .map(|job| job.latest_heartbeat)
                .max();
            let threshold = chrono::Duration::from_std(state.health_check_threshold())
                .unwrap_or(chrono::Duration::MAX);
            let healthy = latest.is_some_and(|at| Utc::now() - at <= threshold);
            let scheduler = if healthy { "healthy" } else { "unhealthy" };
            let database = match state.store.write_failure().await {
                None => "healthy",
                Some(e) => {
                    tracing::warn!("health check: writes to the metadata database fail: {e}");
                    "unhealthy"
                }
            };
            (database, scheduler, latest)
        }
        Err(e) => {
            tracing::warn!("health check: the metadata database failed: {e}");
            ("unhealthy", "unhealthy", None)
        }
    };
    Ok(Json(HealthInfoResponse {
        metadatabase: BaseInfoResponse {
            status: Some(database.to_string()),
        },
        scheduler: SchedulerInfoResponse {
            status: Some(scheduler.to_string()),
            latest_scheduler_heartbeat: latest.map(|at| at.to_rfc3339()),
        },
        triggerer: TriggererInfoResponse {
            status: None,
            latest_triggerer_heartbeat: None,
        },
        dag_processor: None,
    }))
}

/// The process's metrics in Prometheus' (OpenMetrics) text format: Airflow's metric names where
/// Airflow has them (`airflow_ti_successes`, `airflow_pool_open_slots`, …), updraft's own
/// (`updraft_…`) beside them. They name every tenant's DAGs and pools, so a role for every
/// tenant is needed. Also at `/metrics`, where Prometheus looks by default.
#[utoipa::path(
    get,
    path = "/monitor/metrics",
    tag = "Monitor",
    responses((
        status = 200,
        description = "Successful response",
        body = String,
        content_type = "application/openmetrics-text"
    ))
)]
pub async fn get_metrics(
    State(state): State<AppState>,
    Caller(identity): Caller,
) -> Result<axum::response::Response, ApiError> {
    auth::authorize(&identity, Action::Read, Resource::Metrics)?;
    Ok(crate::metrics::response(state.store.as_ref()).await)
}

/// The server's version.
#[utoipa::path(
    get,
    path = "/version",
    tag = "Version",
    responses((status = 200, description = "Successful response", body = VersionInfo))
)]
pub async fn get_version(Caller(identity): Caller) -> Result<Json<VersionInfo>, ApiError> {
    auth::authorize(&identity, Action::Read, Resource::Version)?;
    Ok(Json(VersionInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        git_version: None,
    }))
}
