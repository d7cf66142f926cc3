//! Evaluating runs: pending reports recorded, the touched runs' task states decided by the
//! core and a first page of what became runnable queued, in one store call (one transaction,
//! one commit per chain edge). A run whose only news is tries ending is evaluated from the
//! instances those can affect (the core's focused evaluation), so a step costs what it
//! records, not the size of the runs it touches; a run is read whole when it is new here, when
//! something else may have changed it (a poke, the slow poll), or when the focus is not enough.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tracing::info;
use updraft_core::evaluate::{evaluate_run_focused, evaluate_run_indexed, focus};
use updraft_core::{RunState, TaskState};
use updraft_store::{
    Evaluated, QueueStep, RunDecider, RunDecision, RunRead, RunRow, TiTransition, TryReport,
};

use super::queue::QueuedPage;
use super::{BUSY_RETRY, Scheduler};
use crate::SchedulerError;
use crate::dagcache::CachedDag;
use crate::selection::Selector;

/// The core's decisions for the runs of one step, as the store asks for them: runs in
/// `whole` read whole, the others from the focus of the tasks whose tries ended.
struct Decider<'a> {
    dags: &'a HashMap<String, HashMap<String, Arc<CachedDag>>>,
    previous: &'a HashMap<i64, HashMap<String, TaskState>>,
    whole: &'a BTreeSet<i64>,
    ended: &'a HashMap<i64, BTreeSet<String>>,
    now: DateTime<Utc>,
    /// Runs read whole, with the earliest retry their evaluation found.
    read_whole: Mutex<HashMap<i64, Option<DateTime<Utc>>>>,
}

impl Decider<'_> {
    fn cached(&self, run: &RunRow) -> Option<&Arc<CachedDag>> {
        // Always there: every run was prepared, and a run's DAG and version never change.
        self.dags
            .get(run.dag_id.as_str())
            .and_then(|versions| versions.get(run.version.as_str()))
    }
}

impl RunDecider for Decider<'_> {
    fn focus(&self, run: &RunRow) -> Option<Vec<String>> {
        if self.whole.contains(&run.id) {
            return None;
        }
        let cached = self.cached(run)?;
        let mut changed = Vec::new();
        for task_id in self.ended.get(&run.id)? {
            // A task the version does not know (cannot happen): read the whole run.
            changed.push(cached.index.position(task_id)?);
        }
        let positions = focus(&cached.index, changed);
        Some(
            positions
                .into_iter()
                .map(|p| cached.index.task_id(p).to_owned())
                .collect(),
        )
    }

    fn decide(&self, run: &RunRow, read: &RunRead<'_>) -> Option<RunDecision> {
        let Some(cached) = self.cached(run) else {
            return Some(RunDecision::default());
        };
        let previous = self.previous.get(&run.id);
        let evaluation = match read.progressing {
            Some(progressing) => evaluate_run_focused(
                &cached.dag,
                &cached.index,
                read.tis,
                read.ended,
                progressing,
                previous,
                self.now,
            )?,
            None => {
                let evaluation =
                    evaluate_run_indexed(&cached.dag, &cached.index, read.tis, previous, self.now);
                if let Ok(mut read_whole) = self.read_whole.lock() {
                    read_whole.insert(run.id, evaluation.wake_at);
                }
                evaluation
            }
        };
        // A focused evaluation's retries are already timed: each by the report that made it
        // (`TrackedRuns::retries`) or by the whole evaluation that found it (`run_wake`).
        let unmapped = evaluation
            .transitions
            .into_iter()
            .map(|(task_id, expected, new)| TiTransition {
                task_id,
                map_index: -1,
                expected,
                new,
            });
        let mapped =
            evaluation
                .mapped_transitions
                .into_iter()
                .map(|(task_id, map_index, expected, new)| TiTransition {
                    task_id,
                    map_index,
                    expected,
                    new,
                });
        Some(RunDecision {
            transitions: unmapped.chain(mapped).collect(),
            run_state: evaluation.run_state,
        })
    }
}

