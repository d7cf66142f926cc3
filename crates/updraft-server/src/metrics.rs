//! `/metrics`: the process's Prometheus metrics (see `updraft-metrics`), with the pools' slots
//! read from the store at each scrape, so every process on the database reports the same
//! pools; and the router of a scheduler's own metrics port.

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use updraft_metrics::PoolSlots;
use updraft_store::Store;

/// Every metric of this process, the pools as the store has them now. A store that does not
/// answer leaves the pools as last read.
pub async fn text(store: &dyn Store) -> String {
    let metrics = updraft_metrics::global();
    match pool_slots(store).await {
        Ok(pools) => metrics.set_pools(&pools),
        Err(e) => tracing::warn!("metrics: the pools could not be read: {e}"),
    }
    metrics.encode()
}

/// The pools' slots counted as the API's pool answers count them.
async fn pool_slots(store: &dyn Store) -> Result<Vec<PoolSlots>, updraft_store::StoreError> {
    let usage = store.pool_usage().await?;
    Ok(store
        .pools()
        .await?
        .iter()
        .map(|pool| {
            let counted = crate::api::models::pool_response(pool, &usage);
            PoolSlots {
                name: counted.name,
                open: counted.open_slots,
                running: counted.running_slots,
                queued: counted.queued_slots,
            }
        })
        .collect())
}

/// The metrics as an HTTP answer.
pub async fn response(store: &dyn Store) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, updraft_metrics::CONTENT_TYPE)],
        text(store).await,
    )
        .into_response()
}

/// A scheduler's metrics port (`[scheduler] metrics_port`): `GET /metrics` and nothing else,
/// without authentication, for a Prometheus inside the cluster; it binds to loopback unless
/// told otherwise.
fn port_router(store: Arc<dyn Store>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let store = store.clone();
            async move { response(store.as_ref()).await }
        }),
    )
}

/// Serve a scheduler's metrics port on `listener` until `shutdown` completes.
pub async fn serve_port(
    listener: tokio::net::TcpListener,
    store: Arc<dyn Store>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, port_router(store))
        .with_graceful_shutdown(shutdown)
        .await
}
