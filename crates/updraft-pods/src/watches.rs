//! One watch per namespace over the pods updraft manages, shared by every try followed there.
//!
//! A follower subscribes to its pod's name and hears that pod's changes; the namespace's watch
//! (kube-runtime's watcher: list, then watch from the list's resource version, again after
//! errors with backoff) starts with the first subscription and runs while the executor lives.
//! Hundreds of pods in flight thus hold one watch connection per namespace, not one each.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::sync::mpsc;

/// What a follower hears of its pod.
#[derive(Debug)]
pub(crate) enum PodChange {
    /// The pod's newest state.
    Changed(Box<Pod>),
    /// The pod was deleted.
    Deleted,
    /// The watch listed the namespace again (after losing track of it) and the pod was not in
    /// the list: it was deleted unseen, or created after the list was taken. Only the server
    /// can tell which.
    Missing,
}

/// Followers by pod name, each with its own id (a name is normally followed once).
type Subscribers = HashMap<String, HashMap<u64, mpsc::UnboundedSender<PodChange>>>;

pub(crate) struct PodWatches {
    client: kube::Client,
    /// Label selector of the pods watched (those updraft manages).
    selector: String,
    namespaces: Mutex<HashMap<String, NamespaceWatch>>,
    next_id: AtomicU64,
}

struct NamespaceWatch {
    subscribers: Arc<Mutex<Subscribers>>,
    task: tokio::task::AbortHandle,
}

/// A follower's view of its pod; unsubscribes when dropped.
pub(crate) struct Subscription {
    changes: mpsc::UnboundedReceiver<PodChange>,
    subscribers: Arc<Mutex<Subscribers>>,
    name: String,
    id: u64,
}

impl Subscription {
    /// The next change; `None` once the namespace's watch is stopped.
    pub(crate) async fn next(&mut self) -> Option<PodChange> {
        self.changes.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subscribers = lock(&self.subscribers);
        if let Some(ids) = subscribers.get_mut(&self.name) {
            ids.remove(&self.id);
            if ids.is_empty() {
                subscribers.remove(&self.name);
            }
        }
    }
}

impl PodWatches {
    pub(crate) fn new(client: kube::Client, selector: String) -> Self {
        PodWatches {
            client,
            selector,
            namespaces: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }
    }

    /// Hears the changes of pod `name` in `namespace` from now on, starting the namespace's
    /// watch if it is not running. Must be called inside a tokio runtime.
    pub(crate) fn subscribe(&self, namespace: &str, name: &str) -> Subscription {
        let mut namespaces = lock(&self.namespaces);
        let watch = namespaces
            .entry(namespace.to_owned())
            .or_insert_with(|| self.start(namespace));
        let (tx, changes) = mpsc::unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&watch.subscribers)
            .entry(name.to_owned())
            .or_default()
            .insert(id, tx);
        Subscription {
            changes,
            subscribers: watch.subscribers.clone(),
            name: name.to_owned(),
            id,
        }
    }

    /// Namespaces watched now.
    pub(crate) fn watched(&self) -> usize {
        lock(&self.namespaces).len()
    }

    /// Stops every namespace's watch; their subscribers hear nothing more.
    pub(crate) fn stop_all(&self) {
        for (_, watch) in lock(&self.namespaces).drain() {
            watch.task.abort();
            lock(&watch.subscribers).clear();
        }
    }

    fn start(&self, namespace: &str) -> NamespaceWatch {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let subscribers = Arc::new(Mutex::new(Subscribers::new()));
        let task = tokio::spawn(dispatch(
            api,
            self.selector.clone(),
            namespace.to_owned(),
            subscribers.clone(),
        ));
        NamespaceWatch {
            subscribers,
            task: task.abort_handle(),
        }
    }
}

impl Drop for PodWatches {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Runs a namespace's watch, passing each pod's changes to its subscribers.
async fn dispatch(
    api: Api<Pod>,
    selector: String,
    namespace: String,
    subscribers: Arc<Mutex<Subscribers>>,
) {
    let mut events = watcher(api, watcher::Config::default().labels(&selector))
        .default_backoff()
        .boxed();
    // Names in the list being read, while one is.
    let mut listed: Option<HashSet<String>> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => listed = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                tell(&subscribers, &name, || {
                    PodChange::Changed(Box::new(pod.clone()))
                });
                if let Some(names) = &mut listed {
                    names.insert(name);
                }
            }
            Ok(watcher::Event::InitDone) => {
                let names = listed.take().unwrap_or_default();
                let missing: Vec<String> = lock(&subscribers)
                    .keys()
                    .filter(|name| !names.contains(*name))
                    .cloned()
                    .collect();
                for name in missing {
                    tell(&subscribers, &name, || PodChange::Missing);
                }
            }
            Ok(watcher::Event::Apply(pod)) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                tell(&subscribers, &name, || {
                    PodChange::Changed(Box::new(pod.clone()))
                });
            }
            Ok(watcher::Event::Delete(pod)) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                tell(&subscribers, &name, || PodChange::Deleted);
            }
            Err(e) => tracing::warn!(%namespace, "watching the namespace's pods: {e}"),
        }
    }
}

fn tell(subscribers: &Mutex<Subscribers>, name: &str, change: impl Fn() -> PodChange) {
    if let Some(ids) = lock(subscribers).get(name) {
        for tx in ids.values() {
            // A follower that has just ended has dropped its receiver: nothing to tell.
            let _ = tx.send(change());
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
