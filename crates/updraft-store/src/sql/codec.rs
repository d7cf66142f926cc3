//! Conversions between stored values and the contract's row types, written once for both
//! backends (generic over [`sqlx::Row`]).
//!
//! Timestamps are stored as BIGINT (SQLite: INTEGER) microseconds since the Unix epoch (UTC),
//! states as their `as_str` names, JSON documents as TEXT. Any value that does not decode is
//! reported as [`StoreError::Corrupt`] naming the column, never a panic.

use std::fmt::Display;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Decode, Row, Type};
use updraft_dag::{Dag, ImportError};

use crate::{
    DagRow, PoolRow, Result, RunRow, SchedulerJobRow, SourceRow, StoreError, TiRow, TryRow,
};

/// Columns of `dag_run` decoded by [`run_row`], as a string literal for `concat!`.
macro_rules! run_columns {
    () => {
        "id, dag_id, tenant, run_id, run_type, state, version, logical_date, \
         data_interval_start, data_interval_end, conf, queued_at, start_date, end_date, \
         bundle_version"
    };
}

/// Columns of `task_instance` decoded by [`ti_row`], as a string literal for `concat!`.
macro_rules! ti_columns {
    () => {
        "run_pk, task_id, map_index, tenant, dag_id, run_id, logical_date, state, try_number, \
         max_tries, pool, pool_slots, priority_weight, queued_at, start_date, end_date, retry_at, \
         pid, hostname, queued_by_job_id"
    };
}

/// Columns of `scheduler_job` decoded by [`job_row`], as a string literal for `concat!`.
macro_rules! job_columns {
    () => {
        "id, hostname, pid, state, start_date, latest_heartbeat, end_date"
    };
}

pub(crate) use {job_columns, run_columns, ti_columns};

/// A row of either backend whose columns decode as the types the store keeps: integers,
/// texts and flags, each possibly NULL.
pub(crate) trait StoreRow: Row {
    fn int(&self, name: &str) -> Result<i64>;
    fn opt_int(&self, name: &str) -> Result<Option<i64>>;
    fn text(&self, name: &str) -> Result<String>;
    fn opt_text(&self, name: &str) -> Result<Option<String>>;
    fn flag(&self, name: &str) -> Result<bool>;
}

impl<R> StoreRow for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn int(&self, name: &str) -> Result<i64> {
        col(self, name)
    }

    fn opt_int(&self, name: &str) -> Result<Option<i64>> {
        col(self, name)
    }

    fn text(&self, name: &str) -> Result<String> {
        col(self, name)
    }

    fn opt_text(&self, name: &str) -> Result<Option<String>> {
        col(self, name)
    }

    fn flag(&self, name: &str) -> Result<bool> {
        col(self, name)
    }
}

/// Storage form of a timestamp.
pub(crate) fn ts(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn opt_ts(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(ts)
}

/// A column of any type the backend decodes.
pub(crate) fn col<'r, R, T>(row: &'r R, name: &str) -> Result<T>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(name)
        .map_err(|e| StoreError::Corrupt(format!("column `{name}`: {e}")))
}

pub(crate) fn time_col(row: &impl StoreRow, name: &str) -> Result<DateTime<Utc>> {
    micros_to_time(row.int(name)?, name)
}

pub(crate) fn opt_time_col(row: &impl StoreRow, name: &str) -> Result<Option<DateTime<Utc>>> {
    row.opt_int(name)?
        .map(|us| micros_to_time(us, name))
        .transpose()
}

fn micros_to_time(us: i64, name: &str) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::Corrupt(format!("column `{name}`: timestamp {us} out of range")))
}

fn to_u32(v: i64, name: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("column `{name}`: {v} out of range")))
}

/// The `map_index` column: -1 (not mapped) or an index.
pub(crate) fn map_index_col(row: &impl StoreRow) -> Result<i32> {
    let value = row.int("map_index")?;
    i32::try_from(value)
        .ok()
        .filter(|v| *v >= -1)
        .ok_or_else(|| StoreError::Corrupt(format!("map_index {value} is out of range")))
}

pub(crate) fn u32_col(row: &impl StoreRow, name: &str) -> Result<u32> {
    to_u32(row.int(name)?, name)
}

fn opt_u32_col(row: &impl StoreRow, name: &str) -> Result<Option<u32>> {
    row.opt_int(name)?.map(|v| to_u32(v, name)).transpose()
}

/// A column holding the `as_str` name of a state or run type.
pub(crate) fn enum_col<T>(row: &impl StoreRow, name: &str) -> Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    row.text(name)?
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("column `{name}`: {e}")))
}

pub(crate) fn json_col<T: serde::de::DeserializeOwned>(
    row: &impl StoreRow,
    name: &str,
) -> Result<T> {
    let text = row.text(name)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("column `{name}`: {e}")))
}

/// JSON text of a value the contract hands us (a `Dag`, a run's conf, a list of ids).
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(format!("not serializable: {e}")))
}

