//! `dagrun_timeout`: a running run past its deadline is failed, its unfinished instances set
//! skipped and its running tries stopped, and the DAG's `on_failure` notifiers told, with the
//! reason `timed_out` (Airflow's `_schedule_dag_run`).
//!
//! The decision is the core's (`updraft_core::timeout`); the scheduler sets its timer at each
//! running run's deadline, so a run times out when its deadline passes, not at a poll.

use chrono::{DateTime, Utc};
use tracing::info;
use updraft_core::RunState;
use updraft_core::timeout::{TIMED_OUT_REASON, run_deadline, run_timed_out, skipped_on_timeout};
use updraft_executor::TryKey;

use super::Scheduler;
use crate::SchedulerError;

/// The timer is set just past a deadline: a run exactly at it has not timed out yet.
const PAST_DEADLINE: chrono::Duration = chrono::Duration::milliseconds(1);

impl Scheduler {
    /// Times out every known running run past its deadline; sets the timer for the others.
    pub(super) async fn time_out_runs(&mut self, now: DateTime<Utc>) -> Result<(), SchedulerError> {
        let pks: Vec<i64> = self.tracked.known.keys().copied().collect();
        for run_pk in pks {
            let Some(run) = self.tracked.known.get(&run_pk).cloned() else {
                continue;
            };
            let cached = self
                .definitions
                .cache
                .get(self.store.as_ref(), &run.dag_id, &run.version)
                .await?;
            let Some(deadline) = run_deadline(&cached.dag, run.start_date) else {
                continue;
            };
            if !run_timed_out(&cached.dag, run.start_date, now) {
                self.wake(deadline + PAST_DEADLINE);
                continue;
            }
            let Some(live) = self
                .store
                .time_out_run(run_pk, skipped_on_timeout, now)
                .await?
            else {
                continue;
            };
            info!(dag_id = %run.dag_id, run_id = %run.run_id, "run timed out (dagrun_timeout)");
            // A mapped task is named once: every one of its instances in flight is stopped.
            let flights: Vec<TryKey> = self
                .tries
                .in_flight
                .iter()
                .filter(|(key, _)| key.run_pk == run_pk && live.contains(&key.task_id))
                .map(|(key, flight)| TryKey {
                    run_pk,
                    task_id: key.task_id.clone(),
                    map_index: key.map_index,
                    try_number: flight.try_number,
                })
                .collect();
            for key in flights {
                self.kill_try(&key);
            }
            self.tries.pending_launches.retain(|ti| ti.run_pk != run_pk);
            self.notify_run(&run, &cached, RunState::Failed, Some(TIMED_OUT_REASON), now);
            self.tracked.in_play.remove(&run_pk);
            self.tracked.dirty.remove(&run_pk);
            self.tracked.ended.remove(&run_pk);
            self.forget(run_pk);
            self.publish(run_pk);
        }
        Ok(())
    }

    /// Sets the timer at the deadline of runs just started, by their DAG's latest definition
    /// (the next pass checks each against its own version).
    pub(super) fn arm_deadlines(
        &mut self,
        started: &[i64],
        dag_ids: &[(i64, String)],
        now: DateTime<Utc>,
    ) {
        for (pk, dag_id) in dag_ids {
            if !started.contains(pk) {
                continue;
            }
            let timeout = self
                .definitions
                .rows
                .get(dag_id)
                .and_then(|row| row.dag.dagrun_timeout)
                .and_then(|t| chrono::Duration::from_std(t).ok());
            if let Some(timeout) = timeout {
                self.wake(now + timeout + PAST_DEADLINE);
            }
        }
    }
}
