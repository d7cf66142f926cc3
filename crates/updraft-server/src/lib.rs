//! The HTTP server: Airflow's REST API v2 shape under `/api/v2` and the server-rendered web UI,
//! from one axum router. Every handler asks [`auth::authorize`] before touching anything.
//! The server reads and records through the store; work it records (a trigger, a clear) wakes
//! the scheduler through [`AppState::wake_scheduler`].

pub mod api;
pub mod audit;
pub mod auth;
pub mod authn;
pub mod error;
pub mod guard;
pub mod live;
pub mod masking;
pub mod metrics;
pub mod state;
pub mod ui;

use std::net::SocketAddr;

use axum::Router;
use axum::serve::ListenerExt as _;

pub use error::{ApiError, ServerError};
pub use state::{AppState, ServerConfig, WebhookSecrets};

/// The whole application: API and UI.
pub fn router(state: AppState) -> Router {
    Router::new()
        .nest("/api/v2", api::router())
        .route("/metrics", axum::routing::get(api::monitor::get_metrics))
        // Pages show a banner while a DAG source the caller may see is failing.
        .merge(
            ui::router().route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                ui::sources::banner,
            )),
        )
        .merge(authn::router())
        // Inner: who is calling. Outer: the Host check and the security headers, so every
        // answer, a refused sign-in too, carries them.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authn::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::protect,
        ))
        .with_state(state)
}

/// Bind the configured address. Refuses a non-loopback address when authentication is
/// turned off. Port 0 picks a free port (see the listener's `local_addr`).
pub async fn listen(config: &ServerConfig) -> Result<tokio::net::TcpListener, ServerError> {
    let addr = config.bind;
    check_bind(addr, config.auth.enabled)?;
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
    guard::raise_descriptor_limit();
    if let Ok(addr) = listener.local_addr() {
        eprintln!("updraft web UI and API on http://{addr}");
    }
    let stopping = state.clone();
    // Small writes (event-stream messages, short responses) go out at once instead of waiting
    // up to 40 ms for the client's delayed acknowledgement.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    // The client's address is known to handlers (login rate limiting per address).
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Open event streams end now; otherwise they would hold the shutdown up forever.
            stopping.begin_stopping();
        })
        .await
        .map_err(ServerError::Serve)
}

/// A server reachable from other machines must know who is calling: authentication may be
/// turned off on a loopback address only.
pub fn check_bind(addr: SocketAddr, authentication_enabled: bool) -> Result<(), ServerError> {
    if addr.ip().is_loopback() || authentication_enabled {
        Ok(())
    } else {
        Err(ServerError::UnauthenticatedPublicBind { addr })
    }
}
