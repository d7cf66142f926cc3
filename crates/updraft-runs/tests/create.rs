//! Creating runs: task instances and run ids, conf checked against params, and the errors that
//! name what is wrong (an unknown DAG, a bad conf, a run that already exists).

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use updraft_core::{RunState, RunType};
use updraft_runs::{RunError, record_dag_bag, trigger_run};
use updraft_store::{NewestRunsFilter, ReadStore, SqliteStore, Store};

fn t(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 5, hour, 0, 0).unwrap()
}

const DAG: &str = "
dag_id: etl
params:
  size: {default: 3, type: integer}
tasks:
  - task_id: extract
    bash: echo extract
  - task_id: load
    bash: echo load
    upstream: [extract]
";

/// A store holding the `etl` DAG, recorded from a folder as the scheduler records it.
async fn store_with_dag() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("etl.yaml"), DAG).unwrap();
    let store = SqliteStore::in_memory().await.unwrap();
    let bag = updraft_dag::DagBag::load(dir.path());
    assert!(bag.import_errors().is_empty(), "{:?}", bag.import_errors());
    record_dag_bag(&store, &bag, false, t(0)).await.unwrap();
    (store, dir)
}

async fn run_count(store: &dyn Store) -> usize {
    let filter = NewestRunsFilter {
        dag_id: Some("etl".to_string()),
        states: vec![],
        limit: None,
    };
    store.newest_runs(&filter).await.unwrap().len()
}

#[tokio::test]
async fn a_manual_run_gets_airflows_run_id_and_one_instance_per_task() {
    let (store, _dir) = store_with_dag().await;
    let run = trigger_run(&store, "etl", None, Some(t(1)), json!({"size": 5}), t(2))
        .await
        .unwrap();
    assert_eq!(run.run_id, updraft_core::manual_run_id(t(1)));
    assert_eq!(run.run_type, RunType::Manual);
    assert_eq!(run.state, RunState::Queued);
    let mut tasks: Vec<String> = store
        .task_instances(run.id)
        .await
        .unwrap()
        .into_iter()
        .map(|ti| ti.task_id)
        .collect();
    tasks.sort();
    assert_eq!(tasks, ["extract", "load"]);
}

#[tokio::test]
async fn an_unknown_dag_is_named() {
    let (store, _dir) = store_with_dag().await;
    let err = trigger_run(&store, "nope", None, None, json!({}), t(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RunError::DagNotFound(id) if id == "nope"),
        "{err}"
    );
}

#[tokio::test]
async fn a_conf_that_breaks_a_param_creates_no_run() {
    let (store, _dir) = store_with_dag().await;
    let err = trigger_run(&store, "etl", None, None, json!({"size": "big"}), t(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RunError::InvalidConf { dag_id, .. } if dag_id == "etl"),
        "{err}"
    );
    let err = trigger_run(&store, "etl", None, None, json!([1, 2]), t(1))
        .await
        .unwrap_err();
    assert!(matches!(&err, RunError::InvalidConf { .. }), "{err}");
    assert_eq!(run_count(&store).await, 0);
}

#[tokio::test]
async fn a_conf_over_the_size_limit_is_refused_naming_the_limit() {
    let (store, _dir) = store_with_dag().await;
    // `{"blob":"..."}` is 11 bytes around the string.
    let at_limit = json!({ "blob": "x".repeat(updraft_runs::MAX_CONF_BYTES - 11) });
    assert_eq!(
        serde_json::to_string(&at_limit).unwrap().len(),
        updraft_runs::MAX_CONF_BYTES
    );
    trigger_run(&store, "etl", Some("at".into()), Some(t(1)), at_limit, t(1))
        .await
        .unwrap();
    let over = json!({ "blob": "x".repeat(updraft_runs::MAX_CONF_BYTES - 10) });
    let err = trigger_run(&store, "etl", Some("over".into()), Some(t(2)), over, t(2))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RunError::InvalidConf { message, .. }
            if message.starts_with("conf is 1048577 bytes of JSON, over the limit of 1048576 bytes (1 MiB)")),
        "{err}"
    );
    assert_eq!(run_count(&store).await, 1);
}

#[tokio::test]
async fn a_second_run_with_the_same_id_or_logical_date_names_the_existing_run() {
    let (store, _dir) = store_with_dag().await;
    let first = trigger_run(
        &store,
        "etl",
        Some("first".into()),
        Some(t(1)),
        json!({}),
        t(1),
    )
    .await
    .unwrap();

    let same_id = trigger_run(
        &store,
        "etl",
        Some("first".into()),
        Some(t(3)),
        json!({}),
        t(3),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&same_id, RunError::RunExists { run_id, .. } if *run_id == first.run_id),
        "{same_id}"
    );

    let same_date = trigger_run(
        &store,
        "etl",
        Some("other".into()),
        Some(t(1)),
        json!({}),
        t(3),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&same_date, RunError::RunExists { run_id, .. } if *run_id == first.run_id),
        "{same_date}"
    );
    assert_eq!(run_count(&store).await, 1);
}
