//! The scheduler on a current-thread runtime (as in `#[tokio::main(flavor = "current_thread")]`
//! or an embedding application's): loading the DAGs folder, noticing a new file and running a
//! try need no worker threads.

mod common;

use common::eventually;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::oneshot;
use updraft_core::RunState;
use updraft_scheduler::{Scheduler, SchedulerConfig};
use updraft_store::{SqliteStore, Store};

/// How long any one step may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);

fn config(dags: &Path, logs: &Path) -> SchedulerConfig {
    SchedulerConfig {
        parallelism: 4,
        ..common::config(dags, logs, "current-thread-test")
    }
}

fn write_dag(dags: &Path, dag_id: &str) {
    let text =
        format!("dag_id: {dag_id}\ntasks:\n  - task_id: say\n    bash: echo hello from {dag_id}\n");
    std::fs::write(dags.join(format!("{dag_id}.yaml")), text).unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn the_scheduler_syncs_the_folder_and_runs_a_dag_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&dags).unwrap();
    write_dag(&dags, "first");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let mut scheduler = Scheduler::new(store.clone(), config(&dags, &logs)).unwrap();
    let waker = scheduler.waker();
    let (stop, stopped) = oneshot::channel::<()>();

    let scheduling = scheduler.run(async {
        let _ = stopped.await;
    });
    let checks = async {
        eventually(
            "the folder sync at start to record `first`",
            DEADLINE,
            || async { store.dag("first").await.unwrap() },
        )
        .await;

        write_dag(&dags, "second");
        eventually(
            "a later folder sync to record `second`",
            DEADLINE,
            || async { store.dag("second").await.unwrap() },
        )
        .await;

        let run = updraft_runs::trigger_run(
            store.as_ref(),
            "second",
            None,
            None,
            serde_json::json!({}),
            Utc::now(),
        )
        .await
        .unwrap();
        waker.notify_one();
        let state = eventually("the run of `second` to finish", DEADLINE, || async {
            let row = store.run_by_pk(run.id).await.unwrap()?;
            row.state.is_finished().then_some(row.state)
        })
        .await;
        assert_eq!(state, RunState::Success);
        let log = updraft_dag::log_path(&logs, &run.tenant, "second", &run.run_id, "say", 1);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("hello from second"), "the try's log:\n{text}");
        stop.send(()).unwrap();
    };

    let (scheduled, ()) = tokio::join!(scheduling, checks);
    scheduled.unwrap();
}
