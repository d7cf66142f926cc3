//! A DAG with task groups runs end to end: grouped tasks run under their full ids, and every
//! dependency given through a group (a group upstream: its leaves; a group downstream: its
//! roots) is honoured.

mod common;

use common::eventually;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::oneshot;
use updraft_core::{RunState, TaskState};
use updraft_scheduler::{Scheduler, SchedulerConfig};
use updraft_store::{SqliteStore, Store};

const DEADLINE: Duration = Duration::from_secs(60);

fn config(dags: &Path, logs: &Path) -> SchedulerConfig {
    SchedulerConfig {
        ..common::config(dags, logs, "task-groups-test")
    }
}

/// Each task fails unless the marks of the tasks it must follow exist, then leaves its own.
fn step(marks: &Path, id: &str, after: &[&str]) -> String {
    let checks: String = after
        .iter()
        .map(|u| format!("test -f '{}/{u}' || exit 1; ", marks.display()))
        .collect();
    format!("{checks}touch '{}/{id}'", marks.display())
}

/// (full id, the tasks it must follow) of the DAG below.
const ORDER: [(&str, &[&str]); 7] = [
    ("start", &[]),
    ("extract.a", &["start"]),
    ("extract.b", &["extract.a"]),
    ("extract.inner.x", &["extract.a"]),
    ("extract.inner.y", &["extract.inner.x"]),
    ("transform.t", &["extract.b", "extract.inner.y"]),
    ("load", &["transform.t"]),
];

fn write_dag(dags: &Path, marks: &Path) {
    let s = |id: &str| {
        let after = ORDER.iter().find(|(t, _)| *t == id).unwrap().1;
        step(marks, id, after)
    };
    let text = format!(
        r#"dag_id: grouped
tasks:
  - task_id: start
    bash: "{start}"
  - group_id: extract
    upstream: start
    tasks:
      - task_id: a
        bash: "{a}"
      - task_id: b
        upstream: a
        bash: "{b}"
      - group_id: inner
        upstream: a
        tasks:
          - task_id: x
            bash: "{x}"
          - task_id: y
            upstream: x
            bash: "{y}"
  - group_id: transform
    upstream: extract
    tasks:
      - task_id: t
        bash: "{t}"
  - task_id: load
    upstream: transform
    bash: "{load}"
"#,
        start = s("start"),
        a = s("extract.a"),
        b = s("extract.b"),
        x = s("extract.inner.x"),
        y = s("extract.inner.y"),
        t = s("transform.t"),
        load = s("load"),
    );
    std::fs::write(dags.join("grouped.yaml"), text).unwrap();
}

#[tokio::test]
async fn a_dag_with_groups_runs_in_the_order_its_groups_give() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    let logs = dir.path().join("logs");
    let marks = dir.path().join("marks");
    for folder in [&dags, &marks] {
        std::fs::create_dir_all(folder).unwrap();
    }
    write_dag(&dags, &marks);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let mut scheduler = Scheduler::new(store.clone(), config(&dags, &logs)).unwrap();
    let waker = scheduler.waker();
    let (stop, stopped) = oneshot::channel::<()>();
    let scheduling = scheduler.run(async {
        let _ = stopped.await;
    });
    let checks = async {
        eventually("the DAG to load", DEADLINE, || async {
            store.dag("grouped").await.unwrap()
        })
        .await;
        let run = updraft_runs::trigger_run(
            store.as_ref(),
            "grouped",
            None,
            None,
            serde_json::json!({}),
            Utc::now(),
        )
        .await
        .unwrap();
        waker.notify_one();
        let state = eventually("the run to finish", DEADLINE, || async {
            let row = store.run_by_pk(run.id).await.unwrap()?;
            row.state.is_finished().then_some(row.state)
        })
        .await;
        let instances = store.task_instances(run.id).await.unwrap();
        stop.send(()).unwrap();
        (state, instances)
    };
    let (scheduled, (state, instances)) = tokio::join!(scheduling, checks);
    scheduled.unwrap();

    let by_id: HashMap<&str, _> = instances
        .iter()
        .map(|ti| (ti.task_id.as_str(), ti))
        .collect();
    let mut ids: Vec<&str> = by_id.keys().copied().collect();
    ids.sort_unstable();
    let mut expected: Vec<&str> = ORDER.iter().map(|(id, _)| *id).collect();
    expected.sort_unstable();
    assert_eq!(ids, expected);
    assert_eq!(state, RunState::Success, "{instances:#?}");
    for (id, after) in ORDER {
        let ti = by_id[id];
        assert_eq!(ti.state, TaskState::Success, "{id}");
        assert!(marks.join(id).exists(), "{id} left no mark");
        for upstream in after {
            assert!(
                ti.start_date >= by_id[upstream].end_date,
                "{id} started before {upstream} ended: {ti:#?} {:#?}",
                by_id[upstream]
            );
        }
    }
}
