//! Dynamic task mapping through a live scheduler and real processes: a task maps over an
//! upstream's XCom, a literal and a param (a cross product), each instance gets its values in
//! its template, its environment and its own log, and an unmapped downstream pulls every
//! instance's value in map index order; a task mapped over nothing is skipped and its
//! downstream with it; one over more values than `max_map_length` fails; a failed mapped
//! instance fails an `all_success` downstream; `max_active_tis_per_dag` bounds the tries
//! running at once.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use updraft_core::{RunState, TaskState};
use updraft_scheduler::SchedulerConfig;
use updraft_store::{ReadStore, RunRow, SqliteStore, TiRow};

const DEADLINE: Duration = Duration::from_secs(60);

const MAPPED: &str = r#"
dag_id: mapped
params:
  sizes: {default: [small, large]}
tasks:
  - task_id: list_files
    bash: |
      echo '{"return_value": ["a.csv", "b.csv", "c.csv"]}' > "$UPDRAFT_XCOM_PATH"
  - task_id: work
    expand:
      file: {xcom: list_files}
      size: "{{ params.sizes | tojson }}"
    bash: |
      echo "file={{ mapped.file }} size={{ mapped.size }} index={{ map_index }} env=$UPDRAFT_MAP_INDEX"
      echo "{\"return_value\": \"{{ mapped.file }}/{{ mapped.size }}\"}" > "$UPDRAFT_XCOM_PATH"
  - task_id: total
    upstream: [work]
    bash: "echo got={{ ti.xcom_pull(task_ids='work') | tojson }}"
"#;

const EMPTY: &str = r#"
dag_id: empty
tasks:
  - task_id: nothing
    bash: |
      echo '{"return_value": []}' > "$UPDRAFT_XCOM_PATH"
  - task_id: each
    expand:
      x: {xcom: nothing}
    bash: echo never
  - task_id: after
    upstream: [each]
    bash: echo never
  - task_id: cleanup
    upstream: [each]
    trigger_rule: all_done
    bash: echo cleaned
"#;

const TOO_MANY: &str = r#"
dag_id: too_many
tasks:
  - task_id: each
    expand:
      x: [1, 2, 3, 4, 5, 6, 7]
    bash: echo never
"#;

const ONE_FAILS: &str = r#"
dag_id: one_fails
tasks:
  - task_id: each
    expand:
      x: [0, 1, 2]
    bash: "echo x={{ mapped.x }}; test {{ mapped.x }} -ne 1"
  - task_id: after
    upstream: [each]
    bash: echo never
"#;

const LIMITED: &str = r#"
dag_id: limited
tasks:
  - task_id: each
    max_active_tis_per_dag: 2
    expand:
      x: [0, 1, 2, 3]
    bash: sleep 0.3
"#;

fn config(dags: &Path, logs: &Path) -> SchedulerConfig {
    SchedulerConfig {
        max_map_length: 6,
        ..common::config(dags, logs, "mapping-test")
    }
}

/// Runs `dag_id` once on a live scheduler; returns the run once finished.
async fn run_dag(store: Arc<SqliteStore>, dags: &Path, logs: &Path, dag_id: &str) -> RunRow {
    common::run_dag_once(store, config(dags, logs), dag_id, DEADLINE).await
}

fn log(logs: &Path, run: &RunRow, task_id: &str, map_index: i32) -> String {
    let path = updraft_dag::mapped_log_path(
        logs,
        &run.tenant,
        &run.dag_id,
        &run.run_id,
        task_id,
        map_index,
        1,
    );
    std::fs::read_to_string(&path).unwrap_or_default()
}

async fn setup(dag: &str) -> (tempfile::TempDir, Arc<SqliteStore>, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(dags.join("dag.yaml"), dag).unwrap();
    let store = common::migrated_store(dir.path()).await;
    let logs = dir.path().join("logs");
    (dir, store, dags, logs)
}

