//! The scheduler's critical sections, safe with several schedulers on one database: queueing
//! task instances within the global limits ([`queue`]), starting runs within
//! `max_active_runs` ([`start_runs`]) and evaluating runs under their locks ([`evaluate_runs`]).
//!
//! [`queue`] and [`start_runs`] first take the transaction-scoped advisory lock
//! [`SCHEDULING_LOCK`] (`pg_advisory_xact_lock`, released by the commit or rollback, so safe
//! behind a transaction-pooling PgBouncer; never a session lock). Under it, each statement of
//! the READ COMMITTED transaction sees what the previous holder committed, so the slots and
//! counts they read cannot be taken by another scheduler before they commit.
//!
//! [`evaluate_runs`] locks the runs' rows, in pk order, with `FOR UPDATE SKIP LOCKED`: a run
//! another transaction holds is reported busy instead of waited for. It locks the runs, then
//! their instances; every other transaction that changes both takes the run first
//! (`runs::lock`).
//!
//! [`record_evaluate_and_queue`] (the scheduler's step after tries ended: reports, evaluation
//! and queueing in one transaction) takes the advisory lock first, then the runs as
//! [`evaluate_runs`] does, then instances. Whoever waits for the advisory lock holds no row
//! (`queue`, `start_runs` and the step all take it first), so its holder only ever waits for
//! row locks of transactions that never wait for it: no cycle, no deadlock.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use sqlx::postgres::PgPool;
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

/// Key of the advisory lock serialising [`queue`] and [`start_runs`] across schedulers
/// ("updraft" in ASCII).
pub(super) const SCHEDULING_LOCK: i64 = 0x0075_7064_7261_6674;

/// How long a transaction holding [`SCHEDULING_LOCK`] may sit waiting for its client before
/// PostgreSQL ends its session. A scheduler's transactions wait for nothing but its own CPU
/// (milliseconds), so only a frozen or cut-off holder (SIGSTOP, a paused VM, a partition)
/// reaches it; without it, that holder would keep every other scheduler from queueing until
/// it came back.
const LOCK_HOLDER_IDLE_LIMIT: &str = "10s";

/// Wait for [`SCHEDULING_LOCK`]; held until the transaction ends, or until the transaction has
/// waited on its client for [`LOCK_HOLDER_IDLE_LIMIT`] (a transaction-local setting, so
/// nothing outlives the transaction: PgBouncer's transaction pooling is fine).
async fn lock_scheduling(conn: &mut PgConnection) -> Result<()> {
    codec::query(
        "SELECT set_config('idle_in_transaction_session_timeout', $2, true),
                pg_advisory_xact_lock($1)",
    )
    .bind(SCHEDULING_LOCK)
    .bind(LOCK_HOLDER_IDLE_LIMIT)
    .execute(conn)
    .await?;
    Ok(())
}

/// One transaction: each key still `scheduled` whose pool and DAG have room becomes `queued`,
/// owned by `owner`. The room is counted once, under the lock, then kept up to date as keys
/// are admitted in order.
///
/// A constant number of statements whatever the number of keys: the candidates still
/// `scheduled` are read (and locked, in `(run_pk, task_id)` order, so they stay `scheduled`
/// until the commit) in one query, the limits are checked here, and the admitted ones are
/// queued in one statement.
pub(super) async fn queue(
    pool: &PgPool,
    keys: &[TiKey],
    owner: i64,
    limits: &QueueLimits,
    now: DateTime<Utc>,
) -> Result<Vec<TiRow>> {
    // A key listed again is no longer `scheduled` once the first is queued.
    let mut seen = HashSet::with_capacity(keys.len());
    let keys: Vec<&TiKey> = keys.iter().filter(|k| seen.insert(*k)).collect();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin().await?;
    lock_scheduling(&mut tx).await?;
    let mut room = step::load_room(&mut *tx).await?;
    let candidates = candidates(&mut tx, &keys).await?;
    let mut admitted = Vec::with_capacity(keys.len());
    for key in keys {
        let Some(candidate) = candidates.get(key) else {
            continue;
        };
        if room.admits(candidate, limits) {
            room.take(candidate);
            admitted.push(key);
        }
    }
    let rows = task_instances::queue_many(&mut tx, &admitted, owner, now).await?;
    tx.commit().await?;
    let mut by_key: HashMap<TiKey, TiRow> = rows.into_iter().map(|row| (row.key(), row)).collect();
    Ok(admitted
        .into_iter()
        .filter_map(|key| by_key.remove(key))
        .collect())
}

