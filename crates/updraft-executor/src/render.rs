//! Jinja templating of tasks with Airflow's template context.
//!
//! Every string field of a task — the `bash` script, each `command` argv element, the values of
//! the DAG's and the task's `env`, and `cwd` — is a [minijinja] template rendered with the names
//! Airflow puts in its template context:
//!
//! | name | value |
//! |---|---|
//! | `ds` | the logical date as `YYYY-MM-DD` |
//! | `ds_nodash` | the logical date as `YYYYMMDD` |
//! | `ts` | the logical date in ISO 8601 with offset, `2024-01-01T00:00:00+00:00` |
//! | `ts_nodash` | `20240101T000000` |
//! | `ts_nodash_with_tz` | `20240101T000000+0000` |
//! | `logical_date`, `data_interval_start`, `data_interval_end` | date-time objects (below) |
//! | `run_id` | the run id |
//! | `dag_run` | `.run_id`, `.conf`, `.run_type`, `.dag_id`, `.logical_date`, `.data_interval_start`, `.data_interval_end` |
//! | `params` | the run's params (a map) |
//! | `dag` | `.dag_id`, `.tenant`, `.timezone` (the DAG's time zone name) |
//! | `task` | `.task_id` |
//! | `ti` / `task_instance` | `.try_number`, `.task_id`, `.dag_id`, `.run_id`, `.xcom_pull(task_ids=..., key=...)` (see [`xcom`]) |
//! | `task_instance_key_str` | `<dag_id>__<task_id>__<ds_nodash>` |
//! | `macros` | `ds_add(ds, days)`, `ds_format(ds, in_fmt, out_fmt)` |
//! | `tenant` | the DAG's tenant |
//! | `conn` | the tenant's connections: `conn.my_db.host`, `.password`, `.extra_dejson.key`, `.get_uri()`, `conn.get('id')` (see [`secrets`]) |
//! | `var` | the tenant's variables: `var.value.key`, `var.value.get('key', 'default')`, `var.json.key.field` |
//!
//! Like Airflow, the date strings (`ds`, `ts`, ...) are those of the logical date **in UTC**, not
//! in the DAG's time zone: a daily DAG in `Europe/Paris` whose run starts at local midnight has
//! the previous day as its `ds`. Use `logical_date.in_timezone(dag.timezone)` for local values.
//!
//! The date-time objects print as Airflow 3 prints them (pendulum 3's `str()`, ISO 8601 with a
//! space: `2024-12-01 01:00:00+00:00`; `ts` and `.isoformat()` keep the `T`) and offer `.year`,
//! `.month`, `.day`, `.hour`, `.minute`, `.second`, `.microsecond`, `.int_timestamp`,
//! `.timezone_name` and the methods `strftime(fmt)`, `isoformat()`, `timestamp()`, `date()`, `to_date_string()`,
//! `to_datetime_string()` and `in_timezone(tz)` / `in_tz(tz)`.
//!
//! The Python methods templates use most also work: `.get(key, default)`, `.items()`,
//! `.keys()`, `.values()` on maps (`dag_run.conf.get('table', 'users')`), and `.upper()`,
//! `.lower()`, `.strip()`, `.lstrip()`, `.rstrip()`, `.replace()`, `.split()`,
//! `.startswith()`, `.endswith()` on strings. `airflow.conf` (`conf`) is not provided.
//!
//! `conn` and `var` hold what [`TemplateContext::secrets`] holds, looked up before rendering
//! for the names [`secret_references`] reads from the task's templates. A task's
//! `connections:` become `AIRFLOW_CONN_<ID>` in [`RenderedTask::secret_env`], and every
//! secret value the try was given goes into [`RenderedTask::mask`] (render errors are masked
//! with it too).
//!
//! The `sh` filter quotes a value for the shell: `echo {{ params.who | sh }}` passes whatever the
//! run's conf holds as one word, never as shell syntax (strings in single quotes, maps and lists
//! as their JSON, quoted). A `bash` field that puts `params` or `dag_run.conf` in the script
//! without it lets whoever triggers the run write shell code; the DAG lint warns about that
//! (`updraft_dag::lint`).
//!
//! As in Airflow, `{#` opens a Jinja comment, including inside bash's `${#var}`: such scripts
//! need `{% raw %}...{% endraw %}` (the syntax error says so).
//!
//! Undefined names are errors (strict undefined), so a typo fails the try with a message naming
//! the task and the field, e.g. ``task `load`, field `bash`: undefined variable `dss` ``.
//! Rendering keeps a template's trailing newline, so a string renders to itself when it has no
//! template syntax; strings without `{{`, `{%` or `{#` are not parsed at all.
//!
//! The same values reach the process as environment variables (see [`render_task`]); the
//! run's conf reaches it as a file (`UPDRAFT_CONF_FILE`, see [`RenderedTask::conf`]).
//!
//! Rendering has a budget ([`RenderBudget`]): a number of template instructions (minijinja's
//! fuel), a size for the rendered fields together and for any string a filter builds, and a
//! time limit. A template over budget fails its try with a message saying which limit it
//! passed; the scheduler renders on a bounded pool off its loop ([`render_off_loop`]), so a
//! slow template delays no other task.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use minijinja::value::{Object, Value};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};
use updraft_dag::{Dag, PodTask, PythonTask, SensorCheck, SensorTask, Task, TaskKind};

use crate::sensor::{
    ExternalQuery, HttpRequest, PokeCheck, SensorProgram, SqlQuery, TriggerRequest,
};

mod budget;
mod pool;
pub mod secrets;
pub mod xcom;

pub use budget::RenderBudget;
pub use pool::render_off_loop;
pub use secrets::{SecretReferences, connection_env_name, look_up_secrets, secret_references};
pub use xcom::{TemplateXComs, XComReferences, xcom_references};

/// The largest conf (compact JSON) that is also given in the `UPDRAFT_CONF` variable. Every
/// conf, whatever its size, is in the file named by `UPDRAFT_CONF_FILE`; a larger one in the
/// environment would make the process fail to start (Linux caps one variable at 128 KiB).
pub const CONF_ENV_MAX_BYTES: usize = 32 * 1024;

/// Everything a task's templates may refer to, for one try of one task instance.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateContext {
    pub tenant: String,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    /// 1-based, as in Airflow.
    pub try_number: u32,
    /// Airflow's map index: -1 for an unmapped instance (`{{ map_index }}`,
    /// `{{ ti.map_index }}`, `UPDRAFT_MAP_INDEX`).
    pub map_index: i32,
    /// A mapped instance's values of its expanded arguments, by name: `{{ mapped.<name> }}`
    /// and, for a python task, keyword arguments of its callable. Empty when not mapped.
    pub mapped: serde_json::Map<String, serde_json::Value>,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    /// The run's `conf` (`dag_run.conf`); `{}` when the run was triggered without one.
    pub conf: serde_json::Value,
    /// The run's params: the DAG's defaults merged with the trigger's values by the caller.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// `scheduled`, `manual`, `backfill`, ... (`dag_run.run_type`).
    pub run_type: String,
    /// The DAG's time zone (`dag.timezone`).
    pub timezone: Tz,
    /// The connections and variables the templates may use (`conn`, `var`), looked up for
    /// the DAG's tenant before rendering (see [`TemplateSecrets`]).
    pub secrets: TemplateSecrets,
    /// The run's XComs `ti.xcom_pull` may read, looked up before rendering for the task ids
    /// [`xcom_references`] finds (see [`xcom`]).
    pub xcoms: Arc<TemplateXComs>,
}

/// The connections and variables a try may use, looked up (through
/// `updraft_secrets::Secrets`, for the DAG's tenant) before its templates are rendered:
/// those its templates name (`{{ conn.my_db.host }}`, `{{ var.value.key }}`) and those its
/// task asks for as environment variables.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TemplateSecrets {
    pub connections: BTreeMap<String, updraft_secrets::Connection>,
    pub variables: BTreeMap<String, String>,
}

/// What the process of a task is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A script for `bash -c`.
    Bash(String),
    /// An argv run without a shell.
    Command(Vec<String>),
    /// Benchmarking only: succeeds without spawning anything.
    Noop,
    /// A Kubernetes pod: the task's `pod:` with every string rendered (the template file
    /// itself is read, checked and merged by the pod executor).
    Pod(Box<PodTask>),
    /// A Python callable, called by the runner script ([`PYTHON_RUNNER`]) in `interpreter`.
    Python(Box<PythonCall>),
    /// One poke of a sensor, run in this process (see [`crate::sensor`]).
    Sensor(Box<SensorProgram>),
}

/// The script that runs a `python:` task: `<interpreter> -u -c PYTHON_RUNNER`, with the call
/// described in a file named by `UPDRAFT_PYTHON_CALL_FILE`.
pub const PYTHON_RUNNER: &str = include_str!("python_runner.py");

/// A rendered `python:` task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonCall {
    /// The interpreter: `python3`, a program name or path, or a virtual environment's
    /// `bin/python`.
    pub interpreter: String,
    /// `requirements:` run in a virtual environment made from `interpreter` with these
    /// installed (see [`crate::venv`]); empty for the others.
    pub requirements: Vec<String>,
    /// What the runner reads, as JSON: `callable`, the rendered `op_args` and `op_kwargs`,
    /// and the `context` (dates, ids, params) the callable may ask for.
    pub call: String,
}

/// A task with all its templates rendered: ready to be launched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedTask {
    pub program: Program,
    /// The whole extra environment of the process, applied on top of the executor's own
    /// environment: the DAG's `env`, then the task's `env` (task values win), then the
    /// `UPDRAFT_*` / `AIRFLOW_CTX_*` variables (which win over both). Sorted by name, no
    /// duplicates.
    pub env: Vec<(String, String)>,
    /// The rendered `cwd`; `None` means the executor's default. A relative path is taken
    /// relative to the executor's default working directory.
    pub cwd: Option<PathBuf>,
    /// The run's conf as compact JSON. The local executor writes it to a file of the try's
    /// own and names that file in `UPDRAFT_CONF_FILE`; `env` also holds it as `UPDRAFT_CONF`
    /// when it is at most [`CONF_ENV_MAX_BYTES`].
    pub conf: String,
    /// Environment variables holding secrets (`AIRFLOW_CONN_<ID>` for the connections the task
    /// asks for). The local executor adds them to the process's environment; the pod
    /// executor puts them in a Kubernetes Secret of the try, never in the pod's spec.
    pub secret_env: Vec<(String, String)>,
    /// The values to mask in the try's log: every secret the templates and `secret_env` used.
    pub mask: updraft_secrets::Masker,
    /// The task's `do_xcom_push`: the last line of its output becomes `return_value`.
    pub do_xcom_push: bool,
}

/// A template of a task that failed to render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task `{task_id}`, field `{field}`: {message}")]
pub struct RenderError {
    pub task_id: String,
    /// `bash`, `command[1]`, `env.NAME`, `dag.env.NAME` or `cwd`.
    pub field: String,
    pub message: String,
}

/// Renders every template of `task` (and the DAG's `env`) for one try, within the default
/// [`RenderBudget`].
///
/// The returned environment holds, besides the rendered `env` entries: `UPDRAFT_TENANT`,
/// `UPDRAFT_DAG_ID`, `UPDRAFT_TASK_ID`, `UPDRAFT_RUN_ID`, `UPDRAFT_TRY_NUMBER`, `UPDRAFT_DS`,
/// `UPDRAFT_DS_NODASH`, `UPDRAFT_TS`, `UPDRAFT_LOGICAL_DATE`, `UPDRAFT_DATA_INTERVAL_START`,
/// `UPDRAFT_DATA_INTERVAL_END`, `UPDRAFT_CONF` (the run's conf as compact JSON, only when at
/// most [`CONF_ENV_MAX_BYTES`]), and `AIRFLOW_CTX_DAG_ID`, `AIRFLOW_CTX_TASK_ID`,
/// `AIRFLOW_CTX_DAG_RUN_ID`, `AIRFLOW_CTX_TRY_NUMBER`, `AIRFLOW_CTX_LOGICAL_DATE`. The
/// executor adds `UPDRAFT_CONF_FILE`.
pub fn render_task(
    dag: &Dag,
    task: &Task,
    ctx: &TemplateContext,
) -> Result<RenderedTask, RenderError> {
    render_task_within(dag, task, ctx, &RenderBudget::default())
}

