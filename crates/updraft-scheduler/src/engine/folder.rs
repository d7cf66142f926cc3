//! The DAGs folder and the definitions read from the store: loading the folder into the store
//! and keeping the latest definition of every DAG at hand.
//!
//! The folder is walked and parsed on the blocking pool, and the loop does not wait for it:
//! a refresh is started (on a change the watcher saw, or when the rescan is due) and its end
//! notifies the loop like a change would, which then records what it found. So however long a
//! walk takes, other DAGs keep being scheduled; and a walk checks a stop flag before every
//! entry, set at shutdown (or when the folder is dropped), so it never holds a stop up. Only
//! the first load, at start, is waited for: the first pass needs the DAGs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::Utc;
use tokio::sync::Notify;
use tokio::sync::oneshot::{self, error::TryRecvError};
use tokio::time::Instant;
use tracing::{info, warn};
use updraft_dag::{DagBag, DagBagOptions, FolderWatcher, RefreshReport};

use super::Scheduler;
use crate::SchedulerError;

/// A refresh on the blocking pool; it sends the bag back with what changed (`None`: stopped),
/// or `None` when it panicked, before it notifies the loop.
type Loading = oneshot::Receiver<Option<(DagBag, Option<RefreshReport>)>>;

/// The DAGs folder: its bag of loaded DAGs, the refresh running in the background, the watcher
/// that notices changes, and when it is next rescanned in full.
pub(super) struct DagsFolder {
    path: PathBuf,
    options: DagBagOptions,
    /// The bag between refreshes; `None` while one runs, or after one failed.
    bag: Option<DagBag>,
    loading: Option<Loading>,
    /// Set by the watcher: something changed since the last refresh started.
    dirty: Arc<AtomicBool>,
    /// Ends a running walk at its next entry.
    stop: Arc<AtomicBool>,
    /// Wakes the loop: a change seen by the watcher, or a refresh that ended.
    changed: Arc<Notify>,
    /// A refresh found changes that are not recorded yet (or recording them failed).
    unrecorded: bool,
    _watcher: Option<FolderWatcher>,
    pub(super) next_rescan: Instant,
}

impl DagsFolder {
    /// A folder not loaded yet, watched for changes (which notify `changed`).
    pub(super) fn new(path: &Path, options: DagBagOptions, changed: Arc<Notify>) -> Self {
        let dirty = Arc::new(AtomicBool::new(true));
        let watcher = {
            let dirty = Arc::clone(&dirty);
            let changed = Arc::clone(&changed);
            updraft_dag::watch(path, updraft_dag::DEFAULT_DEBOUNCE, move || {
                dirty.store(true, Ordering::SeqCst);
                changed.notify_one();
            })
        }
        .map_err(|e| warn!("watching {} failed, rescanning only: {e}", path.display()))
        .ok();
        DagsFolder {
            path: path.to_path_buf(),
            bag: Some(DagBag::with_options(path, options.clone())),
            options,
            loading: None,
            dirty,
            stop: Arc::new(AtomicBool::new(false)),
            changed,
            unrecorded: false,
            _watcher: watcher,
            next_rescan: Instant::now(),
        }
    }

    /// Ends a running walk at its next entry; no refresh starts afterwards.
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Starts a refresh on the blocking pool unless one runs or the folder is stopped; its end
    /// notifies `changed`.
    fn start(&mut self, rescan_interval: std::time::Duration) {
        self.next_rescan = Instant::now() + rescan_interval;
        if self.loading.is_some() || self.stop.load(Ordering::SeqCst) {
            return;
        }
        self.dirty.store(false, Ordering::SeqCst);
        let mut bag = match self.bag.take() {
            Some(bag) => bag,
            // The last refresh failed: load everything again.
            None => DagBag::with_options(&self.path, self.options.clone()),
        };
        let stop = Arc::clone(&self.stop);
        let changed = Arc::clone(&self.changed);
        let (done, loading) = oneshot::channel();
        self.loading = Some(loading);
        tokio::task::spawn_blocking(move || {
            let refreshed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                let report = bag.refresh_unless_stopped(&stop);
                (bag, report)
            }));
            // Sent before the loop is woken, so the loop finds it when it looks.
            let _ = done.send(refreshed.ok());
            changed.notify_one();
        });
    }

    /// Takes in the running refresh if it has ended (with `wait`, once it has), else leaves it.
    async fn collect(&mut self, wait: bool) -> Result<(), SchedulerError> {
        let Some(loading) = self.loading.as_mut() else {
            return Ok(());
        };
        let received = if wait {
            loading.await
        } else {
            match loading.try_recv() {
                Err(TryRecvError::Empty) => return Ok(()),
                Ok(v) => Ok(v),
                Err(TryRecvError::Closed) => Ok(None),
            }
        };
        self.loading = None;
        let Ok(Some((bag, report))) = received else {
            // The bag went with the failed refresh; the next one loads everything again.
            return Err(SchedulerError::Other(
                "loading the DAGs folder failed (the walk panicked)".into(),
            ));
        };
        if report.is_some_and(|r| r.has_changes()) {
            self.unrecorded = true;
        }
        self.bag = Some(bag);
        Ok(())
    }

    /// Whether a refresh should start: something changed, or the rescan is due.
    fn wants_refresh(&self) -> bool {
        self.dirty.load(Ordering::SeqCst) || Instant::now() >= self.next_rescan
    }
}

impl Drop for DagsFolder {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Scheduler {
    /// Takes in a refresh of the DAGs folder that ended and records what changed; starts the
    /// next one when the folder changed or the rescan is due. Never waits for a walk, except
    /// with `force` (at start): then the folder is loaded now and recorded even if unchanged.
    pub(super) async fn sync_folder(&mut self, force: bool) -> Result<(), SchedulerError> {
        let interval = self.config.rescan_interval;
        let Some(folder) = self.folder.as_mut() else {
            return Ok(());
        };
        if force {
            // A refresh already running may predate the latest change: load once more.
            folder.collect(true).await?;
            folder.start(interval);
            folder.collect(true).await?;
            folder.unrecorded = true;
        } else {
            folder.collect(false).await?;
        }
        if folder.unrecorded
            && let Some(bag) = folder.bag.as_ref()
        {
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
            folder.unrecorded = false;
            self.definitions.next_schedule_check.clear();
        }
        if folder.wants_refresh() {
            folder.start(interval);
        }
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
