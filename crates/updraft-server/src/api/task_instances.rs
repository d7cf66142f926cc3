//! Task instances: listing, reading, marking, clearing, and their tries.

use std::collections::{BTreeSet, HashMap};

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use updraft_core::TaskState;
use updraft_dag::Dag;
use updraft_store::{Paging, RunQuery, RunRow, TiKey, TiOrder, TiQuery, TiRow, TimeRange};
use utoipa::IntoParams;

use super::doc::{E400, E403, E404, E422};
use super::models::{
    ClearTaskInstancesBody, PatchTaskInstanceBody, TaskInstanceCollectionResponse,
    TaskInstanceHistoryCollectionResponse, TaskInstanceHistoryResponse, TaskInstanceResponse,
    TiContext, task_id_of, ti_response, try_response,
};
use super::params::{order_by, paging, parse_list, time_range};
use super::{
    ApiJson, ApiPath, ApiQuery, check_note, check_update_mask, load_dag, load_run, notes_of, now,
    patch_note, retain_allowed, tenants_of, versions_of_many,
};
use crate::AppState;
use crate::audit::Entry;
use crate::auth::{self, Action, Caller, Identity, Resource};
use crate::error::ApiError;

/// Responses for task instances of any runs: their runs, pinned definitions, versions and
/// notes are read once each. Instances whose run vanished meanwhile are left out.
pub(super) async fn ti_responses(
    state: &AppState,
    tis: &[TiRow],
) -> Result<Vec<TaskInstanceResponse>, ApiError> {
    let mut runs: HashMap<i64, RunRow> = HashMap::new();
    let mut dags: HashMap<(String, String), Option<Dag>> = HashMap::new();
    for ti in tis {
        if runs.contains_key(&ti.run_pk) {
            continue;
        }
        if let Some(run) = state.store.run_by_pk(ti.run_pk).await? {
            let key = (run.dag_id.clone(), run.version.clone());
            if let std::collections::hash_map::Entry::Vacant(slot) = dags.entry(key) {
                let (dag_id, version) = slot.key();
                let dag = state.store.dag_version(dag_id, version).await?;
                slot.insert(dag);
            }
            runs.insert(run.id, run);
        }
    }
    let dag_ids: Vec<String> = runs.values().map(|r| r.dag_id.clone()).collect();
    let versions = versions_of_many(state, dag_ids).await?;
    let pks: Vec<i64> = runs.keys().copied().collect();
    let notes = notes_of(state, &pks).await?;
    Ok(tis
        .iter()
        .filter_map(|ti| {
            let run = runs.get(&ti.run_pk)?;
            let dag = dags
                .get(&(run.dag_id.clone(), run.version.clone()))
                .and_then(Option::as_ref);
            let ctx = TiContext {
                run,
                dag,
                versions: versions.get(&run.dag_id),
                note: notes
                    .get(&(ti.run_pk, Some(ti.task_id.clone())))
                    .map(String::as_str),
            };
            Some(ti_response(ti, &ctx))
        })
        .collect())
}

fn ti_not_found(dag_id: &str, run_id: &str, task_id: &str) -> ApiError {
    mapped_ti_not_found(dag_id, run_id, task_id, -1)
}

fn mapped_ti_not_found(dag_id: &str, run_id: &str, task_id: &str, map_index: i32) -> ApiError {
    ApiError::not_found(format!(
        "The Task Instance with dag_id: `{dag_id}`, dag_run_id: `{run_id}`, task_id: \
         `{task_id}` and map_index: `{map_index}` was not found"
    ))
}

/// The `map_index` query parameter: -1 (an unmapped instance) when absent.
pub(super) fn map_index_param(text: &Option<String>) -> Result<i32, ApiError> {
    match text.as_deref().map(str::trim) {
        None => Ok(-1),
        Some(text) => text
            .parse::<i32>()
            .ok()
            .filter(|i| *i >= -1)
            .ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "query parameter `map_index`: expected an integer of at least -1, got `{text}`"
                ))
            }),
    }
}

