//! Task instances and their try history, one instance at a time. (The batched statements of
//! the hot path — queueing, applying transitions, recording reports — stay with each backend.)
//!
//! Every change is a conditional `UPDATE` (on the expected state, and for a try's own changes
//! on its `try_number`), so a decision made on stale data does not overwrite newer state.
//!
//! The `task_try` row of the current try mirrors the instance from the moment the try is
//! queued ([`record_try`] copies it after each change that concerns the try), so the history
//! holds finished tries and the current one. A try cut short by `clear_task_instances` keeps the
//! state it was in, with `end_date` set to the time of the clear.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use updraft_core::TaskState;
use updraft_core::evaluate::{EndedInstances, TiSnapshot};

use super::codec::{self, StoreRow, ti_columns};
use super::{Arg, Db, Dialect, Query, query, runs};
use crate::{ActiveCounts, Result, ScheduledSkip, StoreError, TiKey, TiRow, TryRow};

/// Ordered by `task_id`.
pub(crate) async fn of_run<C: Db + ?Sized>(conn: &mut C, run_pk: i64) -> Result<Vec<TiRow>> {
    let rows = query(concat!(
        "SELECT ",
        ti_columns!(),
        " FROM task_instance WHERE run_pk = $1 ORDER BY task_id, map_index"
    ))
    .bind(run_pk)
    .fetch_all(conn)
    .await?;
    codec::all(&rows, codec::ti_row)
}

pub(crate) async fn one<C: Db + ?Sized>(conn: &mut C, key: &TiKey) -> Result<Option<TiRow>> {
    let row = query(concat!(
        "SELECT ",
        ti_columns!(),
        " FROM task_instance WHERE run_pk = $1 AND task_id = $2 AND map_index = $3"
    ))
    .bind(key.run_pk)
    .bind(&key.task_id)
    .bind(key.map_index)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(codec::ti_row).transpose()
}

/// Whether moving from `old` to `new` ends something: a terminal state, or leaving a try.
pub(crate) fn ends(old: TaskState, new: TaskState) -> bool {
    new.is_terminal() || (old.is_active() && !new.is_active())
}

/// Copy the instance's current try into the history (insert or refresh).
async fn record_try<C: Db + ?Sized>(conn: &mut C, key: &TiKey) -> Result<()> {
    query(
        "INSERT INTO task_try (run_pk, task_id, map_index, try_number, tenant, state,
             start_date, end_date, hostname)
         SELECT run_pk, task_id, map_index, try_number, tenant, state, start_date, end_date,
             hostname
         FROM task_instance
         WHERE run_pk = $1 AND task_id = $2 AND map_index = $3 AND try_number > 0
         ON CONFLICT (run_pk, task_id, map_index, try_number) DO UPDATE SET
             state = excluded.state,
             start_date = excluded.start_date,
             end_date = excluded.end_date,
             hostname = excluded.hostname",
    )
    .bind(key.run_pk)
    .bind(&key.task_id)
    .bind(key.map_index)
    .execute(conn)
    .await?;
    Ok(())
}

/// The statement of [`scheduled`]: `$1` limit, `$2` offset, `$3` DAGs and `$4` pools left out.
pub(crate) fn scheduled_sql(dialect: Dialect) -> String {
    format!(
        concat!(
            "SELECT ",
            ti_columns!(),
            " FROM {}
             WHERE state = 'scheduled'
               AND run_pk IN (SELECT id FROM dag_run WHERE state = 'running')
               AND {}
               AND {}
             ORDER BY priority_weight DESC, logical_date ASC, run_pk ASC, task_id ASC,
                      map_index ASC
             LIMIT $1 OFFSET $2"
        ),
        dialect.indexed_by("task_instance", "task_instance_scheduled_order"),
        dialect.not_in_texts("dag_id", 3),
        dialect.not_in_texts("pool", 4)
    )
}

/// `scheduled` instances of `running` runs: highest priority first, then oldest logical date.
pub(crate) async fn scheduled<C: Db + ?Sized>(
    conn: &mut C,
    limit: u32,
    offset: u32,
    skip: &ScheduledSkip,
) -> Result<Vec<TiRow>> {
    let rows = query(scheduled_sql(C::DIALECT))
        .bind(limit)
        .bind(offset)
        .bind(Arg::Texts(skip.dags.clone()))
        .bind(Arg::Texts(skip.pools.clone()))
        .fetch_all(conn)
        .await?;
    codec::all(&rows, codec::ti_row)
}

