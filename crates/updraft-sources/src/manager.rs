//! [`Sources`]: every configured source, synced periodically and on request, each sync
//! recorded in the store; the mounts the DAG loader reads; the tree of a pinned revision.
//!
//! Each source syncs one at a time (a second caller waits for the running sync and then
//! syncs again), on a task of its own within [`Sources::run`], so a slow source never
//! delays another. A failed sync leaves the current tree in place: the last good revision
//! keeps being read, and the failures are counted until the next success.
//!
//! A sync, a restore or a prune also holds an exclusive `flock` on the source's folder
//! (`<name>/.lock`), so two processes of one `UPDRAFT_HOME` (a scheduler and `updraft sources
//! sync --here`) never write it at once.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tracing::{info, warn};
use updraft_store::{SourceRow, SourceStore};

use crate::SourceError;
use crate::config::{SourceKind, SourceSpec};
use crate::tree::{SourceDir, is_revision_name};

/// How often [`Sources::run`] looks for sync requests recorded by other processes.
const REQUEST_POLL: Duration = Duration::from_secs(1);

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

/// One configured source and what this process knows of it.
struct Source {
    spec: SourceSpec,
    dir: SourceDir,
    state: Mutex<SourceState>,
    /// Held for a sync, a restore or a prune: they all write the source's folder.
    busy: tokio::sync::Mutex<()>,
    /// Wakes the source's task in [`Sources::run`] for a sync now.
    wake: Notify,
}

/// Every configured source.
pub struct Sources {
    sources: Vec<Source>,
    changed: Arc<Notify>,
    poke: Arc<Notify>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.sources.iter().map(|s| s.spec.name.as_str()).collect();
        f.debug_struct("Sources")
            .field("names", &names)
            .finish_non_exhaustive()
    }
}

