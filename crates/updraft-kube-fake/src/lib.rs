//! A fake Kubernetes API server, for tests: a test double for a real API server and its
//! kubelets, since none can run on the machines the tests run on.
//!
//! It speaks the real wire format over HTTP for what updraft uses, so the real client
//! (kube-rs) talks to it as to a cluster: create, get, list and watch pods (label and field
//! selectors, resource versions, newline-delimited watch events, 410 Gone for a watch from a
//! compacted resource version), delete them (with a grace
//! period), and read a container's log (with `follow`); create, get, list (label selectors),
//! merge-patch and delete Secrets (`data` in base64, `stringData` merged into it on create;
//! a deleted pod's Secrets, by `ownerReferences`, deleted with it as the garbage collector
//! does). Errors are `Status` objects with the
//! real codes and reasons. Bodies are serialized from `k8s-openapi`'s types.
//!
//! Each pod's first container really runs, as a local process in its own process group
//! (`command` ++ `args`, the container's `env`: plain values, `secretKeyRef`s and `envFrom`
//! Secrets, resolved from the stored Secrets when it starts; a missing Secret or key leaves it
//! waiting with `CreateContainerConfigError`, as the kubelet does): its output is the container's
//! log and its exit code the container's. The pod goes through Kubernetes' phases (Pending,
//! scheduled with `ContainerCreating`, Running, Succeeded or Failed). Failure modes are chosen
//! by the image name: `err-image-pull` (ErrImagePull then ImagePullBackOff, never runs),
//! `unschedulable` (PodScheduled False, reason Unschedulable), `oom` (runs, then terminated
//! with OOMKilled and exit code 137), `evicted` (runs, then the pod fails with reason Evicted);
//! `spec.activeDeadlineSeconds` ends a pod still running after that long with reason
//! DeadlineExceeded.
//!
//! A container's termination message (`state.terminated.message`, which a real kubelet reads
//! from `/dev/termination-log`) is simulated: the process gets the variable
//! `UPDRAFT_FAKE_TERMINATION_LOG` ([`TERMINATION_LOG_VAR`]) naming a file of its own; what it
//! wrote there (at most 4096 bytes, as the kubelet) becomes the message when it exits.

mod kubelet;
mod secrets;
mod selector;
mod server;

pub use kubelet::TERMINATION_LOG_VAR;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::serve::ListenerExt as _;
use k8s_openapi::api::core::v1::{Pod, Secret};
use tokio::sync::watch;

/// A watch event as kept in the history.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub rv: u64,
    pub kind: &'static str,
    pub pod: Pod,
}

/// What the simulated kubelet is asked to do to a pod's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    None,
    /// Delete: SIGTERM, then SIGKILL after the grace period.
    Terminate {
        grace: Duration,
    },
    /// End the process now and record this exit code.
    Finish(i32),
}

pub(crate) struct PodEntry {
    pub pod: Pod,
    /// The container's output, with the time each chunk arrived.
    pub log: Vec<(chrono::DateTime<chrono::Utc>, Vec<u8>)>,
    /// The container has started (its log can be read).
    pub started: bool,
    /// The container has ended (a followed log ends).
    pub log_done: bool,
    pub signal: watch::Sender<Signal>,
}

/// Pod creations to answer with an error.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FailingCreates {
    pub left: u32,
    pub code: u16,
    /// The pod is created all the same (the answer is lost on its way back).
    pub created_anyway: bool,
}

#[derive(Default)]
pub(crate) struct State {
    pub pods: BTreeMap<(String, String), PodEntry>,
    /// Secrets by namespace and name (`stringData` already merged into `data`).
    pub secrets: BTreeMap<(String, String), Secret>,
    pub rv: u64,
    pub history: Vec<Event>,
    pub namespaces: Option<HashSet<String>>,
    pub requests: Vec<String>,
    pub next_uid: u64,
    /// Bumped by [`FakeKube::cut_log_streams`]: open log streams end.
    pub log_cuts: u64,
    /// Set by [`FakeKube::fail_next_creates`].
    pub failing_creates: Option<FailingCreates>,
    /// Bumped by [`FakeKube::vanish_pod`]: open watches end.
    pub watch_cuts: u64,
    /// Watches from a resource version older than this are refused (410 Gone): the history
    /// before it is compacted away.
    pub compacted: u64,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Bumped on every change (pods and logs), so watches, followed logs and tests wake.
    pub changed: watch::Sender<u64>,
    pub workdir: tempfile::TempDir,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Records a new version of a pod (a new resource version and a watch event).
    pub fn record(&self, state: &mut State, kind: &'static str, pod: &mut Pod) {
        state.rv += 1;
        pod.metadata.resource_version = Some(state.rv.to_string());
        state.history.push(Event {
            rv: state.rv,
            kind,
            pod: pod.clone(),
        });
    }

    /// Changes a pod with `change`, records it as MODIFIED and wakes waiters. False when the
    /// pod is gone.
    pub fn update(&self, ns: &str, name: &str, change: impl FnOnce(&mut PodEntry)) -> bool {
        {
            let mut state = self.lock();
            let Some(entry) = state.pods.get_mut(&(ns.to_owned(), name.to_owned())) else {
                return false;
            };
            change(entry);
            let mut pod = entry.pod.clone();
            self.record(&mut state, "MODIFIED", &mut pod);
            if let Some(entry) = state.pods.get_mut(&(ns.to_owned(), name.to_owned())) {
                entry.pod = pod;
            }
        }
        self.notify();
        true
    }
}

