//! Sensors in reschedule mode: the cases of Airflow's `tests/sensors/test_base.py`
//! (reschedule, timeout, soft_fail, exponential backoff, max_wait) as the reference, and
//! property tests of the poke decision and of how `up_for_reschedule` instances take part in a
//! run's evaluation.

mod common;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::{dag, task, utc};
use proptest::prelude::*;
use updraft_core::evaluate::{TiSnapshot, evaluate_run};
use updraft_core::sensor::{MIN_POKE_WAIT, PokeResult, on_poke, poke_wait, sensor_deadline};
use updraft_core::{RunState, TaskState};
use updraft_dag::{Schedule, SensorTiming};

fn timing(poke_interval: u64, timeout: u64) -> SensorTiming {
    SensorTiming {
        poke_interval: Duration::from_secs(poke_interval),
        timeout: Duration::from_secs(timeout),
        ..SensorTiming::default()
    }
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

// ---------------------------------------------------------------------------------------------
// Airflow's tests/sensors/test_base.py
// ---------------------------------------------------------------------------------------------

/// `test_ok`: a poke that is done succeeds.
#[test]
fn airflow_ok() {
    let t0 = utc(2026, 1, 1, 0, 0);
    assert_eq!(
        on_poke(&timing(10, 60), t0, 1, PokeResult::Done, t0),
        (TaskState::Success, None)
    );
}

/// `test_fail`: timeout 0, the first poke not done fails the sensor (AirflowSensorTimeout).
#[test]
fn airflow_fail_on_timeout() {
    let t0 = utc(2026, 1, 1, 0, 0);
    assert_eq!(
        on_poke(&timing(10, 0), t0, 1, PokeResult::NotYet, t0),
        (TaskState::Failed, None)
    );
}

/// `test_soft_fail`: the same with soft_fail skips it.
#[test]
fn airflow_soft_fail() {
    let t0 = utc(2026, 1, 1, 0, 0);
    let soft = SensorTiming {
        soft_fail: true,
        ..timing(10, 0)
    };
    assert_eq!(
        on_poke(&soft, t0, 1, PokeResult::NotYet, t0),
        (TaskState::Skipped, None)
    );
}

/// `test_ok_with_reschedule`: poke_interval 10, two pokes not done reschedule 10s later each,
/// the third succeeds.
#[test]
fn airflow_ok_with_reschedule() {
    let t = timing(10, 60);
    let t0 = utc(2026, 1, 1, 0, 0);
    assert_eq!(
        on_poke(&t, t0, 1, PokeResult::NotYet, t0),
        (TaskState::UpForReschedule, Some(t0 + secs(10)))
    );
    let t1 = t0 + secs(10);
    assert_eq!(
        on_poke(&t, t0, 2, PokeResult::NotYet, t1),
        (TaskState::UpForReschedule, Some(t1 + secs(10)))
    );
    assert_eq!(
        on_poke(&t, t0, 3, PokeResult::Done, t1 + secs(10)),
        (TaskState::Success, None)
    );
}

/// `test_fail_with_reschedule`: poke_interval 10, timeout 5. Airflow reschedules 10s later and
/// fails at that poke; updraft's next poke is at the deadline (5s), where it fails.
#[test]
fn airflow_fail_with_reschedule() {
    let t = timing(10, 5);
    let t0 = utc(2026, 1, 1, 0, 0);
    assert_eq!(
        on_poke(&t, t0, 1, PokeResult::NotYet, t0),
        (TaskState::UpForReschedule, Some(t0 + secs(5)))
    );
    assert_eq!(
        on_poke(&t, t0, 2, PokeResult::NotYet, t0 + secs(5)),
        (TaskState::Failed, None)
    );
    // A poke that comes late (a busy scheduler) fails as well.
    assert_eq!(
        on_poke(&t, t0, 2, PokeResult::NotYet, t0 + secs(11)),
        (TaskState::Failed, None)
    );
}

/// `test_soft_fail_with_reschedule`: the same with soft_fail ends skipped.
#[test]
fn airflow_soft_fail_with_reschedule() {
    let t = SensorTiming {
        soft_fail: true,
        ..timing(10, 5)
    };
    let t0 = utc(2026, 1, 1, 0, 0);
    assert_eq!(
        on_poke(&t, t0, 1, PokeResult::NotYet, t0).0,
        TaskState::UpForReschedule
    );
    assert_eq!(
        on_poke(&t, t0, 2, PokeResult::NotYet, t0 + secs(5)),
        (TaskState::Skipped, None)
    );
}

/// `test_sensor_with_exponential_backoff_off`: the interval stays poke_interval.
#[test]
fn airflow_exponential_backoff_off() {
    let t = timing(5, 60);
    for n in 1..10 {
        assert_eq!(poke_wait(&t, n), Duration::from_secs(5));
    }
}

/// `test_sensor_with_exponential_backoff_on`: the interval grows (without jitter here:
/// 5, 10, 20, ...).
#[test]
fn airflow_exponential_backoff_on() {
    let t = SensorTiming {
        exponential_backoff: true,
        ..timing(5, 3600)
    };
    let waits: Vec<u64> = (1..=5).map(|n| poke_wait(&t, n).as_secs()).collect();
    assert_eq!(waits, [5, 10, 20, 40, 80]);
}

/// `test_sensor_with_exponential_backoff_on_and_max_wait`: the interval is capped by max_wait.
#[test]
fn airflow_exponential_backoff_on_and_max_wait() {
    let t = SensorTiming {
        exponential_backoff: true,
        max_wait: Some(Duration::from_secs(30)),
        ..timing(5, 3600)
    };
    let waits: Vec<u64> = (1..=6).map(|n| poke_wait(&t, n).as_secs()).collect();
    assert_eq!(waits, [5, 10, 20, 30, 30, 30]);
}

/// A time sensor is rescheduled straight to its target time, capped by the deadline.
#[test]
fn not_before_reschedules_to_the_target() {
    let t = timing(60, 3600);
    let t0 = utc(2026, 1, 1, 0, 0);
    let target = t0 + secs(1800);
    assert_eq!(
        on_poke(&t, t0, 1, PokeResult::NotBefore(target), t0),
        (TaskState::UpForReschedule, Some(target))
    );
    let beyond = t0 + secs(7200);
    assert_eq!(
        on_poke(&t, t0, 1, PokeResult::NotBefore(beyond), t0),
        (TaskState::UpForReschedule, Some(t0 + secs(3600)))
    );
    // A target already past falls back to the interval: never a poke at `now` again.
    assert_eq!(
        on_poke(&t, t0, 1, PokeResult::NotBefore(t0), t0),
        (TaskState::UpForReschedule, Some(t0 + secs(60)))
    );
}

#[test]
fn a_zero_interval_never_spins() {
    assert_eq!(poke_wait(&timing(0, 60), 1), MIN_POKE_WAIT);
}

#[test]
fn up_for_reschedule_is_neither_terminal_nor_active() {
    assert!(!TaskState::UpForReschedule.is_terminal());
    assert!(!TaskState::UpForReschedule.is_active());
    assert_eq!(
        "up_for_reschedule".parse::<TaskState>(),
        Ok(TaskState::UpForReschedule)
    );
}

// ---------------------------------------------------------------------------------------------
// Evaluation of runs with a waiting sensor.
// ---------------------------------------------------------------------------------------------

fn snapshot(id: &str, state: TaskState, retry_at: Option<DateTime<Utc>>) -> TiSnapshot {
    TiSnapshot {
        task_id: id.to_owned(),
        map_index: -1,
        state,
        try_number: 1,
        retry_at,
    }
}

/// A waiting sensor keeps its downstream waiting and the run going, wakes the scheduler at its
/// next poke, and is scheduled again then.
#[test]
fn waiting_sensor_in_a_run() {
    let d = dag(
        Schedule::None,
        vec![task("wait", &[]), task("after", &["wait"])],
    );
    let t0 = utc(2026, 1, 1, 0, 0);
    let next = t0 + secs(60);
    let tis = [
        snapshot("wait", TaskState::UpForReschedule, Some(next)),
        snapshot("after", TaskState::None, None),
    ];
    let before = evaluate_run(&d, &tis, None, t0);
    assert!(before.transitions.is_empty());
    assert_eq!(before.run_state, None);
    assert_eq!(before.wake_at, Some(next));

    let due = evaluate_run(&d, &tis, None, next);
    assert_eq!(
        due.transitions,
        vec![(
            "wait".to_owned(),
            TaskState::UpForReschedule,
            TaskState::Scheduled
        )]
    );
    assert_eq!(due.run_state, None);
    assert_eq!(due.wake_at, None);
}

// ---------------------------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------------------------

fn any_timing() -> impl Strategy<Value = SensorTiming> {
    (
        0u64..7200,
        0u64..100_000,
        any::<bool>(),
        proptest::option::of(1u64..20_000),
        any::<bool>(),
    )
        .prop_map(
            |(poke, timeout, backoff, max_wait, soft_fail)| SensorTiming {
                poke_interval: Duration::from_secs(poke),
                timeout: Duration::from_secs(timeout),
                exponential_backoff: backoff,
                max_wait: max_wait.map(Duration::from_secs),
                soft_fail,
            },
        )
}

proptest! {
    /// Backoff: waits never shrink from one poke to the next, never exceed max_wait (when
    /// set and not below the minimum) and are at least the minimum.
    #[test]
    fn backoff_is_monotone_and_capped(t in any_timing(), n in 1u32..200) {
        let a = poke_wait(&t, n);
        let b = poke_wait(&t, n + 1);
        prop_assert!(a <= b);
        prop_assert!(a >= MIN_POKE_WAIT);
        if t.exponential_backoff {
            if let Some(cap) = t.max_wait {
                prop_assert!(a <= cap.max(MIN_POKE_WAIT));
            }
        } else {
            prop_assert_eq!(a, t.poke_interval.max(MIN_POKE_WAIT));
        }
    }

    /// Driving a sensor that is never done: every poke reschedules strictly later and never
    /// past the deadline, and it ends failed (skipped with soft_fail) no later than at the
    /// deadline, i.e. never more than one interval after the timeout.
    #[test]
    fn never_done_sensor_times_out_at_the_deadline(
        t in any_timing(),
        lateness in proptest::collection::vec(0i64..30, 1..40),
    ) {
        let t0 = utc(2026, 1, 1, 0, 0);
        let deadline = sensor_deadline(&t, t0);
        let mut now = t0;
        let mut poke = 1u32;
        loop {
            let (state, next) = on_poke(&t, t0, poke, PokeResult::NotYet, now);
            match state {
                TaskState::UpForReschedule => {
                    let next = next.expect("a reschedule has a next poke");
                    prop_assert!(next > now);
                    prop_assert!(next <= deadline);
                    prop_assert!(now < deadline);
                    // The scheduler pokes at the due time or somewhat late.
                    let late = lateness[poke as usize % lateness.len()];
                    now = next + TimeDelta::seconds(late);
                    poke += 1;
                    prop_assert!(poke < 1_000_000, "no progress");
                }
                TaskState::Failed | TaskState::Skipped => {
                    prop_assert_eq!(state == TaskState::Skipped, t.soft_fail);
                    prop_assert!(next.is_none());
                    prop_assert!(now >= deadline);
                    break;
                }
                other => prop_assert!(false, "unexpected {other}"),
            }
        }
    }

    /// A done poke succeeds whenever it comes, even past the deadline.
    #[test]
    fn done_always_succeeds(t in any_timing(), n in 1u32..100, after in 0i64..1_000_000) {
        let t0 = utc(2026, 1, 1, 0, 0);
        prop_assert_eq!(
            on_poke(&t, t0, n, PokeResult::Done, t0 + TimeDelta::seconds(after)),
            (TaskState::Success, None)
        );
    }

    /// A rescheduled instance never holds a slot and never finishes a run: whatever the states
    /// of the others, a run with an up_for_reschedule instance is not over and that instance
    /// only ever goes to scheduled.
    #[test]
    fn rescheduled_instances_hold_no_slot_and_keep_the_run_going(
        states in proptest::collection::vec(
            proptest::sample::select(TaskState::ALL.to_vec()), 1..6),
        due in any::<bool>(),
    ) {
        prop_assert!(!TaskState::UpForReschedule.is_active());
        let mut tasks = vec![task("sensor", &[])];
        for i in 0..states.len() {
            tasks.push(task(&format!("t{i}"), &["sensor"]));
        }
        let d = dag(Schedule::None, tasks);
        let now = utc(2026, 1, 1, 0, 0);
        let poke_at = if due { now } else { now + TimeDelta::seconds(60) };
        let mut tis = vec![snapshot("sensor", TaskState::UpForReschedule, Some(poke_at))];
        tis.extend(states.iter().enumerate().map(|(i, s)| snapshot(&format!("t{i}"), *s, None)));
        let eval = evaluate_run(&d, &tis, None, now);
        prop_assert_eq!(eval.run_state, None::<RunState>);
        for (id, from, to) in &eval.transitions {
            if id == "sensor" {
                prop_assert!(due);
                prop_assert_eq!((*from, *to), (TaskState::UpForReschedule, TaskState::Scheduled));
            } else {
                // Downstream tasks in `none` wait for the sensor.
                prop_assert!(*from != TaskState::None);
            }
        }
        if !due {
            prop_assert_eq!(eval.wake_at, Some(poke_at));
        }
    }
}