impl Sources {
    /// The sources of `specs`, kept under `dir` (`$UPDRAFT_HOME/sources`); trees synced
    /// before are taken up again (current revision included), nothing is fetched yet.
    pub fn new(dir: PathBuf, specs: Vec<SourceSpec>) -> Result<Arc<Self>, SourceError> {
        let mut names = HashSet::new();
        let mut sources = Vec::with_capacity(specs.len());
        for spec in specs {
            if !names.insert(spec.name.clone()) {
                return Err(SourceError::Config {
                    name: spec.name,
                    field: "name".into(),
                    reason: "another [[sources]] entry has this name; names must be unique".into(),
                });
            }
            let source_dir = SourceDir::new(dir.join(&spec.name));
            let state = SourceState {
                revision: source_dir.current().map(|(revision, _)| revision),
                ..SourceState::default()
            };
            sources.push(Source {
                spec,
                dir: source_dir,
                state: Mutex::new(state),
                busy: tokio::sync::Mutex::new(()),
                wake: Notify::new(),
            });
        }
        Ok(Arc::new(Sources {
            sources,
            changed: Arc::new(Notify::new()),
            poke: Arc::new(Notify::new()),
        }))
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The configured sources, in order.
    pub fn specs(&self) -> impl Iterator<Item = &SourceSpec> {
        self.sources.iter().map(|s| &s.spec)
    }

    /// The folders the DAG loader reads now (sources never synced have none), in
    /// configuration order. Each is the current tree itself, not the `current` link, so a
    /// load reads one revision even if a sync switches meanwhile.
    pub fn mounts(&self) -> Vec<Mount> {
        self.sources
            .iter()
            .filter_map(|source| {
                let (revision, tree) = source.dir.current()?;
                Some(Mount {
                    name: source.spec.name.clone(),
                    root: join_subdir(tree, source.spec.subdir.as_deref()),
                    tenant: source.spec.tenant.clone(),
                    revision,
                })
            })
            .collect()
    }

    /// Notified after a sync switched a source to a new revision. One waiter (the DAG
    /// loader): a switch with no one waiting is kept for the next wait.
    pub fn changed(&self) -> Arc<Notify> {
        Arc::clone(&self.changed)
    }

    /// Notifying it makes [`Sources::run`] take the store's sync requests at once (the
    /// API server does, after recording one).
    pub fn poke(&self) -> Arc<Notify> {
        Arc::clone(&self.poke)
    }

    /// The current revision of `name`.
    pub fn revision(&self, name: &str) -> Option<String> {
        let source = self.find(name).ok()?;
        source.dir.current().map(|(revision, _)| revision)
    }

    fn find(&self, name: &str) -> Result<&Source, SourceError> {
        self.sources
            .iter()
            .find(|s| s.spec.name == name)
            .ok_or_else(|| SourceError::Unknown(name.to_owned()))
    }

    /// Syncs `name` now (one sync of a source at a time; a second caller waits for it).
    pub async fn sync(&self, name: &str) -> Result<SyncOutcome, SourceError> {
        let source = self.find(name)?;
        let _busy = source.busy.lock().await;
        let result = match lock_folder(&source.dir).await {
            Ok(_locked) => fetch(&source.spec, &source.dir).await,
            Err(e) => Err(e.to_string()),
        };
        let now = Utc::now();
        {
            let mut state = lock(&source.state);
            state.last_sync_at = Some(now);
            match &result {
                Ok(synced) => {
                    state.revision = Some(synced.revision.clone());
                    state.last_success_at = Some(now);
                    state.failures = 0;
                    state.error = None;
                }
                Err(message) => {
                    state.failures = state.failures.saturating_add(1);
                    state.error = Some(message.clone());
                }
            }
            updraft_metrics::global().source_synced(
                name,
                result.is_ok(),
                state.failures,
                state
                    .last_success_at
                    .map(|at| at.timestamp_millis() as f64 / 1000.0),
            );
        }
        match &result {
            Ok(synced) if synced.changed => {
                info!(source = name, revision = %synced.revision, files_written = synced.files_written, "DAG source switched");
                self.changed.notify_one();
            }
            Ok(_) => {}
            Err(message) => warn!(source = name, "DAG source sync failed: {message}"),
        }
        Ok(SyncOutcome {
            name: name.to_owned(),
            result,
        })
    }

    /// Syncs every source, side by side.
    pub async fn sync_all(&self) -> Vec<SyncOutcome> {
        let syncs = self.sources.iter().map(|s| self.sync(&s.spec.name));
        futures::future::join_all(syncs)
            .await
            .into_iter()
            .filter_map(Result::ok)
            .collect()
    }

    /// This process's view of each source, by name.
    pub fn states(&self) -> Vec<(String, SourceState)> {
        self.sources
            .iter()
            .map(|s| (s.spec.name.clone(), lock(&s.state).clone()))
            .collect()
    }

    /// The row recording `name`'s state in the store: the URL without credentials, the
    /// error only once `max_failures` is exceeded.
    pub fn row(&self, name: &str) -> Result<SourceRow, SourceError> {
        let source = self.find(name)?;
        let state = lock(&source.state).clone();
        let spec = &source.spec;
        let (kind, url, reference) = match &spec.kind {
            SourceKind::Git(git) => ("git", &git.url, Some(git.reference.clone())),
            SourceKind::Objects(objects) => ("objects", &objects.url, None),
        };
        let failing = state.failures > spec.max_failures;
        Ok(SourceRow {
            name: spec.name.clone(),
            tenant: spec.tenant.clone(),
            kind: kind.to_owned(),
            url: without_credentials(url),
            reference,
            revision_url: match (&spec.revision_url, &state.revision) {
                (Some(template), Some(revision)) => Some(template.replace("{revision}", revision)),
                _ => None,
            },
            revision: state.revision,
            last_sync_at: state.last_sync_at,
            last_success_at: state.last_success_at,
            failures: i64::from(state.failures),
            error: if failing { state.error } else { None },
            sync_requested_at: None,
        })
    }

    /// The folder of `name`'s templates at `revision` (restored from git when pruned); a run
    /// reads its pod templates and files from here, not from the newest revision.
    pub async fn templates_at(&self, name: &str, revision: &str) -> Result<PathBuf, SourceError> {
        let source = self.find(name)?;
        let tree = self.tree_at(source, revision).await?;
        Ok(tree.join(&source.spec.templates))
    }

    /// The pod templates of `tenant` in `name` at `revision`: the templates folder itself
    /// for a source mounted at a tenant, its `<tenant>/` folder for one mounted at the root.
    pub async fn tenant_templates_at(
        &self,
        name: &str,
        revision: &str,
        tenant: &str,
    ) -> Result<PathBuf, SourceError> {
        let templates = self.templates_at(name, revision).await?;
        Ok(match self.find(name)?.spec.tenant {
            Some(_) => templates,
            None => templates.join(tenant),
        })
    }

    /// The DAG folder of `name` at `revision`.
    pub async fn dags_at(&self, name: &str, revision: &str) -> Result<PathBuf, SourceError> {
        let source = self.find(name)?;
        let tree = self.tree_at(source, revision).await?;
        Ok(join_subdir(tree, source.spec.subdir.as_deref()))
    }

    /// The kept tree of `revision`, restored from the repository first when it was pruned.
    async fn tree_at(&self, source: &Source, revision: &str) -> Result<PathBuf, SourceError> {
        let missing = || SourceError::MissingRevision {
            name: source.spec.name.clone(),
            revision: revision.to_owned(),
        };
        if !is_revision_name(revision) {
            return Err(missing());
        }
        if let Some(tree) = source.dir.tree(revision) {
            return Ok(tree);
        }
        let SourceKind::Git(_) = source.spec.kind else {
            return Err(missing());
        };
        let _busy = source.busy.lock().await;
        let _locked = lock_folder(&source.dir).await?;
        if let Some(tree) = source.dir.tree(revision) {
            return Ok(tree);
        }
        let (name, dir, rev) = (
            source.spec.name.clone(),
            source.dir.clone(),
            revision.to_owned(),
        );
        tokio::task::spawn_blocking(move || crate::git::restore(&name, &dir, &rev))
            .await
            .map_err(|e| SourceError::Sync {
                name: source.spec.name.clone(),
                message: format!("restoring revision {revision} failed: {e}"),
            })??;
        source.dir.tree(revision).ok_or_else(missing)
    }

    /// Keeps the trees of `revisions` (those unfinished runs pinned) and the current one,
    /// removing older ones. Skipped (nothing removed) while the source is being synced.
    pub fn prune(&self, name: &str, revisions: &HashSet<String>) -> Result<(), SourceError> {
        let source = self.find(name)?;
        let Ok(_busy) = source.busy.try_lock() else {
            return Ok(());
        };
        let io_error = |e| SourceError::Io {
            name: name.to_owned(),
            path: source.dir.base().to_path_buf(),
            source: e,
        };
        let Some(_locked) = try_lock_folder(&source.dir).map_err(io_error)? else {
            return Ok(());
        };
        source.dir.prune(revisions).map_err(io_error)
    }

    /// Syncs each source every `period`, and at once when the store holds a request for it
    /// or `poke` is notified, recording every sync in `store`, until `shutdown`.
    ///
    /// Requests are looked for every second (the store is shared by processes) and whenever
    /// `poke` is notified; a request for a source this process does not have is dropped.
    pub async fn run(
        self: Arc<Self>,
        store: Arc<dyn SourceStore>,
        poke: Arc<Notify>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) {
        for source in &self.sources {
            record(&self, store.as_ref(), &source.spec.name).await;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..self.sources.len() {
            tasks.spawn(Arc::clone(&self).run_one(index, Arc::clone(&store)));
        }
        let mut shutdown = std::pin::pin!(shutdown);
        let mut poll = tokio::time::interval(REQUEST_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = poke.notified() => {}
                _ = poll.tick() => {}
            }
            self.take_requests(store.as_ref()).await;
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }

    /// Wakes the sources the store holds a sync request for.
    async fn take_requests(&self, store: &dyn SourceStore) {
        let names = match store.take_source_sync_requests().await {
            Ok(names) => names,
            Err(e) => {
                warn!("reading DAG source sync requests failed: {e}");
                return;
            }
        };
        for name in names {
            match self.find(&name) {
                Ok(source) => source.wake.notify_one(),
                Err(_) => {
                    warn!(source = %name, "a sync was requested for a source not configured here")
                }
            }
        }
    }

    /// The loop of one source: a sync at once, then every `period` or when woken.
    async fn run_one(self: Arc<Self>, index: usize, store: Arc<dyn SourceStore>) {
        let source = &self.sources[index];
        let name = source.spec.name.clone();
        loop {
            if self.sync(&name).await.is_ok() {
                record(&self, store.as_ref(), &name).await;
            }
            tokio::select! {
                () = tokio::time::sleep(source.spec.period) => {}
                () = source.wake.notified() => {}
            }
        }
    }
}

/// Records `name`'s state; a store that fails is logged, the next sync records again.
async fn record(sources: &Sources, store: &dyn SourceStore, name: &str) {
    let Ok(row) = sources.row(name) else {
        return;
    };
    if let Err(e) = store.record_source(&row).await {
        warn!(source = name, "recording the DAG source's sync failed: {e}");
    }
}

/// Fetches the source and makes its new tree current; the error as shown to users.
async fn fetch(spec: &SourceSpec, dir: &SourceDir) -> Result<crate::git::Synced, String> {
    let name = spec.name.clone();
    let result = match &spec.kind {
        SourceKind::Git(git) => {
            let (git, dir) = (git.clone(), dir.clone());
            tokio::task::spawn_blocking(move || crate::git::sync(&name, &git, &dir))
                .await
                .unwrap_or_else(|e| {
                    Err(SourceError::Sync {
                        name: spec.name.clone(),
                        message: format!("the sync stopped: {e}"),
                    })
                })
        }
        SourceKind::Objects(objects) => crate::objects::sync(&name, objects, dir).await,
    };
    result.map_err(|e| e.to_string())
}

type FolderLock = nix::fcntl::Flock<std::fs::File>;

fn open_lock_file(dir: &SourceDir) -> std::io::Result<std::fs::File> {
    std::fs::create_dir_all(dir.base())?;
    std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.base().join(".lock"))
}

/// Waits (on the blocking pool) for the exclusive lock on `dir`, held until dropped.
async fn lock_folder(dir: &SourceDir) -> Result<FolderLock, SourceError> {
    let base = dir.base().to_path_buf();
    let folder = dir.clone();
    let locked = tokio::task::spawn_blocking(move || {
        let file = open_lock_file(&folder)?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| std::io::Error::from(errno))
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|locked| locked);
    locked.map_err(|source| SourceError::Io {
        name: base
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: base.join(".lock"),
        source,
    })
}

/// The exclusive lock on `dir` if no other process holds it.
fn try_lock_folder(dir: &SourceDir) -> std::io::Result<Option<FolderLock>> {
    let file = open_lock_file(dir)?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(locked) => Ok(Some(locked)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(errno.into()),
    }
}

fn join_subdir(tree: PathBuf, subdir: Option<&str>) -> PathBuf {
    match subdir {
        Some(subdir) if !subdir.is_empty() => tree.join(subdir),
        _ => tree,
    }
}

fn lock(state: &Mutex<SourceState>) -> std::sync::MutexGuard<'_, SourceState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `url` as it may be shown: an HTTP(S) URL loses its user info (a token may be in it),
/// any other keeps its user name but loses a password.
pub fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let http = matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https");
    match userinfo.split_once(':') {
        _ if http => format!("{scheme}://{host}{path}"),
        Some((user, _)) => format!("{scheme}://{user}@{host}{path}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_taken_out_of_urls() {
        assert_eq!(
            without_credentials("https://user:tok3n@git.example.com/a/b.git"),
            "https://git.example.com/a/b.git"
        );
        assert_eq!(
            without_credentials("https://tok3n@git.example.com/a.git"),
            "https://git.example.com/a.git"
        );
        assert_eq!(
            without_credentials("ssh://git:pw@host:22/a.git"),
            "ssh://git@host:22/a.git"
        );
        assert_eq!(
            without_credentials("ssh://git@host/a.git"),
            "ssh://git@host/a.git"
        );
        assert_eq!(without_credentials("git@host:a/b.git"), "git@host:a/b.git");
        assert_eq!(
            without_credentials("s3://bucket/prefix"),
            "s3://bucket/prefix"
        );
        assert_eq!(without_credentials("file:///tmp/repo"), "file:///tmp/repo");
    }
}
