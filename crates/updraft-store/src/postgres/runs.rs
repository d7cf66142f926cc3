//! DAG runs: creation with their task instances, lookups, state changes, deletion.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use sqlx::postgres::PgPool;
use updraft_core::{RunState, TaskState};

use super::codec::{self, run_columns, ts};
use crate::{NewRun, NewTi, Result, RunFilter, RunRow, StoreError};

/// One transaction: the run (state `queued`) and its task instances (state `none`).
pub(super) async fn create(
    pool: &PgPool,
    run: &NewRun,
    tis: &[NewTi],
    now: DateTime<Utc>,
) -> Result<RunRow> {
    let mut tx = pool.begin().await?;
    ensure_version_exists(&mut tx, &run.dag_id, &run.version).await?;
    ensure_logical_date_free(&mut tx, run).await?;
    let row = insert_run(&mut tx, run, now).await?;
    for ti in tis {
        insert_ti(&mut tx, &row, ti).await?;
    }
    tx.commit().await?;
    Ok(row)
}

/// A DAG has at most one run per logical date, whatever the run ids (Airflow's unique
/// `(dag_id, logical_date)`).
async fn ensure_logical_date_free(conn: &mut PgConnection, run: &NewRun) -> Result<()> {
    let taken: Option<(String,)> = codec::query_as(
        "SELECT run_id FROM dag_run WHERE dag_id = $1 AND logical_date = $2 LIMIT 1",
    )
    .bind(&run.dag_id)
    .bind(ts(run.logical_date))
    .fetch_optional(conn)
    .await?;
    match taken {
        Some((run_id,)) => Err(StoreError::Conflict(format!(
            "DAG {} already has a run at logical date {}: {run_id}",
            run.dag_id,
            run.logical_date.to_rfc3339()
        ))),
        None => Ok(()),
    }
}

async fn ensure_version_exists(conn: &mut PgConnection, dag_id: &str, version: &str) -> Result<()> {
    let found = codec::query("SELECT 1 FROM dag_version WHERE dag_id = $1 AND version = $2")
        .bind(dag_id)
        .bind(version)
        .fetch_optional(conn)
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(format!(
            "version {version} of DAG {dag_id}"
        ))),
    }
}

async fn insert_run(conn: &mut PgConnection, run: &NewRun, now: DateTime<Utc>) -> Result<RunRow> {
    let inserted = codec::query(concat!(
        "INSERT INTO dag_run (dag_id, tenant, run_id, run_type, state, version, logical_date,
             data_interval_start, data_interval_end, conf, queued_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         RETURNING ",
        run_columns!()
    ))
    .bind(&run.dag_id)
    .bind(&run.tenant)
    .bind(&run.run_id)
    .bind(run.run_type.as_str())
    .bind(RunState::Queued.as_str())
    .bind(&run.version)
    .bind(ts(run.logical_date))
    .bind(ts(run.data_interval_start))
    .bind(ts(run.data_interval_end))
    .bind(codec::to_json(&run.conf)?)
    .bind(ts(now))
    .fetch_one(conn)
    .await;
    match inserted {
        Ok(row) => codec::run_row(&row),
        Err(e) if codec::is_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "DAG {} already has a run with run_id {}",
            run.dag_id, run.run_id
        ))),
        Err(e) => Err(e.into()),
    }
}

async fn insert_ti(conn: &mut PgConnection, run: &RunRow, ti: &NewTi) -> Result<()> {
    let inserted = codec::query(
        "INSERT INTO task_instance (run_pk, task_id, tenant, dag_id, run_id, logical_date, state,
             try_number, max_tries, tries_budget, pool, pool_slots, priority_weight)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8, $9, $10, $11)",
    )
    .bind(run.id)
    .bind(&ti.task_id)
    .bind(&run.tenant)
    .bind(&run.dag_id)
    .bind(&run.run_id)
    .bind(ts(run.logical_date))
    .bind(TaskState::None.as_str())
    .bind(i64::from(ti.max_tries))
    .bind(&ti.pool)
    .bind(i64::from(ti.pool_slots))
    .bind(ti.priority_weight)
    .execute(conn)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if codec::is_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "task {} listed twice for run {}",
            ti.task_id, run.run_id
        ))),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn by_run_id(
    conn: &mut PgConnection,
    dag_id: &str,
    run_id: &str,
) -> Result<Option<RunRow>> {
    let row = codec::query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM dag_run WHERE dag_id = $1 AND run_id = $2"
    ))
    .bind(dag_id)
    .bind(run_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(codec::run_row).transpose()
}

pub(super) async fn by_pk<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    run_pk: i64,
) -> Result<Option<RunRow>> {
    let row = codec::query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM dag_run WHERE id = $1"
    ))
    .bind(run_pk)
    .fetch_optional(executor)
    .await?;
    row.as_ref().map(codec::run_row).transpose()
}

