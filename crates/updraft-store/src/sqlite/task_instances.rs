//! Task instances and their try history.
//!
//! Every change is a conditional `UPDATE` (on the expected state, and for a try's own changes
//! on its `try_number`), so a decision made on stale data does not overwrite newer state.
//!
//! The `task_try` row of the current try mirrors the instance from the moment the try is
//! queued ([`record_try`] copies it after each change that concerns the try), so the history
//! holds finished tries and the current one. A try cut short by `clear` keeps the state it was
//! in, with `end_date` set to the time of the clear.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use sqlx::sqlite::SqlitePool;
use updraft_core::TaskState;

use super::codec::{self, opt_ts, ti_columns, ts};
use crate::{ActiveCounts, Result, StoreError, TiKey, TiRow, TiTransition, TryReport, TryRow};

/// Ordered by `task_id`.
pub(super) async fn of_run<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    run_pk: i64,
) -> Result<Vec<TiRow>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        ti_columns!(),
        " FROM task_instance WHERE run_pk = ?1 ORDER BY task_id"
    ))
    .bind(run_pk)
    .fetch_all(executor)
    .await?;
    codec::all(&rows, codec::ti_row)
}

pub(super) async fn one(pool: &SqlitePool, key: &TiKey) -> Result<Option<TiRow>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        ti_columns!(),
        " FROM task_instance WHERE run_pk = ?1 AND task_id = ?2"
    ))
    .bind(key.run_pk)
    .bind(&key.task_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(codec::ti_row).transpose()
}

/// Whether moving from `old` to `new` ends something: a terminal state, or leaving a try.
fn ends(old: TaskState, new: TaskState) -> bool {
    new.is_terminal() || (old.is_active() && !new.is_active())
}

pub(super) async fn apply_transitions(
    pool: &SqlitePool,
    run_pk: i64,
    transitions: &[TiTransition],
    now: DateTime<Utc>,
) -> Result<usize> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let applied = apply_transitions_in(&mut tx, run_pk, transitions, now).await?;
    tx.commit().await?;
    Ok(applied)
}

/// [`apply_transitions`] inside the caller's transaction; returns how many applied.
pub(super) async fn apply_transitions_in(
    conn: &mut SqliteConnection,
    run_pk: i64,
    transitions: &[TiTransition],
    now: DateTime<Utc>,
) -> Result<usize> {
    // A task named twice: only its first transition can apply, as if applied in order.
    let mut seen = std::collections::HashSet::new();
    let batch: Vec<&TiTransition> = transitions
        .iter()
        .filter(|t| seen.insert(t.task_id.as_str()))
        .collect();
    if batch.is_empty() {
        return Ok(0);
    }
    let items: Vec<serde_json::Value> = batch
        .iter()
        .map(|t| {
            serde_json::json!([
                t.task_id,
                t.expected.as_str(),
                t.new.as_str(),
                ends(t.expected, t.new)
            ])
        })
        .collect();
    // The transitions drive the loop, one primary-key lookup each: materialised first,
    // because with `run_pk` a constant SQLite would otherwise scan the run's instances and
    // re-read the whole JSON array for each (quadratic in the run's size). `+ti.state` keeps
    // the state index out of it.
    let changed: Vec<(String,)> = sqlx::query_as(
        "WITH j AS MATERIALIZED (
             SELECT value ->> 0 AS task_id, value ->> 1 AS expected, value ->> 2 AS new_state,
                    value ->> 3 AS ends
             FROM json_each(?1))
         UPDATE task_instance AS ti SET
             state = j.new_state,
             end_date = CASE WHEN j.ends THEN ?3 ELSE ti.end_date END,
             retry_at = CASE WHEN j.new_state = 'up_for_retry' THEN ti.retry_at ELSE NULL END
         FROM j
         WHERE ti.run_pk = ?2 AND ti.task_id = j.task_id AND +ti.state = j.expected
         RETURNING task_id",
    )
    .bind(serde_json::Value::Array(items).to_string())
    .bind(run_pk)
    .bind(ts(now))
    .fetch_all(&mut *conn)
    .await?;
    // Tries that left queued/running are closed in the history.
    let live: std::collections::HashSet<&str> = batch
        .iter()
        .filter(|t| t.expected.is_active())
        .map(|t| t.task_id.as_str())
        .collect();
    let closing: Vec<serde_json::Value> = changed
        .iter()
        .filter(|(task_id,)| live.contains(task_id.as_str()))
        .map(|(task_id,)| serde_json::json!([run_pk, task_id]))
        .collect();
    if !closing.is_empty() {
        record_tries(conn, &serde_json::Value::Array(closing).to_string()).await?;
    }
    Ok(changed.len())
}

