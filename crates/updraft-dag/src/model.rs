//! The validated DAG model every later stage works from.
//!
//! Values here are already checked: identifiers are valid, task ids are unique, upstream ids
//! exist, the graph is acyclic, the schedule and time zone parse. They serialize to JSON so a
//! run can be pinned to the exact definition it started with.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Tenant of a DAG file placed directly in the DAGs folder.
pub const DEFAULT_TENANT: &str = "default";
/// Pool a task uses unless it names another.
pub const DEFAULT_POOL: &str = "default_pool";
/// Exit code by which a `bash`/`command` task says "skip me" (Airflow's default).
pub const SKIP_EXIT_CODE: i32 = 99;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dag {
    pub dag_id: String,
    pub tenant: String,
    /// Path of the defining file relative to the DAGs folder, with `/` separators.
    pub fileloc: String,
    pub description: Option<String>,
    pub schedule: Schedule,
    pub timezone: Tz,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub catchup: bool,
    pub max_active_runs: u32,
    pub max_active_tasks: u32,
    pub tags: Vec<String>,
    pub params: BTreeMap<String, Param>,
    pub env: BTreeMap<String, String>,
    /// `None` means "use the installation's default" (`core.dags_are_paused_at_creation`).
    pub is_paused_upon_creation: Option<bool>,
    /// Notifiers of the run's end (`on_success`, `on_failure`). Not serialized when empty, so
    /// adding the field changed no existing DAG's version.
    #[serde(default, skip_serializing_if = "RunCallbacks::is_empty")]
    pub run_callbacks: RunCallbacks,
    /// A running run older than this (from its start) is failed (Airflow's `dagrun_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dagrun_timeout: Option<Duration>,
    /// Tasks in declaration order, with full ids (a grouped task's id starts with its
    /// groups' ids: `extract.a`).
    pub tasks: Vec<Task>,
    /// Task groups (Airflow's `TaskGroup`) in declaration order, a group before the groups
    /// inside it. Only for showing the DAG: scheduling sees plain tasks. Not serialized when
    /// empty, so a DAG without groups keeps its version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<TaskGroup>,
}

impl Dag {
    pub fn task(&self, task_id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.task_id == task_id)
    }

    /// The group whose full id is `group_id`.
    pub fn group(&self, group_id: &str) -> Option<&TaskGroup> {
        self.groups.iter().find(|g| g.group_id == group_id)
    }

    /// The innermost group holding `task_id`, if any.
    pub fn group_of(&self, task_id: &str) -> Option<&TaskGroup> {
        self.groups
            .iter()
            .find(|g| g.tasks.iter().any(|t| t == task_id))
    }

    /// Content hash of the parsed definition: equal definitions have equal versions, whatever
    /// the formatting of the file they came from.
    pub fn version(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_vec(self).expect("a Dag always serializes");
        let digest = Sha256::digest(&json);
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// When runs are created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Manual runs only (`schedule: null` or absent).
    None,
    /// `@once`: one run, for the interval starting at `start_date`.
    Once,
    /// A validated 5-field cron expression; presets such as `@daily` are stored expanded.
    Cron(String),
    /// A fixed duration between run starts, anchored at `start_date` (`30m`, `1h`, `1d`).
    Every(Duration),
    /// Asset-triggered (Airflow's `AssetTriggeredTimetable`): a run when the condition is
    /// satisfied by asset events recorded since the DAG's last asset-triggered run.
    Assets(AssetCondition),
}

impl Schedule {
    /// Whether runs are created by the scheduler on a timetable (cron, duration, `@once`);
    /// asset-triggered and manual DAGs need no start date.
    pub fn is_scheduled(&self) -> bool {
        !matches!(self, Schedule::None | Schedule::Assets(_))
    }

    /// The asset condition of an asset-triggered DAG.
    pub fn assets(&self) -> Option<&AssetCondition> {
        match self {
            Schedule::Assets(condition) => Some(condition),
            _ => None,
        }
    }
}

