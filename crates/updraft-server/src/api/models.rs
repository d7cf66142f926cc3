//! Response and request bodies, field for field Airflow 3's API v2 schemas (`DAGResponse`,
//! `DAGRunResponse`, `TaskInstanceResponse`, ...), so Airflow's clients accept them.
//!
//! Fields updraft has no notion of carry Airflow's neutral values (see [`neutral`]); fields
//! only updraft has (`tenant`, the DAG `version` hash) are extra fields, never renamed ones.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use updraft_core::timetable::{DataInterval, next_interval};
use updraft_core::{RunState, RunType, TaskState};
use updraft_dag::{Dag, Schedule, TaskKind};
use updraft_store::{
    DagRow, DagVersionRow, ImportErrorRow, PoolRow, PoolUsage, RunRow, SourceRow, TiRow,
};
use utoipa::ToSchema;

use super::params::{de_opt_datetime, de_present, uuid_for};

/// Airflow's values for what updraft does not have.
pub mod neutral {
    /// The bundle of a DAG read from the plain DAGs folder (no `[[sources]]`): Airflow's
    /// default bundle.
    pub const BUNDLE_NAME: &str = "dags-folder";
    /// Airflow's default executor queue.
    pub const QUEUE: &str = "default";
    /// Airflow's string form of an empty `executor_config`.
    pub const EXECUTOR_CONFIG: &str = "{}";
    /// Task instances are never mapped.
    pub const MAP_INDEX: i64 = -1;
}

// ---- DAGs ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagTagResponse {
    pub name: String,
    pub dag_id: String,
    pub dag_display_name: String,
}

/// Airflow's `DAGResponse`, plus `tenant` and `version`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagResponse {
    pub dag_id: String,
    pub dag_display_name: String,
    pub is_paused: bool,
    /// The DAG's file is gone (or no longer defines it): it is no longer scheduled (updraft's
    /// inactive DAG). A file that fails to parse keeps its DAG scheduled on its last good version.
    pub is_stale: bool,
    pub last_parsed_time: Option<DateTime<Utc>>,
    pub last_parse_duration: Option<f64>,
    pub last_expired: Option<DateTime<Utc>>,
    pub bundle_name: Option<String>,
    pub bundle_version: Option<String>,
    pub relative_fileloc: Option<String>,
    pub fileloc: String,
    pub description: Option<String>,
    pub timetable_summary: Option<String>,
    pub timetable_description: Option<String>,
    pub timetable_partitioned: bool,
    pub timetable_periodic: bool,
    pub tags: Vec<DagTagResponse>,
    pub max_active_tasks: i64,
    pub max_active_runs: Option<i64>,
    pub max_consecutive_failed_dag_runs: i64,
    pub has_task_concurrency_limits: bool,
    pub has_import_errors: bool,
    pub next_dagrun_logical_date: Option<DateTime<Utc>>,
    pub next_dagrun_data_interval_start: Option<DateTime<Utc>>,
    pub next_dagrun_data_interval_end: Option<DateTime<Utc>>,
    pub next_dagrun_run_after: Option<DateTime<Utc>>,
    pub allowed_run_types: Option<Vec<String>>,
    pub owners: Vec<String>,
    pub file_token: String,
    pub is_backfillable: bool,
    /// updraft: the DAG's tenant.
    pub tenant: String,
    /// updraft: the hash of the latest parsed definition.
    pub version: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagCollectionResponse {
    pub dags: Vec<DagResponse>,
    pub total_entries: u64,
}

/// What a DAG's response needs besides its row.
pub struct DagContext<'a> {
    pub dags_folder: &'a Path,
    /// Files (relative to the DAGs folder) that currently have import errors.
    pub broken_files: &'a std::collections::HashSet<String>,
    /// The DAG's scheduled or backfill run with the latest data interval.
    pub latest_scheduled: Option<&'a RunRow>,
    pub now: DateTime<Utc>,
}

// ---- DAG bundles (sources) ----------------------------------------------------------------

/// The recorded DAG sources, by name: what the responses of DAGs, versions and runs say of
/// the bundle they were read from.
#[derive(Debug, Clone, Default)]
pub struct Bundles {
    sources: HashMap<String, SourceRow>,
}

impl Bundles {
    pub fn new(sources: Vec<SourceRow>) -> Self {
        Bundles {
            sources: sources.into_iter().map(|s| (s.name.clone(), s)).collect(),
        }
    }

    /// Airflow's `bundle_name`: the source's name, or the default bundle's for the plain DAGs
    /// folder.
    pub fn name(bundle_name: Option<&str>) -> String {
        bundle_name.unwrap_or(neutral::BUNDLE_NAME).to_string()
    }

    /// A link to `version` of source `bundle_name` (a commit page), made from the source's
    /// link to its current revision; `None` when the source makes none.
    pub fn url(&self, bundle_name: Option<&str>, version: Option<&str>) -> Option<String> {
        let source = self.sources.get(bundle_name?)?;
        revision_url(source, version?)
    }
}

