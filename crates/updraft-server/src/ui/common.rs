//! Pieces every page shares: the page frame, state names, loading a DAG for its pages.

use chrono::{DateTime, Utc};
use serde::Serialize;
use updraft_core::TaskState;
use updraft_core::timetable::{DataInterval, next_interval};
use updraft_store::{DagRow, RunRow};

use super::format::{self, enc};
use super::render::UiError;
use crate::auth::{Action, Identity, Resource, authorize};
use crate::state::AppState;

/// What the frame around every page needs.
#[derive(Debug, Serialize)]
pub struct Frame {
    pub title: String,
    /// Highlighted navigation entry: `dags`, `pools`, `import_errors`.
    pub section: &'static str,
    /// Server-Sent Events the page follows to refresh its live part (`None`: not live).
    pub events: Option<String>,
}

impl Frame {
    pub fn new(title: impl Into<String>, section: &'static str) -> Self {
        Frame {
            title: title.into(),
            section,
            events: None,
        }
    }

    /// Follow the changes of these DAGs (all visible DAGs when empty).
    pub fn live_for(mut self, dag_ids: &[&str]) -> Self {
        let query: Vec<String> = dag_ids
            .iter()
            .map(|id| format!("dag_id={}", enc(id)))
            .collect();
        self.events = Some(if query.is_empty() {
            "/ui/events".to_string()
        } else {
            format!("/ui/events?{}", query.join("&"))
        });
        self
    }
}

/// A state as shown: its name (the CSS class picks the colour) and the words for it.
pub fn task_state_label(state: TaskState) -> &'static str {
    match state {
        TaskState::None => "no status",
        other => other.as_str(),
    }
}

/// A run's state mark or a task instance's cell.
#[derive(Debug, Serialize)]
pub struct Mark {
    /// State name, used as the CSS class (`st-success`).
    pub state: String,
    /// Human words, always shown or given as the title (never colour alone).
    pub label: String,
    pub title: String,
    pub url: String,
    /// A mapped task's instances in the run (its grid cell shows the count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapped: Option<usize>,
}

/// The DAG's header, shown above every tab.
#[derive(Debug, Serialize)]
pub struct DagHeader {
    pub dag_id: String,
    pub url: String,
    pub tenant: String,
    pub description: Option<String>,
    pub fileloc: String,
    pub schedule: String,
    pub timezone: String,
    pub tags: Vec<String>,
    pub is_paused: bool,
    pub is_active: bool,
    pub next_run: String,
    pub next_run_iso: String,
    pub next_run_title: String,
    pub max_active_runs: u32,
    pub task_count: usize,
    /// Active tab: grid, graph, gantt, code, runs, trigger, run, task.
    pub tab: &'static str,
    /// What the caller may do (buttons for the rest are not shown; the API refuses them).
    pub can: Abilities,
    /// The DAG source it was last read from; `None`: the plain DAGs folder.
    pub bundle: Option<BundleView>,
}

/// A DAG's source and the revision it was last read at, linked to its commit page when the
/// source makes one.
#[derive(Debug, Serialize)]
pub struct BundleView {
    pub name: String,
    pub version: Option<String>,
    pub version_short: String,
    pub url: Option<String>,
}

/// Source `name` (`None`: the plain DAGs folder, shown as nothing) at `version`.
pub async fn bundle_view(
    state: &AppState,
    name: Option<&str>,
    version: Option<String>,
) -> Result<Option<BundleView>, UiError> {
    let Some(name) = name else {
        return Ok(None);
    };
    let source = state.store.source(name).await?;
    let url = match (&source, version.as_deref()) {
        (Some(source), Some(version)) => crate::api::models::revision_url(source, version),
        _ => None,
    };
    Ok(Some(BundleView {
        name: name.to_string(),
        version_short: version
            .as_deref()
            .map(super::sources::short_revision)
            .unwrap_or_default(),
        version,
        url,
    }))
}

/// The actions on a DAG the caller is allowed, by [`authorize`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Abilities {
    /// Pause, clear, mark.
    pub edit: bool,
    pub trigger: bool,
    pub delete: bool,
}

impl Abilities {
    pub fn of(identity: &Identity, tenant: &str, dag_id: &str) -> Abilities {
        let may = |action| authorize(identity, action, Resource::Dag { tenant, dag_id }).is_ok();
        Abilities {
            edit: may(Action::Edit),
            trigger: may(Action::Trigger),
            delete: may(Action::Delete),
        }
    }
}

