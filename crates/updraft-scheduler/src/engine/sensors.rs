//! Sensors, the scheduler's part: what a poke's launch reads (the try's pokes so far, from
//! `task_reschedule`), what a poke becomes (the core's [`on_poke`]: success, another poke at
//! a time kept in `retry_at`, or a timeout), and the read of other DAGs' states that
//! `external_task` checks make, through the store and only within the sensor's tenant.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use updraft_core::TaskState;
use updraft_core::sensor::on_poke;
use updraft_dag::{Task, TaskKind};
use updraft_executor::{ExternalQuery, Poke, SensorProgram, SensorStates, StatesFuture};
use updraft_store::{Store, StoreError, TiKey};

/// [`SensorStates`] over the store.
pub(super) struct StoreStates {
    pub(super) store: Arc<dyn Store>,
}

impl std::fmt::Debug for StoreStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreStates")
    }
}

impl SensorStates for StoreStates {
    fn external_state<'a>(&'a self, query: &'a ExternalQuery) -> StatesFuture<'a> {
        Box::pin(async move {
            self.store
                .external_state(
                    &query.tenant,
                    &query.dag_id,
                    query.logical_date,
                    query.task_id.as_deref(),
                )
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Puts the try's pokes so far into a rendered sensor: its first poke (where `timeout`
/// counts from) and how many rescheduled.
pub(super) async fn add_progress(
    store: &dyn Store,
    key: &TiKey,
    try_number: u32,
    sensor: &mut SensorProgram,
) -> Result<(), StoreError> {
    let rows = store.reschedules(key, try_number).await?;
    sensor.first_poke = rows.first().map(|r| r.start_date);
    sensor.rescheduled = u32::try_from(rows.len()).unwrap_or(u32::MAX);
    Ok(())
}

/// What `poke` of a try of `task` that ended at `at` becomes: `(state, next poke)`. A task
/// that is not (or no longer) a sensor fails.
pub(super) fn poke_outcome(
    task: &Task,
    poke: &Poke,
    at: DateTime<Utc>,
) -> (TaskState, Option<DateTime<Utc>>) {
    match &task.kind {
        TaskKind::Sensor(sensor) => on_poke(
            &sensor.timing,
            poke.first_poke,
            poke.poke_number,
            poke.result,
            at,
        ),
        _ => (TaskState::Failed, None),
    }
}
