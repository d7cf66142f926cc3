//! Bounded, batched reads for the web UI's pages and live updates.
//!
//! A page asks for the data of many DAGs or runs in one statement each (never one statement
//! per DAG), and every statement is bounded by the page's size, so pages stay fast however
//! much history is recorded.

use super::codec::{self, StoreRow, run_columns, ti_columns};
use super::{Arg, Db, Dialect, query};
use crate::{DagVersionRow, Result, RunChange, RunRow, TiRow, TryRow};

/// The `per_dag` newest runs of each DAG in `$1` (a list of dag ids): for each DAG an index
/// walk of `(dag_id, logical_date)` that stops after `$2` rows.
pub(crate) fn recent_runs_sql(dialect: Dialect) -> String {
    let per_dag = match dialect {
        Dialect::Sqlite => {
            "SELECT x.id FROM json_each($1) AS j, dag_run AS x
             WHERE x.id IN (
                 SELECT y.id FROM dag_run AS y WHERE y.dag_id = j.value
                 ORDER BY y.logical_date DESC, y.id DESC LIMIT $2)"
        }
        Dialect::Postgres => {
            "SELECT x.id FROM unnest($1::text[]) AS j(value)
             CROSS JOIN LATERAL (
                 SELECT y.id FROM dag_run AS y WHERE y.dag_id = j.value
                 ORDER BY y.logical_date DESC, y.id DESC LIMIT $2) AS x"
        }
    };
    format!(
        concat!(
            "SELECT ",
            run_columns!(),
            " FROM dag_run WHERE id IN ({}) ORDER BY dag_id, logical_date DESC, id DESC"
        ),
        per_dag
    )
}

/// For each DAG in `$1`, its scheduled or backfill run with the latest data interval end (ties:
/// the newest run), found walking `(dag_id, data_interval_end)` backwards.
pub(crate) fn latest_scheduled_sql(dialect: Dialect) -> String {
    format!(
        concat!(
            "SELECT ",
            run_columns!(),
            " FROM dag_run WHERE id IN (
                 SELECT (SELECT x.id FROM dag_run AS x
                         WHERE x.dag_id = j.value AND x.run_type IN ('scheduled', 'backfill')
                         ORDER BY x.data_interval_end DESC, x.id DESC
                         LIMIT 1)
                 FROM {})
             ORDER BY dag_id"
        ),
        dialect.texts_table(1, "j")
    )
}

pub(crate) fn tis_of_runs_sql(dialect: Dialect) -> String {
    format!(
        concat!(
            "SELECT ",
            ti_columns!(),
            " FROM task_instance WHERE {} ORDER BY run_pk, task_id, map_index"
        ),
        dialect.in_ints("run_pk", 1)
    )
}

pub(crate) const TRIES_OF_RUN: &str =
    "SELECT run_pk, task_id, map_index, try_number, state, start_date, end_date, hostname
     FROM task_try WHERE run_pk = $1 ORDER BY task_id, map_index, try_number";

pub(crate) const RUN_CHANGES: &str =
    "SELECT seq, run_pk FROM run_change WHERE seq > $1 ORDER BY seq LIMIT $2";

pub(crate) async fn recent_runs<C: Db + ?Sized>(
    conn: &mut C,
    dag_ids: &[String],
    per_dag: u32,
) -> Result<Vec<RunRow>> {
    if dag_ids.is_empty() || per_dag == 0 {
        return Ok(Vec::new());
    }
    let rows = query(recent_runs_sql(C::DIALECT))
        .bind(Arg::Texts(dag_ids.to_vec()))
        .bind(per_dag)
        .fetch_all(conn)
        .await?;
    codec::all(&rows, codec::run_row)
}

pub(crate) async fn latest_scheduled_runs<C: Db + ?Sized>(
    conn: &mut C,
    dag_ids: &[String],
) -> Result<Vec<RunRow>> {
    if dag_ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = query(latest_scheduled_sql(C::DIALECT))
        .bind(Arg::Texts(dag_ids.to_vec()))
        .fetch_all(conn)
        .await?;
    codec::all(&rows, codec::run_row)
}

pub(crate) async fn task_instances_of_runs<C: Db + ?Sized>(
    conn: &mut C,
    run_pks: &[i64],
) -> Result<Vec<TiRow>> {
    if run_pks.is_empty() {
        return Ok(Vec::new());
    }
    let rows = query(tis_of_runs_sql(C::DIALECT))
        .bind(Arg::Ints(run_pks.to_vec()))
        .fetch_all(conn)
        .await?;
    codec::all(&rows, codec::ti_row)
}

pub(crate) async fn task_instances_of_runs_for_tasks<C: Db + ?Sized>(
    conn: &mut C,
    run_pks: &[i64],
    task_ids: &[String],
) -> Result<Vec<TiRow>> {
    if run_pks.is_empty() || task_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        concat!(
            "SELECT ",
            ti_columns!(),
            " FROM task_instance WHERE {} AND {} ORDER BY run_pk, task_id, map_index"
        ),
        C::DIALECT.in_ints("run_pk", 1),
        C::DIALECT.in_texts("task_id", 2)
    );
    let rows = query(sql)
        .bind(Arg::Ints(run_pks.to_vec()))
        .bind(Arg::Texts(task_ids.to_vec()))
        .fetch_all(conn)
        .await?;
    codec::all(&rows, codec::ti_row)
}

pub(crate) async fn tries_of_run<C: Db + ?Sized>(conn: &mut C, run_pk: i64) -> Result<Vec<TryRow>> {
    let rows = query(TRIES_OF_RUN).bind(run_pk).fetch_all(conn).await?;
    codec::all(&rows, codec::try_row)
}

pub(crate) async fn dag_versions<C: Db + ?Sized>(
    conn: &mut C,
    dag_id: &str,
) -> Result<Vec<DagVersionRow>> {
    let rows = query(
        "SELECT version, created_at, bundle_name, bundle_version FROM dag_version
         WHERE dag_id = $1
         ORDER BY created_at DESC, version",
    )
    .bind(dag_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(DagVersionRow {
                version: row.text("version")?,
                created_at: codec::time_col(row, "created_at")?,
                bundle_name: row.opt_text("bundle_name")?,
                bundle_version: row.opt_text("bundle_version")?,
            })
        })
        .collect()
}

pub(crate) async fn run_changes_since<C: Db + ?Sized>(
    conn: &mut C,
    after: i64,
    limit: u32,
) -> Result<Vec<RunChange>> {
    let rows = query(RUN_CHANGES)
        .bind(after)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(RunChange {
                seq: row.int("seq")?,
                run_pk: row.int("run_pk")?,
            })
        })
        .collect()
}

pub(crate) async fn latest_run_change<C: Db + ?Sized>(conn: &mut C) -> Result<i64> {
    let row = query("SELECT COALESCE(MAX(seq), 0) AS seq FROM run_change")
        .fetch_one(conn)
        .await?;
    row.int("seq")
}
