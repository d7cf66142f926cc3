//! [`Sources`] over git repositories built with the `git` command (`file://`): the mounts the
//! DAG loader reads, failures counted while the last good tree stays, trees of pinned
//! revisions kept or restored, and the run loop syncing on a request recorded in the store.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use updraft_sources::{SourceConfig, SourceError, Sources};
use updraft_store::{SourceRow, SourceStore};

const DEADLINE: Duration = Duration::from_secs(30);

struct Upstream {
    work: PathBuf,
}

impl Upstream {
    fn new(at: &Path) -> Upstream {
        std::fs::create_dir_all(at).unwrap();
        let upstream = Upstream {
            work: at.to_path_buf(),
        };
        upstream.git(&["init", "-q", "-b", "main"]);
        upstream
    }

    fn git(&self, args: &[&str]) -> String {
        let output = Command::new("git")
            .args(["-c", "user.name=dev", "-c", "user.email=dev@example.com"])
            .args(args)
            .current_dir(&self.work)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    fn commit(&self, files: &[(&str, &str)]) -> String {
        for (rel, text) in files {
            let path = self.work.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", "change"]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn url(&self) -> String {
        format!("file://{}", self.work.display())
    }
}

fn config(name: &str, upstream: &Upstream) -> SourceConfig {
    SourceConfig {
        name: name.into(),
        git: Some(upstream.url()),
        subdir: Some("dags".into()),
        period: Some("1h".into()),
        ..SourceConfig::default()
    }
}

fn sources(dir: &Path, configs: &[SourceConfig]) -> Arc<Sources> {
    let specs = configs.iter().map(|c| c.check().unwrap()).collect();
    Sources::new(dir.to_path_buf(), specs).unwrap()
}

/// The store's side of sources, in memory.
#[derive(Default)]
struct MemoryStore {
    rows: Mutex<Vec<SourceRow>>,
    requests: Mutex<Vec<String>>,
}

#[async_trait]
impl SourceStore for MemoryStore {
    async fn record_source(&self, source: &SourceRow) -> updraft_store::Result<()> {
        let mut rows = self.rows.lock().unwrap();
        rows.retain(|r| r.name != source.name);
        rows.push(source.clone());
        Ok(())
    }

    async fn sources(&self) -> updraft_store::Result<Vec<SourceRow>> {
        Ok(self.rows.lock().unwrap().clone())
    }

    async fn source(&self, name: &str) -> updraft_store::Result<Option<SourceRow>> {
        let rows = self.rows.lock().unwrap();
        Ok(rows.iter().find(|r| r.name == name).cloned())
    }

    async fn request_source_sync(
        &self,
        name: &str,
        _now: DateTime<Utc>,
    ) -> updraft_store::Result<bool> {
        self.requests.lock().unwrap().push(name.to_owned());
        Ok(true)
    }

    async fn take_source_sync_requests(&self) -> updraft_store::Result<Vec<String>> {
        Ok(std::mem::take(&mut *self.requests.lock().unwrap()))
    }
}

async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn mounts_follow_syncs_and_a_failing_sync_keeps_the_last_good_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = Upstream::new(&tmp.path().join("upstream"));
    let rev_a = upstream.commit(&[("dags/team_a/a.yaml", "dag_id: a\n")]);
    let mut team = config("team", &upstream);
    team.tenant = Some("team_a".into());
    team.max_failures = Some(1);
    let sources = sources(&tmp.path().join("sources"), &[team]);
    assert!(sources.mounts().is_empty(), "never synced: nothing to read");

    let outcome = sources.sync("team").await.unwrap();
    assert_eq!(outcome.result.as_ref().unwrap().revision, rev_a);
    tokio::time::timeout(DEADLINE, sources.changed().notified())
        .await
        .expect("a switch notifies");
    let mounts = sources.mounts();
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].revision, rev_a);
    assert_eq!(mounts[0].tenant.as_deref(), Some("team_a"));
    assert_eq!(
        std::fs::read_to_string(mounts[0].root.join("team_a/a.yaml")).unwrap(),
        "dag_id: a\n"
    );

    std::fs::rename(&upstream.work, tmp.path().join("gone")).unwrap();
    for failures in 1..=2 {
        let outcome = sources.sync("team").await.unwrap();
        assert!(outcome.result.is_err(), "{outcome:?}");
        assert_eq!(sources.mounts(), mounts, "the last good tree stays");
        let (_, state) = sources.states().remove(0);
        assert_eq!(state.failures, failures);
        assert_eq!(state.revision.as_deref(), Some(rev_a.as_str()));
        let row = sources.row("team").unwrap();
        assert_eq!(row.failures, i64::from(failures));
        // max_failures = 1: the first failure is tolerated, the second reported.
        assert_eq!(row.error.is_some(), failures > 1, "{row:?}");
    }
    assert!(matches!(
        sources.sync("nope").await,
        Err(SourceError::Unknown(_))
    ));
}