/// Copy the instance's current try into the history (insert or refresh).
async fn record_try(conn: &mut SqliteConnection, run_pk: i64, task_id: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO task_try (run_pk, task_id, try_number, tenant, state, start_date, end_date,
             hostname)
         SELECT run_pk, task_id, try_number, tenant, state, start_date, end_date, hostname
         FROM task_instance WHERE run_pk = ?1 AND task_id = ?2 AND try_number > 0
         ON CONFLICT (run_pk, task_id, try_number) DO UPDATE SET
             state = excluded.state,
             start_date = excluded.start_date,
             end_date = excluded.end_date,
             hostname = excluded.hostname",
    )
    .bind(run_pk)
    .bind(task_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// `scheduled` instances of `running` runs: highest priority first, then oldest logical date.
pub(super) async fn scheduled<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    limit: u32,
    offset: u32,
    skip: &crate::ScheduledSkip,
) -> Result<Vec<TiRow>> {
    let rows = sqlx::query(SCHEDULED)
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .bind(serde_json::to_string(&skip.dags).unwrap_or_else(|_| "[]".into()))
        .bind(serde_json::to_string(&skip.pools).unwrap_or_else(|_| "[]".into()))
        .fetch_all(executor)
        .await?;
    codec::all(&rows, codec::ti_row)
}

pub(super) const SCHEDULED: &str = concat!(
    "SELECT ",
    ti_columns!(),
    " FROM task_instance
     WHERE state = 'scheduled'
       AND run_pk IN (SELECT id FROM dag_run WHERE state = 'running')
       AND dag_id NOT IN (SELECT value FROM json_each(?3))
       AND pool NOT IN (SELECT value FROM json_each(?4))
     ORDER BY priority_weight DESC, logical_date ASC, run_pk ASC, task_id ASC
     LIMIT ?1 OFFSET ?2"
);

pub(super) const ACTIVE_COUNTS: &str = "
    SELECT pool, dag_id, COUNT(*) AS tis, SUM(pool_slots) AS slots
    FROM task_instance WHERE state IN ('queued', 'running')
    GROUP BY pool, dag_id";

pub(super) async fn active_counts<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
) -> Result<ActiveCounts> {
    let rows = sqlx::query(ACTIVE_COUNTS).fetch_all(executor).await?;
    let mut counts = ActiveCounts::default();
    for row in &rows {
        let tis: i64 = codec::col(row, "tis")?;
        let slots: i64 = codec::col(row, "slots")?;
        *counts.per_pool.entry(codec::col(row, "pool")?).or_default() += slots;
        *counts
            .per_dag
            .entry(codec::col(row, "dag_id")?)
            .or_default() += tis;
        counts.total += tis;
    }
    Ok(counts)
}

/// `scheduled` → `queued` with a new try owned by job `owner`, for each of `keys` still
/// `scheduled` (others are left alone; `keys` are distinct), recording the new tries. One
/// `UPDATE` and one `INSERT` whatever the number of keys. The caller checks the limits (see
/// `scheduling::queue`). Returns the queued rows in no particular order.
pub(super) async fn queue_many(
    conn: &mut SqliteConnection,
    keys: &[&TiKey],
    owner: i64,
    now: DateTime<Utc>,
) -> Result<Vec<TiRow>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let keys = keys_json(keys.iter().map(|k| (k.run_pk, k.task_id.as_str())))?;
    let rows = sqlx::query(concat!(
        "UPDATE task_instance SET
             state = 'queued', try_number = try_number + 1, queued_at = ?1,
             start_date = NULL, end_date = NULL, retry_at = NULL, pid = NULL, hostname = NULL,
             queued_by_job_id = ?3
         FROM json_each(?2) AS j
         WHERE task_instance.run_pk = json_extract(j.value, '$[0]')
           AND task_instance.task_id = json_extract(j.value, '$[1]')
           AND +task_instance.state = 'scheduled'
         RETURNING ",
        ti_columns!()
    ))
    .bind(ts(now))
    .bind(&keys)
    .bind(owner)
    .fetch_all(&mut *conn)
    .await?;
    let tis = codec::all(&rows, codec::ti_row)?;
    record_tries(conn, &keys).await?;
    Ok(tis)
}

