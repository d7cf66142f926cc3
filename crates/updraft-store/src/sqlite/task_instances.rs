//! The SQLite task-instance statements of the hot path, batched through JSON arrays read with
//! `json_each` (the rest is shared, in `crate::sql::task_instances`): applying transitions,
//! queueing, and recording a burst of executor reports, each a constant number of statements
//! whatever the batch size.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use super::codec::{self, opt_ts, ti_columns, ts};
use crate::sql::task_instances::{check_finish_state, ends, keeps_retry_at};
use crate::{Result, TiKey, TiRow, TiTransition, TryReport};

/// [`crate::SchedulerStore::apply_transitions`] inside the caller's transaction; returns how many
/// applied.
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
        .filter(|t| seen.insert((t.task_id.as_str(), t.map_index)))
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
                ends(t.expected, t.new),
                t.map_index
            ])
        })
        .collect();
    // The transitions drive the loop, one primary-key lookup each: materialised first, and
    // `run_pk` taken from the batch rather than compared with a constant, because with
    // `ti.run_pk = ?2` SQLite may make the run's instances the outer loop and scan the whole
    // batch for each: quadratic in the run's size (minutes for the first evaluation of a
    // 50,000-task run). `+ti.state` keeps the state index out of it.
    let changed: Vec<(String, i32)> = sqlx::query_as(
        "WITH j AS MATERIALIZED (
             SELECT ?2 AS run_pk, value ->> 0 AS task_id, value ->> 1 AS expected,
                    value ->> 2 AS new_state, value ->> 3 AS ends, value ->> 4 AS map_index
             FROM json_each(?1))
         UPDATE task_instance AS ti SET
             state = j.new_state,
             end_date = CASE WHEN j.ends THEN ?3 ELSE ti.end_date END,
             retry_at = CASE WHEN j.new_state = 'up_for_retry'
                               OR (j.new_state = 'scheduled' AND j.expected = 'up_for_reschedule')
                             THEN ti.retry_at ELSE NULL END
         FROM j
         WHERE ti.run_pk = j.run_pk AND ti.task_id = j.task_id AND ti.map_index = j.map_index
           AND +ti.state = j.expected
         RETURNING task_id, map_index",
    )
    .bind(serde_json::Value::Array(items).to_string())
    .bind(run_pk)
    .bind(ts(now))
    .fetch_all(&mut *conn)
    .await?;
    // Tries that left queued/running are closed in the history.
    let live: std::collections::HashSet<(&str, i32)> = batch
        .iter()
        .filter(|t| t.expected.is_active())
        .map(|t| (t.task_id.as_str(), t.map_index))
        .collect();
    let closing: Vec<serde_json::Value> = changed
        .iter()
        .filter(|(task_id, map_index)| live.contains(&(task_id.as_str(), *map_index)))
        .map(|(task_id, map_index)| serde_json::json!([run_pk, task_id, map_index]))
        .collect();
    if !closing.is_empty() {
        record_tries(conn, &serde_json::Value::Array(closing).to_string()).await?;
    }
    Ok(changed.len())
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
    let keys = keys_json(
        keys.iter()
            .map(|k| (k.run_pk, k.task_id.as_str(), k.map_index)),
    )?;
    let rows = sqlx::query(concat!(
        "UPDATE task_instance SET
             state = 'queued', try_number = try_number + (retry_at IS NULL), queued_at = ?1,
             start_date = NULL, end_date = NULL, retry_at = NULL, pid = NULL, hostname = NULL,
             queued_by_job_id = ?3
         FROM json_each(?2) AS j
         WHERE task_instance.run_pk = json_extract(j.value, '$[0]')
           AND task_instance.task_id = json_extract(j.value, '$[1]')
           AND task_instance.map_index = json_extract(j.value, '$[2]')
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

/// `[[run_pk, task_id, map_index], ...]`, for [`record_tries`] and `json_each`.
pub(super) fn keys_json<'a>(keys: impl Iterator<Item = (i64, &'a str, i32)>) -> Result<String> {
    codec::to_json(&keys.collect::<Vec<_>>())
}

