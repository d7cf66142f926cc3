//! Bounded, batched reads for the web UI's pages and live updates.
//!
//! A page asks for the data of many DAGs or runs in one statement each (never one statement
//! per DAG), and every statement is bounded by the page's size, so pages stay fast however
//! much history is recorded.

use sqlx::PgConnection;

use super::codec::{self, run_columns, ti_columns};
use crate::{DagVersionRow, Result, RunChange, RunRow, TiRow, TryRow};

/// The `per_dag` newest runs of each DAG in `$1` (a JSON array of dag ids): for each DAG an
/// index walk of `(dag_id, logical_date)` that stops after `per_dag` rows.
pub(super) const RECENT_RUNS: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM dag_run WHERE id IN (
         SELECT x.id FROM jsonb_array_elements_text($1::jsonb) AS j(value)
         CROSS JOIN LATERAL (
             SELECT y.id FROM dag_run AS y WHERE y.dag_id = j.value
             ORDER BY y.logical_date DESC, y.id DESC LIMIT $2) AS x)
     ORDER BY dag_id, logical_date DESC, id DESC"
);

/// For each DAG in `$1`, its scheduled or backfill run with the latest data interval end (ties:
/// the newest run), found walking `(dag_id, data_interval_end)` backwards.
pub(super) const LATEST_SCHEDULED: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM dag_run WHERE id IN (
         SELECT (SELECT x.id FROM dag_run AS x
                 WHERE x.dag_id = j.value AND x.run_type IN ('scheduled', 'backfill')
                 ORDER BY x.data_interval_end DESC, x.id DESC
                 LIMIT 1)
         FROM jsonb_array_elements_text($1::jsonb) AS j(value))
     ORDER BY dag_id"
);

pub(super) const TIS_OF_RUNS: &str = concat!(
    "SELECT ",
    ti_columns!(),
    " FROM task_instance WHERE run_pk IN (SELECT jsonb_array_elements_text($1::jsonb)::BIGINT)
     ORDER BY run_pk, task_id"
);

pub(super) const TRIES_OF_RUN: &str =
    "SELECT run_pk, task_id, try_number, state, start_date, end_date, hostname
     FROM task_try WHERE run_pk = $1 ORDER BY task_id, try_number";

pub(super) const RUN_CHANGES: &str =
    "SELECT seq, run_pk FROM run_change WHERE seq > $1 ORDER BY seq LIMIT $2";

pub(super) async fn recent_runs(
    conn: &mut PgConnection,
    dag_ids: &[String],
    per_dag: u32,
) -> Result<Vec<RunRow>> {
    if dag_ids.is_empty() || per_dag == 0 {
        return Ok(Vec::new());
    }
    let rows = codec::query(RECENT_RUNS)
        .bind(codec::to_json(dag_ids)?)
        .bind(i64::from(per_dag))
        .fetch_all(&mut *conn)
        .await?;
    codec::all(&rows, codec::run_row)
}

pub(super) async fn latest_scheduled_runs(
    conn: &mut PgConnection,
    dag_ids: &[String],
) -> Result<Vec<RunRow>> {
    if dag_ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = codec::query(LATEST_SCHEDULED)
        .bind(codec::to_json(dag_ids)?)
        .fetch_all(&mut *conn)
        .await?;
    codec::all(&rows, codec::run_row)
}

pub(super) async fn task_instances_of_runs(
    conn: &mut PgConnection,
    run_pks: &[i64],
) -> Result<Vec<TiRow>> {
    if run_pks.is_empty() {
        return Ok(Vec::new());
    }
    let rows = codec::query(TIS_OF_RUNS)
        .bind(codec::to_json(run_pks)?)
        .fetch_all(&mut *conn)
        .await?;
    codec::all(&rows, codec::ti_row)
}

pub(super) async fn tries_of_run(conn: &mut PgConnection, run_pk: i64) -> Result<Vec<TryRow>> {
    let rows = codec::query(TRIES_OF_RUN)
        .bind(run_pk)
        .fetch_all(&mut *conn)
        .await?;
    codec::all(&rows, codec::try_row)
}

pub(super) async fn dag_versions(
    conn: &mut PgConnection,
    dag_id: &str,
) -> Result<Vec<DagVersionRow>> {
    let rows = codec::query(
        "SELECT version, created_at FROM dag_version WHERE dag_id = $1
         ORDER BY created_at DESC, version",
    )
    .bind(dag_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(DagVersionRow {
                version: codec::col(row, "version")?,
                created_at: codec::time_col(row, "created_at")?,
            })
        })
        .collect()
}

pub(super) async fn run_changes_since(
    conn: &mut PgConnection,
    after: i64,
    limit: u32,
) -> Result<Vec<RunChange>> {
    let rows = codec::query(RUN_CHANGES)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(RunChange {
                seq: codec::col(row, "seq")?,
                run_pk: codec::col(row, "run_pk")?,
            })
        })
        .collect()
}

pub(super) async fn latest_run_change(conn: &mut PgConnection) -> Result<i64> {
    let (seq,): (i64,) = codec::query_as("SELECT COALESCE(MAX(seq), 0) FROM run_change")
        .fetch_one(&mut *conn)
        .await?;
    Ok(seq)
}