/// Which assets' events an asset-triggered DAG waits for: Airflow's `Asset`, `AssetAll`
/// (`&`, and a plain list) and `AssetAny` (`|`), nested at will. Assets are named by URI,
/// within the DAG's tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetCondition {
    Asset(String),
    All(Vec<AssetCondition>),
    Any(Vec<AssetCondition>),
}

impl AssetCondition {
    /// Every URI the condition names, each once, in first-mention order.
    pub fn uris(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        self.collect_uris(&mut out);
        out
    }

    fn collect_uris<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            AssetCondition::Asset(uri) => {
                if !out.contains(&uri.as_str()) {
                    out.push(uri);
                }
            }
            AssetCondition::All(items) | AssetCondition::Any(items) => {
                items.iter().for_each(|c| c.collect_uris(out))
            }
        }
    }
}

/// The condition as an expression (`s3://a & (s3://b | s3://c)`), which parses back to an
/// equal condition.
impl std::fmt::Display for AssetCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (items, op) = match self {
            AssetCondition::Asset(uri) => return f.write_str(uri),
            AssetCondition::All(items) => (items, " & "),
            AssetCondition::Any(items) => (items, " | "),
        };
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                f.write_str(op)?;
            }
            match item {
                AssetCondition::Asset(_) => write!(f, "{item}")?,
                _ => write!(f, "({item})")?,
            }
        }
        Ok(())
    }
}

/// An asset a task updates (Airflow's `outlets`): when a try succeeds, an event is recorded
/// for each of the task's outlets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outlet {
    pub uri: String,
    /// A display name; the URI when absent (Airflow 3's `Asset(name=...)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free-form JSON stored with each event.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// How a schedule is shown: `None`, `@once`, the preset name of an expanded preset
/// (`@daily`), the cron expression (`0 3 * * *`), or a compact duration (`30m`, `1d`). Every
/// form except `None` parses back to the same schedule.
impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::None => f.write_str("None"),
            Schedule::Once => f.write_str("@once"),
            Schedule::Cron(expr) => {
                f.write_str(crate::schedule::cron_preset_name(expr).unwrap_or(expr))
            }
            Schedule::Every(d) => f.write_str(&format_duration(*d)),
            Schedule::Assets(condition) => write!(f, "{condition}"),
        }
    }
}

