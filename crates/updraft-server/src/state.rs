//! What every handler shares.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, broadcast, watch};
use updraft_runs::StateChange;
use updraft_store::Store;

use crate::guard::Guard;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    pub dags_folder: PathBuf,
    pub logs_folder: PathBuf,
    /// How callers authenticate; on by default.
    pub auth: crate::authn::AuthSettings,
    /// The Fernet keys connections and variables are encrypted with (`core.fernet_key`);
    /// `None`: none configured, so the connections and variables endpoints answer that they
    /// need one.
    pub keyring: Option<updraft_secrets::Keyring>,
    /// Notified when a sync of a DAG source is asked for (`POST /api/v2/sources/{name}/sync`),
    /// so that a scheduler in this process takes the request at once; `None`: schedulers find
    /// the request in the store.
    pub source_sync: Option<Arc<Notify>>,
    /// The secrets of DAG sources' webhooks, by source name: a git host's push event signed
    /// with one (`X-Hub-Signature-256`, or `X-Gitlab-Token`) may sync that source.
    pub source_webhooks: WebhookSecrets,
}

/// The webhook secret of each DAG source that has one, by source name. Never printed.
#[derive(Clone, Default)]
pub struct WebhookSecrets(HashMap<String, String>);

impl WebhookSecrets {
    pub fn new(secrets: impl IntoIterator<Item = (String, String)>) -> Self {
        WebhookSecrets(secrets.into_iter().collect())
    }

    /// The secret of source `name`, if it has one.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.0.keys().collect();
        names.sort();
        f.debug_map()
            .entries(names.into_iter().map(|name| (name, "***")))
            .finish()
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<ServerConfig>,
    /// State changes for live views (SSE).
    pub changes: broadcast::Sender<StateChange>,
    /// Session and token keys, failed-login counts.
    pub authn: Arc<crate::authn::Authn>,
    wake: Arc<dyn Fn() + Send + Sync>,
    /// A scheduler whose latest heartbeat is older than this is not healthy.
    health_check_threshold: Duration,
    /// Set when the server begins shutting down ([`crate::serve`]), so long-lived responses
    /// (SSE streams) end instead of holding the shutdown up.
    stopping: Arc<watch::Sender<bool>>,
    /// The `Host` check and the event stream limits.
    guard: Arc<Guard>,
    /// Where tries' logs are uploaded (`[logging] remote_base_log_folder`), read when their
    /// local file is gone; `None`: logs are only local.
    remote_logs: Option<Arc<updraft_logs::RemoteLogs>>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        config: ServerConfig,
        changes: broadcast::Sender<StateChange>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        AppState {
            store,
            authn: Arc::new(crate::authn::Authn::new(&config.auth)),
            config: Arc::new(config),
            changes,
            wake,
            health_check_threshold: Duration::from_secs(30),
            stopping: Arc::new(watch::channel(false).0),
            guard: Arc::new(Guard::default()),
            remote_logs: None,
        }
    }

    /// Logs are also read from the object store `remote` names.
    pub fn with_remote_logs(mut self, remote: Arc<updraft_logs::RemoteLogs>) -> Self {
        self.remote_logs = Some(remote);
        self
    }

    pub fn remote_logs(&self) -> Option<&Arc<updraft_logs::RemoteLogs>> {
        self.remote_logs.as_ref()
    }

    /// How old a scheduler's latest heartbeat may be for `/monitor/health` to call it healthy
    /// (the schedulers' `health_check_threshold`; 30 s by default).
    pub fn with_health_check_threshold(mut self, threshold: Duration) -> Self {
        self.health_check_threshold = threshold;
        self
    }

    /// The `Host` check and the event stream limits ([`Guard::default`] without this).
    pub fn with_guard(mut self, guard: Guard) -> Self {
        self.guard = Arc::new(guard);
        self
    }

    pub fn guard(&self) -> &Arc<Guard> {
        &self.guard
    }

    pub fn health_check_threshold(&self) -> Duration {
        self.health_check_threshold
    }

    /// Becomes true once the server is shutting down.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Tell long-lived responses that the server is shutting down.
    pub fn begin_stopping(&self) {
        self.stopping.send_replace(true);
    }

    /// Tell the scheduler that work was recorded (trigger, clear, state change, unpause).
    pub fn wake_scheduler(&self) {
        (self.wake)();
    }
}
