//! Sensors, the scheduler's part: what a poke's launch reads (the try's pokes so far, from
//! `task_reschedule`), what a poke becomes (the core's [`on_poke`]: success, another poke at
//! a time kept in `retry_at`, or a timeout), and the read of other DAGs' states that
//! `external_task` checks make, through the store and only within the sensor's tenant.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use updraft_core::TaskState;
use updraft_core::sensor::on_poke;
use updraft_dag::{Task, TaskKind};
use updraft_executor::sensor::TRIGGER_RUN_ID;
use updraft_executor::{ExternalQuery, Poke, PokeCheck, SensorProgram, SensorStates, StatesFuture};
use updraft_store::{Store, StoreError, TiKey, XComQuery};

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

/// Puts the try's progress into a rendered sensor: its first poke (where `timeout` counts
/// from), how many rescheduled and, for a `trigger_dag_run` task, the run an earlier poke of
/// the try started (its `trigger_run_id` XCom).
pub(super) async fn add_progress(
    store: &dyn Store,
    key: &TiKey,
    try_number: u32,
    sensor: &mut SensorProgram,
) -> Result<(), StoreError> {
    let rows = store.reschedules(key, try_number).await?;
    sensor.first_poke = rows.first().map(|r| r.start_date);
    sensor.rescheduled = u32::try_from(rows.len()).unwrap_or(u32::MAX);
    if let PokeCheck::TriggerDagRun(request) = &mut sensor.check {
        request.triggered = triggered_run(store, key).await?;
    }
    Ok(())
}

/// The `trigger_run_id` XCom of the instance's current try, if it pushed one.
async fn triggered_run(store: &dyn Store, key: &TiKey) -> Result<Option<String>, StoreError> {
    let query = XComQuery {
        run_pk: key.run_pk,
        task_ids: Some(vec![key.task_id.clone()]),
        map_index: Some(i64::from(key.map_index)),
        key: Some(TRIGGER_RUN_ID.to_owned()),
        limit: Some(1),
        offset: 0,
    };
    let (rows, _) = store.xcoms(&query).await?;
    Ok(rows
        .first()
        .and_then(|row| serde_json::from_str::<String>(&row.value).ok()))
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
