//! The backend-neutral part of queueing inside [`crate::Store::record_evaluate_and_queue`]:
//! which of the selector's keys are queued (those on the page, once each, that the room still
//! admits, by the same rule as [`crate::Store::queue`]) and the queued rows put back in the
//! selector's order.

use std::collections::HashMap;

use crate::room::{Candidate, Room};
use crate::{QueueChoice, QueueRoom, TiKey, TiRow};

/// The keys of `choice` to queue, in its order: each found on `page` (still `scheduled` when
/// the page was read), listed for the first time, and admitted by the room as the keys
/// before it are taken.
pub(crate) fn admit<'a>(
    page: &'a [TiRow],
    choice: &QueueChoice,
    room: &QueueRoom,
) -> Vec<&'a TiRow> {
    let mut on_page: HashMap<(i64, &str), &TiRow> = page
        .iter()
        .map(|ti| ((ti.run_pk, ti.task_id.as_str()), ti))
        .collect();
    let mut left = Room::new(
        room.pool_slots.iter().map(|(k, &v)| (k.clone(), v)),
        room.held.clone(),
    );
    let mut admitted = Vec::with_capacity(choice.keys.len());
    for key in &choice.keys {
        // Removed once taken, so a key listed again is not queued twice.
        let Some(ti) = on_page.remove(&(key.run_pk, key.task_id.as_str())) else {
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
    admitted
        .iter()
        .map(|ti| TiKey {
            run_pk: ti.run_pk,
            task_id: ti.task_id.clone(),
        })
        .collect()
}

/// `queued` (rows in any order) in the order of `admitted`; instances that were not queued
/// (changed since the page was read) are left out.
pub(crate) fn in_order(admitted: &[&TiRow], queued: Vec<TiRow>) -> Vec<TiRow> {
    let mut by_key: HashMap<(i64, String), TiRow> = queued
        .into_iter()
        .map(|row| ((row.run_pk, row.task_id.clone()), row))
        .collect();
    admitted
        .iter()
        .filter_map(|ti| by_key.remove(&(ti.run_pk, ti.task_id.clone())))
        .collect()
}
