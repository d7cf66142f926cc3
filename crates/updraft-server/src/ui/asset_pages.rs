//! Assets in the UI: the Assets page (each asset of the caller's tenants with the tasks that
//! update it, the DAGs scheduled on it and its latest event) and an asset's page (its recent
//! events, each linked to the run and task that produced it).

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Serialize;
use updraft_store::api::Paging;
use updraft_store::{AssetEventQuery, AssetEventRow, AssetRefKind, AssetReference, AssetRow};

use super::common::Frame;
use super::format;
use super::render::{self, UiError};
use crate::api::assets::{ReferenceIndex, reference_index};
use crate::auth::{Action, Caller, Identity, Resource, allows, authorize, authorize_or_missing};
use crate::error::ApiError;
use crate::state::AppState;

/// Assets listed on the Assets page, at most.
const LISTED_ASSETS: u32 = 500;
/// Events shown on an asset's page, newest first.
const SHOWN_EVENTS: u32 = 100;

#[derive(Serialize)]
struct AssetsPage {
    #[serde(flatten)]
    frame: Frame,
    assets: Vec<AssetLine>,
    total: u64,
    listed: usize,
}

#[derive(Serialize)]
struct TaskLink {
    dag_id: String,
    task_id: String,
    href: String,
}

#[derive(Serialize)]
struct DagLink {
    dag_id: String,
    href: String,
}

#[derive(Serialize)]
struct AssetLine {
    id: i64,
    uri: String,
    name: String,
    tenant: String,
    href: String,
    producers: Vec<TaskLink>,
    consumers: Vec<DagLink>,
    last_event: String,
    last_event_iso: String,
}

#[derive(Serialize)]
struct AssetPage {
    #[serde(flatten)]
    frame: Frame,
    asset: AssetLine,
    extra: String,
    events: Vec<EventLine>,
    total_events: u64,
}

#[derive(Serialize)]
struct EventLine {
    id: i64,
    at: String,
    at_iso: String,
    /// The producing task as `dag.task`, empty for an event recorded by hand.
    source: String,
    run_href: Option<String>,
    task_href: Option<String>,
    extra: String,
}

fn dag_href(dag_id: &str) -> String {
    format!("/dags/{}/grid", format::enc(dag_id))
}

fn run_href(dag_id: &str, run_id: &str) -> String {
    format!("/dags/{}/runs/{}", format::enc(dag_id), format::enc(run_id))
}

/// An asset's line; only the references to DAGs the caller may see are shown.
async fn line(
    state: &AppState,
    identity: &Identity,
    asset: &AssetRow,
    references: &ReferenceIndex,
) -> Result<AssetLine, UiError> {
    let refs = references
        .get(&(asset.tenant.clone(), asset.uri.clone()))
        .map(Vec::as_slice)
        .unwrap_or_default();
    let readable = |r: &&AssetReference| {
        allows(
            identity,
            Action::Read,
            Resource::Dag {
                tenant: &r.tenant,
                dag_id: &r.dag_id,
            },
        )
    };
    let (last, _) = state
        .store
        .asset_events(&AssetEventQuery {
            asset_id: Some(asset.id),
            paging: Paging {
                limit: Some(1),
                offset: 0,
            },
            ..Default::default()
        })
        .await?;
    let last_at = last.first().map(|e| e.timestamp);
    Ok(AssetLine {
        id: asset.id,
        uri: asset.uri.clone(),
        name: asset.name.clone(),
        tenant: asset.tenant.clone(),
        href: format!("/assets/{}", asset.id),
        producers: refs
            .iter()
            .filter(readable)
            .filter(|r| r.kind == AssetRefKind::Outlet)
            .map(|r| TaskLink {
                dag_id: r.dag_id.clone(),
                task_id: r.task_id.clone(),
                href: dag_href(&r.dag_id),
            })
            .collect(),
        consumers: refs
            .iter()
            .filter(readable)
            .filter(|r| r.kind == AssetRefKind::Schedule)
            .map(|r| DagLink {
                dag_id: r.dag_id.clone(),
                href: dag_href(&r.dag_id),
            })
            .collect(),
        last_event: format::time(last_at),
        last_event_iso: format::iso(last_at),
    })
}

