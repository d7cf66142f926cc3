//! Orphaned tries: instances left in flight by a scheduler that stopped, adopted when their pod
//! still runs and failed otherwise (after killing what still runs of their processes on this
//! host); tries stopped when their instance changed elsewhere.

use std::collections::HashMap;
use std::sync::Arc;

use std::time::Duration;

use chrono::Utc;
use tracing::{info, warn};
use updraft_core::retry::{TryOutcome, on_try_finished};
use updraft_executor::TryKey;
use updraft_executor::leftovers::{Leftover, end_leftover_group, end_marked_groups, try_mark};
use updraft_store::{RunRow, TiKey, TiRow};

use updraft_pods::TryIdentity;

use super::Scheduler;
use super::launch::{append_log_line, try_identity};
use crate::SchedulerError;
use crate::dagcache::CachedDag;

impl Scheduler {
    /// Stop tries whose instance was cleared or marked by someone else meanwhile.
    pub(super) async fn stop_tries_changed_elsewhere(&mut self) -> Result<(), SchedulerError> {
        let keys: Vec<(TiKey, u32)> = self
            .tries
            .in_flight
            .iter()
            .map(|(key, f)| (key.clone(), f.try_number))
            .collect();
        for (key, try_number) in keys {
            let still_ours = self
                .store
                .task_instance(&key)
                .await?
                .is_some_and(|ti| ti.state.is_active() && ti.try_number == try_number);
            if !still_ours {
                info!(task_id = %key.task_id, map_index = key.map_index, try_number, "stopping a try whose instance changed elsewhere");
                self.kill_try(&TryKey {
                    run_pk: key.run_pk,
                    task_id: key.task_id,
                    map_index: key.map_index,
                    try_number,
                });
            }
        }
        Ok(())
    }

    /// Instances left queued or running by a scheduler that stopped without recording their
    /// end. A try whose pod still exists is adopted and followed to its end; any other counts
    /// as failed (and is retried per `retries`). Local processes are not adopted: they died
    /// with their scheduler (the local executor's reaper kills them the moment it dies), so
    /// the retry never runs beside them, whichever host it runs on.
    pub(super) async fn recover_orphans(&mut self) -> Result<(), SchedulerError> {
        let now = Utc::now();
        let mut tenant_pods = TenantPods::new();
        let orphans = self.store.orphaned_task_instances().await?;
        let owners = if orphans.is_empty() {
            HashMap::new()
        } else {
            self.schedulers_of_this_host().await?
        };
        for ti in orphans {
            let Some(run) = self.store.run_by_pk(ti.run_pk).await? else {
                continue;
            };
            let cached = self
                .definitions
                .cache
                .get(self.store.as_ref(), &run.dag_id, &run.version)
                .await?;
            let Some(task) = cached.dag.task(&ti.task_id) else {
                continue;
            };
            match self.adopt_pod(&run, &ti, &cached, &mut tenant_pods).await? {
                Adoption::Adopted | Adoption::Later => continue,
                Adoption::NoPod => {}
            }
            let leftover = self.end_leftover_processes(&ti, &owners).await;
            let log = self.try_log_path(&run, &ti);
            let line = match leftover {
                Leftover::Killed | Leftover::Lingering => {
                    "the scheduler stopped while this try was in flight; its processes still \
                     running on this host were killed; the try is marked failed"
                }
                Leftover::None | Leftover::Reused => {
                    "the scheduler stopped while this try was in flight; the try is marked failed"
                }
            };
            append_log_line(&log, line).await;
            let (state, retry_at) =
                on_try_finished(task, ti.try_number, ti.max_tries, TryOutcome::Failed, now);
            self.store
                .finish_try(&ti.key(), ti.try_number, state, retry_at, now)
                .await?;
            if ran_here(&ti, &self.config.hostname) {
                self.log_ended(&log);
            }
            warn!(dag_id = %run.dag_id, run_id = %run.run_id, task_id = %ti.task_id, %state, "recovered an orphaned task instance");
        }
        Ok(())
    }

    /// Kills what still runs of an orphaned try's process group, when it ran on this host, and
    /// waits until it is gone: its retry must not run beside it. Normally nothing is left (the
    /// executor's reaper killed the group when its scheduler died).
    async fn end_leftover_processes(&self, ti: &TiRow, owners: &HashMap<i64, u32>) -> Leftover {
        let marked = match ti.queued_by_job_id.and_then(|job| owners.get(&job)) {
            // Found by the mark in their environment: also when the start was never recorded.
            Some(owner) => {
                let key = TryKey {
                    run_pk: ti.run_pk,
                    task_id: ti.task_id.clone(),
                    map_index: ti.map_index,
                    try_number: ti.try_number,
                };
                let mark = try_mark(*owner, &key, ti.try_number);
                let leftover = end_marked_groups(&mark, LEFTOVER_PATIENCE).await;
                if leftover != Leftover::None {
                    warn!(task_id = %ti.task_id, try_number = ti.try_number, ?leftover, "killed the processes carrying an orphaned try's mark");
                }
                leftover
            }
            None => Leftover::None,
        };
        let recorded = self.end_recorded_group(ti).await;
        match (marked, recorded) {
            (Leftover::Lingering, _) | (_, Leftover::Lingering) => Leftover::Lingering,
            (Leftover::Killed, _) | (_, Leftover::Killed) => Leftover::Killed,
            (_, other) => other,
        }
    }

