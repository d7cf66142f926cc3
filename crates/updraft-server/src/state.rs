//! What every handler shares.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{broadcast, watch};
use updraft_scheduler::StateChange;
use updraft_store::Store;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    pub dags_folder: PathBuf,
    pub logs_folder: PathBuf,
    /// False until an authentication method exists; then non-loopback binds are allowed.
    pub authentication_configured: bool,
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<ServerConfig>,
    /// State changes for live views (SSE).
    pub changes: broadcast::Sender<StateChange>,
    wake: Arc<dyn Fn() + Send + Sync>,
    scheduler_status: Arc<dyn Fn() -> SchedulerStatus + Send + Sync>,
    /// Set when the server begins shutting down ([`crate::serve`]), so long-lived responses
    /// (SSE streams) end instead of holding the shutdown up.
    stopping: Arc<watch::Sender<bool>>,
}

/// Whether a scheduler is running on the server's database, as far as the server can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerStatus {
    Running,
    NotRunning,
    Unknown,
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
            config: Arc::new(config),
            changes,
            wake,
            scheduler_status: Arc::new(|| SchedulerStatus::Unknown),
            stopping: Arc::new(watch::channel(false).0),
        }
    }

    /// How to tell whether a scheduler is running (for `/monitor/health`); unknown by default.
    pub fn with_scheduler_status(
        mut self,
        status: Arc<dyn Fn() -> SchedulerStatus + Send + Sync>,
    ) -> Self {
        self.scheduler_status = status;
        self
    }

    pub fn scheduler_status(&self) -> SchedulerStatus {
        (self.scheduler_status)()
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
