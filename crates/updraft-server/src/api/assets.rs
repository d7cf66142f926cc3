//! `/assets`: assets (Airflow 3's assets, Airflow 2's datasets) per tenant, their events,
//! events recorded by hand, and the events queued for an asset-triggered DAG. Another
//! tenant's asset is answered as a missing one.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use updraft_store::{
    AssetEventQuery, AssetEventRow, AssetRefKind, AssetReference, AssetRow, NewAssetEvent,
};
use utoipa::{IntoParams, ToSchema};

use super::doc::{E400, E403, E404, E422};
use super::params::paging;
use super::{ApiJson, ApiPath, ApiQuery, tenants_of};
use crate::AppState;
use crate::audit::Entry;
use crate::auth::{self, Action, Caller, Identity, Resource};
use crate::error::ApiError;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AssetsQuery {
    /// Page size (default 50, at most 100).
    #[param(value_type = Option<u32>, minimum = 0)]
    limit: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0)]
    offset: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AssetEventsQuery {
    #[param(value_type = Option<u32>, minimum = 0)]
    limit: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0)]
    offset: Option<String>,
    asset_id: Option<i64>,
    source_dag_id: Option<String>,
    source_run_id: Option<String>,
}

/// A DAG whose schedule names the asset.
#[derive(Debug, Serialize, ToSchema)]
pub struct DagScheduleAssetReference {
    pub dag_id: String,
}

/// A task whose outlets name the asset.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskOutletAssetReference {
    pub dag_id: String,
    pub task_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LastAssetEventResponse {
    pub id: i64,
    pub timestamp: DateTime<Utc>,
}

/// Airflow 3's `AssetResponse`; `team_name` is updraft's tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssetResponse {
    pub id: i64,
    pub name: String,
    pub uri: String,
    pub group: String,
    #[schema(value_type = Object)]
    pub extra: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub scheduled_dags: Vec<DagScheduleAssetReference>,
    pub producing_tasks: Vec<TaskOutletAssetReference>,
    pub consuming_tasks: Vec<TaskOutletAssetReference>,
    pub aliases: Vec<String>,
    pub last_asset_event: Option<LastAssetEventResponse>,
    pub team_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssetCollectionResponse {
    pub assets: Vec<AssetResponse>,
    pub total_entries: u64,
}

/// Airflow 3's `AssetEventResponse`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssetEventResponse {
    pub id: i64,
    pub asset_id: i64,
    pub uri: String,
    pub name: String,
    pub group: String,
    #[schema(value_type = Object)]
    pub extra: serde_json::Value,
    pub source_task_id: Option<String>,
    pub source_dag_id: Option<String>,
    pub source_run_id: Option<String>,
    pub source_map_index: i64,
    pub timestamp: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssetEventCollectionResponse {
    pub asset_events: Vec<AssetEventResponse>,
    pub total_entries: u64,
}

/// Airflow 3's `CreateAssetEventsBody`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAssetEventsBody {
    pub asset_id: i64,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedEventResponse {
    pub dag_id: String,
    pub asset_id: i64,
    pub uri: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedEventCollectionResponse {
    pub queued_events: Vec<QueuedEventResponse>,
    pub total_entries: u64,
}

fn asset_not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("The Asset with ID: `{id}` was not found"))
}

fn event_response(event: &AssetEventRow) -> AssetEventResponse {
    AssetEventResponse {
        id: event.id,
        asset_id: event.asset_id,
        uri: event.uri.clone(),
        name: event.uri.clone(),
        group: "asset".to_owned(),
        extra: event.extra.clone(),
        source_task_id: event.source_task_id.clone(),
        source_dag_id: event.source_dag_id.clone(),
        source_run_id: event.source_run_id.clone(),
        source_map_index: event.source_map_index,
        timestamp: event.timestamp,
    }
}

/// References by (tenant, uri).
pub(crate) type ReferenceIndex = BTreeMap<(String, String), Vec<AssetReference>>;