/// The DAG, if it exists and the caller may read it.
pub async fn load_dag(
    state: &AppState,
    identity: &Identity,
    dag_id: &str,
) -> Result<DagRow, UiError> {
    let row = state
        .store
        .dag(dag_id)
        .await?
        .ok_or_else(|| crate::auth::dag_not_found(dag_id))?;
    authorize(
        identity,
        Action::Read,
        Resource::Dag {
            tenant: &row.dag.tenant,
            dag_id,
        },
    )?;
    Ok(row)
}

/// The next run the scheduler will create, as (logical date, "runs after" title).
pub fn next_run(
    row: &DagRow,
    latest_scheduled: Option<&RunRow>,
    now: DateTime<Utc>,
) -> Option<DataInterval> {
    if !row.is_active {
        return None;
    }
    let last =
        latest_scheduled.map(|r| DataInterval::new(r.data_interval_start, r.data_interval_end));
    next_interval(&row.dag, last.as_ref(), now)
}

pub fn next_run_title(next: Option<&DataInterval>) -> String {
    match next {
        Some(i) => format!(
            "next run: logical date {} UTC, created once {} UTC has passed",
            format::time(Some(i.start)),
            format::time(Some(i.end))
        ),
        None => "no further scheduled runs".to_string(),
    }
}

pub async fn dag_header(
    state: &AppState,
    identity: &Identity,
    row: &DagRow,
    tab: &'static str,
) -> Result<DagHeader, UiError> {
    let latest = state.store.latest_scheduled_run(&row.dag.dag_id).await?;
    let bundle = bundle_view(
        state,
        row.bundle_name.as_deref(),
        row.bundle_version.clone(),
    )
    .await?;
    let next = next_run(row, latest.as_ref(), Utc::now());
    let dag = &row.dag;
    Ok(DagHeader {
        dag_id: dag.dag_id.clone(),
        url: format::dag_url(&dag.dag_id),
        tenant: dag.tenant.clone(),
        description: dag.description.clone(),
        fileloc: dag.fileloc.clone(),
        schedule: dag.schedule.to_string(),
        timezone: dag.timezone.name().to_string(),
        tags: dag.tags.clone(),
        is_paused: row.is_paused,
        is_active: row.is_active,
        next_run: format::time(next.map(|i| i.start)),
        next_run_iso: format::iso(next.map(|i| i.start)),
        next_run_title: next_run_title(next.as_ref()),
        max_active_runs: dag.max_active_runs,
        task_count: dag.tasks.len(),
        tab,
        can: Abilities::of(identity, &dag.tenant, &dag.dag_id),
        bundle,
    })
}

/// A run as listed: identity, state, dates.
#[derive(Debug, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub url: String,
    pub state: String,
    pub run_type: String,
    pub logical_date: String,
    pub logical_date_iso: String,
    pub data_interval: String,
    pub queued_at: String,
    pub start_date: String,
    pub end_date: String,
    pub duration: String,
    pub duration_ms: i64,
    pub title: String,
    pub version: String,
}

pub fn run_summary(run: &RunRow, now: DateTime<Utc>) -> RunSummary {
    let duration_ms = run
        .start_date
        .map(|s| (run.end_date.unwrap_or(now) - s).num_milliseconds().max(0))
        .unwrap_or(0);
    let duration = format::span(run.start_date, run.end_date, now);
    RunSummary {
        run_id: run.run_id.clone(),
        url: format::run_url(&run.dag_id, &run.run_id),
        state: run.state.as_str().to_string(),
        run_type: run.run_type.as_str().to_string(),
        logical_date: format::time(Some(run.logical_date)),
        logical_date_iso: format::iso(Some(run.logical_date)),
        data_interval: format!(
            "{} → {}",
            format::time(Some(run.data_interval_start)),
            format::time(Some(run.data_interval_end))
        ),
        queued_at: format::time(Some(run.queued_at)),
        start_date: format::time(run.start_date),
        end_date: format::time(run.end_date),
        title: format!(
            "run {}: {} (logical date {}{})",
            run.run_id,
            run.state,
            format::time(Some(run.logical_date)),
            if duration.is_empty() {
                String::new()
            } else {
                format!(", {duration}")
            }
        ),
        duration,
        duration_ms,
        version: run.version.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Grant, Role};

    #[test]
    fn abilities_follow_authorization() {
        let admin = Abilities::of(&Identity::local_admin(), "t", "d");
        assert!(admin.edit && admin.trigger && admin.delete);
        let viewer = Identity::new("v", vec![Grant::everywhere(Role::Viewer)]);
        let seen = Abilities::of(&viewer, "t", "d");
        assert!(!seen.edit && !seen.trigger && !seen.delete);
        let elsewhere = Identity::new("o", vec![Grant::for_tenant(Role::Admin, "other")]);
        assert!(!Abilities::of(&elsewhere, "t", "d").trigger);
    }
}
