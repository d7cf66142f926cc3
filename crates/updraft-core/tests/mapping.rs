//! Dynamic task mapping in the core: expanded instances under trigger rules and run states,
//! and the expansion decision. Airflow's own tests are the reference cases (named in each
//! test's comment); property tests hold a task expanded into N instances to behave, for its
//! downstream and its run, exactly as N unmapped tasks would.

mod common;

use common::{dag, task, utc, with_rule};
use proptest::prelude::*;
use updraft_core::DagIndex;
use updraft_core::evaluate::{EndedInstances, TiSnapshot, evaluate_run, evaluate_run_focused};
use updraft_core::mapping::{
    DEFAULT_MAX_MAP_LENGTH, Expansion, arg_indices, expansion, values_to_map,
};
use updraft_core::{RunState, TaskState};
use updraft_dag::{Dag, Expand, MapSource, MappedArg, Schedule, TriggerRule};

use TaskState as S;

fn ti(id: &str, map_index: i32, state: TaskState) -> TiSnapshot {
    TiSnapshot {
        task_id: id.to_owned(),
        map_index,
        state,
        try_number: 1,
        retry_at: None,
    }
}

/// `lister >> mapped >> after`, `mapped` expanding over a literal list.
fn mapped_dag(rule: TriggerRule) -> Dag {
    let mut mapped = task("mapped", &["lister"]);
    mapped.expand = Some(Expand {
        args: vec![MappedArg {
            name: "x".into(),
            source: MapSource::Literal(vec![1.into(), 2.into(), 3.into()]),
        }],
    });
    dag(
        Schedule::None,
        vec![
            task("lister", &[]),
            mapped,
            with_rule(task("after", &["mapped"]), rule),
        ],
    )
}

fn expanded(states: &[TaskState], after: TaskState) -> Vec<TiSnapshot> {
    let mut tis = vec![ti("lister", -1, S::Success)];
    tis.extend(
        states
            .iter()
            .enumerate()
            .map(|(i, s)| ti("mapped", i as i32, *s)),
    );
    tis.push(ti("after", -1, after));
    tis
}

#[test]
fn the_placeholder_is_scheduled_by_its_trigger_rule_like_any_instance() {
    let d = mapped_dag(TriggerRule::AllSuccess);
    let tis = vec![
        ti("lister", -1, S::Success),
        ti("mapped", -1, S::None),
        ti("after", -1, S::None),
    ];
    let eval = evaluate_run(&d, &tis, None, utc(2024, 1, 1, 0, 0));
    assert_eq!(
        eval.transitions,
        [("mapped".to_owned(), S::None, S::Scheduled)]
    );
    assert!(eval.mapped_transitions.is_empty());
    assert_eq!(eval.run_state, None);
}

#[test]
fn the_downstream_waits_for_every_mapped_instance() {
    // Airflow: tests/models/test_dagrun.py::test_mapped_task_all_finish_before_downstream.
    let d = mapped_dag(TriggerRule::AllSuccess);
    let now = utc(2024, 1, 1, 0, 0);
    let running = expanded(&[S::Success, S::Running, S::Success], S::None);
    let eval = evaluate_run(&d, &running, None, now);
    assert!(eval.transitions.is_empty(), "{eval:?}");
    assert_eq!(eval.run_state, None);
    let done = expanded(&[S::Success, S::Success, S::Success], S::None);
    let eval = evaluate_run(&d, &done, None, now);
    assert_eq!(
        eval.transitions,
        [("after".to_owned(), S::None, S::Scheduled)]
    );
}

#[test]
fn one_failed_mapped_instance_fails_an_all_success_downstream_at_once() {
    // Airflow's TriggerRuleDep counts each mapped instance (tests/ti_deps/deps/
    // test_trigger_rule_dep.py, the mapped upstream cases): one failure is upstream_failed
    // for all_success even while siblings still run.
    let d = mapped_dag(TriggerRule::AllSuccess);
    let tis = expanded(&[S::Failed, S::Running, S::Success], S::None);
    let eval = evaluate_run(&d, &tis, None, utc(2024, 1, 1, 0, 0));
    assert_eq!(
        eval.transitions,
        [("after".to_owned(), S::None, S::UpstreamFailed)]
    );
    // all_done waits for the running one, then runs.
    let d = mapped_dag(TriggerRule::AllDone);
    let eval = evaluate_run(&d, &tis, None, utc(2024, 1, 1, 0, 0));
    assert!(eval.transitions.is_empty());
    let tis = expanded(&[S::Failed, S::Success, S::Skipped], S::None);
    let eval = evaluate_run(&d, &tis, None, utc(2024, 1, 1, 0, 0));
    assert_eq!(
        eval.transitions,
        [("after".to_owned(), S::None, S::Scheduled)]
    );
}