/// A duration in the largest unit that divides it exactly: `1d`, `6h`, `30m`, `90s`, `1500ms`.
/// The result parses back to the same duration as a DAG-file duration.
pub fn format_duration(d: Duration) -> String {
    let millis = d.as_millis();
    if !millis.is_multiple_of(1000) {
        return format!("{millis}ms");
    }
    let secs = d.as_secs();
    match secs {
        0 => "0s".to_owned(),
        s if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        s if s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        s if s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Airflow's trigger rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    #[default]
    AllSuccess,
    AllFailed,
    AllDone,
    AllDoneMinOneSuccess,
    AllSkipped,
    OneSuccess,
    OneFailed,
    OneDone,
    NoneFailed,
    NoneFailedMinOneSuccess,
    NoneSkipped,
    Always,
}

impl TriggerRule {
    pub const ALL: [TriggerRule; 12] = [
        TriggerRule::AllSuccess,
        TriggerRule::AllFailed,
        TriggerRule::AllDone,
        TriggerRule::AllDoneMinOneSuccess,
        TriggerRule::AllSkipped,
        TriggerRule::OneSuccess,
        TriggerRule::OneFailed,
        TriggerRule::OneDone,
        TriggerRule::NoneFailed,
        TriggerRule::NoneFailedMinOneSuccess,
        TriggerRule::NoneSkipped,
        TriggerRule::Always,
    ];

    /// The rule's name as written in DAG files (`all_success`, `none_failed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerRule::AllSuccess => "all_success",
            TriggerRule::AllFailed => "all_failed",
            TriggerRule::AllDone => "all_done",
            TriggerRule::AllDoneMinOneSuccess => "all_done_min_one_success",
            TriggerRule::AllSkipped => "all_skipped",
            TriggerRule::OneSuccess => "one_success",
            TriggerRule::OneFailed => "one_failed",
            TriggerRule::OneDone => "one_done",
            TriggerRule::NoneFailed => "none_failed",
            TriggerRule::NoneFailedMinOneSuccess => "none_failed_min_one_success",
            TriggerRule::NoneSkipped => "none_skipped",
            TriggerRule::Always => "always",
        }
    }

    /// The rule named `name` (as in [`TriggerRule::as_str`]).
    pub fn from_name(name: &str) -> Option<TriggerRule> {
        TriggerRule::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl std::fmt::Display for TriggerRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How `priority_weight` adds up along the graph (Airflow's `weight_rule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightRule {
    /// Own weight plus the weights of all downstream tasks.
    #[default]
    Downstream,
    /// Own weight plus the weights of all upstream tasks.
    Upstream,
    /// Own weight only.
    Absolute,
}

impl WeightRule {
    pub const ALL: [WeightRule; 3] = [
        WeightRule::Downstream,
        WeightRule::Upstream,
        WeightRule::Absolute,
    ];

    /// The rule's name as written in DAG files.
    pub fn as_str(self) -> &'static str {
        match self {
            WeightRule::Downstream => "downstream",
            WeightRule::Upstream => "upstream",
            WeightRule::Absolute => "absolute",
        }
    }

    /// The rule named `name` (as in [`WeightRule::as_str`]).
    pub fn from_name(name: &str) -> Option<WeightRule> {
        WeightRule::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl std::fmt::Display for WeightRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub task_id: String,
    pub upstream: Vec<String>,
    pub trigger_rule: TriggerRule,
    pub retries: u32,
    pub retry_delay: Duration,
    pub retry_exponential_backoff: bool,
    pub max_retry_delay: Option<Duration>,
    pub execution_timeout: Option<Duration>,
    pub pool: String,
    pub pool_slots: u32,
    pub priority_weight: i64,
    pub weight_rule: WeightRule,
    pub depends_on_past: bool,
    /// Extra environment for the task's process, on top of the DAG's `env`. Values are templates.
    pub env: BTreeMap<String, String>,
    /// Working directory (a template); `None` means the executor's default.
    pub cwd: Option<String>,
    /// Connections the task gets as environment variables (`AIRFLOW_CONN_<ID>` holding the
    /// connection's URI), looked up for the DAG's tenant when a try starts. Not serialized
    /// when empty, so adding the field changed no existing DAG's version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<String>,
    /// Push the last non-empty line of the try's output as its `return_value` XCom
    /// (Airflow's `do_xcom_push`, whose default there is true; here false, as updraft's tasks
    /// pushed nothing before). Not serialized when false, so no existing DAG's version changed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub do_xcom_push: bool,
    /// Notifiers of the task's tries (`on_failure`, `on_retry`, ...); not serialized when
    /// empty.
    #[serde(default, skip_serializing_if = "TaskCallbacks::is_empty")]
    pub callbacks: TaskCallbacks,
    /// What the task's `return_value` decides once it succeeded (`branch: true`,
    /// `short_circuit: true`). Not serialized when absent, so no existing DAG's version changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branching: Option<Branching>,
    /// Assets a successful try updates (Airflow's `outlets`); not serialized when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outlets: Vec<Outlet>,
    /// Dynamic task mapping (Airflow's `expand`): the task runs once per combination of the
    /// expanded arguments' values. Not serialized when absent, so no existing DAG's version
    /// changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expand: Option<Expand>,
    /// At most this many tries of the task queued or running across all runs of the DAG
    /// (Airflow's `max_active_tis_per_dag`); not serialized when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active_tis_per_dag: Option<u32>,
    pub kind: TaskKind,
}

impl Task {
    /// Whether the task is mapped (has `expand`).
    pub fn is_mapped(&self) -> bool {
        self.expand.is_some()
    }
}

/// A mapped task's expanded arguments, in file order (the last one varies fastest across map
/// indexes, as Airflow's `expand(a=..., b=...)` and `itertools.product`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expand {
    pub args: Vec<MappedArg>,
}

/// One expanded argument: its name and where its values come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MappedArg {
    pub name: String,
    pub source: MapSource,
}

