//! The access matrix: every operation of the OpenAPI document × every role × a grant for the
//! object's tenant, for another tenant, or for every tenant, against the rule table below.
//! An operation in the document without a rule fails the test, so a new endpoint cannot ship
//! without saying who may call it.
//!
//! Requests go through the real router over a temporary SQLite store, with the identity in the
//! request's extensions as an authentication layer puts it. Two tenants (`team_a`, `team_b`)
//! each have a DAG, a run, a task instance with a try and its log, an import error and a pool;
//! every request targets `team_a`'s objects.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::Utc;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use updraft_core::TaskState;
use updraft_secrets::{Connection, Keyring, Variable, Vault};
use updraft_server::auth::{Grant, Identity, Role};
use updraft_server::{AppState, ServerConfig};
use updraft_store::{
    AdminStore, AssetStore, NewAssetEvent, NewEvent, OperatorStore, PoolRow, QueueLimits,
    ReadStore, SchedulerStore, SourceRow, SourceStore, SqliteStore, TiKey, TiTransition, UserStore,
    WriteMode, XComStore, XComWrite,
};

const JOB: &str = r#"
tasks:
  - task_id: work
    bash: echo work
"#;

/// Who may call an operation, on `team_a`'s objects.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Anyone, signed in or not (the health check).
    Open,
    /// Any identity, whatever its roles (the version).
    SignedIn,
    /// An object of `team_a`: allowed with at least this role there; 403 with a weaker role
    /// there; 404 (as if it did not exist) with no role there, or only Public.
    Object(Role),
    /// A listing: 403 without `access` anywhere; otherwise 2xx, and `team_a`'s object is in it
    /// only with at least `include` for `team_a`.
    Listing {
        access: Role,
        include: Role,
        key: &'static str,
        field: &'static str,
    },
    /// Creating an object of the caller's own tenant (a pool): allowed with at least this
    /// role anywhere, else 403.
    CreateOwn(Role),
    /// About every tenant at once (the metrics): allowed with at least this role for every
    /// tenant, else 403.
    Everywhere(Role),
}

