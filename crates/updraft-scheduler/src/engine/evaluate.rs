//! Evaluating runs: pending reports recorded, the touched runs' task states decided by the
//! core and a first page of what became runnable queued, in one store call (one transaction,
//! one commit per chain edge).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::info;
use updraft_core::evaluate::{TiSnapshot, evaluate_run_indexed};
use updraft_core::{RunState, TaskState};
use updraft_store::{Evaluated, QueueStep, RunDecision, RunRow, TiTransition, TryReport};

use super::Scheduler;
use super::queue::QueuedPage;
use crate::SchedulerError;
use crate::dagcache::CachedDag;
use crate::selection::Selector;

impl Scheduler {
    /// Record the pending reports, evaluate every dirty run (and the runs of tries that
    /// ended) and, with `queue`, queue a first page of what is runnable: one
    /// [`Store::record_evaluate_and_queue`] call, one transaction. Returns whether some run
    /// finished, and the page queued (`None` when the store was not called).
    ///
    /// [`Store::record_evaluate_and_queue`]: updraft_store::Store::record_evaluate_and_queue
    pub(super) async fn evaluate(
        &mut self,
        now: DateTime<Utc>,
        queue: bool,
    ) -> Result<(bool, Option<QueuedPage>), SchedulerError> {
        for report in &self.tries.pending_reports {
            if let TryReport::Finished { key, .. } = report {
                self.tracked.dirty.insert(key.run_pk);
            }
        }
        let run_pks: Vec<i64> = std::mem::take(&mut self.tracked.dirty)
            .into_iter()
            .collect();
        // What `decide` needs, read before the transaction: each run's DAG by dag_id and
        // version, and for DAGs with `depends_on_past` tasks the previous run's states.
        let mut dags: HashMap<String, HashMap<String, Arc<CachedDag>>> = HashMap::new();
        let mut previous: HashMap<i64, HashMap<String, TaskState>> = HashMap::new();
        let mut pks = Vec::with_capacity(run_pks.len());
        for (i, &run_pk) in run_pks.iter().enumerate() {
            match self
                .prepare_evaluation(run_pk, &mut dags, &mut previous)
                .await
            {
                Ok(true) => pks.push(run_pk),
                Ok(false) => {}
                Err(e) => {
                    // As one at a time: the failing run is dropped, the others stay dirty.
                    self.tracked.dirty.extend(pks);
                    self.tracked.dirty.extend(&run_pks[i + 1..]);
                    return Err(e);
                }
            }
        }
        if pks.is_empty() && self.tries.pending_reports.is_empty() {
            return Ok((false, None));
        }
        let wake_at = std::sync::Mutex::new(None::<DateTime<Utc>>);
        let decide = |run: &RunRow, tis: &[TiSnapshot]| {
            let Some(cached) = dags
                .get(run.dag_id.as_str())
                .and_then(|versions| versions.get(run.version.as_str()))
            else {
                // Not prepared (cannot happen: a run's DAG and version never change).
                return RunDecision::default();
            };
            let evaluation =
                evaluate_run_indexed(&cached.dag, &cached.index, tis, previous.get(&run.id), now);
            if let Some(at) = evaluation.wake_at {
                let mut wake_at = wake_at.lock().expect("not poisoned");
                *wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
            }
            RunDecision {
                transitions: evaluation
                    .transitions
                    .into_iter()
                    .map(|(task_id, expected, new)| TiTransition {
                        task_id,
                        expected,
                        new,
                    })
                    .collect(),
                run_state: evaluation.run_state,
            }
        };
        let page = if queue { self.queue_page_size() } else { 0 };
        let selector = Selector {
            dag_rows: &self.definitions.rows,
            in_play: &self.tracked.in_play,
            parallelism_free: self.parallelism_free(),
            unknown_pools: Default::default(),
        };
        let step = QueueStep {
            owner: self.job.id,
            page,
            selector: &selector,
        };
        let recorded = self
            .store
            .record_evaluate_and_queue(
                &self.tries.pending_reports,
                &self.config.hostname,
                &pks,
                &decide,
                &step,
                now,
            )
            .await;
        let unknown_pools = selector.unknown_pools.into_inner().unwrap_or_default();
        let (outcomes, queued_page) = match recorded {
            Ok(step) => {
                let reports = std::mem::take(&mut self.tries.pending_reports);
                self.reports_recorded(&reports, &step.applied, false);
                let queued_page = (page > 0).then_some(QueuedPage {
                    page,
                    read: step.scheduled_read,
                    queued: step.queued.len(),
                });
                self.queued(step.queued);
                (step.evaluated, queued_page)
            }
            Err(e) => {
                self.tracked.dirty.extend(pks);
                return Err(e.into());
            }
        };
        self.report_unknown_pools(&unknown_pools);
        if let Some(at) = wake_at.into_inner().expect("not poisoned") {
            self.wake(at);
        }
        let mut any_finished = false;
        for (run_pk, outcome) in outcomes {
            let decision = match outcome {
                Evaluated::Applied { decision, .. } => decision,
                Evaluated::NotRunning => {
                    self.tracked.known.remove(&run_pk);
                    continue;
                }
                Evaluated::Busy => {
                    // Another scheduler is evaluating it; what it read may predate our changes.
                    self.tracked.busy.insert(run_pk);
                    continue;
                }
            };
            if !decision.transitions.is_empty() || decision.run_state.is_some() {
                self.publish(run_pk);
            }
            if let Some(state) = decision.run_state {
                self.tracked.in_play.remove(&run_pk);
                if let Some(run) = self.tracked.known.remove(&run_pk) {
                    info!(dag_id = %run.dag_id, run_id = %run.run_id, %state, "run finished");
                }
                any_finished = true;
            }
        }
        Ok((any_finished, queued_page))
    }

    /// Ready `run_pk` for [`Self::evaluate`]: its DAG into `dags` and, when the DAG has
    /// `depends_on_past` tasks, the previous run's states into `previous`. False when the run
    /// is not known and not `running`.
    async fn prepare_evaluation(
        &mut self,
        run_pk: i64,
        dags: &mut HashMap<String, HashMap<String, Arc<CachedDag>>>,
        previous: &mut HashMap<i64, HashMap<String, TaskState>>,
    ) -> Result<bool, SchedulerError> {
        let run = match self.tracked.known.get(&run_pk) {
            Some(run) => run.clone(),
            None => match self.store.run_by_pk(run_pk).await? {
                Some(run) if run.state == RunState::Running => {
                    self.tracked.known.insert(run_pk, run.clone());
                    run
                }
                _ => return Ok(false),
            },
        };
        let cached = self
            .definitions
            .cache
            .get(self.store.as_ref(), &run.dag_id, &run.version)
            .await?;
        if cached.dag.tasks.iter().any(|t| t.depends_on_past)
            && let Some(states) = self
                .store
                .previous_run_states(&run.dag_id, run.logical_date)
                .await?
        {
            previous.insert(run_pk, states);
        }
        dags.entry(run.dag_id)
            .or_default()
            .insert(run.version, cached);
        Ok(true)
    }
}