/// A link to `revision` of `source`: its recorded `revision_url` (the link to its current
/// revision) with the current revision replaced by `revision`; credentials left out. Only
/// `http(s)` links are made (pages put them in `href`).
pub fn revision_url(source: &SourceRow, revision: &str) -> Option<String> {
    let current_url = source
        .revision_url
        .as_deref()
        .filter(|url| url.starts_with("https://") || url.starts_with("http://"))?;
    let url = match source.revision.as_deref() {
        Some(current) if current == revision => current_url.to_string(),
        Some(current) if !current.is_empty() && current_url.contains(current) => {
            current_url.replace(current, revision)
        }
        _ => return None,
    };
    Some(without_credentials(&url))
}

/// `url` without a `user:password@` part, for showing.
pub fn without_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        // Not a URL with a scheme (`user@host:path`, scp-like git): drop what precedes `@`.
        Err(_) => match url.split_once('@') {
            Some((_, rest)) if !url.contains("://") => rest.to_string(),
            _ => url.to_string(),
        },
    }
}

/// A DAG source as `GET /sources` shows it (updraft's own; Airflow has no such endpoint).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SourceResponse {
    /// The source's name: the `bundle_name` of its DAGs.
    pub name: String,
    /// The tenant the whole source belongs to; `null`: mounted at the root, folder names give
    /// tenants.
    pub tenant: Option<String>,
    /// `git` or `objects`.
    pub kind: String,
    /// Where it is read from (never with credentials).
    pub url: String,
    /// The branch, tag or commit followed (git).
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// The revision in use: a commit sha (git) or an object-store generation.
    pub revision: Option<String>,
    /// A link to that revision (a commit page), when the source makes one.
    pub revision_url: Option<String>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// Failed syncs since the last success.
    pub failures: i64,
    /// The last failure's message; `null` after a success.
    pub error: Option<String>,
    /// A sync asked for and not taken by a scheduler yet.
    pub sync_requested_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SourceCollectionResponse {
    pub sources: Vec<SourceResponse>,
    pub total_entries: u64,
}

pub fn source_response(row: &SourceRow) -> SourceResponse {
    SourceResponse {
        name: row.name.clone(),
        tenant: row.tenant.clone(),
        kind: row.kind.clone(),
        url: without_credentials(&row.url),
        reference: row.reference.clone(),
        revision: row.revision.clone(),
        revision_url: row
            .revision
            .as_deref()
            .and_then(|revision| revision_url(row, revision)),
        last_sync_at: row.last_sync_at,
        last_success_at: row.last_success_at,
        failures: row.failures,
        error: row.error.clone(),
        sync_requested_at: row.sync_requested_at,
    }
}

fn is_periodic(schedule: &Schedule) -> bool {
    matches!(schedule, Schedule::Cron(_) | Schedule::Every(_))
}

pub fn dag_response(row: &DagRow, ctx: &DagContext<'_>) -> DagResponse {
    let dag = &row.dag;
    let next = if row.is_active {
        let last = ctx.latest_scheduled.map(|r| DataInterval {
            start: r.data_interval_start,
            end: r.data_interval_end,
        });
        next_interval(dag, last.as_ref(), ctx.now)
    } else {
        None
    };
    let summary = match dag.schedule {
        Schedule::None => None,
        ref other => Some(other.to_string()),
    };
    DagResponse {
        dag_id: dag.dag_id.clone(),
        dag_display_name: dag.dag_id.clone(),
        is_paused: row.is_paused,
        is_stale: !row.is_active,
        last_parsed_time: Some(row.last_parsed_at),
        last_parse_duration: None,
        last_expired: None,
        bundle_name: Some(Bundles::name(row.bundle_name.as_deref())),
        bundle_version: row.bundle_version.clone(),
        relative_fileloc: Some(dag.fileloc.clone()),
        fileloc: ctx.dags_folder.join(&dag.fileloc).display().to_string(),
        description: dag.description.clone(),
        timetable_summary: summary,
        timetable_description: Some(dag.schedule.description()),
        timetable_partitioned: false,
        timetable_periodic: is_periodic(&dag.schedule),
        tags: dag
            .tags
            .iter()
            .map(|name| DagTagResponse {
                name: name.clone(),
                dag_id: dag.dag_id.clone(),
                dag_display_name: dag.dag_id.clone(),
            })
            .collect(),
        max_active_tasks: i64::from(dag.max_active_tasks),
        max_active_runs: Some(i64::from(dag.max_active_runs)),
        max_consecutive_failed_dag_runs: 0,
        has_task_concurrency_limits: false,
        has_import_errors: ctx.broken_files.contains(&dag.fileloc),
        next_dagrun_logical_date: next.as_ref().map(|i| i.start),
        next_dagrun_data_interval_start: next.as_ref().map(|i| i.start),
        next_dagrun_data_interval_end: next.as_ref().map(|i| i.end),
        next_dagrun_run_after: next.as_ref().map(|i| i.end),
        allowed_run_types: None,
        owners: Vec::new(),
        file_token: file_token(&dag.fileloc),
        is_backfillable: is_periodic(&dag.schedule),
        tenant: dag.tenant.clone(),
        version: row.version.clone(),
    }
}