/// Where a mapped argument's values come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapSource {
    /// A list written in the DAG file.
    Literal(Vec<serde_json::Value>),
    /// A template rendered when the task expands; it must render to a JSON list or object.
    Template(String),
    /// An upstream task's XCom (that task is an upstream of the mapped task).
    XCom { task_id: String, key: String },
}

fn is_false(value: &bool) -> bool {
    !value
}

/// A task group (Airflow's `TaskGroup`): a named box of tasks and groups in the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskGroup {
    /// The full id: the enclosing groups' ids joined with `.` (where they prefix) and the
    /// group's own id, `extract.inner`.
    pub group_id: String,
    /// The id as written in its `group_id:` key, `inner`.
    pub label: String,
    /// The full id of the enclosing group; `None` at the DAG's top level.
    pub parent: Option<String>,
    pub tooltip: Option<String>,
    /// Whether the ids of its tasks and groups start with `group_id.` (Airflow's default).
    pub prefix_group_id: bool,
    /// Full ids of the tasks directly inside it (not those of nested groups), in declaration
    /// order.
    pub tasks: Vec<String>,
}

/// Notifiers of a task's tries, by event (Airflow's `on_*_callback` task arguments).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TaskCallbacks {
    /// A try failed for good (no retry left): Airflow's `on_failure_callback`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<Notifier>,
    /// A try succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_success: Vec<Notifier>,
    /// A try failed and the instance is up for retry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_retry: Vec<Notifier>,
    /// A try was recorded running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_execute: Vec<Notifier>,
}

impl TaskCallbacks {
    pub fn is_empty(&self) -> bool {
        self.on_failure.is_empty()
            && self.on_success.is_empty()
            && self.on_retry.is_empty()
            && self.on_execute.is_empty()
    }
}

/// Notifiers of a run's end (Airflow's DAG-level `on_*_callback`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunCallbacks {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<Notifier>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_success: Vec<Notifier>,
}

impl RunCallbacks {
    pub fn is_empty(&self) -> bool {
        self.on_failure.is_empty() && self.on_success.is_empty()
    }
}

/// Where one notification goes (Airflow's notifiers). Every string but a connection id is a
/// template, rendered with the task's or the run's context when the event happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Notifier {
    /// A JSON POST of the event to `url`, with extra `headers`.
    Webhook {
        url: String,
        headers: BTreeMap<String, String>,
    },
    /// A Slack incoming webhook: `{"text": ...}` posted to the URL given or held by the
    /// connection.
    Slack {
        target: SlackTarget,
        /// `None`: a one-line summary of the event.
        text: Option<String>,
    },
    /// An email sent through the SMTP connection (`smtp_default` unless named).
    Email {
        to: Vec<String>,
        connection: String,
        /// `None`: a one-line summary of the event.
        subject: Option<String>,
        /// `None`: the event's fields, one a line.
        body: Option<String>,
    },
}

impl Notifier {
    /// The key that selects this notifier in a DAG file.
    pub fn kind(&self) -> &'static str {
        match self {
            Notifier::Webhook { .. } => "webhook",
            Notifier::Slack { .. } => "slack",
            Notifier::Email { .. } => "email",
        }
    }
}

/// Where a Slack notification is posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlackTarget {
    /// An incoming-webhook URL (a template).
    Url(String),
    /// A connection id holding the webhook URL, as Airflow's `slack_webhook` connection.
    Connection(String),
}

/// How a task's `return_value` steers its downstream tasks once it succeeded: Airflow's
/// branch operators (`BranchPythonOperator`, `BaseBranchOperator`, `@task.branch`) and its
/// `ShortCircuitOperator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Branching {
    /// `branch: true`: the value names the direct downstream tasks to follow; every other
    /// direct downstream task is skipped.
    Branch,
    /// `short_circuit: true`: a falsy value skips the downstream tasks, all of them
    /// (`ignore_downstream_trigger_rules`) or only the direct ones, leaving the rest to their
    /// trigger rules.
    ShortCircuit {
        ignore_downstream_trigger_rules: bool,
    },
}

