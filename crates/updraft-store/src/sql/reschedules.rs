//! Sensors' reschedules (Airflow's `task_reschedule`): a row for each poke that ended
//! `up_for_reschedule`, written in the transaction that records the poke; read back when the
//! next poke is launched (its try's first poke and number of pokes). Also the read an
//! `external_task` sensor makes of another DAG's run in its tenant.

use chrono::{DateTime, Utc};
use updraft_core::TaskState;

use super::codec::{self, StoreRow};
use super::{Db, query};
use crate::{RescheduleRow, Result, TiKey, TryReport};

/// The rows of try `try_number` of `key`, oldest first.
pub(crate) async fn of_try<C: Db + ?Sized>(
    conn: &mut C,
    key: &TiKey,
    try_number: u32,
) -> Result<Vec<RescheduleRow>> {
    let rows = query(
        "SELECT run_pk, task_id, CAST(map_index AS BIGINT) AS map_index, try_number, start_date,
             end_date, reschedule_date
         FROM task_reschedule
         WHERE run_pk = $1 AND task_id = $2 AND map_index = $3 AND try_number = $4
         ORDER BY id",
    )
    .bind(key.run_pk)
    .bind(&key.task_id)
    .bind(key.map_index)
    .bind(try_number)
    .fetch_all(conn)
    .await?;
    codec::all(&rows, row)
}

fn row<R: StoreRow>(r: &R) -> Result<RescheduleRow> {
    Ok(RescheduleRow {
        run_pk: r.int("run_pk")?,
        task_id: r.text("task_id")?,
        map_index: r.int("map_index")?,
        try_number: codec::u32_col(r, "try_number")?,
        start_date: codec::time_col(r, "start_date")?,
        end_date: codec::time_col(r, "end_date")?,
        reschedule_date: codec::time_col(r, "reschedule_date")?,
    })
}

/// A row for each `Finished` report among `reports` that applied (`applied`, per report) and
/// rescheduled its instance: the poke's start is the instance's `start_date` (its end when the
/// poke never recorded a start), its end the report's time, the next poke its `retry_at`. One
/// statement per such report, none for the others.
pub(crate) async fn record<C: Db + ?Sized>(
    conn: &mut C,
    reports: &[TryReport],
    applied: &[bool],
) -> Result<()> {
    for (report, _) in reports.iter().zip(applied).filter(|(_, applied)| **applied) {
        if let TryReport::Finished {
            key,
            try_number,
            new: TaskState::UpForReschedule,
            retry_at,
            at,
            ..
        } = report
        {
            record_one(conn, key, *try_number, retry_at.unwrap_or(*at), *at).await?;
        }
    }
    Ok(())
}

/// The row of one poke of `key` at `try_number` that ended at `at`, next due at `next`.
pub(crate) async fn record_one<C: Db + ?Sized>(
    conn: &mut C,
    key: &TiKey,
    try_number: u32,
    next: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Result<()> {
    query(
        "INSERT INTO task_reschedule (run_pk, task_id, map_index, try_number, start_date,
             end_date, reschedule_date)
         SELECT run_pk, task_id, map_index, try_number, COALESCE(start_date, $5), $5, $6
         FROM task_instance
         WHERE run_pk = $1 AND task_id = $2 AND map_index = $3 AND try_number = $4",
    )
    .bind(key.run_pk)
    .bind(&key.task_id)
    .bind(key.map_index)
    .bind(try_number)
    .bind(at)
    .bind(next)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes every row of the instance (it was cleared: its next try starts afresh).
pub(crate) async fn delete<C: Db + ?Sized>(conn: &mut C, run_pk: i64, task_id: &str) -> Result<()> {
    query("DELETE FROM task_reschedule WHERE run_pk = $1 AND task_id = $2")
        .bind(run_pk)
        .bind(task_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// See [`crate::ReadStore::external_state`].
pub(crate) async fn external_state<C: Db + ?Sized>(
    conn: &mut C,
    tenant: &str,
    dag_id: &str,
    logical_date: DateTime<Utc>,
    task_id: Option<&str>,
) -> Result<Option<String>> {
    let row = match task_id {
        None => {
            query(
                "SELECT state FROM dag_run
                 WHERE dag_id = $1 AND logical_date = $2 AND tenant = $3",
            )
            .bind(dag_id)
            .bind(logical_date)
            .bind(tenant)
            .fetch_optional(conn)
            .await?
        }
        Some(task_id) => {
            query(
                "SELECT ti.state FROM dag_run r
                 JOIN task_instance ti ON ti.run_pk = r.id AND ti.task_id = $4
                 WHERE r.dag_id = $1 AND r.logical_date = $2 AND r.tenant = $3",
            )
            .bind(dag_id)
            .bind(logical_date)
            .bind(tenant)
            .bind(task_id)
            .fetch_optional(conn)
            .await?
        }
    };
    row.map(|r| r.text("state")).transpose()
}
