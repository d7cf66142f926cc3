//! REST API v2, shaped like Airflow 3's public API: the same paths, parameters, bodies and
//! response schemas, errors as problem details. The OpenAPI document is generated from the
//! handlers and served at `/api/v2/openapi.json`.
//!
//! Every handler asks [`auth::authorize`] for the caller's [`Identity`] before reading or
//! writing; listings are restricted to the tenants the identity may see, and an object of a
//! tenant the caller has no role in is answered exactly as a missing one. Every write is
//! recorded in the audit log ([`crate::audit`]); every write that records work wakes the
//! scheduler.

pub(crate) mod assets;
mod bundles;
pub(crate) mod connections;
mod dag_runs;
mod dags;
mod doc;
mod event_logs;
mod extract;
mod import_errors;
mod logs;
pub mod models;
pub(crate) mod monitor;
mod params;
mod pools;
pub(crate) mod secrets;
mod sources;
mod task_instances;
mod tasks;
pub(crate) mod variables;
mod xcom;

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use updraft_store::{DagRow, RunRow};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{self, Action, Identity, Resource};
use crate::error::ApiError;
use models::{Bundles, Versions};

pub use extract::{Accept, ApiJson, ApiPath, ApiQuery};

/// The API's routes (to be nested at `/api/v2`), with `/openapi.json`.
pub fn router() -> Router<AppState> {
    let (router, openapi) = api_routes().split_for_parts();
    let document = Arc::new(openapi_json(openapi));
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        document.as_ref().clone(),
                    )
                }
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// The OpenAPI document, as served.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, openapi) = api_routes().split_for_parts();
    with_prefix(openapi)
}

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(doc::ApiDoc::openapi())
        .routes(routes!(dags::get_dags, dags::patch_dags))
        .routes(routes!(dags::get_dag, dags::patch_dag))
        .routes(routes!(dags::get_dag_details))
        .routes(routes!(dags::get_dag_versions))
        .routes(routes!(dags::get_dag_version))
        .routes(routes!(tasks::get_tasks))
        .routes(routes!(tasks::get_task))
        .routes(routes!(dag_runs::get_dag_runs, dag_runs::trigger_dag_run))
        .routes(routes!(
            dag_runs::get_dag_run,
            dag_runs::patch_dag_run,
            dag_runs::delete_dag_run
        ))
        .routes(routes!(dag_runs::clear_dag_run))
        .routes(routes!(task_instances::get_task_instances))
        .routes(routes!(
            task_instances::get_task_instance,
            task_instances::patch_task_instance
        ))
        .routes(routes!(task_instances::patch_task_instance_dry_run))
        .routes(routes!(task_instances::get_mapped_task_instances))
        .routes(routes!(
            task_instances::get_mapped_task_instance,
            task_instances::patch_mapped_task_instance
        ))
        .routes(routes!(task_instances::patch_mapped_task_instance_dry_run))
        .routes(routes!(task_instances::get_task_instance_tries))
        .routes(routes!(task_instances::get_task_instance_try_details))
        .routes(routes!(task_instances::post_clear_task_instances))
        .routes(routes!(xcom::get_xcom_entries, xcom::post_xcom_entry))
        .routes(routes!(xcom::get_xcom_entry, xcom::patch_xcom_entry))
        .routes(routes!(logs::get_log))
        .routes(routes!(import_errors::get_import_errors))
        .routes(routes!(import_errors::get_import_error))
        .routes(routes!(sources::get_dag_source))
        .routes(routes!(assets::get_assets))
        .routes(routes!(
            assets::get_asset_events,
            assets::create_asset_event
        ))
        .routes(routes!(assets::get_asset))
        .routes(routes!(assets::get_dag_asset_queued_events))
        .routes(routes!(pools::get_pools, pools::post_pool))
        .routes(routes!(
            pools::get_pool,
            pools::patch_pool,
            pools::delete_pool
        ))
        .routes(routes!(
            connections::get_connections,
            connections::post_connection
        ))
        .routes(routes!(
            connections::get_connection,
            connections::patch_connection,
            connections::delete_connection
        ))
        .routes(routes!(connections::test_connection))
        .routes(routes!(variables::get_variables, variables::post_variable))
        .routes(routes!(
            variables::get_variable,
            variables::patch_variable,
            variables::delete_variable
        ))
        .routes(routes!(event_logs::get_event_logs))
        .routes(routes!(event_logs::get_event_log))
        .routes(routes!(bundles::get_sources))
        .routes(routes!(bundles::get_source))
        .routes(routes!(bundles::sync_source))
        .routes(routes!(monitor::get_health))
        .routes(routes!(monitor::get_metrics))
        .routes(routes!(monitor::get_version))
}

/// Paths in the document carry the `/api/v2` prefix, as Airflow's do.
fn with_prefix(mut openapi: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let paths = std::mem::take(&mut openapi.paths.paths);
    openapi.paths.paths = paths
        .into_iter()
        .map(|(path, item)| (format!("/api/v2{path}"), item))
        .collect();
    openapi
}

fn openapi_json(openapi: utoipa::openapi::OpenApi) -> String {
    with_prefix(openapi)
        .to_json()
        .expect("the OpenAPI document serializes")
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such API endpoint")
}

async fn method_not_allowed() -> impl IntoResponse {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not support that method",
    )
}

// ---- shared by the handlers ---------------------------------------------------------------

