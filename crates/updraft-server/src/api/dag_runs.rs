//! `/dags/{dag_id}/dagRuns`: listing, triggering, marking, deleting and clearing runs.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use updraft_core::timetable::{DataInterval, manual_interval};
use updraft_core::{RunState, RunType, TaskState};
use updraft_runs::{RunError, RunRequest, create_run};
use updraft_store::{RunOrder, RunQuery, RunRow};
use utoipa::{IntoParams, ToSchema};

use super::doc::{E400, E403, E404, E409, E422};
use super::models::{
    DagRunClearBody, DagRunCollectionResponse, DagRunPatchBody, DagRunResponse,
    TaskInstanceCollectionResponse, TriggerDagRunPostBody, dag_run_response,
};
use super::params::{check_run_id, order_by, paging, parse_list, time_range};
use super::task_instances::ti_responses;
use super::{
    ApiJson, ApiPath, ApiQuery, check_note, check_update_mask, load_dag, load_run, notes_of, now,
    patch_note, retain_allowed, tenants_of, versions_of_many,
};
use crate::AppState;
use crate::audit::Entry;
use crate::auth::{self, Action, Caller, Resource};
use crate::error::ApiError;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DagRunsQuery {
    /// Page size (default 50, at most 100).
    #[param(value_type = Option<u32>, minimum = 0)]
    limit: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0)]
    offset: Option<String>,
    /// queued, running, success or failed; repeat for several.
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    state: Vec<String>,
    /// scheduled, manual or backfill; repeat for several.
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    run_type: Vec<String>,
    /// Case-insensitive substring of the run id; `%` and `_` are SQL LIKE wildcards.
    run_id_pattern: Option<String>,
    #[param(value_type = Option<String>, format = DateTime)]
    logical_date_gte: Option<String>,
    #[param(value_type = Option<String>, format = DateTime)]
    logical_date_gt: Option<String>,
    #[param(value_type = Option<String>, format = DateTime)]
    logical_date_lte: Option<String>,
    #[param(value_type = Option<String>, format = DateTime)]
    logical_date_lt: Option<String>,
    #[param(value_type = Option<String>, format = DateTime)]
    start_date_gte: Option<String>,
    #[param(value_type = Option<String>, format = DateTime)]
    start_date_gt: Option<String>,
    #[param(value_type = Option<String>, format = DateTime)]
    start_date_lte: Option<String>,
    #[param(value_type = Option<String>, format = DateTime)]
    start_date_lt: Option<String>,
    #[param(value_type = Option<String>, format = DateTime)]
    end_date_gte: Option<String>,
    #[param(value_type = Option<String>, format = DateTime)]
    end_date_gt: Option<String>,
    #[param(value_type = Option<String>, format = DateTime)]
    end_date_lte: Option<String>,
    #[param(value_type = Option<String>, format = DateTime)]
    end_date_lt: Option<String>,
    /// `id` (default), `dag_id`, `run_id`, `state`, `run_type`, `logical_date`,
    /// `data_interval_start`, `data_interval_end`, `queued_at`, `start_date`, `end_date`;
    /// `-` in front for descending.
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    order_by: Vec<String>,
}

const RUN_ORDER: [(&str, RunOrder); 12] = [
    ("id", RunOrder::Id),
    ("dag_id", RunOrder::DagId),
    ("run_id", RunOrder::RunId),
    ("dag_run_id", RunOrder::RunId),
    ("state", RunOrder::State),
    ("run_type", RunOrder::RunType),
    ("logical_date", RunOrder::LogicalDate),
    ("data_interval_start", RunOrder::DataIntervalStart),
    ("data_interval_end", RunOrder::DataIntervalEnd),
    ("queued_at", RunOrder::QueuedAt),
    ("start_date", RunOrder::StartDate),
    ("end_date", RunOrder::EndDate),
];

fn parse_run_type(name: &str) -> Option<RunType> {
    name.parse().ok()
}

