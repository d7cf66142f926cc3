//! XComs as stored: the types and the [`XComStore`] contract, implemented once for both
//! backends in `backend.rs`.
//!
//! An XCom is one value (JSON text) a task instance pushed under a key, keyed by run, task,
//! map index ([`NOT_MAPPED`] until mapping exists) and key. Each row belongs to the try that
//! wrote it, and only the rows of a task instance's current try are visible: a new try hides
//! its predecessor's values from the moment it is queued (Airflow clears them when a task
//! instance runs again), and its first push deletes them. The tenant is the run's.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Result, WriteMode};

/// Airflow's map index of a task instance that is not mapped.
pub const NOT_MAPPED: i64 = -1;

/// Airflow's default key, under which a task's return value is pushed.
pub const RETURN_VALUE: &str = "return_value";

/// One value a try pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XComEntry {
    pub key: String,
    /// The value as JSON text.
    pub value: String,
}

/// What one try pushed, for [`XComStore::record_xcoms`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryXComs {
    pub run_pk: i64,
    pub task_id: String,
    pub try_number: u32,
    pub map_index: i64,
    pub entries: Vec<XComEntry>,
}

/// An XCom as stored (a visible one: of its task instance's current try).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XComRow {
    pub run_pk: i64,
    pub task_id: String,
    pub map_index: i64,
    pub key: String,
    /// The value as JSON text.
    pub value: String,
    pub timestamp: DateTime<Utc>,
}

/// Which XComs of one run to read, by task, map index and key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct XComQuery {
    pub run_pk: i64,
    /// Only these tasks'; `None`: every task's.
    pub task_ids: Option<Vec<String>>,
    pub map_index: Option<i64>,
    pub key: Option<String>,
    /// The page size; `None`: all.
    pub limit: Option<u32>,
    pub offset: u32,
}

/// One XCom written by a user (the API's `POST`/`PATCH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XComWrite<'a> {
    pub run_pk: i64,
    pub task_id: &'a str,
    pub map_index: i64,
    pub key: &'a str,
    /// The value as JSON text.
    pub value: &'a str,
}

/// XComs.
#[async_trait]
pub trait XComStore: Send + Sync {
    /// Records what tries pushed, in one transaction: for each try whose task instance is
    /// still at that try, its instance's XComs become exactly `entries` (an earlier try's are
    /// deleted); a try no longer current writes nothing. Returns, per try, whether it was
    /// recorded.
    async fn record_xcoms(&self, tries: &[TryXComs], now: DateTime<Utc>) -> Result<Vec<bool>>;

    /// A page of a run's visible XComs, by task, map index and key, with the total matching.
    async fn xcoms(&self, query: &XComQuery) -> Result<(Vec<XComRow>, u64)>;

    /// Writes one XCom for the task instance's current try. [`WriteMode::Create`]: an
    /// existing one is [`crate::StoreError::Conflict`]; [`WriteMode::Update`]: none is
    /// [`crate::StoreError::NotFound`]; a task instance that does not exist is
    /// [`crate::StoreError::NotFound`] either way.
    async fn write_xcom(
        &self,
        xcom: &XComWrite<'_>,
        mode: WriteMode,
        now: DateTime<Utc>,
    ) -> Result<XComRow>;
}
