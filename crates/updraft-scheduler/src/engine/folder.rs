//! The DAGs folder and the definitions read from the store: loading the folder into the store
//! and keeping the latest definition of every DAG at hand.
//!
//! The folder is walked and parsed on the blocking pool, and the loop does not wait for it:
//! a refresh is started (on a change the watcher saw, or when the rescan is due) and its end
//! notifies the loop like a change would, which then records what it found. So however long a
//! walk takes, other DAGs keep being scheduled; and a walk checks a stop flag before every
//! entry, set at shutdown (or when the folder is dropped), so it never holds a stop up. Only
//! the first load, at start, is waited for: the first pass needs the DAGs.
//!
//! With DAG sources configured, the folder is their current trees instead ([`Sources::mounts`],
//! taken again at every refresh); their trees never change once written, so nothing watches
//! them: a sync that switches a source notifies `Sources::changed`, which marks the folder
//! changed. After every load recorded, the trees no unfinished run is pinned to are pruned.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::Utc;
use tokio::sync::Notify;
use tokio::sync::oneshot::{self, error::TryRecvError};
use tokio::time::Instant;
use tracing::{info, warn};
use updraft_core::RunState;
use updraft_dag::{DagBag, DagBagOptions, DagMount, FolderWatcher, RefreshReport};
use updraft_sources::Sources;
use updraft_store::NewestRunsFilter;

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
    /// The DAG sources read instead of `path`, when configured.
    sources: Option<Arc<Sources>>,
    pub(super) next_rescan: Instant,
}

impl DagsFolder {
    /// A folder not loaded yet, watched for changes (which notify `changed`).
    pub(super) fn new(
        path: &Path,
        options: DagBagOptions,
        changed: Arc<Notify>,
        sources: Option<Arc<Sources>>,
    ) -> Self {
        let dirty = Arc::new(AtomicBool::new(true));
        let sources = sources.filter(|s| !s.is_empty());
        let watcher = if sources.is_some() {
            None
        } else {
            let dirty = Arc::clone(&dirty);
            let changed = Arc::clone(&changed);
            updraft_dag::watch(path, updraft_dag::DEFAULT_DEBOUNCE, move || {
                dirty.store(true, Ordering::SeqCst);
                changed.notify_one();
            })
            .map_err(|e| warn!("watching {} failed, rescanning only: {e}", path.display()))
            .ok()
        };
        DagsFolder {
            path: path.to_path_buf(),
            bag: Some(new_bag(path, sources.as_deref(), &options)),
            options,
            loading: None,
            dirty,
            stop: Arc::new(AtomicBool::new(false)),
            changed,
            unrecorded: false,
            _watcher: watcher,
            sources,
            next_rescan: Instant::now(),
        }
    }

    /// What a switch of a source notifies, when the folder is made of sources.
    pub(super) fn sources_changed(&self) -> Option<Arc<Notify>> {
        self.sources.as_ref().map(|s| s.changed())
    }

    /// Something changed: the next look starts a refresh.
    pub(super) fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::SeqCst);
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
            None => new_bag(&self.path, self.sources.as_deref(), &self.options),
        };
        if let Some(sources) = &self.sources {
            bag.set_mounts(mounts_of(sources));
        }
        let stop = Arc::clone(&self.stop);
        let changed = Arc::clone(&self.changed);
        let (done, loading) = oneshot::channel();
        self.loading = Some(loading);
        tokio::task::spawn_blocking(move || {
            let refreshed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                let started = std::time::Instant::now();
                let report = bag.refresh_unless_stopped(&stop);
                observe_refresh(&bag, started.elapsed());
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

/// The task syncing the DAG sources, stopped when dropped.
pub(super) struct SourcesSyncing {
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SourcesSyncing {
    fn drop(&mut self) {
        // `notify_one` keeps the permit if the task is not waiting yet; the abort covers a
        // task stuck in a store call.
        self.stop.notify_one();
        self.task.abort();
    }
}

/// A bag over the plain folder `path`, or over the sources' current trees.
/// A refresh of the DAGs folder in the process's metrics (Airflow's DAG processing gauges).
fn observe_refresh(bag: &DagBag, took: std::time::Duration) {
    let metrics = updraft_metrics::global();
    metrics.dagbag_size.set(bag.dags().len() as i64);
    metrics.import_errors.set(bag.import_errors().len() as i64);
    metrics.total_parse_time.set(took.as_secs_f64());
}

fn new_bag(path: &Path, sources: Option<&Sources>, options: &DagBagOptions) -> DagBag {
    match sources {
        Some(sources) => DagBag::with_mounts(mounts_of(sources), options.clone()),
        None => DagBag::with_options(path, options.clone()),
    }
}

/// The sources' current trees as the bag reads them.
fn mounts_of(sources: &Sources) -> Vec<DagMount> {
    sources
        .mounts()
        .into_iter()
        .map(|m| DagMount {
            root: m.root,
            tenant: m.tenant,
            name: Some(m.name),
            version: Some(m.revision),
        })
        .collect()
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
        let mut prune = None;
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
            if let Some(sources) = folder.sources.clone() {
                let loaded = bag.mounts().iter().filter_map(|m| m.version.clone());
                prune = Some((sources, loaded.collect()));
            }
        }
        if folder.wants_refresh() {
            folder.start(interval);
        }
        if let Some((sources, keep)) = prune {
            self.prune_sources(sources, keep).await?;
        }
        Ok(())
    }

    /// Starts syncing the DAG sources (a scheduler of the whole installation with sources
    /// configured); they stop when the returned guard is dropped, whichever way `run` ends.
    pub(super) fn start_syncing_sources(&self) -> Option<SourcesSyncing> {
        let sources = self.folder.as_ref()?.sources.clone()?;
        let store: Arc<dyn updraft_store::SourceStore> = self.store.clone();
        let stop = Arc::new(Notify::new());
        let stopped = Arc::clone(&stop);
        let poke = sources.poke();
        let task = tokio::spawn(sources.run(store, poke, async move {
            stopped.notified().await;
        }));
        Some(SourcesSyncing { stop, task })
    }

    /// Removes the sources' trees that neither `keep` (the revisions the DAGs were just read
    /// at) nor an unfinished run needs, on the blocking pool, without waiting.
    async fn prune_sources(
        &self,
        sources: Arc<Sources>,
        mut keep: HashSet<String>,
    ) -> Result<(), SchedulerError> {
        let unfinished = NewestRunsFilter {
            dag_id: None,
            states: vec![RunState::Queued, RunState::Running],
            limit: None,
        };
        let runs = self.store.newest_runs(&unfinished).await?;
        keep.extend(runs.into_iter().filter_map(|run| pinned_revision(&run)));
        tokio::task::spawn_blocking(move || {
            let names: Vec<String> = sources.specs().map(|s| s.name.clone()).collect();
            for name in names {
                if let Err(e) = sources.prune(&name, &keep) {
                    warn!("pruning the trees of DAG source {name} failed: {e}");
                }
            }
        });
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
        self.definitions.traits = crate::selection::TaskTraits::of(&rows);
        self.definitions.rows = rows;
        Ok(())
    }
}

/// The revision of its DAG's source a run reads its files from.
pub(super) fn pinned_revision(run: &updraft_store::RunRow) -> Option<String> {
    run.bundle_version.clone()
}
