//! Recording what executors report: tries started and ended, kept in memory until recorded so
//! no try's end is lost while the database is away.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use tracing::{debug, warn};
use updraft_core::retry::{TryOutcome, on_try_finished};
use updraft_core::{TaskState, branch_skips};
use updraft_executor::{ExecOutcome, TryEvent, TryKey, XComPush};
use updraft_store::{RETURN_VALUE, TiKey, TryReport, TryXComs, XComEntry};

use super::Scheduler;
use super::launch::append_log_line_soon;
use super::state::{InFlight, try_id};
use crate::SchedulerError;

impl Scheduler {
    pub(super) fn drain_events(&mut self, events: &mut Vec<TryEvent>) {
        while let Ok(event) = self.executors.events.try_recv() {
            events.push(event);
        }
    }

    /// Record a burst of executor events in one transaction (the hot path: one commit for
    /// every try that started or ended meanwhile).
    pub(super) async fn record_events(
        &mut self,
        events: Vec<TryEvent>,
    ) -> Result<(), SchedulerError> {
        self.take_events(events);
        self.record_pending_reports().await
    }

    /// Turn executor events into reports waiting to be recorded.
    pub(super) fn take_events(&mut self, events: Vec<TryEvent>) {
        if events.is_empty() {
            return;
        }
        let reports: Vec<TryReport> = events
            .into_iter()
            .filter_map(|event| match event {
                TryEvent::Started { key, pid, at } => Some(TryReport::Started {
                    key: TiKey {
                        run_pk: key.run_pk,
                        task_id: key.task_id,
                        map_index: key.map_index,
                    },
                    try_number: key.try_number,
                    pid: pid.map(i64::from),
                    at,
                }),
                TryEvent::Finished {
                    key,
                    outcome,
                    at,
                    xcoms,
                } => {
                    let return_value = return_value(&xcoms);
                    let pushed = (!xcoms.is_empty()).then(|| try_xcoms(&key, xcoms));
                    let report = self.finish_report(key, outcome, at, return_value.as_ref());
                    if let (Some(_), Some(pushed)) = (&report, pushed) {
                        self.tries.pending_xcoms.push(pushed);
                    }
                    report
                }
            })
            .collect();
        self.tries.pending_reports.extend(reports);
    }

    pub(super) async fn record_finish(
        &mut self,
        key: TryKey,
        outcome: ExecOutcome,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        let reports: Vec<TryReport> = self
            .finish_report(key, outcome, now, None)
            .into_iter()
            .collect();
        self.record_reports(reports).await
    }

    /// Reports that could not be recorded earlier (the database was away), before anything
    /// else is decided.
    pub(super) async fn record_pending_reports(&mut self) -> Result<(), SchedulerError> {
        self.record_reports(Vec::new()).await
    }

    /// Record `reports` after any still pending; on failure all of them stay pending.
    async fn record_reports(&mut self, reports: Vec<TryReport>) -> Result<(), SchedulerError> {
        self.tries.pending_reports.extend(reports);
        self.record_pending_xcoms(Utc::now()).await?;
        if self.tries.pending_reports.is_empty() {
            return Ok(());
        }
        let applied = self
            .store
            .record_try_reports(&self.tries.pending_reports, &self.config.hostname)
            .await?;
        let reports = std::mem::take(&mut self.tries.pending_reports);
        self.reports_recorded(&reports, &applied, true);
        Ok(())
    }

    /// What ended tries pushed, recorded before their ends (nothing to do, no statement, when
    /// none pushed anything); on failure it stays pending with the reports.
    pub(super) async fn record_pending_xcoms(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        if self.tries.pending_xcoms.is_empty() {
            return Ok(());
        }
        let recorded = self
            .store
            .record_xcoms(&self.tries.pending_xcoms, now)
            .await?;
        for (pushed, recorded) in self.tries.pending_xcoms.iter().zip(recorded) {
            if !recorded {
                debug!(task_id = %pushed.task_id, try_number = pushed.try_number, "XComs not recorded: the instance is at another try");
            }
        }
        self.tries.pending_xcoms.clear();
        Ok(())
    }