/// `none`, `no_status` and `null` name Airflow's null state.
fn parse_ti_state(name: &str) -> Option<TaskState> {
    match name {
        "none" | "no_status" | "null" => Some(TaskState::None),
        other => other.parse().ok(),
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskInstancesQuery {
    /// Page size (default 50, at most 100).
    #[param(value_type = Option<u32>, minimum = 0)]
    limit: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0)]
    offset: Option<String>,
    /// Only this task.
    task_id: Option<String>,
    /// Airflow's task instance states, `no_status` for none; repeat for several.
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    state: Vec<String>,
    /// Repeat for several.
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    pool: Vec<String>,
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
    /// `id`/`map_index` (default: by run, then task), `task_id`, `dag_id`, `run_id`, `state`,
    /// `try_number`, `pool`, `priority_weight`, `logical_date`, `queued_when`, `start_date`,
    /// `end_date`; `-` in front for descending.
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    order_by: Vec<String>,
}

const TI_ORDER: [(&str, TiOrder); 15] = [
    ("id", TiOrder::Run),
    ("map_index", TiOrder::Run),
    ("task_id", TiOrder::TaskId),
    ("dag_id", TiOrder::DagId),
    ("run_id", TiOrder::RunId),
    ("dag_run_id", TiOrder::RunId),
    ("state", TiOrder::State),
    ("try_number", TiOrder::TryNumber),
    ("pool", TiOrder::Pool),
    ("priority_weight", TiOrder::PriorityWeight),
    ("logical_date", TiOrder::LogicalDate),
    ("queued_when", TiOrder::QueuedAt),
    ("queued_dttm", TiOrder::QueuedAt),
    ("start_date", TiOrder::StartDate),
    ("end_date", TiOrder::EndDate),
];

