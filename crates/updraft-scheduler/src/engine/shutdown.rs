//! Stopping cleanly: pods detached, local tries given their grace, every outcome recorded,
//! the logs uploaded (within a bound); and stopping on an error no retry can mend.

use chrono::Utc;
use tracing::{error, info, warn};

use super::Scheduler;
use crate::SchedulerError;

impl Scheduler {
    pub(super) async fn shutdown(&mut self) -> Result<(), SchedulerError> {
        let stopped = self.stop_tries_and_record().await;
        // Also when recording failed: what is not uploaded stays journaled.
        self.stop_log_uploads().await;
        stopped
    }

    async fn stop_tries_and_record(&mut self) -> Result<(), SchedulerError> {
        info!(
            running = self.tries.in_flight.len(),
            grace = ?self.config.shutdown_grace,
            "shutting down"
        );
        // A walk of the DAGs folder still running ends at its next entry.
        if let Some(folder) = &self.folder {
            folder.stop();
        }
        // Pods go on without the scheduler: the next one follows them again.
        if let Some(pods) = &self.executors.pods {
            pods.detach().await;
        }
        self.executors
            .local
            .shutdown(self.config.shutdown_grace)
            .await;
        let mut events = Vec::new();
        self.drain_events(&mut events);
        self.record_events(events).await?;
        // Runs whose last tries just ended get their final state now, not at the next start;
        // nothing new is queued.
        let now = Utc::now();
        self.evaluate(now, false).await?;
        // Heartbeats go on until here: a stopping scheduler's tries still run.
        if let Some(heartbeats) = self.job.heartbeats.take() {
            heartbeats.stop().await;
        }
        if self.job.id != 0 {
            self.store.stop_scheduler(self.job.id, now).await?;
        }
        Ok(())
    }
}

impl Scheduler {
    /// Stop on an error no retry can mend (a corrupt database): tries are stopped as at
    /// shutdown, whatever can still be recorded is, and `fatal` is returned.
    pub(super) async fn abandon(&mut self, fatal: SchedulerError) -> Result<(), SchedulerError> {
        error!("the scheduler stops: {fatal}");
        if let Err(e) = self.shutdown().await {
            warn!("while stopping: {e}");
        }
        Err(fatal)
    }
}