/// What a task does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// A script run by `bash -c`. The script is a template.
    Bash(String),
    /// An argv run without a shell. Each element is a template.
    Command(Vec<String>),
    /// Benchmarking only: completes successfully in-process without spawning anything.
    Noop,
    /// A Kubernetes pod, from a PodTemplate file or an inline spec.
    Pod(Box<PodTask>),
    /// A Python callable imported from the DAGs folder and called by an interpreter on this
    /// machine (Airflow's `PythonOperator` / `@task`, `ExternalPythonOperator`).
    Python(Box<PythonTask>),
    /// A sensor in reschedule mode: pokes until its check holds, holding no slot between
    /// pokes (Airflow's `BaseSensorOperator` with `mode="reschedule"`).
    Sensor(Box<SensorTask>),
}

impl TaskKind {
    /// The key that selects this kind in a DAG file (`bash`, `command`, `pod`, `noop`,
    /// `python`, `sensor`, `trigger_dag_run`).
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Bash(_) => "bash",
            TaskKind::Command(_) => "command",
            TaskKind::Noop => "noop",
            TaskKind::Pod(_) => "pod",
            TaskKind::Python(_) => "python",
            TaskKind::Sensor(sensor) if matches!(sensor.check, SensorCheck::TriggerDagRun(_)) => {
                "trigger_dag_run"
            }
            TaskKind::Sensor(_) => "sensor",
        }
    }
}

/// A `pod:` task: a Kubernetes pod built from a Pod manifest file kept under the tenant's
/// templates folder (`templates/<tenant>/`) or from an inline pod spec, with overrides applied
/// to one container. Every string (overrides, inline spec values, template path) is a template.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PodTask {
    /// A Pod manifest, relative to `templates/<tenant>/`; never absolute, never with `..`.
    pub template: Option<String>,
    /// An inline pod spec (`containers`, `volumes`, ...), when there is no template.
    pub spec: Option<serde_json::Value>,
    /// The container the overrides apply to; `None`: the first one.
    pub container: Option<String>,
    pub image: Option<String>,
    /// The container's `command` (its entrypoint), as Airflow's `cmds`.
    pub cmds: Option<Vec<String>>,
    /// The container's `args`.
    pub args: Option<Vec<String>>,
    /// Set on the container on top of what the manifest has (these win).
    pub env: BTreeMap<String, String>,
    /// `requests` and `limits` (`cpu`, `memory`, ...), replacing the container's own per key.
    pub resources: Option<PodResources>,
    /// The namespace to run in; `None`: the manifest's, else the tenant's first allowed one.
    pub namespace: Option<String>,
    /// Extra pod labels and annotations (beside the ones updraft sets to find its pods).
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// When the pod is deleted after it ends; `None`: the installation's default.
    pub delete_pod: Option<DeletePolicy>,
    /// How long the pod may take to start its containers (scheduling, image pull) before the
    /// try fails; `None`: the installation's default.
    pub startup_timeout: Option<Duration>,
}

/// A `python:` task: `callable` (`module.path:function`, imported from the DAGs folder) called
/// with `op_args` and `op_kwargs` (every string in them a template) and the run's context, by
/// the interpreter `python` says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PythonTask {
    /// `module.path:function` (the function part may name an attribute path, `Class.method`).
    pub callable: String,
    /// Positional arguments, as JSON values.
    pub op_args: Vec<serde_json::Value>,
    /// Keyword arguments, as JSON values.
    pub op_kwargs: BTreeMap<String, serde_json::Value>,
    pub python: PythonInterpreter,
}

/// Which Python runs a `python:` task.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PythonInterpreter {
    /// `python3`, found on the try's `PATH`.
    #[default]
    Default,
    /// `interpreter:` a program name or path (Airflow's `ExternalPythonOperator(python=...)`).
    Interpreter(String),
    /// `venv:` a virtual environment's folder, run as `<venv>/bin/python`.
    Venv(String),
    /// `requirements:` a virtual environment made (once, then cached) from `base` with these
    /// requirements installed (Airflow's `PythonVirtualenvOperator`).
    Requirements {
        /// The interpreter the environment is made from (`interpreter:`, else `python3`).
        base: String,
        requirements: Vec<String>,
    },
}

