//! The PostgreSQL task-instance statements of the hot path, batched through `unnest` arrays
//! (the rest is shared, in `crate::sql::task_instances`): applying transitions, queueing, and
//! recording a burst of executor reports, each a constant number of statements whatever the
//! batch size, locking rows in one order.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use sqlx::postgres::PgPool;
use updraft_core::TaskState;

use super::codec::{self, opt_ts, ti_columns, ts};
use crate::sql::task_instances::{check_finish_state, ends, keeps_retry_at};
use crate::{Result, StoreError, TiKey, TiRow, TiTransition, TryReport};

/// [`crate::SchedulerStore::apply_transitions`] inside the caller's transaction; returns how many
/// applied. One statement whatever the number of transitions: the instances are matched
/// through `unnest` arrays in `task_id` order (a fixed lock order), and the tries that leave
/// `queued`/`running` are closed in the history by the same statement.
pub(super) async fn apply_transitions_in(
    conn: &mut PgConnection,
    run_pk: i64,
    transitions: &[TiTransition],
    now: DateTime<Utc>,
) -> Result<usize> {
    // A task named twice: only its first transition can apply, as if applied in order.
    let mut seen = std::collections::HashSet::new();
    let mut batch: Vec<&TiTransition> = transitions
        .iter()
        .filter(|t| seen.insert((t.task_id.as_str(), t.map_index)))
        .collect();
    if batch.is_empty() {
        return Ok(0);
    }
    batch.sort_by(|a, b| (&a.task_id, a.map_index).cmp(&(&b.task_id, b.map_index)));
    let task_ids: Vec<&str> = batch.iter().map(|t| t.task_id.as_str()).collect();
    let map_indexes: Vec<i64> = batch.iter().map(|t| i64::from(t.map_index)).collect();
    let expected: Vec<&str> = batch.iter().map(|t| t.expected.as_str()).collect();
    let new: Vec<&str> = batch.iter().map(|t| t.new.as_str()).collect();
    let ending: Vec<bool> = batch.iter().map(|t| ends(t.expected, t.new)).collect();
    let closing: Vec<bool> = batch.iter().map(|t| t.expected.is_active()).collect();
    let (applied,): (i64,) = codec::query_as(
        "WITH t AS (
             SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::bool[], $6::bool[],
                                  $8::bigint[])
                 AS t(task_id, expected, new, ending, closing, map_index)
         ),
         upd AS (
             UPDATE task_instance ti SET
                 state = t.new,
                 end_date = CASE WHEN t.ending THEN $7 ELSE ti.end_date END,
                 retry_at = CASE WHEN t.new = 'up_for_retry'
                                   OR (t.new = 'scheduled' AND t.expected = 'up_for_reschedule')
                                 THEN ti.retry_at ELSE NULL END
             FROM t
             WHERE ti.run_pk = $1 AND ti.task_id = t.task_id AND ti.map_index = t.map_index
               AND ti.state = t.expected
             RETURNING ti.run_pk, ti.task_id, ti.map_index, ti.try_number, ti.tenant, ti.state,
                 ti.start_date, ti.end_date, ti.hostname, t.closing
         ),
         closed AS (
             INSERT INTO task_try (run_pk, task_id, map_index, try_number, tenant, state,
                 start_date, end_date, hostname)
             SELECT run_pk, task_id, map_index, try_number, tenant, state, start_date,
                 end_date, hostname
             FROM upd WHERE closing AND try_number > 0
             ON CONFLICT (run_pk, task_id, map_index, try_number) DO UPDATE SET
                 state = excluded.state,
                 start_date = excluded.start_date,
                 end_date = excluded.end_date,
                 hostname = excluded.hostname
         )
         SELECT COUNT(*) FROM upd",
    )
    .bind(run_pk)
    .bind(&task_ids)
    .bind(&expected)
    .bind(&new)
    .bind(&ending)
    .bind(&closing)
    .bind(ts(now))
    .bind(&map_indexes)
    .fetch_one(&mut *conn)
    .await?;
    Ok(applied as usize)
}

