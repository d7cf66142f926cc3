//! The scheduler's critical sections, safe with several schedulers on one database: queueing
//! task instances within the global limits ([`queue`]), starting runs within
//! `max_active_runs` ([`start_runs`]), evaluating runs under their locks ([`evaluate_runs`]),
//! and the scheduler's step after tries ended, all three in one transaction
//! ([`record_evaluate_and_queue`]).
//!
//! SQLite serialises them by itself: each is one `BEGIN IMMEDIATE` transaction, which takes
//! the database's write lock up front, so nothing it reads changes before it commits. Hence
//! [`evaluate_runs`] never finds a run busy.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use sqlx::sqlite::SqlitePool;
use updraft_core::RunState;

use super::codec::{self, run_columns};
use super::{runs, task_instances};
use crate::RunDecider;
use crate::room::Candidate;
use crate::step;
use crate::{
    Evaluated, QueueLimits, QueueStep, Result, RunDecision, RunRow, StepOutcome, TiKey, TiRow,
    TryReport,
};

/// One transaction: each key still `scheduled` whose pool and DAG have room becomes `queued`,
/// owned by `owner`. The room is counted once, then kept up to date as keys are queued.
/// A constant number of statements: the candidates are read in one `SELECT`, the limits
/// checked here in the order of `keys`, and the admitted ones queued together.
pub(super) async fn queue(
    pool: &SqlitePool,
    keys: &[TiKey],
    owner: i64,
    limits: &QueueLimits,
    now: DateTime<Utc>,
) -> Result<Vec<TiRow>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut room = step::load_room(&mut *tx).await?;
    let candidates = candidates(&mut tx, keys).await?;
    // (run_pk, task_id, map_index) → position in `admitted`; a key given twice is queued once.
    let mut positions: HashMap<(i64, &str, i32), usize> = HashMap::new();
    let mut admitted: Vec<&TiKey> = Vec::new();
    for (key, candidate) in keys.iter().zip(&candidates) {
        let Some(candidate) = candidate else {
            continue;
        };
        let Entry::Vacant(position) =
            positions.entry((key.run_pk, key.task_id.as_str(), key.map_index))
        else {
            continue;
        };
        if !room.admits(candidate, limits) {
            continue;
        }
        room.take(candidate);
        position.insert(admitted.len());
        admitted.push(key);
    }
    let rows = task_instances::queue_many(&mut tx, &admitted, owner, now).await?;
    tx.commit().await?;
    let mut ordered: Vec<Option<TiRow>> = vec![None; admitted.len()];
    for row in rows {
        if let Some(&i) = positions.get(&(row.run_pk, row.task_id.as_str(), row.map_index)) {
            ordered[i] = Some(row);
        }
    }
    Ok(ordered.into_iter().flatten().collect())
}

/// Per key, in order: `None` unless the instance exists and is `scheduled`.
async fn candidates(conn: &mut SqliteConnection, keys: &[TiKey]) -> Result<Vec<Option<Candidate>>> {
    let json = task_instances::keys_json(
        keys.iter()
            .map(|k| (k.run_pk, k.task_id.as_str(), k.map_index)),
    )?;
    let rows = sqlx::query(
        "SELECT j.key AS position, ti.dag_id, ti.pool, ti.pool_slots
         FROM json_each(?1) AS j
         JOIN task_instance AS ti ON ti.run_pk = json_extract(j.value, '$[0]')
                                 AND ti.task_id = json_extract(j.value, '$[1]')
                                 AND ti.map_index = json_extract(j.value, '$[2]')
         WHERE +ti.state = 'scheduled'",
    )
    .bind(json)
    .fetch_all(conn)
    .await?;
    let mut candidates: Vec<Option<Candidate>> = keys.iter().map(|_| None).collect();
    for row in &rows {
        let position: i64 = codec::col(row, "position")?;
        if let Some(slot) = usize::try_from(position)
            .ok()
            .and_then(|p| candidates.get_mut(p))
        {
            *slot = Some(Candidate {
                dag_id: codec::col(row, "dag_id")?,
                pool: codec::col(row, "pool")?,
                pool_slots: codec::col(row, "pool_slots")?,
            });
        }
    }
    Ok(candidates)
}

/// One transaction: each run still `queued` whose DAG has fewer `running` runs than its
/// `max_active_runs` becomes `running` (dates as `runs::set_state`).
pub(super) async fn start_runs(
    pool: &SqlitePool,
    runs: &[(i64, u32)],
    now: DateTime<Utc>,
) -> Result<Vec<i64>> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    // dag_id → its running runs, counting those started here.
    let mut running: HashMap<String, i64> = HashMap::new();
    let mut started = Vec::with_capacity(runs.len());
    for &(run_pk, max_active_runs) in runs {
        let Some(dag_id) = queued_run_dag(&mut tx, run_pk).await? else {
            continue;
        };
        let count = match running.entry(dag_id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let n = running_runs(&mut tx, e.key()).await?;
                e.insert(n)
            }
        };
        if *count >= i64::from(max_active_runs) {
            continue;
        }
        runs::set_state(&mut *tx, run_pk, RunState::Running, now).await?;
        *count += 1;
        started.push(run_pk);
    }
    tx.commit().await?;
    Ok(started)
}