/// `[[run_pk, task_id], ...]`, for [`record_tries`] and `json_each`.
pub(super) fn keys_json<'a>(keys: impl Iterator<Item = (i64, &'a str)>) -> Result<String> {
    codec::to_json(&keys.collect::<Vec<_>>())
}

/// [`record_try`] for each instance of `keys` (as [`keys_json`]), in one statement.
///
/// In the batched statements here, a unary `+` on `state` keeps the planner off the `state`
/// index: lacking statistics it would otherwise scan every instance in that state and, for
/// each, all the keys. With it, the keys drive the loop, each a primary-key lookup.
async fn record_tries(conn: &mut SqliteConnection, keys: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO task_try (run_pk, task_id, try_number, tenant, state, start_date, end_date,
             hostname)
         SELECT ti.run_pk, ti.task_id, ti.try_number, ti.tenant, ti.state, ti.start_date,
             ti.end_date, ti.hostname
         FROM json_each(?1) AS j
         JOIN task_instance AS ti ON ti.run_pk = json_extract(j.value, '$[0]')
                                 AND ti.task_id = json_extract(j.value, '$[1]')
         WHERE ti.try_number > 0
         ON CONFLICT (run_pk, task_id, try_number) DO UPDATE SET
             state = excluded.state,
             start_date = excluded.start_date,
             end_date = excluded.end_date,
             hostname = excluded.hostname",
    )
    .bind(keys)
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn mark_running(
    pool: &SqlitePool,
    key: &TiKey,
    try_number: u32,
    pid: Option<i64>,
    hostname: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let applied = mark_running_in(&mut tx, key, try_number, pid, hostname, now).await?;
    tx.commit().await?;
    Ok(applied)
}

async fn mark_running_in(
    conn: &mut SqliteConnection,
    key: &TiKey,
    try_number: u32,
    pid: Option<i64>,
    hostname: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE task_instance SET state = 'running', start_date = ?1, pid = ?2, hostname = ?3
         WHERE run_pk = ?4 AND task_id = ?5 AND try_number = ?6 AND state = 'queued'",
    )
    .bind(ts(now))
    .bind(pid)
    .bind(hostname)
    .bind(key.run_pk)
    .bind(&key.task_id)
    .bind(i64::from(try_number))
    .execute(&mut *conn)
    .await?;
    let applied = done.rows_affected() > 0;
    if applied {
        record_try(conn, key.run_pk, &key.task_id).await?;
    }
    Ok(applied)
}

pub(super) async fn finish_try(
    pool: &SqlitePool,
    key: &TiKey,
    try_number: u32,
    new: TaskState,
    retry_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<bool> {
    check_finish_state(new)?;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let applied = finish_try_in(&mut tx, key, try_number, new, retry_at, now).await?;
    tx.commit().await?;
    Ok(applied)
}

fn check_finish_state(new: TaskState) -> Result<()> {
    if matches!(
        new,
        TaskState::Success | TaskState::Failed | TaskState::Skipped | TaskState::UpForRetry
    ) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "a try cannot finish as `{new}`"
        )))
    }
}

async fn finish_try_in(
    conn: &mut SqliteConnection,
    key: &TiKey,
    try_number: u32,
    new: TaskState,
    retry_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let retry_at = retry_at.filter(|_| new == TaskState::UpForRetry);
    let done = sqlx::query(
        "UPDATE task_instance SET state = ?1, end_date = ?2, retry_at = ?3
         WHERE run_pk = ?4 AND task_id = ?5 AND try_number = ?6
           AND state IN ('queued', 'running')",
    )
    .bind(new.as_str())
    .bind(ts(now))
    .bind(opt_ts(retry_at))
    .bind(key.run_pk)
    .bind(&key.task_id)
    .bind(i64::from(try_number))
    .execute(&mut *conn)
    .await?;
    let applied = done.rows_affected() > 0;
    if applied {
        record_try(conn, key.run_pk, &key.task_id).await?;
    }
    Ok(applied)
}