/// List the task instances of a run (`~` for every run, and `~` as dag_id for every DAG).
#[utoipa::path(
    get,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
    tag = "Task Instance",
    params(
        ("dag_id" = String, Path, description = "`~` for every DAG"),
        ("dag_run_id" = String, Path, description = "`~` for every run"),
        TaskInstancesQuery
    ),
    responses((status = 200, description = "Successful response", body = TaskInstanceCollectionResponse), E400, E403, E404, E422)
)]
pub async fn get_task_instances(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath((dag_id, run_id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<TaskInstancesQuery>,
) -> Result<Json<TaskInstanceCollectionResponse>, ApiError> {
    let mut store_query = TiQuery {
        tenants: tenants_of(&identity),
        ..Default::default()
    };
    if dag_id == "~" {
        auth::authorize(&identity, Action::Read, Resource::Dags)?;
        if run_id != "~" {
            store_query.run_id = Some(run_id);
        }
    } else if run_id == "~" {
        load_dag(&state, &identity, &dag_id, Action::Read).await?;
        store_query.dag_id = Some(dag_id);
    } else {
        let run = load_run(&state, &identity, &dag_id, &run_id, Action::Read).await?;
        store_query.run_pk = Some(run.id);
    }
    let (order, descending) = order_by(&query.order_by, &TI_ORDER, TiOrder::Run)?;
    store_query.task_ids = query.task_id.iter().cloned().collect();
    store_query.states = parse_list(
        "state",
        &query.state,
        "a task instance state",
        parse_ti_state,
    )?;
    store_query.pools = parse_list("pool", &query.pool, "a pool name", |p| Some(p.to_string()))?;
    store_query.logical_date = time_range(
        "logical_date",
        &query.logical_date_gte,
        &query.logical_date_gt,
        &query.logical_date_lte,
        &query.logical_date_lt,
    )?;
    store_query.start_date = time_range(
        "start_date",
        &query.start_date_gte,
        &query.start_date_gt,
        &query.start_date_lte,
        &query.start_date_lt,
    )?;
    store_query.end_date = time_range(
        "end_date",
        &query.end_date_gte,
        &query.end_date_gt,
        &query.end_date_lte,
        &query.end_date_lt,
    )?;
    store_query.order_by = order;
    store_query.descending = descending;
    store_query.paging = paging(&query.limit, &query.offset)?;
    let mut page = state.store.task_instances_page(&store_query).await?;
    retain_allowed(&identity, Action::Read, &mut page.items, |ti| {
        (&ti.tenant, &ti.dag_id)
    });
    Ok(Json(TaskInstanceCollectionResponse {
        task_instances: ti_responses(&state, &page.items).await?,
        total_entries: page.total,
    }))
}

/// The run and one of its task instances, after checking the caller may do `action`.
async fn load_ti(
    state: &AppState,
    identity: &Identity,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    action: Action,
) -> Result<(RunRow, TiRow), ApiError> {
    load_mapped_ti(state, identity, (dag_id, run_id, task_id), -1, action).await
}

/// [`load_ti`] of the instance with `map_index`.
async fn load_mapped_ti(
    state: &AppState,
    identity: &Identity,
    (dag_id, run_id, task_id): (&str, &str, &str),
    map_index: i32,
    action: Action,
) -> Result<(RunRow, TiRow), ApiError> {
    let run = load_run(state, identity, dag_id, run_id, action).await?;
    let ti = state
        .store
        .task_instance(&TiKey {
            run_pk: run.id,
            task_id: task_id.to_string(),
            map_index,
        })
        .await?
        .ok_or_else(|| mapped_ti_not_found(dag_id, run_id, task_id, map_index))?;
    Ok((run, ti))
}

/// One instance of a mapped task, by map index (-1: an unmapped instance, as the plain
/// route gives it).
#[utoipa::path(
    get,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}",
    tag = "Task Instance",
    params(
        ("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        ("map_index" = i32, Path, minimum = -1)
    ),
    responses((status = 200, description = "Successful response", body = TaskInstanceResponse), E403, E404, E422)
)]
pub async fn get_mapped_task_instance(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath((dag_id, run_id, task_id, map_index)): ApiPath<(String, String, String, String)>,
) -> Result<Json<TaskInstanceResponse>, ApiError> {
    let map_index = map_index_param(&Some(map_index))?;
    let names = (dag_id.as_str(), run_id.as_str(), task_id.as_str());
    let (_, ti) = load_mapped_ti(&state, &identity, names, map_index, Action::Read).await?;
    let mut responses = ti_responses(&state, std::slice::from_ref(&ti)).await?;
    responses
        .pop()
        .map(Json)
        .ok_or_else(|| mapped_ti_not_found(&dag_id, &run_id, &task_id, map_index))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MappedQuery {
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    #[param(value_type = Option<u32>)]
    offset: Option<String>,
    /// Only instances in these states (repeat the parameter for several).
    #[serde(default)]
    state: Vec<String>,
}

/// The instances of a mapped task in a run, by map index (Airflow's `listMapped`); empty for
/// a task not (yet) expanded.
#[utoipa::path(
    get,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/listMapped",
    tag = "Task Instance",
    params(
        ("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        MappedQuery
    ),
    responses((status = 200, description = "Successful response", body = TaskInstanceCollectionResponse), E400, E403, E404, E422)
)]
pub async fn get_mapped_task_instances(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
    ApiQuery(query): ApiQuery<MappedQuery>,
) -> Result<Json<TaskInstanceCollectionResponse>, ApiError> {
    let run = load_run(&state, &identity, &dag_id, &run_id, Action::Read).await?;
    let mut page = state
        .store
        .task_instances_page(&TiQuery {
            run_pk: Some(run.id),
            task_ids: vec![task_id.clone()],
            states: parse_list(
                "state",
                &query.state,
                "a task instance state",
                parse_ti_state,
            )?,
            order_by: TiOrder::Run,
            paging: paging(&query.limit, &query.offset)?,
            ..Default::default()
        })
        .await?;
    if page.total == 0 {
        let exists = state
            .store
            .task_instances_page(&TiQuery {
                run_pk: Some(run.id),
                task_ids: vec![task_id.clone()],
                paging: Paging {
                    limit: Some(1),
                    offset: 0,
                },
                ..Default::default()
            })
            .await?;
        if exists.total == 0 {
            return Err(ti_not_found(&dag_id, &run_id, &task_id));
        }
    }
    // An unexpanded placeholder is not one of the mapped instances.
    let placeholders = page.items.iter().filter(|ti| ti.map_index < 0).count() as u64;
    page.items.retain(|ti| ti.map_index >= 0);
    Ok(Json(TaskInstanceCollectionResponse {
        task_instances: ti_responses(&state, &page.items).await?,
        total_entries: page.total - placeholders,
    }))
}

