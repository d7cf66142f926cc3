//! What a sensor's poke turns into: success, another poke later (`up_for_reschedule`), or a
//! timeout (failed, or skipped with `soft_fail`). Airflow's `BaseSensorOperator` in
//! `mode="reschedule"`, the only mode: between two pokes the instance holds no slot.
//!
//! ## Timeout
//!
//! The timeout is counted from the instance's first poke (`first_poke`), not from the current
//! poke: a sensor waiting for days is rescheduled many times, and the timeout bounds them all.
//! A poke that is not done at or after `first_poke + timeout` times the sensor out. Airflow
//! raises `AirflowSensorTimeout`, which is not retried: neither is this outcome. A poke that
//! *errors* is an ordinary failed try, with the task's retries ([`crate::retry`]).
//!
//! ## Next poke
//!
//! Without `exponential_backoff` the wait is `poke_interval`. With it, the wait after the `n`-th
//! poke that is not done is `poke_interval * 2^(n-1)` (1×, 2×, 4×, …), capped by `max_wait`.
//! Airflow adds a hash-based jitter to the backoff; updraft adds none, as for retries. The wait
//! is at least [`MIN_POKE_WAIT`], so a sensor can never spin.
//!
//! The next poke is never later than the deadline `first_poke + timeout`: the last poke happens
//! at the deadline, so a condition that turns true just before it is still seen, and a sensor
//! never outlives its timeout by more than the poke at the deadline itself. (Airflow without
//! backoff pokes at `poke_interval` steps and times out at the first poke past the deadline, up
//! to one interval late.)
//!
//! A poke may know when to look again: a time sensor's target time, for which no poke is needed
//! before it ([`PokeResult::NotBefore`]). Such a sensor is rescheduled straight to that time
//! (still capped by the deadline).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use updraft_dag::SensorTiming;

use crate::state::TaskState;

/// The shortest wait between two pokes.
pub const MIN_POKE_WAIT: Duration = Duration::from_secs(1);

/// What one poke found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PokeResult {
    /// The condition holds: the sensor succeeds.
    Done,
    /// Not yet: poke again after the wait.
    NotYet,
    /// Not yet, and not before this time: poke again then.
    NotBefore(DateTime<Utc>),
}

/// The time at which a sensor whose first poke was at `first_poke` times out.
pub fn sensor_deadline(timing: &SensorTiming, first_poke: DateTime<Utc>) -> DateTime<Utc> {
    add(first_poke, timing.timeout)
}

/// The wait after the `poke_number`-th poke (1-based; 0 is taken as 1) that was not done.
pub fn poke_wait(timing: &SensorTiming, poke_number: u32) -> Duration {
    let wait = if timing.exponential_backoff {
        let exponent = poke_number.max(1) - 1;
        let doubled = 2u32
            .checked_pow(exponent)
            .and_then(|factor| timing.poke_interval.checked_mul(factor))
            .unwrap_or(Duration::MAX);
        timing.max_wait.map_or(doubled, |cap| doubled.min(cap))
    } else {
        timing.poke_interval
    };
    wait.max(MIN_POKE_WAIT)
}

/// What the `poke_number`-th poke (1-based) of a sensor first poked at `first_poke` turns
/// into, at `now`: `(success, None)`, `(up_for_reschedule, Some(next poke))`, or on timeout
/// `(failed, None)` (`(skipped, None)` with `soft_fail`). A next poke is always after `now` and
/// not after the deadline.
pub fn on_poke(
    timing: &SensorTiming,
    first_poke: DateTime<Utc>,
    poke_number: u32,
    result: PokeResult,
    now: DateTime<Utc>,
) -> (TaskState, Option<DateTime<Utc>>) {
    if result == PokeResult::Done {
        return (TaskState::Success, None);
    }
    let deadline = sensor_deadline(timing, first_poke);
    if now >= deadline {
        let state = if timing.soft_fail {
            TaskState::Skipped
        } else {
            TaskState::Failed
        };
        return (state, None);
    }
    let next = match result {
        PokeResult::NotBefore(at) if at > now => at,
        _ => add(now, poke_wait(timing, poke_number)),
    };
    (TaskState::UpForReschedule, Some(next.min(deadline)))
}

fn add(at: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(wait)
        .ok()
        .and_then(|delta| at.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