pub(crate) const ACTIVE_COUNTS: &str = "
    SELECT pool, dag_id, task_id, COUNT(*) AS tis, CAST(SUM(pool_slots) AS BIGINT) AS slots
    FROM task_instance WHERE state IN ('queued', 'running')
    GROUP BY pool, dag_id, task_id";

pub(crate) async fn active_counts<C: Db + ?Sized>(conn: &mut C) -> Result<ActiveCounts> {
    let rows = query(ACTIVE_COUNTS).fetch_all(conn).await?;
    let mut counts = ActiveCounts::default();
    for row in &rows {
        let tis = row.int("tis")?;
        *counts.per_pool.entry(row.text("pool")?).or_default() += row.int("slots")?;
        let dag_id = row.text("dag_id")?;
        *counts
            .per_task
            .entry((dag_id.clone(), row.text("task_id")?))
            .or_default() += tis;
        *counts.per_dag.entry(dag_id).or_default() += tis;
        counts.total += tis;
    }
    Ok(counts)
}

/// See [`crate::SchedulerStore::mark_running`]; in the caller's transaction.
pub(crate) async fn mark_running_in<C: Db + ?Sized>(
    conn: &mut C,
    key: &TiKey,
    try_number: u32,
    pid: Option<i64>,
    hostname: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let update = query(
        "UPDATE task_instance SET state = 'running', start_date = $1, pid = $2, hostname = $3
         WHERE run_pk = $4 AND task_id = $5 AND try_number = $6 AND map_index = $7
           AND state = 'queued'",
    )
    .bind(now)
    .bind(pid)
    .bind(hostname);
    change_try(conn, update, key, try_number).await
}

/// Run `update`, a change of a try whose `$4`, `$5`, `$6` and `$7` are the instance's
/// `run_pk`, `task_id`, `try_number` and `map_index`; if it applied, refresh the try in the
/// history.
async fn change_try<C: Db + ?Sized>(
    conn: &mut C,
    update: Query,
    key: &TiKey,
    try_number: u32,
) -> Result<bool> {
    let done = update
        .bind(key.run_pk)
        .bind(&key.task_id)
        .bind(try_number)
        .bind(key.map_index)
        .execute(&mut *conn)
        .await?;
    let applied = done > 0;
    if applied {
        record_try(conn, key).await?;
    }
    Ok(applied)
}

/// The states a try may finish in; any other is [`StoreError::Invalid`].
pub(crate) fn check_finish_state(new: TaskState) -> Result<()> {
    if matches!(
        new,
        TaskState::Success
            | TaskState::Failed
            | TaskState::Skipped
            | TaskState::UpForRetry
            | TaskState::UpForReschedule
    ) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "a try cannot finish as `{new}`"
        )))
    }
}

/// See [`crate::SchedulerStore::finish_try`]; in the caller's transaction, `new` already checked.
pub(crate) async fn finish_try_in<C: Db + ?Sized>(
    conn: &mut C,
    key: &TiKey,
    try_number: u32,
    new: TaskState,
    retry_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let retry_at = retry_at.filter(|_| keeps_retry_at(new));
    let update = query(
        "UPDATE task_instance SET state = $1, end_date = $2, retry_at = $3
         WHERE run_pk = $4 AND task_id = $5 AND try_number = $6 AND map_index = $7
           AND state IN ('queued', 'running')",
    )
    .bind(new.as_str())
    .bind(now)
    .bind(retry_at);
    let applied = change_try(conn, update, key, try_number).await?;
    if applied && new == TaskState::UpForReschedule {
        super::reschedules::record_one(conn, key, try_number, retry_at.unwrap_or(now), now).await?;
    }
    Ok(applied)
}

/// Whether a try finishing in `new` keeps its `retry_at`: the retry time of `up_for_retry`,
/// the next poke of `up_for_reschedule`.
pub(crate) fn keeps_retry_at(new: TaskState) -> bool {
    matches!(new, TaskState::UpForRetry | TaskState::UpForReschedule)
}

