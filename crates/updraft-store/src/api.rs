//! Types of the REST API's store methods: paged, filtered and counted listings, and the few
//! writes the API needs beyond the scheduler's (marking a run, notes, creating a pool).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use updraft_core::{RunState, RunType, TaskState};
use updraft_dag::ImportError;

/// One page of a listing, and how many rows match the filters in all.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// Which rows of a listing: `limit` rows (`None`: all) after skipping `offset`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Paging {
    pub limit: Option<u32>,
    pub offset: u64,
}

/// A window of time; every bound is optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub gte: Option<DateTime<Utc>>,
    pub gt: Option<DateTime<Utc>>,
    pub lte: Option<DateTime<Utc>>,
    pub lt: Option<DateTime<Utc>>,
}

impl TimeRange {
    pub fn is_unbounded(&self) -> bool {
        *self == TimeRange::default()
    }
}

/// Sort key of [`DagQuery`]; ties are broken by `dag_id`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DagOrder {
    #[default]
    DagId,
    IsPaused,
    LastParsedAt,
    Fileloc,
    Tenant,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DagQuery {
    /// Only DAGs of these tenants; `None`: every tenant.
    pub tenants: Option<Vec<String>>,
    /// Case-insensitive substring of `dag_id`, in which SQL `LIKE` wildcards (`%`, `_`) apply.
    pub dag_id_pattern: Option<String>,
    /// Only DAGs carrying any of these tags (all of them with `all_tags`); empty: no filter.
    pub tags: Vec<String>,
    pub all_tags: bool,
    pub paused: Option<bool>,
    pub active: Option<bool>,
    pub order_by: DagOrder,
    pub descending: bool,
    pub paging: Paging,
}

/// Sort key of [`RunQuery`]; ties are broken by the run's surrogate id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RunOrder {
    /// Creation order.
    #[default]
    Id,
    DagId,
    RunId,
    State,
    RunType,
    LogicalDate,
    DataIntervalStart,
    DataIntervalEnd,
    QueuedAt,
    StartDate,
    EndDate,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunQuery {
    pub tenants: Option<Vec<String>>,
    /// `None`: runs of every DAG.
    pub dag_id: Option<String>,
    /// Empty: any state.
    pub states: Vec<RunState>,
    /// Empty: any type.
    pub run_types: Vec<RunType>,
    /// Case-insensitive substring of `run_id` (SQL `LIKE` wildcards apply).
    pub run_id_pattern: Option<String>,
    pub logical_date: TimeRange,
    pub start_date: TimeRange,
    pub end_date: TimeRange,
    pub order_by: RunOrder,
    pub descending: bool,
    pub paging: Paging,
}

/// Sort key of [`TiQuery`]; ties are broken by run, then `task_id`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TiOrder {
    /// By run (creation order), then `task_id`.
    #[default]
    Run,
    DagId,
    RunId,
    TaskId,
    State,
    TryNumber,
    Pool,
    PriorityWeight,
    LogicalDate,
    QueuedAt,
    StartDate,
    EndDate,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TiQuery {
    pub tenants: Option<Vec<String>>,
    /// `None`: instances of every DAG.
    pub dag_id: Option<String>,
    /// Only the instances of this run (surrogate key); `None`: of every run.
    pub run_pk: Option<i64>,
    /// Only instances of runs with this run id (of any DAG, unless `dag_id` is set).
    pub run_id: Option<String>,
    /// Empty: every task.
    pub task_ids: Vec<String>,
    /// Only instances of this map index (-1: the unmapped ones); `None`: any.
    pub map_index: Option<i32>,
    /// Empty: any state.
    pub states: Vec<TaskState>,
    /// Empty: any pool.
    pub pools: Vec<String>,
    pub logical_date: TimeRange,
    pub start_date: TimeRange,
    pub end_date: TimeRange,
    pub order_by: TiOrder,
    pub descending: bool,
    pub paging: Paging,
}

/// A recorded import error with its stable id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportErrorRow {
    /// Stable while the same error keeps being found; never reused.
    pub id: i64,
    pub error: ImportError,
    /// When this error was first recorded.
    pub timestamp: DateTime<Utc>,
}

/// Sort key of [`ImportErrorQuery`]; ties are broken by id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ImportErrorOrder {
    /// The order of the last DAGs-folder load.
    #[default]
    Position,
    Id,
    Filename,
    Timestamp,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportErrorQuery {
    pub tenants: Option<Vec<String>>,
    /// Case-insensitive substring of the file name (SQL `LIKE` wildcards apply).
    pub filename_pattern: Option<String>,
    pub order_by: ImportErrorOrder,
    pub descending: bool,
    pub paging: Paging,
}

/// Slots of a pool held by task instances, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUsage {
    pub running: i64,
    pub queued: i64,
    pub scheduled: i64,
}

/// A note on a run (`task_id` `None`) or on one of its task instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteRow {
    pub run_pk: i64,
    pub task_id: Option<String>,
    pub note: String,
}