/// The rule of every operation, by method and path as in the document.
fn rules() -> BTreeMap<(&'static str, &'static str), Rule> {
    use Role::*;
    use Rule::*;
    let listing = |access, include, key, field| Listing {
        access,
        include,
        key,
        field,
    };
    const TI: &str = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}";
    const DRY_RUN: &str =
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/dry_run";
    const TRIES: &str = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries";
    const MAPPED: &str =
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/listMapped";
    const ONE_MAPPED: &str =
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}";
    const ONE_MAPPED_DRY_RUN: &str =
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/dry_run";
    const ONE_TRY: &str = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries/{task_try_number}";
    const LOGS: &str =
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}";
    const XCOMS: &str =
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries";
    const ONE_XCOM: &str =
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}";
    BTreeMap::from([
        (
            ("get", "/api/v2/dags"),
            listing(Viewer, Viewer, "dags", "dag_id"),
        ),
        (
            ("patch", "/api/v2/dags"),
            listing(Viewer, User, "dags", "dag_id"),
        ),
        (("get", "/api/v2/dags/{dag_id}"), Object(Viewer)),
        (("patch", "/api/v2/dags/{dag_id}"), Object(User)),
        (("get", "/api/v2/dags/{dag_id}/details"), Object(Viewer)),
        (("get", "/api/v2/dags/{dag_id}/tasks"), Object(Viewer)),
        (
            ("get", "/api/v2/dags/{dag_id}/tasks/{task_id}"),
            Object(Viewer),
        ),
        (("get", "/api/v2/dags/{dag_id}/dagVersions"), Object(Viewer)),
        (
            ("get", "/api/v2/dags/{dag_id}/dagVersions/{version_number}"),
            Object(Viewer),
        ),
        (("get", "/api/v2/dags/{dag_id}/dagRuns"), Object(Viewer)),
        (("post", "/api/v2/dags/{dag_id}/dagRuns"), Object(User)),
        (
            ("get", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}"),
            Object(Viewer),
        ),
        (
            ("patch", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}"),
            Object(User),
        ),
        (
            ("delete", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}"),
            Object(User),
        ),
        (
            ("post", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/clear"),
            Object(User),
        ),
        (
            (
                "get",
                "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
            ),
            Object(Viewer),
        ),
        (("get", TI), Object(Viewer)),
        (("patch", TI), Object(User)),
        (("patch", DRY_RUN), Object(User)),
        (("get", TRIES), Object(Viewer)),
        (("get", MAPPED), Object(Viewer)),
        (("get", ONE_MAPPED), Object(Viewer)),
        (("patch", ONE_MAPPED), Object(User)),
        (("patch", ONE_MAPPED_DRY_RUN), Object(User)),
        (("get", ONE_TRY), Object(Viewer)),
        (("get", LOGS), Object(Viewer)),
        (("get", XCOMS), Object(Viewer)),
        (("post", XCOMS), Object(Op)),
        (("get", ONE_XCOM), Object(Viewer)),
        (("patch", ONE_XCOM), Object(Op)),
        (
            ("post", "/api/v2/dags/{dag_id}/clearTaskInstances"),
            Object(User),
        ),
        (
            ("get", "/api/v2/importErrors"),
            listing(Viewer, Viewer, "import_errors", "filename"),
        ),
        (
            ("get", "/api/v2/importErrors/{import_error_id}"),
            Object(Viewer),
        ),
        (("get", "/api/v2/dagSources/{dag_id}"), Object(Viewer)),
        (
            ("get", "/api/v2/pools"),
            listing(Viewer, Viewer, "pools", "name"),
        ),
        (("post", "/api/v2/pools"), CreateOwn(Op)),
        (("get", "/api/v2/pools/{pool_name}"), Object(Viewer)),
        (("patch", "/api/v2/pools/{pool_name}"), Object(Op)),
        (("delete", "/api/v2/pools/{pool_name}"), Object(Op)),
        (
            ("get", "/api/v2/eventLogs"),
            listing(Admin, Admin, "event_logs", "event_log_id"),
        ),
        (("get", "/api/v2/eventLogs/{event_log_id}"), Object(Admin)),
        (
            ("get", "/api/v2/connections"),
            listing(Op, Op, "connections", "connection_id"),
        ),
        (("post", "/api/v2/connections"), CreateOwn(Op)),
        (("post", "/api/v2/connections/test"), CreateOwn(Op)),
        (("get", "/api/v2/connections/{connection_id}"), Object(Op)),
        (("patch", "/api/v2/connections/{connection_id}"), Object(Op)),
        (
            ("delete", "/api/v2/connections/{connection_id}"),
            Object(Op),
        ),
        (
            ("get", "/api/v2/variables"),
            listing(Op, Op, "variables", "key"),
        ),
        (("post", "/api/v2/variables"), CreateOwn(Op)),
        (("get", "/api/v2/variables/{variable_key}"), Object(Op)),
        (("patch", "/api/v2/variables/{variable_key}"), Object(Op)),
        (("delete", "/api/v2/variables/{variable_key}"), Object(Op)),
        (
            ("get", "/api/v2/sources"),
            listing(Viewer, Viewer, "sources", "name"),
        ),
        (("get", "/api/v2/sources/{source_name}"), Object(Viewer)),
        (("post", "/api/v2/sources/{source_name}/sync"), Object(Op)),
        (
            ("get", "/api/v2/assets"),
            listing(Viewer, Viewer, "assets", "uri"),
        ),
        (("get", "/api/v2/assets/{asset_id}"), Object(Viewer)),
        (
            ("get", "/api/v2/assets/events"),
            listing(Viewer, Viewer, "asset_events", "uri"),
        ),
        (("post", "/api/v2/assets/events"), Object(Op)),
        (
            ("get", "/api/v2/dags/{dag_id}/assets/queuedEvents"),
            Object(Viewer),
        ),
        (("get", "/api/v2/monitor/health"), Open),
        (("get", "/api/v2/monitor/metrics"), Everywhere(Viewer)),
        (("get", "/api/v2/version"), SignedIn),
    ])
}

/// A valid body for each write, so that an allowed call succeeds and a refused one is
/// refused for who is calling, not for what it sent.
fn body_for(method: &str, path: &str, serial: usize) -> Option<Value> {
    let body = match (method, path) {
        ("get" | "delete", _) => return None,
        ("patch", "/api/v2/dags" | "/api/v2/dags/{dag_id}") => json!({"is_paused": true}),
        ("post", "/api/v2/dags/{dag_id}/dagRuns") => json!({}),
        ("patch", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}") => json!({"state": "success"}),
        ("post", p) if p.ends_with("/clear") || p.ends_with("/clearTaskInstances") => {
            json!({"dry_run": false})
        }
        ("post", p) if p.ends_with("/xcomEntries") => {
            json!({"key": format!("new_{serial}"), "value": {"n": serial}})
        }
        ("patch", p) if p.ends_with("/xcomEntries/{xcom_key}") => json!({"value": [serial]}),
        ("patch", p) if p.contains("/taskInstances/") => json!({"new_state": "success"}),
        ("post", "/api/v2/pools") => json!({"name": format!("new_{serial}"), "slots": 1}),
        ("patch", "/api/v2/pools/{pool_name}") => json!({"slots": 3}),
        ("post", "/api/v2/connections") => {
            json!({"connection_id": format!("new_{serial}"), "conn_type": "fs"})
        }
        // A type updraft does not test: the answer is status false, without a network call.
        ("post", "/api/v2/connections/test") => json!({"connection_id": "t", "conn_type": "fs"}),
        ("patch", "/api/v2/connections/{connection_id}") => json!({"host": "h"}),
        ("post", "/api/v2/variables") => json!({"key": format!("new_{serial}"), "value": "v"}),
        ("patch", "/api/v2/variables/{variable_key}") => json!({"value": "w"}),
        // A user's request has no body to speak of; a webhook's carries the push event.
        ("post", "/api/v2/sources/{source_name}/sync") => json!({}),
        // team_a's asset is the first recorded in every fixture.
        ("post", "/api/v2/assets/events") => json!({"asset_id": 1, "extra": {"by": "hand"}}),
        _ => panic!("no request body written for {method} {path}: add one to body_for"),
    };
    Some(body)
}

