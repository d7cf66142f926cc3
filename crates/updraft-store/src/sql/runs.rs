//! DAG runs: creation with their task instances, lookups, state changes, deletion.

use chrono::{DateTime, Utc};
use updraft_core::{RunState, TaskState};

use super::codec::{self, StoreRow, run_columns};
use super::{Db, Dialect, is_unique_violation, query};
use crate::{NewRun, NewTi, NewestRunsFilter, Result, RunRow, StoreError};

/// The run (state `queued`) and its task instances (state `none`), inside the caller's
/// transaction. The run reads its files from its DAG's source at the revision the DAG was last
/// loaded from (`bundle_version`; NULL for the plain DAGs folder): the load its definition
/// comes from, so definition and files agree even while a newer revision is synced but not
/// loaded yet, or fails to load.
pub(crate) async fn create<C: Db + ?Sized>(
    conn: &mut C,
    run: &NewRun,
    tis: &[NewTi],
    now: DateTime<Utc>,
) -> Result<RunRow> {
    ensure_version_exists(conn, &run.dag_id, &run.version).await?;
    ensure_logical_date_free(conn, run).await?;
    let row = insert_run(conn, run, now).await?;
    for ti in tis {
        insert_ti(conn, &row, ti).await?;
    }
    Ok(row)
}

/// A DAG has at most one run per logical date, whatever the run ids (Airflow's unique
/// `(dag_id, logical_date)`).
async fn ensure_logical_date_free<C: Db + ?Sized>(conn: &mut C, run: &NewRun) -> Result<()> {
    let taken = query("SELECT run_id FROM dag_run WHERE dag_id = $1 AND logical_date = $2 LIMIT 1")
        .bind(&run.dag_id)
        .bind(run.logical_date)
        .fetch_optional(conn)
        .await?;
    match taken {
        Some(row) => Err(StoreError::Conflict(format!(
            "DAG {} already has a run at logical date {}: {}",
            run.dag_id,
            run.logical_date.to_rfc3339(),
            row.text("run_id")?
        ))),
        None => Ok(()),
    }
}

async fn ensure_version_exists<C: Db + ?Sized>(
    conn: &mut C,
    dag_id: &str,
    version: &str,
) -> Result<()> {
    let found = query("SELECT 1 FROM dag_version WHERE dag_id = $1 AND version = $2")
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

async fn insert_run<C: Db + ?Sized>(
    conn: &mut C,
    run: &NewRun,
    now: DateTime<Utc>,
) -> Result<RunRow> {
    let inserted = query(concat!(
        "INSERT INTO dag_run (dag_id, tenant, run_id, run_type, state, version, logical_date,
             data_interval_start, data_interval_end, conf, queued_at, bundle_version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
                 (SELECT bundle_version FROM dag WHERE dag_id = $1))
         RETURNING ",
        run_columns!()
    ))
    .bind(&run.dag_id)
    .bind(&run.tenant)
    .bind(&run.run_id)
    .bind(run.run_type.as_str())
    .bind(RunState::Queued.as_str())
    .bind(&run.version)
    .bind(run.logical_date)
    .bind(run.data_interval_start)
    .bind(run.data_interval_end)
    .bind(codec::to_json(&run.conf)?)
    .bind(now)
    .fetch_one(conn)
    .await;
    match inserted {
        Ok(row) => codec::run_row(&row),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "DAG {} already has a run with run_id {}",
            run.dag_id, run.run_id
        ))),
        Err(e) => Err(e.into()),
    }
}

async fn insert_ti<C: Db + ?Sized>(conn: &mut C, run: &RunRow, ti: &NewTi) -> Result<()> {
    let inserted = query(
        "INSERT INTO task_instance (run_pk, task_id, tenant, dag_id, run_id, logical_date, state,
             try_number, max_tries, tries_budget, pool, pool_slots, priority_weight)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8, $9, $10, $11)",
    )
    .bind(run.id)
    .bind(&ti.task_id)
    .bind(&run.tenant)
    .bind(&run.dag_id)
    .bind(&run.run_id)
    .bind(run.logical_date)
    .bind(TaskState::None.as_str())
    .bind(ti.max_tries)
    .bind(&ti.pool)
    .bind(ti.pool_slots)
    .bind(ti.priority_weight)
    .execute(conn)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "task {} listed twice for run {}",
            ti.task_id, run.run_id
        ))),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn by_run_id<C: Db + ?Sized>(
    conn: &mut C,
    dag_id: &str,
    run_id: &str,
) -> Result<Option<RunRow>> {
    let row = query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM dag_run WHERE dag_id = $1 AND run_id = $2"
    ))
    .bind(dag_id)
    .bind(run_id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(codec::run_row).transpose()
}