fn parse_run_state(name: &str) -> Option<RunState> {
    name.parse().ok()
}

/// Responses for runs, with their versions and notes.
pub(super) async fn run_responses(
    state: &AppState,
    runs: &[RunRow],
) -> Result<Vec<DagRunResponse>, ApiError> {
    let dag_ids: Vec<String> = runs.iter().map(|r| r.dag_id.clone()).collect();
    let versions = versions_of_many(state, dag_ids).await?;
    let pks: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let notes = notes_of(state, &pks).await?;
    Ok(runs
        .iter()
        .map(|run| {
            let note = notes.get(&(run.id, None)).map(String::as_str);
            dag_run_response(run, versions.get(&run.dag_id), note)
        })
        .collect())
}

async fn run_response(state: &AppState, run: &RunRow) -> Result<DagRunResponse, ApiError> {
    Ok(run_responses(state, std::slice::from_ref(run))
        .await?
        .remove(0))
}

/// A run read again after a change.
async fn reload(state: &AppState, run: &RunRow) -> Result<RunRow, ApiError> {
    state
        .store
        .run_by_pk(run.id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("run {} was deleted", run.run_id)))
}

/// List runs of a DAG (`~` for every DAG).
#[utoipa::path(
    get,
    path = "/dags/{dag_id}/dagRuns",
    tag = "DagRun",
    params(("dag_id" = String, Path, description = "`~` for every DAG"), DagRunsQuery),
    responses((status = 200, description = "Successful response", body = DagRunCollectionResponse), E400, E403, E404, E422)
)]
pub async fn get_dag_runs(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(dag_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<DagRunsQuery>,
) -> Result<Json<DagRunCollectionResponse>, ApiError> {
    let dag_filter = if dag_id == "~" {
        auth::authorize(&identity, Action::Read, Resource::Dags)?;
        None
    } else {
        load_dag(&state, &identity, &dag_id, Action::Read).await?;
        Some(dag_id)
    };
    let (order, descending) = order_by(&query.order_by, &RUN_ORDER, RunOrder::Id)?;
    let store_query = RunQuery {
        tenants: tenants_of(&identity),
        dag_id: dag_filter,
        states: parse_list(
            "state",
            &query.state,
            "queued, running, success or failed",
            parse_run_state,
        )?,
        run_types: parse_list(
            "run_type",
            &query.run_type,
            "scheduled, manual or backfill",
            parse_run_type,
        )?,
        run_id_pattern: query.run_id_pattern.clone().filter(|p| !p.is_empty()),
        logical_date: time_range(
            "logical_date",
            &query.logical_date_gte,
            &query.logical_date_gt,
            &query.logical_date_lte,
            &query.logical_date_lt,
        )?,
        start_date: time_range(
            "start_date",
            &query.start_date_gte,
            &query.start_date_gt,
            &query.start_date_lte,
            &query.start_date_lt,
        )?,
        end_date: time_range(
            "end_date",
            &query.end_date_gte,
            &query.end_date_gt,
            &query.end_date_lte,
            &query.end_date_lt,
        )?,
        order_by: order,
        descending,
        paging: paging(&query.limit, &query.offset)?,
    };
    let mut page = state.store.runs_page(&store_query).await?;
    retain_allowed(&identity, Action::Read, &mut page.items, |run| {
        (&run.tenant, &run.dag_id)
    });
    Ok(Json(DagRunCollectionResponse {
        dag_runs: run_responses(&state, &page.items).await?,
        total_entries: page.total,
    }))
}

/// One run.
#[utoipa::path(
    get,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}",
    tag = "DagRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)),
    responses((status = 200, description = "Successful response", body = DagRunResponse), E403, E404, E422)
)]
pub async fn get_dag_run(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath((dag_id, run_id)): ApiPath<(String, String)>,
) -> Result<Json<DagRunResponse>, ApiError> {
    let run = load_run(&state, &identity, &dag_id, &run_id, Action::Read).await?;
    Ok(Json(run_response(&state, &run).await?))
}

