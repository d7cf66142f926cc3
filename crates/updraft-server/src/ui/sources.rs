//! DAG sources in the UI: the Sources page (each source's revision, last sync and error, a
//! Sync button for those allowed) and the banner every page shows while a source the caller
//! may see is failing.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;
use updraft_store::SourceRow;

use super::common::Frame;
use super::format;
use super::render::{self, UiError};
use crate::api::models::{revision_url, without_credentials};
use crate::auth::{Action, Caller, Identity, Resource, allows, authorize};
use crate::state::AppState;

/// A failing source, as the banner shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SourceAlert {
    pub name: String,
    pub error: String,
    pub failures: i64,
    /// When it last synced well; empty if never.
    pub last_success: String,
    pub last_success_iso: String,
}

tokio::task_local! {
    static SOURCE_ALERTS: Vec<SourceAlert>;
}

/// The current page's failing sources (none outside a page request).
pub fn source_alerts() -> Vec<SourceAlert> {
    SOURCE_ALERTS.try_with(Clone::clone).unwrap_or_default()
}

fn resource(source: &SourceRow) -> Resource<'_> {
    Resource::Source {
        tenant: source.tenant.as_deref(),
        name: &source.name,
    }
}

/// A source is failing while its last sync failed: it keeps serving its last good revision.
fn alert(source: &SourceRow) -> Option<SourceAlert> {
    let error = source.error.clone()?;
    Some(SourceAlert {
        name: source.name.clone(),
        error,
        failures: source.failures,
        last_success: format::time(source.last_success_at),
        last_success_iso: format::iso(source.last_success_at),
    })
}

/// Middleware of the UI's pages: finds the failing sources the caller may see, for the banner
/// `render::html` puts on every page. A store that cannot be read shows no banner (the page
/// itself then reports the store's failure).
pub async fn banner(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path.starts_with("/ui/") {
        return next.run(request).await;
    }
    let alerts = match request.extensions().get::<Identity>() {
        Some(identity) => failing_sources(&state, identity).await,
        None => Vec::new(),
    };
    SOURCE_ALERTS.scope(alerts, next.run(request)).await
}

async fn failing_sources(state: &AppState, identity: &Identity) -> Vec<SourceAlert> {
    let Ok(sources) = state.store.sources().await else {
        return Vec::new();
    };
    sources
        .iter()
        .filter(|s| allows(identity, Action::Read, resource(s)))
        .filter_map(alert)
        .collect()
}

#[derive(Serialize)]
struct SourcesPage {
    #[serde(flatten)]
    frame: Frame,
    sources: Vec<SourceLine>,
}

#[derive(Serialize)]
struct SourceLine {
    name: String,
    tenant: Option<String>,
    kind: String,
    url: String,
    reference: Option<String>,
    revision: Option<String>,
    revision_short: String,
    revision_url: Option<String>,
    last_sync: String,
    last_sync_iso: String,
    last_success: String,
    last_success_iso: String,
    failures: i64,
    error: Option<String>,
    requested: String,
    sync_api: String,
    can_sync: bool,
}

/// A revision as shown: a commit sha's first 12 characters.
pub fn short_revision(revision: &str) -> String {
    revision.chars().take(12).collect()
}

fn line(identity: &Identity, source: &SourceRow) -> SourceLine {
    let revision_link = source
        .revision
        .as_deref()
        .and_then(|revision| revision_url(source, revision));
    SourceLine {
        name: source.name.clone(),
        tenant: source.tenant.clone(),
        kind: source.kind.clone(),
        url: without_credentials(&source.url),
        reference: source.reference.clone(),
        revision_short: source
            .revision
            .as_deref()
            .map(short_revision)
            .unwrap_or_default(),
        revision: source.revision.clone(),
        revision_url: revision_link,
        last_sync: format::time(source.last_sync_at),
        last_sync_iso: format::iso(source.last_sync_at),
        last_success: format::time(source.last_success_at),
        last_success_iso: format::iso(source.last_success_at),
        failures: source.failures,
        error: source.error.clone(),
        requested: format::time(source.sync_requested_at),
        sync_api: format!("/api/v2/sources/{}/sync", format::enc(&source.name)),
        can_sync: allows(identity, Action::Trigger, resource(source)),
    }
}

/// `/sources`: the sources the caller may see.
pub async fn sources_page(
    State(state): State<AppState>,
    Caller(identity): Caller,
) -> Result<Response, UiError> {
    authorize(&identity, Action::Read, Resource::Sources)?;
    let sources = state
        .store
        .sources()
        .await?
        .iter()
        .filter(|s| allows(&identity, Action::Read, resource(s)))
        .map(|s| line(&identity, s))
        .collect();
    let ctx = SourcesPage {
        frame: Frame::new("DAG sources", "sources"),
        sources,
    };
    render::page("sources.html", "sources.html", false, &ctx)
}
