//! `.../taskInstances/{task_id}/xcomEntries`: a task instance's XComs, as Airflow 3's API
//! shows and writes them.
//!
//! Reading needs the DAG's read rights; writing (`POST`, `PATCH`) an Op's, as Airflow's XCom
//! permissions have it. Another tenant's run is answered as a missing one. Values under keys
//! that look sensitive are masked (`***`), as are known secret values inside any value.
//! Only the task instance's current try's XComs exist: a new try starts with none.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use updraft_store::{
    NOT_MAPPED, Paging, RunRow, TiQuery, WriteMode, XComQuery, XComRow, XComWrite,
};
use utoipa::{IntoParams, ToSchema};

use super::doc::{E400, E403, E404, E409, E422};
use super::params::paging;
use super::{ApiJson, ApiPath, ApiQuery, load_run, now};
use crate::AppState;
use crate::audit::Entry;
use crate::auth::{self, Action, Caller, Identity, Resource};
use crate::error::ApiError;
use crate::masking::shown_xcom;

/// One XCom, without its value (a listing's entries).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct XComResponse {
    pub key: String,
    pub timestamp: DateTime<Utc>,
    pub logical_date: Option<DateTime<Utc>>,
    /// -1: the task instance is not mapped.
    pub map_index: i64,
    pub task_id: String,
    pub dag_id: String,
    pub run_id: String,
    pub dag_display_name: String,
    pub task_display_name: String,
}

/// One XCom with its value: the JSON value itself (`stringify=false`), or as text.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct XComResponseNative {
    #[serde(flatten)]
    pub xcom: XComResponse,
    /// The value: as pushed with `stringify=false`; else as text (a string as itself, any
    /// other value as its JSON).
    pub value: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct XComCollectionResponse {
    pub xcom_entries: Vec<XComResponse>,
    pub total_entries: u64,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct XComListQuery {
    /// Only this key.
    xcom_key: Option<String>,
    #[param(value_type = Option<i64>)]
    map_index: Option<String>,
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    #[param(value_type = Option<u64>)]
    offset: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct XComGetQuery {
    /// Default -1.
    #[param(value_type = Option<i64>)]
    map_index: Option<String>,
    /// Accepted for Airflow's clients: updraft's values are JSON, always deserialized.
    #[param(value_type = Option<bool>)]
    deserialize: Option<String>,
    /// The value as text (default true, as in Airflow), or as its JSON (false).
    #[param(value_type = Option<bool>)]
    stringify: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct XComCreateBody {
    pub key: String,
    pub value: Value,
    #[serde(default = "not_mapped")]
    pub map_index: i64,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct XComUpdateBody {
    pub value: Value,
    #[serde(default = "not_mapped")]
    pub map_index: i64,
}

fn not_mapped() -> i64 {
    NOT_MAPPED
}

/// The largest value the API takes, in bytes of JSON: 1 MiB, the default
/// `[core] max_xcom_size` (the server does not read the executors' setting).
const MAX_VALUE_BYTES: usize = 1024 * 1024;

fn xcom_resource(run: &RunRow) -> Resource<'_> {
    Resource::XCom {
        tenant: &run.tenant,
        dag_id: &run.dag_id,
    }
}

fn xcom_not_found(key: &str, dag_id: &str, run_id: &str, task_id: &str) -> ApiError {
    ApiError::not_found(format!(
        "XCom entry with key: `{key}` not found for task `{task_id}` of run `{run_id}` of DAG `{dag_id}`"
    ))
}

fn ti_not_found(dag_id: &str, run_id: &str, task_id: &str) -> ApiError {
    ApiError::not_found(format!(
        "The Task Instance with dag_id: `{dag_id}`, run_id: `{run_id}`, task_id: `{task_id}` \
         and map_index: `-1` was not found"
    ))
}

/// The run, after the caller may read it (another tenant's: 404) and do `action` on its
/// XComs (403 otherwise); 404 when the task instance does not exist.
async fn load(
    state: &AppState,
    identity: &Identity,
    (dag_id, run_id, task_id): (&str, &str, &str),
    action: Action,
) -> Result<RunRow, ApiError> {
    let run = load_run(state, identity, dag_id, run_id, Action::Read).await?;
    auth::authorize(identity, action, xcom_resource(&run))?;
    // Any instance of the task: a mapped task's instances have map indexes 0.. only.
    let found = state
        .store
        .task_instances_page(&TiQuery {
            run_pk: Some(run.id),
            task_ids: vec![task_id.to_owned()],
            paging: Paging {
                limit: Some(1),
                offset: 0,
            },
            ..TiQuery::default()
        })
        .await?;
    if found.total == 0 {
        return Err(ti_not_found(dag_id, run_id, task_id));
    }
    Ok(run)
}

fn map_index_of(text: &Option<String>) -> Result<Option<i64>, ApiError> {
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            ApiError::unprocessable(format!(
                "query parameter `map_index`: expected an integer, got `{text}`"
            ))
        }),
    }
}

