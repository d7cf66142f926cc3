//! Assets: the events of successful tries with outlets, the loaded DAGs' asset references
//! kept in the store, and asset-triggered runs created when their conditions hold.
//!
//! A try's events are prepared when its end is reported and recorded right after the step
//! that recorded its success (kept in memory until then, like the reports), so a try without
//! outlets costs nothing more. The core decides which consumers are due
//! ([`updraft_core::asset_triggered_runs`]); the store creates each run with its consumed
//! events in one transaction, so an event triggers each consumer once, whichever scheduler
//! sees it first.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use tracing::debug;
use updraft_core::assets::{Consumer, QueuedEvent, asset_triggered_runs};
use updraft_core::timetable::DataInterval;
use updraft_dag::Dag;
use updraft_runs::{RunError, create_asset_triggered_run};
use updraft_store::{AssetRefKind, AssetReference, NewAssetEvent, QueuedAssetEvent};

use super::{Scheduler, Scope};
use crate::SchedulerError;

/// The events a successful try of `task_id` records: one per outlet (Airflow's map index -1).
pub(super) fn outlet_events(
    dag: &Dag,
    task_id: &str,
    run_id: Option<&str>,
    at: DateTime<Utc>,
) -> Vec<NewAssetEvent> {
    let Some(task) = dag.task(task_id) else {
        return Vec::new();
    };
    task.outlets
        .iter()
        .map(|outlet| NewAssetEvent {
            tenant: dag.tenant.clone(),
            uri: outlet.uri.clone(),
            name: outlet.name.clone(),
            extra: outlet.extra.clone(),
            source_dag_id: Some(dag.dag_id.clone()),
            source_run_id: run_id.map(str::to_owned),
            source_task_id: Some(task_id.to_owned()),
            source_map_index: -1,
            timestamp: at,
        })
        .collect()
}

/// What the DAGs say of assets: each asset-triggered DAG's URIs and each task's outlets.
fn references<'a>(dags: impl Iterator<Item = &'a Dag>) -> BTreeSet<AssetReference> {
    let mut out = BTreeSet::new();
    for dag in dags {
        if let Some(condition) = dag.schedule.assets() {
            for uri in condition.uris() {
                out.insert(AssetReference {
                    tenant: dag.tenant.clone(),
                    dag_id: dag.dag_id.clone(),
                    task_id: String::new(),
                    kind: AssetRefKind::Schedule,
                    uri: uri.to_owned(),
                });
            }
        }
        for task in &dag.tasks {
            for outlet in &task.outlets {
                out.insert(AssetReference {
                    tenant: dag.tenant.clone(),
                    dag_id: dag.dag_id.clone(),
                    task_id: task.task_id.clone(),
                    kind: AssetRefKind::Outlet,
                    uri: outlet.uri.clone(),
                });
            }
        }
    }
    out
}

impl Scheduler {
    /// Writes the active DAGs' asset references when they differ from what this scheduler
    /// last wrote.
    pub(super) async fn sync_asset_references(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        let active = self.definitions.rows.values().filter(|r| r.is_active);
        let refs = references(active.map(|r| &r.dag));
        if self.definitions.asset_references.as_ref() == Some(&refs) {
            return Ok(());
        }
        let list: Vec<AssetReference> = refs.iter().cloned().collect();
        self.store.replace_asset_references(&list, now).await?;
        self.definitions.asset_references = Some(refs);
        Ok(())
    }

    /// Records the events of tries whose success was recorded, then (for the whole
    /// installation) creates and starts the runs they make due; true when it did anything.
    /// Nothing to do (and no statement) when no such try ended.
    pub(super) async fn record_asset_events(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<bool, SchedulerError> {
        if self.tries.pending_asset_events.is_empty() {
            return Ok(false);
        }
        self.store
            .record_asset_events(&self.tries.pending_asset_events)
            .await?;
        self.tries.pending_asset_events.clear();
        if matches!(self.scope, Scope::Service) {
            self.create_asset_triggered_runs(now).await?;
            self.start_queued_runs(now).await?;
        }
        Ok(true)
    }

    /// Creates a run for every unpaused asset-triggered DAG whose condition its queued events
    /// satisfy.
    pub(super) async fn create_asset_triggered_runs(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        let consumers: Vec<_> = self
            .definitions
            .rows
            .values()
            .filter(|r| r.is_active && !r.is_paused && r.dag.schedule.assets().is_some())
            .cloned()
            .collect();
        if consumers.is_empty() {
            return Ok(());
        }
        let queued = self.store.queued_asset_events().await?;
        if queued.is_empty() {
            return Ok(());
        }
        let mut by_dag: BTreeMap<&str, Vec<&QueuedAssetEvent>> = BTreeMap::new();
        for event in &queued {
            by_dag.entry(event.dag_id.as_str()).or_default().push(event);
        }
        let empty = Vec::new();
        let events: Vec<Vec<QueuedEvent>> = consumers
            .iter()
            .map(|row| {
                by_dag
                    .get(row.dag.dag_id.as_str())
                    .unwrap_or(&empty)
                    .iter()
                    .map(|e| QueuedEvent {
                        event_id: e.event_id,
                        uri: e.uri.clone(),
                    })
                    .collect()
            })
            .collect();
        let decisions: Vec<Consumer<'_>> = consumers
            .iter()
            .zip(&events)
            .filter_map(|(row, queued)| {
                Some(Consumer {
                    dag_id: &row.dag.dag_id,
                    condition: row.dag.schedule.assets()?,
                    queued,
                })
            })
            .collect();
        for decided in asset_triggered_runs(&decisions) {
            let Some(row) = consumers.iter().find(|r| r.dag.dag_id == decided.dag_id) else {
                continue;
            };
            let stamps = queued
                .iter()
                .filter(|e| e.dag_id == decided.dag_id && decided.consumed.contains(&e.event_id))
                .map(|e| e.timestamp);
            let (first, last) = stamps.fold((now, DateTime::<Utc>::MIN_UTC), |(lo, hi), t| {
                (lo.min(t), hi.max(t))
            });
            let interval = DataInterval {
                start: first,
                end: last.max(first),
            };
            match create_asset_triggered_run(
                self.store.as_ref(),
                &row.dag,
                &row.version,
                &decided.consumed,
                interval,
                now,
            )
            .await
            {
                Ok(Some(run)) => {
                    debug!(dag_id = %decided.dag_id, run_id = %run.run_id, "created asset-triggered run");
                    self.publish(run.id);
                }
                Ok(None) | Err(RunError::RunExists { .. }) => {
                    debug!(dag_id = %decided.dag_id, "asset events consumed elsewhere")
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