    /// After `reports` were recorded: tell the live views, time the retries and, unless the
    /// runs were evaluated in the same step, mark the ended tries for a focused evaluation.
    pub(super) fn reports_recorded(
        &mut self,
        reports: &[TryReport],
        applied: &[bool],
        mark_dirty: bool,
    ) {
        let mut touched = BTreeSet::new();
        for (report, &applied) in reports.iter().zip(applied) {
            match report {
                TryReport::Started {
                    key,
                    try_number,
                    at,
                    ..
                } => {
                    touched.insert(key.run_pk);
                    // Only tries of tasks with notifiers are in the map; most steps skip it.
                    if applied
                        && !self.tries.notifiers.is_empty()
                        && let Some(notifiers) = self.tries.notifiers.get(&try_id(key, *try_number))
                    {
                        self.notify_task(key, *try_number, TaskState::Running, notifiers, *at);
                    }
                }
                TryReport::Finished {
                    key,
                    retry_at,
                    try_number,
                    new,
                    at,
                    skip,
                } => {
                    self.end_recorded(key, *try_number);
                    if !self.tries.notifiers.is_empty()
                        && let Some(notifiers) =
                            self.tries.notifiers.remove(&try_id(key, *try_number))
                        && applied
                    {
                        self.notify_task(key, *try_number, *new, &notifiers, *at);
                    }
                    let outlets = self.tries.outlet_events.remove(&try_id(key, *try_number));
                    if let Some(events) = outlets
                        && applied
                        && *new == TaskState::Success
                    {
                        self.tries.pending_asset_events.extend(events);
                    }
                    if !applied {
                        debug!(task_id = %key.task_id, "try outcome not recorded: instance changed meanwhile");
                    }
                    if let Some(at) = retry_at
                        && applied
                    {
                        self.tracked
                            .retries
                            .push((*at, key.run_pk, key.task_id.clone()));
                        self.wake(*at);
                    }
                    touched.insert(key.run_pk);
                    if mark_dirty {
                        let ended = self.tracked.ended.entry(key.run_pk).or_default();
                        ended.insert(key.task_id.clone());
                        ended.extend(skip.iter().cloned());
                    }
                }
            }
        }
        for run_pk in touched {
            self.publish(run_pk);
        }
    }

    /// What a try that ended at `at` becomes, or `None` when its end must not be recorded.
    fn finish_report(
        &mut self,
        key: TryKey,
        outcome: ExecOutcome,
        at: DateTime<Utc>,
        return_value: Option<&serde_json::Value>,
    ) -> Option<TryReport> {
        let flight_key = TiKey {
            run_pk: key.run_pk,
            task_id: key.task_id.clone(),
            map_index: key.map_index,
        };
        // The end of an older try (stopped after its instance was cleared, while the next
        // try already runs) must not be taken for the end of the try in flight.
        if self
            .tries
            .in_flight
            .get(&flight_key)
            .is_some_and(|f| f.try_number != key.try_number)
        {
            debug!(task_id = %key.task_id, try_number = key.try_number, "end of a superseded try");
            return None;
        }
        let Some(flight) = self.tries.in_flight.remove(&flight_key) else {
            warn!(task_id = %key.task_id, "finish reported for a try not in flight");
            return None;
        };
        self.log_ending(&key, flight.log.clone());
        if !self.tries.notifiers.is_empty()
            && let Some(notifiers) = self
                .tries
                .notifiers
                .get_mut(&try_id(&flight_key, flight.try_number))
        {
            notifiers.reason = super::notify::failure_reason(&outcome);
        }
        let task = flight.dag.task(&key.task_id)?;
        if let ExecOutcome::Poked(poke) = &outcome {
            let (state, retry_at) = super::sensors::poke_outcome(task, poke, at);
            count_finished(&flight, &key.task_id, state, None);
            if state == TaskState::Failed || state == TaskState::Skipped {
                append_log_line_soon(
                    &flight.log,
                    format!("the sensor timed out ({state}): its condition did not hold in time"),
                );
            }
            return Some(TryReport::Finished {
                key: flight_key,
                try_number: flight.try_number,
                new: state,
                retry_at,
                at,
                skip: Vec::new(),
            });
        }
        let mut outcome = try_outcome(&outcome);
        let skip = if outcome == TryOutcome::Success && task.branching.is_some() {
            branch_decision(&flight, &key.task_id, return_value).unwrap_or_else(|| {
                outcome = TryOutcome::Failed;
                Vec::new()
            })
        } else {
            Vec::new()
        };
        let (state, retry_at) =
            on_try_finished(task, flight.try_number, flight.max_tries, outcome, at);
        count_finished(
            &flight,
            &key.task_id,
            state,
            Some(flight.launched.elapsed()),
        );
        if state == TaskState::Success && !task.outlets.is_empty() {
            let run_id = self
                .tracked
                .known
                .get(&key.run_pk)
                .map(|r| r.run_id.as_str());
            let events = super::assets::outlet_events(&flight.dag.dag, &key.task_id, run_id, at);
            self.tries
                .outlet_events
                .insert(try_id(&flight_key, flight.try_number), events);
        }
        Some(TryReport::Finished {
            key: flight_key,
            try_number: flight.try_number,
            new: state,
            retry_at,
            at,
            skip,
        })
    }
}

