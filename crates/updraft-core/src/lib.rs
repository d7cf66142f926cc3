//! The pure scheduling core.
//!
//! Given DAGs, recorded state and the current time, it returns decisions: which runs to create,
//! which task instances become schedulable, skipped or upstream_failed, which to queue within
//! pools and concurrency limits, what a finished try turns into, and when a run is over.
//! No I/O, no clock, no async: every input is an argument, so property tests can drive it.

pub mod state;

pub use state::*;