#[test]
fn each_mapped_instance_retries_on_its_own() {
    let d = mapped_dag(TriggerRule::AllSuccess);
    let now = utc(2024, 1, 1, 1, 0);
    let mut tis = expanded(&[S::UpForRetry, S::UpForRetry, S::Running], S::None);
    tis[1].retry_at = Some(utc(2024, 1, 1, 0, 30));
    tis[2].retry_at = Some(utc(2024, 1, 1, 2, 0));
    let eval = evaluate_run(&d, &tis, None, now);
    assert_eq!(
        eval.mapped_transitions,
        [("mapped".to_owned(), 0, S::UpForRetry, S::Scheduled)]
    );
    assert_eq!(eval.wake_at, Some(utc(2024, 1, 1, 2, 0)));
}

#[test]
fn a_cleared_mapped_instance_is_scheduled_again_by_the_trigger_rule() {
    let d = mapped_dag(TriggerRule::AllSuccess);
    let tis = expanded(&[S::Success, S::None, S::Success], S::None);
    let eval = evaluate_run(&d, &tis, None, utc(2024, 1, 1, 0, 0));
    assert_eq!(
        eval.mapped_transitions,
        [("mapped".to_owned(), 1, S::None, S::Scheduled)]
    );
    assert!(eval.transitions.is_empty(), "`after` waits for instance 1");
}

#[test]
fn a_failed_instance_of_a_mapped_leaf_fails_the_run() {
    let mut mapped = task("mapped", &[]);
    mapped.expand = mapped_dag(TriggerRule::AllSuccess).tasks[1].expand.clone();
    let d = dag(Schedule::None, vec![mapped]);
    let now = utc(2024, 1, 1, 0, 0);
    let tis = [ti("mapped", 0, S::Success), ti("mapped", 1, S::Failed)];
    assert_eq!(
        evaluate_run(&d, &tis, None, now).run_state,
        Some(RunState::Failed)
    );
    let tis = [ti("mapped", 0, S::Success), ti("mapped", 1, S::Skipped)];
    assert_eq!(
        evaluate_run(&d, &tis, None, now).run_state,
        Some(RunState::Success)
    );
}

