//! The backend-neutral part of the scheduler's step inside
//! [`crate::SchedulerStore::record_evaluate_and_queue`] and of queueing: the room read inside
//! the caller's transaction, the selector's page chosen from, which of the selector's keys are
//! queued (those on the page, once each, that the room still admits, by the same rule as
//! [`crate::SchedulerStore::queue`]) and the queued rows put back in the selector's order; the
//! runs' decisions, each run read whole or only its decider's focus. Only the batched
//! `queue_many`, recording the decisions and the locking around them stay per backend.

use std::collections::{HashMap, HashSet};

use crate::room::{Candidate, Room};
use crate::sql::codec::StoreRow;
use crate::sql::{Db, query, task_instances};
use crate::{
    QueueChoice, QueueRoom, QueueStep, Result, RunDecider, RunDecision, RunRead, RunRow, TiKey,
    TiRow,
};

/// The pools' sizes and what `queued` and `running` instances hold, as the queue selector
/// sees them.
pub(crate) async fn read_room<C: Db + ?Sized>(conn: &mut C) -> Result<QueueRoom> {
    let rows = query("SELECT name, slots, tenant FROM pool")
        .fetch_all(&mut *conn)
        .await?;
    let pool_slots = rows
        .iter()
        .map(|row| Ok((row.text("name")?, row.int("slots")?)))
        .collect::<Result<HashMap<_, _>>>()?;
    let mut pool_tenants = HashMap::new();
    for row in &rows {
        if let Some(tenant) = row.opt_text("tenant")? {
            pool_tenants.insert(row.text("name")?, tenant);
        }
    }
    let held = task_instances::active_counts(conn).await?;
    Ok(QueueRoom {
        pool_slots,
        pool_tenants,
        held,
    })
}

/// [`read_room`] as the store's own re-check of the limits keeps it.
pub(crate) async fn load_room<C: Db + ?Sized>(conn: &mut C) -> Result<Room> {
    let room = read_room(conn).await?;
    Ok(Room::new(room.pool_slots, room.held))
}

/// What a step queues, chosen inside its transaction: the room, one page of scheduled
/// instances without the DAGs and pools the selector leaves out, and the selector's choice.
pub(crate) struct ChosenPage {
    pub page: Vec<TiRow>,
    pub choice: QueueChoice,
    pub room: QueueRoom,
}

impl ChosenPage {
    /// The chosen instances the room admits, in the choice's order (see [`admit`]).
    pub fn admitted(&self) -> Vec<&TiRow> {
        admit(&self.page, &self.choice, &self.room)
    }
}

/// Read the room and one page for `queue.selector` and let it choose; `None` when the step
/// queues nothing (`queue.page` zero), with no statement run.
pub(crate) async fn choose_page<C: Db + ?Sized>(
    conn: &mut C,
    queue: &QueueStep<'_>,
) -> Result<Option<ChosenPage>> {
    if queue.page == 0 {
        return Ok(None);
    }
    let room = read_room(&mut *conn).await?;
    let skip = queue.selector.skip(&room);
    let page = task_instances::scheduled(conn, queue.page, 0, &skip).await?;
    let choice = queue.selector.select(&page, &room);
    Ok(Some(ChosenPage { page, choice, room }))
}

/// `run_pks` without repeats, in their first order.
pub(crate) fn distinct(run_pks: &[i64]) -> Vec<i64> {
    let mut seen = HashSet::with_capacity(run_pks.len());
    run_pks
        .iter()
        .copied()
        .filter(|pk| seen.insert(*pk))
        .collect()
}

/// The keys of `choice` to queue, in its order: each found on `page` (still `scheduled` when
/// the page was read), listed for the first time, and admitted by the room as the keys
/// before it are taken.
pub(crate) fn admit<'a>(
    page: &'a [TiRow],
    choice: &QueueChoice,
    room: &QueueRoom,
) -> Vec<&'a TiRow> {
    let mut on_page: HashMap<(i64, &str, i32), &TiRow> = page
        .iter()
        .map(|ti| ((ti.run_pk, ti.task_id.as_str(), ti.map_index), ti))
        .collect();
    let mut left = Room::new(
        room.pool_slots.iter().map(|(k, &v)| (k.clone(), v)),
        room.held.clone(),
    );
    let mut admitted = Vec::with_capacity(choice.keys.len());
    for key in &choice.keys {
        // Removed once taken, so a key listed again is not queued twice.
        let Some(ti) = on_page.remove(&(key.run_pk, key.task_id.as_str(), key.map_index)) else {
            continue;
        };
        let candidate = Candidate {
            dag_id: ti.dag_id.clone(),
            pool: ti.pool.clone(),
            pool_slots: i64::from(ti.pool_slots),
        };
        if left.admits(&candidate, &choice.limits) {
            left.take(&candidate);
            admitted.push(ti);
        }
    }
    admitted
}

/// The keys of `admitted`, for the backends' `queue_many`.
pub(crate) fn keys(admitted: &[&TiRow]) -> Vec<TiKey> {
    admitted.iter().map(|ti| ti.key()).collect()
}

/// `queued` (rows in any order) in the order of `admitted`; instances that were not queued
/// (changed since the page was read) are left out.
pub(crate) fn in_order(admitted: &[&TiRow], queued: Vec<TiRow>) -> Vec<TiRow> {
    let mut by_key: HashMap<TiKey, TiRow> =
        queued.into_iter().map(|row| (row.key(), row)).collect();
    admitted
        .iter()
        .filter_map(|ti| by_key.remove(&ti.key()))
        .collect()
}

/// The decisions for `running` (locked, `running` runs), in their order. The runs without a
/// focus are read whole in one statement; each run with one has its focus's instances read
/// and is read whole only if the decider asks for it.
pub(crate) async fn decide_runs<C: Db + ?Sized>(
    conn: &mut C,
    running: &[RunRow],
    decider: &dyn RunDecider,
) -> Result<Vec<RunDecision>> {
    let focuses: Vec<Option<Vec<String>>> = running.iter().map(|run| decider.focus(run)).collect();
    let whole: Vec<i64> = running
        .iter()
        .zip(&focuses)
        .filter(|(_, focus)| focus.is_none())
        .map(|(run, _)| run.id)
        .collect();
    let mut snapshots = if whole.is_empty() {
        HashMap::new()
    } else {
        task_instances::snapshots(&mut *conn, &whole).await?
    };
    let mut decisions = Vec::with_capacity(running.len());
    for (run, focus) in running.iter().zip(focuses) {
        let focused = match focus {
            Some(task_ids) => {
                let (tis, ended) =
                    task_instances::focused_snapshots(&mut *conn, run.id, &task_ids).await?;
                let progressing = task_instances::progressing(&mut *conn, run.id).await?;
                let read = RunRead {
                    tis: &tis,
                    ended: &ended,
                    progressing: Some(progressing),
                };
                decider.decide(run, &read)
            }
            None => None,
        };
        let decision = match focused {
            Some(decision) => decision,
            None => {
                let tis = match snapshots.remove(&run.id) {
                    Some(tis) => tis,
                    None => task_instances::snapshots(&mut *conn, &[run.id])
                        .await?
                        .remove(&run.id)
                        .unwrap_or_default(),
                };
                let read = RunRead {
                    tis: &tis,
                    ended: &[],
                    progressing: None,
                };
                decider.decide(run, &read).unwrap_or_default()
            }
        };
        decisions.push(decision);
    }
    Ok(decisions)
}
