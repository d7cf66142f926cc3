//! What a finished try turns into, and how long to wait before the next one.
//!
//! ## Try numbering
//!
//! `try_number` is 1 for an instance's first try and grows by one with every try started.
//! The store keeps, per instance, `max_tries`: a try that fails (or times out) goes
//! `up_for_retry` when `try_number < max_tries`, and `failed` otherwise. So:
//!
//! * a new instance gets `max_tries = retries + 1` ([`initial_max_tries`]), which allows
//!   `retries + 1` tries in total;
//! * clearing an instance after `t` tries keeps `try_number` counting on (the next try is
//!   `t + 1`) and sets `max_tries = t + retries + 1` ([`max_tries_after_clear`]), which again
//!   allows `retries + 1` more tries.
//!
//! ## Delay
//!
//! Without exponential backoff the delay is `retry_delay`, whatever the try (not capped by
//! `max_retry_delay`, as in Airflow). With `retry_exponential_backoff`, the delay after try `t`
//! fails is `retry_delay * 2^(t-1)` (1×, 2×, 4×, …), capped by `max_retry_delay`, or by 24 hours
//! when that is unset (Airflow's default `core.max_task_retry_delay`). Airflow spreads retries
//! with a hash-based jitter; updraft adds none, so the delay is exactly the formula above.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use updraft_dag::Task;

use crate::state::TaskState;

/// Cap on exponential backoff when a task sets no `max_retry_delay`.
pub const DEFAULT_MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// How a try ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TryOutcome {
    Success,
    Skipped,
    Failed,
    TimedOut,
}

/// `max_tries` of a new instance: `retries + 1`.
pub fn initial_max_tries(task: &Task) -> u32 {
    task.retries.saturating_add(1)
}

/// `max_tries` of an instance cleared after `tries_done` tries: `tries_done + retries + 1`.
pub fn max_tries_after_clear(task: &Task, tries_done: u32) -> u32 {
    tries_done.saturating_add(initial_max_tries(task))
}

/// What a finished try turns into: success, skipped, up_for_retry (with retry_at) or failed.
/// A failed or timed-out try goes up_for_retry iff `try_number < max_tries`, with
/// `retry_at = now + retry_delay(task, try_number)`.
pub fn on_try_finished(
    task: &Task,
    try_number: u32,
    max_tries: u32,
    outcome: TryOutcome,
    now: DateTime<Utc>,
) -> (TaskState, Option<DateTime<Utc>>) {
    match outcome {
        TryOutcome::Success => (TaskState::Success, None),
        TryOutcome::Skipped => (TaskState::Skipped, None),
        TryOutcome::Failed | TryOutcome::TimedOut if try_number < max_tries => {
            let delay =
                TimeDelta::from_std(retry_delay(task, try_number)).unwrap_or(TimeDelta::MAX);
            let at = now
                .checked_add_signed(delay)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            (TaskState::UpForRetry, Some(at))
        }
        TryOutcome::Failed | TryOutcome::TimedOut => (TaskState::Failed, None),
    }
}

/// Delay before the retry that follows the failure of try `try_number` (1-based; 0 is taken as 1).
pub fn retry_delay(task: &Task, try_number: u32) -> Duration {
    if !task.retry_exponential_backoff {
        return task.retry_delay;
    }
    let cap = task.max_retry_delay.unwrap_or(DEFAULT_MAX_RETRY_DELAY);
    let exponent = try_number.max(1) - 1;
    let base = task.retry_delay.as_nanos();
    let scaled = match 1u128.checked_shl(exponent) {
        Some(factor) if exponent < 127 => base.saturating_mul(factor),
        _ if base == 0 => 0,
        _ => u128::MAX,
    };
    if scaled >= cap.as_nanos() {
        return cap;
    }
    // `scaled` < `cap`, so it fits a Duration.
    let secs = u64::try_from(scaled / 1_000_000_000).unwrap_or(u64::MAX);
    Duration::new(secs, (scaled % 1_000_000_000) as u32)
}
