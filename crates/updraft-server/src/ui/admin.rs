//! Pools and import errors.

use std::path::{Component, Path};

use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde::Serialize;

use super::common::Frame;
use super::format::{query_get, query_pairs};
use super::render::{self, UiError};
use crate::auth::{Action, Identity, Resource, authorize};
use crate::state::AppState;

/// Lines of context shown around an import error's line.
const CONTEXT_LINES: u32 = 3;
/// Largest DAG file read for showing context.
const MAX_SNIPPET_FILE: u64 = 1 << 20;

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
    identity: Identity,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    authorize(&identity, Action::Read, Resource::Pools)?;
    let (pools, counts) = tokio::join!(state.store.pools(), state.store.active_counts());
    let counts = counts?;
    let pools = pools?
        .into_iter()
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
    identity: Identity,
) -> Result<Response, UiError> {
    authorize(&identity, Action::Read, Resource::ImportErrors)?;
    let errors = state.store.import_errors().await?;
    let folder = state.config.dags_folder.clone();
    let errors = errors
        .into_iter()
        .filter(|e| {
            authorize(
                &identity,
                Action::Read,
                Resource::Dag {
                    tenant: &e.tenant,
                    dag_id: &e.filename,
                },
            )
            .is_ok()
        })
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
        .collect();
    let ctx = ImportErrorsPage {
        frame: Frame::new("Import errors", "import_errors"),
        errors,
    };
    render::page("import_errors.html", "import_errors.html", false, &ctx)
}

/// The lines around `line` of a DAG file, read from the DAGs folder (only plain relative
/// paths inside it; nothing if the file is unreadable or large).
fn snippet(folder: &Path, filename: &str, line: u32) -> Vec<SnippetLine> {
    let relative = Path::new(filename);
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Vec::new();
    }
    let path = folder.join(relative);
    let Ok(meta) = std::fs::metadata(&path) else {
        return Vec::new();
    };
    if !meta.is_file() || meta.len() > MAX_SNIPPET_FILE {
        return Vec::new();
    }
    let Ok(bytes) = std::fs::read(&path) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let first = line.saturating_sub(CONTEXT_LINES).max(1);
    let last = line + CONTEXT_LINES;
    text.lines()
        .enumerate()
        .map(|(i, l)| (i as u32 + 1, l))
        .filter(|(n, _)| (first..=last).contains(n))
        .map(|(number, l)| SnippetLine {
            number,
            text: l.to_string(),
            culprit: number == line,
        })
        .collect()
}
