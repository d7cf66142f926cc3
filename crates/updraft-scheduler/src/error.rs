//! Errors the scheduler reports to its callers.

use updraft_runs::RunError;
use updraft_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("DAG `{dag_id}` version `{version}` is missing from the store")]
    VersionMissing { dag_id: String, version: String },
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("{0}")]
    Other(String),
}
