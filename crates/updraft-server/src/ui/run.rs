//! A run's page and a task instance's page (tries, XComs, log with live tail, actions).

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use chrono::Utc;
use serde::Serialize;
use updraft_dag::{Dag, TaskKind};
use updraft_store::{RunRow, TiKey, TiRow, XComQuery, XComRow};

use super::common::{
    BundleView, DagHeader, Frame, RunSummary, bundle_view, dag_header, load_dag, run_summary,
    task_state_label,
};
use super::format::{self, enc, query_get, query_pairs};
use super::render::{self, UiError};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

async fn load_run(state: &AppState, dag_id: &str, run_id: &str) -> Result<RunRow, UiError> {
    Ok(state.store.run(dag_id, run_id).await?.ok_or_else(|| {
        ApiError::not_found(format!("run `{run_id}` of DAG `{dag_id}` not found"))
    })?)
}

async fn pinned(state: &AppState, current: &Dag, run: &RunRow) -> Result<Dag, UiError> {
    Ok(state
        .store
        .dag_version(&run.dag_id, &run.version)
        .await?
        .unwrap_or_else(|| current.clone()))
}

/// `/api/v2/dags/{dag_id}/dagRuns/{run_id}`: the base of the API calls a run's page makes.
fn api_run(dag_id: &str, run_id: &str) -> String {
    format!("/api/v2/dags/{}/dagRuns/{}", enc(dag_id), enc(run_id))
}

#[derive(Serialize)]
struct TiLine {
    task_id: String,
    url: String,
    state: String,
    state_label: String,
    try_number: u32,
    max_tries: u32,
    start_date: String,
    end_date: String,
    duration: String,
    pool: String,
}

fn ti_line(ti: &TiRow, now: chrono::DateTime<Utc>) -> TiLine {
    TiLine {
        task_id: ti.task_id.clone(),
        url: format::ti_url(&ti.dag_id, &ti.run_id, &ti.task_id),
        state: ti.state.as_str().to_string(),
        state_label: task_state_label(ti.state).to_string(),
        try_number: ti.try_number,
        max_tries: ti.max_tries,
        start_date: format::time(ti.start_date),
        end_date: format::time(ti.end_date),
        duration: format::span(ti.start_date, ti.end_date, now),
        pool: ti.pool.clone(),
    }
}

// ---- run --------------------------------------------------------------------------------

#[derive(Serialize)]
struct RunPage {
    #[serde(flatten)]
    frame: Frame,
    dag: DagHeader,
    run: RunSummary,
    /// The revision of the DAG's source the run reads its files from.
    run_bundle: Option<BundleView>,
    conf: String,
    tis: Vec<TiLine>,
    api_run: String,
    graph_url: String,
    gantt_url: String,
    live_src: String,
}

