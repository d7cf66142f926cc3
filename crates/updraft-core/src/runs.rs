//! DAG run bookkeeping: how many runs may start, and Airflow-shaped run ids.

use chrono::{DateTime, SecondsFormat, Timelike, Utc};

use crate::state::RunType;

/// How many of `queued` runs may move to running now, given `running` runs and the DAG's
/// `max_active_runs`: `min(queued, max_active_runs - running)`, never negative.
pub fn runs_to_start(max_active_runs: u32, running: usize, queued: usize) -> usize {
    let limit = usize::try_from(max_active_runs).unwrap_or(usize::MAX);
    limit.saturating_sub(running).min(queued)
}

/// How many new scheduled runs may be created when `active` runs (queued + running) exist:
/// Airflow creates scheduled runs only while fewer than `max_active_runs` are active.
pub fn runs_to_create(max_active_runs: u32, active: usize) -> usize {
    let limit = usize::try_from(max_active_runs).unwrap_or(usize::MAX);
    limit.saturating_sub(active)
}

/// `scheduled__2024-01-01T00:00:00+00:00`.
pub fn scheduled_run_id(logical_date: DateTime<Utc>) -> String {
    run_id(RunType::Scheduled, logical_date)
}

/// `manual__2024-01-01T00:00:00+00:00`.
pub fn manual_run_id(logical_date: DateTime<Utc>) -> String {
    run_id(RunType::Manual, logical_date)
}

/// `backfill__2024-01-01T00:00:00+00:00`.
pub fn backfill_run_id(logical_date: DateTime<Utc>) -> String {
    run_id(RunType::Backfill, logical_date)
}

/// Airflow's `DagRun.generate_run_id`: `{run_type}__{logical_date.isoformat()}`, with Python's
/// `isoformat` rendering: microseconds only when non-zero (six digits; finer precision is
/// truncated), offset `+00:00`.
pub fn run_id(run_type: RunType, logical_date: DateTime<Utc>) -> String {
    let micros = logical_date.nanosecond() / 1_000 * 1_000;
    let d = logical_date.with_nanosecond(micros).unwrap_or(logical_date);
    let format = if micros == 0 {
        SecondsFormat::Secs
    } else {
        SecondsFormat::Micros
    };
    format!(
        "{}__{}",
        run_type.as_str(),
        d.to_rfc3339_opts(format, false)
    )
}