/// Where the identity holds its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    OwnTenant,
    OtherTenant,
    Everywhere,
}

fn identity(role: Role, scope: Scope) -> Identity {
    let grant = match scope {
        Scope::OwnTenant => Grant::for_tenant(role, "team_a"),
        Scope::OtherTenant => Grant::for_tenant(role, "team_b"),
        Scope::Everywhere => Grant::everywhere(role),
    };
    Identity::new(format!("{role}-{scope:?}"), vec![grant])
}

/// The role held for `team_a`'s objects.
fn role_there(role: Role, scope: Scope) -> Option<Role> {
    (scope != Scope::OtherTenant).then_some(role)
}

#[derive(Debug, PartialEq, Eq)]
enum Expect {
    /// 2xx, or an ordinary 4xx from validating the request (never 401/403/404).
    Allowed {
        team_a_listed: Option<bool>,
    },
    Forbidden,
    Hidden,
}

fn expect(rule: Rule, role: Role, scope: Scope) -> Expect {
    let allowed = Expect::Allowed {
        team_a_listed: None,
    };
    match rule {
        Rule::Open | Rule::SignedIn => allowed,
        Rule::Object(needed) => match role_there(role, scope) {
            None | Some(Role::Public) => Expect::Hidden,
            Some(held) if held >= needed => allowed,
            Some(_) => Expect::Forbidden,
        },
        Rule::Listing {
            access, include, ..
        } => {
            if role < access {
                Expect::Forbidden
            } else {
                Expect::Allowed {
                    team_a_listed: Some(role_there(role, scope).is_some_and(|r| r >= include)),
                }
            }
        }
        Rule::CreateOwn(needed) if role >= needed => allowed,
        Rule::CreateOwn(_) => Expect::Forbidden,
        Rule::Everywhere(needed) if scope == Scope::Everywhere && role >= needed => allowed,
        Rule::Everywhere(_) => Expect::Forbidden,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    router: axum::Router,
    /// Path parameters naming `team_a`'s objects.
    params: BTreeMap<&'static str, String>,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let dags = dir.path().join("dags");
        for tenant in ["team_a", "team_b"] {
            let folder = dags.join(tenant);
            std::fs::create_dir_all(&folder).unwrap();
            let short = &tenant[5..];
            std::fs::write(folder.join(format!("{short}_job.yaml")), JOB).unwrap();
            std::fs::write(folder.join("broken.yaml"), "tasks: [\n").unwrap();
        }
        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        store.migrate().await.unwrap();
        let mut bag = updraft_dag::DagBag::with_options(&dags, Default::default());
        bag.refresh();
        updraft_runs::record_dag_bag(store.as_ref(), &bag, true, Utc::now())
            .await
            .unwrap();
        let logs = dir.path().join("logs");
        let keyring = Keyring::parse(&Keyring::generate_key(), "core.fernet_key").unwrap();
        let vault = Vault::new(store.clone(), keyring.clone());
        for tenant in ["team_a", "team_b"] {
            let short = &tenant[5..];
            let connection = Connection {
                conn_id: format!("{short}_conn"),
                conn_type: "http".into(),
                host: Some("example.com".into()),
                password: Some("pw-secret".into()),
                ..Connection::default()
            };
            vault
                .write_connection(Some(tenant), &connection, WriteMode::Create)
                .await
                .unwrap();
            let variable = Variable {
                key: format!("{short}_var"),
                value: "value".into(),
                description: None,
            };
            vault
                .write_variable(Some(tenant), &variable, WriteMode::Create)
                .await
                .unwrap();
        }
        let state = AppState::new(
            store.clone(),
            ServerConfig {
                keyring: Some(keyring),
                source_sync: None,
                source_webhooks: Default::default(),
                bind: "127.0.0.1:0".parse().unwrap(),
                dags_folder: dags,
                logs_folder: logs.clone(),
                auth: updraft_server::authn::AuthSettings::disabled(),
            },
            tokio::sync::broadcast::channel(16).0,
            Arc::new(|| {}),
        );
        let mut fixture = Fixture {
            _dir: dir,
            router: updraft_server::router(state),
            params: BTreeMap::new(),
        };
        let mut event_ids = BTreeMap::new();
        let mut asset_ids = BTreeMap::new();
        for tenant in ["team_a", "team_b"] {
            let recorded = store
                .record_asset_events(&[NewAssetEvent {
                    tenant: tenant.into(),
                    uri: format!("s3://{tenant}/data"),
                    source_map_index: -1,
                    timestamp: Utc::now(),
                    ..NewAssetEvent::default()
                }])
                .await
                .unwrap();
            asset_ids.insert(tenant, recorded[0].asset_id);
        }
        assert_eq!(asset_ids["team_a"], 1, "body_for names team_a's asset as 1");
        for (tenant, dag_id) in [("team_a", "a_job"), ("team_b", "b_job")] {
            let run_id = format!("run_{}", &tenant[5..]);
            let admin = Identity::local_admin();
            fixture
                .send(
                    &admin,
                    Method::POST,
                    &format!("/api/v2/dags/{dag_id}/dagRuns"),
                    Some(json!({ "dag_run_id": run_id })),
                )
                .await
                .expect_status(StatusCode::OK);
            let run = store.run(dag_id, &run_id).await.unwrap().unwrap();
            start(store.as_ref(), run.id, "work").await;
            store
                .write_xcom(
                    &XComWrite {
                        run_pk: run.id,
                        task_id: "work",
                        map_index: -1,
                        key: "pushed",
                        value: "\"s3://bucket/key\"",
                    },
                    WriteMode::Create,
                    Utc::now(),
                )
                .await
                .unwrap();
            let log = updraft_dag::log_path(&logs, tenant, dag_id, &run_id, "work", 1);
            std::fs::create_dir_all(log.parent().unwrap()).unwrap();
            std::fs::write(&log, "working\n").unwrap();
            store
                .record_source(&SourceRow {
                    name: format!("{}_source", &tenant[5..]),
                    tenant: Some(tenant.to_string()),
                    kind: "git".into(),
                    url: format!("https://git.example.com/{tenant}.git"),
                    revision: Some("0123456789abcdef".into()),
                    ..SourceRow::default()
                })
                .await
                .unwrap();
            store
                .create_pool(&PoolRow {
                    name: format!("{}_pool", &tenant[5..]),
                    slots: 2,
                    description: format!("{tenant}'s pool"),
                    tenant: Some(tenant.to_string()),
                })
                .await
                .unwrap();
            let event = store
                .record_event(&NewEvent {
                    when: Some(Utc::now()),
                    username: "someone".into(),
                    event: "trigger_dag_run".into(),
                    tenant: Some(tenant.into()),
                    dag_id: Some(dag_id.into()),
                    run_id: Some(run_id.clone()),
                    ..NewEvent::default()
                })
                .await
                .unwrap();
            event_ids.insert(tenant, event);
        }
        let errors = fixture
            .send(
                &Identity::local_admin(),
                Method::GET,
                "/api/v2/importErrors",
                None,
            )
            .await
            .expect_status(StatusCode::OK)
            .json();
        let error_id = errors["import_errors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["filename"] == "team_a/broken.yaml")
            .map(|e| e["import_error_id"].to_string())
            .expect("team_a's import error");
        fixture.params = BTreeMap::from([
            ("dag_id", "a_job".to_string()),
            ("dag_run_id", "run_a".to_string()),
            ("task_id", "work".to_string()),
            ("try_number", "1".to_string()),
            ("task_try_number", "1".to_string()),
            ("map_index", "-1".to_string()),
            ("version_number", "1".to_string()),
            ("pool_name", "a_pool".to_string()),
            ("connection_id", "a_conn".to_string()),
            ("variable_key", "a_var".to_string()),
            ("source_name", "a_source".to_string()),
            ("import_error_id", error_id),
            ("event_log_id", event_ids["team_a"].to_string()),
            ("xcom_key", "pushed".to_string()),
            ("asset_id", asset_ids["team_a"].to_string()),
        ]);
        fixture
    }

    /// What names `team_a`'s object in the field `field` of a listing's `key`.
    fn team_a_value(&self, key: &str, field: &str) -> Value {
        if (key, field) == ("sources", "name") {
            return json!("a_source");
        }
        match field {
            "uri" => json!("s3://team_a/data"),
            "dag_id" => json!("a_job"),
            "filename" => json!("team_a/broken.yaml"),
            "name" => json!("a_pool"),
            "connection_id" => json!("a_conn"),
            "key" => json!("a_var"),
            "event_log_id" => json!(self.params["event_log_id"].parse::<i64>().unwrap()),
            other => panic!("no value of team_a for listing field {other}"),
        }
    }

    fn uri(&self, template: &str, method: &str) -> String {
        let mut uri = template.to_string();
        for (name, value) in &self.params {
            uri = uri.replace(&format!("{{{name}}}"), value);
        }
        assert!(
            !uri.contains('{'),
            "no fixture value for a parameter of {uri}"
        );
        if method == "patch" && template == "/api/v2/dags" {
            uri.push_str("?dag_id_pattern=_job");
        }
        uri
    }

    async fn send(
        &self,
        identity: &Identity,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(b) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let mut request = builder.body(body).unwrap();
        request.extensions_mut().insert(identity.clone());
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }
}

/// Move a task instance to `running` with its first try, as the scheduler would.
async fn start(store: &SqliteStore, run_pk: i64, task_id: &str) {
    let key = TiKey {
        run_pk,
        task_id: task_id.to_string(),
        map_index: -1,
    };
    let current = store.task_instance(&key).await.unwrap().unwrap().state;
    store
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
    let queued = store
        .queue(
            std::slice::from_ref(&key),
            0,
            &QueueLimits::default(),
            Utc::now(),
        )
        .await
        .unwrap();
    store
        .mark_running(&key, queued[0].try_number, Some(4242), "host-1", Utc::now())
        .await
        .unwrap();
}

struct Reply {
    status: StatusCode,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text))
    }

    fn expect_status(self, status: StatusCode) -> Reply {
        assert_eq!(self.status, status, "{}", self.text);
        self
    }
}

