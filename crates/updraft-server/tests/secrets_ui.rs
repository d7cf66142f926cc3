//! The connections and variables pages, rendered through the real router over a real
//! (in-memory) store: what a person sees (masked values, no password), the forms' write-only
//! password field and API targets, tenancy, and no inline script or style (CSP).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use updraft_secrets::{Connection, Keyring, Variable, Vault};
use updraft_server::auth::{Grant, Identity, Role};
use updraft_server::{AppState, ServerConfig};
use updraft_store::{AdminStore, SqliteStore, WriteMode};

const PASSWORD: &str = "pg-password-4411";
const TOKEN: &str = "extra-token-9922";

struct Fixture {
    app: axum::Router,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        store.migrate().await.unwrap();
        let keyring = Keyring::parse(&Keyring::generate_key(), "core.fernet_key").unwrap();
        let vault = Vault::new(store.clone(), keyring.clone());
        for tenant in ["team_a", "team_b"] {
            let connection = Connection {
                conn_id: format!("{tenant}_db"),
                conn_type: "postgres".into(),
                host: Some(format!("{tenant}.db.internal")),
                login: Some("etl".into()),
                password: Some(PASSWORD.into()),
                port: Some(5432),
                extra: Some(format!(r#"{{"sslmode":"require","api_token":"{TOKEN}"}}"#)),
                ..Connection::default()
            };
            vault
                .write_connection(Some(tenant), &connection, WriteMode::Create)
                .await
                .unwrap();
            for (key, value) in [("db_password", PASSWORD), ("region", "eu-west-1")] {
                let variable = Variable {
                    key: format!("{tenant}_{key}"),
                    value: value.into(),
                    description: Some("<b>desc</b>".into()),
                };
                vault
                    .write_variable(Some(tenant), &variable, WriteMode::Create)
                    .await
                    .unwrap();
            }
        }
        let state = AppState::new(
            store,
            ServerConfig {
                keyring: Some(keyring),
                source_sync: None,
                source_webhooks: Default::default(),
                bind: "127.0.0.1:0".parse().unwrap(),
                dags_folder: dir.path().join("dags"),
                logs_folder: dir.path().join("logs"),
                auth: updraft_server::authn::AuthSettings::disabled(),
            },
            tokio::sync::broadcast::channel(16).0,
            Arc::new(|| {}),
        );
        Fixture {
            app: updraft_server::router(state),
            _dir: dir,
        }
    }

    async fn get_as(&self, uri: &str, identity: &Identity) -> (StatusCode, String) {
        let request = Request::builder()
            .uri(uri)
            .extension(identity.clone())
            .body(Body::empty())
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(bytes.to_vec()).unwrap();
        (status, body.replace("&#x2f;", "/"))
    }

    async fn page(&self, uri: &str, identity: &Identity) -> String {
        let (status, body) = self.get_as(uri, identity).await;
        assert_eq!(status, StatusCode::OK, "GET {uri}:\n{body}");
        assert!(
            !body.contains(PASSWORD),
            "GET {uri} shows a password:\n{body}"
        );
        assert!(
            !body.contains(TOKEN),
            "GET {uri} shows a secret extra:\n{body}"
        );
        assert_no_inline_code(&body);
        body
    }
}

fn op_a() -> Identity {
    Identity::new("op_a", vec![Grant::for_tenant(Role::Op, "team_a")])
}

/// The CSP forbids inline script and style: every script has a `src`, no element a `style`.
fn assert_no_inline_code(body: &str) {
    for script in body.split("<script").skip(1) {
        let tag = script.split('>').next().unwrap();
        assert!(tag.contains("src="), "an inline script: <script{tag}>");
    }
    assert!(!body.contains("style="), "an inline style");
    assert!(!body.contains("<style"), "an inline style sheet");
    assert!(!body.contains(" onclick="), "an inline handler");
}

#[tokio::test]
async fn the_connections_page_lists_the_tenants_connections_masked() {
    let fixture = Fixture::new().await;
    let body = fixture.page("/connections", &op_a()).await;
    assert!(body.contains("team_a_db"), "{body}");
    assert!(body.contains("team_a.db.internal"));
    assert!(
        !body.contains("team_b_db"),
        "another tenant's connection is listed"
    );
    assert!(
        body.contains("href=\"/connections\" aria-current=\"page\""),
        "the navigation"
    );
    assert!(body.contains("href=\"/variables\""));
    assert!(body.contains("data-delete=\"/api/v2/connections/team_a_db?team_name=team_a\""));
    assert!(body.contains("/connections/team_a_db/edit?team_name=team_a"));
    // A Viewer does not manage connections.
    let viewer = Identity::new("v", vec![Grant::for_tenant(Role::Viewer, "team_a")]);
    let (status, _) = fixture.get_as("/connections", &viewer).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_edit_form_never_holds_the_password() {
    let fixture = Fixture::new().await;
    let body = fixture
        .page("/connections/team_a_db/edit?team_name=team_a", &op_a())
        .await;
    assert!(
        body.contains(r#"<input type="password" id="f-password" name="password" value="""#),
        "{body}"
    );
    assert!(body.contains("(set; leave empty to keep it)"));
    // The tenant goes with a test or a save, so the stored connection is the one meant.
    assert!(body.contains(r#"<input type="hidden" name="team_name" value="team_a">"#));
    assert!(body.contains("data-method=\"PATCH\""));
    assert!(body.contains("data-api=\"/api/v2/connections/team_a_db?team_name=team_a\""));
    assert!(
        body.contains("&quot;api_token&quot;:&quot;***&quot;"),
        "{body}"
    );
    assert!(body.contains("&quot;sslmode&quot;:&quot;require&quot;"));
    // Without the tenant: the only one the caller sees.
    fixture.page("/connections/team_a_db/edit", &op_a()).await;
    // Another tenant's: as missing.
    let (hidden, _) = fixture.get_as("/connections/team_b_db/edit", &op_a()).await;
    let (missing, _) = fixture.get_as("/connections/nope/edit", &op_a()).await;
    assert_eq!(hidden, StatusCode::NOT_FOUND);
    assert_eq!(missing, StatusCode::NOT_FOUND);
    let new = fixture.page("/connections/new", &op_a()).await;
    assert!(new.contains("data-method=\"POST\""));
    assert!(
        new.contains("<option value=\"team_a\">team_a</option>"),
        "{new}"
    );
    assert!(!new.contains("team_b"));
}

#[tokio::test]
async fn the_variables_page_masks_sensitive_values() {
    let fixture = Fixture::new().await;
    let body = fixture.page("/variables", &op_a()).await;
    assert!(body.contains("team_a_region"));
    assert!(
        body.contains("eu-west-1"),
        "a value that is not secret is shown"
    );
    assert!(body.contains("team_a_db_password"));
    assert!(body.contains("<code>***</code>"), "{body}");
    assert!(
        body.contains("&lt;b&gt;desc&lt;/b&gt;"),
        "descriptions are escaped"
    );
    assert!(!body.contains("team_b_region"));
    let form = fixture
        .page("/variables/team_a_db_password/edit", &op_a())
        .await;
    assert!(form.contains(">***</textarea>"), "{form}");
    let global = Identity::new("op", vec![Grant::everywhere(Role::Op)]);
    let new = fixture.page("/variables/new", &global).await;
    assert!(new.contains("shared (every tenant)"), "{new}");
}
