//! Full and quick passes: what each stimulus runs, which runs this scheduler drives, and when
//! a run is read whole.

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use updraft_core::{RunState, RunType};
use updraft_store::{NewestRunsFilter, RunRow};

use super::{BUSY_RETRY, Scheduler, Scope};
use crate::SchedulerError;

/// Tasks of a run per poll interval between the slow poll's whole reads of it.
const RUN_TASKS_PER_POLL: usize = 1_000;

/// Which running runs a full pass reads whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reread {
    /// Every one: something recorded elsewhere may have changed any of them (a poke, a start).
    All,
    /// Those whose turn has come (see `reread_due`).
    Due,
}

impl Scheduler {
    /// Everything: new scheduled runs, queued runs to start, active runs re-evaluated (see
    /// [`Reread`]), due retries decided, tries stopped whose instance was changed elsewhere,
    /// runnable work queued.
    pub(super) async fn full_pass(&mut self, reread: Reread) -> Result<(), SchedulerError> {
        let started = Instant::now();
        self.wakeups.next_poll = started + self.config.poll_interval;
        self.wakeups.wake_at = None;
        let now = Utc::now();
        self.refresh_dag_rows().await?;
        if matches!(self.scope, Scope::Service) {
            self.create_scheduled_runs(now).await?;
            self.sync_asset_references(now).await?;
            self.record_asset_events(now).await?;
            self.create_asset_triggered_runs(now).await?;
        }
        self.start_queued_runs(now).await?;
        let running = self.runs_in_scope(RunState::Running).await?;
        self.tracked.in_play = running.iter().map(|r| r.id).collect();
        for run in &running {
            if reread == Reread::All || self.reread_due(run.id, started, now) {
                self.tracked.dirty.insert(run.id);
            }
        }
        self.tracked.known = running.into_iter().map(|r| (r.id, r)).collect();
        let known = &self.tracked.known;
        self.tracked
            .read_whole
            .retain(|pk, _| known.contains_key(pk));
        self.tracked.run_wake.retain(|pk, _| known.contains_key(pk));
        self.time_out_runs(now).await?;
        self.take_due_retries(now);
        self.stop_tries_changed_elsewhere().await?;
        self.quick_pass().await
    }

    /// Whether the slow poll reads run `run_pk` whole now: never read whole here, a retry its
    /// last whole read found has fallen due, or its turn has come (a run of `n` tasks every
    /// `poll_interval × ⌈n / 1000⌉`, so the safety net's cost per unit of time does not grow
    /// with the runs' sizes).
    fn reread_due(&self, run_pk: i64, at: Instant, now: DateTime<Utc>) -> bool {
        if self
            .tracked
            .run_wake
            .get(&run_pk)
            .is_some_and(|w| *w <= now)
        {
            return true;
        }
        let Some(&(read_at, tasks)) = self.tracked.read_whole.get(&run_pk) else {
            return true;
        };
        let turns = u32::try_from(tasks.div_ceil(RUN_TASKS_PER_POLL).max(1)).unwrap_or(u32::MAX);
        at >= read_at + self.config.poll_interval.saturating_mul(turns)
    }

    /// Retries recorded here that are due go to their runs' focused evaluation; the timer is
    /// set for the others and for the retries whole reads found.
    fn take_due_retries(&mut self, now: DateTime<Utc>) {
        let known = &self.tracked.known;
        self.tracked
            .retries
            .retain(|(_, run_pk, _)| known.contains_key(run_pk));
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.tracked.retries)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        for (_, run_pk, task_id) in due {
            self.tracked
                .ended
                .entry(run_pk)
                .or_default()
                .insert(task_id);
        }
        // A due run wake is this pass's whole read (or, for a busy run, its retry's).
        let wakes: Vec<DateTime<Utc>> = later
            .iter()
            .map(|(at, _, _)| *at)
            .chain(
                self.tracked
                    .run_wake
                    .values()
                    .copied()
                    .filter(|at| *at > now),
            )
            .collect();
        for at in wakes {
            self.wake(at);
        }
        self.tracked.retries = later;
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
        if self.record_asset_events(now).await? {
            // Runs the events triggered may have started.
            let (_, page) = self.evaluate(now, true).await?;
            first_page = page.or(first_page);
        }
        if !self.tracked.busy.is_empty() {
            self.tracked.dirty.append(&mut self.tracked.busy);
            let soon = chrono::Duration::from_std(BUSY_RETRY).unwrap_or_default();
            self.wake(now + soon);
        }
        if self.expand_placeholders(now).await? {
            // The expanded runs are read whole and their instances queued in one step.
            let (_, page) = self.evaluate(now, true).await?;
            first_page = page;
        }
        self.queue_and_launch(now, first_page).await?;
        if !self.tracked.placeholders.is_empty() {
            // Found by the queue pass: expanded at the next pass, at once.
            self.wake(now);
        }
        Ok(())
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
