//! The scheduler's job: registering, heartbeating, declaring silent schedulers dead, and
//! carrying on when this one was declared dead by another.

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tracing::{info, warn};
use updraft_executor::TryKey;

use super::{Scheduler, Scope};
use crate::SchedulerError;

impl Scheduler {
    /// Record this process as a scheduler job (once), so its tries are known to be its own.
    pub(super) async fn register(&mut self) -> Result<(), SchedulerError> {
        if self.job.id != 0 {
            return Ok(());
        }
        let now = Utc::now();
        self.job.id = self
            .store
            .register_scheduler(&self.config.hostname, std::process::id(), now)
            .await?;
        self.job.next_heartbeat = Instant::now() + self.config.heartbeat_interval;
        info!(job_id = self.job.id, "registered as scheduler job");
        if self.config.exclusive {
            // Nobody else can be running: every other job ended without saying so.
            let reaped = self
                .store
                .reap_schedulers(DateTime::<Utc>::MAX_UTC, self.job.id, now)
                .await?;
            if !reaped.is_empty() {
                info!(jobs = ?reaped, "earlier scheduler jobs ended without stopping cleanly");
            }
        }
        Ok(())
    }

    /// Heartbeat when due; then declare silent schedulers dead and take over their tries.
    pub(super) async fn heartbeat_if_due(&mut self) -> Result<(), SchedulerError> {
        if Instant::now() < self.job.next_heartbeat || self.job.id == 0 {
            return Ok(());
        }
        let now = Utc::now();
        self.job.next_heartbeat = Instant::now() + self.config.heartbeat_interval;
        if !self.store.heartbeat(self.job.id, now).await? {
            self.declared_dead().await?;
        }
        if matches!(self.scope, Scope::Service) && self.reaching_database_long_enough() {
            let threshold =
                chrono::Duration::from_std(self.config.health_check_threshold).unwrap_or_default();
            let reaped = self
                .store
                .reap_schedulers(now - threshold, self.job.id, now)
                .await?;
            if !reaped.is_empty() {
                warn!(jobs = ?reaped, "schedulers stopped heartbeating; taking over their tries");
                // Their tries, failed below, may decide any run: the next pass reads all whole.
                self.tracked.read_whole.clear();
            }
            self.recover_orphans().await?;
        }
        Ok(())
    }

    /// A scheduler that could not reach the database for a while must not take everyone
    /// else's silence (during the same outage) for death.
    fn reaching_database_long_enough(&self) -> bool {
        self.job
            .last_db_error
            .is_none_or(|at| at.elapsed() >= self.config.health_check_threshold)
    }

    /// Another scheduler took this one for dead and failed its tries: stop them (their ends
    /// no longer apply) and carry on under a new job.
    async fn declared_dead(&mut self) -> Result<(), SchedulerError> {
        warn!(
            job_id = self.job.id,
            tries = self.tries.in_flight.len(),
            "this scheduler was declared dead by another; stopping its tries and registering again"
        );
        let mut released = Vec::new();
        for ((run_pk, task_id), flight) in &self.tries.in_flight {
            let key = TryKey {
                run_pk: *run_pk,
                task_id: task_id.clone(),
                try_number: flight.try_number,
            };
            // A pod is left to whoever took the try over (it adopts the pod); a local process
            // is stopped.
            if self
                .executors
                .pods
                .as_ref()
                .is_some_and(|p| p.release(&key))
            {
                released.push((*run_pk, task_id.clone()));
            } else {
                self.executors.local.kill(&key);
            }
        }
        for flight in released {
            self.tries.in_flight.remove(&flight);
        }
        self.tries.pending_launches.clear();
        self.job.id = 0;
        self.register().await
    }
}
