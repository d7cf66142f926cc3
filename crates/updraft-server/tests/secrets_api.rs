//! The connections and variables endpoints through the real router over a temporary SQLite
//! store: tenancy (own tenant, another tenant's answered as missing, shared objects for
//! every-tenant grants only), passwords never in a response, values encrypted at rest, masking,
//! and connection tests against a real HTTP server and the suite's PostgreSQL.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::Utc;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use updraft_core::TaskState;
use updraft_secrets::{Keyring, Vault};
use updraft_server::auth::{Grant, Identity, Role};
use updraft_server::{AppState, ServerConfig};
use updraft_store::{
    AdminStore, QueueLimits, ReadStore, SchedulerStore, SecretStore, SqliteStore, TiKey,
    TiTransition,
};

const PASSWORD: &str = "hunter2-very-secret";

const JOB: &str = r#"
tasks:
  - task_id: work
    bash: echo work
"#;

struct App {
    _dir: tempfile::TempDir,
    logs: std::path::PathBuf,
    store: Arc<SqliteStore>,
    keyring: Option<Keyring>,
    router: axum::Router,
    /// Every response body, to check that no secret was ever sent.
    bodies: std::sync::Mutex<Vec<String>>,
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

    fn expect(self, status: StatusCode) -> Reply {
        assert_eq!(self.status, status, "{}", self.text);
        self
    }
}

impl App {
    async fn new() -> App {
        let keyring = Keyring::parse(&Keyring::generate_key(), "core.fernet_key").unwrap();
        App::with_keyring(Some(keyring)).await
    }

    async fn with_keyring(keyring: Option<Keyring>) -> App {
        let dir = tempfile::tempdir().unwrap();
        let dags = dir.path().join("dags");
        std::fs::create_dir_all(dags.join("team_a")).unwrap();
        std::fs::write(dags.join("team_a").join("a_job.yaml"), JOB).unwrap();
        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        store.migrate().await.unwrap();
        let mut bag = updraft_dag::DagBag::with_options(&dags, Default::default());
        bag.refresh();
        updraft_runs::record_dag_bag(store.as_ref(), &bag, true, Utc::now())
            .await
            .unwrap();
        let state = AppState::new(
            store.clone(),
            ServerConfig {
                keyring: keyring.clone(),
                source_sync: None,
                source_webhooks: Default::default(),
                bind: "127.0.0.1:0".parse().unwrap(),
                dags_folder: dags,
                logs_folder: dir.path().join("logs"),
                auth: updraft_server::authn::AuthSettings::disabled(),
            },
            tokio::sync::broadcast::channel(16).0,
            Arc::new(|| {}),
        );
        App {
            logs: dir.path().join("logs"),
            _dir: dir,
            store,
            keyring,
            router: updraft_server::router(state),
            bodies: Default::default(),
        }
    }

    fn vault(&self) -> Vault {
        Vault::new(self.store.clone(), self.keyring.clone().unwrap())
    }

    async fn send(&self, who: &Identity, method: Method, uri: &str, body: Option<Value>) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(b) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let mut request = builder.body(body).unwrap();
        request.extensions_mut().insert(who.clone());
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        self.bodies.lock().unwrap().push(text.clone());
        Reply { status, text }
    }

    fn assert_never_sent(&self, secret: &str) {
        let bodies = self.bodies.lock().unwrap();
        assert!(!bodies.is_empty());
        for body in bodies.iter() {
            assert!(
                !body.contains(secret),
                "a response carried a secret: {body}"
            );
        }
    }
}

fn op_of(tenant: &str) -> Identity {
    Identity::new(
        format!("op_{tenant}"),
        vec![Grant::for_tenant(Role::Op, tenant)],
    )
}

fn global_op() -> Identity {
    Identity::new("op", vec![Grant::everywhere(Role::Op)])
}

fn admin() -> Identity {
    Identity::new("root", vec![Grant::everywhere(Role::Admin)])
}