pub async fn run_page(
    State(state): State<AppState>,
    Caller(identity): Caller,
    Path((dag_id, run_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let row = load_dag(&state, &identity, &dag_id).await?;
    let (header, run) = tokio::join!(
        dag_header(&state, &identity, &row, "run"),
        load_run(&state, &dag_id, &run_id)
    );
    let (header, run) = (header?, run?);
    let (dag, tis) = tokio::join!(
        pinned(&state, &row.dag, &run),
        state.store.task_instances(run.id)
    );
    let (dag, tis) = (dag?, tis?);
    let run_bundle = match run.bundle_version.clone() {
        Some(version) => bundle_view(&state, row.bundle_name.as_deref(), Some(version)).await?,
        None => None,
    };
    let position: HashMap<&str, usize> = dag
        .topological_order()
        .iter()
        .enumerate()
        .map(|(i, t)| (t.task_id.as_str(), i))
        .collect();
    let mut tis = tis;
    tis.sort_by_key(|t| {
        (
            position
                .get(t.task_id.as_str())
                .copied()
                .unwrap_or(usize::MAX),
            t.task_id.clone(),
        )
    });
    let now = Utc::now();
    let run_q = enc(&run.run_id);
    let ctx = RunPage {
        frame: Frame::new(format!("{dag_id} · {run_id}"), "dags").live_for(&[&dag_id]),
        conf: serde_json::to_string_pretty(&crate::masking::shown_json(&run.conf))
            .unwrap_or_default(),
        tis: tis.iter().map(|t| ti_line(t, now)).collect(),
        api_run: api_run(&dag_id, &run.run_id),
        graph_url: format!("{}/graph?run_id={run_q}", header.url),
        gantt_url: format!("{}/gantt?run_id={run_q}", header.url),
        live_src: format::run_url(&dag_id, &run.run_id),
        run: run_summary(&run, now),
        run_bundle,
        dag: header,
    };
    let partial = query_get(&query_pairs(raw.as_deref()), "partial").is_some();
    render::page("run.html", "run_live.html", partial, &ctx)
}

// ---- task instance ----------------------------------------------------------------------

#[derive(Serialize)]
struct TaskPage {
    #[serde(flatten)]
    frame: Frame,
    dag: DagHeader,
    run: RunSummary,
    ti: TiLine,
    tries: Vec<TryLine>,
    task: Option<TaskInfo>,
    /// The try whose log is shown (0: none started yet).
    log_try: u32,
    log_tries: Vec<LogTry>,
    /// API URL of the shown try's log.
    log_api: String,
    /// Whether the shown try is the current one (its log may still grow while it runs).
    log_current: bool,
    api_run: String,
    live_src: String,
    /// What the current try pushed.
    xcoms: Vec<XComLine>,
    /// The shown instance's map index (-1: not mapped).
    map_index: i32,
    /// Every instance of a mapped task, by map index (empty for an unmapped task).
    mapped: Vec<MappedLine>,
}

/// One instance of a mapped task as the task page lists it, linking to its page and log.
#[derive(Serialize)]
struct MappedLine {
    map_index: i32,
    state: String,
    state_label: String,
    try_number: u32,
    url: String,
    log_url: String,
    selected: bool,
}

/// The instances of a mapped task in a run, by map index (none for an unmapped task).
async fn mapped_instances(
    state: &AppState,
    run_pk: i64,
    task_id: &str,
) -> Result<Vec<TiRow>, ApiError> {
    let page = state
        .store
        .task_instances_page(&updraft_store::TiQuery {
            run_pk: Some(run_pk),
            task_ids: vec![task_id.to_owned()],
            ..Default::default()
        })
        .await?;
    Ok(page
        .items
        .into_iter()
        .filter(|ti| ti.map_index >= 0)
        .collect())
}

/// The instance the page shows: `?map_index=`, else the unmapped one or, for an expanded
/// task, its first.
fn chosen_map_index(pairs: &[(String, String)], mapped: &[TiRow]) -> i32 {
    let asked = query_get(pairs, "map_index").and_then(|m| m.parse::<i32>().ok());
    match asked {
        Some(i) => i,
        None => mapped.first().map_or(-1, |ti| ti.map_index),
    }
}

/// One XCom as the task page shows it: masked, its value cut to [`XCOM_SHOWN_CHARS`].
#[derive(Serialize)]
struct XComLine {
    key: String,
    value: String,
    cut: bool,
}

/// How much of an XCom's value the task page shows.
const XCOM_SHOWN_CHARS: usize = 200;

fn xcom_line(row: &XComRow) -> XComLine {
    let value = serde_json::from_str(&row.value).unwrap_or(serde_json::Value::Null);
    let text = match crate::masking::shown_xcom(&row.key, &value) {
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    };
    let cut = text.chars().count() > XCOM_SHOWN_CHARS;
    XComLine {
        key: row.key.clone(),
        value: if cut {
            text.chars().take(XCOM_SHOWN_CHARS).collect()
        } else {
            text
        },
        cut,
    }
}

#[derive(Serialize)]
struct TryLine {
    try_number: u32,
    state: String,
    state_label: String,
    start_date: String,
    end_date: String,
    duration: String,
    hostname: String,
    url: String,
}

#[derive(Serialize)]
struct LogTry {
    try_number: u32,
    url: String,
    selected: bool,
}

#[derive(Serialize)]
struct TaskInfo {
    kind: &'static str,
    command: String,
    trigger_rule: String,
    retries: u32,
    pool: String,
    upstream: Vec<Link>,
    downstream: Vec<Link>,
}

#[derive(Serialize)]
struct Link {
    label: String,
    url: String,
}

pub async fn task_page(
    State(state): State<AppState>,
    Caller(identity): Caller,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let row = load_dag(&state, &identity, &dag_id).await?;
    let (header, run) = tokio::join!(
        dag_header(&state, &identity, &row, "task"),
        load_run(&state, &dag_id, &run_id)
    );
    let (header, run) = (header?, run?);
    let pairs = query_pairs(raw.as_deref());
    let mapped = mapped_instances(&state, run.id, &task_id).await?;
    let key = TiKey {
        run_pk: run.id,
        task_id: task_id.clone(),
        map_index: chosen_map_index(&pairs, &mapped),
    };
    let xcom_query = XComQuery {
        run_pk: run.id,
        task_ids: Some(vec![task_id.clone()]),
        map_index: Some(i64::from(key.map_index)),
        limit: Some(100),
        ..XComQuery::default()
    };
    let (dag, ti, tries, xcoms) = tokio::join!(
        pinned(&state, &row.dag, &run),
        state.store.task_instance(&key),
        state.store.tries(&key),
        state.store.xcoms(&xcom_query)
    );
    let (dag, tries, (xcoms, _)) = (dag?, tries?, xcoms?);
    let ti = ti?.ok_or_else(|| {
        ApiError::not_found(format!(
            "task `{task_id}` in run `{run_id}` of DAG `{dag_id}` not found"
        ))
    })?;
    let now = Utc::now();
    let base_url = format::ti_url(&dag_id, &run.run_id, &task_id);
    // A mapped instance's links name its map index.
    let (ti_url, sep) = if key.map_index >= 0 {
        (format!("{base_url}?map_index={}", key.map_index), '&')
    } else {
        (base_url.clone(), '?')
    };
    let log_query = if key.map_index >= 0 {
        format!("?map_index={}", key.map_index)
    } else {
        String::new()
    };
    let log_try = query_get(&pairs, "try")
        .and_then(|t| t.parse::<u32>().ok())
        .filter(|t| (1..=ti.try_number).contains(t))
        .unwrap_or(ti.try_number);
    let task = dag.task(&task_id).map(|t| TaskInfo {
        kind: t.kind.name(),
        command: match &t.kind {
            TaskKind::Bash(script) => script.clone(),
            TaskKind::Command(argv) => serde_json::to_string(argv).unwrap_or_default(),
            TaskKind::Noop => String::new(),
            TaskKind::Pod(pod) => serde_json::to_string_pretty(pod).unwrap_or_default(),
            TaskKind::Python(python) => serde_json::to_string_pretty(python).unwrap_or_default(),
            TaskKind::Sensor(sensor) => serde_json::to_string_pretty(sensor).unwrap_or_default(),
        },
        trigger_rule: t.trigger_rule.as_str().to_string(),
        retries: t.retries,
        pool: t.pool.clone(),
        upstream: t
            .upstream
            .iter()
            .map(|u| Link {
                label: u.clone(),
                url: format::ti_url(&dag_id, &run.run_id, u),
            })
            .collect(),
        downstream: dag
            .direct_downstream_of(&task_id)
            .into_iter()
            .map(|d| Link {
                label: d.to_string(),
                url: format::ti_url(&dag_id, &run.run_id, d),
            })
            .collect(),
    });
    let ctx = TaskPage {
        frame: Frame::new(format!("{task_id} · {run_id}"), "dags").live_for(&[&dag_id]),
        tries: tries
            .iter()
            .map(|t| TryLine {
                try_number: t.try_number,
                state: t.state.as_str().to_string(),
                state_label: task_state_label(t.state).to_string(),
                start_date: format::time(t.start_date),
                end_date: format::time(t.end_date),
                duration: format::span(t.start_date, t.end_date, now),
                hostname: t.hostname.clone().unwrap_or_default(),
                url: format!("{ti_url}{sep}try={}", t.try_number),
            })
            .collect(),
        log_tries: (1..=ti.try_number)
            .map(|n| LogTry {
                try_number: n,
                url: format!("{ti_url}{sep}try={n}"),
                selected: n == log_try,
            })
            .collect(),
        log_api: format!(
            "{}/taskInstances/{}/logs/{log_try}{log_query}",
            api_run(&dag_id, &run.run_id),
            enc(&task_id)
        ),
        log_current: log_try == ti.try_number,
        log_try,
        api_run: api_run(&dag_id, &run.run_id),
        live_src: if log_try == ti.try_number {
            ti_url.clone()
        } else {
            format!("{ti_url}{sep}try={log_try}")
        },
        map_index: key.map_index,
        mapped: mapped
            .iter()
            .map(|m| MappedLine {
                map_index: m.map_index,
                state: m.state.as_str().to_string(),
                state_label: task_state_label(m.state).to_string(),
                try_number: m.try_number,
                url: format!("{base_url}?map_index={}", m.map_index),
                log_url: format!(
                    "{}/taskInstances/{}/logs/{}?map_index={}",
                    api_run(&dag_id, &run.run_id),
                    enc(&task_id),
                    m.try_number.max(1),
                    m.map_index
                ),
                selected: m.map_index == key.map_index,
            })
            .collect(),
        ti: ti_line(&ti, now),
        run: run_summary(&run, now),
        task,
        dag: header,
        xcoms: xcoms.iter().map(xcom_line).collect(),
    };
    let partial = query_get(&pairs, "partial").is_some();
    render::page("task.html", "task_live.html", partial, &ctx)
}