#[test]
fn zero_instances_skip_the_task_and_too_many_fail_it() {
    // Airflow: tests/models/test_dagrun.py::test_ti_scheduling_mapped_zero_length (a task
    // mapped over an empty list is skipped) and tests/models/test_taskinstance.py::
    // TestTaskInstanceRecordTaskMapXComPush::test_error_if_unmappable_length (more values than
    // max_map_length fail).
    assert_eq!(expansion(&[0], DEFAULT_MAX_MAP_LENGTH), Expansion::Skip);
    assert_eq!(expansion(&[3, 0], DEFAULT_MAX_MAP_LENGTH), Expansion::Skip);
    assert_eq!(
        expansion(&[3], DEFAULT_MAX_MAP_LENGTH),
        Expansion::Expand(3)
    );
    assert_eq!(expansion(&[1024], 1024), Expansion::Expand(1024));
    match expansion(&[1025], 1024) {
        Expansion::Fail(message) => {
            assert!(message.contains("1025"), "{message}");
            assert!(message.contains("max_map_length (1024)"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        expansion(&[usize::MAX, 2], 1024),
        Expansion::Fail(_)
    ));
}

#[test]
fn several_arguments_expand_to_their_cross_product() {
    // Airflow: tests/models/test_taskinstance.py::TestMappedTaskInstanceReceiveValue::
    // test_map_literal_cross_product: expand(arg1=[1, 2], arg2={"a": "x", "b": "y"}) runs 4
    // instances getting (1, ("a", "x")), (1, ("b", "y")), (2, ("a", "x")), (2, ("b", "y")).
    let arg1 = values_to_map(serde_json::json!([1, 2])).unwrap();
    let arg2 = values_to_map(serde_json::json!({"a": "x", "b": "y"})).unwrap();
    let lengths = [arg1.len(), arg2.len()];
    let Expansion::Expand(n) = expansion(&lengths, DEFAULT_MAX_MAP_LENGTH) else {
        panic!()
    };
    let got: Vec<(serde_json::Value, serde_json::Value)> = (0..n)
        .map(|i| {
            let idx = arg_indices(&lengths, i).unwrap();
            (arg1[idx[0]].clone(), arg2[idx[1]].clone())
        })
        .collect();
    let j = |v| serde_json::json!(v);
    assert_eq!(
        got,
        [
            (j(1), serde_json::json!(["a", "x"])),
            (j(1), serde_json::json!(["b", "y"])),
            (j(2), serde_json::json!(["a", "x"])),
            (j(2), serde_json::json!(["b", "y"])),
        ]
    );
}

fn any_state() -> impl Strategy<Value = TaskState> {
    prop::sample::select(vec![
        S::None,
        S::Scheduled,
        S::Queued,
        S::Running,
        S::Success,
        S::Failed,
        S::UpstreamFailed,
        S::Skipped,
        S::UpForRetry,
        S::Removed,
    ])
}

fn any_rule() -> impl Strategy<Value = TriggerRule> {
    prop::sample::select(TriggerRule::ALL.to_vec())
}

/// `lister >> first >> second >> after`, `first` and `second` expanded.
fn two_mapped_dag(second_rule: TriggerRule, after_rule: TriggerRule) -> Dag {
    let expand = || {
        Some(Expand {
            args: vec![MappedArg {
                name: "x".into(),
                source: MapSource::Literal(vec![1.into()]),
            }],
        })
    };
    let mut first = task("first", &["lister"]);
    first.expand = expand();
    let mut second = with_rule(task("second", &["first"]), second_rule);
    second.expand = expand();
    dag(
        Schedule::None,
        vec![
            task("lister", &[]),
            first,
            second,
            with_rule(task("after", &["second"]), after_rule),
        ],
    )
}

/// What a focused read of every task gives: unmapped instances and expanded ones that have
/// not ended as snapshots, ended expanded ones counted by task and state.
fn focused_read(tis: &[TiSnapshot]) -> (Vec<TiSnapshot>, Vec<EndedInstances>) {
    let mut live = Vec::new();
    let mut ended: Vec<EndedInstances> = Vec::new();
    for ti in tis {
        if ti.map_index < 0 || !ti.state.is_terminal() {
            live.push(ti.clone());
            continue;
        }
        match ended
            .iter_mut()
            .find(|e| e.task_id == ti.task_id && e.state == ti.state)
        {
            Some(e) => e.count += 1,
            None => ended.push(EndedInstances {
                task_id: ti.task_id.clone(),
                state: ti.state,
                count: 1,
            }),
        }
    }
    (live, ended)
}

proptest! {
    /// A task expanded into N instances is, for its downstream and its run, N unmapped tasks:
    /// the downstream's decision and the run's state agree with those of a DAG where the
    /// mapped task is replaced by N plain tasks in the same states.
    #[test]
    fn n_mapped_instances_decide_like_n_unmapped_tasks(
        states in prop::collection::vec(any_state(), 1..12),
        rule in any_rule(),
        after in prop::sample::select(vec![S::None, S::Success, S::Failed, S::Running]),
    ) {
        let now = utc(2024, 1, 1, 0, 0);
        let d = mapped_dag(rule);
        let eval = evaluate_run(&d, &expanded(&states, after), None, now);

        let mut plain = vec![task("lister", &[])];
        let ids: Vec<String> = (0..states.len()).map(|i| format!("m{i}")).collect();
        plain.extend(ids.iter().map(|id| task(id, &["lister"])));
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        plain.push(with_rule(task("after", &refs), rule));
        let plain = dag(Schedule::None, plain);
        let mut tis = vec![ti("lister", -1, S::Success)];
        tis.extend(states.iter().enumerate().map(|(i, s)| ti(&ids[i], -1, *s)));
        tis.push(ti("after", -1, after));
        let reference = evaluate_run(&plain, &tis, None, now);

        let after_of = |t: &[(String, TaskState, TaskState)]| {
            t.iter().find(|(id, _, _)| id == "after").map(|(_, _, to)| *to)
        };
        prop_assert_eq!(after_of(&eval.transitions), after_of(&reference.transitions));
        // The instances' own transitions match the plain tasks', index for index.
        let mapped: Vec<(usize, TaskState)> = eval
            .mapped_transitions
            .iter()
            .map(|(_, i, _, to)| (*i as usize, *to))
            .collect();
        let plain_tos: Vec<(usize, TaskState)> = reference
            .transitions
            .iter()
            .filter_map(|(id, _, to)| Some((id.strip_prefix('m')?.parse().ok()?, *to)))
            .collect();
        prop_assert_eq!(mapped, plain_tos);
        prop_assert_eq!(eval.run_state, reference.run_state);
    }

    /// Every map index gets a distinct combination of argument values, in lexicographic order
    /// (the last argument fastest), and every combination is reached.
    #[test]
    fn map_indexes_enumerate_the_cross_product_in_order(
        lengths in prop::collection::vec(1usize..5, 1..4),
    ) {
        let Expansion::Expand(n) = expansion(&lengths, DEFAULT_MAX_MAP_LENGTH) else {
            panic!("small products expand")
        };
        prop_assert_eq!(n, lengths.iter().product::<usize>());
        let all: Vec<Vec<usize>> = (0..n).map(|i| arg_indices(&lengths, i).unwrap()).collect();
        for pair in all.windows(2) {
            prop_assert!(pair[0] < pair[1]);
        }
        for combo in &all {
            for (k, &len) in combo.iter().zip(&lengths) {
                prop_assert!(*k < len);
            }
        }
        prop_assert_eq!(arg_indices(&lengths, n), None);
    }

    /// Expansion: zero in any length skips, a product over the maximum fails, else the product.
    #[test]
    fn expansion_is_the_bounded_product(
        lengths in prop::collection::vec(0usize..40, 0..4),
        max in 1usize..2000,
    ) {
        let product: usize = lengths.iter().product();
        let expected = if lengths.is_empty() || product == 0 {
            "skip"
        } else if product > max {
            "fail"
        } else {
            "expand"
        };
        let got = match expansion(&lengths, max) {
            Expansion::Skip => "skip",
            Expansion::Fail(_) => "fail",
            Expansion::Expand(n) => {
                prop_assert_eq!(n, product);
                "expand"
            }
        };
        prop_assert_eq!(got, expected);
    }
}

proptest! {
    /// A focused read gives an expanded task's ended instances as counts: over every task of
    /// the run, its evaluation decides exactly what the whole run's evaluation decides (the
    /// run's end aside, which only a whole read says).
    #[test]
    fn ended_instances_counted_decide_as_their_snapshots(
        first in prop::collection::vec(any_state(), 1..12),
        second in prop::collection::vec(any_state(), 0..12),
        second_rule in any_rule(),
        after_rule in any_rule(),
        after in prop::sample::select(vec![S::None, S::Success, S::Failed, S::Running]),
    ) {
        let now = utc(2024, 1, 1, 0, 0);
        let d = two_mapped_dag(second_rule, after_rule);
        let mut tis = vec![ti("lister", -1, S::Success)];
        tis.extend(first.iter().enumerate().map(|(i, s)| ti("first", i as i32, *s)));
        if second.is_empty() {
            tis.push(ti("second", -1, S::None));
        }
        tis.extend(second.iter().enumerate().map(|(i, s)| ti("second", i as i32, *s)));
        tis.push(ti("after", -1, after));
        let whole = evaluate_run(&d, &tis, None, now);

        let (live, ended) = focused_read(&tis);
        let progressing = tis.iter().any(|ti| ti.state.is_progressing());
        let index = DagIndex::new(&d);
        let focused = evaluate_run_focused(&d, &index, &live, &ended, progressing, None, now);
        match focused {
            Some(focused) => {
                prop_assert_eq!(&focused.transitions, &whole.transitions);
                prop_assert_eq!(&focused.mapped_transitions, &whole.mapped_transitions);
                prop_assert_eq!(focused.wake_at, whole.wake_at);
            }
            None => prop_assert!(
                !progressing && whole.run_state.is_some(),
                "a focus over every task gives up only when the run may be over"
            ),
        }
    }
}
