//! The pure scheduling core.
//!
//! Given DAGs, recorded state and the current time, it returns decisions: which runs to create,
//! which task instances become schedulable, skipped or upstream_failed, which to queue within
//! pools and concurrency limits, what a finished try turns into, and when a run is over.
//! No I/O, no clock, no async, no randomness: every input is an argument, so property tests can
//! drive it, and every output is in a deterministic order.
//!
//! * [`timetable`]: data intervals of scheduled, manual and backfill runs (Airflow 2 timetables).
//! * [`branch`]: which downstream tasks a branch's or short circuit's value skips.
//! * [`evaluate`]: trigger rules, skip/upstream_failed propagation, run state.
//! * [`retry`]: what a finished try becomes, retry delays.
//! * [`sensor`]: what a sensor's poke becomes, when it pokes again, its timeout.
//! * [`queue`]: choosing what to queue within pools, DAG limits and parallelism; priorities.
//! * [`runs`]: how many runs may start; run ids.
//! * [`mapping`]: dynamic task mapping: how many instances a mapped task expands to.
//! * [`index`]: a cacheable per-DAG graph index for the hot paths.
//! * [`timeout`]: `dagrun_timeout`: when a run has run too long.
//! * [`assets`]: asset conditions and which consumer DAGs get an asset-triggered run.

pub mod assets;
pub mod branch;
pub mod evaluate;
pub mod index;
pub mod mapping;
pub mod queue;
pub mod retry;
pub mod runs;
pub mod sensor;
pub mod state;
pub mod timeout;
pub mod timetable;

pub use assets::{AssetRun, Consumer, QueuedEvent, asset_triggered_runs, condition_holds};
pub use branch::{BranchError, branch_skips, is_truthy};
pub use evaluate::{
    EndedInstances, RunEvaluation, TiSnapshot, TriggerDecision, UpstreamCounts, evaluate_run,
    evaluate_run_focused, evaluate_run_indexed, focus, trigger_decision,
};
pub use index::DagIndex;
pub use queue::{Candidate, Capacity, priority_weights, select_to_queue};
pub use retry::{TryOutcome, on_try_finished, retry_delay};
pub use runs::{backfill_run_id, manual_run_id, runs_to_start, scheduled_run_id};
pub use sensor::{PokeResult, on_poke, poke_wait, sensor_deadline};
pub use state::*;
pub use timetable::{
    DataInterval, due_intervals, intervals_between, manual_interval, next_interval,
};