fn run_error(e: RunError) -> ApiError {
    match e {
        RunError::Store(e) => e.into(),
        RunError::DagNotFound(dag_id) => super::dag_not_found(&dag_id),
        RunError::InvalidConf { message, .. } => ApiError::bad_request(message),
        RunError::RunExists { dag_id, run_id } => ApiError::conflict(format!(
            "A DAG run with dag_id `{dag_id}` already exists at this logical date or with \
             run_id `{run_id}`"
        )),
    }
}

/// Trigger a run.
#[utoipa::path(
    post,
    path = "/dags/{dag_id}/dagRuns",
    tag = "DagRun",
    params(("dag_id" = String, Path)),
    request_body = TriggerDagRunPostBody,
    responses((status = 200, description = "Successful response", body = DagRunResponse), E400, E403, E404, E409, E422)
)]
pub async fn trigger_dag_run(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(dag_id): ApiPath<String>,
    ApiJson(body): ApiJson<TriggerDagRunPostBody>,
) -> Result<Json<DagRunResponse>, ApiError> {
    let row = load_dag(&state, &identity, &dag_id, Action::Trigger).await?;
    if !row.is_active {
        return Err(ApiError::not_found(format!(
            "The Dag with ID: `{dag_id}` is stale: its file `{}` is gone or no longer defines it",
            row.dag.fileloc
        )));
    }
    if let Some(run_id) = &body.dag_run_id {
        check_run_id(run_id)?;
    }
    check_note(body.note.as_deref())?;
    if body.partition_key.is_some() {
        return Err(ApiError::bad_request(
            "partition_key: updraft has no partitioned runs",
        ));
    }
    let now = now();
    let logical_date = body.logical_date.unwrap_or(now);
    let interval = match (body.data_interval_start, body.data_interval_end) {
        (None, None) => manual_interval(&row.dag, logical_date),
        (Some(start), Some(end)) if start <= end => DataInterval { start, end },
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "data_interval_start must not be after data_interval_end",
            ));
        }
        _ => {
            return Err(ApiError::unprocessable(
                "Either both data_interval_start and data_interval_end must be provided or \
                 both must be None",
            ));
        }
    };
    let request = RunRequest {
        run_type: RunType::Manual,
        run_id: body.dag_run_id.clone(),
        logical_date,
        interval,
        conf: serde_json::Value::Object(body.conf.clone().unwrap_or_default()),
    };
    let run = create_run(state.store.as_ref(), &row.dag, &row.version, request, now)
        .await
        .map_err(run_error)?;
    if let Some(note) = &body.note {
        state.store.set_note(run.id, None, Some(note)).await?;
    }
    state.wake_scheduler();
    Entry::new(&identity, "trigger_dag_run")
        .dag(&run.tenant, &dag_id)
        .run(&run.run_id)
        .extra(serde_json::json!({
            "dag_run_id": body.dag_run_id,
            "logical_date": body.logical_date,
            "data_interval_start": body.data_interval_start,
            "data_interval_end": body.data_interval_end,
            "conf": body.conf,
            "note": body.note,
        }))
        .record(&state)
        .await;
    Ok(Json(run_response(&state, &run).await?))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunUpdateMaskQuery {
    /// Fields of the body to apply: `state`, `note` (default: every field given).
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    update_mask: Vec<String>,
}