/// One task instance.
#[utoipa::path(
    get,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, description = "Successful response", body = TaskInstanceResponse), E403, E404, E422)
)]
pub async fn get_task_instance(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
) -> Result<Json<TaskInstanceResponse>, ApiError> {
    let (_, ti) = load_ti(&state, &identity, &dag_id, &run_id, &task_id, Action::Read).await?;
    let mut responses = ti_responses(&state, std::slice::from_ref(&ti)).await?;
    responses
        .pop()
        .map(Json)
        .ok_or_else(|| ti_not_found(&dag_id, &run_id, &task_id))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PatchTiQuery {
    /// The instance's map index (default -1: an unmapped instance).
    #[param(value_type = Option<i64>)]
    map_index: Option<String>,
    /// Fields of the body to apply: `new_state`, `note` (default: every field given).
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    update_mask: Vec<String>,
}

/// Which instances a mark of `ti` touches: it (the instance of its map index), with
/// `include_upstream`/`include_downstream` every instance of its relatives in its run, and with
/// `include_future`/`include_past` the same in the DAG's later/earlier runs.
async fn affected(
    state: &AppState,
    run: &RunRow,
    ti: &TiRow,
    body: &PatchTaskInstanceBody,
) -> Result<Vec<TiKey>, ApiError> {
    let dag = state.store.dag_version(&run.dag_id, &run.version).await?;
    let mut relatives: BTreeSet<String> = BTreeSet::new();
    if let Some(dag) = &dag {
        if body.include_upstream {
            relatives.extend(dag.upstream_of(&ti.task_id).into_iter().map(str::to_string));
        }
        if body.include_downstream {
            relatives.extend(
                dag.downstream_of(&ti.task_id)
                    .into_iter()
                    .map(str::to_string),
            );
        }
    }
    relatives.remove(&ti.task_id);
    let mut runs = vec![run.id];
    for (wanted, range) in [
        (
            body.include_future,
            TimeRange {
                gt: Some(run.logical_date),
                ..Default::default()
            },
        ),
        (
            body.include_past,
            TimeRange {
                lt: Some(run.logical_date),
                ..Default::default()
            },
        ),
    ] {
        if wanted {
            let others = state
                .store
                .runs_page(&RunQuery {
                    dag_id: Some(run.dag_id.clone()),
                    logical_date: range,
                    ..Default::default()
                })
                .await?;
            runs.extend(others.items.iter().map(|r| r.id));
        }
    }
    let mut keys = Vec::new();
    for run_pk in runs {
        keys.push(TiKey {
            run_pk,
            task_id: ti.task_id.clone(),
            map_index: ti.map_index,
        });
        if relatives.is_empty() {
            continue;
        }
        let instances = state.store.task_instances(run_pk).await?;
        keys.extend(
            instances
                .iter()
                .filter(|other| relatives.contains(&other.task_id))
                .map(TiRow::key),
        );
    }
    Ok(keys)
}

async fn read_keys(state: &AppState, keys: &[TiKey]) -> Result<Vec<TiRow>, ApiError> {
    let mut rows = Vec::with_capacity(keys.len());
    for key in keys {
        if let Some(ti) = state.store.task_instance(key).await? {
            rows.push(ti);
        }
    }
    Ok(rows)
}

async fn collection(
    state: &AppState,
    tis: &[TiRow],
) -> Result<TaskInstanceCollectionResponse, ApiError> {
    Ok(TaskInstanceCollectionResponse {
        task_instances: ti_responses(state, tis).await?,
        total_entries: tis.len() as u64,
    })
}

/// Mark a task instance (and, on request, its relatives in this and other runs) success,
/// failed or skipped, or set its note. Returns the instances affected. `?map_index=` names
/// one instance of a mapped task.
#[utoipa::path(
    patch,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
    tag = "Task Instance",
    params(
        ("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        PatchTiQuery
    ),
    request_body = PatchTaskInstanceBody,
    responses((status = 200, description = "Successful response", body = TaskInstanceCollectionResponse), E400, E403, E404, E422)
)]
pub async fn patch_task_instance(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
    ApiQuery(query): ApiQuery<PatchTiQuery>,
    ApiJson(body): ApiJson<PatchTaskInstanceBody>,
) -> Result<Json<TaskInstanceCollectionResponse>, ApiError> {
    let map_index = map_index_param(&query.map_index)?;
    let names = (dag_id.as_str(), run_id.as_str(), task_id.as_str());
    patch_instance(
        &state,
        &identity,
        names,
        map_index,
        &query.update_mask,
        body,
    )
    .await
}