/// The instances of `keys` (distinct) that exist and are `scheduled`, locked in
/// `(run_pk, task_id, map_index)` order.
async fn candidates(conn: &mut PgConnection, keys: &[&TiKey]) -> Result<HashMap<TiKey, Candidate>> {
    let run_pks: Vec<i64> = keys.iter().map(|k| k.run_pk).collect();
    let task_ids: Vec<&str> = keys.iter().map(|k| k.task_id.as_str()).collect();
    let map_indexes: Vec<i64> = keys.iter().map(|k| i64::from(k.map_index)).collect();
    let rows = codec::query(
        "SELECT ti.run_pk, ti.task_id, ti.map_index, ti.dag_id, ti.pool, ti.pool_slots
         FROM task_instance ti
         JOIN unnest($1::bigint[], $2::text[], $3::bigint[]) AS k(k_run_pk, k_task_id, k_map)
           ON ti.run_pk = k.k_run_pk AND ti.task_id = k.k_task_id AND ti.map_index = k.k_map
         WHERE ti.state = 'scheduled'
         ORDER BY ti.run_pk, ti.task_id, ti.map_index
         FOR UPDATE OF ti",
    )
    .bind(run_pks)
    .bind(task_ids)
    .bind(map_indexes)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let key = TiKey {
                run_pk: codec::col(row, "run_pk")?,
                task_id: codec::col(row, "task_id")?,
                map_index: crate::sql::codec::map_index_col(row)?,
            };
            let candidate = Candidate {
                dag_id: codec::col(row, "dag_id")?,
                pool: codec::col(row, "pool")?,
                pool_slots: codec::col(row, "pool_slots")?,
            };
            Ok((key, candidate))
        })
        .collect()
}

/// One transaction under [`SCHEDULING_LOCK`]: each run still `queued` whose DAG has fewer
/// `running` runs than its `max_active_runs` becomes `running` (dates as `runs::set_state`).
pub(super) async fn start_runs(
    pool: &PgPool,
    runs: &[(i64, u32)],
    now: DateTime<Utc>,
) -> Result<Vec<i64>> {
    let mut tx = pool.begin().await?;
    lock_scheduling(&mut tx).await?;
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

/// The DAG of the run, if the run is `queued`; locks the run's row.
async fn queued_run_dag(conn: &mut PgConnection, run_pk: i64) -> Result<Option<String>> {
    let row: Option<(String,)> =
        codec::query_as("SELECT dag_id FROM dag_run WHERE id = $1 AND state = 'queued' FOR UPDATE")
            .bind(run_pk)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(dag_id,)| dag_id))
}

async fn running_runs(conn: &mut PgConnection, dag_id: &str) -> Result<i64> {
    let (n,): (i64,) =
        codec::query_as("SELECT COUNT(*) FROM dag_run WHERE dag_id = $1 AND state = 'running'")
            .bind(dag_id)
            .fetch_one(conn)
            .await?;
    Ok(n)
}

