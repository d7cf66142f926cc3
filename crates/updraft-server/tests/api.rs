//! The REST API through the real router over a temporary SQLite store with DAGs synced from a
//! temporary DAGs folder. Requests go through `tower::ServiceExt::oneshot`; nothing listens.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::Utc;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use updraft_core::TaskState;
use updraft_server::auth::{Grant, Identity, Role};
use updraft_server::{AppState, ServerConfig};
use updraft_store::{
    AdminStore, OperatorStore, QueueLimits, ReadStore, SchedulerStore, SqliteStore, TiKey,
    TiTransition,
};

const ETL: &str = r#"
description: Nightly ETL
schedule: "@daily"
start_date: 2024-01-01
catchup: false
tags: [etl, nightly]
params:
  limit: {default: 10, type: integer, minimum: 1}
tasks:
  - task_id: extract
    bash: echo extract
  - task_id: transform
    upstream: [extract]
    bash: echo transform
  - task_id: load
    upstream: [transform]
    bash: echo load
"#;

const MANUAL: &str = r#"
tags: [adhoc]
tasks:
  - task_id: only
    bash: echo only
"#;

const TEAM: &str = r#"
tags: [etl]
tasks:
  - task_id: a
    bash: echo a
"#;

struct App {
    _dir: tempfile::TempDir,
    logs: std::path::PathBuf,
    store: Arc<SqliteStore>,
    state: AppState,
    wakes: Arc<AtomicUsize>,
    /// When set, every request is made as this identity.
    identity: Option<Identity>,
}

struct Reply {
    status: StatusCode,
    content_type: String,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text))
    }

    /// Asserts the status, and that an error is problem details.
    fn expect(self, status: StatusCode) -> Reply {
        assert_eq!(self.status, status, "{}", self.text);
        if status.is_client_error() || status.is_server_error() {
            assert_eq!(
                self.content_type, "application/problem+json",
                "{}",
                self.text
            );
            let body = self.json();
            assert_eq!(body["status"], status.as_u16(), "{body}");
            assert!(body["detail"].is_string(), "{body}");
            assert!(body["title"].is_string(), "{body}");
        }
        self
    }
}

impl App {
    async fn new() -> App {
        let dir = tempfile::tempdir().unwrap();
        let dags = dir.path().join("dags");
        std::fs::create_dir_all(dags.join("team_a")).unwrap();
        std::fs::write(dags.join("etl.yaml"), ETL).unwrap();
        std::fs::write(dags.join("manual.yaml"), MANUAL).unwrap();
        std::fs::write(dags.join("team_a/team_job.yaml"), TEAM).unwrap();
        std::fs::write(dags.join("broken.yaml"), "tasks: [\n").unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("updraft.db"))
                .await
                .unwrap(),
        );
        store.migrate().await.unwrap();
        let mut bag = updraft_dag::DagBag::with_options(&dags, Default::default());
        bag.refresh();
        updraft_runs::record_dag_bag(store.as_ref(), &bag, true, Utc::now())
            .await
            .unwrap();
        let logs = dir.path().join("logs");
        let wakes = Arc::new(AtomicUsize::new(0));
        let counter = wakes.clone();
        let state = AppState::new(
            store.clone(),
            ServerConfig {
                keyring: None,
                source_sync: None,
                source_webhooks: Default::default(),
                bind: "127.0.0.1:0".parse().unwrap(),
                dags_folder: dags,
                logs_folder: logs.clone(),
                auth: updraft_server::authn::AuthSettings::disabled(),
            },
            tokio::sync::broadcast::channel(16).0,
            Arc::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        );
        App {
            _dir: dir,
            logs,
            store,
            state,
            wakes,
            identity: None,
        }
    }

    fn wakes(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }

    async fn send(&self, mut request: Request<Body>) -> Reply {
        if let Some(identity) = &self.identity {
            request.extensions_mut().insert(identity.clone());
        }
        let response = updraft_server::router(self.state.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            content_type,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(b) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        self.send(builder.body(body).unwrap()).await
    }

    async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, None).await
    }

    async fn get_ok(&self, uri: &str) -> Value {
        self.get(uri).await.expect(StatusCode::OK).json()
    }

    async fn post(&self, uri: &str, body: Value) -> Reply {
        self.call(Method::POST, uri, Some(body)).await
    }

    async fn patch(&self, uri: &str, body: Value) -> Reply {
        self.call(Method::PATCH, uri, Some(body)).await
    }

    async fn raw(&self, method: Method, uri: &str, content_type: &str, body: &str) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(request).await
    }

    async fn trigger(&self, dag_id: &str, body: Value) -> Value {
        self.post(&format!("/api/v2/dags/{dag_id}/dagRuns"), body)
            .await
            .expect(StatusCode::OK)
            .json()
    }

    async fn run_pk(&self, dag_id: &str, run_id: &str) -> i64 {
        self.store.run(dag_id, run_id).await.unwrap().unwrap().id
    }

    /// Move a task instance to `running` with a new try, as the scheduler would.
    async fn start(&self, run_pk: i64, task_id: &str) {
        let key = TiKey {
            run_pk,
            task_id: task_id.to_string(),
            map_index: -1,
        };
        let current = self.store.task_instance(&key).await.unwrap().unwrap().state;
        self.store
            .apply_transitions(
                run_pk,
                &[TiTransition {
                    task_id: task_id.to_string(),
                    map_index: -1,
                    expected: current,
                    new: TaskState::Scheduled,
                }],
                Utc::now(),
            )
            .await
            .unwrap();
        // No scheduler job runs in these tests (so scheduler health is as each test sets it):
        // the try is queued by a job that does not exist.
        let queued = self
            .store
            .queue(
                std::slice::from_ref(&key),
                0,
                &QueueLimits::default(),
                Utc::now(),
            )
            .await
            .unwrap();
        self.store
            .mark_running(&key, queued[0].try_number, Some(4242), "host-1", Utc::now())
            .await
            .unwrap();
    }

    async fn finish(&self, run_pk: i64, task_id: &str, state: TaskState) {
        let key = TiKey {
            run_pk,
            task_id: task_id.to_string(),
            map_index: -1,
        };
        let try_number = self
            .store
            .task_instance(&key)
            .await
            .unwrap()
            .unwrap()
            .try_number;
        assert!(
            self.store
                .finish_try(&key, try_number, state, None, Utc::now())
                .await
                .unwrap()
        );
    }
}

fn ids(list: &Value, key: &str, field: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {list}"))
        .iter()
        .map(|item| item[field].as_str().unwrap().to_string())
        .collect()
}

// ---- DAGs ---------------------------------------------------------------------------------