impl PythonInterpreter {
    /// The program to run (for `requirements`, the base of the environment).
    pub fn program(&self) -> String {
        match self {
            PythonInterpreter::Default => "python3".to_owned(),
            PythonInterpreter::Interpreter(program) => program.clone(),
            PythonInterpreter::Venv(folder) => {
                format!("{}/bin/python", folder.trim_end_matches('/'))
            }
            // The executor runs the environment it makes from this one.
            PythonInterpreter::Requirements { base, .. } => base.clone(),
        }
    }
}

/// Container resources: quantity strings by resource name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PodResources {
    pub requests: BTreeMap<String, String>,
    pub limits: BTreeMap<String, String>,
}

/// When a finished pod is deleted (Airflow's `on_finish_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletePolicy {
    /// Whatever the outcome (Airflow's `delete_pod`).
    #[default]
    Always,
    /// Only when the try succeeded or skipped; failed pods stay for inspection
    /// (`delete_succeeded_pod`).
    OnSuccess,
    /// Never (`keep_pod`).
    Never,
}

impl DeletePolicy {
    pub const ALL: [DeletePolicy; 3] = [
        DeletePolicy::Always,
        DeletePolicy::OnSuccess,
        DeletePolicy::Never,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeletePolicy::Always => "always",
            DeletePolicy::OnSuccess => "on_success",
            DeletePolicy::Never => "never",
        }
    }

    /// The policy named `name`; Airflow's `on_finish_action` names are accepted too.
    pub fn from_name(name: &str) -> Option<DeletePolicy> {
        match name {
            "delete_pod" => Some(DeletePolicy::Always),
            "delete_succeeded_pod" => Some(DeletePolicy::OnSuccess),
            "keep_pod" => Some(DeletePolicy::Never),
            _ => DeletePolicy::ALL.into_iter().find(|p| p.as_str() == name),
        }
    }
}

/// A run parameter: its default and the constraints a triggered value must meet.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Param {
    pub default: Option<serde_json::Value>,
    #[serde(rename = "type")]
    pub kind: Option<ParamType>,
    #[serde(rename = "enum")]
    pub allowed: Option<Vec<serde_json::Value>>,
    pub description: Option<String>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
    Array,
    Object,
    Null,
}

/// A DAG file that could not be loaded, located as precisely as the problem allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportError {
    pub tenant: String,
    /// Relative to the DAGs folder, `/` separators.
    pub filename: String,
    /// 1-based; `None` when the problem is the file as a whole (unreadable, too large).
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub message: String,
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.filename, self.message),
            (Some(l), None) => write!(f, "{}:{l}: {}", self.filename, self.message),
            _ => write!(f, "{}: {}", self.filename, self.message),
        }
    }
}

/// Airflow's default `poke_interval` of a sensor.
pub const DEFAULT_POKE_INTERVAL: Duration = Duration::from_secs(60);
/// Airflow's default sensor `timeout`: seven days.
pub const DEFAULT_SENSOR_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// When a sensor pokes again and when it gives up (Airflow's `BaseSensorOperator` settings,
/// always in `mode="reschedule"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensorTiming {
    /// Wait between two pokes (the first wait with `exponential_backoff`).
    pub poke_interval: Duration,
    /// Counted from the first poke; a sensor not done by then times out.
    pub timeout: Duration,
    /// Double the wait after each poke that is not done.
    pub exponential_backoff: bool,
    /// Cap of the wait between two pokes.
    pub max_wait: Option<Duration>,
    /// On timeout the instance is skipped instead of failed.
    pub soft_fail: bool,
}

impl Default for SensorTiming {
    fn default() -> Self {
        SensorTiming {
            poke_interval: DEFAULT_POKE_INTERVAL,
            timeout: DEFAULT_SENSOR_TIMEOUT,
            exponential_backoff: false,
            max_wait: None,
            soft_fail: false,
        }
    }
}

/// A `sensor:` task: when it pokes and gives up, and what it checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensorTask {
    pub timing: SensorTiming,
    pub check: SensorCheck,
}

