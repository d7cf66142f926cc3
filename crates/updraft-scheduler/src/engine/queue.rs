//! Queueing runnable task instances within pools, DAG limits and parallelism, and handing the
//! queued tries on to be launched.

use chrono::{DateTime, Utc};
use tracing::warn;
use updraft_core::queue::Capacity;
use updraft_store::TiRow;

use super::Scheduler;
use crate::SchedulerError;
use crate::selection::{self, PoolOwners};

/// A page of scheduled instances the evaluation's transaction read and queued from.
#[derive(Debug, Clone, Copy)]
pub(super) struct QueuedPage {
    /// Most instances the page could hold.
    pub page: u32,
    /// Instances it held.
    pub read: usize,
    pub queued: usize,
}

impl Scheduler {
    /// Queue what is runnable within the limits and launch it. Scheduled instances are read
    /// in priority order a page at a time ([`Self::queue_page_size`]), leaving out DAGs and
    /// pools with no room; the next page is read only while a full page still queued
    /// something. `first`: the page the evaluation's transaction already queued, if any.
    pub(super) async fn queue_and_launch(
        &mut self,
        now: DateTime<Utc>,
        first: Option<QueuedPage>,
    ) -> Result<(), SchedulerError> {
        let mut offset = 0u32;
        if let Some(first) = first {
            self.launch_pending(now).await?;
            if first.read < first.page as usize || first.queued == 0 {
                return Ok(());
            }
            offset = first.page - first.queued.min(first.page as usize) as u32;
        }
        loop {
            let page = self.queue_page_size();
            if page == 0 {
                return Ok(());
            }
            let (capacity, pool_owners) = self.capacity().await?;
            let scheduled = self
                .store
                .scheduled_task_instances(page, offset, &selection::no_room(&capacity))
                .await?;
            let full = scheduled.len() == page as usize;
            let queued = self
                .queue_page(scheduled, &capacity, &pool_owners, now)
                .await?;
            self.launch_pending(now).await?;
            if !full || queued == 0 {
                return Ok(());
            }
            // Queued instances left the `scheduled` set, so the rest moved up by as many.
            offset = offset.saturating_add(page - queued.min(page as usize) as u32);
        }
    }

    /// Tries this scheduler may still start (Airflow's parallelism is per scheduler).
    pub(super) fn parallelism_free(&self) -> i64 {
        self.config.parallelism as i64
            - (self.tries.in_flight.len() + self.tries.pending_launches.len()) as i64
    }

    /// Scheduled instances read at a time: twice the free parallelism, at least 64; none
    /// when no try may start.
    pub(super) fn queue_page_size(&self) -> u32 {
        let free = self.parallelism_free();
        if free <= 0 {
            return 0;
        }
        u32::try_from(free)
            .unwrap_or(u32::MAX)
            .saturating_mul(2)
            .max(64)
    }

    /// Queue what fits of one page of scheduled instances; returns how many were queued.
    async fn queue_page(
        &mut self,
        scheduled: Vec<TiRow>,
        capacity: &Capacity,
        pool_owners: &PoolOwners,
        now: DateTime<Utc>,
    ) -> Result<usize, SchedulerError> {
        let unknown: Vec<TiRow> =
            selection::in_unknown_pools(&scheduled, capacity, pool_owners, &self.tracked.in_play)
                .cloned()
                .collect();
        self.report_unknown_pools(&unknown);
        let waiting: Vec<_> =
            selection::placeholders(&scheduled, &self.definitions.traits, &self.tracked.in_play)
                .map(TiRow::key)
                .collect();
        self.tracked.placeholders.extend(waiting);
        let choice = selection::choose(
            &scheduled,
            capacity,
            pool_owners,
            &self.definitions.rows,
            &self.definitions.traits,
            &self.tracked.in_play,
        );
        if choice.keys.is_empty() {
            return Ok(0);
        }
        let queued = self
            .store
            .queue(&choice.keys, self.job.id, &choice.limits, now)
            .await?;
        let count = queued.len();
        self.queued(queued);
        Ok(count)
    }

    /// Tries just queued (recorded as this scheduler's): published, and waiting for launch.
    pub(super) fn queued(&mut self, queued: Vec<TiRow>) {
        for ti in &queued {
            self.publish(ti.run_pk);
        }
        self.tries.pending_launches.extend(queued);
    }

    /// Hand queued tries to the executor. A try leaves the list only once launched (or failed
    /// before start), so one queued just before the database went away is launched later, not
    /// left queued forever.
    pub(super) async fn launch_pending(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        while let Some(ti) = self.tries.pending_launches.front().cloned() {
            if !self.tracked.known.contains_key(&ti.run_pk)
                && let Some(run) = self.store.run_by_pk(ti.run_pk).await?
            {
                self.tracked.known.insert(ti.run_pk, run);
            }
            match self.tracked.known.get(&ti.run_pk).cloned() {
                Some(run) => self.launch(&run, &ti, now).await?,
                None => warn!(
                    run_pk = ti.run_pk,
                    "queued an instance of a run that vanished"
                ),
            }
            self.tries.pending_launches.pop_front();
        }
        Ok(())
    }

    /// Airflow leaves a task whose pool does not exist scheduled; so does updraft, saying why.
    pub(super) fn report_unknown_pools(&mut self, waiting: &[TiRow]) {
        for ti in waiting {
            if self.unknown_pools_reported.insert(ti.pool.clone()) {
                warn!(
                    pool = %ti.pool,
                    dag_id = %ti.dag_id,
                    task_id = %ti.task_id,
                    "task waits for a pool that does not exist; create it with `updraft pools set`"
                );
            }
        }
    }

    /// The room left, and which pools belong to one tenant.
    async fn capacity(&self) -> Result<(Capacity, PoolOwners), SchedulerError> {
        // Two independent reads, side by side.
        let (counts, pools) = tokio::try_join!(self.store.active_counts(), self.store.pools())?;
        let owners = pools
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.tenant.clone()?)))
            .collect();
        let slots = pools.iter().map(|p| (p.name.as_str(), p.slots));
        // Parallelism is per scheduler, as in Airflow: this process's own tries in flight.
        let capacity = selection::capacity(
            slots,
            &counts,
            &self.definitions.rows,
            &self.definitions.traits,
            self.parallelism_free(),
        );
        Ok((capacity, owners))
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
                    tenant: None,
                })
                .await?;
        }
        Ok(())
    }
}
