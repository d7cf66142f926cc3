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

impl SchedulerError {
    /// Whether no retry can mend this: the database is corrupt. The loop stops on it rather
    /// than retry for ever.
    pub fn is_fatal(&self) -> bool {
        match self {
            SchedulerError::Store(e) | SchedulerError::Run(RunError::Store(e)) => {
                e.is_database_corrupt()
            }
            _ => false,
        }
    }
}