/// A try's end in the process's metrics: the state it leaves, and how long it ran (none for a
/// sensor's poke, which is not a run of the task).
fn count_finished(
    flight: &InFlight,
    task_id: &str,
    state: TaskState,
    ran: Option<std::time::Duration>,
) {
    updraft_metrics::global().try_finished(&flight.dag.dag.dag_id, task_id, state.as_str(), ran);
}

/// The tasks a branching try's `return_value` skips, said in its log; `None` when the value
/// cannot be followed (the try then fails, the reason in its log, as Airflow's branch task
/// raising).
fn branch_decision(
    flight: &InFlight,
    task_id: &str,
    return_value: Option<&serde_json::Value>,
) -> Option<Vec<String>> {
    let cached = &flight.dag;
    match branch_skips(&cached.dag, &cached.index, task_id, return_value) {
        Ok(skip) => {
            let shown =
                return_value.map_or_else(|| "no return_value".to_owned(), |v| v.to_string());
            let line = if skip.is_empty() {
                format!("branching on {shown}: no downstream task skipped")
            } else {
                format!("branching on {shown}: skipping {}", skip.join(", "))
            };
            append_log_line_soon(&flight.log, line);
            Some(skip)
        }
        Err(e) => {
            warn!(task_id, "branch failed: {e}");
            append_log_line_soon(&flight.log, format!("the branch failed: {e}"));
            None
        }
    }
}

/// The pushed `return_value`, read back as JSON; `None` when the try pushed none (Airflow's
/// `None`).
fn return_value(pushed: &[XComPush]) -> Option<serde_json::Value> {
    let pushed = pushed.iter().find(|p| p.key == RETURN_VALUE)?;
    serde_json::from_str(&pushed.value).ok()
}

fn try_xcoms(key: &TryKey, pushed: Vec<XComPush>) -> TryXComs {
    TryXComs {
        run_pk: key.run_pk,
        task_id: key.task_id.clone(),
        try_number: key.try_number,
        map_index: i64::from(key.map_index),
        entries: pushed
            .into_iter()
            .map(|p| XComEntry {
                key: p.key,
                value: p.value,
            })
            .collect(),
    }
}

fn try_outcome(outcome: &ExecOutcome) -> TryOutcome {
    match outcome {
        ExecOutcome::Success => TryOutcome::Success,
        ExecOutcome::Skipped => TryOutcome::Skipped,
        ExecOutcome::TimedOut => TryOutcome::TimedOut,
        ExecOutcome::Failed { .. } | ExecOutcome::Killed => TryOutcome::Failed,
        // Decided in `finish_report` before this is asked.
        ExecOutcome::Poked(_) => TryOutcome::Success,
    }
}
