//! Airflow's branching and short-circuit tests against [`branch_skips`]: the expected-state
//! tables of `tests/operators/test_python.py` (`TestBranchOperator`,
//! `TestShortCircuitOperator`) and `tests/models/test_skipmixin.py` (`skip_all_except`).
//!
//! Airflow's tests run each task instance by hand (`ti.run()`), so a task whose upstream
//! states do not let it run stays in state `none` there; the scheduler would go on and decide
//! it. These tests run the whole DAG through the core ([`common::run_to_end`]), so where
//! Airflow asserts `none` for a task that was not skipped, the run here ends with it
//! `success` (it ran), and where Airflow's hand-run leaves an `all_success` task below a
//! skipped one at `none`, the scheduler's trigger rule skips it. Each case says so.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{dag, run_to_end, task, with_rule};
use serde_json::{Value, json};
use updraft_core::{BranchError, DagIndex, TaskState, branch_skips};
use updraft_dag::{Branching, Dag, Schedule, Task, TriggerRule};

use TaskState as S;

fn branching(mut t: Task, how: Branching) -> Task {
    t.branching = Some(how);
    t
}

fn short_circuit(ignore_downstream_trigger_rules: bool) -> Branching {
    Branching::ShortCircuit {
        ignore_downstream_trigger_rules,
    }
}

fn states(pairs: &[(&str, TaskState)]) -> BTreeMap<String, TaskState> {
    pairs.iter().map(|(id, s)| (id.to_string(), *s)).collect()
}

fn run(d: &Dag, task_id: &str, value: Value) -> BTreeMap<String, TaskState> {
    run_to_end(d, &HashMap::from([(task_id, value)]), &[])
}

fn skips(d: &Dag, task_id: &str, value: Option<Value>) -> Result<Vec<String>, BranchError> {
    branch_skips(d, &DagIndex::new(d), task_id, value.as_ref())
}

/// `make_task >> [branch_1, branch_2]` (and `branch_3` when asked).
fn two_way(extra: bool) -> Dag {
    let mut tasks = vec![
        branching(task("make_choice", &[]), Branching::Branch),
        task("branch_1", &["make_choice"]),
        task("branch_2", &["make_choice"]),
    ];
    if extra {
        tasks.push(task("branch_3", &["make_choice"]));
    }
    dag(Schedule::None, tasks)
}

#[test]
fn test_with_dag_run() {
    // Airflow: make_choice success, branch_1 none (not skipped), branch_2 skipped.
    assert_eq!(
        run(&two_way(false), "make_choice", json!("branch_1")),
        states(&[
            ("make_choice", S::Success),
            ("branch_1", S::Success),
            ("branch_2", S::Skipped),
        ])
    );
}

#[test]
fn test_branch_list_with_dag_run() {
    // Airflow: branch_1 and branch_2 none (followed), branch_3 skipped.
    assert_eq!(
        run(
            &two_way(true),
            "make_choice",
            json!(["branch_1", "branch_2"])
        ),
        states(&[
            ("make_choice", S::Success),
            ("branch_1", S::Success),
            ("branch_2", S::Success),
            ("branch_3", S::Skipped),
        ])
    );
}

/// `make_choice >> branch_1 >> branch_2` and `make_choice >> branch_2`.
fn diamond() -> Dag {
    dag(
        Schedule::None,
        vec![
            branching(task("make_choice", &[]), Branching::Branch),
            task("branch_1", &["make_choice"]),
            task("branch_2", &["make_choice", "branch_1"]),
        ],
    )
}

#[test]
fn test_with_skip_in_branch_downstream_dependencies() {
    // Airflow: branch_1 none, branch_2 none: branch_2 is downstream of the followed branch_1.
    assert_eq!(
        skips(&diamond(), "make_choice", Some(json!("branch_1"))),
        Ok(vec![])
    );
    assert_eq!(
        run(&diamond(), "make_choice", json!("branch_1")),
        states(&[
            ("make_choice", S::Success),
            ("branch_1", S::Success),
            ("branch_2", S::Success),
        ])
    );
}

#[test]
fn test_with_skip_in_branch_downstream_dependencies2() {
    // Airflow: branch_1 skipped, branch_2 none. Here branch_2 (all_success) is then skipped
    // by its trigger rule, as the scheduler would.
    assert_eq!(
        skips(&diamond(), "make_choice", Some(json!("branch_2"))),
        Ok(vec!["branch_1".to_owned()])
    );
    assert_eq!(
        run(&diamond(), "make_choice", json!("branch_2")),
        states(&[
            ("make_choice", S::Success),
            ("branch_1", S::Skipped),
            ("branch_2", S::Skipped),
        ])
    );
}