pub(crate) async fn by_pk<C: Db + ?Sized>(conn: &mut C, run_pk: i64) -> Result<Option<RunRow>> {
    let row = query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM dag_run WHERE id = $1"
    ))
    .bind(run_pk)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(codec::run_row).transpose()
}

/// `SELECT` of runs matching `where_`, newest (greatest logical date) first, `LIMIT $limit`
/// last. `order` is `logical_date`, or `+logical_date` to keep SQLite off that column's index.
fn runs_where(where_: &str, order: &str, limit: usize) -> String {
    format!(
        concat!(
            "SELECT ",
            run_columns!(),
            " FROM dag_run {} ORDER BY {} DESC, id DESC LIMIT ${}"
        ),
        where_, order, limit
    )
}

/// The statement [`filtered`] runs for a filter with (or without) a DAG and states.
pub(crate) fn filtered_sql(dialect: Dialect, dag: bool, states: bool) -> String {
    match (dag, states) {
        (true, true) => runs_where(
            &format!("WHERE dag_id = $1 AND {}", dialect.in_texts("state", 2)),
            "+logical_date",
            3,
        ),
        (true, false) => runs_where("WHERE dag_id = $1", "logical_date", 2),
        (false, true) => runs_where(
            &format!("WHERE {}", dialect.in_texts("state", 1)),
            "logical_date",
            2,
        ),
        (false, false) => runs_where("", "logical_date", 1),
    }
}

/// Newest (greatest logical date) first; an empty `states` means any state.
///
/// One statement per filter shape, so each can use its index: an `x IS NULL OR` catch-all
/// would scan the table. With both a DAG and states, `+logical_date` keeps the planner on
/// `(dag_id, state)` instead of walking the DAG's whole history in date order.
pub(crate) async fn filtered<C: Db + ?Sized>(
    conn: &mut C,
    filter: &NewestRunsFilter,
) -> Result<Vec<RunRow>> {
    let sql = filtered_sql(
        C::DIALECT,
        filter.dag_id.is_some(),
        !filter.states.is_empty(),
    );
    let mut q = query(sql);
    if let Some(dag_id) = &filter.dag_id {
        q = q.bind(dag_id);
    }
    if !filter.states.is_empty() {
        q = q.bind(super::Arg::Texts(
            filter
                .states
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
        ));
    }
    let rows = q
        .bind(C::DIALECT.limit(filter.limit))
        .fetch_all(conn)
        .await?;
    codec::all(&rows, codec::run_row)
}

pub(crate) async fn latest_scheduled<C: Db + ?Sized>(
    conn: &mut C,
    dag_id: &str,
) -> Result<Option<RunRow>> {
    let row = query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM dag_run
         WHERE dag_id = $1 AND run_type IN ('scheduled', 'backfill')
         ORDER BY data_interval_end DESC, data_interval_start DESC, id DESC
         LIMIT 1"
    ))
    .bind(dag_id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(codec::run_row).transpose()
}

/// `start_date` is set on first entering `running`; `end_date` is set on finishing (kept when
/// the run was already in that finished state) and cleared otherwise; `queued_at` moves when
/// the run comes back to `queued`. Unknown run: [`StoreError::NotFound`].
pub(crate) async fn set_state<C: Db + ?Sized>(
    conn: &mut C,
    run_pk: i64,
    state: RunState,
    now: DateTime<Utc>,
) -> Result<()> {
    let done = query(
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
    .bind(now)
    .bind(state.is_finished())
    .bind(run_pk)
    .execute(conn)
    .await?;
    if done == 0 {
        return Err(StoreError::NotFound(format!("run {run_pk}")));
    }
    Ok(())
}

/// Whether the run exists, locking its row until the transaction ends where rows can be
/// locked (PostgreSQL's `FOR UPDATE`; SQLite's `BEGIN IMMEDIATE` holds the whole database). A
/// transaction that changes a run's task instances and its row takes this lock first, so it
/// locks in the same order as `scheduling::evaluate_runs` (run, then instances) and the two
/// cannot deadlock.
pub(crate) async fn lock<C: Db + ?Sized>(conn: &mut C, run_pk: i64) -> Result<bool> {
    let sql = format!(
        "SELECT 1 FROM dag_run WHERE id = $1{}",
        C::DIALECT.for_update()
    );
    let found = query(sql).bind(run_pk).fetch_optional(conn).await?;
    Ok(found.is_some())
}

/// Task instances and tries go with the run (`ON DELETE CASCADE`).
pub(crate) async fn delete<C: Db + ?Sized>(conn: &mut C, run_pk: i64) -> Result<bool> {
    let done = query("DELETE FROM dag_run WHERE id = $1")
        .bind(run_pk)
        .execute(conn)
        .await?;
    Ok(done > 0)
}
