//! `dagrun_timeout`: the core's decision against Airflow's cases (`_schedule_dag_run` and its
//! tests in `tests/jobs/test_scheduler_job.py`: a run started a day ago with a 60 s timeout is
//! failed, its unfinished instances skipped; one within its timeout is left running) and
//! property tests over any start, timeout and time.

mod common;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::{dag, task, utc};
use proptest::prelude::*;
use updraft_core::TaskState;
use updraft_core::timeout::{run_deadline, run_timed_out, skipped_on_timeout};
use updraft_dag::{Dag, Schedule};

fn with_timeout(timeout: Option<Duration>) -> Dag {
    let mut d = dag(Schedule::None, vec![task("a", &[])]);
    d.dagrun_timeout = timeout;
    d
}

#[test]
fn airflow_a_run_started_a_day_ago_with_a_60s_timeout_has_timed_out() {
    // test_dagrun_timeout_fails_run: start_date = now - 1 day, dagrun_timeout = 60 s.
    let now = utc(2026, 1, 2, 0, 0);
    let d = with_timeout(Some(Duration::from_secs(60)));
    assert!(run_timed_out(
        &d,
        Some(now - chrono::Duration::days(1)),
        now
    ));
}

#[test]
fn airflow_a_run_within_its_timeout_keeps_running() {
    // test_dagrun_timeout_verify_max_active_runs: a fresh run under a 60 s timeout.
    let now = utc(2026, 1, 2, 0, 0);
    let d = with_timeout(Some(Duration::from_secs(60)));
    assert!(!run_timed_out(
        &d,
        Some(now - chrono::Duration::seconds(30)),
        now
    ));
    assert!(
        !run_timed_out(&d, Some(now - chrono::Duration::seconds(60)), now),
        "exactly at the deadline is not past it (Airflow: start_date < now - timeout)"
    );
}

#[test]
fn airflow_unfinished_instances_are_skipped_finished_ones_kept() {
    // `State.unfinished` (up_for_reschedule included) → skipped; success, failed, skipped, upstream_failed, removed stay.
    let skipped: Vec<TaskState> = TaskState::ALL
        .into_iter()
        .filter(|s| skipped_on_timeout(*s))
        .collect();
    assert_eq!(
        skipped,
        [
            TaskState::None,
            TaskState::Scheduled,
            TaskState::Queued,
            TaskState::Running,
            TaskState::UpForRetry,
            TaskState::UpForReschedule,
        ]
    );
}

#[test]
fn no_timeout_or_no_start_never_times_out() {
    let now = utc(2026, 1, 2, 0, 0);
    let start = Some(utc(2000, 1, 1, 0, 0));
    assert!(!run_timed_out(&with_timeout(None), start, now));
    assert_eq!(run_deadline(&with_timeout(None), start), None);
    let d = with_timeout(Some(Duration::from_secs(1)));
    assert!(
        !run_timed_out(&d, None, now),
        "a queued run has not started"
    );
}

fn instant(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).unwrap()
}

proptest! {
    #[test]
    fn a_run_times_out_exactly_when_it_has_run_longer_than_its_timeout(
        start in 0i64..4_000_000_000,
        timeout in 1u64..10_000_000,
        elapsed in -1_000i64..20_000_000,
    ) {
        let d = with_timeout(Some(Duration::from_secs(timeout)));
        let start_at = instant(start);
        let now = instant(start + elapsed);
        prop_assert_eq!(run_timed_out(&d, Some(start_at), now), elapsed > timeout as i64);
        let deadline = run_deadline(&d, Some(start_at)).unwrap();
        prop_assert_eq!(run_timed_out(&d, Some(start_at), now), now > deadline);
    }

    #[test]
    fn once_timed_out_a_run_stays_timed_out(
        start in 0i64..4_000_000_000,
        timeout in 1u64..10_000_000,
        first in 0i64..20_000_000,
        later in 0i64..20_000_000,
    ) {
        let d = with_timeout(Some(Duration::from_secs(timeout)));
        let start_at = Some(instant(start));
        if run_timed_out(&d, start_at, instant(start + first)) {
            prop_assert!(run_timed_out(&d, start_at, instant(start + first + later)));
        }
    }
}