/// [`patch_task_instance`] of one instance of a mapped task, by map index.
#[utoipa::path(
    patch,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}",
    tag = "Task Instance",
    params(
        ("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        ("map_index" = i32, Path, minimum = -1), UpdateMaskQuery
    ),
    request_body = PatchTaskInstanceBody,
    responses((status = 200, description = "Successful response", body = TaskInstanceCollectionResponse), E400, E403, E404, E422)
)]
pub async fn patch_mapped_task_instance(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath((dag_id, run_id, task_id, map_index)): ApiPath<(String, String, String, String)>,
    ApiQuery(query): ApiQuery<UpdateMaskQuery>,
    ApiJson(body): ApiJson<PatchTaskInstanceBody>,
) -> Result<Json<TaskInstanceCollectionResponse>, ApiError> {
    let map_index = map_index_param(&Some(map_index))?;
    let names = (dag_id.as_str(), run_id.as_str(), task_id.as_str());
    patch_instance(
        &state,
        &identity,
        names,
        map_index,
        &query.update_mask,
        body,
    )
    .await
}

/// Only the update mask of [`PatchTiQuery`], for routes that name the map index in the path.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UpdateMaskQuery {
    /// Fields of the body to apply: `new_state`, `note` (default: every field given).
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    update_mask: Vec<String>,
}

async fn patch_instance(
    state: &AppState,
    identity: &Identity,
    names: (&str, &str, &str),
    map_index: i32,
    update_mask: &[String],
    body: PatchTaskInstanceBody,
) -> Result<Json<TaskInstanceCollectionResponse>, ApiError> {
    let (dag_id, run_id, task_id) = names;
    let (run, ti) = load_mapped_ti(state, identity, names, map_index, Action::Edit).await?;
    let fields = check_update_mask(update_mask, &["new_state", "note"])?;
    let wanted = |field: &str| fields.is_empty() || fields.iter().any(|f| f == field);
    let mut keys = vec![ti.key()];
    if wanted("new_state") {
        match body.new_state {
            Some(new_state) => {
                keys = affected(state, &run, &ti, &body).await?;
                state
                    .store
                    .force_ti_states(&keys, new_state.into(), now())
                    .await?;
                state.wake_scheduler();
            }
            None if !fields.is_empty() => {
                return Err(ApiError::bad_request(
                    "update_mask names `new_state`, which is null",
                ));
            }
            None => {}
        }
    }
    if wanted("note") {
        let masked = !fields.is_empty();
        patch_note(state, run.id, Some(&ti.task_id), &body.note, masked).await?;
    }
    Entry::new(identity, "patch_task_instance")
        .dag(&run.tenant, dag_id)
        .run(run_id)
        .task(task_id)
        .extra(serde_json::json!({
            "map_index": map_index,
            "new_state": body.new_state.map(|s| format!("{s:?}").to_lowercase()),
            "note": body.note,
            "include_upstream": body.include_upstream,
            "include_downstream": body.include_downstream,
            "include_future": body.include_future,
            "include_past": body.include_past,
            "update_mask": fields,
            "affected": keys.len(),
        }))
        .record(state)
        .await;
    let rows = read_keys(state, &keys).await?;
    Ok(Json(collection(state, &rows).await?))
}

