//! One DAG's tabs: grid, graph, Gantt, code, runs, and the trigger form.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use chrono::Utc;
use serde::Serialize;
use updraft_core::TaskState;
use updraft_dag::{Dag, ParamType};
use updraft_store::{NewestRunsFilter, RunRow, TiRow};

use super::common::{
    DagHeader, Frame, Mark, RunSummary, dag_header, load_dag, run_summary, task_state_label,
};
use super::format::{self, enc, query_get, query_pairs};
use super::groups::{GroupView, grouped_order};
use super::layout::{self, NODE_HEIGHT};
use super::render::{self, UiError};
use crate::auth::{Caller, Identity};
use crate::error::ApiError;
use crate::state::AppState;

/// Runs the grid shows unless asked otherwise, and the most it shows.
pub const GRID_RUNS: usize = 25;
const GRID_MAX_RUNS: usize = 100;
/// Cells one grid page shows at most: it shows `GRID_CELLS / runs` task rows (within
/// [`GRID_MIN_ROWS`] and [`GRID_MAX_ROWS`]), and pages through the rest, so a DAG of any size
/// gets a page of bounded size.
const GRID_CELLS: usize = 2_500;
const GRID_MIN_ROWS: usize = 20;
const GRID_MAX_ROWS: usize = 200;
/// Above this many tasks the graph is summarised (tasks counted by depth and state) instead of
/// drawn node by node.
pub const GRAPH_MAX_NODES: usize = 500;
/// Most groups (rows) of a summarised graph: depths are merged into ranges beyond it.
const GRAPH_MAX_GROUPS: usize = 100;
/// Runs offered in the graph's and Gantt's run pickers.
const PICKER_RUNS: u32 = 25;
/// Runs listed on the runs tab.
const RUNS_TAB_LIMIT: u32 = 100;

#[derive(Serialize)]
struct Legend {
    state: &'static str,
    label: &'static str,
}

fn legend() -> Vec<Legend> {
    TaskState::ALL
        .iter()
        .map(|s| Legend {
            state: s.as_str(),
            label: task_state_label(*s),
        })
        .collect()
}

/// The tasks of `dag` in topological order, then any other task ids seen in `tis` (tasks a
/// run has that the definition no longer has).
fn task_order(dag: &Dag, tis: &[TiRow]) -> Vec<(String, bool)> {
    let mut order: Vec<(String, bool)> = dag
        .topological_order()
        .into_iter()
        .map(|t| (t.task_id.clone(), true))
        .collect();
    let mut extra: Vec<String> = tis
        .iter()
        .filter(|ti| dag.task(&ti.task_id).is_none())
        .map(|ti| ti.task_id.clone())
        .collect();
    extra.sort();
    extra.dedup();
    order.extend(extra.into_iter().map(|id| (id, false)));
    order
}

fn ti_mark(ti: &TiRow) -> Mark {
    let label = task_state_label(ti.state);
    let tries = if ti.try_number > 1 {
        format!(", try {}", ti.try_number)
    } else {
        String::new()
    };
    Mark {
        state: ti.state.as_str().to_string(),
        label: label.to_string(),
        title: format!("{} in {}: {label}{tries}", ti.task_id, ti.run_id),
        url: format::ti_url(&ti.dag_id, &ti.run_id, &ti.task_id),
        mapped: None,
    }
}

/// The grid cell of a task's instances in one run: an unmapped instance's own mark, or for a
/// mapped task its count and a summary of its instances' states (the state shown is the most
/// pressing one present: a failure, then what still runs or waits, then the finished ones).
fn cell_mark(tis: &[&TiRow]) -> Option<Mark> {
    match tis {
        [] => None,
        [ti] if ti.map_index < 0 => Some(ti_mark(ti)),
        _ => Some(mapped_mark(tis)),
    }
}

fn mapped_mark(tis: &[&TiRow]) -> Mark {
    use updraft_core::TaskState as S;
    const PRESSING: [S; 11] = [
        S::Failed,
        S::UpstreamFailed,
        S::Running,
        S::Queued,
        S::UpForRetry,
        S::UpForReschedule,
        S::Scheduled,
        S::None,
        S::Success,
        S::Skipped,
        S::Removed,
    ];
    let count = |state: S| tis.iter().filter(|ti| ti.state == state).count();
    let shown = PRESSING
        .into_iter()
        .find(|s| count(*s) > 0)
        .unwrap_or(S::None);
    let summary: Vec<String> = PRESSING
        .into_iter()
        .filter_map(|s| match count(s) {
            0 => None,
            n => Some(format!("{n} {}", task_state_label(s))),
        })
        .collect();
    let first = tis[0];
    Mark {
        state: shown.as_str().to_string(),
        label: format!("[{}]", tis.len()),
        title: format!(
            "{} in {}: {} mapped ({})",
            first.task_id,
            first.run_id,
            tis.len(),
            summary.join(", ")
        ),
        url: format::ti_url(&first.dag_id, &first.run_id, &first.task_id),
        mapped: Some(tis.len()),
    }
}

fn partial(raw: &Option<String>) -> bool {
    query_get(&query_pairs(raw.as_deref()), "partial").is_some()
}

// ---- grid -------------------------------------------------------------------------------

#[derive(Serialize)]
struct GridPage {
    #[serde(flatten)]
    frame: Frame,
    dag: DagHeader,
    runs: Vec<GridRun>,
    rows: Vec<GridRow>,
    num_runs: usize,
    run_choices: Vec<Choice>,
    /// Set when the DAG has more task rows than one page shows.
    pager: Option<Pager>,
    legend: Vec<Legend>,
    live_src: String,
}

