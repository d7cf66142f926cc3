//! The scheduler's job: registering, heartbeating, declaring silent schedulers dead, and
//! carrying on when this one was declared dead by another.
//!
//! Heartbeats are written by a task of their own, every `heartbeat_interval` from
//! registration on, not by the loop between passes: a stretch of the loop's work (the first
//! load of the DAGs folder and the first pass, taking over a dead scheduler's tries, a wait
//! for the scheduling lock) can outlast `health_check_threshold` on a busy machine, and a
//! live scheduler declared dead has its tries retried while they still run. The loop keeps
//! the rest: declaring silent schedulers dead, and stopping its tries and registering again
//! when the heartbeats find this job declared dead.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{info, warn};
use updraft_executor::TryKey;
use updraft_store::Store;

use super::{Scheduler, Scope};
use crate::SchedulerError;

/// The task heartbeating one scheduler job.
pub(super) struct Heartbeats {
    task: JoinHandle<()>,
    /// Ends the task between two heartbeats (never in the middle of one).
    stop: Arc<Notify>,
    /// Set when a heartbeat found the job no longer running: another scheduler declared it
    /// dead.
    declared_dead: Arc<AtomicBool>,
}

impl Heartbeats {
    /// Starts heartbeating `job_id` every `interval` (its first heartbeat was its
    /// registration); `wake` is notified when the job is found declared dead.
    fn start(store: Arc<dyn Store>, job_id: i64, interval: Duration, wake: Arc<Notify>) -> Self {
        let stop = Arc::new(Notify::new());
        let declared_dead = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(heartbeat_until_stopped(
            store,
            job_id,
            interval,
            Arc::clone(&stop),
            Arc::clone(&declared_dead),
            wake,
        ));
        Heartbeats {
            task,
            stop,
            declared_dead,
        }
    }

    fn declared_dead(&self) -> bool {
        self.declared_dead.load(Ordering::SeqCst)
    }

    /// Ends the task once a heartbeat under way is written.
    pub(super) async fn stop(mut self) {
        self.stop.notify_one();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn heartbeat_until_stopped(
    store: Arc<dyn Store>,
    job_id: i64,
    interval: Duration,
    stop: Arc<Notify>,
    declared_dead: Arc<AtomicBool>,
    wake: Arc<Notify>,
) {
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            biased;
            _ = stop.notified() => return,
            _ = ticks.tick() => {}
        }
        match store.heartbeat(job_id, Utc::now()).await {
            Ok(true) => {
                updraft_metrics::global().scheduler_heartbeat.inc();
                if std::mem::take(&mut failing) {
                    info!(job_id, "heartbeats are written again");
                }
            }
            Ok(false) => {
                declared_dead.store(true, Ordering::SeqCst);
                wake.notify_one();
                return;
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    warn!(
                        job_id,
                        "heartbeat failed, trying again every {interval:?}: {e}"
                    );
                }
            }
        }
    }
}

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
        self.job.heartbeats = Some(Heartbeats::start(
            Arc::clone(&self.store),
            self.job.id,
            self.config.heartbeat_interval,
            Arc::clone(&self.wakeups.poke),
        ));
        self.job.next_check = Instant::now() + self.config.heartbeat_interval;
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

    /// Carry on under a new job if this one was declared dead; when due, declare silent
    /// schedulers dead and take over their tries.
    pub(super) async fn check_jobs_if_due(&mut self) -> Result<(), SchedulerError> {
        if self
            .job
            .heartbeats
            .as_ref()
            .is_some_and(Heartbeats::declared_dead)
        {
            self.declared_dead().await?;
        }
        if Instant::now() < self.job.next_check || self.job.id == 0 {
            return Ok(());
        }
        let now = Utc::now();
        self.job.next_check = Instant::now() + self.config.heartbeat_interval;
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
        for (ti_key, flight) in &self.tries.in_flight {
            let key = TryKey {
                run_pk: ti_key.run_pk,
                task_id: ti_key.task_id.clone(),
                map_index: ti_key.map_index,
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
                released.push(ti_key.clone());
            } else {
                self.executors.local.kill(&key);
            }
        }
        for flight in released {
            self.tries.in_flight.remove(&flight);
        }
        self.tries.pending_launches.clear();
        self.job.id = 0;
        self.job.heartbeats = None;
        self.register().await
    }
}