/// (task_id, map_index, state) of every instance of the run.
async fn states(store: &SqliteStore, run: &RunRow) -> Vec<(String, i32, TaskState)> {
    store
        .task_instances(run.id)
        .await
        .unwrap()
        .into_iter()
        .map(|ti: TiRow| (ti.task_id, ti.map_index, ti.state))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_maps_over_an_xcom_and_a_param_and_its_downstream_pulls_every_value() {
    let (_dir, store, dags, logs) = setup(MAPPED).await;
    let run = run_dag(store.clone(), &dags, &logs, "mapped").await;
    let total = log(&logs, &run, "total", -1);
    assert_eq!(run.state, RunState::Success, "{total}");
    // 3 files × 2 sizes, the last argument fastest (Airflow's order).
    let expected = [
        ("a.csv", "small"),
        ("a.csv", "large"),
        ("b.csv", "small"),
        ("b.csv", "large"),
        ("c.csv", "small"),
        ("c.csv", "large"),
    ];
    let work: Vec<(i32, TaskState)> = states(&store, &run)
        .await
        .into_iter()
        .filter(|(task, _, _)| task == "work")
        .map(|(_, i, s)| (i, s))
        .collect();
    let all_done: Vec<(i32, TaskState)> = (0..6).map(|i| (i, TaskState::Success)).collect();
    assert_eq!(work, all_done);
    for (i, (file, size)) in expected.iter().enumerate() {
        let text = log(&logs, &run, "work", i as i32);
        let line = format!("file={file} size={size} index={i} env={i}");
        assert!(
            text.contains(&line),
            "{line} in the log of map index {i}:\n{text}"
        );
    }
    // `tojson` of the list, its quotes dropped by the shell.
    let pulled: Vec<String> = expected.iter().map(|(f, s)| format!("{f}/{s}")).collect();
    let line = format!("got=[{}]", pulled.join(", "));
    assert!(total.contains(&line), "{line} in:\n{total}");
    // An unmapped task's log path is as it always was.
    assert!(!log(&logs, &run, "list_files", -1).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_mapped_over_nothing_is_skipped_with_its_downstream() {
    // Airflow: tests/models/test_dagrun.py::test_ti_scheduling_mapped_zero_length.
    let (_dir, store, dags, logs) = setup(EMPTY).await;
    let run = run_dag(store.clone(), &dags, &logs, "empty").await;
    assert_eq!(run.state, RunState::Success);
    assert_eq!(
        states(&store, &run).await,
        [
            ("after".to_owned(), -1, TaskState::Skipped),
            ("cleanup".to_owned(), -1, TaskState::Success),
            ("each".to_owned(), -1, TaskState::Skipped),
            ("nothing".to_owned(), -1, TaskState::Success),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_over_max_map_length_fails_saying_why() {
    let (_dir, store, dags, logs) = setup(TOO_MANY).await;
    let run = run_dag(store.clone(), &dags, &logs, "too_many").await;
    assert_eq!(run.state, RunState::Failed);
    assert_eq!(
        states(&store, &run).await,
        [("each".to_owned(), -1, TaskState::Failed)]
    );
    let notes = store.notes(&[run.id]).await.unwrap();
    let note = notes
        .iter()
        .find(|n| n.task_id.as_deref() == Some("each"))
        .map(|n| n.note.clone())
        .unwrap_or_default();
    assert!(
        note.contains("7 mapped instances, more than [core] max_map_length (6)"),
        "{note}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failed_instance_fails_an_all_success_downstream() {
    let (_dir, store, dags, logs) = setup(ONE_FAILS).await;
    let run = run_dag(store.clone(), &dags, &logs, "one_fails").await;
    assert_eq!(run.state, RunState::Failed);
    let logs: Vec<String> = (0..3).map(|i| log(&logs, &run, "each", i)).collect();
    for (i, text) in logs.iter().enumerate() {
        assert!(text.contains(&format!("x={i}")), "map index {i}: {text}");
    }
    assert_eq!(
        states(&store, &run).await,
        [
            ("after".to_owned(), -1, TaskState::UpstreamFailed),
            ("each".to_owned(), 0, TaskState::Success),
            ("each".to_owned(), 1, TaskState::Failed),
            ("each".to_owned(), 2, TaskState::Success),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_active_tis_per_dag_bounds_the_tries_running_at_once() {
    let (_dir, store, dags, logs) = setup(LIMITED).await;
    let run = run_dag(store.clone(), &dags, &logs, "limited").await;
    assert_eq!(
        run.state,
        RunState::Success,
        "{}",
        log(&logs, &run, "each", 0)
    );
    let tis = store.task_instances(run.id).await.unwrap();
    assert_eq!(tis.len(), 4);
    // At any instant at most 2 tries were between start and end.
    let mut edges: Vec<(chrono::DateTime<Utc>, i32)> = Vec::new();
    for ti in &tis {
        edges.push((ti.start_date.unwrap(), 1));
        edges.push((ti.end_date.unwrap(), -1));
    }
    edges.sort();
    let mut running = 0;
    let mut most = 0;
    for (_, step) in edges {
        running += step;
        most = most.max(running);
    }
    assert_eq!(most, 2, "{tis:#?}");
}