/// An opaque, URL-safe token for a DAG file (hex of its relative path).
fn file_token(fileloc: &str) -> String {
    fileloc.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Airflow's `DAGDetailsResponse`: [`DagResponse`] and more.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagDetailsResponse {
    #[serde(flatten)]
    pub dag: DagResponse,
    pub catchup: bool,
    pub dag_run_timeout: Option<String>,
    pub asset_expression: Option<Value>,
    pub doc_md: Option<String>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub is_paused_upon_creation: Option<bool>,
    pub params: Option<Value>,
    pub render_template_as_native_obj: bool,
    pub template_search_path: Option<Vec<String>>,
    pub timezone: Option<String>,
    pub last_parsed: Option<DateTime<Utc>>,
    pub default_args: Option<Value>,
    pub owner_links: Option<BTreeMap<String, String>>,
    pub is_favorite: bool,
    pub active_runs_count: i64,
    pub concurrency: i64,
    pub latest_dag_version: Option<DagVersionResponse>,
    pub rerun_with_latest_version: Option<bool>,
}

/// Params as Airflow serializes them: `{name: {value, description, schema}}`.
pub fn params_json(dag: &Dag) -> Value {
    let map: serde_json::Map<String, Value> = dag
        .params
        .iter()
        .map(|(name, p)| {
            let mut schema = serde_json::Map::new();
            if let Some(kind) = p.kind {
                schema.insert(
                    "type".into(),
                    serde_json::to_value(kind).unwrap_or(Value::Null),
                );
            }
            if let Some(allowed) = &p.allowed {
                schema.insert("enum".into(), Value::Array(allowed.clone()));
            }
            if let Some(min) = p.minimum {
                schema.insert("minimum".into(), json!(min));
            }
            if let Some(max) = p.maximum {
                schema.insert("maximum".into(), json!(max));
            }
            let value = json!({
                "value": p.default,
                "description": p.description,
                "schema": schema,
            });
            (name.clone(), value)
        })
        .collect();
    Value::Object(map)
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagPatchBody {
    pub is_paused: bool,
}

// ---- DAG versions -------------------------------------------------------------------------

/// Airflow's `DagVersionResponse`, plus the `version` hash.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagVersionResponse {
    #[schema(format = "uuid")]
    pub id: String,
    pub version_number: i64,
    pub dag_id: String,
    pub dag_display_name: String,
    pub bundle_name: Option<String>,
    pub bundle_version: Option<String>,
    pub bundle_url: Option<String>,
    pub created_at: DateTime<Utc>,
    /// updraft: the hash of the parsed definition.
    pub version: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagVersionCollectionResponse {
    pub dag_versions: Vec<DagVersionResponse>,
    pub total_entries: u64,
}

/// The versions of one DAG, numbered 1, 2, ... in the order they were first recorded.
#[derive(Debug, Clone, Default)]
pub struct Versions {
    pub dag_id: String,
    /// Oldest first.
    pub rows: Vec<DagVersionRow>,
    /// For the links to the revisions the versions were read at.
    pub bundles: std::sync::Arc<Bundles>,
}

impl Versions {
    pub fn new(dag_id: &str, mut rows: Vec<DagVersionRow>) -> Self {
        rows.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then(a.version.cmp(&b.version))
        });
        Versions {
            dag_id: dag_id.to_string(),
            rows,
            bundles: Default::default(),
        }
    }

    /// Links the versions' revisions through these sources.
    pub fn with_bundles(mut self, bundles: std::sync::Arc<Bundles>) -> Self {
        self.bundles = bundles;
        self
    }

    pub fn number_of(&self, version: &str) -> Option<i64> {
        self.rows
            .iter()
            .position(|r| r.version == version)
            .map(|i| i as i64 + 1)
    }

    pub fn by_number(&self, number: i64) -> Option<&DagVersionRow> {
        let index = number.checked_sub(1)?;
        usize::try_from(index).ok().and_then(|i| self.rows.get(i))
    }

    pub fn response(&self, version: &str) -> Option<DagVersionResponse> {
        let number = self.number_of(version)?;
        let row = self.by_number(number)?;
        Some(DagVersionResponse {
            id: uuid_for(&format!("dag_version/{}/{}", self.dag_id, row.version)),
            version_number: number,
            dag_id: self.dag_id.clone(),
            dag_display_name: self.dag_id.clone(),
            bundle_name: Some(Bundles::name(row.bundle_name.as_deref())),
            bundle_version: row.bundle_version.clone(),
            bundle_url: self
                .bundles
                .url(row.bundle_name.as_deref(), row.bundle_version.as_deref()),
            created_at: row.created_at,
            version: row.version.clone(),
        })
    }
}

