//! The DAG list (`/`, `/dags`): filters, paused toggles, next runs, recent runs, and the
//! import errors banner.
//!
//! Cost per request: the DAG rows and the import errors (one query each), then for the shown
//! page only, the recent runs of all its DAGs and their latest scheduled runs (one query
//! each). Nothing is asked per DAG.

use std::collections::{BTreeSet, HashMap};

use axum::extract::{RawQuery, State};
use axum::response::Response;
use chrono::Utc;
use serde::Serialize;
use updraft_store::{DagRow, RunRow};

use super::common::{Abilities, Frame, Mark, next_run, next_run_title};
use super::format::{self, enc, query_all, query_get, query_pairs};
use super::render::{self, UiError};
use crate::auth::{Action, Caller, Resource, authorize};
use crate::state::AppState;

/// DAGs per page.
pub const PAGE_SIZE: usize = 50;
/// Recent runs shown per DAG.
pub const RECENT_RUNS: u32 = 10;
/// Import errors shown in the banner (the rest on their own page).
const BANNER_ERRORS: usize = 5;

#[derive(Serialize)]
struct Page {
    #[serde(flatten)]
    frame: Frame,
    rows: Vec<Row>,
    search: String,
    tags: Vec<TagChoice>,
    tenants: Vec<TenantChoice>,
    tenant: String,
    status: &'static str,
    counts: Counts,
    pages: Vec<PageLink>,
    page: usize,
    total_pages: usize,
    shown_from: usize,
    shown_to: usize,
    filtered_total: usize,
    import_errors: Vec<ImportErrorLine>,
    import_error_count: usize,
    live_src: String,
}

#[derive(Serialize)]
struct Counts {
    all: usize,
    active: usize,
    paused: usize,
    all_url: String,
    active_url: String,
    paused_url: String,
}

#[derive(Serialize)]
struct Row {
    dag_id: String,
    url: String,
    tenant: String,
    description: Option<String>,
    tags: Vec<String>,
    schedule: String,
    is_paused: bool,
    next_run: String,
    next_run_iso: String,
    next_run_title: String,
    recent: Vec<Mark>,
    last_run: String,
    trigger_url: String,
    can: Abilities,
}

#[derive(Serialize)]
struct TagChoice {
    name: String,
    selected: bool,
    /// The list with this tag toggled.
    url: String,
}

#[derive(Serialize)]
struct TenantChoice {
    name: String,
    selected: bool,
}

#[derive(Serialize)]
struct PageLink {
    number: usize,
    url: String,
    current: bool,
}

#[derive(Serialize)]
pub struct ImportErrorLine {
    pub tenant: String,
    pub filename: String,
    pub location: String,
    pub message: String,
}

/// The list's filters, as given in the query string.
struct Filters {
    search: String,
    tags: Vec<String>,
    tenant: String,
    status: &'static str,
    page: usize,
}