#[tokio::test]
async fn a_pinned_revision_is_kept_by_prune_and_restored_once_pruned() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = Upstream::new(&tmp.path().join("upstream"));
    let rev_a = upstream.commit(&[
        ("dags/x/a.yaml", "dag_id: a\n"),
        ("templates/x/app/pod.yaml", "A\n"),
    ]);
    let sources = sources(&tmp.path().join("sources"), &[config("src", &upstream)]);
    sources.sync("src").await.unwrap().result.unwrap();
    let rev_b = upstream.commit(&[("templates/x/app/pod.yaml", "B\n")]);
    sources.sync("src").await.unwrap().result.unwrap();
    assert_eq!(sources.revision("src"), Some(rev_b.clone()));

    let pod_at = async |revision: &str| {
        let folder = sources
            .tenant_templates_at("src", revision, "x")
            .await
            .unwrap();
        std::fs::read_to_string(folder.join("app/pod.yaml")).unwrap()
    };
    assert_eq!(pod_at(&rev_a).await, "A\n");
    assert_eq!(pod_at(&rev_b).await, "B\n");
    let dags_a = sources.dags_at("src", &rev_a).await.unwrap();
    assert!(dags_a.join("x/a.yaml").is_file());

    // Another process holding the source's folder: prune leaves it alone.
    let lock_file = std::fs::File::options()
        .write(true)
        .open(tmp.path().join("sources/src/.lock"))
        .unwrap();
    let held = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive).unwrap();
    sources.prune("src", &HashSet::new()).unwrap();
    assert!(dags_a.is_dir(), "nothing removed under another's lock");
    drop(held);

    let keep: HashSet<String> = [rev_a.clone()].into();
    sources.prune("src", &keep).unwrap();
    assert!(dags_a.is_dir(), "a pinned revision's tree is kept");
    sources.prune("src", &HashSet::new()).unwrap();
    assert!(!dags_a.exists(), "an unpinned old tree is removed");
    assert_eq!(pod_at(&rev_b).await, "B\n", "the current tree is kept");
    assert_eq!(pod_at(&rev_a).await, "A\n", "restored from the repository");
    assert!(matches!(
        sources
            .templates_at("src", "0123456789abcdef0123456789abcdef01234567")
            .await,
        Err(SourceError::MissingRevision { .. })
    ));
}

#[tokio::test]
async fn the_run_loop_records_syncs_and_syncs_on_a_request_in_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = Upstream::new(&tmp.path().join("upstream"));
    let rev_a = upstream.commit(&[("dags/a.yaml", "dag_id: a\n")]);
    let sources = sources(&tmp.path().join("sources"), &[config("src", &upstream)]);
    let store = Arc::new(MemoryStore::default());
    let stop = Arc::new(Notify::new());
    let stopped = Arc::clone(&stop);
    let running = tokio::spawn(Arc::clone(&sources).run(
        store.clone(),
        sources.poke(),
        async move { stopped.notified().await },
    ));
    let revision_recorded = |revision: &str| {
        let rows = store.rows.lock().unwrap();
        rows.iter()
            .find(|r| r.name == "src" && r.revision.as_deref() == Some(revision))
            .cloned()
    };
    let row = wait_for("the first sync recorded", || revision_recorded(&rev_a)).await;
    assert_eq!(row.kind, "git");
    assert_eq!(row.url, upstream.url());
    assert_eq!(row.reference.as_deref(), Some("main"));
    assert!(row.last_success_at.is_some());

    // The period is an hour: only the request makes it sync again.
    let rev_b = upstream.commit(&[("dags/a.yaml", "dag_id: a\ndescription: b\n")]);
    store.request_source_sync("src", Utc::now()).await.unwrap();
    sources.poke().notify_one();
    wait_for("the requested sync recorded", || revision_recorded(&rev_b)).await;

    stop.notify_one();
    tokio::time::timeout(DEADLINE, running)
        .await
        .expect("the loop ends at shutdown")
        .unwrap();
}

#[test]
fn two_sources_cannot_share_a_name() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = Upstream::new(&tmp.path().join("upstream"));
    let spec = config("same", &upstream).check().unwrap();
    let error = Sources::new(tmp.path().join("sources"), vec![spec.clone(), spec]).unwrap_err();
    assert!(error.to_string().contains("same"), "{error}");
    assert!(error.to_string().contains("name"), "{error}");
}
