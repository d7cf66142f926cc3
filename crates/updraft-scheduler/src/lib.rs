//! The scheduler: the shell around the pure core.
//!
//! It loads the DAGs folder into the store, reads recorded state, asks `updraft-core` what to
//! do, records the decisions in one transaction each, and hands runnable tries to the executor.
//! It is event-driven: a finished try wakes it at once; timers cover retries and schedules; a
//! slow poll notices changes made by other processes (CLI commands on the same database).

mod dagcache;
pub mod engine;
pub mod error;
pub mod runs;
mod selection;

pub use engine::{KubernetesConfig, Scheduler, SchedulerConfig, StateChange};
pub use error::SchedulerError;
pub use runs::{RunRequest, create_run, trigger_run};

use chrono::{DateTime, Utc};
use updraft_store::{LoadedDagRecord, Store, StoreError};

/// Record what a DAGs-folder load found: every DAG (and version), the import errors, and
/// which DAGs are gone.
pub async fn record_dag_bag(
    store: &dyn Store,
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