#[tokio::test]
async fn dags_list_pages_filters_and_orders() {
    let app = App::new().await;
    let all = app.get_ok("/api/v2/dags").await;
    assert_eq!(all["total_entries"], 3);
    assert_eq!(ids(&all, "dags", "dag_id"), ["etl", "manual", "team_job"]);
    let etl = &all["dags"][0];
    for (field, value) in [
        ("dag_display_name", json!("etl")),
        ("is_paused", json!(true)),
        ("is_stale", json!(false)),
        ("bundle_name", json!("dags-folder")),
        ("relative_fileloc", json!("etl.yaml")),
        ("description", json!("Nightly ETL")),
        ("timetable_summary", json!("@daily")),
        ("timetable_description", json!("At 00:00")),
        ("timetable_periodic", json!(true)),
        ("max_consecutive_failed_dag_runs", json!(0)),
        ("has_task_concurrency_limits", json!(false)),
        ("has_import_errors", json!(false)),
        ("owners", json!([])),
        ("tenant", json!("default")),
    ] {
        assert_eq!(etl[field], value, "{field} in {etl}");
    }
    assert_eq!(etl["tags"][0]["name"], "etl");
    assert!(etl["fileloc"].as_str().unwrap().ends_with("/dags/etl.yaml"));
    assert!(etl["next_dagrun_logical_date"].is_string());
    assert!(etl["version"].is_string());
    assert_eq!(all["dags"][2]["tenant"], "team_a");
    assert!(all["dags"][1]["timetable_summary"].is_null());
    assert_eq!(
        all["dags"][1]["timetable_description"],
        "Never, external triggers only"
    );

    let page = app
        .get_ok("/api/v2/dags?limit=1&offset=1&order_by=-dag_id")
        .await;
    assert_eq!(ids(&page, "dags", "dag_id"), ["manual"]);
    assert_eq!(page["total_entries"], 3);

    let tagged = app.get_ok("/api/v2/dags?tags=etl").await;
    assert_eq!(ids(&tagged, "dags", "dag_id"), ["etl", "team_job"]);
    let both = app
        .get_ok("/api/v2/dags?tags=etl&tags=nightly&tags_match_mode=all")
        .await;
    assert_eq!(ids(&both, "dags", "dag_id"), ["etl"]);
    let pattern = app.get_ok("/api/v2/dags?dag_id_pattern=TEAM").await;
    assert_eq!(ids(&pattern, "dags", "dag_id"), ["team_job"]);
    let unpaused = app.get_ok("/api/v2/dags?paused=false").await;
    assert_eq!(unpaused["total_entries"], 0);
    let owned = app.get_ok("/api/v2/dags?owners=airflow").await;
    assert_eq!(owned["total_entries"], 0);

    // A huge limit is capped, as Airflow's maximum_page_limit does.
    let big = app
        .get_ok("/api/v2/dags?limit=99999999999999999999999")
        .await;
    assert_eq!(big["dags"].as_array().unwrap().len(), 3);

    app.get("/api/v2/dags?limit=abc")
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.get("/api/v2/dags?limit=-1")
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.get("/api/v2/dags?paused=maybe")
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.get("/api/v2/dags?tags_match_mode=some")
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    let bad_order = app
        .get("/api/v2/dags?order_by=nope")
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert!(
        bad_order.json()["detail"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
}

#[tokio::test]
async fn a_dag_is_read_paused_and_detailed() {
    let app = App::new().await;
    let dag = app.get_ok("/api/v2/dags/etl").await;
    assert_eq!(dag["dag_id"], "etl");
    let missing = app
        .get("/api/v2/dags/nope")
        .await
        .expect(StatusCode::NOT_FOUND);
    assert!(missing.json()["detail"].as_str().unwrap().contains("nope"));

    let before = app.wakes();
    let patched = app
        .patch("/api/v2/dags/etl", json!({"is_paused": false}))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(patched["is_paused"], false);
    assert!(app.wakes() > before, "unpausing wakes the scheduler");
    assert!(!app.store.dag("etl").await.unwrap().unwrap().is_paused);
    let unpaused = app.get_ok("/api/v2/dags?paused=false").await;
    assert_eq!(ids(&unpaused, "dags", "dag_id"), ["etl"]);

    app.patch(
        "/api/v2/dags/etl?update_mask=is_paused",
        json!({"is_paused": true}),
    )
    .await
    .expect(StatusCode::OK);
    app.patch(
        "/api/v2/dags/etl?update_mask=description",
        json!({"is_paused": true}),
    )
    .await
    .expect(StatusCode::BAD_REQUEST);
    app.patch("/api/v2/dags/etl", json!({"is_paused": "yes"}))
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.patch("/api/v2/dags/etl", json!({}))
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.raw(
        Method::PATCH,
        "/api/v2/dags/etl",
        "application/json",
        "{nope",
    )
    .await
    .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.raw(Method::PATCH, "/api/v2/dags/etl", "text/plain", "{}")
        .await
        .expect(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    app.patch("/api/v2/dags/nope", json!({"is_paused": true}))
        .await
        .expect(StatusCode::NOT_FOUND);

    let bulk = app
        .patch("/api/v2/dags?dag_id_pattern=e", json!({"is_paused": false}))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(ids(&bulk, "dags", "dag_id"), ["etl", "team_job"]);
    assert!(bulk["dags"][0]["is_paused"] == false);
    assert!(!app.store.dag("team_job").await.unwrap().unwrap().is_paused);
    assert!(app.store.dag("manual").await.unwrap().unwrap().is_paused);

    let details = app.get_ok("/api/v2/dags/etl/details").await;
    assert_eq!(details["dag_id"], "etl");
    assert_eq!(details["catchup"], false);
    assert_eq!(details["timezone"], "UTC");
    assert_eq!(details["concurrency"], details["max_active_tasks"]);
    assert_eq!(details["params"]["limit"]["value"], 10);
    assert_eq!(details["params"]["limit"]["schema"]["type"], "integer");
    assert_eq!(details["latest_dag_version"]["version_number"], 1);
    assert_eq!(details["active_runs_count"], 0);

    let versions = app.get_ok("/api/v2/dags/etl/dagVersions").await;
    assert_eq!(versions["total_entries"], 1);
    assert_eq!(versions["dag_versions"][0]["bundle_name"], "dags-folder");
    let one = app.get_ok("/api/v2/dags/etl/dagVersions/1").await;
    assert_eq!(one["version"], details["version"]);
    app.get("/api/v2/dags/etl/dagVersions/2")
        .await
        .expect(StatusCode::NOT_FOUND);
    app.get("/api/v2/dags/etl/dagVersions/two")
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
}

// ---- runs ---------------------------------------------------------------------------------

#[tokio::test]
async fn trigger_refuses_a_conf_over_the_size_limit_naming_it() {
    let app = App::new().await;
    let conf = json!({"limit": 5, "blob": "x".repeat(1536 * 1024)});
    let refused = app
        .post("/api/v2/dags/etl/dagRuns", json!({ "conf": conf }))
        .await
        .expect(StatusCode::BAD_REQUEST);
    let detail = refused.json()["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains("over the limit of 1048576 bytes (1 MiB)"),
        "{detail}"
    );
    // A body past the HTTP server's own limit is refused before it is read as JSON.
    let huge = json!({"conf": {"blob": "x".repeat(3 * 1024 * 1024)}});
    let status = app.post("/api/v2/dags/etl/dagRuns", huge).await.status;
    assert!(status.is_client_error(), "{status}");
    let under = json!({"conf": {"limit": 5, "blob": "x".repeat(500 * 1024)}});
    app.post("/api/v2/dags/etl/dagRuns", under)
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn trigger_validates_conf_and_refuses_duplicates() {
    let app = App::new().await;
    let before = app.wakes();
    let run = app
        .trigger(
            "etl",
            json!({"dag_run_id": "first", "logical_date": "2024-03-01T00:00:00Z",
                   "conf": {"limit": 5}, "note": "by the test"}),
        )
        .await;
    assert!(app.wakes() > before, "a trigger wakes the scheduler");
    for (field, value) in [
        ("dag_run_id", json!("first")),
        ("dag_id", json!("etl")),
        ("state", json!("queued")),
        ("run_type", json!("manual")),
        ("conf", json!({"limit": 5})),
        ("note", json!("by the test")),
        ("logical_date", json!("2024-03-01T00:00:00Z")),
        ("run_after", json!("2024-03-01T00:00:00Z")),
        ("tenant", json!("default")),
    ] {
        assert_eq!(run[field], value, "{field} in {run}");
    }
    assert_eq!(run["dag_versions"][0]["version_number"], 1);
    assert!(run["data_interval_start"].is_string());
    assert!(run["triggered_by"].is_null());

    let invalid = app
        .post("/api/v2/dags/etl/dagRuns", json!({"conf": {"limit": 0}}))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert!(
        invalid.json()["detail"].as_str().unwrap().contains("limit"),
        "{}",
        invalid.text
    );
    app.post("/api/v2/dags/etl/dagRuns", json!({"conf": [1, 2]}))
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.post("/api/v2/dags/etl/dagRuns", json!({"dag_run_id": "first"}))
        .await
        .expect(StatusCode::CONFLICT);
    app.post(
        "/api/v2/dags/etl/dagRuns",
        json!({"dag_run_id": "second", "logical_date": "2024-03-01T00:00:00+00:00"}),
    )
    .await
    .expect(StatusCode::CONFLICT);
    app.post(
        "/api/v2/dags/etl/dagRuns",
        json!({"dag_run_id": "has space"}),
    )
    .await
    .expect(StatusCode::BAD_REQUEST);
    app.post("/api/v2/dags/etl/dagRuns", json!({"logical_date": "soon"}))
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.post(
        "/api/v2/dags/etl/dagRuns",
        json!({"data_interval_start": "2024-01-01T00:00:00Z"}),
    )
    .await
    .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.post("/api/v2/dags/nope/dagRuns", json!({}))
        .await
        .expect(StatusCode::NOT_FOUND);

    // Extreme dates are accepted or refused, never a server error.
    for date in ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"] {
        let reply = app
            .post("/api/v2/dags/etl/dagRuns", json!({"logical_date": date}))
            .await;
        assert!(
            reply.status.is_success() || reply.status.is_client_error(),
            "{date}: {} {}",
            reply.status,
            reply.text
        );
    }

    // Defaults: a run id from the logical date, an empty conf.
    let plain = app.trigger("manual", json!({})).await;
    assert!(
        plain["dag_run_id"]
            .as_str()
            .unwrap()
            .starts_with("manual__")
    );
    assert_eq!(plain["conf"], json!({}));
}

#[tokio::test]
async fn runs_list_filter_order_and_page_across_dags() {
    let app = App::new().await;
    for (dag, run_id, date) in [
        ("etl", "r1", "2024-01-01"),
        ("etl", "r2", "2024-01-02"),
        ("etl", "r3", "2024-01-03"),
        ("manual", "m1", "2023-12-31"),
    ] {
        app.trigger(dag, json!({"dag_run_id": run_id, "logical_date": date}))
            .await;
    }
    let pk = app.run_pk("etl", "r2").await;
    app.store
        .force_run_state(pk, updraft_core::RunState::Running, Utc::now())
        .await
        .unwrap();

    let of_etl = app.get_ok("/api/v2/dags/etl/dagRuns").await;
    assert_eq!(ids(&of_etl, "dag_runs", "dag_run_id"), ["r1", "r2", "r3"]);
    assert_eq!(of_etl["total_entries"], 3);
    let all = app
        .get_ok("/api/v2/dags/~/dagRuns?order_by=-logical_date&limit=2")
        .await;
    assert_eq!(ids(&all, "dag_runs", "dag_run_id"), ["r3", "r2"]);
    assert_eq!(all["total_entries"], 4);
    let next = app
        .get_ok("/api/v2/dags/~/dagRuns?order_by=-logical_date&limit=2&offset=2")
        .await;
    assert_eq!(next["dag_runs"].as_array().unwrap().len(), 2);
    let running = app.get_ok("/api/v2/dags/~/dagRuns?state=running").await;
    assert_eq!(ids(&running, "dag_runs", "dag_run_id"), ["r2"]);
    let several = app
        .get_ok("/api/v2/dags/etl/dagRuns?state=running&state=queued")
        .await;
    assert_eq!(several["total_entries"], 3);
    let window = app
        .get_ok(
            "/api/v2/dags/etl/dagRuns?logical_date_gte=2024-01-02T00:00:00Z\
             &logical_date_lt=2024-01-03T00:00:00%2B00:00",
        )
        .await;
    assert_eq!(ids(&window, "dag_runs", "dag_run_id"), ["r2"]);
    let by_type = app
        .get_ok("/api/v2/dags/~/dagRuns?run_type=scheduled")
        .await;
    assert_eq!(by_type["total_entries"], 0);

    app.get("/api/v2/dags/etl/dagRuns?state=exploded")
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.get("/api/v2/dags/etl/dagRuns?logical_date_gte=yesterday")
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.get("/api/v2/dags/etl/dagRuns?order_by=conf")
        .await
        .expect(StatusCode::BAD_REQUEST);
    app.get("/api/v2/dags/nope/dagRuns")
        .await
        .expect(StatusCode::NOT_FOUND);

    let one = app.get_ok("/api/v2/dags/etl/dagRuns/r2").await;
    assert_eq!(one["state"], "running");
    app.get("/api/v2/dags/etl/dagRuns/zzz")
        .await
        .expect(StatusCode::NOT_FOUND);
    app.get("/api/v2/dags/nope/dagRuns/r1")
        .await
        .expect(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn marking_a_run_sets_its_task_instances_as_airflow_does() {
    let app = App::new().await;
    app.trigger("etl", json!({"dag_run_id": "r"})).await;
    let pk = app.run_pk("etl", "r").await;
    app.store
        .force_run_state(pk, updraft_core::RunState::Running, Utc::now())
        .await
        .unwrap();
    app.start(pk, "extract").await;

    let before = app.wakes();
    let failed = app
        .patch("/api/v2/dags/etl/dagRuns/r", json!({"state": "failed"}))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(failed["state"], "failed");
    assert!(failed["end_date"].is_string());
    assert!(app.wakes() > before);
    let tis = app.get_ok("/api/v2/dags/etl/dagRuns/r/taskInstances").await;
    let states: Vec<(String, Value)> = tis["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["task_id"].as_str().unwrap().to_string(),
                t["state"].clone(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("extract".to_string(), json!("failed")),
            ("load".to_string(), json!("skipped")),
            ("transform".to_string(), json!("skipped")),
        ]
    );

    let success = app
        .patch("/api/v2/dags/etl/dagRuns/r", json!({"state": "success"}))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(success["state"], "success");
    let tis = app
        .get_ok("/api/v2/dags/etl/dagRuns/r/taskInstances?state=success")
        .await;
    assert_eq!(tis["total_entries"], 3);

    let noted = app
        .patch(
            "/api/v2/dags/etl/dagRuns/r?update_mask=note",
            json!({"note": "checked", "state": "queued"}),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(noted["note"], "checked");
    assert_eq!(noted["state"], "success", "the mask leaves the state alone");
    let cleared_note = app
        .patch("/api/v2/dags/etl/dagRuns/r", json!({"note": null}))
        .await
        .expect(StatusCode::OK)
        .json();
    assert!(cleared_note["note"].is_null());

    app.patch("/api/v2/dags/etl/dagRuns/r", json!({"state": "running"}))
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.patch("/api/v2/dags/etl/dagRuns/r", json!({"colour": "red"}))
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.patch(
        "/api/v2/dags/etl/dagRuns/r?update_mask=conf",
        json!({"state": "queued"}),
    )
    .await
    .expect(StatusCode::BAD_REQUEST);
    app.patch(
        "/api/v2/dags/etl/dagRuns/r",
        json!({"note": "x".repeat(1001)}),
    )
    .await
    .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.patch("/api/v2/dags/etl/dagRuns/zzz", json!({"state": "failed"}))
        .await
        .expect(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn clearing_and_deleting_runs() {
    let app = App::new().await;
    app.trigger("etl", json!({"dag_run_id": "r"})).await;
    let pk = app.run_pk("etl", "r").await;
    app.store
        .force_run_state(pk, updraft_core::RunState::Running, Utc::now())
        .await
        .unwrap();
    app.start(pk, "extract").await;
    app.finish(pk, "extract", TaskState::Failed).await;

    // Dry run by default, as in Airflow.
    let dry = app
        .post(
            "/api/v2/dags/etl/dagRuns/r/clear",
            json!({"only_failed": true}),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(ids(&dry, "task_instances", "task_id"), ["extract"]);
    assert_eq!(
        app.get_ok("/api/v2/dags/etl/dagRuns/r/taskInstances/extract")
            .await["state"],
        "failed"
    );

    let before = app.wakes();
    let cleared = app
        .post(
            "/api/v2/dags/etl/dagRuns/r/clear",
            json!({"dry_run": false, "only_failed": true}),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(cleared["dag_run_id"], "r");
    assert_eq!(cleared["state"], "queued");
    assert!(app.wakes() > before);
    let extract = app
        .get_ok("/api/v2/dags/etl/dagRuns/r/taskInstances/extract")
        .await;
    assert!(extract["state"].is_null(), "{extract}");
    assert_eq!(extract["try_number"], 1);

    app.post("/api/v2/dags/etl/dagRuns/r/clear", json!({"dry_run": "no"}))
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);

    app.call(Method::DELETE, "/api/v2/dags/etl/dagRuns/r", None)
        .await
        .expect(StatusCode::NO_CONTENT);
    assert!(app.store.run("etl", "r").await.unwrap().is_none());
    app.call(Method::DELETE, "/api/v2/dags/etl/dagRuns/r", None)
        .await
        .expect(StatusCode::NOT_FOUND);
}

// ---- task instances -----------------------------------------------------------------------

#[tokio::test]
async fn task_instances_list_read_mark_and_tries() {
    let app = App::new().await;
    app.trigger(
        "etl",
        json!({"dag_run_id": "r", "logical_date": "2024-01-01"}),
    )
    .await;
    app.trigger(
        "etl",
        json!({"dag_run_id": "later", "logical_date": "2024-01-05"}),
    )
    .await;
    app.trigger("manual", json!({"dag_run_id": "m"})).await;
    let pk = app.run_pk("etl", "r").await;
    app.store
        .force_run_state(pk, updraft_core::RunState::Running, Utc::now())
        .await
        .unwrap();
    app.start(pk, "extract").await;
    app.finish(pk, "extract", TaskState::Failed).await;
    app.start(pk, "extract").await;

    let list = app.get_ok("/api/v2/dags/etl/dagRuns/r/taskInstances").await;
    assert_eq!(list["total_entries"], 3);
    let extract = &list["task_instances"][0];
    for (field, value) in [
        ("task_id", json!("extract")),
        ("dag_run_id", json!("r")),
        ("state", json!("running")),
        ("try_number", json!(2)),
        ("max_tries", json!(0)),
        ("map_index", json!(-1)),
        ("hostname", json!("host-1")),
        ("pid", json!(4242)),
        ("pool", json!("default_pool")),
        ("pool_slots", json!(1)),
        ("operator", json!("BashOperator")),
        ("executor_config", json!("{}")),
        ("queue", json!("default")),
        ("task_display_name", json!("extract")),
    ] {
        assert_eq!(extract[field], value, "{field} in {extract}");
    }
    assert_eq!(extract["id"].as_str().unwrap().len(), 36);
    assert_eq!(extract["dag_version"]["version_number"], 1);
    assert!(list["task_instances"][1]["state"].is_null());

    let everything = app.get_ok("/api/v2/dags/~/dagRuns/~/taskInstances").await;
    assert_eq!(everything["total_entries"], 7);
    let of_dag = app
        .get_ok(
            "/api/v2/dags/etl/dagRuns/~/taskInstances?state=no_status&order_by=-task_id&limit=2",
        )
        .await;
    assert_eq!(of_dag["total_entries"], 5);
    assert_eq!(
        ids(&of_dag, "task_instances", "task_id"),
        ["transform", "transform"]
    );
    let by_run_id = app.get_ok("/api/v2/dags/~/dagRuns/m/taskInstances").await;
    assert_eq!(ids(&by_run_id, "task_instances", "task_id"), ["only"]);
    let by_task = app
        .get_ok("/api/v2/dags/etl/dagRuns/~/taskInstances?task_id=load")
        .await;
    assert_eq!(by_task["total_entries"], 2);
    app.get("/api/v2/dags/etl/dagRuns/r/taskInstances?state=bogus")
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.get("/api/v2/dags/etl/dagRuns/zzz/taskInstances")
        .await
        .expect(StatusCode::NOT_FOUND);
    app.get("/api/v2/dags/etl/dagRuns/r/taskInstances/nope")
        .await
        .expect(StatusCode::NOT_FOUND);

    let tries = app
        .get_ok("/api/v2/dags/etl/dagRuns/r/taskInstances/extract/tries")
        .await;
    assert_eq!(tries["total_entries"], 2);
    assert_eq!(tries["task_instances"][0]["state"], "failed");
    assert_eq!(tries["task_instances"][1]["state"], "running");
    let second = app
        .get_ok("/api/v2/dags/etl/dagRuns/r/taskInstances/extract/tries/2")
        .await;
    assert_eq!(second["try_number"], 2);
    app.get("/api/v2/dags/etl/dagRuns/r/taskInstances/extract/tries/3")
        .await
        .expect(StatusCode::NOT_FOUND);

    // Mark with downstream and future: the dry run changes nothing.
    let body = json!({"new_state": "success", "include_downstream": true,
                      "include_future": true});
    let dry = app
        .patch(
            "/api/v2/dags/etl/dagRuns/r/taskInstances/transform/dry_run",
            body.clone(),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(dry["total_entries"], 4);
    assert!(
        app.get_ok("/api/v2/dags/etl/dagRuns/r/taskInstances/transform")
            .await["state"]
            .is_null()
    );
    let before = app.wakes();
    let marked = app
        .patch("/api/v2/dags/etl/dagRuns/r/taskInstances/transform", body)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(marked["total_entries"], 4);
    assert!(app.wakes() > before);
    assert!(
        marked["task_instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "success")
    );
    assert_eq!(
        app.get_ok("/api/v2/dags/etl/dagRuns/later/taskInstances/load")
            .await["state"],
        "success"
    );
    assert_eq!(
        app.get_ok("/api/v2/dags/etl/dagRuns/r/taskInstances/extract")
            .await["state"],
        "running",
        "upstream untouched"
    );

    let noted = app
        .patch(
            "/api/v2/dags/etl/dagRuns/r/taskInstances/extract?update_mask=note",
            json!({"note": "looking", "new_state": "failed"}),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(noted["task_instances"][0]["note"], "looking");
    assert_eq!(noted["task_instances"][0]["state"], "running");
    app.patch(
        "/api/v2/dags/etl/dagRuns/r/taskInstances/extract",
        json!({"new_state": "running"}),
    )
    .await
    .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.patch(
        "/api/v2/dags/etl/dagRuns/r/taskInstances/extract?map_index=3",
        json!({"new_state": "failed"}),
    )
    .await
    .expect(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn clear_task_instances_selects_like_airflow() {
    let app = App::new().await;
    app.trigger(
        "etl",
        json!({"dag_run_id": "a", "logical_date": "2024-01-01"}),
    )
    .await;
    app.trigger(
        "etl",
        json!({"dag_run_id": "b", "logical_date": "2024-01-02"}),
    )
    .await;
    for run in ["a", "b"] {
        let pk = app.run_pk("etl", run).await;
        app.store
            .force_run_state(pk, updraft_core::RunState::Running, Utc::now())
            .await
            .unwrap();
        app.start(pk, "extract").await;
        app.finish(pk, "extract", TaskState::Success).await;
        app.start(pk, "transform").await;
        app.finish(pk, "transform", TaskState::Failed).await;
    }

    // Defaults: dry run, only failed.
    let dry = app
        .post("/api/v2/dags/etl/clearTaskInstances", json!({}))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(dry["total_entries"], 2);
    assert_eq!(
        ids(&dry, "task_instances", "task_id"),
        ["transform", "transform"]
    );

    let one_run = app
        .post(
            "/api/v2/dags/etl/clearTaskInstances",
            json!({"dag_run_id": "a", "task_ids": ["extract"], "only_failed": false,
                   "include_downstream": true}),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        ids(&one_run, "task_instances", "task_id"),
        ["extract", "load", "transform"]
    );
    let windowed = app
        .post(
            "/api/v2/dags/etl/clearTaskInstances",
            json!({"start_date": "2024-01-02T00:00:00Z", "task_ids": [["transform", -1]]}),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(ids(&windowed, "task_instances", "dag_run_id"), ["b"]);

    let before = app.wakes();
    let cleared = app
        .post(
            "/api/v2/dags/etl/clearTaskInstances",
            json!({"dry_run": false, "dag_run_id": "a", "include_future": true}),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(cleared["total_entries"], 2);
    assert!(app.wakes() > before);
    for run in ["a", "b"] {
        let ti = app
            .get_ok(&format!(
                "/api/v2/dags/etl/dagRuns/{run}/taskInstances/transform"
            ))
            .await;
        assert!(ti["state"].is_null(), "{ti}");
        assert_eq!(
            app.get_ok(&format!("/api/v2/dags/etl/dagRuns/{run}")).await["state"],
            "queued"
        );
    }

    app.post(
        "/api/v2/dags/etl/clearTaskInstances",
        json!({"task_ids": [42]}),
    )
    .await
    .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.post(
        "/api/v2/dags/etl/clearTaskInstances",
        json!({"dag_run_id": "zzz"}),
    )
    .await
    .expect(StatusCode::NOT_FOUND);
    app.post(
        "/api/v2/dags/etl/clearTaskInstances",
        json!({"start_date": "2024-02-01", "end_date": "2024-01-01"}),
    )
    .await
    .expect(StatusCode::BAD_REQUEST);
    app.post("/api/v2/dags/nope/clearTaskInstances", json!({}))
        .await
        .expect(StatusCode::NOT_FOUND);
}

// ---- logs ---------------------------------------------------------------------------------

#[tokio::test]
async fn logs_tail_with_a_continuation_token() {
    let app = App::new().await;
    app.trigger("etl", json!({"dag_run_id": "r"})).await;
    let pk = app.run_pk("etl", "r").await;
    app.store
        .force_run_state(pk, updraft_core::RunState::Running, Utc::now())
        .await
        .unwrap();
    app.start(pk, "extract").await;
    let path = updraft_dag::log_path(&app.logs, "default", "etl", "r", "extract", 1);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "line one\nline two\npartial").unwrap();
    let url = "/api/v2/dags/etl/dagRuns/r/taskInstances/extract/logs/1";

    let first = app.get_ok(url).await;
    let events: Vec<&str> = first["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["line one", "line two"],
        "a live log holds back its partial line"
    );
    assert_eq!(first["end_of_log"], false);
    let token = first["continuation_token"].as_str().unwrap().to_string();

    let nothing_new = app.get_ok(&format!("{url}?token={token}")).await;
    assert!(nothing_new["content"].as_array().unwrap().is_empty());
    assert_eq!(nothing_new["continuation_token"], token.as_str());

    std::fs::write(&path, "line one\nline two\npartial line\nline four\n").unwrap();
    let more = app.get_ok(&format!("{url}?token={token}")).await;
    let events: Vec<&str> = more["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["partial line", "line four"]);
    let token = more["continuation_token"].as_str().unwrap().to_string();

    let text = app
        .send(
            Request::builder()
                .uri(format!("{url}?token={token}"))
                .header(header::ACCEPT, "text/plain")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(text.text, "");
    assert!(text.content_type.starts_with("text/plain"));
    let full = app
        .send(
            Request::builder()
                .uri(format!("{url}?full_content=true&token={token}"))
                .header(header::ACCEPT, "text/plain")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(full.text, "line one\nline two\npartial line\nline four\n");
    assert_eq!(full.headers["x-continuation-token"], token.as_str());

    std::fs::write(
        &path,
        "line one\nline two\npartial line\nline four\nno newline",
    )
    .unwrap();
    app.finish(pk, "extract", TaskState::Success).await;
    let last = app.get_ok(&format!("{url}?token={token}")).await;
    assert_eq!(last["content"][0]["event"], "no newline");
    assert_eq!(last["end_of_log"], true);

    app.get(&format!("{url}?token=abc"))
        .await
        .expect(StatusCode::BAD_REQUEST);
    app.get("/api/v2/dags/etl/dagRuns/r/taskInstances/extract/logs/2")
        .await
        .expect(StatusCode::NOT_FOUND);
    app.get("/api/v2/dags/etl/dagRuns/r/taskInstances/extract/logs/0")
        .await
        .expect(StatusCode::NOT_FOUND);
    app.get("/api/v2/dags/etl/dagRuns/r/taskInstances/extract/logs/one")
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.get("/api/v2/dags/etl/dagRuns/r/taskInstances/load/logs/1")
        .await
        .expect(StatusCode::NOT_FOUND);
    app.send(
        Request::builder()
            .uri(url)
            .header(header::ACCEPT, "image/png")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .expect(StatusCode::NOT_ACCEPTABLE);
}

// ---- import errors, sources, pools, monitor -----------------------------------------------

#[tokio::test]
async fn import_errors_and_sources() {
    let app = App::new().await;
    let errors = app.get_ok("/api/v2/importErrors").await;
    assert_eq!(errors["total_entries"], 1);
    let error = &errors["import_errors"][0];
    assert_eq!(error["filename"], "broken.yaml");
    assert_eq!(error["bundle_name"], "dags-folder");
    assert!(
        error["stack_trace"]
            .as_str()
            .unwrap()
            .starts_with("broken.yaml")
    );
    assert!(error["timestamp"].is_string());
    let id = error["import_error_id"].as_i64().unwrap();
    let one = app.get_ok(&format!("/api/v2/importErrors/{id}")).await;
    assert_eq!(&one, error);
    app.get("/api/v2/importErrors/999999")
        .await
        .expect(StatusCode::NOT_FOUND);
    app.get("/api/v2/importErrors/abc")
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    let none = app
        .get_ok("/api/v2/importErrors?filename_pattern=other")
        .await;
    assert_eq!(none["total_entries"], 0);

    let source = app.get_ok("/api/v2/dagSources/etl").await;
    assert_eq!(source["content"], ETL);
    assert_eq!(source["version_number"], 1);
    assert_eq!(
        app.get_ok("/api/v2/dagSources/etl?version_number=1").await,
        source
    );
    for number in ["7", "0", "-9223372036854775808"] {
        app.get(&format!("/api/v2/dagSources/etl?version_number={number}"))
            .await
            .expect(StatusCode::NOT_FOUND);
    }
    app.get("/api/v2/dags/etl/dagVersions/-9223372036854775808")
        .await
        .expect(StatusCode::NOT_FOUND);
    app.get("/api/v2/dagSources/nope")
        .await
        .expect(StatusCode::NOT_FOUND);
    let text = app
        .send(
            Request::builder()
                .uri("/api/v2/dagSources/etl")
                .header(header::ACCEPT, "text/plain")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(text.text, ETL);
}

#[tokio::test]
async fn pools_crud() {
    let app = App::new().await;
    let pools = app.get_ok("/api/v2/pools").await;
    assert_eq!(ids(&pools, "pools", "name"), ["default_pool"]);
    let default = &pools["pools"][0];
    assert_eq!(default["slots"], 128);
    assert_eq!(default["open_slots"], 128);
    assert_eq!(default["include_deferred"], false);

    let before = app.wakes();
    let created = app
        .post(
            "/api/v2/pools",
            json!({"name": "gpu", "slots": 2, "description": "GPUs"}),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(created["name"], "gpu");
    assert!(app.wakes() > before);
    app.post("/api/v2/pools", json!({"name": "gpu", "slots": 3}))
        .await
        .expect(StatusCode::CONFLICT);
    app.post("/api/v2/pools", json!({"name": "neg", "slots": -1}))
        .await
        .expect(StatusCode::BAD_REQUEST);
    app.post("/api/v2/pools", json!({"name": "", "slots": 1}))
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.post("/api/v2/pools", json!({"name": "x"}))
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);

    // Occupied slots count running and queued instances.
    app.trigger("etl", json!({"dag_run_id": "r"})).await;
    let pk = app.run_pk("etl", "r").await;
    app.start(pk, "extract").await;
    let default = app.get_ok("/api/v2/pools/default_pool").await;
    assert_eq!(default["running_slots"], 1);
    assert_eq!(default["occupied_slots"], 1);
    assert_eq!(default["open_slots"], 127);

    let patched = app
        .patch("/api/v2/pools/gpu", json!({"slots": 5}))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(patched["slots"], 5);
    assert_eq!(patched["description"], "GPUs");
    let masked = app
        .patch(
            "/api/v2/pools/gpu?update_mask=description",
            json!({"slots": 9, "description": "cards"}),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        (masked["slots"].clone(), masked["description"].clone()),
        (json!(5), json!("cards"))
    );
    app.patch("/api/v2/pools/gpu", json!({"pool": "renamed"}))
        .await
        .expect(StatusCode::BAD_REQUEST);
    app.patch("/api/v2/pools/default_pool", json!({"description": "mine"}))
        .await
        .expect(StatusCode::BAD_REQUEST);
    app.patch("/api/v2/pools/nope", json!({"slots": 1}))
        .await
        .expect(StatusCode::NOT_FOUND);

    let page = app.get_ok("/api/v2/pools?order_by=-slots&limit=1").await;
    assert_eq!(ids(&page, "pools", "name"), ["default_pool"]);
    assert_eq!(page["total_entries"], 2);

    app.call(Method::DELETE, "/api/v2/pools/default_pool", None)
        .await
        .expect(StatusCode::BAD_REQUEST);
    app.call(Method::DELETE, "/api/v2/pools/gpu", None)
        .await
        .expect(StatusCode::NO_CONTENT);
    app.call(Method::DELETE, "/api/v2/pools/gpu", None)
        .await
        .expect(StatusCode::NOT_FOUND);
    app.get("/api/v2/pools/gpu")
        .await
        .expect(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn health_version_and_the_openapi_document() {
    let app = App::new().await;
    let health = app.get_ok("/api/v2/monitor/health").await;
    assert_eq!(health["metadatabase"]["status"], "healthy");
    assert_eq!(
        health["scheduler"]["status"], "unhealthy",
        "no scheduler yet"
    );
    assert!(health["scheduler"]["latest_scheduler_heartbeat"].is_null());

    // A scheduler that heartbeat within the threshold is healthy, and its heartbeat shown.
    let beat = Utc::now() - chrono::Duration::seconds(10);
    let job = app
        .state
        .store
        .register_scheduler("host-a", 4242, beat)
        .await
        .unwrap();
    let health = app.get_ok("/api/v2/monitor/health").await;
    assert_eq!(health["scheduler"]["status"], "healthy");
    let shown: chrono::DateTime<Utc> = health["scheduler"]["latest_scheduler_heartbeat"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(shown.timestamp(), beat.timestamp());

    // Older than the threshold: unhealthy; a stopped scheduler does not count.
    let mut app = app;
    app.state = app
        .state
        .clone()
        .with_health_check_threshold(std::time::Duration::from_secs(5));
    let health = app.get_ok("/api/v2/monitor/health").await;
    assert_eq!(health["scheduler"]["status"], "unhealthy");
    app.state.store.heartbeat(job, Utc::now()).await.unwrap();
    assert_eq!(
        app.get_ok("/api/v2/monitor/health").await["scheduler"]["status"],
        "healthy"
    );
    app.state
        .store
        .stop_scheduler(job, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        app.get_ok("/api/v2/monitor/health").await["scheduler"]["status"],
        "unhealthy"
    );

    let version = app.get_ok("/api/v2/version").await;
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));

    let doc = app.get_ok("/api/v2/openapi.json").await;
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v2/dags",
        "/api/v2/dags/{dag_id}",
        "/api/v2/dags/{dag_id}/dagRuns",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}",
        "/api/v2/dags/{dag_id}/clearTaskInstances",
        "/api/v2/importErrors/{import_error_id}",
        "/api/v2/dagSources/{dag_id}",
        "/api/v2/pools/{pool_name}",
        "/api/v2/monitor/health",
        "/api/v2/version",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the document");
    }
    assert_eq!(
        doc["paths"]["/api/v2/dags"]["get"]["operationId"],
        "get_dags"
    );
    assert!(doc["components"]["schemas"]["DagRunResponse"].is_object());
    assert!(doc["components"]["schemas"]["ApiError"].is_object());
}

// ---- robustness and authorization -------------------------------------------------------

#[tokio::test]
async fn unknown_routes_methods_and_odd_paths_are_problems_never_500() {
    let app = App::new().await;
    app.get("/api/v2/nothing-here")
        .await
        .expect(StatusCode::NOT_FOUND);
    app.call(Method::PUT, "/api/v2/dags", None)
        .await
        .expect(StatusCode::METHOD_NOT_ALLOWED);
    for path in [
        "/api/v2/dags/a%2Fb",
        "/api/v2/dags/%2E%2E",
        "/api/v2/dags/%00",
        "/api/v2/dags/%FF%FE",
        "/api/v2/dags/etl/dagRuns/%2F..%2F..",
        "/api/v2/dags/etl/dagRuns/r/taskInstances/x/logs/99999999999999999999",
        "/api/v2/pools/%F0%9F%92%A9",
        "/api/v2/importErrors/99999999999999999999999",
    ] {
        let reply = app.get(path).await;
        assert!(
            reply.status == StatusCode::NOT_FOUND
                || reply.status == StatusCode::UNPROCESSABLE_ENTITY,
            "{path}: {} {}",
            reply.status,
            reply.text
        );
        let status = reply.status;
        reply.expect(status);
    }
    app.get("/api/v2/dags?offset=18446744073709551616000")
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn a_tenant_scoped_identity_sees_only_its_tenant() {
    let mut app = App::new().await;
    app.trigger("etl", json!({"dag_run_id": "r"})).await;
    app.trigger("team_job", json!({"dag_run_id": "t"})).await;
    app.identity = Some(Identity::new(
        "alice",
        vec![Grant::for_tenant(Role::User, "team_a")],
    ));
    let dags = app.get_ok("/api/v2/dags").await;
    assert_eq!(ids(&dags, "dags", "dag_id"), ["team_job"]);
    assert_eq!(dags["total_entries"], 1);
    let runs = app.get_ok("/api/v2/dags/~/dagRuns").await;
    assert_eq!(ids(&runs, "dag_runs", "dag_run_id"), ["t"]);
    let tis = app.get_ok("/api/v2/dags/~/dagRuns/~/taskInstances").await;
    assert_eq!(ids(&tis, "task_instances", "dag_id"), ["team_job"]);
    let errors = app.get_ok("/api/v2/importErrors").await;
    assert_eq!(
        errors["total_entries"], 0,
        "the broken file is tenant default's"
    );
    app.get("/api/v2/dags/etl")
        .await
        .expect(StatusCode::NOT_FOUND);
    app.post("/api/v2/dags/etl/dagRuns", json!({}))
        .await
        .expect(StatusCode::NOT_FOUND);
    app.trigger("team_job", json!({})).await;
    // A User may not manage pools.
    app.post("/api/v2/pools", json!({"name": "p", "slots": 1}))
        .await
        .expect(StatusCode::FORBIDDEN);

    app.identity = Some(Identity::new(
        "viewer",
        vec![Grant::everywhere(Role::Viewer)],
    ));
    app.get_ok("/api/v2/dags/etl").await;
    app.patch("/api/v2/dags/etl", json!({"is_paused": false}))
        .await
        .expect(StatusCode::FORBIDDEN);
    app.call(Method::DELETE, "/api/v2/dags/etl/dagRuns/r", None)
        .await
        .expect(StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn xcom_entries_are_listed_read_written_and_masked_as_airflow_shows_them() {
    use updraft_store::{NOT_MAPPED, TryXComs, XComEntry, XComStore};
    let mut app = App::new().await;
    app.trigger("etl", json!({"dag_run_id": "r"})).await;
    let run_pk = app.run_pk("etl", "r").await;
    app.start(run_pk, "extract").await;
    let entry = |key: &str, value: serde_json::Value| XComEntry {
        key: key.into(),
        value: value.to_string(),
    };
    let recorded = app
        .store
        .record_xcoms(
            &[TryXComs {
                run_pk,
                task_id: "extract".into(),
                try_number: 1,
                map_index: NOT_MAPPED,
                entries: vec![
                    entry("return_value", json!({"rows": 3, "path": "s3://b/k"})),
                    entry("db_password", json!("hunter2-hunter2")),
                    entry("plain", json!("text")),
                ],
            }],
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(recorded, [true]);
    let base = "/api/v2/dags/etl/dagRuns/r/taskInstances/extract/xcomEntries";

    let list = app.get_ok(base).await;
    assert_eq!(list["total_entries"], 3);
    let keys: Vec<&str> = list["xcom_entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["db_password", "plain", "return_value"]);
    let first = &list["xcom_entries"][0];
    assert_eq!(first["dag_id"], "etl");
    assert_eq!(first["run_id"], "r");
    assert_eq!(first["task_id"], "extract");
    assert_eq!(first["map_index"], -1);
    assert!(first.get("value").is_none(), "a listing carries no values");
    let page = app.get_ok(&format!("{base}?limit=1&offset=1")).await;
    assert_eq!(page["total_entries"], 3);
    assert_eq!(page["xcom_entries"][0]["key"], "plain");
    let by_key = app.get_ok(&format!("{base}?xcom_key=plain")).await;
    assert_eq!(by_key["total_entries"], 1);
    assert_eq!(
        app.get_ok(&format!("{base}?map_index=0")).await["total_entries"],
        0
    );

    let one = app.get_ok(&format!("{base}/return_value")).await;
    assert_eq!(
        one["value"], r#"{"path":"s3://b/k","rows":3}"#,
        "stringified by default"
    );
    let native = app
        .get_ok(&format!(
            "{base}/return_value?stringify=false&deserialize=true"
        ))
        .await;
    assert_eq!(native["value"], json!({"rows": 3, "path": "s3://b/k"}));
    assert_eq!(app.get_ok(&format!("{base}/plain")).await["value"], "text");
    let secret = app.get_ok(&format!("{base}/db_password")).await;
    assert_eq!(secret["value"], "***", "a sensitive key's value is masked");
    app.get(&format!("{base}/nope"))
        .await
        .expect(StatusCode::NOT_FOUND);
    app.get("/api/v2/dags/etl/dagRuns/r/taskInstances/ghost/xcomEntries")
        .await
        .expect(StatusCode::NOT_FOUND);

    let created = app
        .post(base, json!({"key": "manual", "value": [1, 2]}))
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(created["value"], json!([1, 2]));
    app.post(base, json!({"key": "manual", "value": 3}))
        .await
        .expect(StatusCode::CONFLICT);
    let patched = app
        .patch(&format!("{base}/manual"), json!({"value": {"k": "v"}}))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(patched["value"], json!({"k": "v"}));
    app.patch(&format!("{base}/absent"), json!({"value": 1}))
        .await
        .expect(StatusCode::NOT_FOUND);
    assert_eq!(app.get_ok(base).await["total_entries"], 4);

    // A new try of the task starts without its predecessor's XComs.
    app.finish(run_pk, "extract", TaskState::Failed).await;
    app.start(run_pk, "extract").await;
    assert_eq!(app.get_ok(base).await["total_entries"], 0);

    // Another tenant's user: the run does not exist; a Viewer may read but not write.
    app.identity = Some(Identity::new(
        "alice",
        vec![Grant::for_tenant(Role::Op, "team_a")],
    ));
    app.get(base).await.expect(StatusCode::NOT_FOUND);
    app.post(base, json!({"key": "k", "value": 1}))
        .await
        .expect(StatusCode::NOT_FOUND);
    app.identity = Some(Identity::new(
        "viewer",
        vec![Grant::everywhere(Role::Viewer)],
    ));
    app.get_ok(base).await;
    app.post(base, json!({"key": "k", "value": 1}))
        .await
        .expect(StatusCode::FORBIDDEN);
}

const GROUPED: &str = r#"
tasks:
  - task_id: start
    bash: echo start
    retries: 2
    retry_delay: 90s
    priority_weight: 5
  - group_id: load
    upstream: [start]
    tasks:
      - task_id: copy
        python: {callable: "jobs:copy"}
      - task_id: check
        upstream: [copy]
        noop: true
"#;

#[tokio::test]
async fn tasks_are_listed_with_airflow_fields_and_their_group() {
    let app = App::new().await;
    let dags = app.state.config.dags_folder.clone();
    std::fs::write(dags.join("grouped.yaml"), GROUPED).unwrap();
    let mut bag = updraft_dag::DagBag::with_options(&dags, Default::default());
    bag.refresh();
    updraft_runs::record_dag_bag(app.store.as_ref(), &bag, true, Utc::now())
        .await
        .unwrap();

    let list = app.get_ok("/api/v2/dags/grouped/tasks").await;
    assert_eq!(list["total_entries"], 3);
    assert_eq!(
        ids(&list, "tasks", "task_id"),
        ["load.check", "load.copy", "start"],
        "ordered by task_id by default"
    );
    let start = app.get_ok("/api/v2/dags/grouped/tasks/start").await;
    assert_eq!(start["operator_name"], "BashOperator");
    assert_eq!(start["retries"], 2.0);
    assert_eq!(
        start["retry_delay"],
        json!({"__type": "TimeDelta", "days": 0, "seconds": 90, "microseconds": 0})
    );
    assert_eq!(start["downstream_task_ids"], json!(["load.copy"]));
    assert_eq!(start["task_group_id"], Value::Null);
    assert_eq!(start["trigger_rule"], "all_success");
    let copy = app.get_ok("/api/v2/dags/grouped/tasks/load.copy").await;
    assert_eq!(copy["operator_name"], "PythonOperator");
    assert_eq!(copy["task_group_id"], "load");
    assert_eq!(copy["downstream_task_ids"], json!(["load.check"]));

    let by_weight = app
        .get_ok("/api/v2/dags/grouped/tasks?order_by=-priority_weight")
        .await;
    assert_eq!(by_weight["tasks"][0]["task_id"], "start");
    app.get("/api/v2/dags/grouped/tasks?order_by=owner_links")
        .await
        .expect(StatusCode::BAD_REQUEST);
    let missing = app
        .get("/api/v2/dags/grouped/tasks/nope")
        .await
        .expect(StatusCode::NOT_FOUND);
    assert!(missing.json()["detail"].as_str().unwrap().contains("nope"));
    app.get("/api/v2/dags/absent/tasks")
        .await
        .expect(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn mapped_instances_are_listed_read_and_their_logs_found_by_map_index() {
    let app = App::new().await;
    app.trigger("etl", json!({"dag_run_id": "r"})).await;
    let pk = app.run_pk("etl", "r").await;
    app.store
        .force_run_state(pk, updraft_core::RunState::Running, Utc::now())
        .await
        .unwrap();
    let base = "/api/v2/dags/etl/dagRuns/r/taskInstances/extract";
    // Not expanded yet: no mapped instance, the placeholder is the unmapped one.
    let none = app.get_ok(&format!("{base}/listMapped")).await;
    assert_eq!(none["total_entries"], 0);
    assert_eq!(app.get_ok(&format!("{base}/-1")).await["map_index"], -1);
    app.store
        .apply_transitions(
            pk,
            &[TiTransition {
                task_id: "extract".into(),
                map_index: -1,
                expected: TaskState::None,
                new: TaskState::Scheduled,
            }],
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(app.store.expand_task(pk, "extract", 3).await.unwrap());

    let listed = app.get_ok(&format!("{base}/listMapped?limit=2")).await;
    assert_eq!(listed["total_entries"], 3);
    let indexes: Vec<&Value> = listed["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ti| &ti["map_index"])
        .collect();
    assert_eq!(indexes, [&json!(0), &json!(1)]);
    let ids: std::collections::BTreeSet<&str> = listed["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ti| ti["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "each instance has its own id");
    let one = app.get_ok(&format!("{base}/2")).await;
    assert_eq!(
        (&one["map_index"], &one["state"]),
        (&json!(2), &json!("scheduled"))
    );
    app.get(&format!("{base}/3"))
        .await
        .expect(StatusCode::NOT_FOUND);
    app.get(&format!("{base}/-1"))
        .await
        .expect(StatusCode::NOT_FOUND);
    app.get(&format!("{base}/x"))
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.get("/api/v2/dags/etl/dagRuns/r/taskInstances/nope/listMapped")
        .await
        .expect(StatusCode::NOT_FOUND);
    let listed = app
        .get_ok(&format!("{base}/listMapped?state=running"))
        .await;
    assert_eq!(listed["total_entries"], 0);

    // A mapped instance's log, by map index, under Airflow's `map_index=` folder.
    let owner = app
        .store
        .register_scheduler("h", 1, Utc::now())
        .await
        .unwrap();
    let key = TiKey {
        run_pk: pk,
        task_id: "extract".into(),
        map_index: 1,
    };
    app.store
        .queue(&[key], owner, &Default::default(), Utc::now())
        .await
        .unwrap();
    let path = updraft_dag::mapped_log_path(&app.logs, "default", "etl", "r", "extract", 1, 1);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "instance one\n").unwrap();
    let log = app
        .get_ok(&format!("{base}/logs/1?map_index=1&full_content=true"))
        .await;
    let events: Vec<&str> = log["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["instance one"]);
    // Index 0 has had no try: no log.
    app.get(&format!("{base}/logs/1?map_index=0"))
        .await
        .expect(StatusCode::NOT_FOUND);

    // One instance is marked by its map index, in the path or the query; the others stay.
    let preview = app
        .patch(
            &format!("{base}/0/dry_run"),
            json!({"new_state": "success"}),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(preview["total_entries"], 1);
    assert_eq!(
        preview["task_instances"][0]["state"], "scheduled",
        "a preview changes nothing"
    );
    let marked = app
        .patch(&format!("{base}/0"), json!({"new_state": "success"}))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(marked["total_entries"], 1);
    assert_eq!(
        (
            &marked["task_instances"][0]["map_index"],
            &marked["task_instances"][0]["state"]
        ),
        (&json!(0), &json!("success"))
    );
    let marked = app
        .patch(
            &format!("{base}?map_index=2"),
            json!({"new_state": "failed"}),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(marked["task_instances"][0]["map_index"], 2);
    let states: Vec<(i64, String)> =
        app.get_ok(&format!("{base}/listMapped")).await["task_instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ti| {
                (
                    ti["map_index"].as_i64().unwrap(),
                    ti["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
    assert_eq!(
        states,
        [
            (0, "success".to_owned()),
            (1, "queued".to_owned()),
            (2, "failed".to_owned())
        ]
    );
    // The whole task's placeholder is gone: the plain route finds no instance to mark.
    app.patch(base, json!({"new_state": "success"}))
        .await
        .expect(StatusCode::NOT_FOUND);
    app.patch(&format!("{base}/7"), json!({"new_state": "success"}))
        .await
        .expect(StatusCode::NOT_FOUND);
}