/// The history refresh of `crate::sql::task_instances` for each instance of `keys` (as
/// [`keys_json`]), in one statement.
///
/// In the batched statements here, a unary `+` on `state` keeps the planner off the `state`
/// index: lacking statistics it would otherwise scan every instance in that state and, for
/// each, all the keys. With it, the keys drive the loop, each a primary-key lookup.
async fn record_tries(conn: &mut SqliteConnection, keys: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO task_try (run_pk, task_id, map_index, try_number, tenant, state,
             start_date, end_date, hostname)
         SELECT ti.run_pk, ti.task_id, ti.map_index, ti.try_number, ti.tenant, ti.state,
             ti.start_date, ti.end_date, ti.hostname
         FROM json_each(?1) AS j
         JOIN task_instance AS ti ON ti.run_pk = json_extract(j.value, '$[0]')
                                 AND ti.task_id = json_extract(j.value, '$[1]')
                                 AND ti.map_index = json_extract(j.value, '$[2]')
         WHERE ti.try_number > 0
         ON CONFLICT (run_pk, task_id, map_index, try_number) DO UPDATE SET
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
    // (run_pk, task_id, try_number, map_index) → index of the report that may apply.
    let mut started: HashMap<(i64, &str, i64, i32), usize> = HashMap::new();
    let mut finished: HashMap<(i64, &str, i64, i32), usize> = HashMap::new();
    // [run_pk, task_id, try_number, pid, start_date, map_index] and
    // [run_pk, task_id, try_number, state, retry_at, end_date, map_index].
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
                let k = (
                    key.run_pk,
                    key.task_id.as_str(),
                    i64::from(*try_number),
                    key.map_index,
                );
                if started.contains_key(&k) || finished.contains_key(&k) {
                    continue;
                }
                started.insert(k, i);
                started_json.push(serde_json::json!([k.0, k.1, k.2, pid, ts(*at), k.3]));
            }
            TryReport::Finished {
                key,
                try_number,
                new,
                retry_at,
                at,
                ..
            } => {
                let k = (
                    key.run_pk,
                    key.task_id.as_str(),
                    i64::from(*try_number),
                    key.map_index,
                );
                if finished.contains_key(&k) {
                    continue;
                }
                finished.insert(k, i);
                let retry_at = opt_ts(retry_at.filter(|_| keeps_retry_at(*new)));
                finished_json.push(serde_json::json!([
                    k.0,
                    k.1,
                    k.2,
                    new.as_str(),
                    retry_at,
                    ts(*at),
                    k.3
                ]));
            }
        }
    }
    let mut applied = vec![false; reports.len()];
    // Instances whose current try changed, for the history.
    let mut changed: Vec<(i64, String, i32)> = Vec::new();
    if !started_json.is_empty() {
        let rows: Vec<(i64, String, i64, i32)> = sqlx::query_as(
            "UPDATE task_instance AS ti SET
                 state = 'running', start_date = json_extract(j.value, '$[4]'),
                 pid = json_extract(j.value, '$[3]'), hostname = ?1
             FROM json_each(?2) AS j
             WHERE ti.run_pk = json_extract(j.value, '$[0]')
               AND ti.task_id = json_extract(j.value, '$[1]')
               AND ti.try_number = json_extract(j.value, '$[2]')
               AND ti.map_index = json_extract(j.value, '$[5]')
               AND +ti.state = 'queued'
             RETURNING run_pk, task_id, try_number, map_index",
        )
        .bind(hostname)
        .bind(codec::to_json(&started_json)?)
        .fetch_all(&mut *tx)
        .await?;
        for (run_pk, task_id, try_number, map_index) in rows {
            if let Some(&i) = started.get(&(run_pk, task_id.as_str(), try_number, map_index)) {
                applied[i] = true;
            }
            changed.push((run_pk, task_id, map_index));
        }
    }
    if !finished_json.is_empty() {
        let rows: Vec<(i64, String, i64, i32)> = sqlx::query_as(
            "UPDATE task_instance AS ti SET
                 state = json_extract(j.value, '$[3]'), end_date = json_extract(j.value, '$[5]'),
                 retry_at = json_extract(j.value, '$[4]')
             FROM json_each(?1) AS j
             WHERE ti.run_pk = json_extract(j.value, '$[0]')
               AND ti.task_id = json_extract(j.value, '$[1]')
               AND ti.try_number = json_extract(j.value, '$[2]')
               AND ti.map_index = json_extract(j.value, '$[6]')
               AND +ti.state IN ('queued', 'running')
             RETURNING run_pk, task_id, try_number, map_index",
        )
        .bind(codec::to_json(&finished_json)?)
        .fetch_all(&mut *tx)
        .await?;
        for (run_pk, task_id, try_number, map_index) in rows {
            if let Some(&i) = finished.get(&(run_pk, task_id.as_str(), try_number, map_index)) {
                applied[i] = true;
            }
            changed.push((run_pk, task_id, map_index));
        }
    }
    if !changed.is_empty() {
        changed.sort_unstable();
        changed.dedup();
        let keys = keys_json(
            changed
                .iter()
                .map(|(run_pk, task_id, map_index)| (*run_pk, task_id.as_str(), *map_index)),
        )?;
        record_tries(&mut *tx, &keys).await?;
    }
    crate::sql::task_instances::apply_skips(&mut *tx, reports, &applied).await?;
    crate::sql::reschedules::record(&mut *tx, reports, &applied).await?;
    Ok(applied)
}
