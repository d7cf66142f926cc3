//! [`Sources`]: every configured source, synced periodically and on request, each sync
//! recorded in the store; the mounts the DAG loader reads; the tree of a pinned revision.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use updraft_store::SourceStore;

use crate::SourceError;
use crate::config::SourceSpec;

/// One folder the DAG loader reads: a source's current tree (its `subdir`), mounted at a
/// tenant or at the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The source's name (the bundle name).
    pub name: String,
    /// The DAG folder inside the current tree.
    pub root: PathBuf,
    /// `Some`: every file belongs to this tenant; `None`: folder names give tenants.
    pub tenant: Option<String>,
    pub revision: String,
}

/// A source's state in this process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceState {
    pub revision: Option<String>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub failures: u32,
    pub error: Option<String>,
}

/// What one sync of one source did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    pub name: String,
    pub result: Result<crate::git::Synced, String>,
}

/// Every configured source.
pub struct Sources {
    _specs: Vec<SourceSpec>,
}

impl Sources {
    /// The sources of `specs`, kept under `dir` (`$UPDRAFT_HOME/sources`); trees synced
    /// before are taken up again (current revision included), nothing is fetched yet.
    pub fn new(dir: PathBuf, specs: Vec<SourceSpec>) -> Result<Arc<Self>, SourceError> {
        let _ = (dir, specs);
        todo!("Sources::new")
    }

    pub fn is_empty(&self) -> bool {
        todo!("Sources::is_empty")
    }

    /// The folders the DAG loader reads now (sources never synced have none).
    pub fn mounts(&self) -> Vec<Mount> {
        todo!("Sources::mounts")
    }

    /// Notified after a sync switched a source to a new revision.
    pub fn changed(&self) -> Arc<Notify> {
        todo!("Sources::changed")
    }

    /// The current revision of `name`.
    pub fn revision(&self, name: &str) -> Option<String> {
        let _ = name;
        todo!("Sources::revision")
    }

    /// Syncs `name` now (one sync of a source at a time; a second caller waits for it).
    pub async fn sync(&self, name: &str) -> Result<SyncOutcome, SourceError> {
        let _ = name;
        todo!("Sources::sync")
    }

    /// Syncs every source, side by side.
    pub async fn sync_all(&self) -> Vec<SyncOutcome> {
        todo!("Sources::sync_all")
    }

    /// This process's view of each source, by name.
    pub fn states(&self) -> Vec<(String, SourceState)> {
        todo!("Sources::states")
    }

    /// The folder of `name`'s templates at `revision` (restored from git when pruned); a run
    /// reads its pod templates and files from here, not from the newest revision.
    pub async fn templates_at(&self, name: &str, revision: &str) -> Result<PathBuf, SourceError> {
        let _ = (name, revision);
        todo!("Sources::templates_at")
    }

    /// The DAG folder of `name` at `revision`.
    pub async fn dags_at(&self, name: &str, revision: &str) -> Result<PathBuf, SourceError> {
        let _ = (name, revision);
        todo!("Sources::dags_at")
    }

    /// Keeps the trees of `revisions` (those unfinished runs pinned) and the current one,
    /// removing older ones.
    pub fn prune(&self, name: &str, revisions: &HashSet<String>) -> Result<(), SourceError> {
        let _ = (name, revisions);
        todo!("Sources::prune")
    }

    /// Syncs each source every `period`, and at once when the store holds a request for it
    /// or `poke` is notified, recording every sync in `store`, until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        store: Arc<dyn SourceStore>,
        poke: Arc<Notify>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) {
        let _ = (store, poke, shutdown);
        todo!("Sources::run")
    }
}
