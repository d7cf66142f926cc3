//! Run creation and start: scheduled runs as their intervals fall due, and queued runs started
//! within `max_active_runs`.

use chrono::{DateTime, Utc};
use tracing::debug;
use updraft_core::timetable::{DataInterval, due_intervals, next_interval};
use updraft_core::{RunState, RunType};
use updraft_dag::Schedule;
use updraft_store::{DagRow, NewestRunsFilter, RunRow};

use super::{Scheduler, Scope};
use crate::SchedulerError;
use updraft_runs::{RunError, RunRequest, create_run};

impl Scheduler {
    pub(super) async fn create_scheduled_runs(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        let candidates: Vec<DagRow> = self
            .definitions
            .rows
            .values()
            .filter(|row| row.is_active && !row.is_paused && row.dag.schedule != Schedule::None)
            .filter(|row| {
                self.definitions
                    .next_schedule_check
                    .get(&row.dag.dag_id)
                    .is_none_or(|at| *at <= now)
            })
            .cloned()
            .collect();
        for row in candidates {
            let next = self.create_due_runs_for(&row, now).await?;
            match next {
                Some(at) => {
                    self.definitions
                        .next_schedule_check
                        .insert(row.dag.dag_id.clone(), at);
                    self.wake(at);
                }
                None => {
                    self.definitions
                        .next_schedule_check
                        .insert(row.dag.dag_id.clone(), DateTime::<Utc>::MAX_UTC);
                }
            }
        }
        Ok(())
    }

    /// Creates the due runs of one DAG; returns when it next needs a look.
    async fn create_due_runs_for(
        &mut self,
        row: &DagRow,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, SchedulerError> {
        let dag = &row.dag;
        let active = self
            .store
            .newest_runs(&NewestRunsFilter {
                dag_id: Some(dag.dag_id.clone()),
                states: vec![RunState::Queued, RunState::Running],
                limit: None,
            })
            .await?
            .len();
        let room = (dag.max_active_runs as usize).saturating_sub(active);
        let mut last = self
            .store
            .latest_scheduled_run(&dag.dag_id)
            .await?
            .map(|r| DataInterval {
                start: r.data_interval_start,
                end: r.data_interval_end,
            });
        if room == 0 {
            // A finishing run triggers a full pass through start_queued_runs; look again then.
            return Ok(Some(
                now + chrono::Duration::from_std(self.config.poll_interval).unwrap_or_default(),
            ));
        }
        let due = due_intervals(dag, last.as_ref(), now, room.min(MAX_RUNS_PER_PASS));
        for interval in due {
            let request = RunRequest {
                run_type: RunType::Scheduled,
                run_id: None,
                logical_date: interval.start,
                interval,
                conf: serde_json::Value::Object(Default::default()),
            };
            match create_run(self.store.as_ref(), dag, &row.version, request, now).await {
                Ok(run) => {
                    debug!(dag_id = %dag.dag_id, run_id = %run.run_id, "created scheduled run")
                }
                Err(RunError::RunExists { run_id, .. }) => {
                    debug!(dag_id = %dag.dag_id, %run_id, "scheduled run already exists")
                }
                Err(e) => return Err(e.into()),
            }
            last = Some(interval);
        }
        Ok(next_interval(dag, last.as_ref(), now).map(|i| i.end.max(now)))
    }

    pub(super) async fn start_queued_runs(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        let mut queued = self.runs_in_scope(RunState::Queued).await?;
        if queued.is_empty() {
            return Ok(());
        }
        queued.sort_by_key(|r| (r.logical_date, r.id));
        // The store re-counts running runs inside one serialised transaction, so schedulers
        // starting runs at once never exceed max_active_runs.
        let candidates: Vec<(i64, u32)> = queued
            .iter()
            .map(|run| (run.id, self.max_active_runs(run)))
            .collect();
        let started = self.store.start_runs(&candidates, now).await?;
        for &pk in &started {
            self.publish(pk);
            self.tracked.in_play.insert(pk);
            self.tracked.dirty.insert(pk);
        }
        let dag_ids: Vec<(i64, String)> = queued.iter().map(|r| (r.id, r.dag_id.clone())).collect();
        self.arm_deadlines(&started, &dag_ids, now);
        Ok(())
    }

    fn max_active_runs(&self, run: &RunRow) -> u32 {
        match (&self.scope, self.definitions.rows.get(&run.dag_id)) {
            (Scope::Runs(_), _) => u32::MAX,
            (_, Some(row)) => row.dag.max_active_runs,
            (_, None) => 16,
        }
    }
}

/// Most scheduled runs created for one DAG in one pass (catchup creates the rest later).
const MAX_RUNS_PER_PASS: usize = 64;