/// One transaction: lock the runs not held elsewhere (the others are busy), read the
/// snapshots of their instances, let `decide` for each `running` one (in pk order), record
/// the decisions.
pub(super) async fn evaluate_runs(
    pool: &PgPool,
    run_pks: &[i64],
    decide: &dyn RunDecider,
    now: DateTime<Utc>,
) -> Result<Vec<(i64, Evaluated)>> {
    let pks = step::distinct(run_pks);
    if pks.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin().await?;
    let locked = lock_runs(&mut tx, &pks).await?;
    let outcomes = evaluate_locked(&mut tx, pks, locked, decide, now).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// One transaction, in lock order: the scheduling lock (when something may be queued), the
/// runs not held elsewhere, then instances: the reports recorded, the locked runs evaluated,
/// one page queued.
pub(super) async fn record_evaluate_and_queue(
    pool: &PgPool,
    reports: &[TryReport],
    hostname: &str,
    run_pks: &[i64],
    decide: &dyn RunDecider,
    queue: &QueueStep<'_>,
    now: DateTime<Utc>,
) -> Result<StepOutcome> {
    let pks = step::distinct(run_pks);
    let mut tx = pool.begin().await?;
    if queue.page > 0 {
        // Before any row: a transaction waiting for this lock must hold none, or the lock's
        // holder could wait for it in turn.
        lock_scheduling(&mut tx).await?;
    }
    let locked = lock_runs(&mut tx, &pks).await?;
    let applied = task_instances::record_reports_in(&mut tx, reports, hostname).await?;
    let evaluated = evaluate_locked(&mut tx, pks, locked, decide, now).await?;
    let (queued, scheduled_read) = queue_page_in(&mut tx, queue, now).await?;
    tx.commit().await?;
    Ok(StepOutcome {
        applied,
        evaluated,
        queued,
        scheduled_read,
    })
}

/// The queueing of [`record_evaluate_and_queue`], under [`SCHEDULING_LOCK`]: the room, one
/// page of scheduled instances, the selector's choice re-checked and queued. Returns the
/// queued rows (in the choice's order) and the page's length.
async fn queue_page_in(
    conn: &mut PgConnection,
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

/// The runs of `pks` this transaction locked, and those another transaction holds.
struct LockedRuns {
    running: Vec<RunRow>,
    busy: Vec<i64>,
}

/// Lock the runs of `pks` (distinct) not held elsewhere, in pk order; the others that exist
/// are busy.
async fn lock_runs(conn: &mut PgConnection, pks: &[i64]) -> Result<LockedRuns> {
    if pks.is_empty() {
        return Ok(LockedRuns {
            running: Vec::new(),
            busy: Vec::new(),
        });
    }
    let locked = lock_runs_unless_busy(&mut *conn, pks).await?;
    let mut busy = Vec::new();
    if locked.len() < pks.len() {
        let held: HashSet<i64> = locked.iter().map(|run| run.id).collect();
        let missing: Vec<i64> = pks
            .iter()
            .copied()
            .filter(|pk| !held.contains(pk))
            .collect();
        busy = existing_runs(conn, &missing).await?;
    }
    let running = locked
        .into_iter()
        .filter(|run| run.state == RunState::Running)
        .collect();
    Ok(LockedRuns { running, busy })
}

/// Read the snapshots of the locked running runs' instances, let `decide` for each (in pk
/// order), record the decisions. One outcome per pk of `pks`, in order.
async fn evaluate_locked(
    conn: &mut PgConnection,
    pks: Vec<i64>,
    locked: LockedRuns,
    decide: &dyn RunDecider,
    now: DateTime<Utc>,
) -> Result<Vec<(i64, Evaluated)>> {
    let mut outcomes: HashMap<i64, Evaluated> = HashMap::with_capacity(pks.len());
    for pk in locked.busy {
        outcomes.insert(pk, Evaluated::Busy);
    }
    let running = locked.running;
    if !running.is_empty() {
        let decisions = step::decide_runs(&mut *conn, &running, decide).await?;
        for (run, decision) in running.iter().zip(decisions) {
            let applied = record(&mut *conn, run.id, &decision, now).await?;
            outcomes.insert(run.id, Evaluated::Applied { decision, applied });
        }
    }
    Ok(pks
        .into_iter()
        .map(|pk| (pk, outcomes.remove(&pk).unwrap_or(Evaluated::NotRunning)))
        .collect())
}

/// The runs of `run_pks` whose rows no other transaction holds, locked until the transaction
/// ends, in pk order.
async fn lock_runs_unless_busy(conn: &mut PgConnection, run_pks: &[i64]) -> Result<Vec<RunRow>> {
    let rows = codec::query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM dag_run WHERE id = ANY($1) ORDER BY id FOR UPDATE SKIP LOCKED"
    ))
    .bind(run_pks)
    .fetch_all(conn)
    .await?;
    codec::all(&rows, codec::run_row)
}

/// A plain read: which of `run_pks` exist, including runs whose rows another transaction
/// holds.
async fn existing_runs(conn: &mut PgConnection, run_pks: &[i64]) -> Result<Vec<i64>> {
    let found: Vec<(i64,)> = codec::query_as("SELECT id FROM dag_run WHERE id = ANY($1)")
        .bind(run_pks)
        .fetch_all(conn)
        .await?;
    Ok(found.into_iter().map(|(id,)| id).collect())
}

/// The decision's transitions (as `apply_transitions`), then its run state (as
/// `force_run_state`). Returns how many transitions applied.
async fn record(
    conn: &mut PgConnection,
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