/// Every asset reference of the loaded DAGs, by the asset's tenant and URI (the API's and the
/// UI's asset pages).
pub(crate) async fn reference_index(state: &AppState) -> Result<ReferenceIndex, ApiError> {
    let mut index = ReferenceIndex::new();
    for r in state.store.asset_references().await? {
        index
            .entry((r.tenant.clone(), r.uri.clone()))
            .or_default()
            .push(r);
    }
    Ok(index)
}

async fn asset_response(
    state: &AppState,
    asset: &AssetRow,
    index: &ReferenceIndex,
) -> Result<AssetResponse, ApiError> {
    let refs = index
        .get(&(asset.tenant.clone(), asset.uri.clone()))
        .map(Vec::as_slice)
        .unwrap_or_default();
    let (last, _) = state
        .store
        .asset_events(&AssetEventQuery {
            asset_id: Some(asset.id),
            paging: updraft_store::api::Paging {
                limit: Some(1),
                offset: 0,
            },
            ..Default::default()
        })
        .await?;
    Ok(AssetResponse {
        id: asset.id,
        name: asset.name.clone(),
        uri: asset.uri.clone(),
        group: "asset".to_owned(),
        extra: asset.extra.clone(),
        created_at: asset.created_at,
        updated_at: asset.updated_at,
        scheduled_dags: refs
            .iter()
            .filter(|r| r.kind == AssetRefKind::Schedule)
            .map(|r| DagScheduleAssetReference {
                dag_id: r.dag_id.clone(),
            })
            .collect(),
        producing_tasks: refs
            .iter()
            .filter(|r| r.kind == AssetRefKind::Outlet)
            .map(|r| TaskOutletAssetReference {
                dag_id: r.dag_id.clone(),
                task_id: r.task_id.clone(),
            })
            .collect(),
        consuming_tasks: Vec::new(),
        aliases: Vec::new(),
        last_asset_event: last.first().map(|e| LastAssetEventResponse {
            id: e.id,
            timestamp: e.timestamp,
        }),
        team_name: asset.tenant.clone(),
    })
}

/// The asset, after checking the caller may do `action` on it; another tenant's asset is
/// answered exactly as a missing one.
async fn find(
    state: &AppState,
    identity: &Identity,
    id: i64,
    action: Action,
) -> Result<AssetRow, ApiError> {
    let asset = state
        .store
        .asset(id)
        .await?
        .ok_or_else(|| asset_not_found(id))?;
    auth::authorize_or_missing(
        identity,
        action,
        Resource::Asset {
            tenant: &asset.tenant,
        },
        || asset_not_found(id),
    )?;
    Ok(asset)
}

fn visible(identity: &Identity, tenant: &str) -> bool {
    auth::allows(identity, Action::Read, Resource::Asset { tenant })
}

/// List the assets of the caller's tenants.
#[utoipa::path(
    get,
    path = "/assets",
    tag = "Asset",
    params(AssetsQuery),
    responses((status = 200, description = "Successful response", body = AssetCollectionResponse), E400, E403, E422)
)]
pub async fn get_assets(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiQuery(query): ApiQuery<AssetsQuery>,
) -> Result<Json<AssetCollectionResponse>, ApiError> {
    auth::authorize(&identity, Action::Read, Resource::Assets)?;
    let page = paging(&query.limit, &query.offset)?;
    let tenants = tenants_of(&identity);
    let (rows, total) = state.store.assets(tenants.as_deref(), &page).await?;
    let index = reference_index(&state).await?;
    let mut assets = Vec::with_capacity(rows.len());
    for row in rows.iter().filter(|a| visible(&identity, &a.tenant)) {
        assets.push(asset_response(&state, row, &index).await?);
    }
    Ok(Json(AssetCollectionResponse {
        assets,
        total_entries: total,
    }))
}

