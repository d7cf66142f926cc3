//! The DAGs folder and the definitions read from the store: loading the folder into the store
//! and keeping the latest definition of every DAG at hand.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{info, warn};
use updraft_dag::{DagBag, DagBagOptions, FolderWatcher, RefreshReport};

use super::Scheduler;
use crate::SchedulerError;

/// The DAGs folder: its bag of loaded DAGs, the watcher that notices changes, and when it is
/// next rescanned in full.
pub(super) struct DagsFolder {
    path: PathBuf,
    options: DagBagOptions,
    /// `None` only while a refresh runs on the blocking pool, or after one failed.
    bag: Option<DagBag>,
    _watcher: Option<FolderWatcher>,
    pub(super) next_rescan: Instant,
}

impl DagsFolder {
    /// A folder not loaded yet, watched for changes (which notify `changed`).
    pub(super) fn new(path: &Path, max_file_size: u64, changed: Arc<Notify>) -> Self {
        let watcher = updraft_dag::watch(path, updraft_dag::DEFAULT_DEBOUNCE, move || {
            changed.notify_one()
        })
        .map_err(|e| warn!("watching {} failed, rescanning only: {e}", path.display()))
        .ok();
        let options = DagBagOptions {
            max_file_size,
            ..Default::default()
        };
        DagsFolder {
            path: path.to_path_buf(),
            bag: Some(DagBag::with_options(path, options.clone())),
            options,
            _watcher: watcher,
            next_rescan: Instant::now(),
        }
    }

    /// Rescans the folder on the blocking pool (reading and parsing files must not hold up the
    /// loop, whatever the runtime) and returns the bag with what changed.
    async fn refresh(&mut self) -> Result<(&DagBag, RefreshReport), SchedulerError> {
        let mut bag = match self.bag.take() {
            Some(bag) => bag,
            // The last refresh failed: load everything again.
            None => DagBag::with_options(&self.path, self.options.clone()),
        };
        let (bag, report) = tokio::task::spawn_blocking(move || {
            let report = bag.refresh();
            (bag, report)
        })
        .await
        .map_err(|e| SchedulerError::Other(format!("loading the DAGs folder failed: {e}")))?;
        Ok((self.bag.insert(bag), report))
    }
}

impl Scheduler {
    /// Loads the DAGs folder and, when anything changed (or `force`), records what it holds.
    pub(super) async fn sync_folder(&mut self, force: bool) -> Result<(), SchedulerError> {
        let Some(folder) = self.folder.as_mut() else {
            return Ok(());
        };
        folder.next_rescan = Instant::now() + self.config.rescan_interval;
        let (bag, report) = folder.refresh().await?;
        if !report.has_changes() && !force {
            return Ok(());
        }
        info!(
            dags = bag.dags().len(),
            import_errors = bag.import_errors().len(),
            "DAGs folder loaded"
        );
        updraft_runs::record_dag_bag(
            self.store.as_ref(),
            bag,
            self.config.dags_are_paused_at_creation,
            Utc::now(),
        )
        .await?;
        self.definitions.next_schedule_check.clear();
        Ok(())
    }

    /// Bring the definitions' rows up to date: switches every time, a definition only when its version
    /// changed (definitions are large; decoding them all on every poll would dominate an idle
    /// scheduler's CPU).
    pub(super) async fn refresh_dag_rows(&mut self) -> Result<(), SchedulerError> {
        let heads = self.store.dag_heads().await?;
        let mut rows = HashMap::with_capacity(heads.len());
        for head in heads {
            let row = match self.definitions.rows.remove(&head.dag_id) {
                Some(mut row) if row.version == head.version => {
                    row.is_paused = head.is_paused;
                    row.is_active = head.is_active;
                    row
                }
                _ => match self.store.dag(&head.dag_id).await? {
                    Some(row) => row,
                    None => continue,
                },
            };
            rows.insert(head.dag_id, row);
        }
        self.definitions.rows = rows;
        Ok(())
    }
}
