//! Errors the scheduler reports to its callers.

use updraft_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("DAG `{0}` not found")]
    DagNotFound(String),
    #[error("DAG `{dag_id}` version `{version}` is missing from the store")]
    VersionMissing { dag_id: String, version: String },
    #[error("invalid run configuration for DAG `{dag_id}`: {message}")]
    InvalidConf { dag_id: String, message: String },
    #[error("DAG run `{run_id}` already exists for DAG `{dag_id}`")]
    RunExists { dag_id: String, run_id: String },
    #[error("{0}")]
    Other(String),
}
