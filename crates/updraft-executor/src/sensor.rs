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

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use updraft_dag::SensorTiming;

pub use updraft_core::sensor::PokeResult;

use crate::render::Program;

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

/// Why a poke did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PokeFailure {
    /// The poke could not look (bad pattern, connection, request): a failed try.
    Error(String),
    /// The external task reached one of its `failed_states`: a failed try, or skipped with
    /// `soft_fail`.
    FailedState(String),
}

impl fmt::Display for PokeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PokeFailure::Error(m) | PokeFailure::FailedState(m) => f.write_str(m),
        }
    }
}

/// What a poke may use besides its check.
#[derive(Debug, Clone, Default)]
pub struct PokeTools {
    pub states: Option<std::sync::Arc<dyn SensorStates>>,
    pub http: reqwest::Client,
}

/// Runs one in-process poke of `check` at `now` (a `Process` check is not in-process: an
/// error). Also returns a line for the try's log saying what was found.
pub async fn poke(
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