/// Row of `dag` joined with the `definition` of its latest version.
pub(crate) fn dag_row<R: StoreRow>(row: &R) -> Result<DagRow> {
    let dag: Dag = json_col(row, "definition")?;
    Ok(DagRow {
        dag,
        version: row.text("version")?,
        is_paused: row.flag("is_paused")?,
        is_active: row.flag("is_active")?,
        last_parsed_at: time_col(row, "last_parsed_at")?,
        bundle_name: row.opt_text("bundle_name")?,
        bundle_version: row.opt_text("bundle_version")?,
    })
}

pub(crate) fn import_error_row<R: StoreRow>(row: &R) -> Result<ImportError> {
    Ok(ImportError {
        tenant: row.text("tenant")?,
        filename: row.text("filename")?,
        line: opt_u32_col(row, "line")?,
        column: opt_u32_col(row, "col")?,
        message: row.text("message")?,
    })
}

pub(crate) fn run_row<R: StoreRow>(row: &R) -> Result<RunRow> {
    Ok(RunRow {
        id: row.int("id")?,
        dag_id: row.text("dag_id")?,
        tenant: row.text("tenant")?,
        run_id: row.text("run_id")?,
        run_type: enum_col(row, "run_type")?,
        state: enum_col(row, "state")?,
        version: row.text("version")?,
        logical_date: time_col(row, "logical_date")?,
        data_interval_start: time_col(row, "data_interval_start")?,
        data_interval_end: time_col(row, "data_interval_end")?,
        conf: json_col(row, "conf")?,
        queued_at: time_col(row, "queued_at")?,
        start_date: opt_time_col(row, "start_date")?,
        end_date: opt_time_col(row, "end_date")?,
        bundle_version: row.opt_text("bundle_version")?,
    })
}

pub(crate) fn ti_row<R: StoreRow>(row: &R) -> Result<TiRow> {
    Ok(TiRow {
        run_pk: row.int("run_pk")?,
        dag_id: row.text("dag_id")?,
        run_id: row.text("run_id")?,
        tenant: row.text("tenant")?,
        task_id: row.text("task_id")?,
        map_index: map_index_col(row)?,
        state: enum_col(row, "state")?,
        try_number: u32_col(row, "try_number")?,
        max_tries: u32_col(row, "max_tries")?,
        pool: row.text("pool")?,
        pool_slots: u32_col(row, "pool_slots")?,
        priority_weight: row.int("priority_weight")?,
        logical_date: time_col(row, "logical_date")?,
        queued_at: opt_time_col(row, "queued_at")?,
        start_date: opt_time_col(row, "start_date")?,
        end_date: opt_time_col(row, "end_date")?,
        retry_at: opt_time_col(row, "retry_at")?,
        pid: row.opt_int("pid")?,
        hostname: row.opt_text("hostname")?,
        queued_by_job_id: row.opt_int("queued_by_job_id")?,
    })
}

pub(crate) fn try_row<R: StoreRow>(row: &R) -> Result<TryRow> {
    Ok(TryRow {
        run_pk: row.int("run_pk")?,
        task_id: row.text("task_id")?,
        map_index: map_index_col(row)?,
        try_number: u32_col(row, "try_number")?,
        state: enum_col(row, "state")?,
        start_date: opt_time_col(row, "start_date")?,
        end_date: opt_time_col(row, "end_date")?,
        hostname: row.opt_text("hostname")?,
    })
}

pub(crate) fn pool_row<R: StoreRow>(row: &R) -> Result<PoolRow> {
    Ok(PoolRow {
        name: row.text("name")?,
        slots: row.int("slots")?,
        description: row.text("description")?,
        tenant: row.opt_text("tenant")?,
    })
}

pub(crate) fn job_row<R: StoreRow>(row: &R) -> Result<SchedulerJobRow> {
    Ok(SchedulerJobRow {
        id: row.int("id")?,
        hostname: row.text("hostname")?,
        pid: row.int("pid")?,
        state: enum_col(row, "state")?,
        start_date: time_col(row, "start_date")?,
        latest_heartbeat: time_col(row, "latest_heartbeat")?,
        end_date: opt_time_col(row, "end_date")?,
    })
}

pub(crate) fn source_row<R: StoreRow>(row: &R) -> Result<SourceRow> {
    Ok(SourceRow {
        name: row.text("name")?,
        tenant: row.opt_text("tenant")?,
        kind: row.text("kind")?,
        url: row.text("url")?,
        reference: row.opt_text("reference")?,
        revision: row.opt_text("revision")?,
        revision_url: row.opt_text("revision_url")?,
        last_sync_at: opt_time_col(row, "last_sync_at")?,
        last_success_at: opt_time_col(row, "last_success_at")?,
        failures: row.int("failures")?,
        error: row.opt_text("error")?,
        sync_requested_at: opt_time_col(row, "sync_requested_at")?,
    })
}

/// Decode every row with `f`, stopping at the first corrupt one.
pub(crate) fn all<R, T>(rows: &[R], f: fn(&R) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
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

    #[test]
    fn out_of_range_values_are_corrupt_naming_the_column() {
        let err = micros_to_time(i64::MAX, "queued_at").unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains("`queued_at`")),
            "{err}"
        );
        let err = to_u32(-1, "try_number").unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains("`try_number`")),
            "{err}"
        );
    }
}