/// The task instances a `PATCH` of this task instance would affect; changes nothing.
#[utoipa::path(
    patch,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/dry_run",
    tag = "Task Instance",
    params(
        ("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        PatchTiQuery
    ),
    request_body = PatchTaskInstanceBody,
    responses((status = 200, description = "Successful response", body = TaskInstanceCollectionResponse), E400, E403, E404, E422)
)]
pub async fn patch_task_instance_dry_run(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
    ApiQuery(query): ApiQuery<PatchTiQuery>,
    ApiJson(body): ApiJson<PatchTaskInstanceBody>,
) -> Result<Json<TaskInstanceCollectionResponse>, ApiError> {
    let map_index = map_index_param(&query.map_index)?;
    let names = (dag_id.as_str(), run_id.as_str(), task_id.as_str());
    preview_patch(
        &state,
        &identity,
        names,
        map_index,
        &query.update_mask,
        &body,
    )
    .await
}

/// [`patch_task_instance_dry_run`] of one instance of a mapped task, by map index.
#[utoipa::path(
    patch,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/dry_run",
    tag = "Task Instance",
    params(
        ("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        ("map_index" = i32, Path, minimum = -1), UpdateMaskQuery
    ),
    request_body = PatchTaskInstanceBody,
    responses((status = 200, description = "Successful response", body = TaskInstanceCollectionResponse), E400, E403, E404, E422)
)]
pub async fn patch_mapped_task_instance_dry_run(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath((dag_id, run_id, task_id, map_index)): ApiPath<(String, String, String, String)>,
    ApiQuery(query): ApiQuery<UpdateMaskQuery>,
    ApiJson(body): ApiJson<PatchTaskInstanceBody>,
) -> Result<Json<TaskInstanceCollectionResponse>, ApiError> {
    let map_index = map_index_param(&Some(map_index))?;
    let names = (dag_id.as_str(), run_id.as_str(), task_id.as_str());
    preview_patch(
        &state,
        &identity,
        names,
        map_index,
        &query.update_mask,
        &body,
    )
    .await
}

async fn preview_patch(
    state: &AppState,
    identity: &Identity,
    names: (&str, &str, &str),
    map_index: i32,
    update_mask: &[String],
    body: &PatchTaskInstanceBody,
) -> Result<Json<TaskInstanceCollectionResponse>, ApiError> {
    // A preview of a write: only those who may make it may see it.
    let (run, ti) = load_mapped_ti(state, identity, names, map_index, Action::Edit).await?;
    check_update_mask(update_mask, &["new_state", "note"])?;
    let keys = if body.new_state.is_some() {
        affected(state, &run, &ti, body).await?
    } else {
        vec![ti.key()]
    };
    let rows = read_keys(state, &keys).await?;
    Ok(Json(collection(state, &rows).await?))
}