/// What one poke of a sensor looks at. Strings said to be templates are rendered for each
/// poke with the task's context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorCheck {
    /// A file or folder exists; the path (a template) may hold glob patterns (`*`, `?`,
    /// `[...]`, `**` for any folders), as Airflow's `FileSensor`.
    Path(String),
    /// The run's data interval end plus this delta has passed (`TimeDeltaSensor`).
    TimeDelta(Duration),
    /// A time (a template rendering to a date-time; without an offset, in the DAG's time
    /// zone) has passed (`DateTimeSensor`).
    DateTime(String),
    /// Another DAG's run or task for the same logical date is in an allowed state
    /// (`ExternalTaskSensor`).
    ExternalTask(ExternalTaskCheck),
    /// An HTTP endpoint answers with an expected status (`HttpSensor`).
    Http(HttpCheck),
    /// The first cell of a query's first row is truthy (`SqlSensor`).
    Sql(SqlCheck),
    /// A script for `bash -c` exits 0 (`BashSensor`); a template.
    Bash(String),
    /// An argv run without a shell exits 0; each element a template.
    Command(Vec<String>),
    /// Not a check of `sensor:` but the `trigger_dag_run:` kind (Airflow's
    /// `TriggerDagRunOperator`): the first poke starts another DAG's run; with
    /// `wait_for_completion` the next pokes wait for that run to end.
    TriggerDagRun(TriggerDagRunCheck),
}

impl SensorCheck {
    /// The key that selects this check in a DAG file.
    pub fn name(&self) -> &'static str {
        match self {
            SensorCheck::Path(_) => "path",
            SensorCheck::TimeDelta(_) => "time_delta",
            SensorCheck::DateTime(_) => "date_time",
            SensorCheck::ExternalTask(_) => "external_task",
            SensorCheck::Http(_) => "http",
            SensorCheck::Sql(_) => "sql",
            SensorCheck::Bash(_) => "bash",
            SensorCheck::Command(_) => "command",
            SensorCheck::TriggerDagRun(_) => "trigger_dag_run",
        }
    }
}

/// A run or task of another DAG of the same tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalTaskCheck {
    pub external_dag_id: String,
    /// `None`: the run itself is looked at.
    pub external_task_id: Option<String>,
    /// States that make the sensor succeed (Airflow's default: `success`).
    pub allowed_states: Vec<String>,
    /// States that fail the sensor (default: none).
    pub failed_states: Vec<String>,
    /// The other run's logical date is this much before this run's (default: the same).
    pub execution_delta: Option<Duration>,
}

/// Another DAG's run to start, in the same tenant (`TriggerDagRunOperator`'s fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerDagRunCheck {
    /// A template.
    pub trigger_dag_id: String,
    /// A template; `None`: Airflow's `manual__<logical date>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_run_id: Option<String>,
    /// A template rendering to a date-time; `None`: the time of the trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical_date: Option<String>,
    /// The new run's conf: a JSON object whose strings are templates.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub conf: serde_json::Value,
    /// A run with the same run id is cleared and runs again, instead of failing the task.
    #[serde(default)]
    pub reset_dag_run: bool,
    /// A run with the same run id skips the task, instead of failing it.
    #[serde(default)]
    pub skip_when_already_exists: bool,
    /// Succeed only once the started run is in `allowed_states` (fail in `failed_states`).
    #[serde(default)]
    pub wait_for_completion: bool,
    pub allowed_states: Vec<String>,
    pub failed_states: Vec<String>,
}

/// An HTTP request and the statuses that end the wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCheck {
    /// A connection whose host (with its schema and port) is the base URL, as Airflow's
    /// `http_conn_id`; or `None` when `url` is given.
    pub connection: Option<String>,
    /// A base URL (a template), when there is no connection.
    pub url: Option<String>,
    /// Appended to the base URL (a template).
    pub endpoint: String,
    pub method: String,
    pub expected_status: Vec<u16>,
    /// Request headers (values are templates).
    pub headers: BTreeMap<String, String>,
    /// Request body (a template).
    pub body: Option<String>,
}

/// A query on a SQLite or PostgreSQL connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlCheck {
    pub connection: String,
    /// A template.
    pub query: String,
}