fn flag_of(name: &str, text: &Option<String>, default: bool) -> Result<bool, ApiError> {
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some("true" | "True" | "1") => Ok(true),
        Some("false" | "False" | "0") => Ok(false),
        Some(other) => Err(ApiError::unprocessable(format!(
            "query parameter `{name}`: expected a boolean, got `{other}`"
        ))),
    }
}

fn response(run: &RunRow, row: &XComRow) -> XComResponse {
    XComResponse {
        key: row.key.clone(),
        timestamp: row.timestamp,
        logical_date: Some(run.logical_date),
        map_index: row.map_index,
        task_id: row.task_id.clone(),
        dag_id: run.dag_id.clone(),
        run_id: run.run_id.clone(),
        dag_display_name: run.dag_id.clone(),
        task_display_name: row.task_id.clone(),
    }
}

/// The value shown: masked, as JSON or as text.
fn shown_value(row: &XComRow, stringify: bool) -> Value {
    let value = serde_json::from_str(&row.value).unwrap_or(Value::Null);
    match shown_xcom(&row.key, &value) {
        Value::String(text) if stringify => Value::String(text),
        other if stringify => Value::String(other.to_string()),
        other => other,
    }
}

fn native(run: &RunRow, row: &XComRow, stringify: bool) -> XComResponseNative {
    XComResponseNative {
        xcom: response(run, row),
        value: shown_value(row, stringify),
    }
}

/// A task instance's XComs (keys, not values), by key.
#[utoipa::path(
    get,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries",
    tag = "XCom",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path), XComListQuery),
    responses((status = 200, description = "Successful response", body = XComCollectionResponse), E400, E403, E404, E422)
)]
pub async fn get_xcom_entries(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
    ApiQuery(query): ApiQuery<XComListQuery>,
) -> Result<Json<XComCollectionResponse>, ApiError> {
    let run = load(
        &state,
        &identity,
        (&dag_id, &run_id, &task_id),
        Action::Read,
    )
    .await?;
    let page = paging(&query.limit, &query.offset)?;
    let (rows, total) = state
        .store
        .xcoms(&XComQuery {
            run_pk: run.id,
            task_ids: Some(vec![task_id]),
            map_index: map_index_of(&query.map_index)?,
            key: query.xcom_key.filter(|k| !k.is_empty()),
            limit: page.limit,
            offset: u32::try_from(page.offset).unwrap_or(u32::MAX),
        })
        .await?;
    Ok(Json(XComCollectionResponse {
        xcom_entries: rows.iter().map(|row| response(&run, row)).collect(),
        total_entries: total,
    }))
}

/// One XCom with its value.
#[utoipa::path(
    get,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}",
    tag = "XCom",
    params(
        ("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        ("xcom_key" = String, Path), XComGetQuery
    ),
    responses((status = 200, description = "Successful response", body = XComResponseNative), E400, E403, E404, E422)
)]
pub async fn get_xcom_entry(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath((dag_id, run_id, task_id, xcom_key)): ApiPath<(String, String, String, String)>,
    ApiQuery(query): ApiQuery<XComGetQuery>,
) -> Result<Json<XComResponseNative>, ApiError> {
    let run = load(
        &state,
        &identity,
        (&dag_id, &run_id, &task_id),
        Action::Read,
    )
    .await?;
    flag_of("deserialize", &query.deserialize, false)?;
    let stringify = flag_of("stringify", &query.stringify, true)?;
    let row = one(
        &state,
        &run,
        &task_id,
        &xcom_key,
        map_index_of(&query.map_index)?,
    )
    .await?
    .ok_or_else(|| xcom_not_found(&xcom_key, &dag_id, &run_id, &task_id))?;
    Ok(Json(native(&run, &row, stringify)))
}

