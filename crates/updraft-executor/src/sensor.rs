//! One poke of a sensor, run in this process (Airflow's `BaseSensorOperator.poke` in
//! `mode="reschedule"`): no process, no slot, only a tokio task bounded by the poke's timeout.
//! A `bash`/`command` check is the exception: it runs as a short local try (see
//! [`crate::local`]), its exit code read as the poke's answer.
//!
//! A poke answers [`PokeResult::Done`], [`PokeResult::NotYet`] or
//! [`PokeResult::NotBefore`] (time checks: no poke is needed before the target), or fails:
//! an error (a bad pattern, a connection that cannot be used, an HTTP request that could not
//! be sent) fails the try as any task's error does, retried per `retries`; an external task in
//! one of its `failed_states` fails it the same way (Airflow raises `AirflowException`), or
//! skips it with `soft_fail`. What the poke becomes (success, another poke, a timeout) is the
//! core's decision ([`updraft_core::sensor::on_poke`]), taken by the scheduler from the
//! [`Poke`] this sends back.

mod glob;
pub(crate) mod http;
mod sql;
mod trigger;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use updraft_dag::SensorTiming;

pub use trigger::TRIGGER_RUN_ID;
pub use updraft_core::sensor::PokeResult;

use crate::render::Program;
use crate::xcom::XComPush;

/// A rendered sensor: what its poke looks at, its timing, and how far its try has got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensorProgram {
    pub check: PokeCheck,
    pub timing: SensorTiming,
    /// The first poke of the current try (its first `task_reschedule` row); `None` when this
    /// poke is the try's first, which then counts from its own start.
    pub first_poke: Option<DateTime<Utc>>,
    /// Pokes of the current try that rescheduled before this one.
    pub rescheduled: u32,
}

/// What one poke looks at, its templates rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PokeCheck {
    /// A path or glob pattern that must match something.
    Path(String),
    /// A time that must have passed.
    NotBefore(DateTime<Utc>),
    /// A run or task instance of another DAG of the tenant.
    ExternalTask(ExternalQuery),
    Http(HttpRequest),
    Sql(SqlQuery),
    /// `bash` or `command`: exit code 0 is done.
    Process(Box<Program>),
    /// A `trigger_dag_run` task: start the run, then (with `wait_for_completion`) wait for it.
    TriggerDagRun(Box<TriggerRequest>),
}

/// A `trigger_dag_run` task's request, rendered: which run of which DAG of the tenant to
/// start, and what ends the wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerRequest {
    pub tenant: String,
    pub dag_id: String,
    /// `None`: Airflow's `manual__<logical date>`.
    pub run_id: Option<String>,
    /// `None`: the time of the trigger.
    pub logical_date: Option<DateTime<Utc>>,
    /// A JSON object.
    pub conf: serde_json::Value,
    pub reset_dag_run: bool,
    pub skip_when_already_exists: bool,
    pub wait_for_completion: bool,
    pub allowed_states: Vec<String>,
    pub failed_states: Vec<String>,
    /// The run an earlier poke of this try started (its `trigger_run_id` XCom): this poke
    /// only looks at its state. `None`: this poke starts the run.
    pub triggered: Option<String>,
}

/// Another DAG's run (or one of its tasks) for a logical date, in the sensor's tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalQuery {
    pub tenant: String,
    pub dag_id: String,
    pub task_id: Option<String>,
    pub logical_date: DateTime<Utc>,
    pub allowed_states: Vec<String>,
    pub failed_states: Vec<String>,
}

/// An HTTP request and the statuses that end the wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub expected_status: Vec<u16>,
}

/// A query on a connection (`sqlite` or `postgres`).
#[derive(Clone, PartialEq, Eq)]
pub struct SqlQuery {
    pub connection: updraft_secrets::Connection,
    pub query: String,
}

impl fmt::Debug for SqlQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlQuery")
            .field("connection", &self.connection.conn_id)
            .field("query", &self.query)
            .finish()
    }
}

/// What a finished poke reports to the scheduler (in [`crate::ExecOutcome::Poked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poke {
    pub result: PokeResult,
    /// The try's first poke: where its `timeout` counts from.
    pub first_poke: DateTime<Utc>,
    /// This poke's number within the try (1-based), for `exponential_backoff`.
    pub poke_number: u32,
}

impl SensorProgram {
    /// The report of this poke, started at `started`, having found `result`.
    pub fn poke(&self, result: PokeResult, started: DateTime<Utc>) -> Poke {
        Poke {
            result,
            first_poke: self.first_poke.unwrap_or(started),
            poke_number: self.rescheduled.saturating_add(1),
        }
    }
}

/// The future of a [`SensorStates`] read.
pub type StatesFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<String>, String>> + Send + 'a>>;

/// Reads other DAGs' runs and task instances for `external_task` checks (the scheduler
/// implements it over its store).
pub trait SensorStates: Send + Sync + fmt::Debug {
    /// The state of the run of `query.dag_id` at `query.logical_date` in `query.tenant` (of
    /// its instance of `query.task_id` when set); `None` when there is no such run or task.
    fn external_state<'a>(&'a self, query: &'a ExternalQuery) -> StatesFuture<'a>;
}

/// The future of a [`RunTrigger`]'s start of a run.
pub type TriggerFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Triggered, TriggerRefusal>> + Send + 'a>>;

