//! Unit tests of run evaluation.

mod common;

use std::collections::HashMap;

use chrono::TimeDelta;
use common::{dag, task, utc, with_rule};
use updraft_core::evaluate::{TiSnapshot, evaluate_run, evaluate_run_indexed};
use updraft_core::{DagIndex, RunState, TaskState};
use updraft_dag::{Schedule, Task, TriggerRule};

use TaskState as S;

fn ti(id: &str, state: TaskState) -> TiSnapshot {
    TiSnapshot {
        task_id: id.to_string(),
        map_index: -1,
        state,
        try_number: 0,
        retry_at: None,
    }
}

fn chain(n: usize) -> Vec<Task> {
    (0..n)
        .map(|i| {
            let up = if i == 0 {
                vec![]
            } else {
                vec![format!("t{}", i - 1)]
            };
            let up: Vec<&str> = up.iter().map(String::as_str).collect();
            task(&format!("t{i}"), &up)
        })
        .collect()
}

#[test]
fn roots_are_scheduled_at_once_whatever_their_rule() {
    let tasks = vec![
        with_rule(task("a", &[]), TriggerRule::AllFailed),
        with_rule(task("b", &[]), TriggerRule::OneSuccess),
        task("c", &["a", "b"]),
    ];
    let d = dag(Schedule::None, tasks);
    let e = evaluate_run(
        &d,
        &[ti("a", S::None), ti("b", S::None), ti("c", S::None)],
        None,
        utc(2024, 1, 1, 0, 0),
    );
    assert_eq!(
        e.transitions,
        vec![
            ("a".to_string(), S::None, S::Scheduled),
            ("b".to_string(), S::None, S::Scheduled)
        ]
    );
    assert_eq!(e.run_state, None);
}

#[test]
fn forty_task_chain_fails_in_one_call() {
    let d = dag(Schedule::None, chain(40));
    let mut tis: Vec<TiSnapshot> = (0..40).map(|i| ti(&format!("t{i}"), S::None)).collect();
    tis[0].state = S::Failed;
    let e = evaluate_run(&d, &tis, None, utc(2024, 1, 1, 0, 0));
    assert_eq!(e.transitions.len(), 39);
    for (i, (id, from, to)) in e.transitions.iter().enumerate() {
        assert_eq!(id, &format!("t{}", i + 1));
        assert_eq!((*from, *to), (S::None, S::UpstreamFailed));
    }
    assert_eq!(e.run_state, Some(RunState::Failed));
}

#[test]
fn skip_cascades_and_run_succeeds() {
    let d = dag(Schedule::None, chain(5));
    let mut tis: Vec<TiSnapshot> = (0..5).map(|i| ti(&format!("t{i}"), S::None)).collect();
    tis[0].state = S::Skipped;
    let e = evaluate_run(&d, &tis, None, utc(2024, 1, 1, 0, 0));
    assert!(
        e.transitions
            .iter()
            .all(|(_, f, t)| (*f, *t) == (S::None, S::Skipped))
    );
    assert_eq!(e.transitions.len(), 4);
    assert_eq!(e.run_state, Some(RunState::Success));
}