/// Where a grid page is among the DAG's task rows.
#[derive(Serialize)]
struct Pager {
    /// 1-based, of the first and last task row shown.
    first: usize,
    last: usize,
    total: usize,
    previous: Option<String>,
    next: Option<String>,
}

#[derive(Serialize)]
struct Choice {
    label: String,
    url: String,
    selected: bool,
}

#[derive(Serialize)]
struct GridRun {
    #[serde(flatten)]
    run: RunSummary,
    /// Height of the run's duration bar, in percent of the longest shown.
    bar: u32,
    graph_url: String,
}

#[derive(Serialize)]
struct GridRow {
    task_id: String,
    /// The id shown: the task's own id inside its group, else the full id.
    label: String,
    /// How many groups hold the task (its indentation).
    depth: usize,
    /// Rows for the groups this row is the first shown row of, outermost first.
    groups_before: Vec<GridGroup>,
    /// False for a task the current definition no longer has.
    current: bool,
    cells: Vec<Option<Mark>>,
}

#[derive(Serialize)]
struct GridGroup {
    group_id: String,
    label: String,
    depth: usize,
}

/// Task rows per grid page when `runs` runs are shown.
fn grid_rows_per_page(runs: usize) -> usize {
    (GRID_CELLS / runs.max(1)).clamp(GRID_MIN_ROWS, GRID_MAX_ROWS)
}

/// The grid's task rows: the current definition's tasks in topological order (a group's tasks
/// kept together), then tasks the
/// shown runs' pinned versions have and it no longer has (read from those versions, so no
/// instance is read for rows off the page).
async fn grid_task_order(
    state: &AppState,
    current: &updraft_store::DagRow,
    runs: &[RunRow],
) -> Result<Vec<(String, bool)>, UiError> {
    let mut order: Vec<(String, bool)> = grouped_order(&current.dag)
        .into_iter()
        .map(|t| (t.task_id.clone(), true))
        .collect();
    let mut versions: Vec<&str> = runs
        .iter()
        .map(|r| r.version.as_str())
        .filter(|v| *v != current.version)
        .collect();
    versions.sort_unstable();
    versions.dedup();
    let known: std::collections::HashSet<&str> = order.iter().map(|(id, _)| id.as_str()).collect();
    let mut extra: Vec<String> = Vec::new();
    for version in versions {
        if let Some(pinned) = state
            .store
            .dag_version(&current.dag.dag_id, version)
            .await?
        {
            extra.extend(
                pinned
                    .tasks
                    .into_iter()
                    .filter(|t| !known.contains(t.task_id.as_str()))
                    .map(|t| t.task_id),
            );
        }
    }
    extra.sort();
    extra.dedup();
    order.extend(extra.into_iter().map(|id| (id, false)));
    Ok(order)
}