/// The history refresh of `crate::sql::task_instances` for every row of a data-modifying CTE
/// named `upd` that returns the changed instances' `run_pk, task_id, map_index, try_number,
/// tenant, state, start_date, end_date, hostname` (the rows as updated), as a string literal
/// for `concat!`.
macro_rules! record_tries_from_upd {
    () => {
        "INSERT INTO task_try (run_pk, task_id, map_index, try_number, tenant, state,
             start_date, end_date, hostname)
         SELECT run_pk, task_id, map_index, try_number, tenant, state, start_date, end_date,
             hostname
         FROM upd WHERE try_number > 0
         ON CONFLICT (run_pk, task_id, map_index, try_number) DO UPDATE SET
             state = excluded.state,
             start_date = excluded.start_date,
             end_date = excluded.end_date,
             hostname = excluded.hostname"
    };
}

/// `scheduled` → `queued` with a new try owned by job `owner`, for every key still `scheduled`
/// (the others are left out), in one statement that also enters the new tries in the
/// history. `keys` must be distinct; they are updated in `(run_pk, task_id)` order so
/// concurrent transactions lock rows in one order. Rows come back in no particular order.
/// The caller checks the limits (see `scheduling::queue`).
pub(super) async fn queue_many(
    conn: &mut PgConnection,
    keys: &[&TiKey],
    owner: i64,
    now: DateTime<Utc>,
) -> Result<Vec<TiRow>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let (run_pks, task_ids, map_indexes) = sorted_key_arrays(keys);
    let rows = codec::query(concat!(
        "WITH upd AS (
             UPDATE task_instance SET
                 state = 'queued',
                 try_number = try_number + CASE WHEN retry_at IS NULL THEN 1 ELSE 0 END,
                 queued_at = $1,
                 start_date = NULL, end_date = NULL, retry_at = NULL, pid = NULL,
                 hostname = NULL, queued_by_job_id = $2
             FROM unnest($3::bigint[], $4::text[], $5::bigint[])
                 AS k(k_run_pk, k_task_id, k_map_index)
             WHERE run_pk = k.k_run_pk AND task_id = k.k_task_id
               AND map_index = k.k_map_index AND state = 'scheduled'
             RETURNING ",
        ti_columns!(),
        "
         ), hist AS (",
        record_tries_from_upd!(),
        ")
         SELECT ",
        ti_columns!(),
        " FROM upd"
    ))
    .bind(ts(now))
    .bind(owner)
    .bind(run_pks)
    .bind(task_ids)
    .bind(map_indexes)
    .fetch_all(&mut *conn)
    .await?;
    codec::all(&rows, codec::ti_row)
}

/// Parallel `run_pk` / `task_id` / `map_index` arrays of `keys`, sorted by
/// `(run_pk, task_id, map_index)` (byte order, as the `"C"` collation of the columns).
fn sorted_key_arrays(keys: &[&TiKey]) -> (Vec<i64>, Vec<String>, Vec<i64>) {
    let mut sorted = keys.to_vec();
    sorted.sort_by(|a, b| {
        (a.run_pk, &a.task_id, a.map_index).cmp(&(b.run_pk, &b.task_id, b.map_index))
    });
    let mut out = (
        Vec::with_capacity(sorted.len()),
        Vec::with_capacity(sorted.len()),
        Vec::with_capacity(sorted.len()),
    );
    for k in sorted {
        out.0.push(k.run_pk);
        out.1.push(k.task_id.clone());
        out.2.push(i64::from(k.map_index));
    }
    out
}

/// One transaction, with the outcome of recording `reports` one by one in order (each as
/// [`crate::SchedulerStore::mark_running`] / [`crate::SchedulerStore::finish_try`]) but a constant
/// number of statements for a burst.
///
/// The burst is split into stages (see [`report_stages`]); each stage is one `UPDATE` for its
/// `Started` reports, then one for its `Finished` reports, each also refreshing the history
/// of the tries it changed. A burst without a `Started` after a `Finished` of the same
/// instance (the usual case: a try starts before it finishes, and a new try is only queued
/// after the previous one's end is recorded) is a single stage: two statements.
pub(super) async fn record_reports(
    pool: &PgPool,
    reports: &[TryReport],
    hostname: &str,
) -> Result<Vec<bool>> {
    let mut tx = pool.begin().await?;
    let applied = record_reports_in(&mut tx, reports, hostname).await?;
    tx.commit().await?;
    Ok(applied)
}

