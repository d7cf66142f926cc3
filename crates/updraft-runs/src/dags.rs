//! Recording a DAGs-folder load: the DAG versions runs are pinned to.

use chrono::{DateTime, Utc};
use updraft_store::{LoadedDagRecord, SchedulerStore, StoreError};

/// Record what a DAGs-folder load found: every DAG (and version), the import errors, and
/// which DAGs are gone.
pub async fn record_dag_bag(
    store: &dyn SchedulerStore,
    bag: &updraft_dag::DagBag,
    paused_by_default: bool,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let records: Vec<LoadedDagRecord<'_>> = bag
        .dags()
        .map(|loaded| LoadedDagRecord {
            dag: &loaded.dag,
            version: &loaded.version,
            source: &loaded.source,
        })
        .collect();
    store
        .sync_dags(&records, bag.import_errors(), paused_by_default, now)
        .await
}