// ---- DAG runs -----------------------------------------------------------------------------

/// Airflow's `DAGRunResponse`, plus `tenant` and `version`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagRunResponse {
    pub dag_run_id: String,
    pub dag_id: String,
    pub dag_display_name: String,
    pub logical_date: Option<DateTime<Utc>>,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub duration: Option<f64>,
    pub data_interval_start: Option<DateTime<Utc>>,
    pub data_interval_end: Option<DateTime<Utc>>,
    pub run_after: DateTime<Utc>,
    pub last_scheduling_decision: Option<DateTime<Utc>>,
    #[schema(value_type = String, example = "manual")]
    pub run_type: String,
    #[schema(value_type = String, example = "queued")]
    pub state: String,
    pub triggered_by: Option<String>,
    pub triggering_user_name: Option<String>,
    pub conf: Option<Value>,
    pub note: Option<String>,
    pub dag_versions: Vec<DagVersionResponse>,
    pub bundle_version: Option<String>,
    pub partition_key: Option<String>,
    pub partition_date: Option<DateTime<Utc>>,
    /// updraft: the DAG's tenant.
    pub tenant: String,
    /// updraft: the hash of the DAG version the run is pinned to.
    pub version: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagRunCollectionResponse {
    pub dag_runs: Vec<DagRunResponse>,
    pub total_entries: u64,
}

/// When a run may start: the end of its data interval for scheduled and backfill runs, its
/// logical date for manual ones.
pub fn run_after(run: &RunRow) -> DateTime<Utc> {
    match run.run_type {
        RunType::Manual | RunType::AssetTriggered => run.logical_date,
        RunType::Scheduled | RunType::Backfill => run.data_interval_end,
    }
}

fn seconds_between(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Option<f64> {
    match (start, end) {
        (Some(s), Some(e)) => Some((e - s).num_microseconds().unwrap_or(0) as f64 / 1e6),
        _ => None,
    }
}

pub fn dag_run_response(
    run: &RunRow,
    versions: Option<&Versions>,
    note: Option<&str>,
) -> DagRunResponse {
    DagRunResponse {
        dag_run_id: run.run_id.clone(),
        dag_id: run.dag_id.clone(),
        dag_display_name: run.dag_id.clone(),
        logical_date: Some(run.logical_date),
        queued_at: Some(run.queued_at),
        start_date: run.start_date,
        end_date: run.end_date,
        duration: seconds_between(run.start_date, run.end_date),
        data_interval_start: Some(run.data_interval_start),
        data_interval_end: Some(run.data_interval_end),
        run_after: run_after(run),
        last_scheduling_decision: None,
        run_type: run.run_type.as_str().to_string(),
        state: run.state.as_str().to_string(),
        triggered_by: match run.run_type {
            RunType::Scheduled => Some("timetable".to_string()),
            RunType::Backfill => Some("backfill".to_string()),
            RunType::AssetTriggered => Some("asset".to_string()),
            RunType::Manual => None,
        },
        triggering_user_name: None,
        conf: Some(match &run.conf {
            Value::Null => json!({}),
            other => crate::masking::shown_json(other),
        }),
        note: note.map(str::to_string),
        dag_versions: versions
            .and_then(|v| v.response(&run.version))
            .into_iter()
            .collect(),
        bundle_version: run.bundle_version.clone(),
        partition_key: None,
        partition_date: None,
        tenant: run.tenant.clone(),
        version: run.version.clone(),
    }
}

/// `POST /dags/{dag_id}/dagRuns`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TriggerDagRunPostBody {
    /// Default: `manual__<logical date>`.
    #[schema(pattern = "^[A-Za-z0-9_.~:+-]+$", min_length = 1, max_length = 250)]
    pub dag_run_id: Option<String>,
    /// Default: now.
    #[serde(default, deserialize_with = "de_opt_datetime")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub logical_date: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de_opt_datetime")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub data_interval_start: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de_opt_datetime")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub data_interval_end: Option<DateTime<Utc>>,
    /// Accepted for compatibility; a run may start as soon as the scheduler takes it.
    #[serde(default, deserialize_with = "de_opt_datetime")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub run_after: Option<DateTime<Utc>>,
    /// Validated against the DAG's params.
    pub conf: Option<serde_json::Map<String, Value>>,
    #[schema(max_length = 1000)]
    pub note: Option<String>,
    /// Accepted for compatibility; updraft has no partitioned runs, so it must be null.
    pub partition_key: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DagRunMutableState {
    Queued,
    Success,
    Failed,
}

impl From<DagRunMutableState> for RunState {
    fn from(s: DagRunMutableState) -> RunState {
        match s {
            DagRunMutableState::Queued => RunState::Queued,
            DagRunMutableState::Success => RunState::Success,
            DagRunMutableState::Failed => RunState::Failed,
        }
    }
}

/// `PATCH /dags/{dag_id}/dagRuns/{dag_run_id}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagRunPatchBody {
    pub state: Option<DagRunMutableState>,
    /// `null` removes the note.
    #[serde(default, deserialize_with = "de_present")]
    #[schema(value_type = Option<String>, max_length = 1000)]
    pub note: Option<Option<String>>,
}

