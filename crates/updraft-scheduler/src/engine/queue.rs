//! Queueing runnable task instances within pools, DAG limits and parallelism, and handing the
//! queued tries on to be launched.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use tracing::warn;
use updraft_core::queue::{Candidate, Capacity, select_to_queue};
use updraft_store::{QueueLimits, ScheduledSkip, TiKey, TiRow};

use super::Scheduler;
use crate::SchedulerError;

impl Scheduler {
    /// Queue what is runnable within the limits. Scheduled instances are read in priority
    /// order a page at a time (twice this scheduler's free parallelism), leaving out DAGs and
    /// pools with no room; the next page is read only while a full page still queued
    /// something.
    pub(super) async fn queue_and_launch(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        let mut offset = 0u32;
        loop {
            let free = self.parallelism_free();
            if free <= 0 {
                return Ok(());
            }
            let capacity = self.capacity().await?;
            let page = u32::try_from(free)
                .unwrap_or(u32::MAX)
                .saturating_mul(2)
                .max(64);
            let scheduled = self
                .store
                .scheduled_task_instances(page, offset, &no_room(&capacity))
                .await?;
            let full = scheduled.len() == page as usize;
            let queued = self.queue_page(scheduled, &capacity, now).await?;
            self.launch_pending(now).await?;
            if !full || queued == 0 {
                return Ok(());
            }
            // Queued instances left the `scheduled` set, so the rest moved up by as many.
            offset = offset.saturating_add(page - queued.min(page as usize) as u32);
        }
    }

    /// Tries this scheduler may still start (Airflow's parallelism is per scheduler).
    fn parallelism_free(&self) -> i64 {
        self.config.parallelism as i64 - (self.in_flight.len() + self.pending_launches.len()) as i64
    }

    /// Queue what fits of one page of scheduled instances; returns how many were queued.
    async fn queue_page(
        &mut self,
        mut scheduled: Vec<TiRow>,
        capacity: &Capacity,
        now: DateTime<Utc>,
    ) -> Result<usize, SchedulerError> {
        scheduled.retain(|ti| self.runs_in_play.contains(&ti.run_pk));
        if scheduled.is_empty() {
            return Ok(0);
        }
        self.report_unknown_pools(&scheduled, capacity);
        let candidates: Vec<Candidate> = scheduled
            .iter()
            .map(|ti| Candidate {
                dag_id: ti.dag_id.clone(),
                pool: ti.pool.clone(),
                pool_slots: ti.pool_slots,
                priority_weight: ti.priority_weight,
                logical_date: ti.logical_date,
                task_id: ti.task_id.clone(),
            })
            .collect();
        let keys: Vec<TiKey> = select_to_queue(&candidates, capacity)
            .into_iter()
            .map(|i| TiKey {
                run_pk: scheduled[i].run_pk,
                task_id: scheduled[i].task_id.clone(),
            })
            .collect();
        if keys.is_empty() {
            return Ok(0);
        }
        let limits = self.queue_limits(&keys, &scheduled);
        let queued = self.store.queue(&keys, self.job_id, &limits, now).await?;
        for ti in &queued {
            self.publish(ti.run_pk);
        }
        let count = queued.len();
        self.pending_launches.extend(queued);
        Ok(count)
    }

    /// Hand queued tries to the executor. A try leaves the list only once launched (or failed
    /// before start), so one queued just before the database went away is launched later, not
    /// left queued forever.
    pub(super) async fn launch_pending(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        while let Some(ti) = self.pending_launches.front().cloned() {
            if !self.known_runs.contains_key(&ti.run_pk)
                && let Some(run) = self.store.run_by_pk(ti.run_pk).await?
            {
                self.known_runs.insert(ti.run_pk, run);
            }
            match self.known_runs.get(&ti.run_pk).cloned() {
                Some(run) => self.launch(&run, &ti, now).await?,
                None => warn!(
                    run_pk = ti.run_pk,
                    "queued an instance of a run that vanished"
                ),
            }
            self.pending_launches.pop_front();
        }
        Ok(())
    }

    /// Airflow leaves a task whose pool does not exist scheduled; so does updraft, saying why.
    fn report_unknown_pools(&mut self, scheduled: &[TiRow], capacity: &Capacity) {
        for ti in scheduled {
            if !capacity.pool_free.contains_key(&ti.pool)
                && self.unknown_pools_reported.insert(ti.pool.clone())
            {
                warn!(
                    pool = %ti.pool,
                    dag_id = %ti.dag_id,
                    task_id = %ti.task_id,
                    "task waits for a pool that does not exist; create it with `updraft pools set`"
                );
            }
        }
    }

    /// `max_active_tasks` of the DAGs whose instances are about to be queued.
    fn queue_limits(&self, keys: &[TiKey], scheduled: &[TiRow]) -> QueueLimits {
        let wanted: HashSet<i64> = keys.iter().map(|k| k.run_pk).collect();
        let max_active_tasks = scheduled
            .iter()
            .filter(|ti| wanted.contains(&ti.run_pk))
            .filter_map(|ti| {
                let row = self.dag_rows.get(&ti.dag_id)?;
                Some((ti.dag_id.clone(), row.dag.max_active_tasks as i64))
            })
            .collect();
        QueueLimits { max_active_tasks }
    }

    async fn capacity(&self) -> Result<Capacity, SchedulerError> {
        // Two independent reads, side by side.
        let (counts, pools) = tokio::try_join!(self.store.active_counts(), self.store.pools())?;
        let pool_free = pools
            .iter()
            .map(|p| {
                let used = counts.per_pool.get(&p.name).copied().unwrap_or(0);
                (p.name.clone(), p.slots - used)
            })
            .collect();
        let dag_free = self
            .dag_rows
            .values()
            .map(|row| {
                let used = counts.per_dag.get(&row.dag.dag_id).copied().unwrap_or(0);
                (
                    row.dag.dag_id.clone(),
                    row.dag.max_active_tasks as i64 - used,
                )
            })
            .collect();
        Ok(Capacity {
            pool_free,
            dag_free,
            // Per scheduler, as in Airflow: this process's own tries in flight.
            parallelism_free: self.parallelism_free(),
        })
    }

    pub(super) async fn ensure_default_pool(&self) -> Result<(), SchedulerError> {
        let pools = self.store.pools().await?;
        let wanted = self.config.default_pool_slots;
        let current = pools.iter().find(|p| p.name == updraft_dag::DEFAULT_POOL);
        if current.is_none_or(|p| p.slots != wanted) {
            self.store
                .upsert_pool(&updraft_store::PoolRow {
                    name: updraft_dag::DEFAULT_POOL.to_string(),
                    slots: wanted,
                    description: "Default pool".to_string(),
                })
                .await?;
        }
        Ok(())
    }
}

/// The DAGs and pools with no room left, whose scheduled instances need not be read.
fn no_room(capacity: &Capacity) -> ScheduledSkip {
    let full = |free: &HashMap<String, i64>| -> Vec<String> {
        free.iter()
            .filter(|(_, room)| **room <= 0)
            .map(|(name, _)| name.clone())
            .collect()
    };
    ScheduledSkip {
        dags: full(&capacity.dag_free),
        pools: full(&capacity.pool_free),
    }
}
