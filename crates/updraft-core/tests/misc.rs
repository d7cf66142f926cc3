//! Retry, queue, priority and run-id unit tests.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use common::{dag, task, utc};
use updraft_core::TaskState;
use updraft_core::queue::{Candidate, Capacity, priority_weights, select_to_queue};
use updraft_core::retry::{
    TryOutcome, initial_max_tries, max_tries_after_clear, on_try_finished, retry_delay,
};
use updraft_core::runs::{
    backfill_run_id, manual_run_id, runs_to_create, runs_to_start, scheduled_run_id,
};
use updraft_dag::{Schedule, WeightRule};

#[test]
fn tries_up_to_retries_plus_one() {
    let mut t = task("t", &[]);
    t.retries = 2;
    t.retry_delay = Duration::from_secs(60);
    let now = utc(2024, 1, 1, 0, 0);
    let max = initial_max_tries(&t);
    assert_eq!(max, 3);
    assert_eq!(
        on_try_finished(&t, 1, max, TryOutcome::Failed, now),
        (TaskState::UpForRetry, Some(now + TimeDelta::seconds(60)))
    );
    assert_eq!(
        on_try_finished(&t, 2, max, TryOutcome::TimedOut, now),
        (TaskState::UpForRetry, Some(now + TimeDelta::seconds(60)))
    );
    assert_eq!(
        on_try_finished(&t, 3, max, TryOutcome::Failed, now),
        (TaskState::Failed, None)
    );
    assert_eq!(
        on_try_finished(&t, 3, max, TryOutcome::Success, now),
        (TaskState::Success, None)
    );
    assert_eq!(
        on_try_finished(&t, 1, max, TryOutcome::Skipped, now),
        (TaskState::Skipped, None)
    );
    // Cleared after 3 tries: three more.
    let max = max_tries_after_clear(&t, 3);
    assert_eq!(max, 6);
    assert_eq!(
        on_try_finished(&t, 5, max, TryOutcome::Failed, now).0,
        TaskState::UpForRetry
    );
    assert_eq!(
        on_try_finished(&t, 6, max, TryOutcome::Failed, now).0,
        TaskState::Failed
    );
    // No retries: the first failure is final.
    t.retries = 0;
    assert_eq!(
        on_try_finished(&t, 1, initial_max_tries(&t), TryOutcome::TimedOut, now),
        (TaskState::Failed, None)
    );
}

#[test]
fn exponential_backoff_doubles_and_is_capped() {
    let mut t = task("t", &[]);
    t.retry_delay = Duration::from_secs(10);
    assert_eq!(retry_delay(&t, 1), Duration::from_secs(10));
    assert_eq!(retry_delay(&t, 7), Duration::from_secs(10));
    t.retry_exponential_backoff = true;
    let got: Vec<u64> = (1..=5).map(|n| retry_delay(&t, n).as_secs()).collect();
    assert_eq!(got, vec![10, 20, 40, 80, 160]);
    // Default cap: 24 hours (10 s * 2^14 = 163840 s > 86400 s).
    assert_eq!(retry_delay(&t, 15), Duration::from_secs(86_400));
    assert_eq!(retry_delay(&t, 1000), Duration::from_secs(86_400));
    t.max_retry_delay = Some(Duration::from_secs(60));
    assert_eq!(retry_delay(&t, 3), Duration::from_secs(40));
    assert_eq!(retry_delay(&t, 4), Duration::from_secs(60));
    assert_eq!(retry_delay(&t, u32::MAX), Duration::from_secs(60));
    t.retry_delay = Duration::ZERO;
    assert_eq!(retry_delay(&t, 200), Duration::ZERO);
    // The backoff shows up in retry_at.
    t.retry_delay = Duration::from_secs(10);
    t.retries = 5;
    let now = utc(2024, 1, 1, 0, 0);
    assert_eq!(
        on_try_finished(&t, 3, 6, TryOutcome::Failed, now).1,
        Some(now + TimeDelta::seconds(40))
    );
}

fn cand(dag_id: &str, pool: &str, slots: u32, prio: i64, day: u32, task_id: &str) -> Candidate {
    Candidate {
        dag_id: dag_id.to_string(),
        pool: pool.to_string(),
        pool_slots: slots,
        priority_weight: prio,
        logical_date: utc(2024, 1, day, 0, 0),
        task_id: task_id.to_string(),
    }
}

fn capacity(pools: &[(&str, i64)], dags: &[(&str, i64)], parallelism: i64) -> Capacity {
    Capacity {
        pool_free: pools.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        dag_free: dags.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        parallelism_free: parallelism,
        task_free: Default::default(),
    }
}

