//! Creating DAG runs. Scheduled, manual and backfill runs all go through [`create_run`] (and
//! asset-triggered ones through [`create_asset_triggered_run`]), so
//! every run gets its task instances, parameters and run id the same way.

use chrono::{DateTime, Utc};
use updraft_core::RunType;
use updraft_core::timetable::{DataInterval, manual_interval};
use updraft_dag::Dag;
use updraft_store::{AssetStore, NewRun, NewTi, OperatorStore, ReadStore, RunRow, StoreError};

use crate::RunError;

#[derive(Debug, Clone)]
pub struct RunRequest {
    pub run_type: RunType,
    /// `None`: Airflow's `<run_type>__<logical_date>` form.
    pub run_id: Option<String>,
    pub logical_date: DateTime<Utc>,
    pub interval: DataInterval,
    pub conf: serde_json::Value,
}

/// The largest run conf, as compact JSON: 1 MiB. Checked when a run is created, whoever
/// creates it; tasks read the conf from a file (`UPDRAFT_CONF_FILE`), so a conf this large
/// reaches them, where the environment would refuse it.
pub const MAX_CONF_BYTES: usize = 1024 * 1024;

/// Create a run of `dag` pinned to `version`, after checking `conf`'s size
/// ([`MAX_CONF_BYTES`]) and validating it against the DAG's params.
pub async fn create_run<S: ReadStore + OperatorStore + ?Sized>(
    store: &S,
    dag: &Dag,
    version: &str,
    request: RunRequest,
    now: DateTime<Utc>,
) -> Result<RunRow, RunError> {
    let (new_run, tis) = new_run(dag, version, request)?;
    let run_id = new_run.run_id.clone();
    match store.create_run(&new_run, &tis, now).await {
        Err(StoreError::Conflict(_)) => Err(RunError::RunExists {
            dag_id: dag.dag_id.clone(),
            run_id: existing_run_id(store, &new_run).await.unwrap_or(run_id),
        }),
        other => Ok(other?),
    }
}

/// An asset-triggered run of `dag` consuming `consumed` (events queued for it, whose
/// timestamps span `interval`), Airflow's `asset_triggered__<now>`. `None` when another
/// scheduler consumed the events first.
pub async fn create_asset_triggered_run<S: ReadStore + AssetStore + ?Sized>(
    store: &S,
    dag: &Dag,
    version: &str,
    consumed: &[i64],
    interval: DataInterval,
    now: DateTime<Utc>,
) -> Result<Option<RunRow>, RunError> {
    let request = RunRequest {
        run_type: RunType::AssetTriggered,
        run_id: None,
        logical_date: now,
        interval,
        conf: serde_json::Value::Object(Default::default()),
    };
    let (new_run, tis) = new_run(dag, version, request)?;
    let run_id = new_run.run_id.clone();
    match store
        .create_asset_triggered_run(&new_run, &tis, consumed, now)
        .await
    {
        Err(StoreError::Conflict(_)) => Err(RunError::RunExists {
            dag_id: dag.dag_id.clone(),
            run_id: existing_run_id(store, &new_run).await.unwrap_or(run_id),
        }),
        other => Ok(other?),
    }
}

/// The run a request describes, with its task instances; `conf` checked.
fn new_run(
    dag: &Dag,
    version: &str,
    request: RunRequest,
) -> Result<(NewRun, Vec<NewTi>), RunError> {
    validate_conf(dag, &request.conf)?;
    let run_id = request
        .run_id
        .unwrap_or_else(|| default_run_id(request.run_type, request.logical_date));
    let index = updraft_core::index::DagIndex::new(dag);
    let weights = updraft_core::queue::priority_weights_indexed(dag, &index);
    let tis: Vec<NewTi> = dag
        .tasks
        .iter()
        .map(|task| NewTi {
            task_id: task.task_id.clone(),
            max_tries: updraft_core::retry::initial_max_tries(task),
            pool: task.pool.clone(),
            pool_slots: task.pool_slots,
            priority_weight: weights.get(&task.task_id).copied().unwrap_or(1),
        })
        .collect();
    let new_run = NewRun {
        dag_id: dag.dag_id.clone(),
        tenant: dag.tenant.clone(),
        run_id: run_id.clone(),
        run_type: request.run_type,
        version: version.to_string(),
        logical_date: request.logical_date,
        data_interval_start: request.interval.start,
        data_interval_end: request.interval.end,
        conf: request.conf,
    };
    Ok((new_run, tis))
}

/// The run that holds `run`'s run id or, failing that, its logical date.
async fn existing_run_id<S: ReadStore + ?Sized>(store: &S, run: &NewRun) -> Option<String> {
    if store
        .run(&run.dag_id, &run.run_id)
        .await
        .ok()
        .flatten()
        .is_some()
    {
        return Some(run.run_id.clone());
    }
    let filter = updraft_store::NewestRunsFilter {
        dag_id: Some(run.dag_id.clone()),
        states: vec![],
        limit: None,
    };
    let runs = store.newest_runs(&filter).await.ok()?;
    runs.into_iter()
        .find(|r| r.logical_date == run.logical_date)
        .map(|r| r.run_id)
}

/// A manual run, as `dags trigger` and the API create it.
pub async fn trigger_run<S: ReadStore + OperatorStore + ?Sized>(
    store: &S,
    dag_id: &str,
    run_id: Option<String>,
    logical_date: Option<DateTime<Utc>>,
    conf: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<RunRow, RunError> {
    let row = store
        .dag(dag_id)
        .await?
        .ok_or_else(|| RunError::DagNotFound(dag_id.to_string()))?;
    let logical_date = logical_date.unwrap_or(now);
    let request = RunRequest {
        run_type: RunType::Manual,
        run_id,
        logical_date,
        interval: manual_interval(&row.dag, logical_date),
        conf,
    };
    create_run(store, &row.dag, &row.version, request, now).await
}

fn default_run_id(run_type: RunType, logical_date: DateTime<Utc>) -> String {
    match run_type {
        RunType::Scheduled => updraft_core::runs::scheduled_run_id(logical_date),
        RunType::Manual => updraft_core::runs::manual_run_id(logical_date),
        RunType::Backfill => updraft_core::runs::backfill_run_id(logical_date),
        RunType::AssetTriggered => updraft_core::runs::run_id(run_type, logical_date),
    }
}

fn validate_conf(dag: &Dag, conf: &serde_json::Value) -> Result<(), RunError> {
    let invalid = |message: String| RunError::InvalidConf {
        dag_id: dag.dag_id.clone(),
        message,
    };
    let map = match conf {
        serde_json::Value::Object(map) => map,
        serde_json::Value::Null => return Ok(()),
        _ => return Err(invalid("conf must be a JSON object".to_string())),
    };
    let size = json_size(conf);
    if size > MAX_CONF_BYTES {
        return Err(invalid(format!(
            "conf is {size} bytes of JSON, over the limit of {MAX_CONF_BYTES} bytes (1 MiB); \
             pass large data by reference (a path or URL) instead"
        )));
    }
    updraft_dag::resolve_params(dag, map)
        .map(|_| ())
        .map_err(|e| invalid(e.to_string()))
}

/// The length of `value` as compact JSON, counted without building the text.
fn json_size(value: &serde_json::Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing to a counter cannot fail, nor can serializing a JSON value.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}