impl Scheduler {
    /// Record the pending reports, evaluate every dirty run (read whole) and the runs of tries
    /// that ended (from the instances those can affect) and, with `queue`, queue a first page
    /// of what is runnable: one [`Store::record_evaluate_and_queue`] call, one transaction.
    /// Returns whether some run finished, and the page queued (`None` when the store was not
    /// called).
    ///
    /// [`Store::record_evaluate_and_queue`]: updraft_store::Store::record_evaluate_and_queue
    pub(super) async fn evaluate(
        &mut self,
        now: DateTime<Utc>,
        queue: bool,
    ) -> Result<(bool, Option<QueuedPage>), SchedulerError> {
        self.record_pending_xcoms(now).await?;
        for report in &self.tries.pending_reports {
            if let TryReport::Finished { key, skip, .. } = report {
                // Skipped instances changed too: their downstream tasks are in the focus.
                let ended = self.tracked.ended.entry(key.run_pk).or_default();
                ended.insert(key.task_id.clone());
                ended.extend(skip.iter().cloned());
            }
        }
        let whole = std::mem::take(&mut self.tracked.dirty);
        let mut ended = std::mem::take(&mut self.tracked.ended);
        ended.retain(|run_pk, _| !whole.contains(run_pk));
        let run_pks: Vec<i64> = whole.iter().chain(ended.keys()).copied().collect();
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
                    // As one at a time: the failing run is dropped, the others stay to do.
                    self.put_back(&whole, ended, pks.iter().chain(&run_pks[i + 1..]));
                    return Err(e);
                }
            }
        }
        if pks.is_empty() && self.tries.pending_reports.is_empty() {
            return Ok((false, None));
        }
        pks.sort_unstable();
        let decider = Decider {
            dags: &dags,
            previous: &previous,
            whole: &whole,
            ended: &ended,
            now,
            read_whole: Mutex::default(),
        };
        let page = if queue { self.queue_page_size() } else { 0 };
        let selector = Selector {
            dag_rows: &self.definitions.rows,
            traits: &self.definitions.traits,
            in_play: &self.tracked.in_play,
            parallelism_free: self.parallelism_free(),
            unknown_pools: Default::default(),
            placeholders: Default::default(),
        };
        let step = QueueStep {
            owner: self.job.id,
            page,
            selector: &selector,
        };
        let step_started = std::time::Instant::now();
        let recorded = self
            .store
            .record_evaluate_and_queue(
                &self.tries.pending_reports,
                &self.config.hostname,
                &pks,
                &decider,
                &step,
                now,
            )
            .await;
        updraft_metrics::global()
            .store_step_duration
            .observe(step_started.elapsed().as_secs_f64());
        let unknown_pools = selector.unknown_pools.into_inner().unwrap_or_default();
        let placeholders = selector.placeholders.into_inner().unwrap_or_default();
        self.tracked.placeholders.extend(placeholders);
        let read_whole = decider.read_whole.into_inner().unwrap_or_default();
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
                self.put_back(&whole, ended, pks.iter());
                return Err(e.into());
            }
        };
        self.report_unknown_pools(&unknown_pools);
        self.runs_read_whole(read_whole, &dags);
        let mut any_finished = false;
        for (run_pk, outcome) in outcomes {
            let decision = match outcome {
                Evaluated::Applied { decision, .. } => decision,
                Evaluated::NotRunning => {
                    self.forget(run_pk);
                    continue;
                }
                Evaluated::Busy => {
                    // Another scheduler is evaluating it; what it read may predate our changes.
                    match ended.remove(&run_pk) {
                        Some(tasks) => self.tracked.ended.entry(run_pk).or_default().extend(tasks),
                        None => {
                            self.tracked.busy.insert(run_pk);
                        }
                    }
                    let soon = chrono::Duration::from_std(BUSY_RETRY).unwrap_or_default();
                    self.wake(now + soon);
                    continue;
                }
            };
            if !decision.transitions.is_empty() || decision.run_state.is_some() {
                self.publish(run_pk);
            }
            self.placeholders_scheduled(run_pk, &decision, &dags);
            if let Some(state) = decision.run_state {
                self.tracked.in_play.remove(&run_pk);
                if let Some(run) = self.tracked.known.get(&run_pk) {
                    info!(dag_id = %run.dag_id, run_id = %run.run_id, %state, "run finished");
                    if let Some(cached) = dags.get(&run.dag_id).and_then(|v| v.get(&run.version)) {
                        self.notify_run(run, cached, state, None, now);
                    }
                }
                self.forget(run_pk);
                any_finished = true;
            }
        }
        Ok((any_finished, queued_page))
    }

    /// The runs of a step that did not happen (`pks`), to evaluate again as they were: read
    /// whole if they were to be, else from their focus.
    fn put_back<'a>(
        &mut self,
        whole: &BTreeSet<i64>,
        mut ended: HashMap<i64, BTreeSet<String>>,
        pks: impl Iterator<Item = &'a i64>,
    ) {
        for pk in pks {
            if whole.contains(pk) {
                self.tracked.dirty.insert(*pk);
            } else if let Some(tasks) = ended.remove(pk) {
                self.tracked.ended.entry(*pk).or_default().extend(tasks);
            }
        }
    }

    /// Remember when the runs of `read_whole` were read whole, their size, and the retries
    /// their evaluation found.
    fn runs_read_whole(
        &mut self,
        read_whole: HashMap<i64, Option<DateTime<Utc>>>,
        dags: &HashMap<String, HashMap<String, Arc<CachedDag>>>,
    ) {
        let at = Instant::now();
        for (run_pk, wake_at) in read_whole {
            let tasks = self
                .tracked
                .known
                .get(&run_pk)
                .and_then(|run| dags.get(&run.dag_id)?.get(&run.version))
                .map_or(0, |cached| cached.dag.tasks.len());
            self.tracked.read_whole.insert(run_pk, (at, tasks));
            match wake_at {
                Some(wake_at) => {
                    self.tracked.run_wake.insert(run_pk, wake_at);
                    self.wake(wake_at);
                }
                None => {
                    self.tracked.run_wake.remove(&run_pk);
                }
            }
        }
    }

    /// A run that finished or is no longer running: nothing about it is kept.
    pub(super) fn forget(&mut self, run_pk: i64) {
        self.tracked.mapped.retain(|(pk, _), _| *pk != run_pk);
        self.tracked.placeholders.retain(|key| key.run_pk != run_pk);
        self.tries
            .notifiers
            .retain(|(pk, _, _, _), _| *pk != run_pk);
        self.tracked.known.remove(&run_pk);
        self.tracked.read_whole.remove(&run_pk);
        self.tracked.run_wake.remove(&run_pk);
        self.tracked.retries.retain(|(_, pk, _)| *pk != run_pk);
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