/// [`record_reports`] inside the caller's transaction.
pub(super) async fn record_reports_in(
    conn: &mut PgConnection,
    reports: &[TryReport],
    hostname: &str,
) -> Result<Vec<bool>> {
    for report in reports {
        if let TryReport::Finished { new, .. } = report {
            check_finish_state(*new)?;
        }
    }
    let stages = report_stages(reports);
    let mut applied = vec![false; reports.len()];
    for stage in &stages {
        let mut done = mark_running_many(&mut *conn, &stage.started, hostname).await?;
        done.extend(finish_many(&mut *conn, &stage.finished).await?);
        for ord in done {
            applied[ord_from_db(ord, reports.len())?] = true;
        }
    }
    crate::sql::task_instances::apply_skips(&mut *conn, reports, &applied).await?;
    crate::sql::reschedules::record(&mut *conn, reports, &applied).await?;
    Ok(applied)
}

/// A `Started` report, with its position in the burst.
struct StartedReport<'a> {
    ord: usize,
    key: &'a TiKey,
    try_number: u32,
    pid: Option<i64>,
    at: DateTime<Utc>,
}

/// A `Finished` report, with its position in the burst.
struct FinishedReport<'a> {
    ord: usize,
    key: &'a TiKey,
    try_number: u32,
    new: TaskState,
    retry_at: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
}

/// Reports recorded together: first every `Started`, then every `Finished`.
#[derive(Default)]
struct Stage<'a> {
    started: Vec<StartedReport<'a>>,
    finished: Vec<FinishedReport<'a>>,
}

/// Split a burst so that recording each stage's `Started` reports, then its `Finished`
/// reports, stage after stage, gives the outcome of recording the burst in order.
///
/// Reports of different instances do not affect each other. For one instance, its reports in
/// a stage are some `Started` followed by some `Finished`; a `Started` after a `Finished` of
/// the instance opens the instance's next stage. Within a stage and kind, a report repeating
/// an earlier one's try cannot apply (the earlier one either applied, leaving a state the
/// repeat does not accept, or did not, and nothing in between changed the instance), so it
/// is left out (not applied); the rest match the instance's current try at most once, so
/// one `UPDATE` per stage and kind decides them all.
fn report_stages(reports: &[TryReport]) -> Vec<Stage<'_>> {
    // Instance → its current stage, and whether that stage holds a `Finished` of it.
    let mut at: HashMap<&TiKey, (usize, bool)> = HashMap::new();
    // (stage, instance, try, is `Started`) already in a stage.
    let mut seen: HashSet<(usize, &TiKey, u32, bool)> = HashSet::new();
    let mut stages: Vec<Stage<'_>> = Vec::new();
    for (ord, report) in reports.iter().enumerate() {
        let (key, try_number, started) = match report {
            TryReport::Started {
                key, try_number, ..
            } => (key, *try_number, true),
            TryReport::Finished {
                key, try_number, ..
            } => (key, *try_number, false),
        };
        let (stage, has_finished) = at.entry(key).or_insert((0, false));
        if started && *has_finished {
            *stage += 1;
            *has_finished = false;
        }
        if !started {
            *has_finished = true;
        }
        let stage = *stage;
        if !seen.insert((stage, key, try_number, started)) {
            continue;
        }
        if stages.len() <= stage {
            stages.resize_with(stage + 1, Stage::default);
        }
        match report {
            TryReport::Started { pid, at, .. } => stages[stage].started.push(StartedReport {
                ord,
                key,
                try_number,
                pid: *pid,
                at: *at,
            }),
            TryReport::Finished {
                new, retry_at, at, ..
            } => {
                stages[stage].finished.push(FinishedReport {
                    ord,
                    key,
                    try_number,
                    new: *new,
                    retry_at: *retry_at,
                    at: *at,
                });
            }
        }
    }
    stages
}

