//! Recording a DAGs-folder load: the DAG versions runs are pinned to.

use chrono::{DateTime, Utc};
use updraft_store::{BundleRef, LoadedDagRecord, SchedulerStore, StoreError};

/// Record what a DAGs-folder load found: every DAG (and version), the import errors, and
/// which DAGs are gone. A DAG read from a DAG source carries its bundle: the source's name
/// and the revision the bag read it at.
///
/// A dag_id belongs to the tenant that first registered it (in the store, so across restarts
/// and schedulers): the load is resolved with the registered owners, so the owner's file keeps
/// its dag_id and another tenant's file declaring it is an import error in that file. A dag_id
/// no one owns yet that several tenants' files declare goes to the file whose path sorts first.
pub async fn record_dag_bag(
    store: &dyn SchedulerStore,
    bag: &updraft_dag::DagBag,
    paused_by_default: bool,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let owners = store.dag_owners().await?;
    let (dags, errors) = bag.resolve_with_owners(&owners);
    let records: Vec<LoadedDagRecord<'_>> = dags
        .iter()
        .map(|loaded| LoadedDagRecord {
            dag: &loaded.dag,
            version: &loaded.version,
            source: &loaded.source,
            bundle: loaded.bundle.as_deref().map(|name| BundleRef {
                name,
                version: bag.bundle_version(name),
            }),
        })
        .collect();
    store
        .sync_dags(&records, &errors, paused_by_default, now)
        .await
}
