//! What every handler shares.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::broadcast;
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
        }
    }

    /// Tell the scheduler that work was recorded (trigger, clear, state change, unpause).
    pub fn wake_scheduler(&self) {
        (self.wake)();
    }
}