/// `POST /dags/{dag_id}/dagRuns/{dag_run_id}/clear`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagRunClearBody {
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub dry_run: bool,
    #[serde(default)]
    pub only_failed: bool,
    /// Accepted for compatibility; updraft has no task added to a new DAG version only.
    #[serde(default)]
    pub only_new: bool,
    /// Accepted for compatibility: a cleared run stays pinned to its version.
    pub run_on_latest_version: Option<bool>,
    #[schema(max_length = 1000)]
    pub note: Option<String>,
}

fn yes() -> bool {
    true
}

// ---- task instances -----------------------------------------------------------------------

/// Airflow's `TaskInstanceResponse`, plus `tenant`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskInstanceResponse {
    #[schema(format = "uuid")]
    pub id: String,
    pub task_id: String,
    pub dag_id: String,
    pub dag_run_id: String,
    pub map_index: i64,
    pub logical_date: Option<DateTime<Utc>>,
    pub run_after: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub duration: Option<f64>,
    /// `null` for an instance nothing was decided about yet.
    #[schema(value_type = Option<String>)]
    pub state: Option<String>,
    pub try_number: i64,
    pub max_tries: i64,
    pub task_display_name: String,
    pub dag_display_name: String,
    pub hostname: Option<String>,
    pub unixname: Option<String>,
    pub pool: String,
    pub pool_slots: i64,
    pub queue: Option<String>,
    pub priority_weight: Option<i64>,
    pub operator: Option<String>,
    pub operator_name: Option<String>,
    pub queued_when: Option<DateTime<Utc>>,
    pub scheduled_when: Option<DateTime<Utc>>,
    pub pid: Option<i64>,
    pub executor: Option<String>,
    pub executor_config: String,
    pub note: Option<String>,
    pub rendered_map_index: Option<String>,
    pub rendered_fields: Option<Value>,
    pub trigger: Option<Value>,
    pub triggerer_job: Option<Value>,
    pub dag_version: Option<DagVersionResponse>,
    /// updraft: the DAG's tenant.
    pub tenant: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskInstanceCollectionResponse {
    pub task_instances: Vec<TaskInstanceResponse>,
    pub total_entries: u64,
}

/// Airflow's state name, `null` for updraft's `none`.
pub fn ti_state_name(state: TaskState) -> Option<String> {
    (state != TaskState::None).then(|| state.as_str().to_string())
}

/// Airflow's operator class for the kind of a DAG's task.
pub fn operator_name(dag: Option<&Dag>, task_id: &str) -> Option<String> {
    let kind = &dag?.task(task_id)?.kind;
    Some(operator_of(kind).to_string())
}

/// Airflow's operator class for a task kind.
pub fn operator_of(kind: &TaskKind) -> &'static str {
    match kind {
        TaskKind::Bash(_) => "BashOperator",
        TaskKind::Command(_) => "CommandOperator",
        TaskKind::Noop => "EmptyOperator",
        TaskKind::Pod(_) => "KubernetesPodOperator",
        TaskKind::Python(python) => match python.python {
            updraft_dag::PythonInterpreter::Default => "PythonOperator",
            updraft_dag::PythonInterpreter::Requirements { .. } => "PythonVirtualenvOperator",
            _ => "ExternalPythonOperator",
        },
        // Airflow's class for each check.
        TaskKind::Sensor(sensor) => match sensor.check {
            updraft_dag::SensorCheck::Path(_) => "FileSensor",
            updraft_dag::SensorCheck::TimeDelta(_) => "TimeDeltaSensor",
            updraft_dag::SensorCheck::DateTime(_) => "DateTimeSensor",
            updraft_dag::SensorCheck::ExternalTask(_) => "ExternalTaskSensor",
            updraft_dag::SensorCheck::Http(_) => "HttpSensor",
            updraft_dag::SensorCheck::Sql(_) => "SqlSensor",
            updraft_dag::SensorCheck::Bash(_) | updraft_dag::SensorCheck::Command(_) => {
                "BashSensor"
            }
            updraft_dag::SensorCheck::TriggerDagRun(_) => "TriggerDagRunOperator",
        },
    }
}

/// Airflow's `max_tries` counts retries (a try may start while `try_number <= max_tries`);
/// updraft's counts tries. Never negative.
pub fn airflow_max_tries(ti: &TiRow) -> i64 {
    i64::from(ti.max_tries.saturating_sub(1))
}

pub struct TiContext<'a> {
    pub run: &'a RunRow,
    pub dag: Option<&'a Dag>,
    pub versions: Option<&'a Versions>,
    pub note: Option<&'a str>,
}

