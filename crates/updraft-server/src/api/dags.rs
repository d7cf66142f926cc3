//! `/dags`: listing, reading, pausing; DAG details and versions.

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use updraft_core::RunState;
use updraft_store::{DagOrder, DagQuery, DagRow, Page, Paging, RunQuery, RunRow};
use utoipa::{IntoParams, ToSchema};

use super::doc::{E400, E403, E404, E422};
use super::models::{
    DagCollectionResponse, DagContext, DagDetailsResponse, DagPatchBody, DagResponse,
    DagVersionCollectionResponse, DagVersionResponse, dag_response, params_json,
};
use super::params::{order_by, paging, parse_bool};
use super::{
    ApiJson, ApiPath, ApiQuery, check_update_mask, dag_not_found, load_dag, now, retain_allowed,
    tenants_of, versions_of,
};
use crate::AppState;
use crate::audit::Entry;
use crate::auth::{self, Action, Caller, Identity, Resource};
use crate::error::ApiError;

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TagsMatchMode {
    Any,
    All,
}

/// Filters of `GET /dags` and `PATCH /dags`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DagsQuery {
    /// Page size (default 50, at most 100).
    #[param(value_type = Option<u32>, minimum = 0)]
    limit: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0)]
    offset: Option<String>,
    /// DAGs with any (or, with `tags_match_mode=all`, every) of these tags.
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    tags: Vec<String>,
    #[param(value_type = Option<TagsMatchMode>)]
    tags_match_mode: Option<String>,
    /// updraft DAGs have no owners: any value matches no DAG.
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    owners: Vec<String>,
    /// Case-insensitive substring of the dag_id; `%` and `_` are SQL LIKE wildcards.
    dag_id_pattern: Option<String>,
    /// Leave out DAGs whose file is gone (default true).
    #[param(value_type = Option<bool>)]
    exclude_stale: Option<String>,
    #[param(value_type = Option<bool>)]
    paused: Option<String>,
    /// `dag_id`, `dag_display_name`, `is_paused`, `last_parsed_time`, `fileloc` or `tenant`;
    /// `-` in front for descending.
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    order_by: Vec<String>,
}

const DAG_ORDER: [(&str, DagOrder); 7] = [
    ("dag_id", DagOrder::DagId),
    ("dag_display_name", DagOrder::DagId),
    ("is_paused", DagOrder::IsPaused),
    ("last_parsed_time", DagOrder::LastParsedAt),
    ("fileloc", DagOrder::Fileloc),
    ("relative_fileloc", DagOrder::Fileloc),
    ("tenant", DagOrder::Tenant),
];

impl DagsQuery {
    fn to_store(&self, identity: &Identity) -> Result<DagQuery, ApiError> {
        let (order, descending) = order_by(&self.order_by, &DAG_ORDER, DagOrder::DagId)?;
        let all_tags = match self.tags_match_mode.as_deref() {
            None | Some("any") => false,
            Some("all") => true,
            Some(other) => {
                return Err(ApiError::unprocessable(format!(
                    "query parameter `tags_match_mode`: expected any or all, got `{other}`"
                )));
            }
        };
        let exclude_stale = parse_bool("exclude_stale", &self.exclude_stale)?.unwrap_or(true);
        Ok(DagQuery {
            tenants: tenants_of(identity),
            dag_id_pattern: self.dag_id_pattern.clone().filter(|p| !p.is_empty()),
            tags: self
                .tags
                .iter()
                .flat_map(|t| t.split(','))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
            all_tags,
            paused: parse_bool("paused", &self.paused)?,
            active: exclude_stale.then_some(true),
            order_by: order,
            descending,
            paging: paging(&self.limit, &self.offset)?,
        })
    }

    fn matches_nothing(&self) -> bool {
        self.owners.iter().any(|o| !o.trim().is_empty())
    }
}

/// Responses for a page of DAGs: next runs in one query, import errors once.
async fn dag_responses(state: &AppState, rows: &[DagRow]) -> Result<Vec<DagResponse>, ApiError> {
    let ids: Vec<String> = rows.iter().map(|r| r.dag.dag_id.clone()).collect();
    let latest: HashMap<String, RunRow> = state
        .store
        .latest_scheduled_runs(&ids)
        .await?
        .into_iter()
        .map(|r| (r.dag_id.clone(), r))
        .collect();
    let broken: HashSet<String> = state
        .store
        .import_errors()
        .await?
        .into_iter()
        .map(|e| e.filename)
        .collect();
    let now = now();
    Ok(rows
        .iter()
        .map(|row| {
            let ctx = DagContext {
                dags_folder: &state.config.dags_folder,
                broken_files: &broken,
                latest_scheduled: latest.get(&row.dag.dag_id),
                now,
            };
            dag_response(row, &ctx)
        })
        .collect())
}