/// Lock order: by instance, then try.
fn report_order(a: (&TiKey, u32), b: (&TiKey, u32)) -> std::cmp::Ordering {
    (a.0.run_pk, &a.0.task_id, a.0.map_index, a.1).cmp(&(
        b.0.run_pk,
        &b.0.task_id,
        b.0.map_index,
        b.1,
    ))
}

/// `ord` as stored in the statements' arrays and back.
fn ord_to_db(ord: usize) -> Result<i64> {
    i64::try_from(ord).map_err(|_| StoreError::Invalid(format!("report {ord} out of range")))
}

fn ord_from_db(ord: i64, len: usize) -> Result<usize> {
    usize::try_from(ord)
        .ok()
        .filter(|&o| o < len)
        .ok_or_else(|| StoreError::Corrupt(format!("report position {ord} out of range")))
}

/// `mark_running_in` for every report at once (their tries distinct); the positions of
/// those that applied.
async fn mark_running_many(
    conn: &mut PgConnection,
    reports: &[StartedReport<'_>],
    hostname: &str,
) -> Result<Vec<i64>> {
    if reports.is_empty() {
        return Ok(Vec::new());
    }
    let mut sorted: Vec<&StartedReport<'_>> = reports.iter().collect();
    sorted.sort_by(|a, b| report_order((a.key, a.try_number), (b.key, b.try_number)));
    let mut run_pks = Vec::with_capacity(sorted.len());
    let mut task_ids = Vec::with_capacity(sorted.len());
    let mut tries = Vec::with_capacity(sorted.len());
    let mut pids = Vec::with_capacity(sorted.len());
    let mut starts = Vec::with_capacity(sorted.len());
    let mut ords = Vec::with_capacity(sorted.len());
    let mut map_indexes = Vec::with_capacity(sorted.len());
    for r in sorted {
        map_indexes.push(i64::from(r.key.map_index));
        run_pks.push(r.key.run_pk);
        task_ids.push(r.key.task_id.as_str());
        tries.push(i64::from(r.try_number));
        pids.push(r.pid);
        starts.push(ts(r.at));
        ords.push(ord_to_db(r.ord)?);
    }
    let applied: Vec<(i64,)> = codec::query_as(concat!(
        "WITH upd AS (
             UPDATE task_instance SET
                 state = 'running', start_date = k.k_start, pid = k.k_pid, hostname = $1
             FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[],
                         $7::bigint[], $8::bigint[])
                 AS k(k_run_pk, k_task_id, k_try, k_pid, k_start, k_ord, k_map_index)
             WHERE run_pk = k.k_run_pk AND task_id = k.k_task_id AND try_number = k.k_try
               AND map_index = k.k_map_index AND state = 'queued'
             RETURNING k.k_ord, run_pk, task_id, map_index, try_number, tenant, state,
                 start_date, end_date, hostname
         ), hist AS (",
        record_tries_from_upd!(),
        ")
         SELECT k_ord FROM upd"
    ))
    .bind(hostname)
    .bind(run_pks)
    .bind(task_ids)
    .bind(tries)
    .bind(pids)
    .bind(starts)
    .bind(ords)
    .bind(map_indexes)
    .fetch_all(conn)
    .await?;
    Ok(applied.into_iter().map(|(ord,)| ord).collect())
}