/// What a task instance's id is derived from: an unmapped one's as before mapping existed.
fn ti_identity(ti: &TiRow) -> String {
    if ti.map_index < 0 {
        format!("task_instance/{}/{}", ti.run_pk, ti.task_id)
    } else {
        format!(
            "task_instance/{}/{}/{}",
            ti.run_pk, ti.task_id, ti.map_index
        )
    }
}

pub fn ti_response(ti: &TiRow, ctx: &TiContext<'_>) -> TaskInstanceResponse {
    let operator = operator_name(ctx.dag, &ti.task_id);
    TaskInstanceResponse {
        id: uuid_for(&ti_identity(ti)),
        task_id: ti.task_id.clone(),
        dag_id: ti.dag_id.clone(),
        dag_run_id: ti.run_id.clone(),
        map_index: i64::from(ti.map_index),
        logical_date: Some(ti.logical_date),
        run_after: run_after(ctx.run),
        start_date: ti.start_date,
        end_date: ti.end_date,
        duration: seconds_between(ti.start_date, ti.end_date),
        state: ti_state_name(ti.state),
        try_number: i64::from(ti.try_number),
        max_tries: airflow_max_tries(ti),
        task_display_name: ti.task_id.clone(),
        dag_display_name: ti.dag_id.clone(),
        hostname: ti.hostname.clone(),
        unixname: None,
        pool: ti.pool.clone(),
        pool_slots: i64::from(ti.pool_slots),
        queue: Some(neutral::QUEUE.to_string()),
        priority_weight: Some(ti.priority_weight),
        operator: operator.clone(),
        operator_name: operator,
        queued_when: ti.queued_at,
        scheduled_when: None,
        pid: ti.pid,
        executor: None,
        executor_config: neutral::EXECUTOR_CONFIG.to_string(),
        note: ctx.note.map(str::to_string),
        rendered_map_index: None,
        rendered_fields: Some(json!({})),
        trigger: None,
        triggerer_job: None,
        dag_version: ctx.versions.and_then(|v| v.response(&ctx.run.version)),
        tenant: ti.tenant.clone(),
    }
}

/// Airflow's `TaskInstanceHistoryResponse`: one try of a task instance.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskInstanceHistoryResponse {
    pub task_id: String,
    pub dag_id: String,
    pub dag_run_id: String,
    pub map_index: i64,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub duration: Option<f64>,
    #[schema(value_type = Option<String>)]
    pub state: Option<String>,
    pub try_number: i64,
    pub max_tries: i64,
    pub task_display_name: String,
    pub dag_display_name: String,
    pub hostname: Option<String>,
    pub unixname: Option<String>,
    pub pool: String,
    pub pool_slots: i64,
    pub queue: Option<String>,
    pub priority_weight: Option<i64>,
    pub operator: Option<String>,
    pub operator_name: Option<String>,
    pub queued_when: Option<DateTime<Utc>>,
    pub scheduled_when: Option<DateTime<Utc>>,
    pub pid: Option<i64>,
    pub executor: Option<String>,
    pub executor_config: String,
    pub dag_version: Option<DagVersionResponse>,
    /// updraft: the DAG's tenant.
    pub tenant: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskInstanceHistoryCollectionResponse {
    pub task_instances: Vec<TaskInstanceHistoryResponse>,
    pub total_entries: u64,
}

pub fn try_response(
    ti: &TiRow,
    attempt: &updraft_store::TryRow,
    ctx: &TiContext<'_>,
) -> TaskInstanceHistoryResponse {
    let operator = operator_name(ctx.dag, &ti.task_id);
    let current = attempt.try_number == ti.try_number;
    TaskInstanceHistoryResponse {
        task_id: ti.task_id.clone(),
        dag_id: ti.dag_id.clone(),
        dag_run_id: ti.run_id.clone(),
        map_index: i64::from(attempt.map_index),
        start_date: attempt.start_date,
        end_date: attempt.end_date,
        duration: seconds_between(attempt.start_date, attempt.end_date),
        state: ti_state_name(attempt.state),
        try_number: i64::from(attempt.try_number),
        max_tries: airflow_max_tries(ti),
        task_display_name: ti.task_id.clone(),
        dag_display_name: ti.dag_id.clone(),
        hostname: attempt.hostname.clone(),
        unixname: None,
        pool: ti.pool.clone(),
        pool_slots: i64::from(ti.pool_slots),
        queue: Some(neutral::QUEUE.to_string()),
        priority_weight: Some(ti.priority_weight),
        operator: operator.clone(),
        operator_name: operator,
        queued_when: if current { ti.queued_at } else { None },
        scheduled_when: None,
        pid: if current { ti.pid } else { None },
        executor: None,
        executor_config: neutral::EXECUTOR_CONFIG.to_string(),
        dag_version: ctx.versions.and_then(|v| v.response(&ctx.run.version)),
        tenant: ti.tenant.clone(),
    }
}

/// The states a user may set a task instance to.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TaskInstanceMutableState {
    Success,
    Failed,
    Skipped,
}