/// [`render_task`] within `budget`: over it, the error names the limit passed.
pub fn render_task_within(
    dag: &Dag,
    task: &Task,
    ctx: &TemplateContext,
    budget: &RenderBudget,
) -> Result<RenderedTask, RenderError> {
    let r = Renderer {
        ctx,
        value: OnceLock::new(),
        budget: budget::Tracker::new(budget),
    };
    let mut mask = secrets::secret_mask(&ctx.secrets);
    // A message may quote what a template was given (a value that is not a number, ...).
    let err = |field: String, message: String| RenderError {
        task_id: task.task_id.clone(),
        field,
        message: if mask.is_empty() {
            message
        } else {
            mask.mask(&message)
        },
    };

    let program = match &task.kind {
        TaskKind::Bash(script) => {
            Program::Bash(r.render(script).map_err(|m| err("bash".into(), m))?)
        }
        TaskKind::Command(argv) => Program::Command(
            argv.iter()
                .enumerate()
                .map(|(i, a)| r.render(a).map_err(|m| err(format!("command[{i}]"), m)))
                .collect::<Result<_, _>>()?,
        ),
        TaskKind::Noop => Program::Noop,
        TaskKind::Pod(pod) => Program::Pod(Box::new(
            render_pod(&r, pod).map_err(|(field, message)| err(format!("pod.{field}"), message))?,
        )),
        TaskKind::Python(python) => Program::Python(Box::new(
            render_python(&r, python, ctx)
                .map_err(|(field, message)| err(format!("python.{field}"), message))?,
        )),
        TaskKind::Sensor(sensor) => {
            Program::Sensor(Box::new(render_sensor(&r, sensor, ctx).map_err(
                |(field, message)| err(format!("{}.{field}", task.kind.name()), message),
            )?))
        }
    };

    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &dag.env {
        if task.env.contains_key(k) {
            continue; // overridden: not rendered, so it cannot fail the task either
        }
        env.insert(
            k.clone(),
            r.render(v).map_err(|m| err(format!("dag.env.{k}"), m))?,
        );
    }
    for (k, v) in &task.env {
        env.insert(
            k.clone(),
            r.render(v).map_err(|m| err(format!("env.{k}"), m))?,
        );
    }
    let d = Derived::new(ctx);
    let try_number = ctx.try_number.to_string();
    let conf = serde_json::to_string(&ctx.conf).unwrap_or_else(|_| "{}".into());
    let vars: [(&str, &str); 16] = [
        ("UPDRAFT_TENANT", &ctx.tenant),
        ("UPDRAFT_DAG_ID", &ctx.dag_id),
        ("UPDRAFT_TASK_ID", &ctx.task_id),
        ("UPDRAFT_RUN_ID", &ctx.run_id),
        ("UPDRAFT_TRY_NUMBER", &try_number),
        ("UPDRAFT_DS", &d.ds),
        ("UPDRAFT_DS_NODASH", &d.ds_nodash),
        ("UPDRAFT_TS", &d.ts),
        ("UPDRAFT_LOGICAL_DATE", &d.ts),
        ("UPDRAFT_DATA_INTERVAL_START", &d.data_interval_start),
        ("UPDRAFT_DATA_INTERVAL_END", &d.data_interval_end),
        ("AIRFLOW_CTX_DAG_ID", &ctx.dag_id),
        ("AIRFLOW_CTX_TASK_ID", &ctx.task_id),
        ("AIRFLOW_CTX_DAG_RUN_ID", &ctx.run_id),
        ("AIRFLOW_CTX_TRY_NUMBER", &try_number),
        ("AIRFLOW_CTX_LOGICAL_DATE", &d.ts),
    ];
    for (k, v) in vars {
        env.insert(k.to_owned(), v.to_owned());
    }
    if conf.len() <= CONF_ENV_MAX_BYTES {
        env.insert("UPDRAFT_CONF".to_owned(), conf.clone());
    }
    if ctx.map_index >= 0 {
        let map_index = ctx.map_index.to_string();
        env.insert("UPDRAFT_MAP_INDEX".to_owned(), map_index.clone());
        env.insert("AIRFLOW_CTX_MAP_INDEX".to_owned(), map_index);
    }

    let cwd = match &task.cwd {
        Some(c) => Some(PathBuf::from(
            r.render(c).map_err(|m| err("cwd".into(), m))?,
        )),
        None => None,
    };

    let secret_env = secrets::connection_env(task, &ctx.secrets, &ctx.tenant)
        .map_err(|m| err("connections".into(), m))?;
    for (id, (_, uri)) in task.connections.iter().zip(&secret_env) {
        if ctx.secrets.connections[id].secret_values().is_empty() {
            continue; // no password: the whole URI is not worth hiding
        }
        mask.add(uri);
    }
    Ok(RenderedTask {
        secret_env,
        mask,
        program,
        env: env.into_iter().collect(),
        cwd,
        conf,
        do_xcom_push: task.do_xcom_push,
    })
}

type FieldError = (String, String);

/// Renders every string of a pod task; errors name the field (`image`, `args[1]`,
/// `spec.containers[0].image`, ...).
fn render_pod(r: &Renderer<'_>, pod: &PodTask) -> Result<PodTask, FieldError> {
    let one = |field: &str, s: &str| r.render(s).map_err(|m| (field.to_owned(), m));
    let opt = |field: &str, s: &Option<String>| s.as_deref().map(|s| one(field, s)).transpose();
    let list = |field: &str, items: &Option<Vec<String>>| {
        items
            .as_ref()
            .map(|items| {
                items
                    .iter()
                    .enumerate()
                    .map(|(i, s)| one(&format!("{field}[{i}]"), s))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
    };
    let map = |field: &str, m: &BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| Ok((k.clone(), one(&format!("{field}.{k}"), v)?)))
            .collect::<Result<BTreeMap<_, _>, FieldError>>()
    };
    let template = opt("template", &pod.template)?;
    if let Some(path) = &template {
        updraft_dag::check_template_path(path)
            .map_err(|m| ("template".to_owned(), format!("{path:?}: {m}")))?;
    }
    let namespace = opt("namespace", &pod.namespace)?;
    if let Some(ns) = &namespace {
        updraft_dag::check_namespace(ns).map_err(|m| ("namespace".to_owned(), m))?;
    }
    let resources = match &pod.resources {
        Some(res) => Some(updraft_dag::PodResources {
            requests: map("resources.requests", &res.requests)?,
            limits: map("resources.limits", &res.limits)?,
        }),
        None => None,
    };
    Ok(PodTask {
        template,
        spec: pod
            .spec
            .as_ref()
            .map(|spec| render_json(r, spec, "spec"))
            .transpose()?,
        container: opt("container", &pod.container)?,
        image: opt("image", &pod.image)?,
        cmds: list("cmds", &pod.cmds)?,
        args: list("args", &pod.args)?,
        env: map("env", &pod.env)?,
        resources,
        namespace,
        labels: map("labels", &pod.labels)?,
        annotations: map("annotations", &pod.annotations)?,
        delete_pod: pod.delete_pod,
        startup_timeout: pod.startup_timeout,
    })
}

/// Renders every string of a python task's arguments (Airflow renders the strings inside
/// `op_args` and `op_kwargs`, lists and dicts included) and describes the call for the runner.
fn render_python(
    r: &Renderer<'_>,
    python: &PythonTask,
    ctx: &TemplateContext,
) -> Result<PythonCall, FieldError> {
    let op_args = python
        .op_args
        .iter()
        .enumerate()
        .map(|(i, v)| render_json(r, v, &format!("op_args[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut op_kwargs = python
        .op_kwargs
        .iter()
        .map(|(k, v)| Ok((k.clone(), render_json(r, v, &format!("op_kwargs.{k}"))?)))
        .collect::<Result<serde_json::Map<_, _>, FieldError>>()?;
    // A mapped instance's values are keyword arguments, as Airflow's `@task` expand gives
    // them (the DAG file refuses a name both partial and expanded). Not templates.
    op_kwargs.extend(ctx.mapped.iter().map(|(k, v)| (k.clone(), v.clone())));
    let call = serde_json::json!({
        "callable": python.callable,
        "op_args": op_args,
        "op_kwargs": op_kwargs,
        "context": python_context(ctx),
    });
    let requirements = match &python.python {
        updraft_dag::PythonInterpreter::Requirements { requirements, .. } => requirements.clone(),
        _ => Vec::new(),
    };
    Ok(PythonCall {
        interpreter: python.python.program(),
        requirements,
        call: call.to_string(),
    })
}

/// Renders a sensor's check for one poke: its templates, its target time, the other run's
/// logical date, the URL or database of its connection.
fn render_sensor(
    r: &Renderer<'_>,
    sensor: &SensorTask,
    ctx: &TemplateContext,
) -> Result<SensorProgram, FieldError> {
    let one = |field: &str, s: &str| r.render(s).map_err(|m| (field.to_owned(), m));
    let check = match &sensor.check {
        SensorCheck::Path(path) => PokeCheck::Path(one("path", path)?),
        SensorCheck::TimeDelta(delta) => {
            PokeCheck::NotBefore(add_duration(ctx.data_interval_end, *delta, true))
        }
        SensorCheck::DateTime(text) => {
            let text = one("date_time", text)?;
            let at = updraft_dag::parse_datetime(&text, ctx.timezone)
                .map_err(|m| ("date_time".to_owned(), m))?;
            PokeCheck::NotBefore(at)
        }
        SensorCheck::ExternalTask(external) => PokeCheck::ExternalTask(ExternalQuery {
            tenant: ctx.tenant.clone(),
            dag_id: external.external_dag_id.clone(),
            task_id: external.external_task_id.clone(),
            logical_date: external.execution_delta.map_or(ctx.logical_date, |d| {
                add_duration(ctx.logical_date, d, false)
            }),
            allowed_states: external.allowed_states.clone(),
            failed_states: external.failed_states.clone(),
        }),
        SensorCheck::Http(http) => {
            let endpoint = one("http.endpoint", &http.endpoint)?;
            let url = match (&http.connection, &http.url) {
                (Some(id), _) => crate::sensor::http::connection_url(
                    sensor_connection(ctx, id, "http.connection")?,
                    &endpoint,
                )
                .map_err(|m| ("http.connection".to_owned(), m))?,
                (None, Some(url)) => crate::sensor::http::join(&one("http.url", url)?, &endpoint),
                (None, None) => {
                    return Err(("http".to_owned(), "no connection or url".to_owned()));
                }
            };
            let headers = http
                .headers
                .iter()
                .map(|(k, v)| Ok((k.clone(), one(&format!("http.headers.{k}"), v)?)))
                .collect::<Result<Vec<_>, FieldError>>()?;
            let body = http
                .body
                .as_deref()
                .map(|b| one("http.body", b))
                .transpose()?;
            PokeCheck::Http(HttpRequest {
                url,
                method: http.method.clone(),
                headers,
                body,
                expected_status: http.expected_status.clone(),
            })
        }
        SensorCheck::Sql(sql) => PokeCheck::Sql(SqlQuery {
            connection: sensor_connection(ctx, &sql.connection, "sql.connection")?.clone(),
            query: one("sql.query", &sql.query)?,
        }),
        SensorCheck::Bash(script) => {
            PokeCheck::Process(Box::new(Program::Bash(one("bash", script)?)))
        }
        SensorCheck::Command(argv) => PokeCheck::Process(Box::new(Program::Command(
            argv.iter()
                .enumerate()
                .map(|(i, a)| one(&format!("command[{i}]"), a))
                .collect::<Result<_, _>>()?,
        ))),
        SensorCheck::TriggerDagRun(trigger) => {
            PokeCheck::TriggerDagRun(Box::new(render_trigger(r, trigger, ctx)?))
        }
    };
    Ok(SensorProgram {
        check,
        timing: sensor.timing,
        first_poke: None,
        rescheduled: 0,
    })
}

/// Renders a `trigger_dag_run` task's DAG id, run id, logical date and conf, in its tenant.
fn render_trigger(
    r: &Renderer<'_>,
    trigger: &updraft_dag::TriggerDagRunCheck,
    ctx: &TemplateContext,
) -> Result<TriggerRequest, FieldError> {
    let one = |field: &str, s: &str| r.render(s).map_err(|m| (field.to_owned(), m));
    let dag_id = one("trigger_dag_id", &trigger.trigger_dag_id)?;
    updraft_dag::check_identifier("dag_id", &dag_id)
        .map_err(|m| ("trigger_dag_id".to_owned(), m))?;
    let run_id = trigger
        .trigger_run_id
        .as_deref()
        .map(|t| one("trigger_run_id", t))
        .transpose()?;
    let logical_date = match &trigger.logical_date {
        Some(text) => {
            let text = one("logical_date", text)?;
            Some(
                updraft_dag::parse_datetime(&text, ctx.timezone)
                    .map_err(|m| ("logical_date".to_owned(), m))?,
            )
        }
        None => None,
    };
    let conf = match &trigger.conf {
        serde_json::Value::Null => serde_json::Value::Object(Default::default()),
        conf => render_json(r, conf, "conf")?,
    };
    Ok(TriggerRequest {
        tenant: ctx.tenant.clone(),
        dag_id,
        run_id,
        logical_date,
        conf,
        reset_dag_run: trigger.reset_dag_run,
        skip_when_already_exists: trigger.skip_when_already_exists,
        wait_for_completion: trigger.wait_for_completion,
        allowed_states: trigger.allowed_states.clone(),
        failed_states: trigger.failed_states.clone(),
        triggered: None,
    })
}

/// The connection `id` looked up for the sensor (see [`secrets::secret_references`]).
fn sensor_connection<'c>(
    ctx: &'c TemplateContext,
    id: &str,
    field: &str,
) -> Result<&'c updraft_secrets::Connection, FieldError> {
    ctx.secrets.connections.get(id).ok_or_else(|| {
        (
            field.to_owned(),
            format!(
                "connection `{id}` does not exist for tenant `{}`",
                ctx.tenant
            ),
        )
    })
}

/// `at` moved by `delta`, forward or back, saturating.
fn add_duration(at: DateTime<Utc>, delta: std::time::Duration, forward: bool) -> DateTime<Utc> {
    let delta = chrono::TimeDelta::from_std(delta).unwrap_or(chrono::TimeDelta::MAX);
    let moved = if forward {
        at.checked_add_signed(delta)
    } else {
        at.checked_sub_signed(delta)
    };
    moved.unwrap_or(if forward {
        DateTime::<Utc>::MAX_UTC
    } else {
        DateTime::<Utc>::MIN_UTC
    })
}

/// What a python task's callable may ask for by name, as the runner receives it (dates as
/// ISO 8601 in UTC, made `datetime`s by the runner).
fn python_context(ctx: &TemplateContext) -> serde_json::Value {
    let d = Derived::new(ctx);
    let task_instance_key_str = format!("{}__{}__{}", ctx.dag_id, ctx.task_id, d.ds_nodash);
    serde_json::json!({
        "ds": d.ds,
        "ds_nodash": d.ds_nodash,
        "ts": d.ts,
        "ts_nodash": d.ts_nodash,
        "ts_nodash_with_tz": d.ts_nodash_with_tz,
        "logical_date": d.ts,
        "data_interval_start": d.data_interval_start,
        "data_interval_end": d.data_interval_end,
        "run_id": ctx.run_id,
        "run_type": ctx.run_type,
        "dag_id": ctx.dag_id,
        "task_id": ctx.task_id,
        "try_number": ctx.try_number,
        "map_index": ctx.map_index,
        "params": ctx.params,
        "tenant": ctx.tenant,
        "task_instance_key_str": task_instance_key_str,
    })
}

/// Renders every string inside a JSON value (an inline pod spec, a python task's arguments).
fn render_json(
    r: &Renderer<'_>,
    value: &serde_json::Value,
    path: &str,
) -> Result<serde_json::Value, FieldError> {
    use serde_json::Value as J;
    Ok(match value {
        J::String(s) => J::String(r.render(s).map_err(|m| (path.to_owned(), m))?),
        J::Array(items) => J::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| render_json(r, v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(map) => J::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(r, v, &format!("{path}.{k}"))?)))
                .collect::<Result<_, FieldError>>()?,
        ),
        other => other.clone(),
    })
}

