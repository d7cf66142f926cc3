//! Why a run could not be created.

use updraft_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("DAG `{0}` not found")]
    DagNotFound(String),
    #[error("invalid run configuration for DAG `{dag_id}`: {message}")]
    InvalidConf { dag_id: String, message: String },
    #[error("DAG run `{run_id}` already exists for DAG `{dag_id}`")]
    RunExists { dag_id: String, run_id: String },
}