/// Every operation in the document, as (method, path).
fn operations() -> Vec<(String, String)> {
    let document = serde_json::to_value(updraft_server::api::openapi()).unwrap();
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            if item.get(method).is_some() {
                operations.push((method.to_string(), path.clone()));
            }
        }
    }
    operations
}

fn check(expected: &Expect, reply: &Reply, rule: Rule, fixture: &Fixture) -> Result<(), String> {
    let status = reply.status;
    match expected {
        Expect::Hidden if status == StatusCode::NOT_FOUND => Ok(()),
        Expect::Forbidden if status == StatusCode::FORBIDDEN => Ok(()),
        Expect::Allowed { team_a_listed }
            if status.is_success()
                || (status.is_client_error()
                    && ![
                        StatusCode::UNAUTHORIZED,
                        StatusCode::FORBIDDEN,
                        StatusCode::NOT_FOUND,
                    ]
                    .contains(&status)) =>
        {
            let (Some(listed), Rule::Listing { key, field, .. }) = (team_a_listed, rule) else {
                return Ok(());
            };
            let items = reply.json()[key].as_array().cloned().unwrap_or_default();
            let wanted = fixture.team_a_value(key, field);
            let found = items.iter().any(|item| item[field] == wanted);
            if found == *listed {
                Ok(())
            } else {
                Err(format!(
                    "team_a's {wanted} listed: {found}, expected {listed}"
                ))
            }
        }
        _ => Err(format!("got {status}")),
    }
}