#[test]
fn test_empty_branch() {
    // branch >> [task1, join]; task1 >> join; join is none_failed_min_one_success.
    let d = dag(
        Schedule::None,
        vec![
            branching(task("branching", &[]), Branching::Branch),
            task("task1", &["branching"]),
            with_rule(
                task("join", &["branching", "task1"]),
                TriggerRule::NoneFailedMinOneSuccess,
            ),
        ],
    );
    // ("task1", [SUCCESS, SUCCESS, SUCCESS]), ("join", [SUCCESS, SKIPPED, SUCCESS]).
    for (choice, expected) in [
        ("task1", [S::Success, S::Success, S::Success]),
        ("join", [S::Success, S::Skipped, S::Success]),
    ] {
        let got = run(&d, "branching", json!(choice));
        assert_eq!(
            [got["branching"], got["task1"], got["join"]],
            expected,
            "choice {choice}"
        );
    }
}

#[test]
fn test_raise_exception_on_no_accepted_type_return() {
    // Airflow: "must be either None, a task ID, or an Iterable of IDs".
    for value in [
        json!(5),
        json!(true),
        json!({"branch_1": 1}),
        json!(["branch_1", 2]),
    ] {
        let err = skips(&two_way(false), "make_choice", Some(value.clone())).unwrap_err();
        assert!(
            matches!(err, BranchError::InvalidValue { .. }),
            "{value}: {err}"
        );
        assert!(
            err.to_string()
                .contains("'branch_task_ids' must be either null"),
            "{err}"
        );
    }
    // The branch task fails; nothing downstream runs.
    assert_eq!(
        run(&two_way(false), "make_choice", json!(5)),
        states(&[
            ("make_choice", S::Failed),
            ("branch_1", S::UpstreamFailed),
            ("branch_2", S::UpstreamFailed),
        ])
    );
}

#[test]
fn test_raise_exception_on_invalid_task_id() {
    // Airflow: "Invalid tasks found: {'some_task_id'}".
    let err = skips(&two_way(false), "make_choice", Some(json!("some_task_id"))).unwrap_err();
    assert_eq!(
        err,
        BranchError::NotDownstream {
            task_id: "make_choice".to_owned(),
            invalid: vec!["some_task_id".to_owned()],
            downstream: vec!["branch_1".to_owned(), "branch_2".to_owned()],
        }
    );
    let message = err.to_string();
    assert!(
        message.contains("'branch_task_ids' must contain only valid task_ids")
            && message.contains("\"some_task_id\""),
        "{message}"
    );
}

#[test]
fn a_task_of_the_dag_that_is_not_directly_downstream_is_refused() {
    // A deliberate difference: Airflow accepts any task id of the DAG (docs/dag-files.md).
    let err = skips(&diamond(), "branch_1", Some(json!("make_choice")));
    assert!(err.is_ok(), "branch_1 does not branch: {err:?}");
    let err = skips(
        &diamond(),
        "make_choice",
        Some(json!(["branch_1", "make_choice"])),
    );
    assert!(
        matches!(&err, Err(BranchError::NotDownstream { invalid, .. }) if invalid == &["make_choice"]),
        "{err:?}"
    );
}

/// test_skipmixin.py: `task1 >> [task2, task3]`, task1 branching.
#[test]
fn test_skip_all_except() {
    let d = dag(
        Schedule::None,
        vec![
            branching(task("task1", &[]), Branching::Branch),
            task("task2", &["task1"]),
            task("task3", &["task1"]),
        ],
    );
    let cases: [(&str, Option<Value>, &[&str]); 5] = [
        ("None", Some(Value::Null), &["task2", "task3"]),
        ("no value pushed", None, &["task2", "task3"]),
        ("empty-list", Some(json!([])), &["task2", "task3"]),
        ("single-task", Some(json!("task2")), &["task3"]),
        ("list-of-tasks", Some(json!(["task2", "task3"])), &[]),
    ];
    for (id, value, expected) in cases {
        assert_eq!(
            skips(&d, "task1", value),
            Ok(expected.iter().map(|s| s.to_string()).collect()),
            "{id}"
        );
    }
}

#[test]
fn test_raise_exception_on_not_valid_branch_task_ids() {
    let d = dag(
        Schedule::None,
        vec![
            branching(task("task1", &[]), Branching::Branch),
            task("task2", &["task1"]),
            task("task3", &["task1"]),
        ],
    );
    let err = skips(&d, "task1", Some(json!(["task2", "task4"]))).unwrap_err();
    assert!(
        matches!(&err, BranchError::NotDownstream { invalid, .. } if invalid == &["task4"]),
        "{err}"
    );
}