/// `finish_try_in` for every report at once (their tries distinct, their states checked);
/// the positions of those that applied.
async fn finish_many(conn: &mut PgConnection, reports: &[FinishedReport<'_>]) -> Result<Vec<i64>> {
    if reports.is_empty() {
        return Ok(Vec::new());
    }
    let mut sorted: Vec<&FinishedReport<'_>> = reports.iter().collect();
    sorted.sort_by(|a, b| report_order((a.key, a.try_number), (b.key, b.try_number)));
    let mut run_pks = Vec::with_capacity(sorted.len());
    let mut task_ids = Vec::with_capacity(sorted.len());
    let mut tries = Vec::with_capacity(sorted.len());
    let mut states = Vec::with_capacity(sorted.len());
    let mut retry_ats = Vec::with_capacity(sorted.len());
    let mut ends = Vec::with_capacity(sorted.len());
    let mut ords = Vec::with_capacity(sorted.len());
    let mut map_indexes = Vec::with_capacity(sorted.len());
    for r in sorted {
        map_indexes.push(i64::from(r.key.map_index));
        run_pks.push(r.key.run_pk);
        task_ids.push(r.key.task_id.as_str());
        tries.push(i64::from(r.try_number));
        states.push(r.new.as_str());
        retry_ats.push(opt_ts(r.retry_at.filter(|_| keeps_retry_at(r.new))));
        ends.push(ts(r.at));
        ords.push(ord_to_db(r.ord)?);
    }
    let applied: Vec<(i64,)> = codec::query_as(concat!(
        "WITH upd AS (
             UPDATE task_instance SET
                 state = k.k_state, end_date = k.k_end, retry_at = k.k_retry_at
             FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bigint[],
                         $6::bigint[], $7::bigint[], $8::bigint[])
                 AS k(k_run_pk, k_task_id, k_try, k_state, k_retry_at, k_end, k_ord,
                      k_map_index)
             WHERE run_pk = k.k_run_pk AND task_id = k.k_task_id AND try_number = k.k_try
               AND map_index = k.k_map_index AND state IN ('queued', 'running')
             RETURNING k.k_ord, run_pk, task_id, map_index, try_number, tenant, state,
                 start_date, end_date, hostname
         ), hist AS (",
        record_tries_from_upd!(),
        ")
         SELECT k_ord FROM upd"
    ))
    .bind(run_pks)
    .bind(task_ids)
    .bind(tries)
    .bind(states)
    .bind(retry_ats)
    .bind(ends)
    .bind(ords)
    .bind(map_indexes)
    .fetch_all(conn)
    .await?;
    Ok(applied.into_iter().map(|(ord,)| ord).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(task_id: &str) -> TiKey {
        TiKey::unmapped(1, task_id)
    }

    fn started(task_id: &str, try_number: u32) -> TryReport {
        TryReport::Started {
            key: key(task_id),
            try_number,
            pid: None,
            at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    fn finished(task_id: &str, try_number: u32) -> TryReport {
        TryReport::Finished {
            key: key(task_id),
            try_number,
            new: TaskState::Success,
            retry_at: None,
            at: chrono::DateTime::UNIX_EPOCH,
            skip: vec![],
        }
    }

    /// Per stage: positions of its `Started`, then of its `Finished` reports.
    fn shape(reports: &[TryReport]) -> Vec<(Vec<usize>, Vec<usize>)> {
        report_stages(reports)
            .iter()
            .map(|s| {
                (
                    s.started.iter().map(|r| r.ord).collect(),
                    s.finished.iter().map(|r| r.ord).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn a_usual_burst_is_one_stage() {
        let reports = [
            started("a", 1),
            finished("b", 1),
            finished("a", 1),
            started("c", 2),
        ];
        assert_eq!(shape(&reports), [(vec![0, 3], vec![1, 2])]);
    }

    #[test]
    fn a_start_after_a_finish_of_the_same_instance_waits_for_the_next_stage() {
        let reports = [
            finished("a", 1),
            started("a", 2),
            started("b", 1),
            finished("a", 2),
        ];
        assert_eq!(shape(&reports), [(vec![2], vec![0]), (vec![1], vec![3])]);
    }

    #[test]
    fn repeated_reports_of_a_try_are_left_out() {
        let reports = [
            started("a", 1),
            started("a", 1),
            started("a", 2),
            finished("a", 1),
            finished("a", 1),
        ];
        assert_eq!(shape(&reports), [(vec![0, 2], vec![3])]);
    }
}