async fn dag_page(
    state: &AppState,
    identity: &Identity,
    query: &DagsQuery,
    action: Action,
) -> Result<Page<DagRow>, ApiError> {
    let store_query = query.to_store(identity)?;
    let mut page = if query.matches_nothing() {
        Page {
            items: Vec::new(),
            total: 0,
        }
    } else {
        state.store.dags_page(&store_query).await?
    };
    retain_allowed(identity, action, &mut page.items, |row| {
        (&row.dag.tenant, &row.dag.dag_id)
    });
    Ok(page)
}

/// List DAGs.
#[utoipa::path(
    get,
    path = "/dags",
    tag = "DAG",
    params(DagsQuery),
    responses((status = 200, description = "Successful response", body = DagCollectionResponse), E400, E403, E422)
)]
pub async fn get_dags(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiQuery(query): ApiQuery<DagsQuery>,
) -> Result<Json<DagCollectionResponse>, ApiError> {
    auth::authorize(&identity, Action::Read, Resource::Dags)?;
    let page = dag_page(&state, &identity, &query, Action::Read).await?;
    Ok(Json(DagCollectionResponse {
        dags: dag_responses(&state, &page.items).await?,
        total_entries: page.total,
    }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UpdateMaskQuery {
    /// Fields of the body to apply (default: every field given).
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    update_mask: Vec<String>,
}

fn check_dag_mask(mask: &[String]) -> Result<(), ApiError> {
    let fields = check_update_mask(mask, &["is_paused"])?;
    if !mask.is_empty() && fields.is_empty() {
        return Err(ApiError::bad_request(
            "Only `is_paused` field can be updated through the REST API",
        ));
    }
    Ok(())
}

/// Pause or unpause the DAGs matching the filters (one page of them).
#[utoipa::path(
    patch,
    path = "/dags",
    tag = "DAG",
    params(DagsQuery, UpdateMaskQuery),
    request_body = DagPatchBody,
    responses((status = 200, description = "Successful response", body = DagCollectionResponse), E400, E403, E404, E422)
)]
pub async fn patch_dags(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiQuery(query): ApiQuery<DagsQuery>,
    ApiQuery(mask): ApiQuery<UpdateMaskQuery>,
    ApiJson(body): ApiJson<DagPatchBody>,
) -> Result<Json<DagCollectionResponse>, ApiError> {
    auth::authorize(&identity, Action::Read, Resource::Dags)?;
    check_dag_mask(&mask.update_mask)?;
    let page = dag_page(&state, &identity, &query, Action::Edit).await?;
    for row in &page.items {
        state
            .store
            .set_paused(&row.dag.dag_id, body.is_paused)
            .await?;
        Entry::new(&identity, "patch_dag")
            .dag(&row.dag.tenant, &row.dag.dag_id)
            .extra(serde_json::json!({ "is_paused": body.is_paused }))
            .record(&state)
            .await;
    }
    if !page.items.is_empty() {
        state.wake_scheduler();
    }
    let mut rows = page.items;
    for row in &mut rows {
        row.is_paused = body.is_paused;
    }
    Ok(Json(DagCollectionResponse {
        dags: dag_responses(&state, &rows).await?,
        total_entries: page.total,
    }))
}

/// One DAG.
#[utoipa::path(
    get,
    path = "/dags/{dag_id}",
    tag = "DAG",
    params(("dag_id" = String, Path)),
    responses((status = 200, description = "Successful response", body = DagResponse), E403, E404, E422)
)]
pub async fn get_dag(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(dag_id): ApiPath<String>,
) -> Result<Json<DagResponse>, ApiError> {
    let row = load_dag(&state, &identity, &dag_id, Action::Read).await?;
    let mut responses = dag_responses(&state, std::slice::from_ref(&row)).await?;
    Ok(Json(responses.remove(0)))
}

/// Pause or unpause a DAG.
#[utoipa::path(
    patch,
    path = "/dags/{dag_id}",
    tag = "DAG",
    params(("dag_id" = String, Path), UpdateMaskQuery),
    request_body = DagPatchBody,
    responses((status = 200, description = "Successful response", body = DagResponse), E400, E403, E404, E422)
)]
pub async fn patch_dag(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(dag_id): ApiPath<String>,
    ApiQuery(mask): ApiQuery<UpdateMaskQuery>,
    ApiJson(body): ApiJson<DagPatchBody>,
) -> Result<Json<DagResponse>, ApiError> {
    let mut row = load_dag(&state, &identity, &dag_id, Action::Edit).await?;
    check_dag_mask(&mask.update_mask)?;
    if !state.store.set_paused(&dag_id, body.is_paused).await? {
        return Err(dag_not_found(&dag_id));
    }
    state.wake_scheduler();
    Entry::new(&identity, "patch_dag")
        .dag(&row.dag.tenant, &dag_id)
        .extra(serde_json::json!({ "is_paused": body.is_paused }))
        .record(&state)
        .await;
    row.is_paused = body.is_paused;
    let mut responses = dag_responses(&state, std::slice::from_ref(&row)).await?;
    Ok(Json(responses.remove(0)))
}

