//! Pinned DAG definitions by (dag_id, version), loaded from the store once and shared.

use std::collections::HashMap;
use std::sync::Arc;

use updraft_core::index::DagIndex;
use updraft_dag::Dag;
use updraft_store::ReadStore;

use crate::SchedulerError;

/// A DAG version with what the hot path derives from it, computed once.
pub struct CachedDag {
    pub dag: Dag,
    pub index: DagIndex,
}

impl CachedDag {
    /// The task `task_id`, found through the index: `Dag::task` searches the tasks one by one,
    /// which per try of a big run makes the run quadratic.
    pub fn task(&self, task_id: &str) -> Option<&updraft_dag::Task> {
        self.index
            .position(task_id)
            .and_then(|p| self.dag.tasks.get(p))
    }
}

#[derive(Default)]
pub struct DagCache {
    entries: HashMap<(String, String), Arc<CachedDag>>,
}

impl DagCache {
    pub async fn get(
        &mut self,
        store: &dyn ReadStore,
        dag_id: &str,
        version: &str,
    ) -> Result<Arc<CachedDag>, SchedulerError> {
        let key = (dag_id.to_string(), version.to_string());
        if let Some(found) = self.entries.get(&key) {
            return Ok(found.clone());
        }
        let dag = store.dag_version(dag_id, version).await?.ok_or_else(|| {
            SchedulerError::VersionMissing {
                dag_id: dag_id.to_string(),
                version: version.to_string(),
            }
        })?;
        let entry = Arc::new(CachedDag::new(dag));
        self.entries.insert(key, entry.clone());
        Ok(entry)
    }
}

impl CachedDag {
    pub fn new(dag: Dag) -> Self {
        let index = DagIndex::new(&dag);
        CachedDag { dag, index }
    }
}