/// Three statements whatever the number of reports: every `Started` report in one `UPDATE`,
/// then every `Finished` one in another, then the history of the instances changed.
///
/// Same outcome as applying the reports one by one in order: a try's `Started` and
/// `Finished` are the only reports that change it, and the instance is `queued` at a try
/// before it is `running` at it, so only these orders matter, for one try:
/// - a second `Started` (or `Finished`) never applies: the first either applied and moved the
///   instance on, or found it in no state the second could accept;
/// - a `Started` after the try's `Finished` never applies (the `Finished` either ended the
///   try, or found it neither queued nor running), so it is left out;
/// - a `Finished` after the try's `Started` sees the `Started` applied, as the `Started`
///   batch runs first.
pub(super) async fn record_reports(
    pool: &SqlitePool,
    reports: &[TryReport],
    hostname: &str,
) -> Result<Vec<bool>> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let applied = record_reports_in(&mut tx, reports, hostname).await?;
    tx.commit().await?;
    Ok(applied)
}

/// [`record_reports`] inside the caller's transaction.
pub(super) async fn record_reports_in(
    tx: &mut SqliteConnection,
    reports: &[TryReport],
    hostname: &str,
) -> Result<Vec<bool>> {
    for report in reports {
        if let TryReport::Finished { new, .. } = report {
            check_finish_state(*new)?;
        }
    }
    // (run_pk, task_id, try_number) → index of the report that may apply.
    let mut started: HashMap<(i64, &str, i64), usize> = HashMap::new();
    let mut finished: HashMap<(i64, &str, i64), usize> = HashMap::new();
    // [run_pk, task_id, try_number, pid, start_date] and
    // [run_pk, task_id, try_number, state, retry_at, end_date].
    let mut started_json = Vec::new();
    let mut finished_json = Vec::new();
    for (i, report) in reports.iter().enumerate() {
        match report {
            TryReport::Started {
                key,
                try_number,
                pid,
                at,
            } => {
                let k = (key.run_pk, key.task_id.as_str(), i64::from(*try_number));
                if started.contains_key(&k) || finished.contains_key(&k) {
                    continue;
                }
                started.insert(k, i);
                started_json.push(serde_json::json!([k.0, k.1, k.2, pid, ts(*at)]));
            }
            TryReport::Finished {
                key,
                try_number,
                new,
                retry_at,
                at,
            } => {
                let k = (key.run_pk, key.task_id.as_str(), i64::from(*try_number));
                if finished.contains_key(&k) {
                    continue;
                }
                finished.insert(k, i);
                let retry_at = opt_ts(retry_at.filter(|_| *new == TaskState::UpForRetry));
                finished_json.push(serde_json::json!([
                    k.0,
                    k.1,
                    k.2,
                    new.as_str(),
                    retry_at,
                    ts(*at)
                ]));
            }
        }
    }
    let mut applied = vec![false; reports.len()];
    // Instances whose current try changed, for the history.
    let mut changed: Vec<(i64, String)> = Vec::new();
    if !started_json.is_empty() {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "UPDATE task_instance AS ti SET
                 state = 'running', start_date = json_extract(j.value, '$[4]'),
                 pid = json_extract(j.value, '$[3]'), hostname = ?1
             FROM json_each(?2) AS j
             WHERE ti.run_pk = json_extract(j.value, '$[0]')
               AND ti.task_id = json_extract(j.value, '$[1]')
               AND ti.try_number = json_extract(j.value, '$[2]')
               AND +ti.state = 'queued'
             RETURNING run_pk, task_id, try_number",
        )
        .bind(hostname)
        .bind(codec::to_json(&started_json)?)
        .fetch_all(&mut *tx)
        .await?;
        for (run_pk, task_id, try_number) in rows {
            if let Some(&i) = started.get(&(run_pk, task_id.as_str(), try_number)) {
                applied[i] = true;
            }
            changed.push((run_pk, task_id));
        }
    }
    if !finished_json.is_empty() {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "UPDATE task_instance AS ti SET
                 state = json_extract(j.value, '$[3]'), end_date = json_extract(j.value, '$[5]'),
                 retry_at = json_extract(j.value, '$[4]')
             FROM json_each(?1) AS j
             WHERE ti.run_pk = json_extract(j.value, '$[0]')
               AND ti.task_id = json_extract(j.value, '$[1]')
               AND ti.try_number = json_extract(j.value, '$[2]')
               AND +ti.state IN ('queued', 'running')
             RETURNING run_pk, task_id, try_number",
        )
        .bind(codec::to_json(&finished_json)?)
        .fetch_all(&mut *tx)
        .await?;
        for (run_pk, task_id, try_number) in rows {
            if let Some(&i) = finished.get(&(run_pk, task_id.as_str(), try_number)) {
                applied[i] = true;
            }
            changed.push((run_pk, task_id));
        }
    }
    if !changed.is_empty() {
        changed.sort_unstable();
        changed.dedup();
        let keys = keys_json(
            changed
                .iter()
                .map(|(run_pk, task_id)| (*run_pk, task_id.as_str())),
        )?;
        record_tries(&mut *tx, &keys).await?;
    }
    Ok(applied)
}