async fn one(
    state: &AppState,
    run: &RunRow,
    task_id: &str,
    key: &str,
    map_index: Option<i64>,
) -> Result<Option<XComRow>, ApiError> {
    let (mut rows, _) = state
        .store
        .xcoms(&XComQuery {
            run_pk: run.id,
            task_ids: Some(vec![task_id.to_owned()]),
            map_index: Some(map_index.unwrap_or(NOT_MAPPED)),
            key: Some(key.to_owned()),
            limit: Some(1),
            offset: 0,
        })
        .await?;
    Ok(rows.pop())
}

fn value_text(value: &Value) -> Result<String, ApiError> {
    let text = value.to_string();
    if text.len() > MAX_VALUE_BYTES {
        return Err(ApiError::bad_request(format!(
            "value: {} bytes of JSON, over the limit of {MAX_VALUE_BYTES} bytes",
            text.len()
        )));
    }
    Ok(text)
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > 512 {
        return Err(ApiError::unprocessable(
            "key: 1 to 512 characters".to_owned(),
        ));
    }
    Ok(())
}

/// Create an XCom for the task instance's current try.
#[utoipa::path(
    post,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries",
    tag = "XCom",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path)),
    request_body = XComCreateBody,
    responses((status = 201, description = "Created", body = XComResponseNative), E400, E403, E404, E409, E422)
)]
pub async fn post_xcom_entry(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
    ApiJson(body): ApiJson<XComCreateBody>,
) -> Result<(StatusCode, Json<XComResponseNative>), ApiError> {
    let run = load(
        &state,
        &identity,
        (&dag_id, &run_id, &task_id),
        Action::Create,
    )
    .await?;
    check_key(&body.key)?;
    let value = value_text(&body.value)?;
    let write = XComWrite {
        run_pk: run.id,
        task_id: &task_id,
        map_index: body.map_index,
        key: &body.key,
        value: &value,
    };
    let row = state
        .store
        .write_xcom(&write, WriteMode::Create, now())
        .await
        .map_err(|e| match e {
            updraft_store::StoreError::Conflict(_) => ApiError::conflict(format!(
                "The XCom with key: `{}` with mentioned task instance already exists.",
                body.key
            )),
            other => other.into(),
        })?;
    audit(&state, &identity, "post_xcom_entry", &run, &task_id, &row).await;
    Ok((StatusCode::CREATED, Json(native(&run, &row, false))))
}

/// Replace an XCom's value.
#[utoipa::path(
    patch,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}",
    tag = "XCom",
    params(
        ("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        ("xcom_key" = String, Path)
    ),
    request_body = XComUpdateBody,
    responses((status = 200, description = "Successful response", body = XComResponseNative), E400, E403, E404, E422)
)]
pub async fn patch_xcom_entry(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath((dag_id, run_id, task_id, xcom_key)): ApiPath<(String, String, String, String)>,
    ApiJson(body): ApiJson<XComUpdateBody>,
) -> Result<Json<XComResponseNative>, ApiError> {
    let run = load(
        &state,
        &identity,
        (&dag_id, &run_id, &task_id),
        Action::Edit,
    )
    .await?;
    let value = value_text(&body.value)?;
    let write = XComWrite {
        run_pk: run.id,
        task_id: &task_id,
        map_index: body.map_index,
        key: &xcom_key,
        value: &value,
    };
    let row = state
        .store
        .write_xcom(&write, WriteMode::Update, now())
        .await
        .map_err(|e| match e {
            updraft_store::StoreError::NotFound(_) => {
                xcom_not_found(&xcom_key, &dag_id, &run_id, &task_id)
            }
            other => other.into(),
        })?;
    audit(&state, &identity, "patch_xcom_entry", &run, &task_id, &row).await;
    Ok(Json(native(&run, &row, false)))
}

async fn audit(
    state: &AppState,
    identity: &Identity,
    event: &str,
    run: &RunRow,
    task_id: &str,
    row: &XComRow,
) {
    Entry::new(identity, event)
        .dag(&run.tenant, &run.dag_id)
        .run(&run.run_id)
        .task(task_id)
        .extra(serde_json::json!({
            "key": row.key,
            "map_index": row.map_index,
            "value": shown_value(row, false),
        }))
        .record(state)
        .await;
}
