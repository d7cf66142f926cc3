//! The scheduler: the shell around the pure core.
//!
//! It loads the DAGs folder into the store, reads recorded state, asks `updraft-core` what to
//! do, records the decisions in one transaction each, and hands runnable tries to the executor.
//! It is event-driven: a finished try wakes it at once; timers cover retries and schedules; a
//! slow poll notices changes made by other processes (CLI commands on the same database).
//!
//! Run creation, DAGs-folder records and the change notices it publishes are shared with the
//! API server and the CLI through `updraft-runs`.

mod dagcache;
pub mod engine;
pub mod error;
mod selection;

pub use engine::{KubernetesConfig, LOG_FLUSH_WAIT, Scheduler, SchedulerConfig};
pub use error::SchedulerError;
/// The retry settings of notifications, as [`SchedulerConfig::notification_retry`] takes them.
pub use updraft_notify::RetryPolicy as NotificationRetry;
