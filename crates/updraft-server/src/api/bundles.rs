//! `/sources`: the DAG sources (Airflow's DAG bundles) as the schedulers recorded their syncs,
//! and asking for a sync now: by a user (Op of the source's tenant), or by a git host's
//! webhook signed with the source's secret (see `crate::authn::webhook`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use updraft_store::SourceRow;

use super::doc::{E401, E403, E404, E422};
use super::models::{SourceCollectionResponse, SourceResponse, source_response};
use super::{ApiPath, now};
use crate::AppState;
use crate::audit::Entry;
use crate::auth::{self, Action, Caller, Identity, Resource};
use crate::error::ApiError;

fn source_resource(source: &SourceRow) -> Resource<'_> {
    Resource::Source {
        tenant: source.tenant.as_deref(),
        name: &source.name,
    }
}

/// The source, after checking the caller may do `action` on it; one the caller may not know
/// of is answered exactly as a missing one.
async fn find(
    state: &AppState,
    identity: &Identity,
    name: &str,
    action: Action,
) -> Result<SourceRow, ApiError> {
    let source = state
        .store
        .source(name)
        .await?
        .ok_or_else(|| auth::source_not_found(name))?;
    auth::authorize_or_missing(identity, action, source_resource(&source), || {
        auth::source_not_found(name)
    })?;
    Ok(source)
}

/// The DAG sources the caller may see: of its tenants, and those mounted at the root.
#[utoipa::path(
    get,
    path = "/sources",
    tag = "Source",
    responses((status = 200, description = "Successful response", body = SourceCollectionResponse), E401, E403)
)]
pub async fn get_sources(
    State(state): State<AppState>,
    Caller(identity): Caller,
) -> Result<Json<SourceCollectionResponse>, ApiError> {
    auth::authorize(&identity, Action::Read, Resource::Sources)?;
    let sources: Vec<SourceResponse> = state
        .store
        .sources()
        .await?
        .iter()
        .filter(|s| auth::allows(&identity, Action::Read, source_resource(s)))
        .map(source_response)
        .collect();
    Ok(Json(SourceCollectionResponse {
        total_entries: sources.len() as u64,
        sources,
    }))
}

/// One DAG source: its last sync, revision and error.
#[utoipa::path(
    get,
    path = "/sources/{source_name}",
    tag = "Source",
    params(("source_name" = String, Path)),
    responses((status = 200, description = "Successful response", body = SourceResponse), E401, E403, E404, E422)
)]
pub async fn get_source(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<SourceResponse>, ApiError> {
    let source = find(&state, &identity, &name, Action::Read).await?;
    Ok(Json(source_response(&source)))
}

/// Ask for a sync of the source now; a scheduler takes the request (at once when it runs in
/// this process, else within a second). Callable by an Op of the source's tenant (a global
/// Op for a source mounted at the root), or by the source's webhook: a git host's push event
/// signed with the source's secret (`X-Hub-Signature-256`, GitHub's HMAC-SHA256 of the body)
/// or carrying it (`X-Gitlab-Token`).
#[utoipa::path(
    post,
    path = "/sources/{source_name}/sync",
    tag = "Source",
    params(("source_name" = String, Path)),
    responses((status = 202, description = "The sync was asked for", body = SourceResponse), E401, E403, E404, E422)
)]
pub async fn sync_source(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<(StatusCode, Json<SourceResponse>), ApiError> {
    let source = find(&state, &identity, &name, Action::Trigger).await?;
    if !state.store.request_source_sync(&name, now()).await? {
        return Err(auth::source_not_found(&name));
    }
    if let Some(poke) = &state.config.source_sync {
        poke.notify_one();
    }
    Entry::new(&identity, "sync_source")
        .tenant(source.tenant.as_deref())
        .extra(serde_json::json!({ "source": name }))
        .record(&state)
        .await;
    let requested = state.store.source(&name).await?.unwrap_or(source);
    Ok((StatusCode::ACCEPTED, Json(source_response(&requested))))
}
