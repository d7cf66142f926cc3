//! Airflow's trigger-rule tests (`tests/unit/ti_deps/deps/test_trigger_rule_dep.py`) against
//! [`trigger_decision`]: each case gives the upstream states of one of Airflow's tests and the
//! outcome it asserts with `flag_upstream_failed=True` (the scheduler's setting): the task
//! passes (runs), is set skipped or upstream_failed, or waits. Airflow's cases whose faked
//! counts do not add up to real upstream tasks (e.g. `done=2` with no upstream) are left out:
//! updraft counts real instances, so they cannot occur.

use updraft_core::TaskState;
use updraft_core::evaluate::{TriggerDecision, UpstreamCounts, trigger_decision};
use updraft_dag::TriggerRule;

use TaskState as S;
use TriggerDecision::{Run, Skip, UpstreamFailed, Wait};
use TriggerRule as R;

fn decide(rule: TriggerRule, upstream: &[TaskState]) -> TriggerDecision {
    trigger_decision(rule, &UpstreamCounts::from_states(upstream.iter().copied()))
}

#[test]
fn airflow_trigger_rule_dep_cases() {
    let cases: &[(&str, TriggerRule, &[TaskState], TriggerDecision)] = &[
        ("test_no_upstream_tasks", R::AllDone, &[], Run),
        ("test_always_tr", R::Always, &[S::None], Run),
        (
            "test_one_success_tr_failure",
            R::OneSuccess,
            &[S::Skipped, S::Failed, S::Removed, S::UpstreamFailed],
            UpstreamFailed,
        ),
        (
            "test_one_success_tr_failure_all_skipped",
            R::OneSuccess,
            &[S::Skipped, S::Skipped],
            Skip,
        ),
        (
            "test_one_failure_tr_failure",
            R::OneFailed,
            &[S::Success, S::Success],
            Skip,
        ),
        (
            "test_one_failure_tr_success",
            R::OneFailed,
            &[S::Skipped, S::Skipped, S::Failed, S::Failed],
            Run,
        ),
        (
            "test_one_failure_tr_success_no_failed",
            R::OneFailed,
            &[S::Skipped, S::Skipped, S::UpstreamFailed, S::UpstreamFailed],
            Run,
        ),
        (
            "test_one_done_tr_success",
            R::OneDone,
            &[S::Success, S::Success],
            Run,
        ),
        (
            "test_one_done_tr_success_with_failed",
            R::OneDone,
            &[S::Failed, S::Failed],
            Run,
        ),
        (
            "test_one_done_tr_skip",
            R::OneDone,
            &[S::Skipped, S::Skipped],
            Skip,
        ),
        (
            "test_one_done_tr_upstream_failed",
            R::OneDone,
            &[S::UpstreamFailed, S::UpstreamFailed],
            Skip,
        ),
        (
            "test_all_success_tr_success",
            R::AllSuccess,
            &[S::Success],
            Run,
        ),
        (
            "test_all_success_tr_failure",
            R::AllSuccess,
            &[S::Success, S::Failed],
            UpstreamFailed,
        ),
        (
            "test_all_success_tr_skip",
            R::AllSuccess,
            &[S::Success, S::Skipped],
            Skip,
        ),
        (
            "test_none_failed_tr_success",
            R::NoneFailed,
            &[S::Success, S::Skipped],
            Run,
        ),
        (
            "test_none_failed_tr_failure",
            R::NoneFailed,
            &[S::Success, S::Skipped, S::Failed],
            UpstreamFailed,
        ),
        (
            "test_none_failed_tr_failure_with_upstream_failure",
            R::NoneFailed,
            &[S::Success, S::Skipped, S::UpstreamFailed],
            UpstreamFailed,
        ),
        (
            "test_none_failed_min_one_success_tr_success",
            R::NoneFailedMinOneSuccess,
            &[S::Success, S::Skipped],
            Run,
        ),
        (
            "test_none_failed_min_one_success_tr_skipped",
            R::NoneFailedMinOneSuccess,
            &[S::Skipped, S::Skipped],
            Skip,
        ),
        (
            "test_none_failed_min_one_success_tr_failure",
            R::NoneFailedMinOneSuccess,
            &[S::Success, S::Skipped, S::Failed],
            UpstreamFailed,
        ),
        (
            "test_none_failed_min_one_success_tr_upstream_failure",
            R::NoneFailedMinOneSuccess,
            &[S::Success, S::Skipped, S::UpstreamFailed],
            UpstreamFailed,
        ),
        (
            "test_all_failed_tr_success",
            R::AllFailed,
            &[S::Failed, S::Failed],
            Run,
        ),
        (
            "test_all_failed_tr_failure",
            R::AllFailed,
            &[S::Success, S::Success],
            Skip,
        ),
        (
            "test_all_done_tr_success",
            R::AllDone,
            &[S::Success, S::Success],
            Run,
        ),
        (
            "test_all_done_tr_failure",
            R::AllDone,
            &[S::Success, S::None],
            Wait,
        ),
        (
            "test_all_skipped_tr_failure",
            R::AllSkipped,
            &[S::Success],
            Skip,
        ),
        (
            "test_all_skipped_tr_failure_upstream_failed",
            R::AllSkipped,
            &[S::UpstreamFailed],
            Skip,
        ),
        (
            "test_all_skipped_tr_success",
            R::AllSkipped,
            &[S::Skipped, S::Skipped, S::Skipped],
            Run,
        ),
        (
            "test_none_skipped_tr_success",
            R::NoneSkipped,
            &[S::Success, S::Success, S::Failed],
            Run,
        ),
        (
            "test_none_skipped_tr_failure",
            R::NoneSkipped,
            &[S::Success, S::Skipped],
            Skip,
        ),
        (
            "test_none_skipped_tr_failure_empty",
            R::NoneSkipped,
            &[S::None],
            Wait,
        ),
    ];
    for (name, rule, upstream, expected) in cases {
        assert_eq!(decide(*rule, upstream), *expected, "{name}");
    }
}

/// `all_done_min_one_success` (Airflow 3.1's `TriggerRuleDep`): skipped upstreams are not
/// "done" for it, so any skipped upstream skips the task, even while others still run.
#[test]
fn all_done_min_one_success_as_airflow_evaluates_it() {
    let cases: &[(&[TaskState], TriggerDecision)] = &[
        (&[S::Success, S::Failed], Run),
        (&[S::Success, S::UpstreamFailed, S::Removed], Run),
        (&[S::Success, S::Running], Wait),
        (&[S::Failed, S::UpstreamFailed], UpstreamFailed),
        (&[S::Success, S::Skipped], Skip),
        (&[S::Running, S::Skipped], Skip),
        (&[S::Skipped, S::Skipped], Skip),
    ];
    for (upstream, expected) in cases {
        assert_eq!(
            decide(R::AllDoneMinOneSuccess, upstream),
            *expected,
            "{upstream:?}"
        );
    }
}
