//! Conversions between SQLite values and the contract's row types.
//!
//! Timestamps are stored as INTEGER microseconds since the Unix epoch (UTC), states as their
//! `as_str` names, JSON documents as TEXT. Any value that does not decode is reported as
//! [`StoreError::Corrupt`] naming the column, never a panic.

use std::fmt::Display;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::{Sqlite, SqliteRow};
use updraft_dag::{Dag, ImportError};

use crate::{DagRow, PoolRow, Result, RunRow, SchedulerJobRow, StoreError, TiRow, TryRow};

/// Columns of `dag_run` decoded by [`run_row`], as a string literal for `concat!`.
macro_rules! run_columns {
    () => {
        "id, dag_id, tenant, run_id, run_type, state, version, logical_date, \
         data_interval_start, data_interval_end, conf, queued_at, start_date, end_date"
    };
}

/// Columns of `task_instance` decoded by [`ti_row`], as a string literal for `concat!`.
macro_rules! ti_columns {
    () => {
        "run_pk, task_id, tenant, dag_id, run_id, logical_date, state, try_number, max_tries, \
         pool, pool_slots, priority_weight, queued_at, start_date, end_date, retry_at, pid, \
         hostname, queued_by_job_id"
    };
}

/// Columns of `scheduler_job` decoded by [`job_row`], as a string literal for `concat!`.
macro_rules! job_columns {
    () => {
        "id, hostname, pid, state, start_date, latest_heartbeat, end_date"
    };
}

pub(super) use {job_columns, run_columns, ti_columns};

/// Storage form of a timestamp.
pub(super) fn ts(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(super) fn opt_ts(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(ts)
}

pub(super) fn col<'r, T>(row: &'r SqliteRow, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(name)
        .map_err(|e| StoreError::Corrupt(format!("column `{name}`: {e}")))
}

pub(super) fn time_col(row: &SqliteRow, name: &str) -> Result<DateTime<Utc>> {
    micros_to_time(col(row, name)?, name)
}

pub(super) fn opt_time_col(row: &SqliteRow, name: &str) -> Result<Option<DateTime<Utc>>> {
    col::<Option<i64>>(row, name)?
        .map(|us| micros_to_time(us, name))
        .transpose()
}

fn micros_to_time(us: i64, name: &str) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::Corrupt(format!("column `{name}`: timestamp {us} out of range")))
}

pub(super) fn u32_col(row: &SqliteRow, name: &str) -> Result<u32> {
    let v: i64 = col(row, name)?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("column `{name}`: {v} out of range")))
}

fn opt_u32_col(row: &SqliteRow, name: &str) -> Result<Option<u32>> {
    col::<Option<i64>>(row, name)?
        .map(|v| {
            u32::try_from(v)
                .map_err(|_| StoreError::Corrupt(format!("column `{name}`: {v} out of range")))
        })
        .transpose()
}

/// A column holding the `as_str` name of a state or run type.
pub(super) fn enum_col<T>(row: &SqliteRow, name: &str) -> Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    let text: String = col(row, name)?;
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("column `{name}`: {e}")))
}

pub(super) fn json_col<T: serde::de::DeserializeOwned>(row: &SqliteRow, name: &str) -> Result<T> {
    let text: String = col(row, name)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("column `{name}`: {e}")))
}

/// JSON text of a value the contract hands us (a `Dag`, a run's conf, a list of ids).
pub(super) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(format!("not serializable: {e}")))
}

/// Row of `dag` joined with the `definition` of its latest version.
pub(super) fn dag_row(row: &SqliteRow) -> Result<DagRow> {
    let dag: Dag = json_col(row, "definition")?;
    Ok(DagRow {
        dag,
        version: col(row, "version")?,
        is_paused: col(row, "is_paused")?,
        is_active: col(row, "is_active")?,
        last_parsed_at: time_col(row, "last_parsed_at")?,
    })
}

pub(super) fn import_error_row(row: &SqliteRow) -> Result<ImportError> {
    Ok(ImportError {
        tenant: col(row, "tenant")?,
        filename: col(row, "filename")?,
        line: opt_u32_col(row, "line")?,
        column: opt_u32_col(row, "col")?,
        message: col(row, "message")?,
    })
}

