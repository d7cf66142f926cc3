//! XComs through a live scheduler and real processes: a task pushes through its XCom file and
//! another through `do_xcom_push`, a downstream task renders `ti.xcom_pull` and echoes it into
//! its log; a retry starts without the failed try's XComs; a push over `max_xcom_size` fails
//! its try with the reason in its log.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use updraft_core::RunState;
use updraft_scheduler::SchedulerConfig;
use updraft_store::{RunRow, SqliteStore, XComQuery, XComStore};

const DEADLINE: Duration = Duration::from_secs(60);

const PIPELINE: &str = r#"
dag_id: pipeline
tasks:
  - task_id: push
    bash: |
      echo pushing
      echo '{"return_value": {"n": 42}, "path": "s3://b/k"}' > "$UPDRAFT_XCOM_PATH"
  - task_id: line
    do_xcom_push: true
    bash: "echo first; echo 'the last line'"
  - task_id: flaky
    retries: 1
    retry_delay: 1s
    bash: |
      if [ "$UPDRAFT_TRY_NUMBER" = 1 ]; then
        echo '{"stale": "from try 1"}' > "$UPDRAFT_XCOM_PATH"
        exit 1
      fi
      echo '{"fresh": 2}' > "$UPDRAFT_XCOM_PATH"
  - task_id: pull
    upstream: [push, line, flaky]
    bash: >-
      echo "n={{ ti.xcom_pull(task_ids='push').n }}
      path={{ ti.xcom_pull(task_ids='push', key='path') }}
      line={{ task_instance.xcom_pull(task_ids='line') }}
      stale={{ ti.xcom_pull(task_ids='flaky', key='stale') }}
      fresh={{ ti.xcom_pull(task_ids='flaky', key='fresh') }}
      both={{ ti.xcom_pull(task_ids=['push', 'line'], key='path') | tojson }}"
"#;

const TOO_BIG: &str = r#"
dag_id: too_big
tasks:
  - task_id: t
    bash: |
      printf '{"big": "%s"}' "$(head -c 300 /dev/zero | tr '\0' x)" > "$UPDRAFT_XCOM_PATH"
"#;

fn config(dags: &Path, logs: &Path) -> SchedulerConfig {
    SchedulerConfig {
        max_xcom_size: 256,
        ..common::config(dags, logs, "xcom-test")
    }
}

/// Runs `dag_id` once on a live scheduler; returns the run once finished.
async fn run_dag(store: Arc<SqliteStore>, dags: &Path, logs: &Path, dag_id: &str) -> RunRow {
    common::run_dag_once(store, config(dags, logs), dag_id, DEADLINE).await
}

fn log(logs: &Path, run: &RunRow, task_id: &str, try_number: u32) -> String {
    let path = updraft_dag::log_path(
        logs,
        &run.tenant,
        &run.dag_id,
        &run.run_id,
        task_id,
        try_number,
    );
    std::fs::read_to_string(&path).unwrap_or_default()
}

async fn setup(dag: &str, file: &str) -> (tempfile::TempDir, Arc<SqliteStore>, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(dags.join(file), dag).unwrap();
    let store = common::migrated_store(dir.path()).await;
    let logs = dir.path().join("logs");
    (dir, store, dags, logs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_task_renders_what_its_upstreams_pushed_and_a_retry_starts_clean() {
    let (_dir, store, dags, logs) = setup(PIPELINE, "pipeline.yaml").await;
    let run = run_dag(store.clone(), &dags, &logs, "pipeline").await;
    let pulled = log(&logs, &run, "pull", 1);
    assert_eq!(run.state, RunState::Success, "{pulled}");
    for expected in [
        "n=42",
        "path=s3://b/k",
        "line=the last line",
        "stale=None",
        "fresh=2",
        // The JSON's quotes are the shell's.
        "both=[s3://b/k, null]",
    ] {
        assert!(pulled.contains(expected), "{expected} in:\n{pulled}");
    }
    let (rows, _) = store
        .xcoms(&XComQuery {
            run_pk: run.id,
            task_ids: Some(vec!["flaky".into()]),
            ..XComQuery::default()
        })
        .await
        .unwrap();
    let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["fresh"], "the failed try's XComs are gone with it");
    let (all, total) = store
        .xcoms(&XComQuery {
            run_pk: run.id,
            ..XComQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(total, 4, "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_over_max_xcom_size_fails_the_try_saying_why() {
    let (_dir, store, dags, logs) = setup(TOO_BIG, "too_big.yaml").await;
    let run = run_dag(store.clone(), &dags, &logs, "too_big").await;
    assert_eq!(run.state, RunState::Failed);
    let text = log(&logs, &run, "t", 1);
    assert!(
        text.contains("the XCom `big` is 302 bytes of JSON, over the limit of 256 bytes"),
        "{text}"
    );
    let (_, total) = store
        .xcoms(&XComQuery {
            run_pk: run.id,
            ..XComQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(total, 0);
}