/// One asset.
#[utoipa::path(
    get,
    path = "/assets/{asset_id}",
    tag = "Asset",
    params(("asset_id" = i64, Path)),
    responses((status = 200, description = "Successful response", body = AssetResponse), E403, E404, E422)
)]
pub async fn get_asset(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<AssetResponse>, ApiError> {
    let asset = find(&state, &identity, id, Action::Read).await?;
    let index = reference_index(&state).await?;
    Ok(Json(asset_response(&state, &asset, &index).await?))
}

/// Asset events of the caller's tenants, newest first.
#[utoipa::path(
    get,
    path = "/assets/events",
    tag = "Asset",
    params(AssetEventsQuery),
    responses((status = 200, description = "Successful response", body = AssetEventCollectionResponse), E400, E403, E422)
)]
pub async fn get_asset_events(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiQuery(query): ApiQuery<AssetEventsQuery>,
) -> Result<Json<AssetEventCollectionResponse>, ApiError> {
    auth::authorize(&identity, Action::Read, Resource::Assets)?;
    let (events, total) = state
        .store
        .asset_events(&AssetEventQuery {
            tenants: tenants_of(&identity),
            asset_id: query.asset_id,
            source_dag_id: query.source_dag_id.clone(),
            source_run_id: query.source_run_id.clone(),
            paging: paging(&query.limit, &query.offset)?,
        })
        .await?;
    Ok(Json(AssetEventCollectionResponse {
        asset_events: events
            .iter()
            .filter(|e| visible(&identity, &e.tenant))
            .map(event_response)
            .collect(),
        total_entries: total,
    }))
}

/// Record an asset event by hand; it triggers the tenant's consumers like any other.
#[utoipa::path(
    post,
    path = "/assets/events",
    tag = "Asset",
    request_body = CreateAssetEventsBody,
    responses((status = 200, description = "Successful response", body = AssetEventResponse), E400, E403, E404, E422)
)]
pub async fn create_asset_event(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiJson(body): ApiJson<CreateAssetEventsBody>,
) -> Result<Json<AssetEventResponse>, ApiError> {
    let asset = find(&state, &identity, body.asset_id, Action::Create).await?;
    let recorded = state
        .store
        .record_asset_events(&[NewAssetEvent {
            tenant: asset.tenant.clone(),
            uri: asset.uri.clone(),
            name: None,
            extra: body.extra.clone(),
            source_dag_id: None,
            source_run_id: None,
            source_task_id: None,
            source_map_index: -1,
            timestamp: Utc::now(),
        }])
        .await?;
    state.wake_scheduler();
    Entry::new(&identity, "create_asset_event")
        .tenant(Some(&asset.tenant))
        .extra(serde_json::json!({"asset_id": asset.id, "uri": asset.uri, "extra": body.extra}))
        .record(&state)
        .await;
    let event = recorded
        .first()
        .ok_or_else(|| ApiError::internal("the event was not recorded"))?;
    Ok(Json(event_response(event)))
}

/// Events queued for an asset-triggered DAG, waiting for its condition.
#[utoipa::path(
    get,
    path = "/dags/{dag_id}/assets/queuedEvents",
    tag = "Asset",
    params(("dag_id" = String, Path)),
    responses((status = 200, description = "Successful response", body = QueuedEventCollectionResponse), E403, E404, E422)
)]
pub async fn get_dag_asset_queued_events(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(dag_id): ApiPath<String>,
) -> Result<Json<QueuedEventCollectionResponse>, ApiError> {
    let dag = super::load_dag(&state, &identity, &dag_id, Action::Read).await?;
    let queued: Vec<_> = state
        .store
        .queued_asset_events()
        .await?
        .into_iter()
        .filter(|q| q.dag_id == dag.dag.dag_id)
        .collect();
    let mut asset_ids = BTreeMap::new();
    if !queued.is_empty() {
        let (events, _) = state
            .store
            .asset_events(&AssetEventQuery {
                tenants: Some(vec![dag.dag.tenant.clone()]),
                paging: updraft_store::api::Paging {
                    limit: None,
                    offset: 0,
                },
                ..Default::default()
            })
            .await?;
        asset_ids.extend(events.iter().map(|e| (e.id, e.asset_id)));
    }
    let out: Vec<QueuedEventResponse> = queued
        .iter()
        .filter_map(|q| {
            Some(QueuedEventResponse {
                dag_id: q.dag_id.clone(),
                asset_id: *asset_ids.get(&q.event_id)?,
                uri: q.uri.clone(),
                created_at: q.timestamp,
            })
        })
        .collect();
    Ok(Json(QueuedEventCollectionResponse {
        total_entries: out.len() as u64,
        queued_events: out,
    }))
}