/// Tenants the identity may see, for restricting listings.
fn tenants_of(identity: &Identity) -> Option<Vec<String>> {
    identity.visible_tenants()
}

fn dag_resource<'a>(tenant: &'a str, dag_id: &'a str) -> Resource<'a> {
    Resource::Dag { tenant, dag_id }
}

/// Leaves out the items (of a listing) on whose DAG, named by `dag_of` as tenant and dag_id,
/// the caller may not do `action`.
fn retain_allowed<T>(
    identity: &Identity,
    action: Action,
    items: &mut Vec<T>,
    dag_of: impl Fn(&T) -> (&str, &str),
) {
    items.retain(|item| {
        let (tenant, dag_id) = dag_of(item);
        auth::authorize(identity, action, dag_resource(tenant, dag_id)).is_ok()
    });
}

/// The DAG, after checking the caller may do `action` on it; 404 when unknown.
async fn load_dag(
    state: &AppState,
    identity: &Identity,
    dag_id: &str,
    action: Action,
) -> Result<DagRow, ApiError> {
    let row = state
        .store
        .dag(dag_id)
        .await?
        .ok_or_else(|| dag_not_found(dag_id))?;
    auth::authorize(identity, action, dag_resource(&row.dag.tenant, dag_id))?;
    Ok(row)
}

fn dag_not_found(dag_id: &str) -> ApiError {
    auth::dag_not_found(dag_id)
}

/// The run, after checking the caller may do `action` on its DAG; 404 when unknown.
async fn load_run(
    state: &AppState,
    identity: &Identity,
    dag_id: &str,
    run_id: &str,
    action: Action,
) -> Result<RunRow, ApiError> {
    let Some(run) = state.store.run(dag_id, run_id).await? else {
        // Say which of the two is missing, as Airflow does; but of a DAG the caller may not
        // know of, only that the DAG is.
        load_dag(state, identity, dag_id, action).await?;
        return Err(ApiError::not_found(format!(
            "The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found"
        )));
    };
    auth::authorize(identity, action, dag_resource(&run.tenant, dag_id))?;
    Ok(run)
}

/// The recorded DAG sources, for the bundle links of versions.
async fn bundles(state: &AppState) -> Result<Arc<Bundles>, ApiError> {
    Ok(Arc::new(Bundles::new(state.store.sources().await?)))
}

/// Versions of a DAG, numbered.
async fn versions_of(state: &AppState, dag_id: &str) -> Result<Versions, ApiError> {
    let rows = state.store.dag_versions(dag_id).await?;
    Ok(Versions::new(dag_id, rows).with_bundles(bundles(state).await?))
}

/// Versions of several DAGs, for a page of runs or task instances.
async fn versions_of_many(
    state: &AppState,
    dag_ids: Vec<String>,
) -> Result<std::collections::HashMap<String, Versions>, ApiError> {
    let mut all = std::collections::HashMap::new();
    if dag_ids.is_empty() {
        return Ok(all);
    }
    let bundles = bundles(state).await?;
    for dag_id in dag_ids {
        if let std::collections::hash_map::Entry::Vacant(slot) = all.entry(dag_id) {
            let rows = state.store.dag_versions(slot.key()).await?;
            let versions = Versions::new(slot.key(), rows).with_bundles(bundles.clone());
            slot.insert(versions);
        }
    }
    Ok(all)
}

/// Notes of these runs: the runs' own (`task_id` `None`) and their instances'.
async fn notes_of(
    state: &AppState,
    run_pks: &[i64],
) -> Result<std::collections::HashMap<(i64, Option<String>), String>, ApiError> {
    let mut pks = run_pks.to_vec();
    pks.sort_unstable();
    pks.dedup();
    Ok(state
        .store
        .notes(&pks)
        .await?
        .into_iter()
        .map(|n| ((n.run_pk, n.task_id), n.note))
        .collect())
}

/// Notes are at most 1000 characters, as in Airflow.
fn check_note(note: Option<&str>) -> Result<(), ApiError> {
    match note {
        Some(n) if n.chars().count() > 1000 => {
            Err(ApiError::unprocessable("note: at most 1000 characters"))
        }
        _ => Ok(()),
    }
}

/// A `PATCH` body's `note` for a run (`task_id` `None`) or one of its task instances:
/// `null` removes it; left out, it is removed only when `update_mask` names it.
async fn patch_note(
    state: &AppState,
    run_pk: i64,
    task_id: Option<&str>,
    note: &Option<Option<String>>,
    masked: bool,
) -> Result<(), ApiError> {
    match note {
        Some(note) => {
            check_note(note.as_deref())?;
            state
                .store
                .set_note(run_pk, task_id, note.as_deref())
                .await?;
        }
        None if masked => {
            state.store.set_note(run_pk, task_id, None).await?;
        }
        None => {}
    }
    Ok(())
}

/// `update_mask` names fields of the body to apply; each must be one of `allowed`.
fn check_update_mask(mask: &[String], allowed: &[&str]) -> Result<Vec<String>, ApiError> {
    let fields: Vec<String> = mask
        .iter()
        .flat_map(|m| m.split(','))
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    for field in &fields {
        if !allowed.contains(&field.as_str()) {
            return Err(ApiError::bad_request(format!(
                "update_mask: `{field}` cannot be updated; updatable fields: {}",
                allowed.join(", ")
            )));
        }
    }
    Ok(fields)
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}