#[test]
fn run_state_is_decided_by_leaves() {
    // a fails; cleanup (all_done) is the only leaf and succeeds: the run succeeds.
    let tasks = vec![
        task("a", &[]),
        with_rule(task("cleanup", &["a"]), TriggerRule::AllDone),
    ];
    let d = dag(Schedule::None, tasks);
    let now = utc(2024, 1, 1, 0, 0);
    let e = evaluate_run(&d, &[ti("a", S::Failed), ti("cleanup", S::None)], None, now);
    assert_eq!(
        e.transitions,
        vec![("cleanup".to_string(), S::None, S::Scheduled)]
    );
    assert_eq!(e.run_state, None);
    let e = evaluate_run(
        &d,
        &[ti("a", S::Failed), ti("cleanup", S::Success)],
        None,
        now,
    );
    assert_eq!(e.run_state, Some(RunState::Success));
    let e = evaluate_run(
        &d,
        &[ti("a", S::Failed), ti("cleanup", S::Failed)],
        None,
        now,
    );
    assert_eq!(e.run_state, Some(RunState::Failed));

    // A failed leaf fails the run even though another leaf succeeded.
    let d = dag(Schedule::None, vec![task("x", &[]), task("y", &[])]);
    let e = evaluate_run(&d, &[ti("x", S::Success), ti("y", S::Failed)], None, now);
    assert_eq!(e.run_state, Some(RunState::Failed));
    let e = evaluate_run(&d, &[ti("x", S::Success), ti("y", S::Skipped)], None, now);
    assert_eq!(e.run_state, Some(RunState::Success));
    let e = evaluate_run(&d, &[ti("x", S::Success), ti("y", S::Running)], None, now);
    assert_eq!(e.run_state, None);
}

#[test]
fn deadlock_through_depends_on_past_fails_the_run() {
    let mut t = task("x", &[]);
    t.depends_on_past = true;
    let d = dag(Schedule::None, vec![t, task("y", &["x"])]);
    let now = utc(2024, 1, 1, 0, 0);
    let prev_failed: HashMap<String, TaskState> = [("x".to_string(), S::Failed)].into();
    let tis = [ti("x", S::None), ti("y", S::None)];
    let e = evaluate_run(&d, &tis, Some(&prev_failed), now);
    assert_eq!(e.transitions, vec![]);
    assert_eq!(e.run_state, Some(RunState::Failed));

    // Not a deadlock while something else still runs.
    let d2 = dag(
        Schedule::None,
        vec![d.tasks[0].clone(), d.tasks[1].clone(), task("z", &[])],
    );
    let e = evaluate_run(
        &d2,
        &[ti("x", S::None), ti("y", S::None), ti("z", S::Running)],
        Some(&prev_failed),
        now,
    );
    assert_eq!(e.run_state, None);

    // Allowed when the previous instance succeeded, was skipped, or didn't exist.
    for prev in [
        HashMap::from([("x".to_string(), S::Success)]),
        HashMap::from([("x".to_string(), S::Skipped)]),
        HashMap::from([("other".to_string(), S::Failed)]),
    ] {
        let e = evaluate_run(&d, &tis, Some(&prev), now);
        assert_eq!(
            e.transitions,
            vec![("x".to_string(), S::None, S::Scheduled)]
        );
    }
    let e = evaluate_run(&d, &tis, None, now);
    assert_eq!(
        e.transitions,
        vec![("x".to_string(), S::None, S::Scheduled)]
    );
}

#[test]
fn depends_on_past_does_not_hold_back_flagging() {
    let mut y = task("y", &["x"]);
    y.depends_on_past = true;
    let d = dag(Schedule::None, vec![task("x", &[]), y]);
    let prev: HashMap<String, TaskState> = [("y".to_string(), S::Failed)].into();
    let e = evaluate_run(
        &d,
        &[ti("x", S::Failed), ti("y", S::None)],
        Some(&prev),
        utc(2024, 1, 1, 0, 0),
    );
    assert_eq!(
        e.transitions,
        vec![("y".to_string(), S::None, S::UpstreamFailed)]
    );
    assert_eq!(e.run_state, Some(RunState::Failed));
}

#[test]
fn retries_wait_for_retry_at() {
    let d = dag(
        Schedule::None,
        vec![task("a", &[]), task("b", &[]), task("c", &[])],
    );
    let now = utc(2024, 1, 1, 12, 0);
    let mut a = ti("a", S::UpForRetry);
    a.retry_at = Some(now + TimeDelta::minutes(10));
    let mut b = ti("b", S::UpForRetry);
    b.retry_at = Some(now + TimeDelta::minutes(3));
    let mut c = ti("c", S::UpForRetry);
    c.retry_at = Some(now);
    let e = evaluate_run(&d, &[a.clone(), b.clone(), c], None, now);
    assert_eq!(
        e.transitions,
        vec![("c".to_string(), S::UpForRetry, S::Scheduled)]
    );
    assert_eq!(e.wake_at, Some(now + TimeDelta::minutes(3)));
    assert_eq!(e.run_state, None);
    // Only up_for_retry instances count, and no timer is needed once none waits.
    let e = evaluate_run(
        &d,
        &[a, b, ti("c", S::Running)],
        None,
        now + TimeDelta::minutes(10),
    );
    assert_eq!(e.transitions.len(), 2);
    assert_eq!(e.wake_at, None);
}