#[test]
fn queue_order_is_priority_then_date_then_task_id() {
    let cs = vec![
        cand("d", "p", 1, 1, 2, "a"),
        cand("d", "p", 1, 5, 3, "z"),
        cand("d", "p", 1, 1, 1, "b"),
        cand("d", "p", 1, 1, 2, "0"),
    ];
    let cap = capacity(&[("p", 10)], &[("d", 10)], 10);
    assert_eq!(select_to_queue(&cs, &cap), vec![1, 2, 3, 0]);
}

#[test]
fn queue_respects_limits_without_blocking_smaller_candidates() {
    let cs = vec![
        cand("d", "p", 3, 9, 1, "big"),   // needs 3 slots, only 2 free
        cand("d", "p", 2, 5, 1, "small"), // fits
        cand("d", "p", 1, 4, 1, "tiny"),  // pool now full
        cand("e", "q", 1, 3, 1, "other"), // DAG e full
        cand("d", "nope", 1, 8, 1, "x"),  // unknown pool
        cand("f", "q", 1, 2, 1, "y"),     // DAG f: no limit given
        cand("d", "q", 1, 1, 1, "last"),
    ];
    let cap = capacity(&[("p", 2), ("q", 5)], &[("d", 5), ("e", 0)], 10);
    assert_eq!(select_to_queue(&cs, &cap), vec![1, 5, 6]);
    let cap = capacity(&[("p", 2), ("q", 5)], &[("d", 1), ("e", 0)], 10);
    assert_eq!(select_to_queue(&cs, &cap), vec![1, 5]);
    let cap = capacity(&[("p", 1), ("q", 1)], &[("d", 5), ("e", 0)], 10);
    assert_eq!(
        select_to_queue(&cs, &cap),
        vec![2, 5],
        "f, without a limit, takes q's last slot"
    );
    let cap = capacity(&[("p", 2), ("q", 5)], &[("d", 5), ("e", 1)], 1);
    assert_eq!(select_to_queue(&cs, &cap), vec![1]);
    let cap = capacity(&[("p", 2), ("q", 5)], &[("d", 5), ("e", 1)], 0);
    assert_eq!(select_to_queue(&cs, &cap), Vec::<usize>::new());
}

#[test]
fn priority_weight_rules() {
    // a -> b, a -> c, b -> d, c -> d (a diamond), weights 1, 2, 3, 4; e isolated, weight 100.
    let mut tasks = vec![
        task("a", &[]),
        task("b", &["a"]),
        task("c", &["a"]),
        task("d", &["b", "c"]),
        task("e", &[]),
    ];
    for (t, w) in tasks.iter_mut().zip([1, 2, 3, 4, 100]) {
        t.priority_weight = w;
    }
    let d = dag(Schedule::None, tasks.clone());
    let expect: HashMap<String, i64> = [("a", 10), ("b", 6), ("c", 7), ("d", 4), ("e", 100)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(priority_weights(&d), expect);
    for t in &mut tasks {
        t.weight_rule = WeightRule::Upstream;
    }
    let d = dag(Schedule::None, tasks.clone());
    let expect: HashMap<String, i64> = [("a", 1), ("b", 3), ("c", 4), ("d", 10), ("e", 100)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(priority_weights(&d), expect);
    for t in &mut tasks {
        t.weight_rule = WeightRule::Absolute;
    }
    let d = dag(Schedule::None, tasks);
    assert_eq!(priority_weights(&d)["a"], 1);
    assert_eq!(priority_weights(&d)["d"], 4);
}

#[test]
fn runs_limits() {
    assert_eq!(runs_to_start(16, 0, 3), 3);
    assert_eq!(runs_to_start(2, 1, 3), 1);
    assert_eq!(runs_to_start(2, 5, 3), 0);
    assert_eq!(runs_to_start(0, 0, 3), 0);
    assert_eq!(runs_to_create(3, 1), 2);
    assert_eq!(runs_to_create(3, 4), 0);
}

#[test]
fn run_ids_look_like_airflow() {
    let d = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    assert_eq!(scheduled_run_id(d), "scheduled__2024-01-01T00:00:00+00:00");
    assert_eq!(manual_run_id(d), "manual__2024-01-01T00:00:00+00:00");
    assert_eq!(backfill_run_id(d), "backfill__2024-01-01T00:00:00+00:00");
    let d = Utc.with_ymd_and_hms(2024, 12, 31, 23, 59, 7).unwrap()
        + TimeDelta::nanoseconds(123_456_789);
    assert_eq!(manual_run_id(d), "manual__2024-12-31T23:59:07.123456+00:00");
    let d = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + TimeDelta::nanoseconds(500);
    assert_eq!(manual_run_id(d), "manual__2024-01-01T00:00:00+00:00");
}
