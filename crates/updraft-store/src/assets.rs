//! Assets as recorded: assets per tenant, their events, what loaded DAGs say of them, the
//! events queued for asset-triggered DAGs and the events each such run consumed. The
//! [`AssetStore`] contract is implemented once for both backends, in `backend.rs`.
//!
//! An event is queued, in the transaction that records it, for every active, unpaused DAG of
//! the same tenant whose asset condition names its URI; a scheduler then asks the core which
//! consumers are due and creates each run together with its consumed events
//! ([`AssetStore::create_asset_triggered_run`]), removing them from the queue in the same
//! transaction, so an event triggers each consumer once whichever scheduler sees it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::api::Paging;
use crate::{NewRun, NewTi, Result, RunRow};

/// An event to record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewAssetEvent {
    pub tenant: String,
    pub uri: String,
    /// The asset's name when it is first recorded (the URI when `None`).
    pub name: Option<String>,
    /// The event's extra (a JSON object).
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub source_dag_id: Option<String>,
    pub source_run_id: Option<String>,
    pub source_task_id: Option<String>,
    /// Airflow's `source_map_index`: -1 for an unmapped task or none.
    pub source_map_index: i64,
    pub timestamp: DateTime<Utc>,
}

/// One asset of a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetRow {
    pub id: i64,
    pub tenant: String,
    pub uri: String,
    pub name: String,
    pub extra: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One recorded event, with its asset's tenant and URI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetEventRow {
    pub id: i64,
    pub asset_id: i64,
    pub tenant: String,
    pub uri: String,
    pub extra: serde_json::Value,
    pub source_dag_id: Option<String>,
    pub source_run_id: Option<String>,
    pub source_task_id: Option<String>,
    pub source_map_index: i64,
    pub timestamp: DateTime<Utc>,
}

/// Whether a DAG consumes an asset (its schedule names it) or a task produces it (an outlet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetRefKind {
    Schedule,
    Outlet,
}

impl AssetRefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AssetRefKind::Schedule => "schedule",
            AssetRefKind::Outlet => "outlet",
        }
    }
}

/// What a loaded DAG says of one asset.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AssetReference {
    pub tenant: String,
    pub dag_id: String,
    /// The producing task for an outlet; empty for a schedule.
    pub task_id: String,
    pub kind: AssetRefKind,
    pub uri: String,
}

/// An event waiting for a consumer DAG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedAssetEvent {
    pub dag_id: String,
    pub event_id: i64,
    pub uri: String,
    pub timestamp: DateTime<Utc>,
}

/// Filters of [`AssetStore::asset_events`], newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssetEventQuery {
    /// Only events of these tenants' assets; `None`: every tenant.
    pub tenants: Option<Vec<String>>,
    pub asset_id: Option<i64>,
    pub source_dag_id: Option<String>,
    pub source_run_id: Option<String>,
    pub paging: Paging,
}

#[async_trait]
pub trait AssetStore: Send + Sync {
    /// Records the events in one transaction: each asset created on first sight, each event
    /// queued for the active, unpaused DAGs of its tenant whose schedule names its URI.
    async fn record_asset_events(&self, events: &[NewAssetEvent]) -> Result<Vec<AssetEventRow>>;
    /// Replaces what the loaded DAGs say of assets, creating assets first named here.
    async fn replace_asset_references(
        &self,
        references: &[AssetReference],
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Every asset reference, ordered.
    async fn asset_references(&self) -> Result<Vec<AssetReference>>;
    /// Every queued event, by consumer and event.
    async fn queued_asset_events(&self) -> Result<Vec<QueuedAssetEvent>>;
    /// Creates an asset-triggered run that consumes `consumed` (the events queued for it),
    /// taking them off its queue in the same transaction. `None` (nothing written) when any
    /// of them is no longer queued for the DAG: another scheduler consumed it.
    async fn create_asset_triggered_run(
        &self,
        run: &NewRun,
        tis: &[NewTi],
        consumed: &[i64],
        now: DateTime<Utc>,
    ) -> Result<Option<RunRow>>;
    /// The assets of these tenants (`None`: all), by tenant and URI.
    async fn assets(
        &self,
        tenants: Option<&[String]>,
        paging: &Paging,
    ) -> Result<(Vec<AssetRow>, u64)>;
    async fn asset(&self, id: i64) -> Result<Option<AssetRow>>;
    /// Events, newest first, and how many match.
    async fn asset_events(&self, query: &AssetEventQuery) -> Result<(Vec<AssetEventRow>, u64)>;
    /// The events a run consumed, oldest first.
    async fn consumed_asset_events(&self, run_pk: i64) -> Result<Vec<AssetEventRow>>;
}