/// Starts other DAGs' runs for `trigger_dag_run` tasks and reads their state (the scheduler
/// implements it over its store, within the task's tenant).
pub trait RunTrigger: Send + Sync + fmt::Debug {
    /// Creates the run `request` describes (at `now` when it names no logical date); with
    /// `reset_dag_run`, an existing run of that id is cleared to run again instead.
    fn trigger<'a>(&'a self, request: &'a TriggerRequest, now: DateTime<Utc>) -> TriggerFuture<'a>;
    /// The state of run `run_id` of `request.dag_id` in `request.tenant`; `None` when there
    /// is no such run.
    fn run_state<'a>(&'a self, request: &'a TriggerRequest, run_id: &'a str) -> StatesFuture<'a>;
}

/// A run a [`RunTrigger`] started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triggered {
    pub run_id: String,
    /// An existing run was cleared (`reset_dag_run`) rather than a new one created.
    pub reset: bool,
}

/// Why a [`RunTrigger`] started no run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerRefusal {
    /// The DAG already has a run of that id (or logical date): its run id.
    Exists(String),
    /// Anything else (no such DAG in the tenant, a conf its params refuse, the store).
    Failed(String),
}

/// What a poke found: its answer, a line for the try's log, and what it pushes as XComs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PokeAnswer {
    pub result: PokeResult,
    pub found: String,
    pub pushes: Vec<XComPush>,
}

/// Why a poke did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PokeFailure {
    /// The poke could not look (bad pattern, connection, request): a failed try.
    Error(String),
    /// The external task reached one of its `failed_states`: a failed try, or skipped with
    /// `soft_fail`.
    FailedState(String),
    /// The try is skipped (a `trigger_dag_run` whose run exists, with
    /// `skip_when_already_exists`).
    Skip(String),
}

impl fmt::Display for PokeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PokeFailure::Error(m) | PokeFailure::FailedState(m) | PokeFailure::Skip(m) => {
                f.write_str(m)
            }
        }
    }
}

/// What a poke may use besides its check.
#[derive(Debug, Clone, Default)]
pub struct PokeTools {
    pub states: Option<std::sync::Arc<dyn SensorStates>>,
    pub trigger: Option<std::sync::Arc<dyn RunTrigger>>,
    pub http: reqwest::Client,
}

/// Runs one in-process poke of `check` at `now` (a `Process` check is not in-process: an
/// error).
pub async fn poke(
    check: &PokeCheck,
    tools: &PokeTools,
    now: DateTime<Utc>,
) -> Result<PokeAnswer, PokeFailure> {
    if let PokeCheck::TriggerDagRun(request) = check {
        return trigger::poke(request, tools, now).await;
    }
    let (result, found) = look(check, tools, now).await?;
    Ok(PokeAnswer {
        result,
        found,
        pushes: Vec::new(),
    })
}

/// What a check other than a trigger finds, and a line for the try's log saying so.
async fn look(
    check: &PokeCheck,
    tools: &PokeTools,
    now: DateTime<Utc>,
) -> Result<(PokeResult, String), PokeFailure> {
    match check {
        PokeCheck::Path(pattern) => {
            let pattern = pattern.clone();
            let found = tokio::task::spawn_blocking(move || glob::first_match(&pattern))
                .await
                .map_err(|e| PokeFailure::Error(format!("looking for the path failed: {e}")))?
                .map_err(PokeFailure::Error)?;
            Ok(match found {
                Some(path) => (PokeResult::Done, format!("found {}", path.display())),
                None => (PokeResult::NotYet, "nothing matches yet".to_owned()),
            })
        }
        PokeCheck::NotBefore(target) if now >= *target => {
            Ok((PokeResult::Done, format!("{target} has passed")))
        }
        PokeCheck::NotBefore(target) => Ok((
            PokeResult::NotBefore(*target),
            format!("waiting until {target}"),
        )),
        PokeCheck::ExternalTask(query) => external(query, tools).await,
        PokeCheck::Http(request) => http::poke(&tools.http, request).await,
        PokeCheck::Sql(query) => sql::poke(query).await,
        PokeCheck::Process(_) => Err(PokeFailure::Error(
            "a process check is run as a local try, not in-process".to_owned(),
        )),
        PokeCheck::TriggerDagRun(_) => Err(PokeFailure::Error(
            "a trigger is poked by the trigger module".to_owned(),
        )),
    }
}

async fn external(
    query: &ExternalQuery,
    tools: &PokeTools,
) -> Result<(PokeResult, String), PokeFailure> {
    let Some(states) = &tools.states else {
        return Err(PokeFailure::Error(
            "external_task: this executor cannot read other DAGs' states".to_owned(),
        ));
    };
    let what = match &query.task_id {
        Some(task) => format!("task {task} of DAG {}", query.dag_id),
        None => format!("DAG {}", query.dag_id),
    };
    let state = states
        .external_state(query)
        .await
        .map_err(|e| PokeFailure::Error(format!("reading the state of {what} failed: {e}")))?;
    let at = query.logical_date.to_rfc3339();
    let Some(state) = state else {
        return Ok((
            PokeResult::NotYet,
            format!("{what} has no run at logical date {at} yet"),
        ));
    };
    if query.failed_states.contains(&state) {
        return Err(PokeFailure::FailedState(format!(
            "{what} at logical date {at} is {state}, one of the failed_states"
        )));
    }
    if query.allowed_states.contains(&state) {
        return Ok((
            PokeResult::Done,
            format!("{what} at logical date {at} is {state}"),
        ));
    }
    Ok((
        PokeResult::NotYet,
        format!("{what} at logical date {at} is {state}"),
    ))
}