/// `/assets`: the assets of the caller's tenants.
pub async fn assets_page(
    State(state): State<AppState>,
    Caller(identity): Caller,
) -> Result<Response, UiError> {
    authorize(&identity, Action::Read, Resource::Assets)?;
    let tenants = identity.visible_tenants();
    let (rows, total) = state
        .store
        .assets(
            tenants.as_deref(),
            &Paging {
                limit: Some(LISTED_ASSETS),
                offset: 0,
            },
        )
        .await?;
    let references = reference_index(&state).await?;
    let mut assets = Vec::with_capacity(rows.len());
    for asset in rows.iter().filter(|a| visible(&identity, a)) {
        assets.push(line(&state, &identity, asset, &references).await?);
    }
    let ctx = AssetsPage {
        frame: Frame::new("Assets", "assets"),
        listed: assets.len(),
        assets,
        total,
    };
    render::page("assets.html", "assets.html", false, &ctx)
}

fn visible(identity: &Identity, asset: &AssetRow) -> bool {
    allows(
        identity,
        Action::Read,
        Resource::Asset {
            tenant: &asset.tenant,
        },
    )
}

/// `/assets/{asset_id}`: one asset and its recent events. Another tenant's asset reads
/// exactly as a missing one.
pub async fn asset_page(
    State(state): State<AppState>,
    Caller(identity): Caller,
    Path(id): Path<i64>,
) -> Result<Response, UiError> {
    let missing = || ApiError::not_found(format!("The Asset with ID: `{id}` was not found"));
    let asset = state.store.asset(id).await?.ok_or_else(missing)?;
    authorize_or_missing(
        &identity,
        Action::Read,
        Resource::Asset {
            tenant: &asset.tenant,
        },
        missing,
    )?;
    let references = reference_index(&state).await?;
    let (events, total_events) = state
        .store
        .asset_events(&AssetEventQuery {
            asset_id: Some(id),
            paging: Paging {
                limit: Some(SHOWN_EVENTS),
                offset: 0,
            },
            ..Default::default()
        })
        .await?;
    let ctx = AssetPage {
        frame: Frame::new(format!("Asset {}", asset.uri), "assets"),
        extra: json_text(&asset.extra),
        asset: line(&state, &identity, &asset, &references).await?,
        events: events.iter().map(|e| event_line(&identity, e)).collect(),
        total_events,
    };
    render::page("asset.html", "asset.html", false, &ctx)
}

fn event_line(identity: &Identity, event: &AssetEventRow) -> EventLine {
    let readable = |dag_id: &str| {
        allows(
            identity,
            Action::Read,
            Resource::Dag {
                tenant: &event.tenant,
                dag_id,
            },
        )
    };
    let (source, run_href, task_href) = match (
        &event.source_dag_id,
        &event.source_run_id,
        &event.source_task_id,
    ) {
        (Some(dag), Some(run), Some(task)) if readable(dag) => {
            let run_href = run_href(dag, run);
            let task_href = format!("{run_href}/tasks/{}", format::enc(task));
            (format!("{dag}.{task}"), Some(run_href), Some(task_href))
        }
        (Some(dag), _, Some(task)) => (format!("{dag}.{task}"), None, None),
        _ => (String::new(), None, None),
    };
    EventLine {
        id: event.id,
        at: format::time(Some(event.timestamp)),
        at_iso: format::iso(Some(event.timestamp)),
        source,
        run_href,
        task_href,
        extra: json_text(&event.extra),
    }
}

/// Extra as shown: nothing for an empty object.
fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::Object(map) if map.is_empty() => String::new(),
        other => other.to_string(),
    }
}