pub async fn grid(
    State(state): State<AppState>,
    Caller(identity): Caller,
    Path(dag_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let row = load_dag(&state, &identity, &dag_id).await?;
    let pairs = query_pairs(raw.as_deref());
    let num_runs = query_get(&pairs, "num_runs")
        .and_then(|n| n.parse().ok())
        .unwrap_or(GRID_RUNS)
        .clamp(1, GRID_MAX_RUNS);
    let page: usize = query_get(&pairs, "page")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
        .max(1);
    let filter = NewestRunsFilter {
        dag_id: Some(dag_id.clone()),
        states: Vec::new(),
        limit: Some(num_runs as u32),
    };
    let (header, runs) = tokio::join!(
        dag_header(&state, &identity, &row, "grid"),
        state.store.newest_runs(&filter)
    );
    let header = header?;
    let mut runs = runs?;
    runs.reverse(); // oldest left
    let order = grid_task_order(&state, &row, &runs).await?;
    let per_page = grid_rows_per_page(runs.len());
    let pages = order.len().div_ceil(per_page).max(1);
    let page = page.min(pages);
    let first = (page - 1) * per_page;
    let shown: Vec<(String, bool)> = order.iter().skip(first).take(per_page).cloned().collect();
    let pks: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let task_ids: Vec<String> = shown.iter().map(|(id, _)| id.clone()).collect();
    let tis = state
        .store
        .task_instances_of_runs_for_tasks(&pks, &task_ids)
        .await?;
    // A mapped task has several instances in a run.
    let mut by_key: HashMap<(i64, &str), Vec<&TiRow>> = HashMap::with_capacity(tis.len());
    for ti in &tis {
        by_key
            .entry((ti.run_pk, ti.task_id.as_str()))
            .or_default()
            .push(ti);
    }
    let now = Utc::now();
    let summaries: Vec<RunSummary> = runs.iter().map(|r| run_summary(r, now)).collect();
    let longest = summaries
        .iter()
        .map(|s| s.duration_ms)
        .max()
        .unwrap_or(0)
        .max(1);
    let grid_runs = summaries
        .into_iter()
        .zip(&runs)
        .map(|(s, r)| GridRun {
            bar: ((s.duration_ms * 100 / longest) as u32).max(4),
            graph_url: format!("{}/graph?run_id={}", header.url, enc(&r.run_id)),
            run: s,
        })
        .collect();
    let view = GroupView::new(&row.dag);
    let mut open: Vec<String> = Vec::new();
    let rows = shown
        .into_iter()
        .map(|(task_id, current)| {
            let groups = if current {
                view.groups_of(&task_id)
            } else {
                Vec::new()
            };
            let kept = open
                .iter()
                .zip(&groups)
                .take_while(|(open, g)| **open == g.group_id)
                .count();
            let groups_before = groups[kept..]
                .iter()
                .enumerate()
                .map(|(i, g)| GridGroup {
                    group_id: g.group_id.clone(),
                    label: g.label.clone(),
                    depth: kept + i,
                })
                .collect();
            open = groups.iter().map(|g| g.group_id.clone()).collect();
            let label = match groups.last() {
                Some(g) if g.prefix_group_id => task_id
                    .strip_prefix(&format!("{}.", g.group_id))
                    .unwrap_or(&task_id)
                    .to_owned(),
                _ => task_id.clone(),
            };
            GridRow {
                cells: runs
                    .iter()
                    .map(|r| {
                        by_key
                            .get(&(r.id, task_id.as_str()))
                            .and_then(|tis| cell_mark(tis))
                    })
                    .collect(),
                depth: groups.len(),
                groups_before,
                label,
                task_id,
                current,
            }
        })
        .collect();
    let page_url = |p: usize| format!("{}/grid?num_runs={num_runs}&page={p}", header.url);
    let pager = (pages > 1).then(|| Pager {
        first: first + 1,
        last: (first + per_page).min(order.len()),
        total: order.len(),
        previous: (page > 1).then(|| page_url(page - 1)),
        next: (page < pages).then(|| page_url(page + 1)),
    });
    let run_choices = [10, 25, 50, 100]
        .into_iter()
        .map(|n| Choice {
            label: n.to_string(),
            url: format!("{}/grid?num_runs={n}", header.url),
            selected: n == num_runs,
        })
        .collect();
    let live_src = if pager.is_some() {
        page_url(page)
    } else {
        format!("{}/grid?num_runs={num_runs}", header.url)
    };
    let ctx = GridPage {
        frame: Frame::new(format!("{dag_id} · grid"), "dags").live_for(&[&dag_id]),
        live_src,
        dag: header,
        runs: grid_runs,
        rows,
        num_runs,
        run_choices,
        pager,
        legend: legend(),
    };
    render::page("grid.html", "grid_live.html", partial(&raw), &ctx)
}

// ---- run picker shared by graph and Gantt --------------------------------------------------

#[derive(Serialize)]
struct RunOption {
    run_id: String,
    label: String,
    selected: bool,
}

/// What a per-run tab (graph, Gantt) starts from: the DAG, its header, the chosen run and
/// the run picker.
struct RunTab {
    row: updraft_store::DagRow,
    header: DagHeader,
    run: Option<RunRow>,
    runs: Vec<RunOption>,
}

async fn run_tab(
    state: &AppState,
    identity: &Identity,
    dag_id: &str,
    raw: &Option<String>,
    tab: &'static str,
) -> Result<RunTab, UiError> {
    let row = load_dag(state, identity, dag_id).await?;
    let (header, picked) = tokio::join!(
        dag_header(state, identity, &row, tab),
        pick_run(state, dag_id, raw)
    );
    let header = header?;
    let (run, runs) = picked?;
    Ok(RunTab {
        row,
        header,
        run,
        runs,
    })
}

/// Where a per-run tab's live part is re-fetched from.
fn run_tab_src(header: &DagHeader, tab: &str, run: Option<&RunRow>) -> String {
    match run {
        Some(r) => format!("{}/{tab}?run_id={}", header.url, enc(&r.run_id)),
        None => format!("{}/{tab}", header.url),
    }
}

/// The run chosen by `?run_id=` (else the newest) and the picker's choices.
async fn pick_run(
    state: &AppState,
    dag_id: &str,
    raw: &Option<String>,
) -> Result<(Option<RunRow>, Vec<RunOption>), UiError> {
    let pairs = query_pairs(raw.as_deref());
    let recent = state
        .store
        .newest_runs(&NewestRunsFilter {
            dag_id: Some(dag_id.to_string()),
            states: Vec::new(),
            limit: Some(PICKER_RUNS),
        })
        .await?;
    let chosen = match query_get(&pairs, "run_id") {
        Some(run_id) => match recent.iter().find(|r| r.run_id == run_id) {
            Some(r) => Some(r.clone()),
            None => Some(state.store.run(dag_id, run_id).await?.ok_or_else(|| {
                ApiError::not_found(format!("run `{run_id}` of DAG `{dag_id}` not found"))
            })?),
        },
        None => recent.first().cloned(),
    };
    let mut options: Vec<RunOption> = recent
        .iter()
        .map(|r| RunOption {
            run_id: r.run_id.clone(),
            label: format!(
                "{} · {} · {}",
                format::time(Some(r.logical_date)),
                r.run_id,
                r.state
            ),
            selected: chosen.as_ref().is_some_and(|c| c.id == r.id),
        })
        .collect();
    if let Some(c) = &chosen
        && !options.iter().any(|o| o.selected)
    {
        options.push(RunOption {
            run_id: c.run_id.clone(),
            label: format!(
                "{} · {} · {}",
                format::time(Some(c.logical_date)),
                c.run_id,
                c.state
            ),
            selected: true,
        });
    }
    Ok((chosen, options))
}

/// The definition a run is pinned to (the current one without a run, or if it is missing).
async fn pinned_dag(state: &AppState, current: &Dag, run: Option<&RunRow>) -> Result<Dag, UiError> {
    if let Some(run) = run
        && let Some(dag) = state.store.dag_version(&run.dag_id, &run.version).await?
    {
        return Ok(dag);
    }
    Ok(current.clone())
}

// ---- graph ------------------------------------------------------------------------------

#[derive(Serialize)]
struct GraphPage {
    #[serde(flatten)]
    frame: Frame,
    dag: DagHeader,
    runs: Vec<RunOption>,
    run: Option<RunSummary>,
    /// Drawn node by node, for DAGs of at most [`GRAPH_MAX_NODES`] tasks.
    graph: Option<Graph>,
    /// Tasks counted by depth and state, for bigger DAGs.
    summary: Option<GraphSummary>,
    legend: Vec<Legend>,
    live_src: String,
}

/// A graph too big to draw, as Airflow shows mapped tasks: counts instead of nodes. Tasks are
/// grouped by depth (the longest upstream path to them: a group's tasks depend only on
/// earlier groups), each group with its tasks counted by state.
#[derive(Serialize)]
pub struct GraphSummary {
    pub tasks: usize,
    pub edges: usize,
    /// The whole run's instances by state (empty without a run).
    pub states: Vec<StateCount>,
    pub groups: Vec<DepthGroup>,
}

#[derive(Serialize)]
pub struct DepthGroup {
    /// 1-based depths, first and last (equal unless depths were merged).
    pub first: usize,
    pub last: usize,
    pub tasks: usize,
    pub states: Vec<StateCount>,
}

#[derive(Serialize)]
pub struct StateCount {
    pub state: &'static str,
    pub label: &'static str,
    pub count: usize,
}

/// `counts` (by [`TaskState::ALL`] position) as the states that occur, in that order.
fn state_counts(counts: &[usize; TaskState::ALL.len()]) -> Vec<StateCount> {
    TaskState::ALL
        .iter()
        .zip(counts)
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| StateCount {
            state: s.as_str(),
            label: task_state_label(*s),
            count: *n,
        })
        .collect()
}

