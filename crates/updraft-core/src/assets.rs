//! Asset-triggered runs (Airflow's `AssetTriggeredTimetable` and `asset_dag_run_queue`).
//!
//! Each asset event is queued for every DAG of the same tenant whose asset condition names
//! its URI. A consumer gets a run when its condition holds over the URIs of its queued events;
//! that run consumes every event queued for it, so an event triggers each consumer at most
//! once.

use std::collections::BTreeSet;

use updraft_dag::AssetCondition;

/// Whether `condition` holds when exactly the URIs for which `updated` is true have events
/// (Airflow's `evaluate(statuses)`: an asset with no status is not updated).
pub fn condition_holds(condition: &AssetCondition, updated: &impl Fn(&str) -> bool) -> bool {
    match condition {
        AssetCondition::Asset(uri) => updated(uri),
        AssetCondition::All(items) => items.iter().all(|c| condition_holds(c, updated)),
        AssetCondition::Any(items) => items.iter().any(|c| condition_holds(c, updated)),
    }
}

/// One event queued for a consumer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueuedEvent {
    pub event_id: i64,
    pub uri: String,
}

/// An asset-triggered DAG and the events queued for it.
#[derive(Debug, Clone, Copy)]
pub struct Consumer<'a> {
    pub dag_id: &'a str,
    pub condition: &'a AssetCondition,
    pub queued: &'a [QueuedEvent],
}

/// A run to create for a consumer and the events it consumes (Airflow's
/// `consumed_asset_events`), ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRun {
    pub dag_id: String,
    pub consumed: Vec<i64>,
}

/// The consumers whose condition their queued events satisfy, in the order given, each with
/// every event queued for it (events of URIs the condition no longer names included, so a
/// changed condition leaves nothing stuck).
pub fn asset_triggered_runs(consumers: &[Consumer<'_>]) -> Vec<AssetRun> {
    consumers
        .iter()
        .filter(|c| !c.queued.is_empty())
        .filter_map(|c| {
            let uris: BTreeSet<&str> = c.queued.iter().map(|e| e.uri.as_str()).collect();
            condition_holds(c.condition, &|uri| uris.contains(uri)).then(|| {
                let consumed: BTreeSet<i64> = c.queued.iter().map(|e| e.event_id).collect();
                AssetRun {
                    dag_id: c.dag_id.to_owned(),
                    consumed: consumed.into_iter().collect(),
                }
            })
        })
        .collect()
}