/// `short_circuit >> op1 >> op2`, op2 with `rule`; the states after the run.
fn short_circuiting(value: Value, ignore: bool, rule: TriggerRule) -> BTreeMap<String, TaskState> {
    let d = dag(
        Schedule::None,
        vec![
            branching(task("short_circuit", &[]), short_circuit(ignore)),
            task("op1", &["short_circuit"]),
            with_rule(task("op2", &["op1"]), rule),
        ],
    );
    run(&d, "short_circuit", value)
}

#[test]
fn test_short_circuiting() {
    let all_skipped = [S::Success, S::Skipped, S::Skipped];
    let all_success = [S::Success, S::Success, S::Success];
    // Airflow's table. Respecting trigger rules with all_success, Airflow's hand-run leaves
    // op2 at none; the scheduler's trigger rule skips it (op1 skipped).
    let cases: &[(Value, bool, TriggerRule, [TaskState; 3])] = &[
        (json!(false), true, TriggerRule::AllSuccess, all_skipped),
        (json!([]), true, TriggerRule::AllSuccess, all_skipped),
        (json!(false), true, TriggerRule::AllDone, all_skipped),
        (json!([]), true, TriggerRule::AllDone, all_skipped),
        (
            json!(false),
            false,
            TriggerRule::AllSuccess,
            [S::Success, S::Skipped, S::Skipped],
        ),
        (
            json!([]),
            false,
            TriggerRule::AllSuccess,
            [S::Success, S::Skipped, S::Skipped],
        ),
        (
            json!(false),
            false,
            TriggerRule::AllDone,
            [S::Success, S::Skipped, S::Success],
        ),
        (
            json!([]),
            false,
            TriggerRule::AllDone,
            [S::Success, S::Skipped, S::Success],
        ),
        (json!(true), true, TriggerRule::AllSuccess, all_success),
        (
            json!(["a", "b", "c"]),
            true,
            TriggerRule::AllSuccess,
            all_success,
        ),
        (json!(true), true, TriggerRule::AllDone, all_success),
        (
            json!(["a", "b", "c"]),
            true,
            TriggerRule::AllDone,
            all_success,
        ),
        (json!(true), false, TriggerRule::AllSuccess, all_success),
        (
            json!(["a", "b", "c"]),
            false,
            TriggerRule::AllSuccess,
            all_success,
        ),
        (json!(true), false, TriggerRule::AllDone, all_success),
        (
            json!(["a", "b", "c"]),
            false,
            TriggerRule::AllDone,
            all_success,
        ),
    ];
    for (value, ignore, rule, expected) in cases {
        let got = short_circuiting(value.clone(), *ignore, *rule);
        assert_eq!(
            [got["short_circuit"], got["op1"], got["op2"]],
            *expected,
            "return {value}, ignore_downstream_trigger_rules {ignore}, op2 {rule}"
        );
    }
}

#[test]
fn python_truth_decides_a_short_circuit() {
    use updraft_core::is_truthy;
    for falsy in [
        Value::Null,
        json!(false),
        json!(0),
        json!(0.0),
        json!(""),
        json!([]),
        json!({}),
    ] {
        assert!(!is_truthy(Some(&falsy)), "{falsy}");
    }
    assert!(!is_truthy(None), "no value is Python's None");
    for truthy in [
        json!(true),
        json!(1),
        json!(-0.5),
        json!("false"),
        json!("0"),
        json!([0]),
        json!({"a": null}),
    ] {
        assert!(is_truthy(Some(&truthy)), "{truthy}");
    }
}

#[test]
fn short_circuit_skips_every_descendant_whatever_its_rule() {
    // Airflow's teardown cases (`test_short_circuit_with_teardowns*`) need setup/teardown
    // tasks, which updraft does not have; with none, ignore=true skips every descendant.
    let d = dag(
        Schedule::None,
        vec![
            branching(task("s", &[]), short_circuit(true)),
            task("a", &["s"]),
            with_rule(task("b", &["a"]), TriggerRule::Always),
            task("c", &[]),
            with_rule(task("d", &["b", "c"]), TriggerRule::AllDone),
        ],
    );
    assert_eq!(
        skips(&d, "s", Some(json!(0))),
        Ok(vec!["a".to_owned(), "b".to_owned(), "d".to_owned()])
    );
    assert_eq!(skips(&d, "s", Some(json!(1))), Ok(vec![]));
}