fn state_position(state: TaskState) -> usize {
    TaskState::ALL
        .iter()
        .position(|s| *s == state)
        .unwrap_or_default()
}

/// The summary of `dag` with the states in `tis`; tasks without an instance are counted as
/// `none`. Linear in tasks and edges; its size is bounded by [`GRAPH_MAX_GROUPS`].
pub fn graph_summary(dag: &Dag, tis: &[TiRow]) -> GraphSummary {
    let order = dag.topological_order();
    let mut depth: HashMap<&str, usize> = HashMap::with_capacity(order.len());
    for task in &order {
        let d = task
            .upstream
            .iter()
            .filter_map(|u| depth.get(u.as_str()))
            .max()
            .map_or(1, |d| d + 1);
        depth.insert(task.task_id.as_str(), d);
    }
    let deepest = depth.values().copied().max().unwrap_or(0);
    let span = deepest.div_ceil(GRAPH_MAX_GROUPS).max(1);
    let states: HashMap<&str, TaskState> =
        tis.iter().map(|t| (t.task_id.as_str(), t.state)).collect();
    let mut groups: Vec<(usize, [usize; TaskState::ALL.len()])> =
        vec![(0, [0; TaskState::ALL.len()]); deepest.div_ceil(span)];
    let mut whole = [0usize; TaskState::ALL.len()];
    for task in &dag.tasks {
        let d = depth.get(task.task_id.as_str()).copied().unwrap_or(1);
        let state = states
            .get(task.task_id.as_str())
            .copied()
            .unwrap_or(TaskState::None);
        if let Some(group) = groups.get_mut((d - 1) / span) {
            group.0 += 1;
            group.1[state_position(state)] += 1;
        }
        whole[state_position(state)] += 1;
    }
    GraphSummary {
        tasks: dag.tasks.len(),
        edges: dag.tasks.iter().map(|t| t.upstream.len()).sum(),
        states: if tis.is_empty() {
            Vec::new()
        } else {
            state_counts(&whole)
        },
        groups: groups
            .iter()
            .enumerate()
            .map(|(i, (tasks, counts))| DepthGroup {
                first: i * span + 1,
                last: ((i + 1) * span).min(deepest),
                tasks: *tasks,
                states: state_counts(counts),
            })
            .collect(),
    }
}

#[derive(Serialize)]
pub struct Graph {
    pub width: f64,
    pub height: f64,
    /// Where the drawing starts, so that group boxes drawn around nodes at the edge fit.
    pub offset_x: f64,
    pub offset_y: f64,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
    /// Expanded task groups, outermost first: boxes drawn around their members.
    pub groups: Vec<GroupBox>,
}

#[derive(Serialize)]
pub struct GraphNode {
    /// A task id, or a collapsed group's id.
    pub task_id: String,
    pub label: String,
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    pub layer: usize,
    pub state: String,
    pub state_label: String,
    pub title: String,
    /// A task's instance; for a collapsed group, the page with the group expanded.
    pub url: Option<String>,
    pub kind: String,
    /// Whether the node is a collapsed task group.
    pub group: bool,
}

#[derive(Serialize)]
pub struct GraphEdge {
    pub from: String,
    pub to: String,
    pub path: String,
}

/// An expanded task group: a box around its members, whose title collapses it.
#[derive(Serialize)]
pub struct GroupBox {
    pub group_id: String,
    pub label: String,
    pub title: String,
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    /// The page with the group collapsed.
    pub toggle_url: String,
}

