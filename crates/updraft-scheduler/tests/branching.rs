//! Branching and short-circuit through a live scheduler on a real SQLite store: a branching
//! `bash` task's success skips its downstream tasks in the same step, trigger rules decide the
//! rest, and the try's log says what was skipped. A try that pushes no `return_value` is read
//! as Airflow reads a callable returning nothing (`None`): a branch follows no task, a short
//! circuit skips.

mod common;

use common::eventually;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use updraft_core::{RunState, TaskState};
use updraft_scheduler::{Scheduler, SchedulerConfig};
use updraft_store::Store;

const DEADLINE: Duration = Duration::from_secs(60);

fn config(dags: &Path, logs: &Path) -> SchedulerConfig {
    SchedulerConfig {
        ..common::config(dags, logs, "branch-test")
    }
}

/// What one run ended as: its state, each task's state, and the log of `logged`'s first try.
struct Ended {
    state: RunState,
    tasks: BTreeMap<String, TaskState>,
    log: String,
}

/// Runs each `(dag_id, logged task)` once on one scheduler.
async fn run_dags(dags: &Path, runs: &[(&str, &str)]) -> Vec<Ended> {
    let dir = tempfile::tempdir().unwrap();
    let store = common::migrated_store(dir.path()).await;
    let logs_path: PathBuf = dir.path().join("logs");
    let dyn_store: Arc<dyn Store> = store.clone();
    let mut scheduler = Scheduler::new(dyn_store, config(dags, &logs_path)).unwrap();
    let waker = scheduler.waker();
    let (stop, stopped) = oneshot::channel::<()>();
    let scheduling = scheduler.run(async {
        let _ = stopped.await;
    });
    let checks = async {
        let mut results = Vec::new();
        for (dag_id, logged) in runs {
            let run = common::trigger_and_wait(&store, &waker, dag_id, DEADLINE).await;
            let state = run.state;
            let tasks = common::task_states(store.as_ref(), run.id).await;
            let log =
                updraft_dag::log_path(&logs_path, &run.tenant, dag_id, &run.run_id, logged, 1);
            // The log line is written off the loop; wait for it rather than race it.
            let log = eventually(&format!("the log of {logged}"), DEADLINE, || async {
                std::fs::read_to_string(&log)
                    .ok()
                    .filter(|text| text.contains("branch"))
            })
            .await;
            results.push(Ended { state, tasks, log });
        }
        stop.send(()).unwrap();
        results
    };
    let (scheduled, results) = tokio::join!(scheduling, checks);
    scheduled.unwrap();
    results
}

fn states(pairs: &[(&str, TaskState)]) -> BTreeMap<String, TaskState> {
    pairs.iter().map(|(id, s)| (id.to_string(), *s)).collect()
}

const SHORT_CIRCUIT: &str = "
  - task_id: gate
    bash: echo checking
    short_circuit: true
    ignore_downstream_trigger_rules: IGNORE
  - task_id: a
    bash: echo a
    upstream: [gate]
  - task_id: cleanup
    bash: echo cleanup
    trigger_rule: all_done
    upstream: [a]
  - task_id: unrelated
    bash: echo unrelated
";

const BRANCH: &str = "
  - task_id: pick
    bash: echo picking
    branch: true
  - task_id: left
    bash: echo left
    upstream: [pick]
  - task_id: right
    bash: echo right
    upstream: [pick]
  - task_id: after_left
    bash: echo after
    upstream: [left]
  - task_id: join
    bash: echo join
    trigger_rule: none_failed_min_one_success
    upstream: [left, right]
";