/// One DAG with its schedule, params and latest version.
#[utoipa::path(
    get,
    path = "/dags/{dag_id}/details",
    tag = "DAG",
    params(("dag_id" = String, Path)),
    responses((status = 200, description = "Successful response", body = DagDetailsResponse), E403, E404, E422)
)]
pub async fn get_dag_details(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(dag_id): ApiPath<String>,
) -> Result<Json<DagDetailsResponse>, ApiError> {
    let row = load_dag(&state, &identity, &dag_id, Action::Read).await?;
    let base = dag_responses(&state, std::slice::from_ref(&row))
        .await?
        .remove(0);
    let active = state
        .store
        .runs_page(&RunQuery {
            dag_id: Some(dag_id.clone()),
            states: vec![RunState::Queued, RunState::Running],
            paging: Paging {
                limit: Some(0),
                offset: 0,
            },
            ..Default::default()
        })
        .await?
        .total;
    let versions = versions_of(&state, &dag_id).await?;
    let dag = &row.dag;
    Ok(Json(DagDetailsResponse {
        catchup: dag.catchup,
        dag_run_timeout: None,
        asset_expression: None,
        doc_md: None,
        start_date: dag.start_date,
        end_date: dag.end_date,
        is_paused_upon_creation: dag.is_paused_upon_creation,
        params: Some(params_json(dag)),
        render_template_as_native_obj: false,
        template_search_path: None,
        timezone: Some(dag.timezone.name().to_string()),
        last_parsed: Some(row.last_parsed_at),
        default_args: None,
        owner_links: None,
        is_favorite: false,
        active_runs_count: i64::try_from(active).unwrap_or(i64::MAX),
        concurrency: i64::from(dag.max_active_tasks),
        latest_dag_version: versions.response(&row.version),
        rerun_with_latest_version: None,
        dag: base,
    }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DagVersionsQuery {
    #[param(value_type = Option<u32>, minimum = 0)]
    limit: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0)]
    offset: Option<String>,
    #[param(value_type = Option<i64>)]
    version_number: Option<String>,
    /// `id`, `version_number` or `created_at`; `-` in front for descending.
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    order_by: Vec<String>,
}

/// The recorded versions of a DAG, numbered from 1 in the order they were first seen.
#[utoipa::path(
    get,
    path = "/dags/{dag_id}/dagVersions",
    tag = "DagVersion",
    params(("dag_id" = String, Path), DagVersionsQuery),
    responses((status = 200, description = "Successful response", body = DagVersionCollectionResponse), E400, E403, E404, E422)
)]
pub async fn get_dag_versions(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(dag_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<DagVersionsQuery>,
) -> Result<Json<DagVersionCollectionResponse>, ApiError> {
    load_dag(&state, &identity, &dag_id, Action::Read).await?;
    let versions = versions_of(&state, &dag_id).await?;
    let (_, descending) = order_by(
        &query.order_by,
        &[("id", ()), ("version_number", ()), ("created_at", ())],
        (),
    )?;
    let page = paging(&query.limit, &query.offset)?;
    let wanted = query
        .version_number
        .as_deref()
        .map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                ApiError::unprocessable(format!(
                    "query parameter `version_number`: expected an integer, got `{v}`"
                ))
            })
        })
        .transpose()?;
    let mut all: Vec<DagVersionResponse> = versions
        .rows
        .iter()
        .filter_map(|r| versions.response(&r.version))
        .filter(|r| wanted.is_none_or(|n| r.version_number == n))
        .collect();
    if descending {
        all.reverse();
    }
    let total = all.len() as u64;
    let dag_versions = all
        .into_iter()
        .skip(usize::try_from(page.offset).unwrap_or(usize::MAX))
        .take(page.limit.map_or(usize::MAX, |l| l as usize))
        .collect();
    Ok(Json(DagVersionCollectionResponse {
        dag_versions,
        total_entries: total,
    }))
}

/// One version of a DAG, by number.
#[utoipa::path(
    get,
    path = "/dags/{dag_id}/dagVersions/{version_number}",
    tag = "DagVersion",
    params(("dag_id" = String, Path), ("version_number" = i64, Path)),
    responses((status = 200, description = "Successful response", body = DagVersionResponse), E403, E404, E422)
)]
pub async fn get_dag_version(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath((dag_id, version_number)): ApiPath<(String, i64)>,
) -> Result<Json<DagVersionResponse>, ApiError> {
    load_dag(&state, &identity, &dag_id, Action::Read).await?;
    let versions = versions_of(&state, &dag_id).await?;
    versions
        .by_number(version_number)
        .and_then(|row| versions.response(&row.version))
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "The DagVersion with dag_id: `{dag_id}` and version_number: \
                 `{version_number}` was not found"
            ))
        })
}