/// `SELECT` of runs matching `$where`, newest (greatest logical date) first, `LIMIT ?` last.
macro_rules! runs_where {
    ($where:literal, $order:literal, $limit:literal) => {
        concat!(
            "SELECT ",
            run_columns!(),
            " FROM dag_run ",
            $where,
            " ORDER BY ",
            $order,
            " DESC, id DESC LIMIT $",
            $limit
        )
    };
}

pub(super) const RUNS_OF_DAG_IN_STATES: &str = runs_where!(
    "WHERE dag_id = $1 AND state IN (SELECT jsonb_array_elements_text($2::jsonb))",
    "+logical_date",
    "3"
);
pub(super) const RUNS_OF_DAG: &str = runs_where!("WHERE dag_id = $1", "logical_date", "2");
pub(super) const RUNS_IN_STATES: &str = runs_where!(
    "WHERE state IN (SELECT jsonb_array_elements_text($1::jsonb))",
    "logical_date",
    "2"
);
pub(super) const ALL_RUNS: &str = runs_where!("", "logical_date", "1");

/// Newest (greatest logical date) first; an empty `states` means any state.
///
/// One statement per filter shape, so each can use its index: an `x IS NULL OR` catch-all
/// would scan the table. With both a DAG and states, `+logical_date` keeps the planner on
/// `(dag_id, state)` instead of walking the DAG's whole history in date order.
pub(super) async fn filtered(conn: &mut PgConnection, filter: &RunFilter) -> Result<Vec<RunRow>> {
    let states = if filter.states.is_empty() {
        None
    } else {
        let names: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
        Some(codec::to_json(&names)?)
    };
    let sql = match (filter.dag_id.is_some(), states.is_some()) {
        (true, true) => RUNS_OF_DAG_IN_STATES,
        (true, false) => RUNS_OF_DAG,
        (false, true) => RUNS_IN_STATES,
        (false, false) => ALL_RUNS,
    };
    let mut query = codec::query(sql);
    if let Some(dag_id) = &filter.dag_id {
        query = query.bind(dag_id);
    }
    if let Some(states) = states {
        query = query.bind(states);
    }
    // PostgreSQL reads `LIMIT NULL` as "no limit".
    let rows = query
        .bind(filter.limit.map(i64::from))
        .fetch_all(&mut *conn)
        .await?;
    codec::all(&rows, codec::run_row)
}

pub(super) async fn latest_scheduled(
    conn: &mut PgConnection,
    dag_id: &str,
) -> Result<Option<RunRow>> {
    let row = codec::query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM dag_run
         WHERE dag_id = $1 AND run_type IN ('scheduled', 'backfill')
         ORDER BY data_interval_end DESC, data_interval_start DESC, id DESC
         LIMIT 1"
    ))
    .bind(dag_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(codec::run_row).transpose()
}

/// `start_date` is set on first entering `running`; `end_date` is set on finishing (kept when
/// the run was already in that finished state) and cleared otherwise; `queued_at` moves when
/// the run comes back to `queued`.
pub(super) async fn set_state<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    run_pk: i64,
    state: RunState,
    now: DateTime<Utc>,
) -> Result<()> {
    let done = codec::query(
        "UPDATE dag_run SET
             state = $1,
             start_date = CASE WHEN $1 = 'running' THEN COALESCE(start_date, $2) ELSE start_date END,
             end_date = CASE
                 WHEN $3 AND state = $1 THEN COALESCE(end_date, $2)
                 WHEN $3 THEN $2
                 ELSE NULL END,
             queued_at = CASE WHEN $1 = 'queued' AND state <> 'queued' THEN $2 ELSE queued_at END
         WHERE id = $4",
    )
    .bind(state.as_str())
    .bind(ts(now))
    .bind(state.is_finished())
    .bind(run_pk)
    .execute(executor)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("run {run_pk}")));
    }
    Ok(())
}

/// Lock the run's row until the transaction ends (`FOR UPDATE`); false when there is no such
/// run. A transaction that changes a run's task instances and its row takes this lock first,
/// so it locks in the same order as `scheduling::evaluate_runs` (run, then instances) and the
/// two cannot deadlock.
pub(super) async fn lock(conn: &mut PgConnection, run_pk: i64) -> Result<bool> {
    let found = codec::query("SELECT 1 FROM dag_run WHERE id = $1 FOR UPDATE")
        .bind(run_pk)
        .fetch_optional(conn)
        .await?;
    Ok(found.is_some())
}

/// Task instances and tries go with the run (`ON DELETE CASCADE`).
pub(super) async fn delete(conn: &mut PgConnection, run_pk: i64) -> Result<bool> {
    let done = codec::query("DELETE FROM dag_run WHERE id = $1")
        .bind(run_pk)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() > 0)
}
