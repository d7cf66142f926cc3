//! `dagrun_timeout`: when a running run has run too long, and what its instances become.
//!
//! As Airflow's `_schedule_dag_run`: a run whose start is more than the DAG's
//! `dagrun_timeout` before now is failed, and every unfinished instance of it is set
//! `skipped` (running tries are then stopped by the shell). The check is strict: a run exactly
//! `dagrun_timeout` old has not timed out yet.

use chrono::{DateTime, Utc};
use updraft_dag::Dag;

use crate::state::TaskState;

/// The reason given to the run's `on_failure` notifiers (Airflow's `msg="timed_out"`).
pub const TIMED_OUT_REASON: &str = "timed_out";

/// When a run of `dag` started at `start` times out: `None` without a `dagrun_timeout` or a
/// start (a queued run has not started).
pub fn run_deadline(dag: &Dag, start: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    let timeout = chrono::Duration::from_std(dag.dagrun_timeout?).ok()?;
    start?.checked_add_signed(timeout)
}

/// Whether a running run of `dag` started at `start` has timed out at `now`.
pub fn run_timed_out(dag: &Dag, start: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    run_deadline(dag, start).is_some_and(|deadline| now > deadline)
}

/// Whether a timed-out run's instance in `state` is set `skipped` (Airflow's
/// `State.unfinished`); finished instances keep their state.
pub fn skipped_on_timeout(state: TaskState) -> bool {
    !state.is_terminal()
}