/// Unconditional. `end_date = now` when the new state is terminal or ends a live try;
/// a live try's history row takes the forced state.
pub(super) async fn set_state(
    pool: &SqlitePool,
    key: &TiKey,
    state: TaskState,
    now: DateTime<Utc>,
) -> Result<bool> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let applied = set_state_in(&mut tx, key, state, now).await?;
    tx.commit().await?;
    Ok(applied)
}

/// [`set_state`] inside the caller's transaction.
pub(super) async fn set_state_in(
    conn: &mut SqliteConnection,
    key: &TiKey,
    state: TaskState,
    now: DateTime<Utc>,
) -> Result<bool> {
    let Some(old) = current_state(&mut *conn, key).await? else {
        return Ok(false);
    };
    sqlx::query(
        "UPDATE task_instance SET
             state = ?1,
             end_date = CASE WHEN ?2 THEN ?3 ELSE end_date END,
             retry_at = CASE WHEN ?1 = 'up_for_retry' THEN retry_at ELSE NULL END
         WHERE run_pk = ?4 AND task_id = ?5",
    )
    .bind(state.as_str())
    .bind(ends(old, state))
    .bind(ts(now))
    .bind(key.run_pk)
    .bind(&key.task_id)
    .execute(&mut *conn)
    .await?;
    if old.is_active() {
        record_try(conn, key.run_pk, &key.task_id).await?;
    }
    Ok(true)
}

async fn current_state(conn: &mut SqliteConnection, key: &TiKey) -> Result<Option<TaskState>> {
    let row = sqlx::query("SELECT state FROM task_instance WHERE run_pk = ?1 AND task_id = ?2")
        .bind(key.run_pk)
        .bind(&key.task_id)
        .fetch_optional(conn)
        .await?;
    row.as_ref()
        .map(|r| codec::enum_col(r, "state"))
        .transpose()
}

/// One transaction: reset the named instances to `none` with a fresh try budget and, if any
/// was cleared, put the run back to `queued`. Unknown task ids are ignored.
pub(super) async fn clear(
    pool: &SqlitePool,
    run_pk: i64,
    task_ids: &[String],
    now: DateTime<Utc>,
) -> Result<usize> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut cleared = 0;
    for task_id in task_ids {
        if clear_one(&mut tx, run_pk, task_id, now).await? {
            cleared += 1;
        }
    }
    if cleared > 0 {
        requeue_run(&mut tx, run_pk, now).await?;
    }
    tx.commit().await?;
    Ok(cleared)
}

