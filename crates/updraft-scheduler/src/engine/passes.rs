//! Full and quick passes: what each stimulus runs, and which runs this scheduler drives.

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use updraft_core::{RunState, RunType};
use updraft_store::{NewestRunsFilter, RunRow};

use super::{BUSY_RETRY, Scheduler, Scope};
use crate::SchedulerError;

impl Scheduler {
    /// Everything: new scheduled runs, queued runs to start, every active run re-evaluated,
    /// tries stopped whose instance was changed elsewhere, runnable work queued.
    pub(super) async fn full_pass(&mut self) -> Result<(), SchedulerError> {
        self.wakeups.next_poll = Instant::now() + self.config.poll_interval;
        self.wakeups.wake_at = None;
        let now = Utc::now();
        self.refresh_dag_rows().await?;
        if matches!(self.scope, Scope::Service) {
            self.create_scheduled_runs(now).await?;
        }
        self.start_queued_runs(now).await?;
        let running = self.runs_in_scope(RunState::Running).await?;
        self.tracked.in_play = running.iter().map(|r| r.id).collect();
        self.tracked.dirty.extend(running.iter().map(|r| r.id));
        self.tracked.known = running.into_iter().map(|r| (r.id, r)).collect();
        self.stop_tries_changed_elsewhere().await?;
        self.quick_pass().await
    }

    /// Re-evaluate the runs touched since the last pass and queue what became runnable (a
    /// first page in the evaluation's own transaction).
    pub(super) async fn quick_pass(&mut self) -> Result<(), SchedulerError> {
        let now = Utc::now();
        let (run_finished, mut first_page) = self.evaluate(now, true).await?;
        if run_finished {
            // Some run finished: queued runs may start now.
            self.start_queued_runs(now).await?;
            let (_, page) = self.evaluate(now, true).await?;
            first_page = page.or(first_page);
        }
        if !self.tracked.busy.is_empty() {
            self.tracked.dirty.append(&mut self.tracked.busy);
            let soon = chrono::Duration::from_std(BUSY_RETRY).unwrap_or_default();
            self.wake(now + soon);
        }
        self.queue_and_launch(now, first_page).await
    }

    pub(super) async fn runs_in_scope(
        &self,
        state: RunState,
    ) -> Result<Vec<RunRow>, SchedulerError> {
        let runs = self
            .store
            .newest_runs(&NewestRunsFilter {
                dag_id: None,
                states: vec![state],
                limit: None,
            })
            .await?;
        Ok(runs.into_iter().filter(|r| self.in_scope(r)).collect())
    }

    fn in_scope(&self, run: &RunRow) -> bool {
        match &self.scope {
            Scope::Runs(set) => set.contains(&run.id),
            Scope::Service => {
                run.run_type == RunType::Backfill
                    || self
                        .definitions
                        .rows
                        .get(&run.dag_id)
                        .is_some_and(|d| !d.is_paused)
            }
        }
    }

    pub(super) fn wake(&mut self, at: DateTime<Utc>) {
        self.wakeups.wake_at = Some(self.wakeups.wake_at.map_or(at, |w| w.min(at)));
    }
}