/// Room between a group's box and what it holds, per level of boxes inside it.
const GROUP_PAD: f64 = 10.0;
/// Room above a group's members for its title.
const GROUP_TITLE: f64 = 14.0;

/// The drawing of `dag` with every group expanded, coloured by the states in `tis` (a run's
/// instances).
pub fn graph(dag: &Dag, run: Option<&RunRow>, tis: &[TiRow]) -> Graph {
    graph_of(&GroupView::new(dag), run, tis, &|_| String::new())
}

/// What one node of the drawing stands for.
enum Drawn<'d> {
    Task(&'d updraft_dag::Task),
    Group(&'d updraft_dag::TaskGroup, Vec<&'d str>),
}

/// A node to draw: its id, what it stands for, the ids of the nodes upstream of it.
type DrawnNode<'d> = (String, Drawn<'d>, Vec<String>);

/// The drawing of `view`'s DAG: a collapsed group is one node, an expanded one a box around
/// its members. `toggle_url` gives the page with a group's state switched.
fn graph_of(
    view: &GroupView<'_>,
    run: Option<&RunRow>,
    tis: &[TiRow],
    toggle_url: &dyn Fn(&str) -> String,
) -> Graph {
    let dag = view.dag();
    // Nodes in declaration order: a task, or the first member of a collapsed group.
    let mut drawn: Vec<DrawnNode<'_>> = Vec::new();
    let mut node_of: HashMap<&str, usize> = HashMap::with_capacity(dag.tasks.len());
    for task in &dag.tasks {
        let index = match view.shown_as(&task.task_id) {
            Some(group) => match drawn.iter().position(|(id, _, _)| *id == group.group_id) {
                Some(i) => {
                    if let Drawn::Group(_, members) = &mut drawn[i].1 {
                        members.push(&task.task_id);
                    }
                    i
                }
                None => {
                    drawn.push((
                        group.group_id.clone(),
                        Drawn::Group(group, vec![&task.task_id]),
                        Vec::new(),
                    ));
                    drawn.len() - 1
                }
            },
            None => {
                drawn.push((task.task_id.clone(), Drawn::Task(task), Vec::new()));
                drawn.len() - 1
            }
        };
        node_of.insert(&task.task_id, index);
    }
    for task in &dag.tasks {
        let to = node_of[task.task_id.as_str()];
        for up in &task.upstream {
            if let Some(&from) = node_of.get(up.as_str()) {
                let from_id = drawn[from].0.clone();
                if from != to && !drawn[to].2.contains(&from_id) {
                    drawn[to].2.push(from_id);
                }
            }
        }
    }
    let specs: Vec<(&str, &[String])> = drawn
        .iter()
        .map(|(id, _, ups)| (id.as_str(), ups.as_slice()))
        .collect();
    let laid = layout::layout(&specs);
    let states: HashMap<&str, &TiRow> = tis.iter().map(|t| (t.task_id.as_str(), t)).collect();
    let nodes: Vec<GraphNode> = laid
        .nodes
        .iter()
        .zip(&drawn)
        .map(|(n, (_, what, _))| match what {
            Drawn::Task(task) => task_node(n, task, run, states.get(task.task_id.as_str())),
            Drawn::Group(group, members) => {
                let mut node = group_node(n, group, members, run.is_some(), &states);
                node.url = Some(toggle_url(&group.group_id));
                node
            }
        })
        .collect();
    let edges = laid
        .edges
        .iter()
        .map(|e| GraphEdge {
            from: laid.nodes[e.from].id.clone(),
            to: laid.nodes[e.to].id.clone(),
            path: e.path.clone(),
        })
        .collect();
    let groups = group_boxes(view, &laid, &drawn, toggle_url);
    let left = groups.iter().map(|g| g.x).fold(0.0, f64::min);
    let top = groups.iter().map(|g| g.y).fold(0.0, f64::min);
    let right = groups
        .iter()
        .map(|g| g.x + g.width)
        .fold(laid.width, f64::max);
    let bottom = groups
        .iter()
        .map(|g| g.y + g.height)
        .fold(laid.height, f64::max);
    Graph {
        width: right - left,
        height: bottom - top,
        offset_x: -left,
        offset_y: -top,
        nodes,
        edges,
        groups,
    }
}

fn task_node(
    n: &layout::NodeBox,
    task: &updraft_dag::Task,
    run: Option<&RunRow>,
    ti: Option<&&TiRow>,
) -> GraphNode {
    let state = ti.map(|t| t.state);
    let state_label = match state {
        Some(s) => task_state_label(s),
        None if run.is_some() => "no instance",
        None => "",
    };
    let kind = task.kind.name();
    GraphNode {
        task_id: task.task_id.clone(),
        label: layout::label_fits(&task.task_id),
        x: n.x,
        y: n.y,
        width: n.width,
        height: NODE_HEIGHT,
        layer: n.layer,
        state: state.map(|s| s.as_str().to_string()).unwrap_or_default(),
        title: if state_label.is_empty() {
            format!("{} ({kind})", task.task_id)
        } else {
            format!("{}: {state_label}", task.task_id)
        },
        state_label: state_label.to_string(),
        url: run.map(|r| format::ti_url(&r.dag_id, &r.run_id, &task.task_id)),
        kind: kind.to_string(),
        group: false,
    }
}