/// Every try of a task instance, oldest first.
#[utoipa::path(
    get,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries",
    tag = "Task Instance",
    params(
        ("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        PatchTiQuery
    ),
    responses((status = 200, description = "Successful response", body = TaskInstanceHistoryCollectionResponse), E403, E404, E422)
)]
pub async fn get_task_instance_tries(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
    ApiQuery(query): ApiQuery<PatchTiQuery>,
) -> Result<Json<TaskInstanceHistoryCollectionResponse>, ApiError> {
    let map_index = map_index_param(&query.map_index)?;
    let names = (dag_id.as_str(), run_id.as_str(), task_id.as_str());
    let (run, ti) = load_mapped_ti(&state, &identity, names, map_index, Action::Read).await?;
    let tries = tries_of(&state, &run, &ti).await?;
    Ok(Json(TaskInstanceHistoryCollectionResponse {
        total_entries: tries.len() as u64,
        task_instances: tries,
    }))
}

async fn tries_of(
    state: &AppState,
    run: &RunRow,
    ti: &TiRow,
) -> Result<Vec<TaskInstanceHistoryResponse>, ApiError> {
    let tries = state.store.tries(&ti.key()).await?;
    let dag = state.store.dag_version(&run.dag_id, &run.version).await?;
    let versions = versions_of_many(state, vec![run.dag_id.clone()]).await?;
    let ctx = TiContext {
        run,
        dag: dag.as_ref(),
        versions: versions.get(&run.dag_id),
        note: None,
    };
    Ok(tries.iter().map(|t| try_response(ti, t, &ctx)).collect())
}

/// One try of a task instance.
#[utoipa::path(
    get,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries/{task_try_number}",
    tag = "Task Instance",
    params(
        ("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        ("task_try_number" = i64, Path), PatchTiQuery
    ),
    responses((status = 200, description = "Successful response", body = TaskInstanceHistoryResponse), E403, E404, E422)
)]
pub async fn get_task_instance_try_details(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath((dag_id, run_id, task_id, try_number)): ApiPath<(String, String, String, i64)>,
    ApiQuery(query): ApiQuery<PatchTiQuery>,
) -> Result<Json<TaskInstanceHistoryResponse>, ApiError> {
    let map_index = map_index_param(&query.map_index)?;
    let names = (dag_id.as_str(), run_id.as_str(), task_id.as_str());
    let (run, ti) = load_mapped_ti(&state, &identity, names, map_index, Action::Read).await?;
    tries_of(&state, &run, &ti)
        .await?
        .into_iter()
        .find(|t| t.try_number == try_number)
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "The Task Instance with dag_id: `{dag_id}`, run_id: `{run_id}`, task_id: \
                 `{task_id}`, try_number: `{try_number}` and map_index: `{map_index}` was not found"
            ))
        })
}