impl Filters {
    fn parse(raw: Option<&str>) -> (Filters, bool) {
        let pairs = query_pairs(raw);
        let status = match query_get(&pairs, "status") {
            Some("active") => "active",
            Some("paused") => "paused",
            _ => "all",
        };
        let filters = Filters {
            search: query_get(&pairs, "search").unwrap_or("").trim().to_string(),
            tags: query_all(&pairs, "tags")
                .into_iter()
                .map(str::to_string)
                .collect(),
            tenant: query_get(&pairs, "tenant").unwrap_or("").to_string(),
            status,
            page: query_get(&pairs, "page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1)
                .max(1),
        };
        (filters, query_get(&pairs, "partial").is_some())
    }

    /// The list URL with these filters, changed by `edit`.
    fn url(&self, edit: impl FnOnce(&mut Filters)) -> String {
        let mut f = Filters {
            search: self.search.clone(),
            tags: self.tags.clone(),
            tenant: self.tenant.clone(),
            status: self.status,
            page: self.page,
        };
        edit(&mut f);
        let mut q: Vec<String> = Vec::new();
        if !f.search.is_empty() {
            q.push(format!("search={}", enc(&f.search)));
        }
        for t in &f.tags {
            q.push(format!("tags={}", enc(t)));
        }
        if !f.tenant.is_empty() {
            q.push(format!("tenant={}", enc(&f.tenant)));
        }
        if f.status != "all" {
            q.push(format!("status={}", f.status));
        }
        if f.page > 1 {
            q.push(format!("page={}", f.page));
        }
        if q.is_empty() {
            "/dags".to_string()
        } else {
            format!("/dags?{}", q.join("&"))
        }
    }

    fn matches(&self, row: &DagRow, needle: &str) -> bool {
        let dag = &row.dag;
        (needle.is_empty()
            || dag.dag_id.to_lowercase().contains(needle)
            || dag
                .description
                .as_deref()
                .is_some_and(|d| d.to_lowercase().contains(needle)))
            && (self.tags.is_empty() || dag.tags.iter().any(|t| self.tags.contains(t)))
            && (self.tenant.is_empty() || dag.tenant == self.tenant)
    }
}

pub async fn list(
    State(state): State<AppState>,
    Caller(identity): Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    authorize(&identity, Action::Read, Resource::Dags)?;
    let (filters, partial) = Filters::parse(raw.as_deref());
    let (dags, errors) = tokio::join!(state.store.dags(), state.store.import_errors());
    let visible: Vec<DagRow> = dags?
        .into_iter()
        .filter(|d| {
            d.is_active
                && authorize(
                    &identity,
                    Action::Read,
                    Resource::Dag {
                        tenant: &d.dag.tenant,
                        dag_id: &d.dag.dag_id,
                    },
                )
                .is_ok()
        })
        .collect();
    let all_tags: BTreeSet<&str> = visible
        .iter()
        .flat_map(|d| d.dag.tags.iter().map(String::as_str))
        .collect();
    let tenants: BTreeSet<&str> = visible.iter().map(|d| d.dag.tenant.as_str()).collect();
    let needle = filters.search.to_lowercase();
    let matching: Vec<&DagRow> = visible
        .iter()
        .filter(|d| filters.matches(d, &needle))
        .collect();
    let paused = matching.iter().filter(|d| d.is_paused).count();
    let counts = Counts {
        all: matching.len(),
        active: matching.len() - paused,
        paused,
        all_url: filters.url(|f| {
            f.status = "all";
            f.page = 1
        }),
        active_url: filters.url(|f| {
            f.status = "active";
            f.page = 1
        }),
        paused_url: filters.url(|f| {
            f.status = "paused";
            f.page = 1
        }),
    };
    let shown: Vec<&DagRow> = matching
        .into_iter()
        .filter(|d| match filters.status {
            "active" => !d.is_paused,
            "paused" => d.is_paused,
            _ => true,
        })
        .collect();
    let total_pages = shown.len().div_ceil(PAGE_SIZE).max(1);
    let page = filters.page.min(total_pages);
    let first = (page - 1) * PAGE_SIZE;
    let on_page: Vec<&DagRow> = shown.iter().skip(first).take(PAGE_SIZE).copied().collect();
    let ids: Vec<String> = on_page.iter().map(|d| d.dag.dag_id.clone()).collect();

    let (recent, latest) = tokio::join!(
        state.store.recent_runs(&ids, RECENT_RUNS),
        state.store.latest_scheduled_runs(&ids)
    );
    let mut recent_by_dag: HashMap<String, Vec<RunRow>> = HashMap::new();
    for run in recent? {
        recent_by_dag
            .entry(run.dag_id.clone())
            .or_default()
            .push(run);
    }
    let latest_by_dag: HashMap<String, RunRow> =
        latest?.into_iter().map(|r| (r.dag_id.clone(), r)).collect();
    let now = Utc::now();
    let rows: Vec<Row> = on_page
        .iter()
        .map(|d| {
            let dag = &d.dag;
            let next = next_run(d, latest_by_dag.get(&dag.dag_id), now);
            let mut runs = recent_by_dag.remove(&dag.dag_id).unwrap_or_default();
            runs.reverse(); // oldest left, newest right
            let last_run = runs
                .last()
                .map(|r| format::time(Some(r.logical_date)))
                .unwrap_or_default();
            Row {
                dag_id: dag.dag_id.clone(),
                url: format::dag_url(&dag.dag_id),
                tenant: dag.tenant.clone(),
                description: dag.description.clone(),
                tags: dag.tags.clone(),
                schedule: dag.schedule.to_string(),
                is_paused: d.is_paused,
                next_run: format::time(next.map(|i| i.start)),
                next_run_iso: format::iso(next.map(|i| i.start)),
                next_run_title: next_run_title(next.as_ref()),
                recent: runs
                    .iter()
                    .map(|r| Mark {
                        state: r.state.as_str().to_string(),
                        label: r.state.as_str().to_string(),
                        title: format!(
                            "{}: {} (logical date {})",
                            r.run_id,
                            r.state,
                            format::time(Some(r.logical_date))
                        ),
                        url: format!(
                            "{}/graph?run_id={}",
                            format::dag_url(&r.dag_id),
                            enc(&r.run_id)
                        ),
                        mapped: None,
                    })
                    .collect(),
                last_run,
                trigger_url: format!("{}/trigger", format::dag_url(&dag.dag_id)),
                can: Abilities::of(&identity, &dag.tenant, &dag.dag_id),
            }
        })
        .collect();

    let errors = errors?;
    let errors: Vec<ImportErrorLine> =
        if authorize(&identity, Action::Read, Resource::ImportErrors).is_ok() {
            errors
                .iter()
                .filter(|e| {
                    authorize(
                        &identity,
                        Action::Read,
                        Resource::ImportError { tenant: &e.tenant },
                    )
                    .is_ok()
                })
                .map(import_error_line)
                .collect()
        } else {
            Vec::new()
        };
    let import_error_count = errors.len();
    let tags = all_tags
        .iter()
        .map(|t| {
            let selected = filters.tags.iter().any(|s| s == t);
            TagChoice {
                name: t.to_string(),
                selected,
                url: filters.url(|f| {
                    if selected {
                        f.tags.retain(|s| s != t);
                    } else {
                        f.tags.push(t.to_string());
                    }
                    f.page = 1;
                }),
            }
        })
        .collect();
    let pages = (1..=total_pages)
        .map(|number| PageLink {
            number,
            url: filters.url(|f| f.page = number),
            current: number == page,
        })
        .collect();
    let live_ids: Vec<&str> = rows.iter().map(|r| r.dag_id.as_str()).collect();
    let ctx = Page {
        // An empty page has nothing to follow (an empty filter would mean every DAG).
        frame: if live_ids.is_empty() {
            Frame::new("DAGs", "dags")
        } else {
            Frame::new("DAGs", "dags").live_for(&live_ids)
        },
        live_src: filters.url(|f| f.page = page),
        rows,
        search: filters.search.clone(),
        tags,
        tenants: tenants
            .iter()
            .map(|t| TenantChoice {
                name: t.to_string(),
                selected: *t == filters.tenant,
            })
            .collect(),
        tenant: filters.tenant.clone(),
        status: filters.status,
        counts,
        pages,
        page,
        total_pages,
        shown_from: if shown.is_empty() { 0 } else { first + 1 },
        shown_to: first + on_page.len(),
        filtered_total: shown.len(),
        import_errors: errors.into_iter().take(BANNER_ERRORS).collect(),
        import_error_count,
    };
    render::page("dags.html", "dags_live.html", partial, &ctx)
}

pub fn import_error_line(e: &updraft_dag::ImportError) -> ImportErrorLine {
    ImportErrorLine {
        tenant: e.tenant.clone(),
        filename: e.filename.clone(),
        location: match (e.line, e.column) {
            (Some(l), Some(c)) => format!("line {l}, column {c}"),
            (Some(l), None) => format!("line {l}"),
            _ => String::new(),
        },
        message: e.message.clone(),
    }
}
