//! Helpers shared by the scheduler's integration tests.

// Each test binary uses a part of them.
#![allow(dead_code)]

pub mod live;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::oneshot;
use updraft_core::TaskState;
use updraft_scheduler::{Scheduler, SchedulerConfig};
use updraft_store::{AdminStore, ReadStore, RunRow, SqliteStore, Store};

/// A scheduler of one test: SQLite (exclusive), the DAGs folder `dags`, logs in `logs`, quick
/// rescans and polls; a test changes what it needs with `..config(...)`.
pub fn config(dags: &Path, logs: &Path, hostname: &str) -> SchedulerConfig {
    SchedulerConfig {
        secrets: None,
        sources: None,
        dags_folder: Some(dags.to_path_buf()),
        logs_folder: logs.to_path_buf(),
        parallelism: 8,
        default_pool_slots: 128,
        dags_are_paused_at_creation: false,
        rescan_interval: Duration::from_millis(200),
        poll_interval: Duration::from_millis(200),
        kill_grace: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(5),
        dag_bag: updraft_dag::DagBagOptions::default(),
        hostname: hostname.to_string(),
        default_cwd: None,
        isolation: Default::default(),
        heartbeat_interval: Duration::from_secs(1),
        health_check_threshold: Duration::from_secs(30),
        exclusive: true,
        kubernetes: None,
        max_xcom_size: updraft_executor::xcom::DEFAULT_MAX_XCOM_SIZE,
        notification_retry: Default::default(),
        max_map_length: updraft_core::mapping::DEFAULT_MAX_MAP_LENGTH,
        sensor_poke_timeout: updraft_executor::local::DEFAULT_POKE_TIMEOUT,
    }
}

/// Polls `check` every 10 ms until it yields a value, failing the test after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Triggers `dag_id` once on a live scheduler of `config` over `store`; returns the run once
/// it has finished (failing the test after `deadline`).
pub async fn run_dag_once(
    store: Arc<SqliteStore>,
    config: SchedulerConfig,
    dag_id: &str,
    deadline: Duration,
) -> RunRow {
    let dyn_store: Arc<dyn Store> = store.clone();
    let mut scheduler = Scheduler::new(dyn_store, config).unwrap();
    let waker = scheduler.waker();
    let (stop, stopped) = oneshot::channel::<()>();
    let scheduling = scheduler.run(async {
        let _ = stopped.await;
    });
    let checks = async {
        let run = trigger_and_wait(&store, &waker, dag_id, deadline).await;
        stop.send(()).unwrap();
        run
    };
    let (scheduled, run) = tokio::join!(scheduling, checks);
    scheduled.unwrap();
    run
}

/// Once `dag_id` is loaded (failing the test after `deadline`), triggers a manual run of it
/// and wakes the scheduler; returns the new run.
pub async fn trigger(
    store: &SqliteStore,
    waker: &tokio::sync::Notify,
    dag_id: &str,
    deadline: Duration,
) -> RunRow {
    eventually(&format!("`{dag_id}` to be loaded"), deadline, || async {
        store.dag(dag_id).await.unwrap()
    })
    .await;
    let run =
        updraft_runs::trigger_run(store, dag_id, None, None, serde_json::json!({}), Utc::now())
            .await
            .unwrap();
    waker.notify_one();
    run
}

/// [`trigger`], then waits for the run to finish (failing the test after `deadline`); returns
/// the finished run.
pub async fn trigger_and_wait(
    store: &SqliteStore,
    waker: &tokio::sync::Notify,
    dag_id: &str,
    deadline: Duration,
) -> RunRow {
    let run = trigger(store, waker, dag_id, deadline).await;
    eventually(&format!("the run of `{dag_id}`"), deadline, || async {
        let row = store.run_by_pk(run.id).await.unwrap()?;
        row.state.is_finished().then_some(row)
    })
    .await
}

/// A SQLite store in `dir` (`updraft.db`), migrated.
pub async fn migrated_store(dir: &Path) -> Arc<SqliteStore> {
    let store = Arc::new(SqliteStore::open(&dir.join("updraft.db")).await.unwrap());
    store.migrate().await.unwrap();
    store
}

/// Each task's state in the run `run_pk`, as recorded.
pub async fn task_states(store: &dyn Store, run_pk: i64) -> BTreeMap<String, TaskState> {
    store
        .task_instances(run_pk)
        .await
        .unwrap()
        .into_iter()
        .map(|ti| (ti.task_id, ti.state))
        .collect()
}