impl From<TaskInstanceMutableState> for TaskState {
    fn from(s: TaskInstanceMutableState) -> TaskState {
        match s {
            TaskInstanceMutableState::Success => TaskState::Success,
            TaskInstanceMutableState::Failed => TaskState::Failed,
            TaskInstanceMutableState::Skipped => TaskState::Skipped,
        }
    }
}

/// `PATCH .../taskInstances/{task_id}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTaskInstanceBody {
    pub new_state: Option<TaskInstanceMutableState>,
    /// `null` removes the note.
    #[serde(default, deserialize_with = "de_present")]
    #[schema(value_type = Option<String>, max_length = 1000)]
    pub note: Option<Option<String>>,
    #[serde(default)]
    pub include_upstream: bool,
    #[serde(default)]
    pub include_downstream: bool,
    #[serde(default)]
    pub include_future: bool,
    #[serde(default)]
    pub include_past: bool,
}

/// The task id a `task_ids` item names: a task id, or Airflow's `[task_id, map_index]` pair
/// with `map_index` -1 (updraft's instances are not mapped). `Err` for anything else.
pub fn task_id_of(item: &Value) -> Result<Option<&str>, String> {
    match item {
        Value::String(id) => Ok(Some(id)),
        Value::Array(pair) => match pair.as_slice() {
            [Value::String(id), index] if index.as_i64().is_some() => {
                Ok((index.as_i64() == Some(-1)).then_some(id.as_str()))
            }
            _ => Err(format!(
                "task_ids: expected a task id or [task id, map index], got {item}"
            )),
        },
        other => Err(format!(
            "task_ids: expected a task id or [task id, map index], got {other}"
        )),
    }
}

/// `POST /dags/{dag_id}/clearTaskInstances`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearTaskInstancesBody {
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub dry_run: bool,
    /// Runs with a logical date at or after this (not with `dag_run_id`).
    #[serde(default, deserialize_with = "de_opt_datetime")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start_date: Option<DateTime<Utc>>,
    /// Runs with a logical date at or before this (not with `dag_run_id`).
    #[serde(default, deserialize_with = "de_opt_datetime")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub end_date: Option<DateTime<Utc>>,
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub only_failed: bool,
    #[serde(default)]
    pub only_running: bool,
    /// Accepted for compatibility: a cleared run always goes back to `queued`.
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub reset_dag_runs: bool,
    /// Task ids, or `[task_id, map_index]` pairs; default: every task.
    pub task_ids: Option<Vec<Value>>,
    pub dag_run_id: Option<String>,
    #[serde(default)]
    pub include_upstream: bool,
    #[serde(default)]
    pub include_downstream: bool,
    #[serde(default)]
    pub include_future: bool,
    #[serde(default)]
    pub include_past: bool,
    /// Accepted for compatibility: a cleared run stays pinned to its version.
    pub run_on_latest_version: Option<bool>,
    /// Accepted for compatibility; running instances are cleared like the others.
    #[serde(default)]
    pub prevent_running_task: bool,
    #[schema(max_length = 1000)]
    pub note: Option<String>,
}

// ---- logs ---------------------------------------------------------------------------------

/// One line of a task's log, as Airflow's `StructuredLogMessage` (`event` is the text).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StructuredLogMessage {
    pub event: String,
    pub timestamp: Option<DateTime<Utc>>,
}

/// Airflow's `TaskInstancesLogResponse`, plus `end_of_log`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskInstancesLogResponse {
    pub content: Vec<StructuredLogMessage>,
    /// Pass back as `token` to get only what was written since.
    pub continuation_token: Option<String>,
    /// updraft: the try is over and everything it wrote was returned.
    pub end_of_log: bool,
}

// ---- import errors, sources ---------------------------------------------------------------

/// Airflow's `ImportErrorResponse`, plus where the error is.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportErrorResponse {
    pub import_error_id: i64,
    pub timestamp: DateTime<Utc>,
    pub filename: String,
    pub bundle_name: Option<String>,
    pub stack_trace: String,
    /// updraft: the file's tenant.
    pub tenant: String,
    /// updraft: 1-based line, when the problem has one.
    pub line: Option<u32>,
    /// updraft: 1-based column, when the problem has one.
    pub column: Option<u32>,
    /// updraft: the message without the location.
    pub message: String,
}