/// The DAG of the run, if the run is `queued`.
async fn queued_run_dag(conn: &mut SqliteConnection, run_pk: i64) -> Result<Option<String>> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT dag_id FROM dag_run WHERE id = ?1 AND state = 'queued'")
            .bind(run_pk)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(dag_id,)| dag_id))
}

pub(super) const RUNNING_RUNS: &str =
    "SELECT COUNT(*) FROM dag_run WHERE dag_id = ?1 AND state = 'running'";

async fn running_runs(conn: &mut SqliteConnection, dag_id: &str) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as(RUNNING_RUNS)
        .bind(dag_id)
        .fetch_one(conn)
        .await?;
    Ok(n)
}

/// One transaction: read the runs and the snapshots of their instances, let `decide` for
/// each `running` one (in pk order), record the decisions.
pub(super) async fn evaluate_runs(
    pool: &SqlitePool,
    run_pks: &[i64],
    decide: &dyn RunDecider,
    now: DateTime<Utc>,
) -> Result<Vec<(i64, Evaluated)>> {
    let pks = step::distinct(run_pks);
    if pks.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let outcomes = evaluate_runs_in(&mut tx, pks, decide, now).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// All three in one transaction: one commit for the scheduler's step after tries ended.
pub(super) async fn record_evaluate_and_queue(
    pool: &SqlitePool,
    reports: &[TryReport],
    hostname: &str,
    run_pks: &[i64],
    decide: &dyn RunDecider,
    queue: &QueueStep<'_>,
    now: DateTime<Utc>,
) -> Result<StepOutcome> {
    let pks = step::distinct(run_pks);
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let applied = task_instances::record_reports_in(&mut tx, reports, hostname).await?;
    let evaluated = evaluate_runs_in(&mut tx, pks, decide, now).await?;
    let (queued, scheduled_read) = queue_page_in(&mut tx, queue, now).await?;
    tx.commit().await?;
    Ok(StepOutcome {
        applied,
        evaluated,
        queued,
        scheduled_read,
    })
}

/// The queueing of [`record_evaluate_and_queue`], inside its transaction: the room, one page
/// of scheduled instances, the selector's choice re-checked and queued. Returns the queued
/// rows (in the choice's order) and the page's length.
async fn queue_page_in(
    conn: &mut SqliteConnection,
    queue: &QueueStep<'_>,
    now: DateTime<Utc>,
) -> Result<(Vec<TiRow>, usize)> {
    let Some(chosen) = step::choose_page(&mut *conn, queue).await? else {
        return Ok((Vec::new(), 0));
    };
    let admitted = chosen.admitted();
    let keys = step::keys(&admitted);
    let keys: Vec<&TiKey> = keys.iter().collect();
    // An instance changed since the page was read is no longer `scheduled`: `queue_many`
    // leaves it out.
    let queued = task_instances::queue_many(conn, &keys, queue.owner, now).await?;
    Ok((step::in_order(&admitted, queued), chosen.page.len()))
}

/// [`evaluate_runs`] inside the caller's transaction, for distinct `pks`.
async fn evaluate_runs_in(
    tx: &mut SqliteConnection,
    pks: Vec<i64>,
    decide: &dyn RunDecider,
    now: DateTime<Utc>,
) -> Result<Vec<(i64, Evaluated)>> {
    if pks.is_empty() {
        return Ok(Vec::new());
    }
    let pks_json = codec::to_json(&pks)?;
    let rows = sqlx::query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM dag_run WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id"
    ))
    .bind(&pks_json)
    .fetch_all(&mut *tx)
    .await?;
    let running: Vec<RunRow> = codec::all(&rows, codec::run_row)?
        .into_iter()
        .filter(|run| run.state == RunState::Running)
        .collect();
    let mut outcomes: HashMap<i64, Evaluated> = HashMap::with_capacity(running.len());
    if !running.is_empty() {
        let decisions = step::decide_runs(&mut *tx, &running, decide).await?;
        for (run, decision) in running.iter().zip(decisions) {
            let applied = record(&mut *tx, run.id, &decision, now).await?;
            outcomes.insert(run.id, Evaluated::Applied { decision, applied });
        }
    }
    Ok(pks
        .into_iter()
        .map(|pk| (pk, outcomes.remove(&pk).unwrap_or(Evaluated::NotRunning)))
        .collect())
}

/// The decision's transitions (as `apply_transitions`), then its run state (as
/// `force_run_state`). Returns how many transitions applied.
async fn record(
    conn: &mut SqliteConnection,
    run_pk: i64,
    decision: &RunDecision,
    now: DateTime<Utc>,
) -> Result<usize> {
    let applied =
        task_instances::apply_transitions_in(&mut *conn, run_pk, &decision.transitions, now)
            .await?;
    if let Some(state) = decision.run_state {
        runs::set_state(conn, run_pk, state, now).await?;
    }
    Ok(applied)
}