/// The skips of the `Finished` reports among `reports` that applied (`applied`, per report):
/// each instance named in a report's `skip`, of the report's run, still `none` or `scheduled`
/// becomes `skipped`, started and ended at the report's time (Airflow's `SkipMixin`). One
/// statement per report with skips, none for the others: a try that does not branch adds
/// nothing. Returns how many instances were skipped.
pub(crate) async fn apply_skips<C: Db + ?Sized>(
    conn: &mut C,
    reports: &[crate::TryReport],
    applied: &[bool],
) -> Result<u64> {
    let mut skipped = 0;
    for (report, _) in reports.iter().zip(applied).filter(|(_, applied)| **applied) {
        let crate::TryReport::Finished { key, skip, at, .. } = report else {
            continue;
        };
        if skip.is_empty() {
            continue;
        }
        let sql = format!(
            "UPDATE task_instance SET state = 'skipped', start_date = $1, end_date = $1
             WHERE run_pk = $2 AND {} AND state IN ('none', 'scheduled')",
            C::DIALECT.in_texts("task_id", 3)
        );
        skipped += query(sql)
            .bind(*at)
            .bind(key.run_pk)
            .bind(Arg::Texts(skip.clone()))
            .execute(&mut *conn)
            .await?;
    }
    Ok(skipped)
}

/// Unconditional, in the caller's transaction. `end_date = now` when the new state is terminal
/// or ends a live try; a live try's history row takes the forced state.
pub(crate) async fn set_state_in<C: Db + ?Sized>(
    conn: &mut C,
    key: &TiKey,
    state: TaskState,
    now: DateTime<Utc>,
) -> Result<bool> {
    let Some(old) = current_state(conn, key).await? else {
        return Ok(false);
    };
    query(
        "UPDATE task_instance SET
             state = $1,
             end_date = CASE WHEN $2 THEN $3 ELSE end_date END,
             retry_at = CASE WHEN $1 = 'up_for_retry' THEN retry_at ELSE NULL END
         WHERE run_pk = $4 AND task_id = $5 AND map_index = $6",
    )
    .bind(state.as_str())
    .bind(ends(old, state))
    .bind(now)
    .bind(key.run_pk)
    .bind(&key.task_id)
    .bind(key.map_index)
    .execute(&mut *conn)
    .await?;
    if old.is_active() {
        record_try(conn, key).await?;
    }
    Ok(true)
}

/// The instance's state, its row locked where rows can be locked.
async fn current_state<C: Db + ?Sized>(conn: &mut C, key: &TiKey) -> Result<Option<TaskState>> {
    let sql = format!(
        "SELECT state FROM task_instance WHERE run_pk = $1 AND task_id = $2 AND map_index = $3{}",
        C::DIALECT.for_update()
    );
    let row = query(sql)
        .bind(key.run_pk)
        .bind(&key.task_id)
        .bind(key.map_index)
        .fetch_optional(conn)
        .await?;
    row.as_ref()
        .map(|r| codec::enum_col(r, "state"))
        .transpose()
}

/// In the caller's transaction: reset the named instances to `none` with a fresh try budget
/// and, if any was cleared, put the run back to `queued`. Unknown task ids are ignored. The
/// run's row is locked first (see [`runs::lock`]).
pub(crate) async fn clear<C: Db + ?Sized>(
    conn: &mut C,
    run_pk: i64,
    task_ids: &[String],
    now: DateTime<Utc>,
) -> Result<usize> {
    runs::lock(conn, run_pk).await?;
    let mut cleared = 0;
    for task_id in task_ids {
        if clear_one(conn, run_pk, task_id, now).await? {
            cleared += 1;
        }
    }
    if cleared > 0 {
        requeue_run(conn, run_pk, now).await?;
    }
    Ok(cleared)
}