/// A collapsed group's node: its tasks' common state, or the most pressing one (failed,
/// then running) when they differ.
fn group_node(
    n: &layout::NodeBox,
    group: &updraft_dag::TaskGroup,
    members: &[&str],
    with_run: bool,
    states: &HashMap<&str, &TiRow>,
) -> GraphNode {
    let member_states: Vec<TaskState> = members
        .iter()
        .filter_map(|m| states.get(m).map(|t| t.state))
        .collect();
    let state = match member_states.first() {
        Some(first) if member_states.iter().all(|s| s == first) => Some(*first),
        Some(_)
            if member_states
                .iter()
                .any(|s| matches!(s, TaskState::Failed | TaskState::UpstreamFailed)) =>
        {
            Some(TaskState::Failed)
        }
        Some(_) => Some(TaskState::Running),
        None => None,
    };
    let done = member_states
        .iter()
        .filter(|s| **s == TaskState::Success)
        .count();
    let count = members.len();
    let state_label = if with_run {
        format!("{done} of {count} succeeded")
    } else {
        format!("{count} tasks")
    };
    GraphNode {
        task_id: group.group_id.clone(),
        label: layout::label_fits(&format!("▸ {}", group.group_id)),
        x: n.x,
        y: n.y,
        width: n.width,
        height: NODE_HEIGHT,
        layer: n.layer,
        state: state.map(|s| s.as_str().to_string()).unwrap_or_default(),
        title: format!(
            "group {} ({count} tasks{}): expand",
            group.group_id,
            group
                .tooltip
                .as_deref()
                .map(|t| format!(", {t}"))
                .unwrap_or_default()
        ),
        state_label,
        url: None,
        kind: "group".to_string(),
        group: true,
    }
}