#[tokio::test]
async fn every_operation_for_every_role_and_tenant() {
    let rules = rules();
    let operations = operations();
    let unruled: Vec<String> = operations
        .iter()
        .filter(|(m, p)| !rules.contains_key(&(m.as_str(), p.as_str())))
        .map(|(m, p)| format!("{} {p}", m.to_uppercase()))
        .collect();
    assert!(
        unruled.is_empty(),
        "operations without a rule in tests/access.rs: {unruled:?}"
    );
    let stale: Vec<_> = rules
        .keys()
        .filter(|(m, p)| !operations.iter().any(|(om, op)| om == m && op == p))
        .collect();
    assert!(
        stale.is_empty(),
        "rules for operations not in the document: {stale:?}"
    );

    let shared = Fixture::new().await;
    let mut failures = Vec::new();
    let mut serial = 0;
    let mut calls = 0;
    for (method, path) in &operations {
        let rule = rules[&(method.as_str(), path.as_str())];
        for role in Role::ALL {
            for scope in [Scope::OwnTenant, Scope::OtherTenant, Scope::Everywhere] {
                serial += 1;
                let expected = expect(rule, role, scope);
                // An allowed write changes the objects: it gets fixtures of its own. (A refused
                // one must change nothing, so it shares them.)
                let own;
                let fixture = if method == "get" || !matches!(expected, Expect::Allowed { .. }) {
                    &shared
                } else {
                    own = Fixture::new().await;
                    &own
                };
                let who = identity(role, scope);
                let reply = fixture
                    .send(
                        &who,
                        method.to_uppercase().parse().unwrap(),
                        &fixture.uri(path, method),
                        body_for(method, path, serial),
                    )
                    .await;
                calls += 1;
                if let Err(why) = check(&expected, &reply, rule, fixture) {
                    failures.push(format!(
                        "{} {path} as {role} ({scope:?}): expected {expected:?}, {why}: {}",
                        method.to_uppercase(),
                        reply.text.chars().take(200).collect::<String>()
                    ));
                }
            }
        }
    }
    assert!(calls >= operations.len() * 15);
    assert!(
        failures.is_empty(),
        "{} of {calls} calls broke the rules:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The status and detail of a reply, with `name` (the object asked for) written as `<name>`.
fn answer(reply: &Reply, name: &str) -> (StatusCode, String) {
    let detail = reply.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (reply.status, detail.replace(name, "<name>"))
}

/// `/metrics`, where Prometheus looks by default, answers as `/api/v2/monitor/metrics` does:
/// the pools of every tenant for a role everywhere, 403 for a role in one tenant.
#[tokio::test]
async fn the_metrics_at_the_root_follow_the_documented_operation_s_rule() {
    let fixture = Fixture::new().await;
    let reply = fixture
        .send(
            &identity(Role::Viewer, Scope::Everywhere),
            Method::GET,
            "/metrics",
            None,
        )
        .await
        .expect_status(StatusCode::OK);
    for pool in ["a_pool", "b_pool"] {
        assert!(
            reply.text.contains(&format!(
                r#"airflow_pool_open_slots{{pool_name="{pool}"}} 2"#
            )),
            "{}",
            reply.text
        );
    }
    for scope in [Scope::OwnTenant, Scope::OtherTenant] {
        fixture
            .send(&identity(Role::Admin, scope), Method::GET, "/metrics", None)
            .await
            .expect_status(StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn another_tenants_objects_answer_exactly_as_missing_ones() {
    let fixture = Fixture::new().await;
    let error_id = fixture.params["import_error_id"].clone();
    let event_id = fixture.params["event_log_id"].clone();
    // (method, URI of team_a's object, URI of a missing one, the names that differ, body)
    let cases: Vec<(Method, String, String, String, Option<Value>)> = vec![
        (
            Method::GET,
            "/api/v2/dags/a_job".into(),
            "/api/v2/dags/nope".into(),
            "a_job|nope".into(),
            None,
        ),
        (
            Method::PATCH,
            "/api/v2/dags/a_job".into(),
            "/api/v2/dags/nope".into(),
            "a_job|nope".into(),
            Some(json!({"is_paused": true})),
        ),
        (
            Method::POST,
            "/api/v2/dags/a_job/dagRuns".into(),
            "/api/v2/dags/nope/dagRuns".into(),
            "a_job|nope".into(),
            Some(json!({})),
        ),
        (
            Method::GET,
            "/api/v2/dags/a_job/dagRuns/no_such_run".into(),
            "/api/v2/dags/nope/dagRuns/no_such_run".into(),
            "a_job|nope".into(),
            None,
        ),
        (
            Method::DELETE,
            "/api/v2/dags/a_job/dagRuns/run_a".into(),
            "/api/v2/dags/nope/dagRuns/run_a".into(),
            "a_job|nope".into(),
            None,
        ),
        (
            Method::GET,
            "/api/v2/dags/a_job/dagRuns/run_a/taskInstances/work/logs/1".into(),
            "/api/v2/dags/nope/dagRuns/run_a/taskInstances/work/logs/1".into(),
            "a_job|nope".into(),
            None,
        ),
        (
            Method::GET,
            "/api/v2/dagSources/a_job".into(),
            "/api/v2/dagSources/nope".into(),
            "a_job|nope".into(),
            None,
        ),
        (
            Method::PATCH,
            "/api/v2/pools/a_pool".into(),
            "/api/v2/pools/nope".into(),
            "a_pool|nope".into(),
            Some(json!({"slots": 1})),
        ),
        (
            Method::DELETE,
            "/api/v2/pools/a_pool".into(),
            "/api/v2/pools/nope".into(),
            "a_pool|nope".into(),
            None,
        ),
        (
            Method::GET,
            "/api/v2/connections/a_conn".into(),
            "/api/v2/connections/nope".into(),
            "a_conn|nope".into(),
            None,
        ),
        (
            Method::PATCH,
            "/api/v2/connections/a_conn".into(),
            "/api/v2/connections/nope".into(),
            "a_conn|nope".into(),
            Some(json!({"host": "x"})),
        ),
        (
            Method::DELETE,
            "/api/v2/connections/a_conn?team_name=team_a".into(),
            "/api/v2/connections/nope?team_name=team_a".into(),
            "a_conn|nope".into(),
            None,
        ),
        (
            Method::GET,
            "/api/v2/variables/a_var".into(),
            "/api/v2/variables/nope".into(),
            "a_var|nope".into(),
            None,
        ),
        (
            Method::PATCH,
            "/api/v2/variables/a_var?team_name=team_a".into(),
            "/api/v2/variables/nope?team_name=team_a".into(),
            "a_var|nope".into(),
            Some(json!({"value": "x"})),
        ),
        (
            Method::GET,
            "/api/v2/sources/a_source".into(),
            "/api/v2/sources/nope".into(),
            "a_source|nope".into(),
            None,
        ),
        (
            Method::POST,
            "/api/v2/sources/a_source/sync".into(),
            "/api/v2/sources/nope/sync".into(),
            "a_source|nope".into(),
            Some(json!({})),
        ),
        (
            Method::GET,
            format!("/api/v2/importErrors/{error_id}"),
            "/api/v2/importErrors/999999".into(),
            format!("{error_id}|999999"),
            None,
        ),
        (
            Method::GET,
            "/api/v2/assets/1".into(),
            "/api/v2/assets/999999".into(),
            "1|999999".into(),
            None,
        ),
        (
            Method::GET,
            format!("/api/v2/eventLogs/{event_id}"),
            "/api/v2/eventLogs/999999".into(),
            format!("{event_id}|999999"),
            None,
        ),
    ];
    // Even an Admin of team_b, who may do all of these to team_b's objects.
    let stranger = Identity::new("b_admin", vec![Grant::for_tenant(Role::Admin, "team_b")]);
    for (method, hidden, missing, names, body) in cases {
        let (hidden_name, missing_name) = names.split_once('|').unwrap();
        let got = fixture
            .send(&stranger, method.clone(), &hidden, body.clone())
            .await;
        let absent = fixture
            .send(&stranger, method.clone(), &missing, body)
            .await;
        assert_eq!(
            got.status,
            StatusCode::NOT_FOUND,
            "{method} {hidden}: {}",
            got.text
        );
        assert_eq!(
            answer(&got, hidden_name),
            answer(&absent, missing_name),
            "{method} {hidden} must read like {missing}"
        );
    }
    // The objects are still there for their own tenant.
    fixture
        .send(
            &Identity::local_admin(),
            Method::GET,
            "/api/v2/dags/a_job/dagRuns/run_a",
            None,
        )
        .await
        .expect_status(StatusCode::OK);
}

#[tokio::test]
async fn wildcard_listings_count_only_visible_tenants() {
    let fixture = Fixture::new().await;
    let alice = Identity::new("alice", vec![Grant::for_tenant(Role::Viewer, "team_a")]);
    for (uri, key, field, expected) in [
        ("/api/v2/dags", "dags", "dag_id", json!("a_job")),
        (
            "/api/v2/dags/~/dagRuns",
            "dag_runs",
            "dag_id",
            json!("a_job"),
        ),
        (
            "/api/v2/dags/~/dagRuns/~/taskInstances",
            "task_instances",
            "dag_id",
            json!("a_job"),
        ),
        (
            "/api/v2/importErrors",
            "import_errors",
            "filename",
            json!("team_a/broken.yaml"),
        ),
    ] {
        let list = fixture
            .send(&alice, Method::GET, uri, None)
            .await
            .expect_status(StatusCode::OK)
            .json();
        let items = list[key].as_array().unwrap();
        assert_eq!(items.len(), 1, "{uri}: {list}");
        assert_eq!(items[0][field], expected, "{uri}");
        assert_eq!(list["total_entries"], 1, "{uri}");
    }
    let pools = fixture
        .send(&alice, Method::GET, "/api/v2/pools", None)
        .await
        .expect_status(StatusCode::OK)
        .json();
    let names: Vec<&str> = pools["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a_pool", "default_pool"], "own and shared pools");
    assert_eq!(pools["total_entries"], 2);
}

#[tokio::test]
async fn tenant_ops_manage_their_own_pools_and_read_shared_ones() {
    let fixture = Fixture::new().await;
    let op_a = Identity::new("op_a", vec![Grant::for_tenant(Role::Op, "team_a")]);
    let created = fixture
        .send(
            &op_a,
            Method::POST,
            "/api/v2/pools",
            Some(json!({"name": "a_gpu", "slots": 1})),
        )
        .await
        .expect_status(StatusCode::CREATED)
        .json();
    assert_eq!(
        created["team_name"], "team_a",
        "a tenant Op's pool is its tenant's"
    );
    fixture
        .send(
            &op_a,
            Method::POST,
            "/api/v2/pools",
            Some(json!({"name": "b_gpu", "slots": 1, "team_name": "team_b"})),
        )
        .await
        .expect_status(StatusCode::FORBIDDEN);
    fixture
        .send(
            &op_a,
            Method::POST,
            "/api/v2/pools",
            Some(json!({"name": "shared", "slots": 1, "tenant": "team_b"})),
        )
        .await
        .expect_status(StatusCode::FORBIDDEN);
    // A name taken by another tenant's pool: a conflict that does not say whose.
    let clash = fixture
        .send(
            &op_a,
            Method::POST,
            "/api/v2/pools",
            Some(json!({"name": "b_pool", "slots": 1})),
        )
        .await
        .expect_status(StatusCode::CONFLICT);
    assert!(!clash.text.contains("team_b"), "{}", clash.text);
    // Shared pools: read, not changed.
    fixture
        .send(&op_a, Method::GET, "/api/v2/pools/default_pool", None)
        .await
        .expect_status(StatusCode::OK);
    fixture
        .send(
            &op_a,
            Method::PATCH,
            "/api/v2/pools/default_pool",
            Some(json!({"slots": 1})),
        )
        .await
        .expect_status(StatusCode::FORBIDDEN);
    // A pool's tenant does not change.
    fixture
        .send(
            &op_a,
            Method::PATCH,
            "/api/v2/pools/a_gpu",
            Some(json!({"team_name": "team_b"})),
        )
        .await
        .expect_status(StatusCode::BAD_REQUEST);
    // A global Op shares what it creates, or gives it to a tenant.
    let op = Identity::new("op", vec![Grant::everywhere(Role::Op)]);
    let shared = fixture
        .send(
            &op,
            Method::POST,
            "/api/v2/pools",
            Some(json!({"name": "s", "slots": 1})),
        )
        .await
        .expect_status(StatusCode::CREATED)
        .json();
    assert_eq!(shared["team_name"], Value::Null);
    let given = fixture
        .send(
            &op,
            Method::POST,
            "/api/v2/pools",
            Some(json!({"name": "for_b", "slots": 1, "team_name": "team_b"})),
        )
        .await
        .expect_status(StatusCode::CREATED)
        .json();
    assert_eq!(given["team_name"], "team_b");
    fixture
        .send(&op_a, Method::GET, "/api/v2/pools/for_b", None)
        .await
        .expect_status(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_write_is_audited_per_tenant_with_secrets_masked() {
    let fixture = Fixture::new().await;
    let user_a = Identity::new("user_a", vec![Grant::for_tenant(Role::User, "team_a")]);
    fixture
        .send(
            &user_a,
            Method::POST,
            "/api/v2/dags/a_job/dagRuns",
            Some(json!({"dag_run_id": "audited", "conf": {"who": "x", "db_password": "hunter2"}})),
        )
        .await
        .expect_status(StatusCode::OK);
    let op = Identity::new("op", vec![Grant::everywhere(Role::Op)]);
    fixture
        .send(
            &op,
            Method::POST,
            "/api/v2/pools",
            Some(json!({"name": "s", "slots": 1})),
        )
        .await
        .expect_status(StatusCode::CREATED);

    let admin = Identity::new("root", vec![Grant::everywhere(Role::Admin)]);
    let log = fixture
        .send(
            &admin,
            Method::GET,
            "/api/v2/eventLogs?event=trigger_dag_run&owner=user_a",
            None,
        )
        .await
        .expect_status(StatusCode::OK)
        .json();
    assert_eq!(log["total_entries"], 1, "{log}");
    let entry = &log["event_logs"][0];
    assert_eq!(entry["dag_id"], "a_job");
    assert_eq!(entry["run_id"], "audited");
    assert_eq!(entry["owner"], "user_a");
    assert_eq!(entry["tenant"], "team_a");
    assert!(entry["when"].is_string());
    let extra = entry["extra"].as_str().unwrap();
    assert!(extra.contains("\"who\":\"x\""), "{extra}");
    assert!(
        !extra.contains("hunter2"),
        "a secret reached the audit log: {extra}"
    );
    let id = entry["event_log_id"].as_i64().unwrap();
    let pool_entry = fixture
        .send(
            &admin,
            Method::GET,
            "/api/v2/eventLogs?event=post_pool",
            None,
        )
        .await
        .expect_status(StatusCode::OK)
        .json();
    assert_eq!(
        pool_entry["event_logs"][0]["tenant"],
        Value::Null,
        "{pool_entry}"
    );
    assert_eq!(pool_entry["event_logs"][0]["owner"], "op");

    // An Admin of team_a reads team_a's entries only; of team_b, none of team_a's.
    let admin_a = Identity::new("admin_a", vec![Grant::for_tenant(Role::Admin, "team_a")]);
    let seen = fixture
        .send(&admin_a, Method::GET, "/api/v2/eventLogs?limit=100", None)
        .await
        .expect_status(StatusCode::OK)
        .json();
    let entries = seen["event_logs"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["event_log_id"] == id));
    assert!(entries.iter().all(|e| e["tenant"] == "team_a"), "{seen}");
    assert_eq!(seen["total_entries"], entries.len());
    fixture
        .send(
            &admin_a,
            Method::GET,
            &format!("/api/v2/eventLogs/{id}"),
            None,
        )
        .await
        .expect_status(StatusCode::OK);
    let admin_b = Identity::new("admin_b", vec![Grant::for_tenant(Role::Admin, "team_b")]);
    fixture
        .send(
            &admin_b,
            Method::GET,
            &format!("/api/v2/eventLogs/{id}"),
            None,
        )
        .await
        .expect_status(StatusCode::NOT_FOUND);
    // Reading is for Admins.
    fixture
        .send(&op, Method::GET, "/api/v2/eventLogs", None)
        .await
        .expect_status(StatusCode::FORBIDDEN);
}
