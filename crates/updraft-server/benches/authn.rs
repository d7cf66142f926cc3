//! What authentication costs: verifying an API token (target ≤ 50 µs), and the API's list of
//! 100 DAGs answered with authentication off and with a Bearer token (target: within 10%).
//! Requests go through the router in process, so the difference is the middleware's work
//! (token check, user and grants read from the store).
//!
//! Run: `cargo bench -p updraft-server --bench authn`.

use std::hint::black_box;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::ServiceExt;
use updraft_auth::{Grant, Role};
use updraft_server::authn::AuthSettings;
use updraft_server::authn::token::{self, TokenVerifier};
use updraft_server::{AppState, ServerConfig};
use updraft_store::{AdminStore, NewUser, SqliteStore, Store, UserStore};

const DAGS: usize = 100;

fn token_verification(c: &mut Criterion) {
    let settings = AuthSettings::ephemeral();
    let verifier = TokenVerifier::new(&settings);
    let token = token::issue(&settings, "alice", Utc::now()).expect("token");
    c.bench_function("verify_token_hs256", |b| {
        b.iter(|| {
            verifier
                .verify(&settings, black_box(&token))
                .expect("valid")
        })
    });
}

fn list_dags(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let home = tempfile::tempdir().expect("temp home");
    let (open, _) = runtime.block_on(app(home.path(), AuthSettings::disabled()));
    let (closed, token) = runtime.block_on(app(home.path(), AuthSettings::ephemeral()));
    let mut group = c.benchmark_group("api_list_100_dags");
    group.bench_function("authentication_off", |b| {
        b.to_async(&runtime).iter(|| call(&open, None))
    });
    group.bench_function("bearer_token", |b| {
        b.to_async(&runtime).iter(|| call(&closed, Some(&token)))
    });
    group.finish();
}

/// The app over one SQLite database of 100 DAGs and one Viewer, and a token for that Viewer.
async fn app(home: &std::path::Path, auth: AuthSettings) -> (axum::Router, String) {
    let dags = home.join("dags");
    let store = Arc::new(
        SqliteStore::open(&home.join("updraft.db"))
            .await
            .expect("open store"),
    );
    if !dags.exists() {
        std::fs::create_dir_all(&dags).expect("dags folder");
        for d in 0..DAGS {
            let text = format!("dag_id: bench_{d:03}\ntasks:\n  - task_id: only\n    noop: true\n");
            std::fs::write(dags.join(format!("bench_{d:03}.yaml")), text).expect("dag file");
        }
        store.migrate().await.expect("migrate");
        let mut bag = updraft_dag::DagBag::new(&dags);
        bag.refresh();
        updraft_runs::record_dag_bag(store.as_ref(), &bag, false, Utc::now())
            .await
            .expect("sync");
        let viewer = NewUser {
            username: "alice".to_string(),
            source: "local".to_string(),
            ..Default::default()
        };
        store
            .create_user(&viewer, &[Grant::everywhere(Role::Viewer)])
            .await
            .expect("user");
    }
    let token = token::issue(&auth, "alice", Utc::now()).expect("token");
    let state = AppState::new(
        store as Arc<dyn Store>,
        ServerConfig {
            keyring: None,
            source_sync: None,
            source_webhooks: Default::default(),
            bind: "127.0.0.1:0".parse().expect("address"),
            dags_folder: dags,
            logs_folder: home.join("logs"),
            auth,
        },
        tokio::sync::broadcast::channel(16).0,
        Arc::new(|| {}),
    );
    (updraft_server::router(state), token)
}

async fn call(app: &axum::Router, token: Option<&str>) {
    let mut request = Request::get("/api/v2/dags?limit=100");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    black_box(body);
}

criterion_group!(benches, token_verification, list_dags);
criterion_main!(benches);