async fn clear_one<C: Db + ?Sized>(
    conn: &mut C,
    run_pk: i64,
    task_id: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    // A live try is abandoned: its history row keeps its state and gets an end.
    query(
        "UPDATE task_try SET end_date = $1
         WHERE run_pk = $2 AND task_id = $3 AND end_date IS NULL
           AND EXISTS (SELECT 1 FROM task_instance ti
                       WHERE ti.run_pk = task_try.run_pk AND ti.task_id = task_try.task_id
                         AND ti.map_index = task_try.map_index
                         AND ti.try_number = task_try.try_number
                         AND ti.state IN ('queued', 'running'))",
    )
    .bind(now)
    .bind(run_pk)
    .bind(task_id)
    .execute(&mut *conn)
    .await?;
    super::reschedules::delete(&mut *conn, run_pk, task_id).await?;
    collapse_mapped(conn, run_pk, task_id).await?;
    let done = query(
        "UPDATE task_instance SET
             state = 'none', max_tries = try_number + tries_budget,
             queued_at = NULL, start_date = NULL, end_date = NULL, retry_at = NULL,
             pid = NULL, hostname = NULL, queued_by_job_id = NULL
         WHERE run_pk = $1 AND task_id = $2",
    )
    .bind(run_pk)
    .bind(task_id)
    .execute(conn)
    .await?;
    Ok(done > 0)
}

/// A cleared mapped task expands again when it runs again (its values may have changed), as
/// in Airflow: its instances (with their tries and XComs) give way to one placeholder, map
/// index -1, whose try number continues from the highest of theirs so that no log is
/// overwritten. Nothing happens to an unexpanded task.
async fn collapse_mapped<C: Db + ?Sized>(conn: &mut C, run_pk: i64, task_id: &str) -> Result<()> {
    let inserted = query(
        "INSERT INTO task_instance (run_pk, task_id, map_index, tenant, dag_id, run_id,
             logical_date, state, try_number, max_tries, tries_budget, pool, pool_slots,
             priority_weight)
         SELECT run_pk, task_id, -1, tenant, dag_id, run_id, logical_date, 'none',
             (SELECT MAX(try_number) FROM task_instance WHERE run_pk = $1 AND task_id = $2),
             max_tries, tries_budget, pool, pool_slots, priority_weight
         FROM task_instance WHERE run_pk = $1 AND task_id = $2 AND map_index = 0",
    )
    .bind(run_pk)
    .bind(task_id)
    .execute(&mut *conn)
    .await?;
    if inserted > 0 {
        query("DELETE FROM task_instance WHERE run_pk = $1 AND task_id = $2 AND map_index >= 0")
            .bind(run_pk)
            .bind(task_id)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// See [`crate::SchedulerStore::expand_task`]; in the caller's transaction, the run locked.
pub(crate) async fn expand<C: Db + ?Sized>(
    conn: &mut C,
    run_pk: i64,
    task_id: &str,
    count: u32,
) -> Result<bool> {
    if count == 0 {
        return Err(StoreError::Invalid(
            "a task expands to at least one instance".to_owned(),
        ));
    }
    let placeholder = query(
        "UPDATE task_instance SET map_index = 0
         WHERE run_pk = $1 AND task_id = $2 AND map_index = -1 AND state = 'scheduled'",
    )
    .bind(run_pk)
    .bind(task_id)
    .execute(&mut *conn)
    .await?;
    if placeholder == 0 {
        return Ok(false);
    }
    if count > 1 {
        query(
            "WITH RECURSIVE s(i) AS (
                 SELECT CAST(1 AS BIGINT) UNION ALL SELECT i + 1 FROM s WHERE i < $3)
             INSERT INTO task_instance (run_pk, task_id, map_index, tenant, dag_id, run_id,
                 logical_date, state, try_number, max_tries, tries_budget, pool, pool_slots,
                 priority_weight)
             SELECT ti.run_pk, ti.task_id, s.i, ti.tenant, ti.dag_id, ti.run_id,
                 ti.logical_date, ti.state, ti.try_number, ti.max_tries, ti.tries_budget,
                 ti.pool, ti.pool_slots, ti.priority_weight
             FROM task_instance ti CROSS JOIN s
             WHERE ti.run_pk = $1 AND ti.task_id = $2 AND ti.map_index = 0",
        )
        .bind(run_pk)
        .bind(task_id)
        .bind(i64::from(count) - 1)
        .execute(conn)
        .await?;
    }
    Ok(true)
}