/// Mark a run (`success` or `failed` also sets its task instances, as Airflow does) or set
/// its note.
#[utoipa::path(
    patch,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}",
    tag = "DagRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), RunUpdateMaskQuery),
    request_body = DagRunPatchBody,
    responses((status = 200, description = "Successful response", body = DagRunResponse), E400, E403, E404, E422)
)]
pub async fn patch_dag_run(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath((dag_id, run_id)): ApiPath<(String, String)>,
    ApiQuery(mask): ApiQuery<RunUpdateMaskQuery>,
    ApiJson(body): ApiJson<DagRunPatchBody>,
) -> Result<Json<DagRunResponse>, ApiError> {
    let run = load_run(&state, &identity, &dag_id, &run_id, Action::Edit).await?;
    let fields = check_update_mask(&mask.update_mask, &["state", "note"])?;
    let wanted = |field: &str| fields.is_empty() || fields.iter().any(|f| f == field);
    if wanted("state") {
        if let Some(new_state) = body.state {
            state
                .store
                .mark_run_and_instances(run.id, new_state.into(), now())
                .await?;
            state.wake_scheduler();
        } else if !fields.is_empty() {
            return Err(ApiError::bad_request(
                "update_mask names `state`, which is null",
            ));
        }
    }
    if wanted("note") {
        patch_note(&state, run.id, None, &body.note, !fields.is_empty()).await?;
    }
    Entry::new(&identity, "patch_dag_run")
        .dag(&run.tenant, &dag_id)
        .run(&run_id)
        .extra(serde_json::json!({
            "state": body.state.map(|s| format!("{s:?}").to_lowercase()),
            "note": body.note,
            "update_mask": fields,
        }))
        .record(&state)
        .await;
    let run = reload(&state, &run).await?;
    Ok(Json(run_response(&state, &run).await?))
}

/// Delete a run with its task instances and their history.
#[utoipa::path(
    delete,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}",
    tag = "DagRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)),
    responses((status = 204, description = "Deleted"), E403, E404, E422)
)]
pub async fn delete_dag_run(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath((dag_id, run_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let run = load_run(&state, &identity, &dag_id, &run_id, Action::Delete).await?;
    state.store.delete_run(run.id).await?;
    // Its slot under max_active_runs is free now.
    state.wake_scheduler();
    Entry::new(&identity, "delete_dag_run")
        .dag(&run.tenant, &dag_id)
        .run(&run_id)
        .record(&state)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The task instances a dry run would clear, or the cleared run.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ClearDagRunResponse {
    DryRun(TaskInstanceCollectionResponse),
    Cleared(Box<DagRunResponse>),
}

/// Clear a run's task instances (all, or the failed ones) so they run again.
#[utoipa::path(
    post,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/clear",
    tag = "DagRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)),
    request_body = DagRunClearBody,
    responses((status = 200, description = "Successful response", body = ClearDagRunResponse), E400, E403, E404, E422)
)]
pub async fn clear_dag_run(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath((dag_id, run_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<DagRunClearBody>,
) -> Result<Json<ClearDagRunResponse>, ApiError> {
    let run = load_run(&state, &identity, &dag_id, &run_id, Action::Edit).await?;
    check_note(body.note.as_deref())?;
    let tis: Vec<_> = state
        .store
        .task_instances(run.id)
        .await?
        .into_iter()
        .filter(|ti| {
            !body.only_failed || matches!(ti.state, TaskState::Failed | TaskState::UpstreamFailed)
        })
        .collect();
    if body.dry_run {
        let total = tis.len() as u64;
        return Ok(Json(ClearDagRunResponse::DryRun(
            TaskInstanceCollectionResponse {
                task_instances: ti_responses(&state, &tis).await?,
                total_entries: total,
            },
        )));
    }
    let task_ids: Vec<String> = tis.iter().map(|ti| ti.task_id.clone()).collect();
    if !task_ids.is_empty() {
        state
            .store
            .clear_task_instances(run.id, &task_ids, now())
            .await?;
        state.wake_scheduler();
    }
    if let Some(note) = &body.note {
        state.store.set_note(run.id, None, Some(note)).await?;
    }
    Entry::new(&identity, "clear_dag_run")
        .dag(&run.tenant, &dag_id)
        .run(&run_id)
        .extra(serde_json::json!({
            "only_failed": body.only_failed,
            "task_ids": task_ids,
            "note": body.note,
        }))
        .record(&state)
        .await;
    let run = reload(&state, &run).await?;
    Ok(Json(ClearDagRunResponse::Cleared(Box::new(
        run_response(&state, &run).await?,
    ))))
}