async fn clear_one(
    conn: &mut SqliteConnection,
    run_pk: i64,
    task_id: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    // A live try is abandoned: its history row keeps its state and gets an end.
    sqlx::query(
        "UPDATE task_try SET end_date = ?1
         WHERE run_pk = ?2 AND task_id = ?3 AND end_date IS NULL
           AND try_number = (SELECT try_number FROM task_instance
                             WHERE run_pk = ?2 AND task_id = ?3
                               AND state IN ('queued', 'running'))",
    )
    .bind(ts(now))
    .bind(run_pk)
    .bind(task_id)
    .execute(&mut *conn)
    .await?;
    let done = sqlx::query(
        "UPDATE task_instance SET
             state = 'none', max_tries = try_number + tries_budget,
             queued_at = NULL, start_date = NULL, end_date = NULL, retry_at = NULL,
             pid = NULL, hostname = NULL, queued_by_job_id = NULL
         WHERE run_pk = ?1 AND task_id = ?2",
    )
    .bind(run_pk)
    .bind(task_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

async fn requeue_run(conn: &mut SqliteConnection, run_pk: i64, now: DateTime<Utc>) -> Result<()> {
    sqlx::query(
        "UPDATE dag_run SET
             state = 'queued', end_date = NULL,
             queued_at = CASE WHEN state <> 'queued' THEN ?1 ELSE queued_at END
         WHERE id = ?2",
    )
    .bind(ts(now))
    .bind(run_pk)
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn tries(pool: &SqlitePool, key: &TiKey) -> Result<Vec<TryRow>> {
    let rows = sqlx::query(
        "SELECT run_pk, task_id, try_number, state, start_date, end_date, hostname
         FROM task_try WHERE run_pk = ?1 AND task_id = ?2 ORDER BY try_number",
    )
    .bind(key.run_pk)
    .bind(&key.task_id)
    .fetch_all(pool)
    .await?;
    codec::all(&rows, codec::try_row)
}

/// Live instances whose owning scheduler job is not `running` (or unknown, or unset).
pub(super) const ORPHANED: &str = concat!(
    "SELECT ",
    ti_columns!(),
    " FROM task_instance
     WHERE state IN ('queued', 'running')
       AND (queued_by_job_id IS NULL
            OR NOT EXISTS (SELECT 1 FROM scheduler_job j
                           WHERE j.id = queued_by_job_id AND j.state = 'running'))
     ORDER BY run_pk, task_id"
);

pub(super) async fn orphaned(pool: &SqlitePool) -> Result<Vec<TiRow>> {
    let rows = sqlx::query(ORPHANED).fetch_all(pool).await?;
    codec::all(&rows, codec::ti_row)
}

/// See [`crate::Store::adopt_orphan`].
pub(super) async fn adopt_orphan(
    pool: &SqlitePool,
    key: &TiKey,
    try_number: u32,
    job_id: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE task_instance SET queued_by_job_id = ?1
         WHERE run_pk = ?2 AND task_id = ?3 AND try_number = ?4
           AND state IN ('queued', 'running')
           AND (queued_by_job_id IS NULL
                OR NOT EXISTS (SELECT 1 FROM scheduler_job j
                               WHERE j.id = queued_by_job_id AND j.state = 'running'))",
    )
    .bind(job_id)
    .bind(key.run_pk)
    .bind(&key.task_id)
    .bind(i64::from(try_number))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One query, so the run found and its instances come from the same snapshot.
pub(super) async fn previous_run_states(
    pool: &SqlitePool,
    dag_id: &str,
    logical_date: DateTime<Utc>,
) -> Result<Option<HashMap<String, TaskState>>> {
    let rows = sqlx::query(
        "SELECT r.id, ti.task_id, ti.state
         FROM (SELECT id FROM dag_run WHERE dag_id = ?1 AND logical_date < ?2
               ORDER BY logical_date DESC, id DESC LIMIT 1) r
         LEFT JOIN task_instance ti ON ti.run_pk = r.id",
    )
    .bind(dag_id)
    .bind(ts(logical_date))
    .fetch_all(pool)
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut states = HashMap::with_capacity(rows.len());
    for row in &rows {
        // A run without task instances yields one row of NULLs.
        if let Some(task_id) = codec::col::<Option<String>>(row, "task_id")? {
            states.insert(task_id, codec::enum_col(row, "state")?);
        }
    }
    Ok(Some(states))
}