/// Renders one standalone template with the context of `ctx` (no DAG or task fields beyond
/// those in `ctx`). Errors are the message only, without task or field.
pub fn render_str(source: &str, ctx: &TemplateContext) -> Result<String, String> {
    render_str_within(source, ctx, &RenderBudget::default())
}

/// [`render_str`] within `budget`.
pub fn render_str_within(
    source: &str,
    ctx: &TemplateContext,
    budget: &RenderBudget,
) -> Result<String, String> {
    Renderer {
        ctx,
        value: OnceLock::new(),
        budget: budget::Tracker::new(budget),
    }
    .render(source)
}

/// True when some field of `task` (or a value of the DAG's `env`) has template syntax, so that
/// rendering it runs the template engine; false when rendering only copies text. Pod tasks
/// count as templated. (A python task's call also holds its context, built from the try
/// without the engine.)
pub fn has_templates(dag: &Dag, task: &Task) -> bool {
    let program = match &task.kind {
        TaskKind::Bash(script) => is_template(script),
        TaskKind::Command(argv) => argv.iter().any(|a| is_template(a)),
        TaskKind::Noop => false,
        TaskKind::Pod(_) | TaskKind::Sensor(_) => true,
        TaskKind::Python(python) => {
            let mut templated = false;
            let mut look = |s: &str| templated |= is_template(s);
            python
                .op_args
                .iter()
                .chain(python.op_kwargs.values())
                .for_each(|v| secrets::json_strings(v, &mut look));
            templated
        }
    };
    program
        || dag.env.values().any(|v| is_template(v))
        || task.env.values().any(|v| is_template(v))
        || task.cwd.as_deref().is_some_and(is_template)
}

/// True when `s` contains template syntax and must go through the engine.
fn is_template(s: &str) -> bool {
    let b = s.as_bytes();
    b.windows(2)
        .any(|w| w[0] == b'{' && matches!(w[1], b'{' | b'%' | b'#'))
}

struct Renderer<'a> {
    ctx: &'a TemplateContext,
    /// The template context, built on first use: most tasks have no templates at all.
    value: OnceLock<Value>,
    /// What is left of the budget for the whole task.
    budget: budget::Tracker,
}

impl Renderer<'_> {
    fn render(&self, source: &str) -> Result<String, String> {
        self.budget.check_time()?;
        if !is_template(source) {
            self.budget.count_output(source.len())?;
            return Ok(source.to_owned());
        }
        let value = self.value.get_or_init(|| context_value(self.ctx));
        let env = budget::environment(self.budget.fuel());
        let template = env
            .template_from_str(source)
            .map_err(|e| describe_error(&e, source))?;
        self.budget
            .render(&template, value, |e| describe_error(e, source))
    }
}

/// A new engine with updraft's settings; `fuel` caps the instructions of one render.
fn new_environment(fuel: u64) -> Environment<'static> {
    {
        let mut env = Environment::new();
        env.set_fuel(Some(fuel));
        budget::add_sized_filters(&mut env);
        env.add_filter("sh", sh_quote);
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Debug mode makes undefined-value errors name the expression (`dss` is undefined);
        // it costs nothing until an error happens.
        env.set_debug(true);
        env.set_unknown_method_callback(python_methods);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .keep_trailing_newline(true)
                .build()
                .expect("default delimiters are valid"),
        );
        env
    }
}

/// The `sh` filter: `value` as one word for a POSIX shell, whatever it holds
/// (`{{ params.who | sh }}`). Strings are put in single quotes, each `'` in them written `'\''`;
/// maps and lists are quoted as their JSON, other values as they print.
fn sh_quote(value: &Value) -> Result<String, Error> {
    use minijinja::value::ValueKind;
    let text = match value.kind() {
        ValueKind::Undefined => {
            return Err(Error::new(
                ErrorKind::UndefinedError,
                "`sh` was given an undefined value",
            ));
        }
        ValueKind::String => value.as_str().unwrap_or_default().to_owned(),
        ValueKind::Map | ValueKind::Seq | ValueKind::Iterable => serde_json::to_string(value)
            .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?,
        _ => value.to_string(),
    };
    let quotes = text.matches('\'').count();
    budget::check_size("sh", text.len() + 3 * quotes + 2)?;
    Ok(shell_quote(&text))
}

/// `text` in single quotes for a POSIX shell: nothing inside is special but `'`, which closes
/// the quotes, is escaped, and reopens them.
pub fn shell_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    out.push_str(&text.replace('\'', r"'\''"));
    out.push('\'');
    out
}

