//! No kind of stimulus starves another: while a huge run's tries end one after another (so
//! executor events never stop coming), a one-task DAG triggered meanwhile is started, run and
//! finished long before the huge run is over.

mod common;

use common::eventually;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::oneshot;
use updraft_core::{RunState, TaskState};
use updraft_scheduler::{Scheduler, SchedulerConfig};
use updraft_store::{SqliteStore, Store};

/// How long any one wait may take before the test fails (a safety net, not the bound tested).
const DEADLINE: Duration = Duration::from_secs(120);
/// Tasks of the huge run.
const HUGE: usize = 3_000;

fn config(dags: &Path, logs: &Path) -> SchedulerConfig {
    SchedulerConfig {
        rescan_interval: Duration::from_secs(60),
        poll_interval: Duration::from_secs(60),
        dag_bag: updraft_dag::DagBagOptions {
            max_file_size: 16 * 1024 * 1024,
            ..updraft_dag::DagBagOptions::default()
        },
        ..common::config(dags, logs, "fairness-test")
    }
}

/// `huge`: independent no-op tasks, four at a time (so the other DAG's task finds room);
/// `small`: one no-op task.
fn write_dags(dags: &Path) {
    let mut huge = String::from("dag_id: huge\nmax_active_tasks: 4\ntasks:\n");
    for t in 0..HUGE {
        huge.push_str(&format!("  - {{task_id: t{t}, noop: true}}\n"));
    }
    std::fs::write(dags.join("huge.yaml"), huge).unwrap();
    std::fs::write(
        dags.join("small.yaml"),
        "dag_id: small\ntasks:\n  - {task_id: only, noop: true}\n",
    )
    .unwrap();
}

async fn succeeded(store: &dyn Store, run_pk: i64) -> usize {
    store
        .task_instances(run_pk)
        .await
        .unwrap()
        .iter()
        .filter(|ti| ti.state == TaskState::Success)
        .count()
}

#[tokio::test(flavor = "current_thread")]
async fn a_one_task_run_triggered_during_a_huge_run_finishes_long_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&dags).unwrap();
    write_dags(&dags);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let mut scheduler = Scheduler::new(store.clone(), config(&dags, &logs)).unwrap();
    let waker = scheduler.waker();
    let (stop, stopped) = oneshot::channel::<()>();

    let scheduling = scheduler.run(async {
        let _ = stopped.await;
    });
    let checks = async {
        eventually("both DAGs recorded", DEADLINE, || async {
            let huge = store.dag("huge").await.unwrap();
            let small = store.dag("small").await.unwrap();
            (huge.is_some() && small.is_some()).then_some(())
        })
        .await;
        let trigger = |dag_id: &'static str| {
            let store = store.clone();
            async move {
                updraft_runs::trigger_run(
                    store.as_ref(),
                    dag_id,
                    None,
                    None,
                    serde_json::json!({}),
                    Utc::now(),
                )
                .await
                .unwrap()
            }
        };
        let huge = trigger("huge").await;
        waker.notify_one();
        // Events flow: the huge run's tries are ending one after another.
        eventually("the huge run under way", DEADLINE, || async {
            (succeeded(store.as_ref(), huge.id).await >= 20).then_some(())
        })
        .await;

        let small = trigger("small").await;
        waker.notify_one();
        let done_at_trigger = succeeded(store.as_ref(), huge.id).await;
        let state = eventually("the small run to finish", DEADLINE, || async {
            let row = store.run_by_pk(small.id).await.unwrap()?;
            row.state.is_finished().then_some(row.state)
        })
        .await;
        let done_at_small_end = succeeded(store.as_ref(), huge.id).await;
        let huge_state = store.run_by_pk(huge.id).await.unwrap().unwrap().state;
        stop.send(()).unwrap();

        assert_eq!(state, RunState::Success);
        assert_eq!(
            huge_state,
            RunState::Running,
            "the small run waited for the huge run to end"
        );
        // The bound, relative to the huge run: the small run started and ended while fewer
        // than a tenth of the huge run's tasks went by.
        let meanwhile = done_at_small_end - done_at_trigger;
        assert!(
            meanwhile < HUGE / 10,
            "{meanwhile} of the huge run's {HUGE} tasks ended before the small run did"
        );
    };

    let (scheduled, ()) = tokio::join!(scheduling, checks);
    scheduled.unwrap();
}