pub(super) fn run_row(row: &SqliteRow) -> Result<RunRow> {
    Ok(RunRow {
        id: col(row, "id")?,
        dag_id: col(row, "dag_id")?,
        tenant: col(row, "tenant")?,
        run_id: col(row, "run_id")?,
        run_type: enum_col(row, "run_type")?,
        state: enum_col(row, "state")?,
        version: col(row, "version")?,
        logical_date: time_col(row, "logical_date")?,
        data_interval_start: time_col(row, "data_interval_start")?,
        data_interval_end: time_col(row, "data_interval_end")?,
        conf: json_col(row, "conf")?,
        queued_at: time_col(row, "queued_at")?,
        start_date: opt_time_col(row, "start_date")?,
        end_date: opt_time_col(row, "end_date")?,
    })
}

pub(super) fn ti_row(row: &SqliteRow) -> Result<TiRow> {
    Ok(TiRow {
        run_pk: col(row, "run_pk")?,
        dag_id: col(row, "dag_id")?,
        run_id: col(row, "run_id")?,
        tenant: col(row, "tenant")?,
        task_id: col(row, "task_id")?,
        state: enum_col(row, "state")?,
        try_number: u32_col(row, "try_number")?,
        max_tries: u32_col(row, "max_tries")?,
        pool: col(row, "pool")?,
        pool_slots: u32_col(row, "pool_slots")?,
        priority_weight: col(row, "priority_weight")?,
        logical_date: time_col(row, "logical_date")?,
        queued_at: opt_time_col(row, "queued_at")?,
        start_date: opt_time_col(row, "start_date")?,
        end_date: opt_time_col(row, "end_date")?,
        retry_at: opt_time_col(row, "retry_at")?,
        pid: col(row, "pid")?,
        hostname: col(row, "hostname")?,
        queued_by_job_id: col(row, "queued_by_job_id")?,
    })
}

pub(super) fn try_row(row: &SqliteRow) -> Result<TryRow> {
    Ok(TryRow {
        run_pk: col(row, "run_pk")?,
        task_id: col(row, "task_id")?,
        try_number: u32_col(row, "try_number")?,
        state: enum_col(row, "state")?,
        start_date: opt_time_col(row, "start_date")?,
        end_date: opt_time_col(row, "end_date")?,
        hostname: col(row, "hostname")?,
    })
}

pub(super) fn pool_row(row: &SqliteRow) -> Result<PoolRow> {
    Ok(PoolRow {
        name: col(row, "name")?,
        slots: col(row, "slots")?,
        description: col(row, "description")?,
    })
}

pub(super) fn job_row(row: &SqliteRow) -> Result<SchedulerJobRow> {
    Ok(SchedulerJobRow {
        id: col(row, "id")?,
        hostname: col(row, "hostname")?,
        pid: col(row, "pid")?,
        state: col(row, "state")?,
        start_date: time_col(row, "start_date")?,
        latest_heartbeat: time_col(row, "latest_heartbeat")?,
        end_date: opt_time_col(row, "end_date")?,
    })
}

/// Decode every row with `f`, stopping at the first corrupt one.
pub(super) fn all<T>(rows: &[SqliteRow], f: fn(&SqliteRow) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}

/// Whether `err` is a UNIQUE / PRIMARY KEY violation.
pub(super) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_at_microsecond_precision() {
        let t = DateTime::parse_from_rfc3339("2024-03-01T12:34:56.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let back = micros_to_time(ts(t), "t").unwrap();
        assert_eq!(back.to_rfc3339(), "2024-03-01T12:34:56.123456+00:00");
    }

    #[test]
    fn timestamps_sort_as_integers() {
        let a = DateTime::parse_from_rfc3339("1969-12-31T23:59:59.5Z").unwrap();
        let b = DateTime::parse_from_rfc3339("1970-01-01T00:00:00.25Z").unwrap();
        assert!(ts(a.with_timezone(&Utc)) < ts(b.with_timezone(&Utc)));
    }
}
