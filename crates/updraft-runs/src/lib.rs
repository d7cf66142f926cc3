//! DAGs and runs as every writer records them, between the store and the components that write.
//!
//! The scheduler, the API server and the CLI all record DAGs-folder loads and create runs; the
//! scheduler publishes what changed and the server's live views follow it. What they share
//! lives here, on top of `updraft-dag`, `updraft-core` and `updraft-store` only, so the server
//! needs neither the scheduler nor an executor (nor the Kubernetes client they bring).
//!
//! - [`create_run`] (and [`trigger_run`] for a manual run): a run of a DAG version with its
//!   task instances, its conf checked against the DAG's params and its size
//!   ([`MAX_CONF_BYTES`]), its run id in Airflow's form.
//! - [`record_dag_bag`]: what a DAGs-folder load found, recorded.
//! - [`StateChange`]: the notice that a run or one of its task instances changed.

mod changes;
mod create;
mod dags;
mod error;

pub use changes::StateChange;
pub use create::{MAX_CONF_BYTES, RunRequest, create_asset_triggered_run, create_run, trigger_run};
pub use dags::record_dag_bag;
pub use error::RunError;
