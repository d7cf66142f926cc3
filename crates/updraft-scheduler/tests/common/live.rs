//! A live scheduler beside a test's checks, on a real SQLite store: DAG files written into
//! a DAGs folder of the test's own, connections given as `AIRFLOW_CONN_*` values, and the
//! reads the checks make (an instance, waiting for a state, a finished run, its pokes, a
//! try's log).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, oneshot};
use updraft_core::{RunState, TaskState};
use updraft_scheduler::{Scheduler, SchedulerConfig};
use updraft_secrets::{EnvBackend, Secrets, SecretsBackend};
use updraft_store::{ReadStore, RunRow, SqliteStore, Store, TiKey, TiRow};

use super::eventually;

pub const DEADLINE: Duration = Duration::from_secs(60);

/// What a test's checks get: the store, a way to wake the scheduler, the folders.
#[derive(Clone)]
pub struct Ctx {
    pub store: Arc<SqliteStore>,
    pub waker: Arc<Notify>,
    /// A folder of the test's own, for the files sensors wait for.
    pub data: PathBuf,
    pub logs: PathBuf,
}

/// Writes `files` (path in the DAGs folder, text; `{data}` replaced by the data folder) and
/// runs `checks` beside a scheduler given `connections` (`AIRFLOW_CONN_*` values).
pub async fn with_scheduler<F, Fut>(
    files: &[(&str, &str)],
    connections: &[(&str, String)],
    checks: F,
) where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    with_configured_scheduler(files, connections, |_| {}, checks).await;
}

/// [`with_scheduler`], the scheduler's configuration changed by `configure` first.
pub async fn with_configured_scheduler<F, Fut>(
    files: &[(&str, &str)],
    connections: &[(&str, String)],
    configure: impl FnOnce(&mut SchedulerConfig),
    checks: F,
) where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for (path, text) in files {
        let file = dags.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let text = text.replace("{data}", &data.display().to_string());
        std::fs::write(file, text).unwrap();
    }
    let store = super::migrated_store(dir.path()).await;
    let logs = dir.path().join("logs");
    let vars = connections
        .iter()
        .map(|(id, value)| (format!("AIRFLOW_CONN_{}", id.to_uppercase()), value.clone()));
    let backends: Vec<Arc<dyn SecretsBackend>> = vec![Arc::new(EnvBackend::from_vars(vars))];
    let config = SchedulerConfig {
        secrets: Some(Arc::new(Secrets::new(backends, Duration::ZERO))),
        ..super::config(&dags, &logs, "sensor-test")
    };
    let mut config = config;
    configure(&mut config);
    let dyn_store: Arc<dyn Store> = store.clone();
    let mut scheduler = Scheduler::new(dyn_store, config).unwrap();
    let ctx = Ctx {
        store,
        waker: scheduler.waker(),
        data,
        logs,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let scheduling = scheduler.run(async {
        let _ = stopped.await;
    });
    let checking = async {
        checks(ctx).await;
        stop.send(()).unwrap();
    };
    let (scheduled, ()) = tokio::join!(scheduling, checking);
    scheduled.unwrap();
}

impl Ctx {
    pub async fn trigger(
        &self,
        dag_id: &str,
        logical_date: Option<DateTime<Utc>>,
        conf: serde_json::Value,
    ) -> RunRow {
        eventually(&format!("`{dag_id}` to be loaded"), DEADLINE, || async {
            self.store.dag(dag_id).await.unwrap()
        })
        .await;
        let run = updraft_runs::trigger_run(
            self.store.as_ref(),
            dag_id,
            None,
            logical_date,
            conf,
            Utc::now(),
        )
        .await
        .unwrap();
        self.waker.notify_one();
        run
    }

    pub async fn ti(&self, run: &RunRow, task_id: &str) -> TiRow {
        self.store
            .task_instance(&TiKey {
                run_pk: run.id,
                task_id: task_id.to_owned(),
                map_index: -1,
            })
            .await
            .unwrap()
            .unwrap()
    }

    /// Waits until `task_id` of `run` is in `state`.
    pub async fn until(&self, run: &RunRow, task_id: &str, state: TaskState) -> TiRow {
        eventually(&format!("{task_id} to be {state}"), DEADLINE, || async {
            Some(self.ti(run, task_id).await).filter(|ti| ti.state == state)
        })
        .await
    }

    /// Waits until `run` is over; returns its state and each task's state.
    pub async fn finished(&self, run: &RunRow) -> (RunState, BTreeMap<String, TaskState>) {
        let state = eventually("the run to finish", DEADLINE, || async {
            let row = self.store.run_by_pk(run.id).await.unwrap()?;
            row.state.is_finished().then_some(row.state)
        })
        .await;
        (state, super::task_states(self.store.as_ref(), run.id).await)
    }

    pub async fn reschedules(&self, run: &RunRow, task_id: &str, try_number: u32) -> usize {
        let key = TiKey {
            run_pk: run.id,
            task_id: task_id.to_owned(),
            map_index: -1,
        };
        self.store
            .reschedules(&key, try_number)
            .await
            .unwrap()
            .len()
    }

    pub fn log(&self, run: &RunRow, task_id: &str, try_number: u32) -> String {
        let path = updraft_dag::log_path(
            &self.logs,
            &run.tenant,
            &run.dag_id,
            &run.run_id,
            task_id,
            try_number,
        );
        std::fs::read_to_string(path).unwrap_or_default()
    }
}