#[test]
fn removed_upstreams_are_ignored() {
    let tasks = vec![
        task("a", &[]),
        task("b", &[]),
        task("c", &["a", "b"]),
        with_rule(task("d", &["a"]), TriggerRule::OneSuccess),
    ];
    let d = dag(Schedule::None, tasks);
    let now = utc(2024, 1, 1, 0, 0);
    let e = evaluate_run(
        &d,
        &[
            ti("a", S::Removed),
            ti("b", S::Success),
            ti("c", S::None),
            ti("d", S::None),
        ],
        None,
        now,
    );
    assert_eq!(
        e.transitions,
        vec![
            ("c".to_string(), S::None, S::Scheduled),
            ("d".to_string(), S::None, S::Scheduled)
        ]
    );
}

#[test]
fn missing_snapshots_count_as_none_and_unknown_ones_are_ignored() {
    let d = dag(Schedule::None, chain(3));
    let e = evaluate_run(
        &d,
        &[ti("t0", S::Success), ti("ghost", S::Failed)],
        None,
        utc(2024, 1, 1, 0, 0),
    );
    assert_eq!(
        e.transitions,
        vec![("t1".to_string(), S::None, S::Scheduled)]
    );
    assert_eq!(e.run_state, None);
}

#[test]
fn transitions_follow_topological_order_not_declaration_order() {
    // Declared downstream-first: c <- b <- a.
    let tasks = vec![task("c", &["b"]), task("b", &["a"]), task("a", &[])];
    let d = dag(Schedule::None, tasks);
    let e = evaluate_run(
        &d,
        &[
            ti("a", S::UpstreamFailed),
            ti("b", S::None),
            ti("c", S::None),
        ],
        None,
        utc(2024, 1, 1, 0, 0),
    );
    assert_eq!(
        e.transitions,
        vec![
            ("b".to_string(), S::None, S::UpstreamFailed),
            ("c".to_string(), S::None, S::UpstreamFailed)
        ]
    );
}

#[test]
fn large_dags_resolve_in_one_call() {
    // A 10,000-task chain failing at its root, and a 10,000-wide fan-in.
    let n = 10_000;
    let d = dag(Schedule::None, chain(n));
    let index = DagIndex::new(&d);
    let mut tis: Vec<TiSnapshot> = (0..n).map(|i| ti(&format!("t{i}"), S::None)).collect();
    tis[0].state = S::Failed;
    let e = evaluate_run_indexed(&d, &index, &tis, None, utc(2024, 1, 1, 0, 0));
    assert_eq!(e.transitions.len(), n - 1);
    assert_eq!(e.run_state, Some(RunState::Failed));

    let mut tasks: Vec<Task> = (0..n).map(|i| task(&format!("w{i}"), &[])).collect();
    let ups: Vec<String> = (0..n).map(|i| format!("w{i}")).collect();
    let ups: Vec<&str> = ups.iter().map(String::as_str).collect();
    tasks.push(task("join", &ups));
    let d = dag(Schedule::None, tasks);
    let mut tis: Vec<TiSnapshot> = (0..n).map(|i| ti(&format!("w{i}"), S::Success)).collect();
    tis.push(ti("join", S::None));
    let e = evaluate_run(&d, &tis, None, utc(2024, 1, 1, 0, 0));
    assert_eq!(
        e.transitions,
        vec![("join".to_string(), S::None, S::Scheduled)]
    );
}