/// The Python methods Airflow templates use most on dicts and strings
/// (`dag_run.conf.get('key', 'default')`, `params.name.upper()`, ...).
fn python_methods(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    use minijinja::value::{ValueKind, from_args};
    match (value.kind(), method) {
        (ValueKind::Map, "get") => {
            let (key, default): (Value, Option<Value>) = from_args(args)?;
            let found = value.get_item(&key)?;
            Ok(if found.is_undefined() {
                default.unwrap_or(Value::from(()))
            } else {
                found
            })
        }
        (ValueKind::Map, "items") => {
            let () = from_args(args)?;
            state.apply_filter("items", std::slice::from_ref(value))
        }
        (ValueKind::Map, "keys") => {
            let () = from_args(args)?;
            Ok(Value::from(value.try_iter()?.collect::<Vec<_>>()))
        }
        (ValueKind::Map, "values") => {
            let () = from_args(args)?;
            let values = value
                .try_iter()?
                .map(|k| value.get_item(&k))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Value::from(values))
        }
        (ValueKind::String, _) => {
            let s = value.as_str().unwrap_or_default();
            let out = match method {
                "upper" => {
                    let () = from_args(args)?;
                    Value::from(s.to_uppercase())
                }
                "lower" => {
                    let () = from_args(args)?;
                    Value::from(s.to_lowercase())
                }
                "strip" | "lstrip" | "rstrip" => {
                    let (chars,): (Option<String>,) = from_args(args)?;
                    let set = |c: char| match &chars {
                        Some(chars) => chars.contains(c),
                        None => c.is_whitespace(),
                    };
                    Value::from(match method {
                        "strip" => s.trim_matches(set),
                        "lstrip" => s.trim_start_matches(set),
                        _ => s.trim_end_matches(set),
                    })
                }
                "replace" => {
                    let (old, new, count): (String, String, Option<i64>) = from_args(args)?;
                    let limit = usize::try_from(count.unwrap_or(-1)).ok();
                    budget::check_replace(s, &old, &new, limit)?;
                    Value::from(match count {
                        Some(n) if n >= 0 => s.replacen(&old, &new, n as usize),
                        _ => s.replace(&old, &new),
                    })
                }
                "split" => {
                    let (sep, maxsplit): (Option<String>, Option<i64>) = from_args(args)?;
                    let parts: Vec<Value> = match (sep, maxsplit) {
                        (Some(sep), Some(n)) if n >= 0 => {
                            s.splitn(n as usize + 1, &sep).map(Value::from).collect()
                        }
                        (Some(sep), _) => s.split(&sep).map(Value::from).collect(),
                        (None, _) => s.split_whitespace().map(Value::from).collect(),
                    };
                    Value::from(parts)
                }
                "startswith" => {
                    let (prefix,): (String,) = from_args(args)?;
                    Value::from(s.starts_with(&prefix))
                }
                "endswith" => {
                    let (suffix,): (String,) = from_args(args)?;
                    Value::from(s.ends_with(&suffix))
                }
                _ => return Err(Error::from(ErrorKind::UnknownMethod)),
            };
            Ok(out)
        }
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

fn describe_error(e: &Error, source: &str) -> String {
    let mut msg = match (e.kind(), e.detail()) {
        (ErrorKind::UndefinedError, Some(detail)) => match undefined_expr(detail) {
            Some(expr) => format!("undefined variable `{expr}`"),
            None => format!("undefined value: {detail}"),
        },
        (ErrorKind::UndefinedError, None) => "undefined value".to_owned(),
        (kind, Some(detail)) => format!("{kind}: {detail}"),
        (kind, None) => kind.to_string(),
    };
    if e.kind() == ErrorKind::SyntaxError && source.contains("${#") {
        msg.push_str(
            " (`{#` starts a Jinja comment, also in bash's `${#var}`: \
             write `${{ '{#' }}var}` or wrap the script in {% raw %}...{% endraw %})",
        );
    }
    if let Some(line) = e.line()
        && source.trim_end().contains('\n')
    {
        let _ = write!(msg, " (line {line})");
    }
    let mut source_err = std::error::Error::source(e);
    while let Some(inner) = source_err {
        let _ = write!(msg, ": {inner}");
        source_err = inner.source();
    }
    msg
}

/// `dss` out of "`dss` is undefined" / "`dss` is undefined (from line 2)".
fn undefined_expr(detail: &str) -> Option<&str> {
    let rest = detail.strip_prefix('`')?;
    let end = rest.find("` is undefined")?;
    Some(&rest[..end])
}

/// The date strings shared by the template context and the environment variables.
struct Derived {
    ds: String,
    ds_nodash: String,
    ts: String,
    ts_nodash: String,
    ts_nodash_with_tz: String,
    data_interval_start: String,
    data_interval_end: String,
}

impl Derived {
    fn new(ctx: &TemplateContext) -> Self {
        let ld = ctx.logical_date;
        let ts = iso(&ld.fixed_offset());
        Derived {
            ds: ld.format("%Y-%m-%d").to_string(),
            ds_nodash: ld.format("%Y%m%d").to_string(),
            ts_nodash: ld.format("%Y%m%dT%H%M%S").to_string(),
            ts_nodash_with_tz: ts.replace(['-', ':'], ""),
            ts,
            data_interval_start: iso(&ctx.data_interval_start.fixed_offset()),
            data_interval_end: iso(&ctx.data_interval_end.fixed_offset()),
        }
    }
}

/// Python's `datetime.isoformat()`: microseconds only when non-zero, offset as `+HH:MM`.
fn iso(dt: &DateTime<FixedOffset>) -> String {
    iso_with_separator(dt, 'T')
}

/// How Airflow 3 prints a date-time in a template, `str()` of a pendulum 3 `DateTime`:
/// `isoformat(" ")`, e.g. `2024-12-01 01:00:00+00:00`.
fn pendulum_str(dt: &DateTime<FixedOffset>) -> String {
    iso_with_separator(dt, ' ')
}

fn iso_with_separator(dt: &DateTime<FixedOffset>, separator: char) -> String {
    let date = dt.format("%Y-%m-%d");
    if dt.nanosecond() == 0 {
        format!("{date}{separator}{}", dt.format("%H:%M:%S%:z"))
    } else {
        format!("{date}{separator}{}", dt.format("%H:%M:%S%.6f%:z"))
    }
}

fn context_value(ctx: &TemplateContext) -> Value {
    let d = Derived::new(ctx);
    let conf = json_to_value(&ctx.conf);
    let params = Value::from_pairs(
        ctx.params
            .iter()
            .map(|(k, v)| (k.as_str(), json_to_value(v))),
    );
    let logical_date = DateTimeObj::utc(ctx.logical_date);
    let data_interval_start = DateTimeObj::utc(ctx.data_interval_start);
    let data_interval_end = DateTimeObj::utc(ctx.data_interval_end);
    let dag_run = Value::from_pairs([
        ("run_id", Value::from(ctx.run_id.as_str())),
        ("dag_id", Value::from(ctx.dag_id.as_str())),
        ("conf", conf),
        ("run_type", Value::from(ctx.run_type.as_str())),
        ("logical_date", logical_date.clone()),
        ("data_interval_start", data_interval_start.clone()),
        ("data_interval_end", data_interval_end.clone()),
    ]);
    let dag = Value::from_pairs([
        ("dag_id", Value::from(ctx.dag_id.as_str())),
        ("tenant", Value::from(ctx.tenant.as_str())),
        ("timezone", Value::from(ctx.timezone.name())),
    ]);
    let task = Value::from_pairs([("task_id", Value::from(ctx.task_id.as_str()))]);
    let ti = Value::from_object(xcom::TaskInstance {
        fields: Value::from_pairs([
            ("try_number", Value::from(ctx.try_number)),
            ("map_index", Value::from(ctx.map_index)),
            ("task_id", Value::from(ctx.task_id.as_str())),
            ("dag_id", Value::from(ctx.dag_id.as_str())),
            ("run_id", Value::from(ctx.run_id.as_str())),
        ]),
        xcoms: ctx.xcoms.clone(),
    });
    let task_instance_key_str = format!("{}__{}__{}", ctx.dag_id, ctx.task_id, d.ds_nodash);
    Value::from_pairs([
        ("ds", Value::from(d.ds)),
        ("ds_nodash", Value::from(d.ds_nodash)),
        ("ts", Value::from(d.ts)),
        ("ts_nodash", Value::from(d.ts_nodash)),
        ("ts_nodash_with_tz", Value::from(d.ts_nodash_with_tz)),
        ("logical_date", logical_date),
        ("data_interval_start", data_interval_start),
        ("data_interval_end", data_interval_end),
        ("run_id", Value::from(ctx.run_id.as_str())),
        ("map_index", Value::from(ctx.map_index)),
        (
            "mapped",
            Value::from_pairs(
                ctx.mapped
                    .iter()
                    .map(|(k, v)| (k.as_str(), json_to_value(v))),
            ),
        ),
        ("dag_run", dag_run),
        ("params", params),
        ("dag", dag),
        ("task", task),
        ("ti", ti.clone()),
        ("task_instance", ti),
        ("task_instance_key_str", Value::from(task_instance_key_str)),
        ("macros", macros()),
        ("tenant", Value::from(ctx.tenant.as_str())),
        ("conn", secrets::conn_value(&ctx.secrets, &ctx.tenant)),
        ("var", secrets::var_value(&ctx.secrets, &ctx.tenant)),
    ])
}

fn macros() -> Value {
    static MACROS: OnceLock<Value> = OnceLock::new();
    MACROS
        .get_or_init(|| {
            Value::from_pairs([
                ("ds_add", Value::from_function(ds_add)),
                ("ds_format", Value::from_function(ds_format)),
            ])
        })
        .clone()
}

fn invalid(msg: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

/// Airflow's `macros.ds_add('2015-01-01', 5)` → `'2015-01-06'`.
fn ds_add(ds: String, days: i64) -> Result<String, Error> {
    let date = NaiveDate::parse_from_str(&ds, "%Y-%m-%d")
        .map_err(|e| invalid(format!("ds_add: `{ds}` is not a YYYY-MM-DD date: {e}")))?;
    let shifted = chrono::TimeDelta::try_days(days)
        .and_then(|d| date.checked_add_signed(d))
        .ok_or_else(|| invalid(format!("ds_add: `{ds}` + {days} days is out of range")))?;
    Ok(shifted.format("%Y-%m-%d").to_string())
}

/// Airflow's `macros.ds_format('2015-01-01', '%Y-%m-%d', '%m-%d-%y')` → `'01-01-15'`.
fn ds_format(ds: String, input_format: String, output_format: String) -> Result<String, Error> {
    let parsed = NaiveDateTime::parse_from_str(&ds, &input_format).or_else(|e| {
        NaiveDate::parse_from_str(&ds, &input_format)
            .map(|d| d.and_time(chrono::NaiveTime::MIN))
            .map_err(|_| e)
    });
    let dt = parsed.map_err(|e| {
        invalid(format!(
            "ds_format: `{ds}` does not match `{input_format}`: {e}"
        ))
    })?;
    try_format(dt.format(&output_format), &output_format)
}

/// Writes a chrono `DelayedFormat`, reporting a bad format string instead of panicking.
fn try_format(formatted: impl fmt::Display, fmt: &str) -> Result<String, Error> {
    let mut out = String::new();
    write!(out, "{formatted}").map_err(|_| invalid(format!("invalid strftime format `{fmt}`")))?;
    Ok(out)
}

/// A date-time in templates: prints as pendulum's `str()` (`2024-12-01 01:00:00+00:00`), with
/// a few of Python's and pendulum's attributes and methods.
#[derive(Debug)]
struct DateTimeObj {
    dt: DateTime<FixedOffset>,
    /// `UTC`, `Europe/Paris`, ...
    tz_name: String,
}

impl DateTimeObj {
    fn utc(dt: DateTime<Utc>) -> Value {
        Value::from_object(DateTimeObj {
            dt: dt.fixed_offset(),
            tz_name: "UTC".into(),
        })
    }
}

impl Object for DateTimeObj {
    fn repr(self: &Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let dt = &self.dt;
        Some(match key.as_str()? {
            "year" => Value::from(dt.year()),
            "month" => Value::from(dt.month()),
            "day" => Value::from(dt.day()),
            "hour" => Value::from(dt.hour()),
            "minute" => Value::from(dt.minute()),
            "second" => Value::from(dt.second()),
            "microsecond" => Value::from(dt.nanosecond() / 1000),
            "int_timestamp" => Value::from(dt.timestamp()),
            "timezone_name" => Value::from(self.tz_name.as_str()),
            _ => return None,
        })
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let dt = &self.dt;
        let no_args = |v: Value| {
            if args.is_empty() {
                Ok(v)
            } else {
                Err(Error::from(ErrorKind::TooManyArguments))
            }
        };
        match method {
            "strftime" => {
                let (fmt,): (String,) = minijinja::value::from_args(args)?;
                Ok(Value::from(try_format(dt.format(&fmt), &fmt)?))
            }
            "isoformat" => no_args(Value::from(iso(dt))),
            "timestamp" => no_args(Value::from(
                dt.timestamp() as f64 + f64::from(dt.nanosecond()) / 1e9,
            )),
            "date" | "to_date_string" => no_args(Value::from(dt.format("%Y-%m-%d").to_string())),
            "to_datetime_string" => {
                no_args(Value::from(dt.format("%Y-%m-%d %H:%M:%S").to_string()))
            }
            "in_timezone" | "in_tz" => {
                let (name,): (String,) = minijinja::value::from_args(args)?;
                let tz: Tz = name
                    .parse()
                    .map_err(|_| invalid(format!("unknown time zone `{name}`")))?;
                Ok(Value::from_object(DateTimeObj {
                    dt: tz.from_utc_datetime(&dt.naive_utc()).fixed_offset(),
                    tz_name: tz.name().to_owned(),
                }))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&pendulum_str(&self.dt))
    }
}

fn json_to_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => Value::from(items.iter().map(json_to_value).collect::<Vec<_>>()),
        J::Object(map) => {
            Value::from_pairs(map.iter().map(|(k, v)| (k.as_str(), json_to_value(v))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;
    use updraft_dag::{Schedule, TriggerRule, WeightRule};

    fn ctx() -> TemplateContext {
        TemplateContext {
            secrets: Default::default(),
            xcoms: Default::default(),
            tenant: "acme".into(),
            dag_id: "etl".into(),
            run_id: "scheduled__2024-03-05T06:07:08+00:00".into(),
            task_id: "load".into(),
            try_number: 2,
            map_index: -1,
            mapped: Default::default(),
            logical_date: Utc.with_ymd_and_hms(2024, 3, 5, 6, 7, 8).unwrap(),
            data_interval_start: Utc.with_ymd_and_hms(2024, 3, 5, 6, 7, 8).unwrap(),
            data_interval_end: Utc.with_ymd_and_hms(2024, 3, 6, 6, 7, 8).unwrap(),
            conf: serde_json::json!({"table": "users", "n": 3, "nested": {"list": [1, "two"]}}),
            params: serde_json::json!({"limit": 10, "mode": "full"})
                .as_object()
                .unwrap()
                .clone(),
            run_type: "scheduled".into(),
            timezone: chrono_tz::Europe::Paris,
        }
    }

    fn task(kind: TaskKind) -> Task {
        Task {
            task_id: "load".into(),
            upstream: vec![],
            trigger_rule: TriggerRule::AllSuccess,
            retries: 0,
            retry_delay: Duration::from_secs(300),
            retry_exponential_backoff: false,
            max_retry_delay: None,
            execution_timeout: None,
            pool: "default_pool".into(),
            pool_slots: 1,
            priority_weight: 1,
            weight_rule: WeightRule::Downstream,
            depends_on_past: false,
            env: BTreeMap::new(),
            cwd: None,
            connections: vec![],
            branching: None,
            do_xcom_push: false,
            callbacks: Default::default(),
            outlets: vec![],
            expand: None,
            max_active_tis_per_dag: None,
            kind,
        }
    }

    fn dag(tasks: Vec<Task>) -> Dag {
        Dag {
            dag_id: "etl".into(),
            tenant: "acme".into(),
            fileloc: "etl.yaml".into(),
            description: None,
            schedule: Schedule::None,
            timezone: chrono_tz::Europe::Paris,
            start_date: None,
            end_date: None,
            catchup: false,
            max_active_runs: 16,
            max_active_tasks: 16,
            tags: vec![],
            params: BTreeMap::new(),
            env: BTreeMap::new(),
            is_paused_upon_creation: None,
            groups: Vec::new(),
            run_callbacks: Default::default(),
            dagrun_timeout: None,
            tasks,
        }
    }

    fn r(src: &str) -> Result<String, String> {
        render_str(src, &ctx())
    }

    #[test]
    fn airflow_date_names() {
        assert_eq!(r("{{ ds }}").unwrap(), "2024-03-05");
        assert_eq!(r("{{ ds_nodash }}").unwrap(), "20240305");
        assert_eq!(r("{{ ts }}").unwrap(), "2024-03-05T06:07:08+00:00");
        assert_eq!(r("{{ ts_nodash }}").unwrap(), "20240305T060708");
        assert_eq!(
            r("{{ ts_nodash_with_tz }}").unwrap(),
            "20240305T060708+0000"
        );
    }

    /// Airflow 3 prints date-times as pendulum 3's `str()`: ISO 8601 with a space.
    #[test]
    fn date_times_print_as_airflow_3_prints_them() {
        for (template, expected) in [
            ("{{ logical_date }}", "2024-03-05 06:07:08+00:00"),
            ("{{ data_interval_start }}", "2024-03-05 06:07:08+00:00"),
            ("{{ data_interval_end }}", "2024-03-06 06:07:08+00:00"),
            ("{{ dag_run.logical_date }}", "2024-03-05 06:07:08+00:00"),
            (
                "{{ dag_run.data_interval_start }}",
                "2024-03-05 06:07:08+00:00",
            ),
            (
                "{{ dag_run.data_interval_end }}",
                "2024-03-06 06:07:08+00:00",
            ),
            ("{{ logical_date | string }}", "2024-03-05 06:07:08+00:00"),
            (
                "{{ logical_date.isoformat() }}",
                "2024-03-05T06:07:08+00:00",
            ),
        ] {
            assert_eq!(r(template).unwrap(), expected, "{template}");
        }
    }

    #[test]
    fn ds_is_the_utc_date_whatever_the_dag_time_zone() {
        // 23:30 UTC is already the next day in Paris; Airflow's ds stays the UTC date.
        let mut c = ctx();
        c.logical_date = Utc.with_ymd_and_hms(2024, 3, 5, 23, 30, 0).unwrap();
        assert_eq!(
            render_str("{{ ds }} {{ ts }}", &c).unwrap(),
            "2024-03-05 2024-03-05T23:30:00+00:00"
        );
        assert_eq!(
            render_str("{{ logical_date.in_timezone(dag.timezone) }}", &c).unwrap(),
            "2024-03-06 00:30:00+01:00"
        );
        assert_eq!(
            render_str(
                "{{ logical_date.in_timezone(dag.timezone).strftime('%Y-%m-%d') }}",
                &c
            )
            .unwrap(),
            "2024-03-06"
        );
    }

    #[test]
    fn ts_has_microseconds_only_when_non_zero() {
        let mut c = ctx();
        c.logical_date = Utc.with_ymd_and_hms(2024, 3, 5, 6, 7, 8).unwrap()
            + chrono::TimeDelta::microseconds(1500);
        assert_eq!(
            render_str("{{ ts }}", &c).unwrap(),
            "2024-03-05T06:07:08.001500+00:00"
        );
        assert_eq!(
            render_str("{{ ts_nodash }}", &c).unwrap(),
            "20240305T060708"
        );
        assert_eq!(
            render_str("{{ logical_date.microsecond }}", &c).unwrap(),
            "1500"
        );
        assert_eq!(
            render_str("{{ ts_nodash_with_tz }} {{ logical_date }}", &c).unwrap(),
            "20240305T060708.001500+0000 2024-03-05 06:07:08.001500+00:00"
        );
    }

    #[test]
    fn run_dag_task_and_ti_names() {
        assert_eq!(
            r("{{ run_id }}").unwrap(),
            "scheduled__2024-03-05T06:07:08+00:00"
        );
        assert_eq!(
            r("{{ dag_run.run_id }}").unwrap(),
            "scheduled__2024-03-05T06:07:08+00:00"
        );
        assert_eq!(
            r("{{ dag_run.run_type }}/{{ dag_run.dag_id }}").unwrap(),
            "scheduled/etl"
        );
        assert_eq!(
            r("{{ dag.dag_id }} {{ dag.tenant }} {{ dag.timezone }}").unwrap(),
            "etl acme Europe/Paris"
        );
        assert_eq!(r("{{ task.task_id }}").unwrap(), "load");
        assert_eq!(
            r("{{ ti.try_number }} {{ ti.task_id }} {{ ti.dag_id }} {{ ti.run_id }}").unwrap(),
            "2 load etl scheduled__2024-03-05T06:07:08+00:00"
        );
        assert_eq!(r("{{ task_instance.try_number + 1 }}").unwrap(), "3");
        assert_eq!(
            r("{{ task_instance_key_str }}").unwrap(),
            "etl__load__20240305"
        );
        assert_eq!(r("{{ tenant }}").unwrap(), "acme");
    }

    #[test]
    fn conf_and_params() {
        assert_eq!(
            r("{{ dag_run.conf.table }} {{ dag_run.conf['n'] * 2 }}").unwrap(),
            "users 6"
        );
        assert_eq!(r("{{ dag_run.conf.nested.list[1] }}").unwrap(), "two");
        assert_eq!(
            r("{{ dag_run.conf | tojson }}").unwrap(),
            r#"{"n": 3, "nested": {"list": [1, "two"]}, "table": "users"}"#
        );
        assert_eq!(
            r("{{ params.limit }} {{ params['mode'] }}").unwrap(),
            "10 full"
        );
        assert_eq!(
            r("{% if params.missing is defined %}y{% else %}n{% endif %}").unwrap(),
            "n"
        );
    }

    #[test]
    fn common_python_methods() {
        assert_eq!(
            r("{{ dag_run.conf.get('absent', 'dflt') }}").unwrap(),
            "dflt"
        );
        assert_eq!(
            r("{{ dag_run.conf.get('table', 'dflt') }}").unwrap(),
            "users"
        );
        assert_eq!(r("{{ dag_run.conf.get('absent') }}").unwrap(), "None");
        assert_eq!(
            r("{% for k, v in params.items() %}{{ k }}={{ v }};{% endfor %}").unwrap(),
            "limit=10;mode=full;"
        );
        assert_eq!(
            r("{{ params.keys() | join(',') }} {{ params.values() | join(',') }}").unwrap(),
            "limit,mode 10,full"
        );
        assert_eq!(
            r("{{ params.mode.upper() }} {{ 'AbC'.lower() }} [{{ '  x  '.strip() }}]").unwrap(),
            "FULL abc [x]"
        );
        assert_eq!(
            r("{{ 'xxaxx'.strip('x') }} {{ 'xa'.lstrip('x') }} {{ 'ax'.rstrip('x') }}").unwrap(),
            "a a a"
        );
        assert_eq!(
            r("{{ ds.replace('-', '/') }} {{ ds.split('-')[0] }} {{ 'a b  c'.split() | length }}")
                .unwrap(),
            "2024/03/05 2024 3"
        );
        assert_eq!(
            r("{{ run_id.startswith('scheduled__') }} {{ run_id.endswith('x') }}").unwrap(),
            "True False"
        );
        assert!(
            r("{{ ds.frobnicate() }}")
                .unwrap_err()
                .contains("unknown method")
        );
    }

    /// The cases of Airflow's `test_macros.py` (`test_ds_add`, `test_ds_format`).
    #[test]
    fn airflow_macro_cases() {
        for (ds, days, expected) in [
            ("2015-01-01", 5, "2015-01-06"),
            ("2015-01-02", 0, "2015-01-02"),
            ("2015-01-06", -5, "2015-01-01"),
        ] {
            let template = format!("{{{{ macros.ds_add('{ds}', {days}) }}}}");
            assert_eq!(r(&template).unwrap(), expected, "{template}");
        }
        for (ds, input, output, expected) in [
            ("2015-01-02", "%Y-%m-%d", "%m-%d-%y", "01-02-15"),
            ("2015-01-02", "%Y-%m-%d", "%Y-%m-%d", "2015-01-02"),
            ("1/5/2015", "%m/%d/%Y", "%m-%d-%y", "01-05-15"),
            ("1/5/2015", "%m/%d/%Y", "%Y-%m-%d", "2015-01-05"),
        ] {
            let template = format!("{{{{ macros.ds_format('{ds}', '{input}', '{output}') }}}}");
            assert_eq!(r(&template).unwrap(), expected, "{template}");
        }
    }

    #[test]
    fn macros() {
        assert_eq!(r("{{ macros.ds_add(ds, 5) }}").unwrap(), "2024-03-10");
        assert_eq!(r("{{ macros.ds_add(ds, -5) }}").unwrap(), "2024-02-29");
        assert_eq!(
            r("{{ macros.ds_add('2015-01-01', 0) }}").unwrap(),
            "2015-01-01"
        );
        assert_eq!(
            r("{{ macros.ds_format(ds, '%Y-%m-%d', '%m-%d-%y') }}").unwrap(),
            "03-05-24"
        );
        assert_eq!(
            r("{{ macros.ds_format(ts_nodash, '%Y%m%dT%H%M%S', '%H:%M') }}").unwrap(),
            "06:07"
        );
        assert!(
            r("{{ macros.ds_add('yesterday', 1) }}")
                .unwrap_err()
                .contains("not a YYYY-MM-DD date")
        );
        assert!(
            r("{{ macros.ds_format(ds, '%d/%m/%Y', '%Y') }}")
                .unwrap_err()
                .contains("does not match")
        );
    }

    #[test]
    fn date_time_objects() {
        assert_eq!(
            r("{{ logical_date.year }}-{{ logical_date.month }}-{{ logical_date.day }}").unwrap(),
            "2024-3-5"
        );
        assert_eq!(
            r("{{ logical_date.hour }}:{{ logical_date.minute }}:{{ logical_date.second }}")
                .unwrap(),
            "6:7:8"
        );
        assert_eq!(
            r("{{ logical_date.strftime('%Y/%m/%d %H') }}").unwrap(),
            "2024/03/05 06"
        );
        assert_eq!(
            r("{{ logical_date.isoformat() }}").unwrap(),
            "2024-03-05T06:07:08+00:00"
        );
        assert_eq!(r("{{ data_interval_end.date() }}").unwrap(), "2024-03-06");
        assert_eq!(
            r("{{ logical_date.to_datetime_string() }}").unwrap(),
            "2024-03-05 06:07:08"
        );
        assert_eq!(r("{{ logical_date.int_timestamp }}").unwrap(), "1709618828");
        assert_eq!(
            r("{{ logical_date.in_tz('Asia/Tokyo').hour }}").unwrap(),
            "15"
        );
        assert!(
            r("{{ logical_date.strftime('%Q') }}")
                .unwrap_err()
                .contains("invalid strftime format")
        );
        assert!(
            r("{{ logical_date.in_timezone('Mars/Base') }}")
                .unwrap_err()
                .contains("unknown time zone")
        );
    }

    #[test]
    fn strings_without_template_syntax_are_returned_as_is() {
        for s in [
            "",
            "echo ${HOME} {x} }} %} #}",
            "a { {",
            "trailing\n",
            "ends with {",
        ] {
            assert_eq!(r(s).unwrap(), s);
        }
        assert_eq!(
            r("echo {{ ds }}\n").unwrap(),
            "echo 2024-03-05\n",
            "the trailing newline is kept"
        );
        assert_eq!(r("{# comment #}x").unwrap(), "x");
    }

    #[test]
    fn undefined_names_are_errors_naming_task_and_field() {
        let t = task(TaskKind::Bash("echo {{ dss }}".into()));
        let e = render_task(&dag(vec![]), &t, &ctx()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "task `load`, field `bash`: undefined variable `dss`"
        );
        assert_eq!((e.task_id.as_str(), e.field.as_str()), ("load", "bash"));

        let t = task(TaskKind::Command(vec![
            "echo".into(),
            "{{ dag_run.confx }}".into(),
        ]));
        let e = render_task(&dag(vec![]), &t, &ctx()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "task `load`, field `command[1]`: undefined variable `dag_run.confx`"
        );

        let mut t = task(TaskKind::Noop);
        t.env.insert("OUT".into(), "x\n{{ nope }}".into());
        let e = render_task(&dag(vec![]), &t, &ctx()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "task `load`, field `env.OUT`: undefined variable `nope` (line 2)"
        );

        let mut t = task(TaskKind::Noop);
        t.cwd = Some("/data/{{ params.nope }}".into());
        let e = render_task(&dag(vec![]), &t, &ctx()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "task `load`, field `cwd`: undefined variable `params.nope`"
        );

        let mut d = dag(vec![]);
        d.env.insert("X".into(), "{{ conf }}".into());
        let e = render_task(&d, &task(TaskKind::Noop), &ctx()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "task `load`, field `dag.env.X`: undefined variable `conf`"
        );

        assert_eq!(
            r("{% if dss %}x{% endif %}").unwrap_err(),
            "undefined variable `dss`"
        );
    }

    #[test]
    fn other_errors_are_described() {
        assert_eq!(
            r("{{ 1 + }}").unwrap_err(),
            "syntax error: unexpected end of variable block"
        );
        assert_eq!(
            r("{{ nofilter | frobnicate }}").unwrap_err(),
            "unknown filter: filter frobnicate is unknown"
        );
        let e = r("echo {{ ds }} ${#arr[@]}").unwrap_err();
        assert!(
            e.starts_with("syntax error: unexpected end of comment"),
            "{e}"
        );
        assert!(e.contains("{% raw %}"), "hints at bash's ${{#...}}: {e}");
    }

    #[test]
    fn render_task_renders_every_field_and_the_environment() {
        let mut t = task(TaskKind::Bash(
            "echo {{ ds }} > {{ params.mode }}.txt".into(),
        ));
        t.env.insert("DAY".into(), "{{ ds_nodash }}".into());
        t.env.insert("SHARED".into(), "task".into());
        t.cwd = Some("/data/{{ dag.dag_id }}".into());
        let mut d = dag(vec![]);
        d.env
            .insert("SHARED".into(), "{{ undefined_but_overridden }}".into());
        d.env.insert("FROM_DAG".into(), "{{ tenant }}".into());
        d.env.insert("UPDRAFT_DS".into(), "spoofed".into());
        let out = render_task(&d, &t, &ctx()).unwrap();
        assert_eq!(
            out.program,
            Program::Bash("echo 2024-03-05 > full.txt".into())
        );
        assert_eq!(out.cwd, Some(PathBuf::from("/data/etl")));
        let env: BTreeMap<_, _> = out.env.iter().cloned().collect();
        assert_eq!(env.len(), out.env.len(), "no duplicates");
        assert!(out.env.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
        let expect = [
            ("DAY", "20240305"),
            ("SHARED", "task"),
            ("FROM_DAG", "acme"),
            ("UPDRAFT_TENANT", "acme"),
            ("UPDRAFT_DAG_ID", "etl"),
            ("UPDRAFT_TASK_ID", "load"),
            ("UPDRAFT_RUN_ID", "scheduled__2024-03-05T06:07:08+00:00"),
            ("UPDRAFT_TRY_NUMBER", "2"),
            ("UPDRAFT_DS", "2024-03-05"),
            ("UPDRAFT_DS_NODASH", "20240305"),
            ("UPDRAFT_TS", "2024-03-05T06:07:08+00:00"),
            ("UPDRAFT_LOGICAL_DATE", "2024-03-05T06:07:08+00:00"),
            ("UPDRAFT_DATA_INTERVAL_START", "2024-03-05T06:07:08+00:00"),
            ("UPDRAFT_DATA_INTERVAL_END", "2024-03-06T06:07:08+00:00"),
            (
                "UPDRAFT_CONF",
                r#"{"n":3,"nested":{"list":[1,"two"]},"table":"users"}"#,
            ),
            ("AIRFLOW_CTX_DAG_ID", "etl"),
            ("AIRFLOW_CTX_TASK_ID", "load"),
            (
                "AIRFLOW_CTX_DAG_RUN_ID",
                "scheduled__2024-03-05T06:07:08+00:00",
            ),
            ("AIRFLOW_CTX_TRY_NUMBER", "2"),
            ("AIRFLOW_CTX_LOGICAL_DATE", "2024-03-05T06:07:08+00:00"),
        ];
        for (k, v) in expect {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert_eq!(env.len(), expect.len());

        // Without the task's override, the DAG's value is rendered (and here fails).
        let e = render_task(&d, &task(TaskKind::Noop), &ctx()).unwrap_err();
        assert_eq!(e.field, "dag.env.SHARED");
        d.env.remove("SHARED");

        let t = task(TaskKind::Command(vec![
            "/bin/{{ 'echo' }}".into(),
            "{{ ti.try_number }}".into(),
            "plain".into(),
        ]));
        let out = render_task(&d, &t, &ctx()).unwrap();
        assert_eq!(
            out.program,
            Program::Command(vec!["/bin/echo".into(), "2".into(), "plain".into()])
        );
        assert_eq!(out.cwd, None);
        assert_eq!(
            render_task(&d, &task(TaskKind::Noop), &ctx())
                .unwrap()
                .program,
            Program::Noop
        );
    }

    #[test]
    fn pod_tasks_render_every_string_and_recheck_paths_and_namespaces() {
        let pod = |yaml: &str| -> Task {
            let text = format!("dag_id: d\ntasks:\n  - task_id: t\n    pod: {yaml}\n");
            updraft_dag::parse_dag("shop", "shop/d.yaml", &text)
                .unwrap()
                .tasks[0]
                .clone()
        };
        let t = pod(
            r#"{template: "app/{{ ds_nodash }}.yaml", args: ["--date={{ ds }}"], env: {D: "{{ ds }}"}, labels: {day: "{{ ds }}"}}"#,
        );
        let rendered = render_task(&dag(vec![t.clone()]), &t, &ctx()).unwrap();
        let Program::Pod(p) = rendered.program else {
            panic!("a pod program")
        };
        assert_eq!(p.template.as_deref(), Some("app/20240305.yaml"));
        assert_eq!(p.args, Some(vec!["--date=2024-03-05".to_owned()]));
        assert_eq!(p.env["D"], "2024-03-05");
        assert_eq!(p.labels["day"], "2024-03-05");

        let t = pod(r#"{template: "{{ params.get('t', '../other/x.yaml') }}"}"#);
        let e = render_task(&dag(vec![t.clone()]), &t, &ctx()).unwrap_err();
        assert_eq!(e.field, "pod.template");
        assert!(e.message.contains("`..` is not allowed"), "{e}");

        let t = pod(r#"{image: x, namespace: "{{ 'Bad_NS' }}"}"#);
        let e = render_task(&dag(vec![t.clone()]), &t, &ctx()).unwrap_err();
        assert_eq!(e.field, "pod.namespace");

        let t = pod(
            r#"{spec: {containers: [{name: m, image: "img:{{ ds }}", command: ["{{ nope }}"]}]}}"#,
        );
        let e = render_task(&dag(vec![t.clone()]), &t, &ctx()).unwrap_err();
        assert_eq!(e.field, "pod.spec.containers[0].command[0]");
    }

    fn within(src: &str, budget: RenderBudget) -> Result<RenderedTask, RenderError> {
        render_task_within(
            &dag(vec![]),
            &task(TaskKind::Bash(src.into())),
            &ctx(),
            &budget,
        )
    }

    fn over_budget(src: &str) -> String {
        let e = within(src, RenderBudget::default()).unwrap_err();
        assert_eq!((e.task_id.as_str(), e.field.as_str()), ("load", "bash"));
        assert!(e.message.contains("template over budget"), "{src}: {e}");
        e.message
    }

    #[test]
    fn nested_loops_run_out_of_fuel() {
        let m = over_budget(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        );
        assert!(m.contains("more than 1000000 template instructions"), "{m}");
        // A loop well within the budget renders.
        let ok = within(
            "{% for i in range(1000) %}{{ i % 10 }}{% endfor %}",
            RenderBudget::default(),
        )
        .unwrap();
        assert!(matches!(ok.program, Program::Bash(s) if s.len() == 1000));
    }

    #[test]
    fn output_is_capped_for_the_whole_task() {
        let m = over_budget("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}");
        assert!(m.contains("more than 1048576 bytes"), "{m}");
        over_budget("{{ 'x' * 100000000 }}");
        // Fields count together: two fields of 600 KiB pass the 1 MiB between them.
        let mut t = task(TaskKind::Bash("{{ 'a' * 600000 }}".into()));
        t.env.insert("B".into(), "{{ 'b' * 600000 }}".into());
        let e = render_task(&dag(vec![]), &t, &ctx()).unwrap_err();
        assert_eq!(e.field, "env.B");
        assert!(e.message.contains("more than 1048576 bytes"), "{e}");
        // Without template syntax too.
        let mut t = task(TaskKind::Bash("{{ 'a' * 600000 }}".into()));
        t.env.insert("B".into(), "b".repeat(600_000));
        assert_eq!(
            render_task(&dag(vec![]), &t, &ctx()).unwrap_err().field,
            "env.B"
        );
    }

    #[test]
    fn strings_built_in_memory_are_capped_before_they_are_built() {
        // Each of these would build a gigabyte or more before anything is written.
        for src in [
            "{% set s = (['x' * 1000000] * 1000) | join %}",
            "{% set s = (['x' * 1000000] * 1000) | join(',') %}",
            "{% set s = ('x' * 100000) | replace('x', 'y' * 100000) %}",
            "{% set s = ('x' * 100000).replace('', 'yyyyyyyyyyyyyyyyyyyy') %}",
            "{% set s = ('a\n' * 100000) | indent(10000) %}",
        ] {
            let m = over_budget(src);
            assert!(
                m.contains("would build a string of more than"),
                "{src}: {m}"
            );
        }
        // minijinja's own limits: ranges and repeated strings.
        let e = within("{{ range(1000000000) | join }}", RenderBudget::default()).unwrap_err();
        assert!(e.message.contains("range has too many elements"), "{e}");
        let e = within("{{ 'x' * 1000000000 }}", RenderBudget::default()).unwrap_err();
        assert!(e.message.contains("repeated string is too large"), "{e}");
        // Ordinary uses of the same filters are untouched.
        assert_eq!(r("{{ ['a', 'b'] | join('-') }}").unwrap(), "a-b");
        assert_eq!(r("{{ ds | replace('-', '') }}").unwrap(), "20240305");
        assert_eq!(r("{{ 'a\nb' | indent(2) }}").unwrap(), "a\n  b");
    }

    #[test]
    fn rendering_stops_at_its_time_limit() {
        let budget = RenderBudget {
            fuel: u64::MAX / 2,
            time_limit: Duration::from_millis(50),
            ..RenderBudget::default()
        };
        let e = within(
            "{% for i in range(100000) %}{% for j in range(100000) %}\
             {% if j == 0 %}.{% endif %}{% endfor %}{% endfor %}",
            budget,
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("template over budget: rendering took longer than 50 ms"),
            "{e}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn off_the_loop_the_caller_stops_waiting_at_the_time_limit() {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let budget = RenderBudget {
            time_limit: Duration::from_millis(50),
            ..RenderBudget::default()
        };
        let e = render_off_loop(
            "slow",
            "load",
            budget,
            move |_| -> Result<(), RenderError> {
                let _ = held.recv();
                Err(RenderError {
                    task_id: "load".into(),
                    field: "bash".into(),
                    message: "finished".into(),
                })
            },
        )
        .await
        .unwrap_err();
        // The render is still blocked: the error came from the waiting side.
        assert_eq!(e.field, "templates");
        assert_eq!(
            e.message,
            "template over budget: rendering took longer than 50 ms"
        );
        release.send(()).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tenant_stuck_rendering_does_not_hold_up_another() {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let stuck = tokio::spawn(render_off_loop(
            "stuck",
            "load",
            RenderBudget {
                time_limit: Duration::from_secs(600),
                ..RenderBudget::default()
            },
            move |budget| {
                let _ = started_tx.send(());
                let _ = held.recv();
                render_task_within(&dag(vec![]), &task(TaskKind::Noop), &ctx(), budget)
            },
        ));
        started.await.unwrap();
        let other = tokio::time::timeout(
            Duration::from_secs(30),
            render_off_loop("other", "load", RenderBudget::default(), |budget| {
                let t = task(TaskKind::Bash("echo {{ ds }}".into()));
                render_task_within(&dag(vec![]), &t, &ctx(), budget)
            }),
        )
        .await
        .expect("another tenant renders while the first is stuck")
        .unwrap();
        assert_eq!(other.program, Program::Bash("echo 2024-03-05".into()));
        assert!(!stuck.is_finished());
        release.send(()).unwrap();
        assert!(stuck.await.unwrap().is_ok());
    }

    #[test]
    fn tasks_without_template_syntax_need_no_engine() {
        let plain = task(TaskKind::Bash("echo hello".into()));
        assert!(!has_templates(&dag(vec![]), &plain));
        assert!(!has_templates(&dag(vec![]), &task(TaskKind::Noop)));
        assert!(has_templates(
            &dag(vec![]),
            &task(TaskKind::Bash("echo {{ ds }}".into()))
        ));
        let mut t = plain.clone();
        t.env.insert("D".into(), "{{ ds }}".into());
        assert!(has_templates(&dag(vec![]), &t));
        let mut t = plain.clone();
        t.cwd = Some("/x/{% if true %}y{% endif %}".into());
        assert!(has_templates(&dag(vec![]), &t));
        let mut d = dag(vec![]);
        d.env.insert("D".into(), "{# note #}".into());
        assert!(has_templates(&d, &plain));
        let argv = task(TaskKind::Command(vec!["echo".into(), "{{ ds }}".into()]));
        assert!(has_templates(&dag(vec![]), &argv));
    }

    #[test]
    fn conf_is_in_the_environment_only_when_small() {
        let mut c = ctx();
        c.conf = serde_json::json!({ "big": "x".repeat(CONF_ENV_MAX_BYTES) });
        let out = render_task(&dag(vec![]), &task(TaskKind::Noop), &c).unwrap();
        assert!(out.env.iter().all(|(k, _)| k != "UPDRAFT_CONF"));
        assert_eq!(out.conf, serde_json::to_string(&c.conf).unwrap());
        let out = render_task(&dag(vec![]), &task(TaskKind::Noop), &ctx()).unwrap();
        assert!(
            out.env
                .iter()
                .any(|(k, v)| k == "UPDRAFT_CONF" && *v == out.conf)
        );
    }

    /// What rendering off the loop adds per templated try, one tenant's tries launched at once:
    /// `cargo test -p updraft-executor --release --lib -- --ignored --nocapture off_loop`
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "measurement, not a check"]
    async fn off_loop_throughput() {
        let n = 20_000u32;
        let t0 = std::time::Instant::now();
        let renders: Vec<_> = (0..n)
            .map(|_| {
                tokio::spawn(render_off_loop(
                    "bench",
                    "load",
                    RenderBudget::default(),
                    |budget| {
                        let t = task(TaskKind::Bash("echo {{ ds }} {{ params.mode }}".into()));
                        render_task_within(&dag(vec![]), &t, &ctx(), budget)
                    },
                ))
            })
            .collect();
        for r in renders {
            r.await.unwrap().unwrap();
        }
        println!("off the loop: {:?} per task", t0.elapsed() / n);
    }

    /// `cargo test -p updraft-executor --release --lib -- --ignored --nocapture throughput`
    #[test]
    #[ignore = "measurement, not a check"]
    fn render_throughput() {
        let mut templated = task(TaskKind::Bash(
            "echo {{ ds }} {{ params.mode }} > /tmp/{{ run_id }}".into(),
        ));
        templated.env.insert("DAY".into(), "{{ ds_nodash }}".into());
        let plain = task(TaskKind::Bash("echo hello".into()));
        let d = dag(vec![]);
        for (name, t) in [("templated", &templated), ("plain", &plain)] {
            let n = 20_000;
            let t0 = std::time::Instant::now();
            for _ in 0..n {
                std::hint::black_box(render_task(&d, t, &ctx()).unwrap());
            }
            let per = t0.elapsed() / n;
            println!("{name}: {per:?} per task");
        }
    }

    fn with_secrets() -> TemplateContext {
        let mut c = ctx();
        let db = updraft_secrets::Connection {
            conn_id: "my_db".into(),
            conn_type: "postgres".into(),
            description: None,
            host: Some("db.example".into()),
            schema: Some("shop".into()),
            login: Some("app".into()),
            password: Some("p@ss word/1".into()),
            port: Some(5432),
            extra: Some(r#"{"sslmode": "require", "api_token": "tok-12345"}"#.into()),
        };
        c.secrets.connections.insert("my_db".into(), db);
        let vars = [
            ("region", "eu-west-1"),
            ("settings", r#"{"bucket": "b1", "retries": 3}"#),
            ("api_key", "key-abcdef"),
            ("db_secret", r#"{"user": "u", "pass": "inner-pass"}"#),
        ];
        for (k, v) in vars {
            c.secrets.variables.insert(k.into(), v.into());
        }
        c
    }

    fn rs(src: &str) -> Result<String, String> {
        render_str(src, &with_secrets())
    }

    #[test]
    fn conn_gives_a_connection_s_fields_as_airflow_does() {
        assert_eq!(
            rs(
                "{{ conn.my_db.host }}:{{ conn.my_db.port }}/{{ conn.my_db.schema }} \
                {{ conn.my_db.login }} {{ conn.my_db.password }} {{ conn.my_db.conn_type }} \
                {{ conn.my_db.extra_dejson.sslmode }} {{ conn.my_db }}"
            )
            .unwrap(),
            "db.example:5432/shop app p@ss word/1 postgres require my_db"
        );
        assert_eq!(
            rs("{{ conn['my_db'].login }} {{ conn.get('my_db').host }} {{ conn.my_db.get_password() }}")
                .unwrap(),
            "app db.example p@ss word/1"
        );
        assert_eq!(
            rs("{{ conn.my_db.extra_dejson.get('missing', 'dflt') }}").unwrap(),
            "dflt"
        );
        assert!(
            rs("{{ conn.my_db.extra }}")
                .unwrap()
                .contains("\"sslmode\"")
        );
        // conn.get: none (or the default given) when missing, as Airflow's.
        assert_eq!(rs("{{ conn.get('nope') is none }}").unwrap(), "True");
        assert_eq!(rs("{{ conn.get('nope', 'other') }}").unwrap(), "other");
    }

    #[test]
    fn get_uri_is_the_connection_s_uri() {
        let c = with_secrets();
        assert_eq!(
            render_str("{{ conn.my_db.get_uri() }}", &c).unwrap(),
            c.secrets.connections["my_db"].to_uri()
        );
    }

    #[test]
    fn var_gives_values_and_json_with_defaults() {
        assert_eq!(
            rs("{{ var.value.region }} {{ var.value['region'] }} {{ var.value.get('region', 'x') }}")
                .unwrap(),
            "eu-west-1 eu-west-1 eu-west-1"
        );
        assert_eq!(rs("{{ var.value.get('nope', 'dflt') }}").unwrap(), "dflt");
        assert_eq!(
            rs("{{ var.value.get('nope', default_var='kw') }} {{ var.value.get('nope', none) is none }}")
                .unwrap(),
            "kw True"
        );
        assert_eq!(rs("{{ conn.get('nope', default_conn='c') }}").unwrap(), "c");
        let e = rs("{{ var.value.get('nope', default='x') }}").unwrap_err();
        assert!(e.contains("default"), "{e}");
        assert_eq!(
            rs(
                "{{ var.json.settings.bucket }} {{ var.json.settings.retries + 1 }} \
                {{ var.json.get('settings').bucket }} {{ var.json.get('nope', {'a': 7}).a }}"
            )
            .unwrap(),
            "b1 4 b1 7"
        );
        assert_eq!(
            rs("{{ var.value.settings }}").unwrap(),
            r#"{"bucket": "b1", "retries": 3}"#
        );
    }

    #[test]
    fn a_missing_connection_or_variable_fails_naming_it_the_tenant_task_and_field() {
        let c = with_secrets();
        let fails = |src: &str| {
            let t = task(TaskKind::Bash(src.into()));
            render_task(&dag(vec![]), &t, &c).unwrap_err()
        };
        for (src, message) in [
            (
                "{{ conn.nope.host }}",
                "connection `nope` does not exist (tenant `acme`)",
            ),
            (
                "{{ conn['nope'] }}",
                "connection `nope` does not exist (tenant `acme`)",
            ),
            (
                "{{ var.value.nope }}",
                "variable `nope` does not exist (tenant `acme`)",
            ),
            (
                "{{ var.value.get('nope') }}",
                "variable `nope` does not exist (tenant `acme`)",
            ),
            (
                "{{ var.json.nope.field }}",
                "variable `nope` does not exist (tenant `acme`)",
            ),
            (
                "{{ var.json.region }}",
                "variable `region` is not valid JSON",
            ),
        ] {
            let e = fails(src);
            assert_eq!(
                (e.task_id.as_str(), e.field.as_str()),
                ("load", "bash"),
                "{src}"
            );
            assert!(e.message.contains(message), "{src}: {e}");
        }
        let e = fails("{{ conn.my_db.hots }}");
        assert!(
            e.message.contains("undefined variable `conn.my_db.hots`"),
            "{e}"
        );
        // Without any secrets at all (no backend gave any), the same message.
        let mut t = task(TaskKind::Noop);
        t.env.insert("DB".into(), "{{ conn.my_db.host }}".into());
        let e = render_task(&dag(vec![]), &t, &ctx()).unwrap_err();
        assert_eq!(e.field, "env.DB");
        assert!(
            e.message.contains("connection `my_db` does not exist"),
            "{e}"
        );
    }

    #[test]
    fn references_are_read_from_every_template_of_the_task() {
        let mut t = task(TaskKind::Bash(
            r#"echo {{ conn.a.host }} {{ conn['b-1'].login }} {{ conn.get("c.x") }} {{ conn . spaced }}
               {{ var.value.v1 }} {{ var.json['v2'].z }} {{ var.value.get('v3', 1) }} {{ dag_run.conf.conn }}"#
                .into(),
        ));
        t.env.insert("E".into(), "{{ var.json.v4 }}".into());
        t.env
            .insert("PLAIN".into(), "conn.not_a_template var.value.nope".into());
        t.cwd = Some("/data/{{ var.value.get(\"v5\") }}".into());
        t.connections = vec!["d".into()];
        let mut d = dag(vec![]);
        d.env
            .insert("E".into(), "{{ var.value.overridden }}".into());
        d.env.insert("F".into(), "{{ conn.from_dag.host }}".into());
        let refs = secret_references(&d, &t);
        let names = |s: &std::collections::BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
        assert_eq!(
            names(&refs.connections),
            ["a", "b-1", "c.x", "d", "from_dag", "spaced"]
        );
        assert_eq!(names(&refs.variables), ["v1", "v2", "v3", "v4", "v5"]);
        assert!(
            secret_references(&dag(vec![]), &task(TaskKind::Bash("echo {{ ds }}".into())))
                .is_empty()
        );
        let argv = task(TaskKind::Command(vec![
            "x".into(),
            "{{ var.value.arg }}".into(),
        ]));
        assert_eq!(
            names(&secret_references(&dag(vec![]), &argv).variables),
            ["arg"]
        );
        let text = "dag_id: d\ntasks:\n  - task_id: t\n    pod: {image: x, env: {P: \"{{ conn.in_pod.password }}\"}}\n";
        let pod = updraft_dag::parse_dag("shop", "shop/d.yaml", text)
            .unwrap()
            .tasks[0]
            .clone();
        assert_eq!(
            names(&secret_references(&dag(vec![]), &pod).connections),
            ["in_pod"]
        );
    }

    #[test]
    fn connections_become_airflow_conn_variables_and_secrets_are_masked() {
        let c = with_secrets();
        let mut t = task(TaskKind::Bash("echo {{ conn.my_db.login }}".into()));
        t.connections = vec!["my_db".into()];
        let out = render_task(&dag(vec![]), &t, &c).unwrap();
        let uri = c.secrets.connections["my_db"].to_uri();
        assert_eq!(
            out.secret_env,
            [("AIRFLOW_CONN_MY_DB".to_owned(), uri.clone())]
        );
        assert!(out.env.iter().all(|(k, _)| !k.starts_with("AIRFLOW_CONN_")));
        let shown = out.mask.mask(&format!(
            "pw=p@ss word/1 quoted=p%40ss%20word%2F1 token=tok-12345 key=key-abcdef \
             inner=inner-pass region=eu-west-1 login=app uri={uri}"
        ));
        assert_eq!(
            shown,
            "pw=*** quoted=*** token=*** key=*** inner=*** region=eu-west-1 login=app uri=***"
        );
        t.connections = vec!["my_db".into(), "other_tenants_db".into()];
        let e = render_task(&dag(vec![]), &t, &c).unwrap_err();
        assert_eq!(e.field, "connections");
        assert_eq!(
            e.message,
            "connection `other_tenants_db` does not exist (tenant `acme`)"
        );
        // Without secrets the mask is empty: the executor keeps its direct log.
        let plain = render_task(
            &dag(vec![]),
            &task(TaskKind::Bash("echo {{ ds }}".into())),
            &ctx(),
        )
        .unwrap();
        assert!(plain.mask.is_empty() && plain.secret_env.is_empty());
    }

    #[test]
    fn render_errors_never_show_a_secret() {
        let t = task(TaskKind::Bash(
            "{{ macros.ds_add(conn.my_db.password, 1) }}".into(),
        ));
        let e = render_task(&dag(vec![]), &t, &with_secrets()).unwrap_err();
        assert!(
            e.message.contains("ds_add: `***` is not a YYYY-MM-DD date"),
            "{e}"
        );
        assert!(!e.message.contains("p@ss"), "{e}");
    }

    #[test]
    fn the_sh_filter_quotes_any_value_as_one_word() {
        assert_eq!(r("{{ 'plain' | sh }}").unwrap(), "'plain'");
        assert_eq!(r("{{ \"it's\" | sh }}").unwrap(), r"'it'\''s'");
        assert_eq!(r("{{ dag_run.conf.n | sh }}").unwrap(), "'3'");
        assert_eq!(
            r("{{ dag_run.conf.nested | sh }}").unwrap(),
            r#"'{"list":[1,"two"]}'"#
        );
        assert_eq!(r("{{ ds | sh }}").unwrap(), "'2024-03-05'");
        assert_eq!(r("{{ '' | sh }}").unwrap(), "''");
        let err = r("{{ params.missing | sh }}").unwrap_err();
        assert!(err.contains("undefined"), "{err}");
    }

    fn with_xcoms() -> TemplateContext {
        let mut c = ctx();
        let mut xcoms = TemplateXComs::new();
        xcoms.entry("extract".into()).or_default().extend([
            ("return_value".to_owned(), serde_json::json!("s3://b/2024")),
            ("rows".to_owned(), serde_json::json!(42)),
        ]);
        xcoms
            .entry("meta".into())
            .or_default()
            .insert("return_value".into(), serde_json::json!({"k": [1, "two"]}));
        c.xcoms = Arc::new(xcoms);
        c
    }

    #[test]
    fn xcom_pull_reads_the_run_s_pushes_as_airflow_does() {
        let x = |src: &str| render_str(src, &with_xcoms());
        assert_eq!(
            x("{{ ti.xcom_pull(task_ids='extract') }}").unwrap(),
            "s3://b/2024"
        );
        assert_eq!(x("{{ ti.xcom_pull('extract') }}").unwrap(), "s3://b/2024");
        assert_eq!(
            x("{{ task_instance.xcom_pull(task_ids='extract', key='rows') + 1 }}").unwrap(),
            "43"
        );
        assert_eq!(
            x("{{ ti.xcom_pull(task_ids='meta') | tojson }}").unwrap(),
            r#"{"k": [1, "two"]}"#
        );
        assert_eq!(
            x("{{ ti.xcom_pull(task_ids='meta').k[1] }}").unwrap(),
            "two"
        );
        assert_eq!(
            x("{{ ti.xcom_pull(task_ids=['extract', 'nobody', 'meta'], key='rows') | tojson }}")
                .unwrap(),
            "[42, null, null]",
            "a list of task ids gives one value per task"
        );
        assert_eq!(
            x("{{ ti.xcom_pull(task_ids='nobody') is none }} {{ ti.xcom_pull(task_ids='nobody') }}")
                .unwrap(),
            "True None",
            "never pushed: None, not an error"
        );
        assert_eq!(
            x("{{ ti.xcom_pull(task_ids='extract', key='nope', default='d') }}").unwrap(),
            "d"
        );
        assert_eq!(x("{{ ti.task_id }} {{ ti.try_number }}").unwrap(), "load 2");
    }

    #[test]
    fn xcom_pull_without_task_ids_or_across_runs_says_why() {
        let x = |src: &str| render_str(src, &with_xcoms()).unwrap_err();
        let e = x("{{ ti.xcom_pull(key='rows') }}");
        assert!(e.contains("needs `task_ids`"), "{e}");
        let e = x("{{ ti.xcom_pull() }}");
        assert!(e.contains("needs `task_ids`"), "{e}");
        let e = x("{{ ti.xcom_pull(task_ids='extract', dag_id='other') }}");
        assert!(e.contains("`dag_id` is not supported"), "{e}");
        let e = x("{{ ti.xcom_pull(task_ids='extract', include_prior_dates=true) }}");
        assert!(e.contains("`include_prior_dates`"), "{e}");
        let e = x("{{ ti.xcom_pull(task_ids='extract', map_indexes=2) }}");
        assert!(e.contains("map_indexes"), "{e}");
    }

    #[test]
    fn xcom_references_name_the_literal_task_ids_or_every_task() {
        let refs =
            |script: &str| xcom_references(&dag(vec![]), &task(TaskKind::Bash(script.into())));
        assert_eq!(refs("echo {{ ds }}"), None);
        assert_eq!(
            refs(
                "echo {{ ti.xcom_pull(task_ids='a') }} {{ ti.xcom_pull(task_ids=['b', 'c'], key='k') }}"
            ),
            Some(XComReferences::Tasks(
                ["a", "b", "c"].map(String::from).into()
            ))
        );
        assert_eq!(
            refs("echo {{ ti.xcom_pull(task_ids=params.t) }} {{ ti.xcom_pull('a') }}"),
            Some(XComReferences::All)
        );
    }

    fn sensor(check: updraft_dag::SensorCheck) -> Task {
        task(TaskKind::Sensor(Box::new(SensorTask {
            timing: Default::default(),
            check,
        })))
    }

    fn poke_check(t: &Task, c: &TemplateContext) -> Result<PokeCheck, RenderError> {
        let d = dag(vec![t.clone()]);
        render_task(&d, t, c).map(|r| match r.program {
            Program::Sensor(s) => {
                assert_eq!(
                    (s.first_poke, s.rescheduled),
                    (None, 0),
                    "progress is the scheduler's"
                );
                s.check
            }
            other => panic!("not a sensor: {other:?}"),
        })
    }

    #[test]
    fn sensors_render_their_checks_for_the_try() {
        let c = ctx();
        assert_eq!(
            poke_check(
                &sensor(SensorCheck::Path("/data/{{ ds }}/*.csv".into())),
                &c
            )
            .unwrap(),
            PokeCheck::Path("/data/2024-03-05/*.csv".into())
        );
        assert_eq!(
            poke_check(
                &sensor(SensorCheck::TimeDelta(Duration::from_secs(3600))),
                &c
            )
            .unwrap(),
            PokeCheck::NotBefore(Utc.with_ymd_and_hms(2024, 3, 6, 7, 7, 8).unwrap()),
            "TimeDeltaSensor: the data interval's end plus the delta"
        );
        assert_eq!(
            poke_check(
                &sensor(SensorCheck::DateTime("{{ ds }} 12:00:00".into())),
                &c
            )
            .unwrap(),
            PokeCheck::NotBefore(Utc.with_ymd_and_hms(2024, 3, 5, 11, 0, 0).unwrap()),
            "a time without an offset is in the DAG's time zone (Paris, UTC+1)"
        );
        let external = updraft_dag::ExternalTaskCheck {
            external_dag_id: "producer".into(),
            external_task_id: Some("publish".into()),
            allowed_states: vec!["success".into()],
            failed_states: vec!["failed".into()],
            execution_delta: Some(Duration::from_secs(86_400)),
        };
        assert_eq!(
            poke_check(&sensor(SensorCheck::ExternalTask(external)), &c).unwrap(),
            PokeCheck::ExternalTask(ExternalQuery {
                tenant: "acme".into(),
                dag_id: "producer".into(),
                task_id: Some("publish".into()),
                logical_date: Utc.with_ymd_and_hms(2024, 3, 4, 6, 7, 8).unwrap(),
                allowed_states: vec!["success".into()],
                failed_states: vec!["failed".into()],
            }),
            "the other run is execution_delta earlier, in the sensor's tenant"
        );
        assert_eq!(
            poke_check(
                &sensor(SensorCheck::Bash("test -e /d/{{ ds_nodash }}".into())),
                &c
            )
            .unwrap(),
            PokeCheck::Process(Box::new(Program::Bash("test -e /d/20240305".into())))
        );
    }

    #[test]
    fn a_trigger_renders_its_dag_run_id_date_and_conf_in_the_tenant() {
        let c = ctx();
        let check = updraft_dag::TriggerDagRunCheck {
            trigger_dag_id: "{{ dag.dag_id }}_report".into(),
            trigger_run_id: Some("from_{{ ds_nodash }}".into()),
            logical_date: Some("{{ ds }} 12:00:00".into()),
            conf: serde_json::json!({"day": "{{ ds }}", "n": 3, "list": ["{{ run_id }}"]}),
            reset_dag_run: true,
            skip_when_already_exists: false,
            wait_for_completion: true,
            allowed_states: vec!["success".into()],
            failed_states: vec!["failed".into()],
        };
        assert_eq!(
            poke_check(&sensor(SensorCheck::TriggerDagRun(check.clone())), &c).unwrap(),
            PokeCheck::TriggerDagRun(Box::new(TriggerRequest {
                tenant: "acme".into(),
                dag_id: "etl_report".into(),
                run_id: Some("from_20240305".into()),
                logical_date: Some(Utc.with_ymd_and_hms(2024, 3, 5, 11, 0, 0).unwrap()),
                conf: serde_json::json!({
                    "day": "2024-03-05",
                    "n": 3,
                    "list": ["scheduled__2024-03-05T06:07:08+00:00"],
                }),
                reset_dag_run: true,
                skip_when_already_exists: false,
                wait_for_completion: true,
                allowed_states: vec!["success".into()],
                failed_states: vec!["failed".into()],
                triggered: None,
            }))
        );
        let plain = updraft_dag::TriggerDagRunCheck {
            trigger_run_id: None,
            logical_date: None,
            conf: serde_json::Value::Null,
            ..check.clone()
        };
        match poke_check(&sensor(SensorCheck::TriggerDagRun(plain)), &c).unwrap() {
            PokeCheck::TriggerDagRun(request) => {
                assert_eq!((request.run_id, request.logical_date), (None, None));
                assert_eq!(
                    request.conf,
                    serde_json::json!({}),
                    "no conf is an empty one"
                );
            }
            other => panic!("not a trigger: {other:?}"),
        }
        let bad = updraft_dag::TriggerDagRunCheck {
            trigger_dag_id: "{{ ds }} and more".into(),
            ..check
        };
        let error = poke_check(&sensor(SensorCheck::TriggerDagRun(bad)), &c).unwrap_err();
        assert!(
            error.to_string().contains("trigger_dag_run.trigger_dag_id"),
            "{error}"
        );
    }

    #[test]
    fn sensor_connections_are_looked_up_and_missing_ones_name_the_field() {
        let http = updraft_dag::HttpCheck {
            connection: Some("api".into()),
            url: None,
            endpoint: "/ready/{{ ds }}".into(),
            method: "GET".into(),
            expected_status: vec![200],
            headers: [("X-Run".to_owned(), "{{ run_id }}".to_owned())].into(),
            body: None,
        };
        let t = sensor(SensorCheck::Http(http));
        let err = poke_check(&t, &ctx()).unwrap_err();
        assert_eq!(err.field, "sensor.http.connection");
        assert!(
            err.message
                .contains("`api` does not exist for tenant `acme`"),
            "{err}"
        );
        let mut c = ctx();
        c.secrets.connections.insert(
            "api".into(),
            updraft_secrets::Connection {
                conn_id: "api".into(),
                conn_type: "http".into(),
                host: Some("svc".into()),
                port: Some(8080),
                ..Default::default()
            },
        );
        assert_eq!(
            poke_check(&t, &c).unwrap(),
            PokeCheck::Http(HttpRequest {
                url: "http://svc:8080/ready/2024-03-05".into(),
                method: "GET".into(),
                headers: vec![(
                    "X-Run".into(),
                    "scheduled__2024-03-05T06:07:08+00:00".into()
                )],
                body: None,
                expected_status: vec![200],
            })
        );
        let refs = secrets::secret_references(&dag(vec![t.clone()]), &t);
        assert!(
            refs.connections.contains("api"),
            "the scheduler looks the connection up"
        );
    }
}
