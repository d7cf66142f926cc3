//! The HTTP server: Airflow's REST API v2 shape under `/api/v2` and the server-rendered web UI,
//! from one axum router. Every handler asks [`auth::authorize`] before touching anything.
//! The server reads and records through the store; work it records (a trigger, a clear) wakes
//! the scheduler through [`AppState::wake_scheduler`].

pub mod api;
pub mod auth;
pub mod authn_external;
pub mod error;
pub mod live;
pub mod state;
pub mod ui;

use std::net::SocketAddr;

use axum::Router;
use axum::serve::ListenerExt as _;

pub use error::{ApiError, ServerError};
pub use state::{AppState, ServerConfig};

/// The whole application: API and UI.
pub fn router(state: AppState) -> Router {
    Router::new()
        .nest("/api/v2", api::router())
        .merge(ui::router())
        .with_state(state)
}

/// Bind the configured address. Refuses a non-loopback address unless authentication is
/// configured. Port 0 picks a free port (see the listener's `local_addr`).
pub async fn listen(config: &ServerConfig) -> Result<tokio::net::TcpListener, ServerError> {
    let addr = config.bind;
    check_bind(addr, config.authentication_configured)?;
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Serve on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    if let Ok(addr) = listener.local_addr() {
        eprintln!("updraft web UI and API on http://{addr}");
    }
    let stopping = state.clone();
    // Small writes (event-stream messages, short responses) go out at once instead of waiting
    // up to 40 ms for the client's delayed acknowledgement.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Open event streams end now; otherwise they would hold the shutdown up forever.
            stopping.begin_stopping();
        })
        .await
        .map_err(ServerError::Serve)
}

/// A server reachable from other machines must know who is calling.
pub fn check_bind(addr: SocketAddr, authentication_configured: bool) -> Result<(), ServerError> {
    if addr.ip().is_loopback() || authentication_configured {
        Ok(())
    } else {
        Err(ServerError::UnauthenticatedPublicBind { addr })
    }
}