/// Puts the run back to `queued`. A finished run also loses its `start_date`, as Airflow's
/// `clear_task_instances` does, so it starts afresh (its `dagrun_timeout` counts from then); a
/// run still going keeps it.
async fn requeue_run<C: Db + ?Sized>(conn: &mut C, run_pk: i64, now: DateTime<Utc>) -> Result<()> {
    query(
        "UPDATE dag_run SET
             state = 'queued', end_date = NULL,
             start_date = CASE WHEN state IN ('success', 'failed') THEN NULL ELSE start_date END,
             queued_at = CASE WHEN state <> 'queued' THEN $1 ELSE queued_at END
         WHERE id = $2",
    )
    .bind(now)
    .bind(run_pk)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn tries<C: Db + ?Sized>(conn: &mut C, key: &TiKey) -> Result<Vec<TryRow>> {
    let rows = query(
        "SELECT run_pk, task_id, map_index, try_number, state, start_date, end_date, hostname
         FROM task_try WHERE run_pk = $1 AND task_id = $2 AND map_index = $3
         ORDER BY try_number",
    )
    .bind(key.run_pk)
    .bind(&key.task_id)
    .bind(key.map_index)
    .fetch_all(conn)
    .await?;
    codec::all(&rows, codec::try_row)
}

/// Live instances whose owning scheduler job is not `running` (or unknown, or unset).
pub(crate) const ORPHANED: &str = concat!(
    "SELECT ",
    ti_columns!(),
    " FROM task_instance
     WHERE state IN ('queued', 'running')
       AND (queued_by_job_id IS NULL
            OR NOT EXISTS (SELECT 1 FROM scheduler_job j
                           WHERE j.id = queued_by_job_id AND j.state = 'running'))
     ORDER BY run_pk, task_id, map_index"
);

pub(crate) async fn orphaned<C: Db + ?Sized>(conn: &mut C) -> Result<Vec<TiRow>> {
    let rows = query(ORPHANED).fetch_all(conn).await?;
    codec::all(&rows, codec::ti_row)
}

/// See [`crate::SchedulerStore::adopt_orphan`].
pub(crate) async fn adopt_orphan<C: Db + ?Sized>(
    conn: &mut C,
    key: &TiKey,
    try_number: u32,
    job_id: i64,
) -> Result<bool> {
    let done = query(
        "UPDATE task_instance SET queued_by_job_id = $1
         WHERE run_pk = $2 AND task_id = $3 AND try_number = $4 AND map_index = $5
           AND state IN ('queued', 'running')
           AND (queued_by_job_id IS NULL
                OR NOT EXISTS (SELECT 1 FROM scheduler_job j
                               WHERE j.id = queued_by_job_id AND j.state = 'running'))",
    )
    .bind(job_id)
    .bind(key.run_pk)
    .bind(&key.task_id)
    .bind(try_number)
    .bind(key.map_index)
    .execute(conn)
    .await?;
    Ok(done == 1)
}

/// One query, so the run found and its instances come from the same snapshot.
pub(crate) async fn previous_run_states<C: Db + ?Sized>(
    conn: &mut C,
    dag_id: &str,
    logical_date: DateTime<Utc>,
) -> Result<Option<HashMap<String, TaskState>>> {
    let rows = query(
        "SELECT r.id, ti.task_id, ti.state
         FROM (SELECT id FROM dag_run WHERE dag_id = $1 AND logical_date < $2
               ORDER BY logical_date DESC, id DESC LIMIT 1) r
         LEFT JOIN task_instance ti ON ti.run_pk = r.id",
    )
    .bind(dag_id)
    .bind(logical_date)
    .fetch_all(conn)
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut states = HashMap::with_capacity(rows.len());
    for row in &rows {
        // A run without task instances yields one row of NULLs.
        if let Some(task_id) = row.opt_text("task_id")? {
            states.insert(task_id, codec::enum_col(row, "state")?);
        }
    }
    Ok(Some(states))
}

/// The snapshots of the instances of the runs in `run_pks`, by run, each ordered by
/// `task_id`: only the columns the core reads, in one query.
pub(crate) async fn snapshots<C: Db + ?Sized>(
    conn: &mut C,
    run_pks: &[i64],
) -> Result<HashMap<i64, Vec<TiSnapshot>>> {
    let sql = format!(
        "SELECT run_pk, task_id, map_index, state, try_number, retry_at FROM task_instance
         WHERE {}
         ORDER BY run_pk, task_id, map_index",
        C::DIALECT.in_ints("run_pk", 1)
    );
    let rows = query(sql)
        .bind(Arg::Ints(run_pks.to_vec()))
        .fetch_all(conn)
        .await?;
    let mut by_run: HashMap<i64, Vec<TiSnapshot>> = HashMap::new();
    for row in &rows {
        by_run
            .entry(row.int("run_pk")?)
            .or_default()
            .push(snapshot(row)?);
    }
    Ok(by_run)
}

fn snapshot<R: StoreRow>(row: &R) -> Result<TiSnapshot> {
    Ok(TiSnapshot {
        task_id: row.text("task_id")?,
        map_index: codec::map_index_col(row)?,
        state: codec::enum_col(row, "state")?,
        try_number: codec::u32_col(row, "try_number")?,
        retry_at: codec::opt_time_col(row, "retry_at")?,
    })
}

/// The states an instance ends in (the core's `TaskState::is_terminal`), as SQL.
const ENDED_STATES: &str = "'success', 'failed', 'skipped', 'upstream_failed', 'removed'";

/// What a focused evaluation reads of `task_ids` in run `run_pk`: the snapshots of their
/// unmapped instances and of their expanded instances that have not ended, ordered by
/// `task_id` and map index, and the ended expanded instances counted by task and state. One
/// statement over one primary-key range per task id; an expanded task's ended instances
/// cost a count, not a row (they come back as rows of map index -2 whose `n` is the count).
pub(crate) async fn focused_snapshots<C: Db + ?Sized>(
    conn: &mut C,
    run_pk: i64,
    task_ids: &[String],
) -> Result<(Vec<TiSnapshot>, Vec<EndedInstances>)> {
    if task_ids.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let tasks = C::DIALECT.in_texts("task_id", 2);
    let sql = format!(
        "SELECT task_id, map_index, state, try_number, retry_at, 1 AS n FROM task_instance
         WHERE run_pk = $1 AND {tasks}
           AND (map_index < 0 OR state NOT IN ({ENDED_STATES}))
         UNION ALL
         SELECT task_id, {COUNTED} AS map_index, state, 0 AS try_number, NULL AS retry_at,
                COUNT(*) AS n
         FROM task_instance
         WHERE run_pk = $1 AND {tasks}
           AND map_index >= 0 AND state IN ({ENDED_STATES})
         GROUP BY task_id, state
         ORDER BY task_id, map_index"
    );
    let rows = query(sql)
        .bind(run_pk)
        .bind(Arg::Texts(task_ids.to_vec()))
        .fetch_all(conn)
        .await?;
    let mut tis = Vec::with_capacity(rows.len());
    let mut ended = Vec::new();
    for row in &rows {
        if row.int("map_index")? == i64::from(COUNTED) {
            ended.push(EndedInstances {
                task_id: row.text("task_id")?,
                state: codec::enum_col(row, "state")?,
                count: u32::try_from(row.int("n")?).unwrap_or(u32::MAX),
            });
        } else {
            tis.push(snapshot(row)?);
        }
    }
    Ok((tis, ended))
}

/// The map index of [`focused_snapshots`]'s rows that count ended instances.
const COUNTED: i32 = -2;

/// Whether some instance of run `run_pk` is scheduled, queued, running, up_for_retry or
/// up_for_reschedule: one seek in the partial index `task_instance_progressing` (its
/// condition, word for word), then, only when that finds none, the run's instances for a
/// sensor between pokes (`up_for_reschedule` is not in that index).
pub(crate) async fn progressing<C: Db + ?Sized>(conn: &mut C, run_pk: i64) -> Result<bool> {
    let row = query(
        "SELECT run_pk FROM task_instance
         WHERE run_pk = $1 AND state IN ('scheduled', 'queued', 'running', 'up_for_retry')
         UNION ALL
         SELECT run_pk FROM task_instance WHERE run_pk = $1 AND state = 'up_for_reschedule'
         LIMIT 1",
    )
    .bind(run_pk)
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}