fn db_connection(id: &str) -> Value {
    json!({
        "connection_id": id,
        "conn_type": "postgres",
        "host": "db.internal",
        "login": "etl",
        "password": PASSWORD,
        "port": 5432,
        "schema": "warehouse",
        "extra": json!({"sslmode": "require", "api_token": "tok-abcdef-123"}).to_string(),
    })
}

#[tokio::test]
async fn a_tenant_op_manages_its_own_connections() {
    let app = App::new().await;
    let op_a = op_of("team_a");
    let created = app
        .send(
            &op_a,
            Method::POST,
            "/api/v2/connections",
            Some(db_connection("warehouse")),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(created["team_name"], "team_a");
    assert_eq!(created["password"], "***");
    let extra: Value = serde_json::from_str(created["extra"].as_str().unwrap()).unwrap();
    assert_eq!(extra, json!({"sslmode": "require", "api_token": "***"}));

    let got = app
        .send(&op_a, Method::GET, "/api/v2/connections/warehouse", None)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(got["host"], "db.internal");
    assert_eq!(got["port"], 5432);
    let list = app
        .send(&op_a, Method::GET, "/api/v2/connections", None)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(list["total_entries"], 1);
    assert_eq!(list["connections"][0]["connection_id"], "warehouse");

    app.send(
        &op_a,
        Method::POST,
        "/api/v2/connections",
        Some(db_connection("warehouse")),
    )
    .await
    .expect(StatusCode::CONFLICT);
    app.send(&op_a, Method::DELETE, "/api/v2/connections/warehouse", None)
        .await
        .expect(StatusCode::NO_CONTENT);
    app.send(&op_a, Method::GET, "/api/v2/connections/warehouse", None)
        .await
        .expect(StatusCode::NOT_FOUND);
    app.assert_never_sent(PASSWORD);
    app.assert_never_sent("tok-abcdef-123");
}

#[tokio::test]
async fn another_tenants_connection_reads_exactly_as_a_missing_one() {
    let app = App::new().await;
    app.send(
        &op_of("team_a"),
        Method::POST,
        "/api/v2/connections",
        Some(db_connection("db")),
    )
    .await
    .expect(StatusCode::CREATED);
    let stranger = Identity::new("b_admin", vec![Grant::for_tenant(Role::Admin, "team_b")]);
    for (method, body) in [
        (Method::GET, None),
        (Method::PATCH, Some(json!({"host": "evil"}))),
        (Method::DELETE, None),
    ] {
        let hidden = app
            .send(
                &stranger,
                method.clone(),
                "/api/v2/connections/db",
                body.clone(),
            )
            .await
            .expect(StatusCode::NOT_FOUND);
        let missing = app
            .send(
                &stranger,
                method.clone(),
                "/api/v2/connections/zz",
                body.clone(),
            )
            .await
            .expect(StatusCode::NOT_FOUND);
        assert_eq!(
            hidden.json()["detail"]
                .as_str()
                .unwrap()
                .replace("`db`", "`zz`"),
            missing.json()["detail"].as_str().unwrap(),
            "{method}"
        );
        // Naming the tenant does not help.
        app.send(
            &stranger,
            method,
            "/api/v2/connections/db?team_name=team_a",
            body,
        )
        .await
        .expect(StatusCode::NOT_FOUND);
    }
    let list = app
        .send(&stranger, Method::GET, "/api/v2/connections", None)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(list["total_entries"], 0, "{list}");
    // Creating one for a tenant the caller has no role in is refused.
    let mut body = db_connection("other");
    body["team_name"] = json!("team_a");
    app.send(&stranger, Method::POST, "/api/v2/connections", Some(body))
        .await
        .expect(StatusCode::FORBIDDEN);
    // Untouched for its own tenant.
    let got = app
        .send(
            &op_of("team_a"),
            Method::GET,
            "/api/v2/connections/db",
            None,
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(got["host"], "db.internal");
}

#[tokio::test]
async fn shared_objects_need_a_grant_for_every_tenant() {
    let app = App::new().await;
    let op = global_op();
    let shared = app
        .send(
            &op,
            Method::POST,
            "/api/v2/variables",
            Some(json!({"key": "region", "value": "eu"})),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(
        shared["team_name"],
        Value::Null,
        "a global Op's variable is shared"
    );
    let op_a = op_of("team_a");
    app.send(&op_a, Method::GET, "/api/v2/variables/region", None)
        .await
        .expect(StatusCode::NOT_FOUND);
    app.send(
        &op_a,
        Method::GET,
        "/api/v2/variables/region?team_name=*",
        None,
    )
    .await
    .expect(StatusCode::NOT_FOUND);
    app.send(
        &op_a,
        Method::POST,
        "/api/v2/variables",
        Some(json!({"key": "x", "value": "1", "team_name": "*"})),
    )
    .await
    .expect(StatusCode::FORBIDDEN);
    let listed = app
        .send(&op_a, Method::GET, "/api/v2/variables", None)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(listed["total_entries"], 0, "{listed}");

    // The same key in a tenant and shared: a caller who sees both must say which.
    app.send(
        &op_a,
        Method::POST,
        "/api/v2/variables",
        Some(json!({"key": "region", "value": "us"})),
    )
    .await
    .expect(StatusCode::CREATED);
    let ambiguous = app
        .send(&op, Method::GET, "/api/v2/variables/region", None)
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    let detail = ambiguous["detail"].as_str().unwrap();
    assert!(
        detail.contains("team_a") && detail.contains('*'),
        "{detail}"
    );
    let mine = app
        .send(
            &op,
            Method::GET,
            "/api/v2/variables/region?team_name=team_a",
            None,
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(mine["value"], "us");
    let theirs = app
        .send(
            &op,
            Method::GET,
            "/api/v2/variables/region?team_name=*",
            None,
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(theirs["value"], "eu");
    // The tenant Op sees only its own, without naming it.
    let own = app
        .send(&op_a, Method::GET, "/api/v2/variables/region", None)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(own["value"], "us");
    app.send(
        &op,
        Method::DELETE,
        "/api/v2/variables/region?team_name=*",
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert!(
        app.vault()
            .variable(None, "region")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        app.vault()
            .variable(Some("team_a"), "region")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn patching_keeps_the_password_unless_it_is_given() {
    let app = App::new().await;
    let op_a = op_of("team_a");
    app.send(
        &op_a,
        Method::POST,
        "/api/v2/connections",
        Some(db_connection("db")),
    )
    .await
    .expect(StatusCode::CREATED);
    // What a client was shown, sent back with a change.
    let mut shown = app
        .send(&op_a, Method::GET, "/api/v2/connections/db", None)
        .await
        .expect(StatusCode::OK)
        .json();
    shown["host"] = json!("db2.internal");
    shown.as_object_mut().unwrap().remove("team_name");
    let patched = app
        .send(&op_a, Method::PATCH, "/api/v2/connections/db", Some(shown))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(patched["host"], "db2.internal");
    let stored = app
        .vault()
        .connection(Some("team_a"), "db")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.password.as_deref(), Some(PASSWORD));
    let extra = stored.extra_dejson();
    assert_eq!(
        extra["api_token"], "tok-abcdef-123",
        "a masked extra sent back keeps its value"
    );

    app.send(
        &op_a,
        Method::PATCH,
        "/api/v2/connections/db",
        Some(json!({"port": 6543})),
    )
    .await
    .expect(StatusCode::OK);
    let stored = app
        .vault()
        .connection(Some("team_a"), "db")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.password.as_deref(), Some(PASSWORD));
    assert_eq!(stored.port, Some(6543));
    assert_eq!(stored.host.as_deref(), Some("db2.internal"));

    app.send(
        &op_a,
        Method::PATCH,
        "/api/v2/connections/db?update_mask=password",
        Some(json!({"password": "new-password-1"})),
    )
    .await
    .expect(StatusCode::OK);
    let stored = app
        .vault()
        .connection(Some("team_a"), "db")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.password.as_deref(), Some("new-password-1"));
    app.send(
        &op_a,
        Method::PATCH,
        "/api/v2/connections/db",
        Some(json!({"connection_id": "other"})),
    )
    .await
    .expect(StatusCode::BAD_REQUEST);
    app.assert_never_sent(PASSWORD);
    app.assert_never_sent("new-password-1");
}

#[tokio::test]
async fn values_are_stored_encrypted() {
    let app = App::new().await;
    let op_a = op_of("team_a");
    app.send(
        &op_a,
        Method::POST,
        "/api/v2/connections",
        Some(db_connection("db")),
    )
    .await
    .expect(StatusCode::CREATED);
    app.send(
        &op_a,
        Method::POST,
        "/api/v2/variables",
        Some(json!({"key": "plain_setting", "value": {"rows": 5}})),
    )
    .await
    .expect(StatusCode::CREATED);
    let row = app
        .store
        .connection(Some("team_a"), "db")
        .await
        .unwrap()
        .unwrap();
    assert!(row.is_encrypted && row.is_extra_encrypted);
    let token = row.password.unwrap();
    assert!(!token.contains(PASSWORD));
    let keyring = app.keyring.clone().unwrap();
    assert_eq!(keyring.decrypt(&token, "password").unwrap(), PASSWORD);
    assert!(!row.extra.unwrap().contains("tok-abcdef"));
    let row = app
        .store
        .variable(Some("team_a"), "plain_setting")
        .await
        .unwrap()
        .unwrap();
    assert!(row.is_encrypted);
    assert_eq!(
        keyring.decrypt(&row.value, "value").unwrap(),
        r#"{"rows":5}"#
    );
}

#[tokio::test]
async fn sensitive_variables_are_masked_and_kept_when_sent_back() {
    let app = App::new().await;
    let op_a = op_of("team_a");
    let created = app
        .send(
            &op_a,
            Method::POST,
            "/api/v2/variables",
            Some(json!({"key": "slack_api_key", "value": "xoxb-12345-secret"})),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(created["value"], "***");
    assert_eq!(created["is_encrypted"], true);
    app.send(
        &op_a,
        Method::POST,
        "/api/v2/variables",
        Some(json!({"key": "settings", "value": {"user": "bob", "password": "pw-in-json-1"}})),
    )
    .await
    .expect(StatusCode::CREATED);
    let list = app
        .send(
            &op_a,
            Method::GET,
            "/api/v2/variables?variable_key_pattern=set",
            None,
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(list["total_entries"], 1);
    let value: Value =
        serde_json::from_str(list["variables"][0]["value"].as_str().unwrap()).unwrap();
    assert_eq!(value, json!({"user": "bob", "password": "***"}));
    app.send(
        &op_a,
        Method::PATCH,
        "/api/v2/variables/slack_api_key",
        Some(json!({"value": "***", "description": "the bot"})),
    )
    .await
    .expect(StatusCode::OK);
    let stored = app
        .vault()
        .variable(Some("team_a"), "slack_api_key")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.value, "xoxb-12345-secret");
    assert_eq!(stored.description.as_deref(), Some("the bot"));
    app.assert_never_sent("xoxb-12345-secret");
    app.assert_never_sent("pw-in-json-1");
    // Nor in the audit log.
    let log = app
        .send(&admin(), Method::GET, "/api/v2/eventLogs?limit=100", None)
        .await
        .expect(StatusCode::OK)
        .json();
    let events: Vec<&str> = log["event_logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        events.contains(&"post_variable") && events.contains(&"patch_variable"),
        "{log}"
    );
    app.assert_never_sent("xoxb-12345-secret");
}

#[tokio::test]
async fn every_write_is_audited_without_secrets() {
    let app = App::new().await;
    let op_a = op_of("team_a");
    app.send(
        &op_a,
        Method::POST,
        "/api/v2/connections",
        Some(db_connection("db")),
    )
    .await
    .expect(StatusCode::CREATED);
    app.send(
        &op_a,
        Method::PATCH,
        "/api/v2/connections/db",
        Some(json!({"password": "rotated-pw-9"})),
    )
    .await
    .expect(StatusCode::OK);
    app.send(&op_a, Method::DELETE, "/api/v2/connections/db", None)
        .await
        .expect(StatusCode::NO_CONTENT);
    let log = app
        .send(&admin(), Method::GET, "/api/v2/eventLogs?limit=100", None)
        .await
        .expect(StatusCode::OK)
        .json();
    let entries = log["event_logs"].as_array().unwrap();
    for event in ["post_connection", "patch_connection", "delete_connection"] {
        let entry = entries
            .iter()
            .find(|e| e["event"] == event)
            .unwrap_or_else(|| panic!("no {event} in {log}"));
        assert_eq!(entry["tenant"], "team_a");
        assert_eq!(entry["owner"], "op_team_a");
    }
    app.assert_never_sent(PASSWORD);
    app.assert_never_sent("rotated-pw-9");
    app.assert_never_sent("tok-abcdef-123");
}

#[tokio::test]
async fn run_conf_is_masked_in_responses_and_the_audit_log() {
    let app = App::new().await;
    let user = Identity::new("user_a", vec![Grant::for_tenant(Role::User, "team_a")]);
    app.send(
        &user,
        Method::POST,
        "/api/v2/dags/a_job/dagRuns",
        Some(json!({"dag_run_id": "r1", "conf": {"who": "x", "db_password": "conf-secret-77"}})),
    )
    .await
    .expect(StatusCode::OK);
    let run = app
        .send(&user, Method::GET, "/api/v2/dags/a_job/dagRuns/r1", None)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(run["conf"], json!({"who": "x", "db_password": "***"}));
    app.send(&admin(), Method::GET, "/api/v2/eventLogs", None)
        .await
        .expect(StatusCode::OK);
    app.assert_never_sent("conf-secret-77");
}

#[tokio::test]
async fn without_a_fernet_key_the_endpoints_say_which_setting_to_set() {
    let app = App::with_keyring(None).await;
    for (method, uri, body) in [
        (Method::GET, "/api/v2/connections", None),
        (
            Method::POST,
            "/api/v2/connections",
            Some(db_connection("db")),
        ),
        (Method::GET, "/api/v2/variables/x", None),
        (
            Method::POST,
            "/api/v2/variables",
            Some(json!({"key": "k", "value": "v"})),
        ),
    ] {
        let reply = app
            .send(&global_op(), method, uri, body)
            .await
            .expect(StatusCode::SERVICE_UNAVAILABLE)
            .json();
        assert!(
            reply["detail"]
                .as_str()
                .unwrap()
                .contains("core.fernet_key"),
            "{reply}"
        );
    }
}

/// A local HTTP server answering 200 at `/ok` when the basic credentials are right, 401
/// otherwise.
async fn http_server() -> std::net::SocketAddr {
    use axum::routing::get;
    async fn ok(headers: axum::http::HeaderMap) -> StatusCode {
        let expected = format!("Basic {}", base64_of("svc:http-pw-1"));
        match headers.get(header::AUTHORIZATION) {
            Some(v) if v.to_str().unwrap_or_default() == expected => StatusCode::OK,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new().route("/ok", get(ok));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn testing_an_http_connection_makes_a_request_to_its_host() {
    let app = App::new().await;
    let addr = http_server().await;
    let op_a = op_of("team_a");
    let body = |password: Option<&str>| {
        json!({
            "connection_id": "api",
            "conn_type": "http",
            "host": addr.ip().to_string(),
            "port": addr.port(),
            "schema": "ok",
            "login": "svc",
            "password": password,
        })
    };
    let good = app
        .send(
            &op_a,
            Method::POST,
            "/api/v2/connections/test",
            Some(body(Some("http-pw-1"))),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(good["status"], true, "{good}");
    let bad = app
        .send(
            &op_a,
            Method::POST,
            "/api/v2/connections/test",
            Some(body(Some("wrong"))),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(bad["status"], false, "{bad}");
    assert!(bad["message"].as_str().unwrap().contains("401"), "{bad}");
    // A stored connection is tested with its stored password when none is sent.
    app.send(
        &op_a,
        Method::POST,
        "/api/v2/connections",
        Some(body(Some("http-pw-1"))),
    )
    .await
    .expect(StatusCode::CREATED);
    let stored = app
        .send(
            &op_a,
            Method::POST,
            "/api/v2/connections/test",
            Some(body(Some("***"))),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(stored["status"], true, "{stored}");
    let other = app
        .send(
            &op_a,
            Method::POST,
            "/api/v2/connections/test",
            Some(json!({"connection_id": "s3", "conn_type": "aws"})),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(other["status"], false);
    assert!(
        other["message"].as_str().unwrap().contains("not supported"),
        "{other}"
    );
    // Testing is for those who may create connections.
    let viewer = Identity::new("v", vec![Grant::for_tenant(Role::Viewer, "team_a")]);
    app.send(
        &viewer,
        Method::POST,
        "/api/v2/connections/test",
        Some(body(None)),
    )
    .await
    .expect(StatusCode::FORBIDDEN);
    app.assert_never_sent("http-pw-1");
}

#[tokio::test]
async fn testing_a_postgres_connection_connects_to_it() {
    let url = std::env::var("UPDRAFT_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("UPDRAFT_TEST_POSTGRES_URL is not set: this test needs PostgreSQL (scripts/test)")
    });
    let url = url::Url::parse(&url).unwrap();
    let app = App::new().await;
    let op_a = op_of("team_a");
    let body = |database: &str| {
        json!({
            "connection_id": "pg",
            "conn_type": "postgres",
            "host": url.host_str().unwrap(),
            "port": url.port().unwrap_or(5432),
            "login": url.username(),
            "password": url.password(),
            "schema": database,
        })
    };
    let good = app
        .send(
            &op_a,
            Method::POST,
            "/api/v2/connections/test",
            Some(body("postgres")),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(good["status"], true, "{good}");
    let bad = app
        .send(
            &op_a,
            Method::POST,
            "/api/v2/connections/test",
            Some(body("no_such_database_here")),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(bad["status"], false, "{bad}");
    assert!(
        bad["message"]
            .as_str()
            .unwrap()
            .contains("no_such_database_here"),
        "{bad}"
    );
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

#[tokio::test]
async fn a_log_served_after_the_server_learned_a_secret_shows_it_masked() {
    let app = App::new().await;
    let user = Identity::new("user_a", vec![Grant::for_tenant(Role::Op, "team_a")]);
    app.send(
        &user,
        Method::POST,
        "/api/v2/dags/a_job/dagRuns",
        Some(json!({"dag_run_id": "r1"})),
    )
    .await
    .expect(StatusCode::OK);
    let run = app.store.run("a_job", "r1").await.unwrap().unwrap();
    start(app.store.as_ref(), run.id, "work").await;
    let log = updraft_dag::log_path(&app.logs, "team_a", "a_job", "r1", "work", 1);
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::write(&log, "connecting with log-leaked-pw-5\n").unwrap();
    let mut body = db_connection("leaky");
    body["password"] = json!("log-leaked-pw-5");
    app.send(&user, Method::POST, "/api/v2/connections", Some(body))
        .await
        .expect(StatusCode::CREATED);
    let shown = app
        .send(
            &user,
            Method::GET,
            "/api/v2/dags/a_job/dagRuns/r1/taskInstances/work/logs/1",
            None,
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        shown["content"][0]["event"], "connecting with ***",
        "{shown}"
    );
    app.assert_never_sent("log-leaked-pw-5");
}