/// Boxes of the expanded groups (whose members are drawn), each around its drawn members
/// with room for the boxes inside it.
fn group_boxes(
    view: &GroupView<'_>,
    laid: &layout::Layout,
    drawn: &[DrawnNode<'_>],
    toggle_url: &dyn Fn(&str) -> String,
) -> Vec<GroupBox> {
    let dag = view.dag();
    let mut boxes = Vec::new();
    for group in dag.groups.iter().filter(|g| view.is_boxed(g)) {
        let members: Vec<&layout::NodeBox> = laid
            .nodes
            .iter()
            .zip(drawn)
            .filter(|(_, (_, what, _))| match what {
                Drawn::Task(task) => view
                    .groups_of(&task.task_id)
                    .iter()
                    .any(|g| g.group_id == group.group_id),
                Drawn::Group(inner, _) => view
                    .chain_of(inner)
                    .iter()
                    .any(|g| g.group_id == group.group_id),
            })
            .map(|(n, _)| n)
            .collect();
        if members.is_empty() {
            continue;
        }
        let depth_inside = dag
            .groups
            .iter()
            .filter(|g| view.is_boxed(g) && g.group_id != group.group_id)
            .map(|g| {
                view.chain_of(g)
                    .iter()
                    .skip_while(|outer| outer.group_id != group.group_id)
                    .count()
            })
            .max()
            .unwrap_or(0);
        let pad = GROUP_PAD * (depth_inside.saturating_sub(1) + 1) as f64;
        let title = GROUP_TITLE * (depth_inside.saturating_sub(1) + 1) as f64;
        let x0 = members.iter().map(|n| n.x).fold(f64::INFINITY, f64::min) - pad;
        let y0 = members.iter().map(|n| n.y).fold(f64::INFINITY, f64::min) - pad - title;
        let x1 = members
            .iter()
            .map(|n| n.x + n.width)
            .fold(f64::NEG_INFINITY, f64::max)
            + pad;
        let y1 = members
            .iter()
            .map(|n| n.y + n.height)
            .fold(f64::NEG_INFINITY, f64::max)
            + pad;
        boxes.push(GroupBox {
            group_id: group.group_id.clone(),
            label: format!("▾ {}", group.label),
            title: format!(
                "group {}{}: collapse",
                group.group_id,
                group
                    .tooltip
                    .as_deref()
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default()
            ),
            x: x0,
            y: y0,
            width: x1 - x0,
            height: y1 - y0,
            toggle_url: toggle_url(&group.group_id),
        });
    }
    boxes
}

pub async fn graph_view(
    State(state): State<AppState>,
    Caller(identity): Caller,
    Path(dag_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let RunTab {
        row,
        header,
        run,
        runs,
    } = run_tab(&state, &identity, &dag_id, &raw, "graph").await?;
    let dag = pinned_dag(&state, &row.dag, run.as_ref()).await?;
    let tis = match &run {
        Some(r) => state.store.task_instances(r.id).await?,
        None => Vec::new(),
    };
    let now = Utc::now();
    let live_src = run_tab_src(&header, "graph", run.as_ref());
    let drawn = dag.tasks.len() <= GRAPH_MAX_NODES;
    let view = GroupView::from_query(&dag, &query_pairs(raw.as_deref()));
    let page_url = |groups: &str| {
        let base = run_tab_src(&header, "graph", run.as_ref());
        let joiner = if base.contains('?') { '&' } else { '?' };
        format!("{base}{joiner}groups={}", enc(groups))
    };
    let live_src = match view.query_value() {
        Some(groups) => page_url(&groups),
        None => live_src,
    };
    let toggle = |group_id: &str| page_url(&view.toggled(group_id));
    let ctx = GraphPage {
        frame: Frame::new(format!("{dag_id} · graph"), "dags").live_for(&[&dag_id]),
        graph: drawn.then(|| graph_of(&view, run.as_ref(), &tis, &toggle)),
        summary: (!drawn).then(|| graph_summary(&dag, &tis)),
        run: run.as_ref().map(|r| run_summary(r, now)),
        dag: header,
        runs,
        legend: legend(),
        live_src,
    };
    render::page("graph.html", "graph_live.html", partial(&raw), &ctx)
}

// ---- Gantt ------------------------------------------------------------------------------

#[derive(Serialize)]
struct GanttPage {
    #[serde(flatten)]
    frame: Frame,
    dag: DagHeader,
    runs: Vec<RunOption>,
    run: Option<RunSummary>,
    rows: Vec<GanttRow>,
    start: String,
    end: String,
    total: String,
    live_src: String,
}

#[derive(Serialize)]
struct GanttRow {
    task_id: String,
    url: String,
    state: String,
    state_label: String,
    bars: Vec<GanttBar>,
}

#[derive(Serialize)]
struct GanttBar {
    left: f64,
    width: f64,
    state: String,
    title: String,
}

pub async fn gantt(
    State(state): State<AppState>,
    Caller(identity): Caller,
    Path(dag_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let RunTab {
        row,
        header,
        run,
        runs,
    } = run_tab(&state, &identity, &dag_id, &raw, "gantt").await?;
    let now = Utc::now();
    let mut rows = Vec::new();
    let (mut t0, mut t1) = (None, None);
    if let Some(run) = &run {
        let dag = pinned_dag(&state, &row.dag, Some(run)).await?;
        let (tis, tries) = tokio::join!(
            state.store.task_instances(run.id),
            state.store.tries_of_run(run.id)
        );
        let (tis, tries) = (tis?, tries?);
        for t in &tries {
            if let Some(s) = t.start_date {
                t0 = Some(t0.map_or(s, |m: chrono::DateTime<Utc>| m.min(s)));
                let e = t.end_date.unwrap_or(now).max(s);
                t1 = Some(t1.map_or(e, |m: chrono::DateTime<Utc>| m.max(e)));
            }
        }
        let (lo, hi) = (t0.unwrap_or(now), t1.unwrap_or(now));
        let span_ms = (hi - lo).num_milliseconds().max(1) as f64;
        let pct = |t: chrono::DateTime<Utc>| (t - lo).num_milliseconds() as f64 * 100.0 / span_ms;
        let ti_by_task: HashMap<&str, &TiRow> =
            tis.iter().map(|t| (t.task_id.as_str(), t)).collect();
        for (task_id, _) in task_order(&dag, &tis) {
            let ti = ti_by_task.get(task_id.as_str());
            let bars = tries
                .iter()
                .filter(|t| t.task_id == task_id)
                .filter_map(|t| {
                    let s = t.start_date?;
                    let e = t.end_date.unwrap_or(now).max(s);
                    let left = pct(s);
                    Some(GanttBar {
                        left,
                        width: (pct(e) - left).max(0.4),
                        state: t.state.as_str().to_string(),
                        title: format!(
                            "{task_id} try {}: {}, {} → {} ({})",
                            t.try_number,
                            task_state_label(t.state),
                            format::time(Some(s)),
                            if t.end_date.is_some() {
                                format::time(t.end_date)
                            } else {
                                "now".to_string()
                            },
                            format::span(Some(s), t.end_date, now)
                        ),
                    })
                })
                .collect();
            let state = ti.map(|t| t.state).unwrap_or(TaskState::None);
            rows.push(GanttRow {
                url: format::ti_url(&dag_id, &run.run_id, &task_id),
                task_id,
                state: state.as_str().to_string(),
                state_label: task_state_label(state).to_string(),
                bars,
            });
        }
    }
    let live_src = run_tab_src(&header, "gantt", run.as_ref());
    let ctx = GanttPage {
        frame: Frame::new(format!("{dag_id} · Gantt"), "dags").live_for(&[&dag_id]),
        dag: header,
        runs,
        run: run.as_ref().map(|r| run_summary(r, now)),
        rows,
        start: format::time(t0),
        end: format::time(t1),
        total: format::span(t0, t1, now),
        live_src,
    };
    render::page("gantt.html", "gantt_live.html", partial(&raw), &ctx)
}

// ---- code -------------------------------------------------------------------------------

#[derive(Serialize)]
struct CodePage {
    #[serde(flatten)]
    frame: Frame,
    dag: DagHeader,
    version: String,
    versions: Vec<Choice>,
    lines: Vec<String>,
    found: bool,
}

pub async fn code(
    State(state): State<AppState>,
    Caller(identity): Caller,
    Path(dag_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let row = load_dag(&state, &identity, &dag_id).await?;
    let pairs = query_pairs(raw.as_deref());
    let version = query_get(&pairs, "version")
        .unwrap_or(&row.version)
        .to_string();
    let (header, versions, source) = tokio::join!(
        dag_header(&state, &identity, &row, "code"),
        state.store.dag_versions(&dag_id),
        state.store.dag_source(&dag_id, &version)
    );
    let header = header?;
    let source = source?;
    let versions = versions?
        .into_iter()
        .map(|v| Choice {
            label: format!(
                "{} · {}{}",
                v.version,
                format::time(Some(v.created_at)),
                if v.version == row.version {
                    " (current)"
                } else {
                    ""
                }
            ),
            url: format!("{}/code?version={}", header.url, enc(&v.version)),
            selected: v.version == version,
        })
        .collect();
    let ctx = CodePage {
        frame: Frame::new(format!("{dag_id} · code"), "dags"),
        dag: header,
        found: source.is_some(),
        lines: source
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect(),
        version,
        versions,
    };
    render::page("code.html", "code.html", false, &ctx)
}

// ---- runs -------------------------------------------------------------------------------

#[derive(Serialize)]
struct RunsPage {
    #[serde(flatten)]
    frame: Frame,
    dag: DagHeader,
    runs: Vec<RunSummary>,
    states: Vec<Choice>,
    limit: u32,
    live_src: String,
}

pub async fn runs(
    State(state): State<AppState>,
    Caller(identity): Caller,
    Path(dag_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let row = load_dag(&state, &identity, &dag_id).await?;
    let pairs = query_pairs(raw.as_deref());
    let wanted: Option<updraft_core::RunState> =
        query_get(&pairs, "state").and_then(|s| s.parse().ok());
    let filter = NewestRunsFilter {
        dag_id: Some(dag_id.clone()),
        states: wanted.into_iter().collect(),
        limit: Some(RUNS_TAB_LIMIT),
    };
    let (header, runs) = tokio::join!(
        dag_header(&state, &identity, &row, "runs"),
        state.store.newest_runs(&filter)
    );
    let header = header?;
    let now = Utc::now();
    let mut states = vec![Choice {
        label: "all".to_string(),
        url: format!("{}/runs", header.url),
        selected: wanted.is_none(),
    }];
    states.extend(updraft_core::RunState::ALL.iter().map(|s| Choice {
        label: s.as_str().to_string(),
        url: format!("{}/runs?state={}", header.url, s.as_str()),
        selected: wanted == Some(*s),
    }));
    let live_src = match wanted {
        Some(s) => format!("{}/runs?state={}", header.url, s.as_str()),
        None => format!("{}/runs", header.url),
    };
    let ctx = RunsPage {
        frame: Frame::new(format!("{dag_id} · runs"), "dags").live_for(&[&dag_id]),
        dag: header,
        runs: runs?.iter().map(|r| run_summary(r, now)).collect(),
        states,
        limit: RUNS_TAB_LIMIT,
        live_src,
    };
    render::page("runs.html", "runs_live.html", partial(&raw), &ctx)
}

// ---- trigger ----------------------------------------------------------------------------

#[derive(Serialize)]
struct TriggerPage {
    #[serde(flatten)]
    frame: Frame,
    dag: DagHeader,
    fields: Vec<Field>,
}

/// One param as a form field. `kind` picks the input and how the page's script reads it:
/// `integer`, `number`, `boolean`, `enum` (values are JSON), `string`, `json` (a JSON text),
/// `any` (JSON if it parses, else a string).
#[derive(Serialize)]
struct Field {
    name: String,
    kind: &'static str,
    value: String,
    checked: bool,
    options: Vec<FieldOption>,
    min: Option<f64>,
    max: Option<f64>,
    description: Option<String>,
    required: bool,
    type_name: &'static str,
}

#[derive(Serialize)]
struct FieldOption {
    json: String,
    label: String,
    selected: bool,
}

fn field(name: &str, param: &updraft_dag::Param) -> Field {
    use serde_json::Value as Json;
    let default = param.default.as_ref();
    let inferred = param.kind.or(match default {
        Some(Json::String(_)) => Some(ParamType::String),
        Some(Json::Bool(_)) => Some(ParamType::Boolean),
        Some(Json::Number(n)) if n.is_i64() || n.is_u64() => Some(ParamType::Integer),
        Some(Json::Number(_)) => Some(ParamType::Number),
        Some(Json::Array(_)) => Some(ParamType::Array),
        Some(Json::Object(_)) => Some(ParamType::Object),
        _ => None,
    });
    let (kind, type_name) = match (&param.allowed, inferred) {
        (Some(_), _) => ("enum", "one of"),
        (None, Some(ParamType::Integer)) => ("integer", "integer"),
        (None, Some(ParamType::Number)) => ("number", "number"),
        (None, Some(ParamType::Boolean)) => ("boolean", "boolean"),
        (None, Some(ParamType::String)) => ("string", "string"),
        (None, Some(ParamType::Array)) => ("json", "array (JSON)"),
        (None, Some(ParamType::Object)) => ("json", "object (JSON)"),
        (None, Some(ParamType::Null)) => ("json", "null"),
        (None, None) => ("any", "any (JSON or text)"),
    };
    let value = match default {
        None => String::new(),
        Some(Json::String(s)) if kind != "json" => s.clone(),
        Some(v) => v.to_string(),
    };
    let options = param
        .allowed
        .iter()
        .flatten()
        .map(|v| FieldOption {
            json: v.to_string(),
            label: match v {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            },
            selected: Some(v) == default,
        })
        .collect();
    Field {
        name: name.to_string(),
        kind,
        checked: default == Some(&Json::Bool(true)),
        value,
        options,
        min: param.minimum,
        max: param.maximum,
        description: param.description.clone(),
        required: default.is_none(),
        type_name,
    }
}

pub async fn trigger_form(
    State(state): State<AppState>,
    Caller(identity): Caller,
    Path(dag_id): Path<String>,
) -> Result<Response, UiError> {
    let row = load_dag(&state, &identity, &dag_id).await?;
    let header = dag_header(&state, &identity, &row, "trigger").await?;
    let ctx = TriggerPage {
        frame: Frame::new(format!("Trigger {dag_id}"), "dags"),
        fields: row
            .dag
            .params
            .iter()
            .map(|(name, p)| field(name, p))
            .collect(),
        dag: header,
    };
    render::page("trigger.html", "trigger.html", false, &ctx)
}