    /// The scheduler jobs that ran on this host: job id → process id.
    async fn schedulers_of_this_host(&self) -> Result<HashMap<i64, u32>, SchedulerError> {
        let jobs = self.store.schedulers(RECENT_SCHEDULERS).await?;
        Ok(jobs
            .into_iter()
            .filter(|job| job.hostname == self.config.hostname)
            .filter_map(|job| Some((job.id, u32::try_from(job.pid).ok()?)))
            .collect())
    }

    /// Kills the process group recorded for the try's start, when it ran on this host.
    async fn end_recorded_group(&self, ti: &TiRow) -> Leftover {
        let (Some(pid), Some(started_at)) = (ti.pid, ti.start_date) else {
            return Leftover::None;
        };
        let Ok(pgid) = u32::try_from(pid) else {
            return Leftover::None;
        };
        if ti.hostname.as_deref() != Some(self.config.hostname.as_str()) {
            return Leftover::None;
        }
        let leftover = end_leftover_group(pgid, started_at, LEFTOVER_PATIENCE).await;
        match leftover {
            Leftover::Killed => {
                warn!(task_id = %ti.task_id, try_number = ti.try_number, pgid, "killed the processes an orphaned try left running")
            }
            Leftover::Lingering => {
                warn!(task_id = %ti.task_id, try_number = ti.try_number, pgid, "the processes of an orphaned try were killed but are not all gone yet")
            }
            Leftover::None | Leftover::Reused => {}
        }
        leftover
    }

    /// Follows an orphaned try's pod again, if it has one: the try becomes this scheduler's.
    async fn adopt_pod(
        &mut self,
        run: &RunRow,
        ti: &TiRow,
        cached: &Arc<CachedDag>,
        tenant_pods: &mut TenantPods,
    ) -> Result<Adoption, SchedulerError> {
        let Some(pods) = self.executors.pods.clone() else {
            return Ok(Adoption::NoPod);
        };
        let kind = cached.dag.task(&ti.task_id).map(|t| &t.kind);
        let ran_as_pod = match kind {
            Some(updraft_dag::TaskKind::Pod(_)) => true,
            Some(updraft_dag::TaskKind::Bash(_) | updraft_dag::TaskKind::Command(_)) => {
                self.executors.every_task_in_pods
            }
            _ => false,
        };
        if !ran_as_pod {
            return Ok(Adoption::NoPod);
        }
        if !tenant_pods.contains_key(&run.tenant) {
            let listed = pods.pods_of_tenant(&run.tenant).await;
            if let Err(e) = &listed {
                warn!(tenant = %run.tenant, "cannot list the pods of orphaned tries, looking again later: {e}");
            }
            tenant_pods.insert(run.tenant.clone(), listed.ok());
        }
        let Some(listed) = &tenant_pods[&run.tenant] else {
            // Failing the try now could run a second pod beside one still running.
            return Ok(Adoption::Later);
        };
        let Some(pod) = listed.get(&try_identity(run, ti)).cloned() else {
            // Its Secret may be left (the scheduler stopped between creating it and the pod).
            if let Err(e) = pods.delete_try_secrets(&try_identity(run, ti)).await {
                warn!(task_id = %ti.task_id, try_number = ti.try_number, "cannot delete the Secret of an orphaned try: {e}");
            }
            return Ok(Adoption::NoPod);
        };
        if !self
            .store
            .adopt_orphan(&ti.key(), ti.try_number, self.job.id)
            .await?
        {
            return Ok(Adoption::Later);
        }
        let task = cached.dag.task(&ti.task_id);
        let delete_pod = task.and_then(|t| match &t.kind {
            updraft_dag::TaskKind::Pod(p) => p.delete_pod,
            _ => None,
        });
        self.track_in_flight(run, ti, cached);
        info!(dag_id = %run.dag_id, run_id = %run.run_id, task_id = %ti.task_id, pod = ?pod.metadata.name, "following the pod of a try started before a restart");
        pods.adopt(
            TryKey {
                run_pk: ti.run_pk,
                task_id: ti.task_id.clone(),
                map_index: ti.map_index,
                try_number: ti.try_number,
            },
            &pod,
            self.try_log_path(run, ti),
            task.and_then(|t| t.execution_timeout),
            delete_pod,
            task.is_some_and(|t| t.do_xcom_push),
        );
        Ok(Adoption::Adopted)
    }
}

/// Whether the try's log was written on this host (or it never started anywhere): only then
/// is the local file the whole log, to be uploaded as such.
fn ran_here(ti: &TiRow, hostname: &str) -> bool {
    ti.hostname.as_deref().is_none_or(|host| host == hostname)
}

/// How long an orphaned try's killed processes may take to be gone before it is retried
/// anyway (what is left then is a zombie or a process stuck in the kernel).
const LEFTOVER_PATIENCE: Duration = Duration::from_secs(5);

/// How many of the newest scheduler jobs are looked at for the owners of orphaned tries; an
/// older owner's tries were recovered long ago.
const RECENT_SCHEDULERS: u32 = 1_000;

/// The pods of each tenant's tries, listed once per pass over orphans; `None` when the
/// cluster could not be asked.
type TenantPods = HashMap<String, Option<HashMap<TryIdentity, updraft_pods::Pod>>>;

/// What became of an orphaned try's pod.
enum Adoption {
    /// Followed by this scheduler from now on.
    Adopted,
    /// It has no pod: it failed like any orphan.
    NoPod,
    /// Undecided now (the cluster or the instance is busy); looked at again later.
    Later,
}
