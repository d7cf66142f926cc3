//! DAG sources (Airflow's DAG bundles) as recorded: each source's last sync, the revision its
//! DAGs and runs are read from, and requests to sync now. The [`SourceStore`] contract is
//! implemented once for both backends, in `backend.rs`.
//!
//! A scheduler syncs its sources and records what it found here; the server reads it for
//! `GET /api/v2/sources` and the UI's banner, and records requests (`POST
//! /api/v2/sources/{name}/sync`) that schedulers take. Run creation copies the revision its
//! DAG was last loaded from into the run (`bundle_version`), so a run keeps reading its DAG's
//! files from the revision it started with, the one its definition comes from.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Result;

/// One source's state, as the last scheduler to sync it recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SourceRow {
    /// The source's name: Airflow's `bundle_name`.
    pub name: String,
    /// The tenant the whole source belongs to; `None`: mounted at the root, folder names
    /// give tenants.
    pub tenant: Option<String>,
    /// `git` or `objects`.
    pub kind: String,
    /// Where it is read from, without credentials.
    pub url: String,
    /// The branch, tag or commit followed (git), if any.
    pub reference: Option<String>,
    /// The revision in use: a commit sha (git) or an object-store generation.
    pub revision: Option<String>,
    /// A link to the revision (a commit page), when the source says how to make one.
    pub revision_url: Option<String>,
    /// When a sync last ended, well or not.
    pub last_sync_at: Option<DateTime<Utc>>,
    /// When a sync last succeeded.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Failed syncs since the last success.
    pub failures: i64,
    /// The last failure's message (credentials never in it); `None` after a success.
    pub error: Option<String>,
    /// A sync asked for (by the API or CLI) and not taken yet.
    pub sync_requested_at: Option<DateTime<Utc>>,
}

/// Which DAG source a DAG version was read from, and at which revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleRef<'a> {
    pub name: &'a str,
    pub version: Option<&'a str>,
}

#[async_trait]
pub trait SourceStore: Send + Sync {
    /// Records a source's state after a sync (inserting it the first time). The request
    /// time is left as it is.
    async fn record_source(&self, source: &SourceRow) -> Result<()>;
    /// Every recorded source, by name.
    async fn sources(&self) -> Result<Vec<SourceRow>>;
    /// One recorded source.
    async fn source(&self, name: &str) -> Result<Option<SourceRow>>;
    /// Asks for a sync of `name` now. `false` when no such source is recorded.
    async fn request_source_sync(&self, name: &str, now: DateTime<Utc>) -> Result<bool>;
    /// The sources with a sync requested, clearing the requests (each is taken once, by one
    /// scheduler).
    async fn take_source_sync_requests(&self) -> Result<Vec<String>>;
}
