//! `trigger_dag_run` tasks, the scheduler's part: [`StoreTrigger`] starts the run a task asks
//! for through `updraft-runs` (as `dags trigger` and the API do), only for a DAG of the task's
//! own tenant, clears an existing run with `reset_dag_run`, wakes the loop to start it, and
//! reads the run's state for `wait_for_completion`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use updraft_core::RunType;
use updraft_core::timetable::manual_interval;
use updraft_executor::{
    RunTrigger, StatesFuture, TriggerFuture, TriggerRefusal, TriggerRequest, Triggered,
};
use updraft_runs::{RunError, RunRequest};
use updraft_store::{DagRow, RunRow, Store, StoreError};

/// [`RunTrigger`] over the store; `wake` is the loop's own wake-up, so a started run starts
/// without waiting for the next pass.
pub(super) struct StoreTrigger {
    pub(super) store: Arc<dyn Store>,
    pub(super) wake: Arc<Notify>,
}

impl std::fmt::Debug for StoreTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreTrigger")
    }
}

impl RunTrigger for StoreTrigger {
    fn trigger<'a>(&'a self, request: &'a TriggerRequest, now: DateTime<Utc>) -> TriggerFuture<'a> {
        Box::pin(self.start(request, now))
    }

    fn run_state<'a>(&'a self, request: &'a TriggerRequest, run_id: &'a str) -> StatesFuture<'a> {
        Box::pin(async move {
            Ok(self
                .tenant_run(request, run_id)
                .await
                .map_err(|e| e.to_string())?
                .map(|run| run.state.as_str().to_owned()))
        })
    }
}

impl StoreTrigger {
    async fn start(
        &self,
        request: &TriggerRequest,
        now: DateTime<Utc>,
    ) -> Result<Triggered, TriggerRefusal> {
        let row = self.tenant_dag(request).await?;
        let logical_date = request.logical_date.unwrap_or(now);
        let run = RunRequest {
            run_type: RunType::Manual,
            run_id: request.run_id.clone(),
            logical_date,
            interval: manual_interval(&row.dag, logical_date),
            conf: request.conf.clone(),
        };
        let created =
            updraft_runs::create_run(self.store.as_ref(), &row.dag, &row.version, run, now).await;
        let triggered = match created {
            Ok(run) => Triggered {
                run_id: run.run_id,
                reset: false,
            },
            Err(RunError::RunExists { run_id, .. }) if request.reset_dag_run => {
                self.reset(request, &run_id, now).await?;
                Triggered {
                    run_id,
                    reset: true,
                }
            }
            Err(RunError::RunExists { run_id, .. }) => return Err(TriggerRefusal::Exists(run_id)),
            Err(other) => return Err(TriggerRefusal::Failed(other.to_string())),
        };
        self.wake.notify_one();
        Ok(triggered)
    }

    /// The DAG `request` names, if it belongs to the request's tenant and is loaded. Another
    /// tenant's DAG reads as missing, as the API hides it.
    async fn tenant_dag(&self, request: &TriggerRequest) -> Result<DagRow, TriggerRefusal> {
        let row = self
            .store
            .dag(&request.dag_id)
            .await
            .map_err(|e| TriggerRefusal::Failed(e.to_string()))?
            .filter(|row| row.dag.tenant == request.tenant)
            .ok_or_else(|| {
                TriggerRefusal::Failed(format!(
                    "tenant {} has no DAG {}",
                    request.tenant, request.dag_id
                ))
            })?;
        if !row.is_active {
            return Err(TriggerRefusal::Failed(format!(
                "DAG {} is no longer loaded (its file is gone or has import errors)",
                request.dag_id
            )));
        }
        Ok(row)
    }

    async fn tenant_run(
        &self,
        request: &TriggerRequest,
        run_id: &str,
    ) -> Result<Option<RunRow>, StoreError> {
        Ok(self
            .store
            .run(&request.dag_id, run_id)
            .await?
            .filter(|run| run.tenant == request.tenant))
    }

    /// Clears every task instance of the existing run (Airflow's `reset_dag_run`), which
    /// puts the run back in the queue.
    async fn reset(
        &self,
        request: &TriggerRequest,
        run_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), TriggerRefusal> {
        let failed = |e: StoreError| TriggerRefusal::Failed(e.to_string());
        let run = self
            .tenant_run(request, run_id)
            .await
            .map_err(failed)?
            .ok_or_else(|| TriggerRefusal::Exists(run_id.to_owned()))?;
        let task_ids: Vec<String> = self
            .store
            .task_instances(run.id)
            .await
            .map_err(failed)?
            .into_iter()
            .map(|ti| ti.task_id)
            .collect();
        self.store
            .clear_task_instances(run.id, &task_ids, now)
            .await
            .map_err(failed)?;
        Ok(())
    }
}