/// The fake API server. Stops (and kills every simulated process) when dropped.
pub struct FakeKube {
    shared: Arc<Shared>,
    url: String,
    server: tokio::task::JoinHandle<()>,
}

impl FakeKube {
    /// Serves on 127.0.0.1 (a free port), accepting pods in any namespace.
    pub async fn start() -> FakeKube {
        Self::serve(None).await
    }

    /// Like [`start`](Self::start), but only these namespaces exist: creating a pod elsewhere
    /// answers 404, as a cluster does.
    pub async fn start_with_namespaces(namespaces: &[&str]) -> FakeKube {
        Self::serve(Some(namespaces.iter().map(|s| s.to_string()).collect())).await
    }

    async fn serve(namespaces: Option<HashSet<String>>) -> FakeKube {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                namespaces,
                ..State::default()
            }),
            changed: watch::Sender::new(0),
            workdir: tempfile::tempdir().expect("a temporary folder"),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let app = server::router(shared.clone());
        // As the real API server (Go sets TCP_NODELAY on every connection): watch events and
        // log chunks go out at once, not after the client's delayed acknowledgement.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeKube {
            shared,
            url,
            server,
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// A client configuration for this server (no authentication, namespace `default`).
    pub fn client_config(&self) -> kube::Config {
        kube::Config::new(self.url.parse().expect("a valid URL"))
    }

    /// Writes a kubeconfig file whose current context is this server.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: fake\n  user:\n    token: fake-token\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\n",
            self.url
        );
        std::fs::write(path, text)
    }

    /// Every pod now, including pods being deleted.
    pub fn pods(&self) -> Vec<Pod> {
        self.shared
            .lock()
            .pods
            .values()
            .map(|e| e.pod.clone())
            .collect()
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.shared
            .lock()
            .pods
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|e| e.pod.clone())
    }

    /// Every request received, as `METHOD /path?query`, in arrival order.
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().requests.clone()
    }

    /// Waits until `predicate` holds for the pods (woken by every change, never polling).
    ///
    /// # Panics
    /// After `timeout`, showing the pods' names and phases.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        predicate: impl Fn(&[Pod]) -> bool,
    ) -> Vec<Pod> {
        let mut changes = self.shared.changed.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                let pods = self.pods();
                if predicate(&pods) {
                    return pods;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        match waited {
            Ok(pods) => pods,
            Err(_) => {
                let seen: Vec<String> = self
                    .pods()
                    .iter()
                    .map(|p| {
                        format!(
                            "{}: {}",
                            p.metadata.name.as_deref().unwrap_or("?"),
                            p.status
                                .as_ref()
                                .and_then(|s| s.phase.as_deref())
                                .unwrap_or("?")
                        )
                    })
                    .collect();
                panic!("pods never matched within {timeout:?}; pods now: {seen:?}");
            }
        }
    }

    /// Every Secret now.
    pub fn secrets(&self) -> Vec<Secret> {
        self.shared.lock().secrets.values().cloned().collect()
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<Secret> {
        self.shared
            .lock()
            .secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Ends a pod's process now, its container exiting with `code`.
    pub fn finish_pod(&self, namespace: &str, name: &str, code: i32) {
        let state = self.shared.lock();
        if let Some(entry) = state.pods.get(&(namespace.to_owned(), name.to_owned())) {
            entry.signal.send_replace(Signal::Finish(code));
        }
    }

    /// Ends every open log stream now, as a dropped connection would, leaving the pods alone.
    pub fn cut_log_streams(&self) {
        self.shared.lock().log_cuts += 1;
        self.shared.notify();
    }

    /// Answers the next `count` pod creations with HTTP `code` (a `Status`), as an API server
    /// that is briefly unavailable (503) or a proxy in front of it whose answer timed out
    /// (504). With `created_anyway`, each pod is created all the same before the error is
    /// sent.
    pub fn fail_next_creates(&self, count: u32, code: u16, created_anyway: bool) {
        self.shared.lock().failing_creates = Some(FailingCreates {
            left: count,
            code,
            created_anyway,
        });
    }

    /// Removes a pod as if it were deleted while no watch could see it: its process is killed,
    /// the history so far is compacted away and every open watch is cut, so a watcher resuming
    /// from its last resource version is told 410 Gone and must list again to learn of it.
    pub fn vanish_pod(&self, namespace: &str, name: &str) {
        {
            let mut state = self.shared.lock();
            if let Some(entry) = state.pods.remove(&(namespace.to_owned(), name.to_owned())) {
                entry.signal.send_replace(Signal::Finish(137));
                secrets::collect_owned_by(&mut state, &entry.pod);
            }
            state.rv += 1;
            state.compacted = state.rv;
            state.history.clear();
            state.watch_cuts += 1;
        }
        self.shared.notify();
    }

    /// Stops serving and kills every simulated process.
    pub async fn shutdown(self) {
        drop(self);
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.server.abort();
        let state = self.shared.lock();
        for entry in state.pods.values() {
            entry.signal.send_replace(Signal::Finish(137));
        }
    }
}