fn write_dag(dags: &Path, dag_id: &str, tasks: &str) {
    std::fs::create_dir_all(dags).unwrap();
    let text = format!("dag_id: {dag_id}\ntasks:{tasks}");
    std::fs::write(dags.join(format!("{dag_id}.yaml")), text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_circuits_skip_everything_below_or_only_the_direct_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    write_dag(&dags, "sc_all", &SHORT_CIRCUIT.replace("IGNORE", "true"));
    write_dag(
        &dags,
        "sc_direct",
        &SHORT_CIRCUIT.replace("IGNORE", "false"),
    );
    let ended = run_dags(&dags, &[("sc_all", "gate"), ("sc_direct", "gate")]).await;

    assert_eq!(ended[0].state, RunState::Success);
    assert_eq!(
        ended[0].tasks,
        states(&[
            ("a", TaskState::Skipped),
            ("cleanup", TaskState::Skipped),
            ("gate", TaskState::Success),
            ("unrelated", TaskState::Success),
        ]),
        "ignoring trigger rules skips the all_done cleanup too"
    );
    assert!(
        ended[0].log.contains("skipping a, cleanup"),
        "{}",
        ended[0].log
    );

    assert_eq!(ended[1].state, RunState::Success);
    assert_eq!(
        ended[1].tasks,
        states(&[
            ("a", TaskState::Skipped),
            ("cleanup", TaskState::Success),
            ("gate", TaskState::Success),
            ("unrelated", TaskState::Success),
        ]),
        "respecting trigger rules lets the all_done cleanup run"
    );
    assert!(ended[1].log.contains("skipping a\n"), "{}", ended[1].log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_that_returns_nothing_follows_no_task() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    write_dag(&dags, "branchy", BRANCH);
    let ended = run_dags(&dags, &[("branchy", "pick")]).await;
    assert_eq!(ended[0].state, RunState::Success);
    assert_eq!(
        ended[0].tasks,
        states(&[
            ("after_left", TaskState::Skipped),
            ("join", TaskState::Skipped),
            ("left", TaskState::Skipped),
            ("pick", TaskState::Success),
            ("right", TaskState::Skipped),
        ])
    );
    assert!(
        ended[0]
            .log
            .contains("branching on no return_value: skipping left, right"),
        "{}",
        ended[0].log
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bash_branch_follows_its_pushed_return_value_and_the_join_runs() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    let pushing = |line: &str| {
        BRANCH.replace(
            "    bash: echo picking\n",
            &format!("    bash: echo {line}\n    do_xcom_push: true\n"),
        )
    };
    write_dag(&dags, "go_right", &pushing("right"));
    write_dag(&dags, "go_nowhere", &pushing("nowhere"));
    write_dag(
        &dags,
        "sc_zero",
        &SHORT_CIRCUIT
            .replace("IGNORE", "true")
            .replace("echo checking\n", "echo 0\n    do_xcom_push: true\n"),
    );
    write_dag(
        &dags,
        "sc_text",
        &SHORT_CIRCUIT
            .replace("IGNORE", "true")
            .replace("echo checking\n", "echo yes\n    do_xcom_push: true\n"),
    );
    let ended = run_dags(
        &dags,
        &[
            ("go_right", "pick"),
            ("go_nowhere", "pick"),
            ("sc_zero", "gate"),
            ("sc_text", "gate"),
        ],
    )
    .await;

    assert_eq!(ended[0].state, RunState::Success);
    assert_eq!(
        ended[0].tasks,
        states(&[
            ("after_left", TaskState::Skipped),
            ("join", TaskState::Success),
            ("left", TaskState::Skipped),
            ("pick", TaskState::Success),
            ("right", TaskState::Success),
        ])
    );
    assert!(
        ended[0]
            .log
            .contains("branching on \"right\": skipping left"),
        "{}",
        ended[0].log
    );

    assert_eq!(ended[1].state, RunState::Failed);
    assert_eq!(ended[1].tasks["pick"], TaskState::Failed);
    assert_eq!(ended[1].tasks["left"], TaskState::UpstreamFailed);
    assert!(
        ended[1]
            .log
            .contains("'branch_task_ids' must contain only valid task_ids")
            && ended[1].log.contains("\"nowhere\""),
        "{}",
        ended[1].log
    );

    assert_eq!(ended[2].tasks["a"], TaskState::Skipped, "0 is falsy");
    assert_eq!(ended[2].tasks["cleanup"], TaskState::Skipped);
    assert_eq!(ended[3].tasks["a"], TaskState::Success, "\"yes\" is truthy");
    assert_eq!(ended[3].tasks["cleanup"], TaskState::Success);
    assert!(
        ended[3].log.contains("no downstream task skipped"),
        "{}",
        ended[3].log
    );
}
