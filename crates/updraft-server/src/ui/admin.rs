//! Pools and import errors.

use std::path::Path;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde::Serialize;

use super::common::Frame;
use super::format::{query_get, query_pairs};
use super::render::{self, UiError};
use crate::auth::{Action, Caller, Resource, authorize};
use crate::error::ApiError;
use crate::state::AppState;

/// Lines of context shown around an import error's line.
const CONTEXT_LINES: u32 = 3;

#[derive(Serialize)]
struct PoolsPage {
    #[serde(flatten)]
    frame: Frame,
    pools: Vec<PoolLine>,
    live_src: &'static str,
}

#[derive(Serialize)]
struct PoolLine {
    name: String,
    slots: i64,
    used: i64,
    open: i64,
    /// Share of slots in use, 0–100, for the usage bar.
    used_pct: i64,
    description: String,
}

pub async fn pools(
    State(state): State<AppState>,
    Caller(identity): Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    authorize(&identity, Action::Read, Resource::Pools)?;
    let (pools, counts) = tokio::join!(state.store.pools(), state.store.active_counts());
    let counts = counts?;
    let pools = pools?
        .into_iter()
        .filter(|p| {
            authorize(
                &identity,
                Action::Read,
                Resource::Pool {
                    tenant: p.tenant.as_deref(),
                },
            )
            .is_ok()
        })
        .map(|p| {
            let used = counts.per_pool.get(&p.name).copied().unwrap_or(0);
            PoolLine {
                used_pct: if p.slots > 0 {
                    (used * 100 / p.slots).clamp(0, 100)
                } else {
                    0
                },
                open: p.slots - used,
                used,
                slots: p.slots,
                name: p.name,
                description: p.description,
            }
        })
        .collect();
    let ctx = PoolsPage {
        frame: Frame::new("Pools", "pools").live_for(&[]),
        pools,
        live_src: "/pools",
    };
    let partial = query_get(&query_pairs(raw.as_deref()), "partial").is_some();
    render::page("pools.html", "pools_live.html", partial, &ctx)
}

#[derive(Serialize)]
struct ImportErrorsPage {
    #[serde(flatten)]
    frame: Frame,
    errors: Vec<ImportErrorView>,
}

#[derive(Serialize)]
struct ImportErrorView {
    tenant: String,
    filename: String,
    line: Option<u32>,
    column: Option<u32>,
    message: String,
    snippet: Vec<SnippetLine>,
}

#[derive(Serialize)]
struct SnippetLine {
    number: u32,
    text: String,
    culprit: bool,
}

pub async fn import_errors(
    State(state): State<AppState>,
    Caller(identity): Caller,
) -> Result<Response, UiError> {
    authorize(&identity, Action::Read, Resource::ImportErrors)?;
    let errors = state.store.import_errors().await?;
    let folder = state.config.dags_folder.clone();
    let errors: Vec<_> = errors
        .into_iter()
        .filter(|e| {
            authorize(
                &identity,
                Action::Read,
                Resource::ImportError { tenant: &e.tenant },
            )
            .is_ok()
        })
        .collect();
    // Reading the files may block (a slow disk): not on the runtime's threads.
    let errors = tokio::task::spawn_blocking(move || {
        errors
            .into_iter()
            .map(|e| ImportErrorView {
                snippet: e
                    .line
                    .map(|line| snippet(&folder, &e.filename, line))
                    .unwrap_or_default(),
                tenant: e.tenant,
                filename: e.filename,
                line: e.line,
                column: e.column,
                message: e.message,
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| {
        UiError(ApiError::internal(format!(
            "reading import errors' context: {e}"
        )))
    })?;
    let ctx = ImportErrorsPage {
        frame: Frame::new("Import errors", "import_errors"),
        errors,
    };
    render::page("import_errors.html", "import_errors.html", false, &ctx)
}

/// The lines around `line`, read only from a regular file inside the DAGs folder (see
/// [`updraft_dag::excerpt`]).
fn snippet(folder: &Path, filename: &str, line: u32) -> Vec<SnippetLine> {
    updraft_dag::excerpt(folder, filename, line, CONTEXT_LINES)
        .into_iter()
        .map(|l| SnippetLine {
            culprit: l.number == line,
            number: l.number,
            text: l.text,
        })
        .collect()
}