impl From<&ImportErrorRow> for ImportErrorResponse {
    fn from(row: &ImportErrorRow) -> Self {
        ImportErrorResponse {
            import_error_id: row.id,
            timestamp: row.timestamp,
            filename: row.error.filename.clone(),
            bundle_name: Some(neutral::BUNDLE_NAME.to_string()),
            stack_trace: row.error.to_string(),
            tenant: row.error.tenant.clone(),
            line: row.error.line,
            column: row.error.column,
            message: row.error.message.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportErrorCollectionResponse {
    pub import_errors: Vec<ImportErrorResponse>,
    pub total_entries: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagSourceResponse {
    pub content: Option<String>,
    pub dag_id: String,
    pub dag_display_name: String,
    pub version_number: Option<i64>,
}

// ---- pools --------------------------------------------------------------------------------

/// Airflow's `PoolResponse`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PoolResponse {
    pub name: String,
    pub slots: i64,
    pub description: Option<String>,
    pub include_deferred: bool,
    pub occupied_slots: i64,
    pub running_slots: i64,
    pub queued_slots: i64,
    pub scheduled_slots: i64,
    pub open_slots: i64,
    pub deferred_slots: i64,
    /// The tenant whose pool it is (Airflow's team); null: shared by every tenant.
    pub team_name: Option<String>,
}

pub fn pool_response(pool: &PoolRow, usage: &HashMap<String, PoolUsage>) -> PoolResponse {
    let used = usage.get(&pool.name).copied().unwrap_or_default();
    let occupied = used.running + used.queued;
    PoolResponse {
        name: pool.name.clone(),
        slots: pool.slots,
        description: Some(pool.description.clone()),
        include_deferred: false,
        occupied_slots: occupied,
        running_slots: used.running,
        queued_slots: used.queued,
        scheduled_slots: used.scheduled,
        open_slots: pool.slots.saturating_sub(occupied),
        deferred_slots: 0,
        team_name: pool.tenant.clone(),
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PoolCollectionResponse {
    pub pools: Vec<PoolResponse>,
    pub total_entries: u64,
}

/// `POST /pools`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolBody {
    #[schema(max_length = 256, min_length = 1)]
    pub name: String,
    /// updraft pools have a fixed number of slots (no -1 for unlimited).
    #[schema(minimum = 0)]
    pub slots: i64,
    pub description: Option<String>,
    /// updraft has no deferred task instances: must be false.
    #[serde(default)]
    pub include_deferred: bool,
    /// The tenant whose pool it is (Airflow's team; `tenant` is accepted too). Left out: the
    /// caller's tenant when it holds Op in exactly one, shared (null) for a global Op. Only a
    /// global Op may name another tenant or share a pool.
    #[serde(default, alias = "tenant")]
    pub team_name: Option<String>,
}

/// `PATCH /pools/{pool_name}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolPatchBody {
    /// The pool's name; renaming is not supported, so it must equal the path's.
    pub pool: Option<String>,
    #[schema(minimum = 0)]
    pub slots: Option<i64>,
    #[serde(default, deserialize_with = "de_present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    pub include_deferred: Option<bool>,
    /// A pool's tenant cannot change: null or the pool's own.
    #[serde(alias = "tenant")]
    pub team_name: Option<String>,
}

// ---- monitor, version ---------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BaseInfoResponse {
    pub status: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SchedulerInfoResponse {
    pub status: Option<String>,
    pub latest_scheduler_heartbeat: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TriggererInfoResponse {
    pub status: Option<String>,
    pub latest_triggerer_heartbeat: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagProcessorInfoResponse {
    pub status: Option<String>,
    pub latest_dag_processor_heartbeat: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthInfoResponse {
    pub metadatabase: BaseInfoResponse,
    pub scheduler: SchedulerInfoResponse,
    pub triggerer: TriggererInfoResponse,
    pub dag_processor: Option<DagProcessorInfoResponse>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VersionInfo {
    pub version: String,
    pub git_version: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_left_out_of_urls_shown() {
        assert_eq!(
            without_credentials("https://user:tok@git.example.com/a.git"),
            "https://git.example.com/a.git"
        );
        assert_eq!(
            without_credentials("ssh://git@git.example.com:2222/a.git"),
            "ssh://git.example.com:2222/a.git"
        );
        assert_eq!(
            without_credentials("git@github.com:org/dags.git"),
            "github.com:org/dags.git"
        );
        assert_eq!(without_credentials("s3://bucket/dags"), "s3://bucket/dags");
    }

    #[test]
    fn revision_links_follow_the_sources_link_to_its_current_revision() {
        let source = SourceRow {
            name: "dags".into(),
            revision: Some("abc123".into()),
            revision_url: Some("https://git.example.com/dags/commit/abc123".into()),
            ..SourceRow::default()
        };
        assert_eq!(
            revision_url(&source, "abc123").as_deref(),
            Some("https://git.example.com/dags/commit/abc123")
        );
        assert_eq!(
            revision_url(&source, "def456").as_deref(),
            Some("https://git.example.com/dags/commit/def456")
        );
        let without_link = SourceRow {
            revision_url: None,
            ..source.clone()
        };
        assert_eq!(revision_url(&without_link, "abc123"), None);
        let script = SourceRow {
            revision_url: Some("javascript:alert(1)//abc123".into()),
            ..source
        };
        assert_eq!(revision_url(&script, "abc123"), None);
        let bundles = Bundles::new(vec![without_link]);
        assert_eq!(bundles.url(Some("dags"), Some("abc123")), None);
        assert_eq!(bundles.url(None, Some("abc123")), None);
        assert_eq!(Bundles::name(None), neutral::BUNDLE_NAME);
        assert_eq!(Bundles::name(Some("dags")), "dags");
    }
}