/// Clear task instances of a DAG so they run again: of one run (`dag_run_id`, with
/// `include_future`/`include_past` its later/earlier runs too) or of the runs whose logical
/// date is in `[start_date, end_date]`. By default only failed instances, and only a dry run.
#[utoipa::path(
    post,
    path = "/dags/{dag_id}/clearTaskInstances",
    tag = "Task Instance",
    params(("dag_id" = String, Path)),
    request_body = ClearTaskInstancesBody,
    responses((status = 200, description = "Successful response", body = TaskInstanceCollectionResponse), E400, E403, E404, E422)
)]
pub async fn post_clear_task_instances(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(dag_id): ApiPath<String>,
    ApiJson(body): ApiJson<ClearTaskInstancesBody>,
) -> Result<Json<TaskInstanceCollectionResponse>, ApiError> {
    let dag = load_dag(&state, &identity, &dag_id, Action::Edit).await?;
    check_note(body.note.as_deref())?;
    if body
        .start_date
        .zip(body.end_date)
        .is_some_and(|(s, e)| s > e)
    {
        return Err(ApiError::bad_request(
            "start_date must not be after end_date",
        ));
    }
    let dates = TimeRange {
        gte: body.start_date,
        lte: body.end_date,
        ..Default::default()
    };
    let runs = runs_to_clear(&state, &identity, &dag_id, &body, dates).await?;
    let wanted: Option<Vec<&str>> = match &body.task_ids {
        None => None,
        Some(items) => {
            let mut ids = Vec::new();
            for item in items {
                if let Some(id) = task_id_of(item).map_err(ApiError::unprocessable)? {
                    ids.push(id);
                }
            }
            Some(ids)
        }
    };
    let mut chosen: Vec<TiRow> = Vec::new();
    for run in &runs {
        let dag = state.store.dag_version(&run.dag_id, &run.version).await?;
        let tis = state.store.task_instances(run.id).await?;
        let mut task_ids: BTreeSet<String> = match &wanted {
            Some(ids) => ids.iter().map(|s| s.to_string()).collect(),
            None => tis.iter().map(|ti| ti.task_id.clone()).collect(),
        };
        if let (Some(dag), Some(ids)) = (&dag, &wanted) {
            for id in ids {
                if body.include_upstream {
                    task_ids.extend(dag.upstream_of(id).into_iter().map(str::to_string));
                }
                if body.include_downstream {
                    task_ids.extend(dag.downstream_of(id).into_iter().map(str::to_string));
                }
            }
        }
        chosen.extend(tis.into_iter().filter(|ti| {
            task_ids.contains(&ti.task_id)
                && (!body.only_failed
                    || matches!(ti.state, TaskState::Failed | TaskState::UpstreamFailed))
                && (!body.only_running || ti.state == TaskState::Running)
        }));
    }
    if body.dry_run {
        return Ok(Json(collection(&state, &chosen).await?));
    }
    let mut by_run: HashMap<i64, Vec<String>> = HashMap::new();
    for ti in &chosen {
        by_run
            .entry(ti.run_pk)
            .or_default()
            .push(ti.task_id.clone());
    }
    let now = now();
    for (run_pk, task_ids) in &by_run {
        state
            .store
            .clear_task_instances(*run_pk, task_ids, now)
            .await?;
        if let Some(note) = &body.note {
            state.store.set_note(*run_pk, None, Some(note)).await?;
        }
    }
    if !by_run.is_empty() {
        state.wake_scheduler();
    }
    Entry::new(&identity, "post_clear_task_instances")
        .dag(&dag.dag.tenant, &dag_id)
        .extra(serde_json::json!({
            "dag_run_id": body.dag_run_id,
            "task_ids": body.task_ids,
            "start_date": body.start_date,
            "end_date": body.end_date,
            "only_failed": body.only_failed,
            "only_running": body.only_running,
            "include_upstream": body.include_upstream,
            "include_downstream": body.include_downstream,
            "include_future": body.include_future,
            "include_past": body.include_past,
            "note": body.note,
            "cleared": chosen.len(),
        }))
        .record(&state)
        .await;
    let keys: Vec<TiKey> = chosen.iter().map(TiRow::key).collect();
    let rows = read_keys(&state, &keys).await?;
    Ok(Json(collection(&state, &rows).await?))
}

async fn runs_to_clear(
    state: &AppState,
    identity: &Identity,
    dag_id: &str,
    body: &ClearTaskInstancesBody,
    dates: TimeRange,
) -> Result<Vec<RunRow>, ApiError> {
    let all_of_dag = |logical_date: TimeRange| RunQuery {
        dag_id: Some(dag_id.to_string()),
        logical_date,
        paging: Paging::default(),
        ..Default::default()
    };
    let Some(run_id) = &body.dag_run_id else {
        return Ok(state.store.runs_page(&all_of_dag(dates)).await?.items);
    };
    let run = load_run(state, identity, dag_id, run_id, Action::Edit).await?;
    let mut runs = Vec::new();
    if body.include_past {
        let past = TimeRange {
            lt: Some(run.logical_date),
            ..dates
        };
        runs.extend(state.store.runs_page(&all_of_dag(past)).await?.items);
    }
    if body.include_future {
        let future = TimeRange {
            gt: Some(run.logical_date),
            ..dates
        };
        runs.extend(state.store.runs_page(&all_of_dag(future)).await?.items);
    }
    runs.push(run);
    Ok(runs)
}
