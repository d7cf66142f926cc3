//! DAG sources through the API and the UI: the bundle a DAG, its versions and its runs were
//! read from (runs pinned to the revision they started at), `GET /api/v2/sources` and its
//! visibility per tenant, sync requests by users and by git hosts' webhooks (GitHub's
//! signature, GitLab's token), the failing-source banner, the Sources page and the DAG page's
//! source.
//!
//! Requests go through the real router over a SQLite store. Three sources are recorded:
//! `platform` mounted at the root, `team-b-dags` of tenant `team_b`, and `quiet` of `team_a`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{TimeZone, Utc};
use hmac::{KeyInit, Mac};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tower::ServiceExt;
use updraft_dag::Dag;
use updraft_server::auth::{Grant, Identity, Role};
use updraft_server::authn::AuthSettings;
use updraft_server::{AppState, ServerConfig, WebhookSecrets};
use updraft_store::{
    AdminStore, BundleRef, LoadedDagRecord, SchedulerStore, SourceRow, SourceStore, SqliteStore,
    UserStore,
};

const PLATFORM_SECRET: &str = "platform-hook-secret";
const REV_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1";
const REV_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2";

fn job(tenant: &str, dag_id: &str, description: &str) -> Dag {
    let yaml = format!(
        "dag_id: {dag_id}\ndescription: {description}\ntasks:\n  - task_id: work\n    bash: echo hi\n"
    );
    updraft_dag::parse_dag(tenant, &format!("{tenant}/{dag_id}.yaml"), &yaml).unwrap()
}

fn source(name: &str, tenant: Option<&str>, revision: &str) -> SourceRow {
    let when = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
    SourceRow {
        name: name.into(),
        tenant: tenant.map(str::to_owned),
        kind: "git".into(),
        url: format!("https://deploy:s3cret-token@git.example.com/{name}.git"),
        reference: Some("main".into()),
        revision: Some(revision.into()),
        revision_url: Some(format!(
            "https://git.example.com/{name}/-/commit/{revision}"
        )),
        last_sync_at: Some(when),
        last_success_at: Some(when),
        failures: 0,
        error: None,
        sync_requested_at: None,
    }
}

struct App {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    state: AppState,
    poke: Arc<Notify>,
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

fn who(name: &str, grants: Vec<Grant>) -> Identity {
    Identity::new(name, grants)
}

impl App {
    async fn new(auth: AuthSettings) -> App {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        store.migrate().await.unwrap();
        store
            .record_source(&source("platform", None, REV_A))
            .await
            .unwrap();
        store
            .record_source(&source("team-b-dags", Some("team_b"), REV_A))
            .await
            .unwrap();
        store
            .record_source(&source("quiet", Some("team_a"), REV_A))
            .await
            .unwrap();
        let poke = Arc::new(Notify::new());
        let state = AppState::new(
            store.clone(),
            ServerConfig {
                keyring: None,
                source_sync: Some(poke.clone()),
                source_webhooks: WebhookSecrets::new([(
                    "platform".to_string(),
                    PLATFORM_SECRET.to_string(),
                )]),
                bind: "127.0.0.1:0".parse().unwrap(),
                dags_folder: dir.path().join("dags"),
                logs_folder: dir.path().join("logs"),
                auth,
            },
            tokio::sync::broadcast::channel(16).0,
            Arc::new(|| {}),
        );
        let app = App {
            _dir: dir,
            store,
            state,
            poke,
        };
        app.load(&job("team_a", "a_job", "first"), Some(("platform", REV_A)))
            .await;
        app
    }

    /// Records `dags`' load as the scheduler would: `a_job` read from `bundle`, `plain_job`
    /// from the plain DAGs folder, `b_job` from `team-b-dags`.
    async fn load(&self, a_job: &Dag, bundle: Option<(&str, &str)>) {
        let plain = job("team_a", "plain_job", "plain");
        let b_job = job("team_b", "b_job", "b");
        let dags = [
            (a_job, bundle),
            (&plain, None),
            (&b_job, Some(("team-b-dags", REV_A))),
        ];
        let versions: Vec<String> = dags.iter().map(|(d, _)| d.version()).collect();
        let records: Vec<LoadedDagRecord<'_>> = dags
            .iter()
            .zip(&versions)
            .map(|((dag, bundle), version)| LoadedDagRecord {
                dag,
                version,
                source: "source",
                bundle: bundle.map(|(name, version)| BundleRef {
                    name,
                    version: Some(version),
                }),
            })
            .collect();
        self.store
            .sync_dags(&records, &[], false, Utc::now())
            .await
            .unwrap();
    }

    async fn send(
        &self,
        identity: Option<&Identity>,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(Body::from(body.to_string())).unwrap();
        if let Some(identity) = identity {
            request.extensions_mut().insert(identity.clone());
        }
        let response = updraft_server::router(self.state.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, identity: &Identity, uri: &str) -> Reply {
        self.send(Some(identity), Method::GET, uri, &[], "").await
    }

    async fn post(&self, identity: &Identity, uri: &str, body: Value) -> Reply {
        let json = [(header::CONTENT_TYPE.as_str(), "application/json")];
        self.send(Some(identity), Method::POST, uri, &json, &body.to_string())
            .await
    }

    async fn requested(&self, name: &str) -> bool {
        let source = self.store.source(name).await.unwrap().unwrap();
        source.sync_requested_at.is_some()
    }
}

fn commit_url(name: &str, revision: &str) -> String {
    format!("https://git.example.com/{name}/-/commit/{revision}")
}

/// `text` as the pages' autoescaping writes it into an attribute.
fn escaped(text: &str) -> String {
    text.replace('/', "&#x2f;")
}

#[tokio::test]
async fn dags_versions_and_runs_carry_the_bundle_they_were_read_from() {
    let app = App::new(AuthSettings::disabled()).await;
    let admin = Identity::local_admin();
    let dag = app.get(&admin, "/api/v2/dags/a_job").await.json();
    assert_eq!(dag["bundle_name"], "platform");
    assert_eq!(dag["bundle_version"], REV_A);
    let plain = app.get(&admin, "/api/v2/dags/plain_job").await.json();
    assert_eq!(
        plain["bundle_name"], "dags-folder",
        "Airflow's default bundle"
    );
    assert_eq!(plain["bundle_version"], Value::Null);

    app.post(
        &admin,
        "/api/v2/dags/a_job/dagRuns",
        json!({"dag_run_id": "at_a"}),
    )
    .await
    .expect(StatusCode::OK);
    // The source moves to B with a changed DAG; a run started now reads B, the first keeps A.
    app.store
        .record_source(&source("platform", None, REV_B))
        .await
        .unwrap();
    app.load(&job("team_a", "a_job", "second"), Some(("platform", REV_B)))
        .await;
    app.post(
        &admin,
        "/api/v2/dags/a_job/dagRuns",
        json!({"dag_run_id": "at_b"}),
    )
    .await
    .expect(StatusCode::OK);
    let at_a = app
        .get(&admin, "/api/v2/dags/a_job/dagRuns/at_a")
        .await
        .json();
    let at_b = app
        .get(&admin, "/api/v2/dags/a_job/dagRuns/at_b")
        .await
        .json();
    assert_eq!(at_a["bundle_version"], REV_A);
    assert_eq!(at_b["bundle_version"], REV_B);
    assert_eq!(
        at_a["dag_versions"][0]["bundle_url"],
        commit_url("platform", REV_A),
        "the run's DAG version links to the commit it was read at"
    );
    let runs = app.get(&admin, "/api/v2/dags/a_job/dagRuns").await.json();
    let pinned: Vec<(&str, &str)> = runs["dag_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["dag_run_id"].as_str().unwrap(),
                r["bundle_version"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(pinned, [("at_a", REV_A), ("at_b", REV_B)]);

    let versions = app
        .get(&admin, "/api/v2/dags/a_job/dagVersions")
        .await
        .json();
    let listed: Vec<(i64, &str, &str, &str)> = versions["dag_versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version_number"].as_i64().unwrap(),
                v["bundle_name"].as_str().unwrap(),
                v["bundle_version"].as_str().unwrap(),
                v["bundle_url"].as_str().unwrap(),
            )
        })
        .collect();
    let (url_a, url_b) = (commit_url("platform", REV_A), commit_url("platform", REV_B));
    assert_eq!(
        listed,
        [
            (1, "platform", REV_A, url_a.as_str()),
            (2, "platform", REV_B, url_b.as_str())
        ]
    );
    let details = app.get(&admin, "/api/v2/dags/a_job/details").await.json();
    assert_eq!(details["bundle_version"], REV_B);
    assert_eq!(details["latest_dag_version"]["bundle_url"], url_b);
    let plain_versions = app
        .get(&admin, "/api/v2/dags/plain_job/dagVersions")
        .await
        .json();
    let first = &plain_versions["dag_versions"][0];
    assert_eq!(first["bundle_name"], "dags-folder");
    assert_eq!(first["bundle_url"], Value::Null);
    app.post(&admin, "/api/v2/dags/plain_job/dagRuns", json!({}))
        .await
        .expect(StatusCode::OK);
    let plain_runs = app
        .get(&admin, "/api/v2/dags/plain_job/dagRuns")
        .await
        .json();
    assert_eq!(plain_runs["dag_runs"][0]["bundle_version"], Value::Null);
}

#[tokio::test]
async fn sources_are_listed_to_whom_may_see_them_without_credentials() {
    let app = App::new(AuthSettings::disabled()).await;
    let names = |reply: Reply| -> Vec<String> {
        let list = reply.expect(StatusCode::OK).json();
        let names: Vec<String> = list["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(list["total_entries"], names.len());
        names
    };
    let viewer_a = who("va", vec![Grant::for_tenant(Role::Viewer, "team_a")]);
    let viewer_b = who("vb", vec![Grant::for_tenant(Role::Viewer, "team_b")]);
    let viewer = who("v", vec![Grant::everywhere(Role::Viewer)]);
    let public = who("p", vec![Grant::for_tenant(Role::Public, "team_a")]);
    assert_eq!(
        names(app.get(&viewer_a, "/api/v2/sources").await),
        ["platform", "quiet"]
    );
    assert_eq!(
        names(app.get(&viewer_b, "/api/v2/sources").await),
        ["platform", "team-b-dags"]
    );
    assert_eq!(
        names(app.get(&viewer, "/api/v2/sources").await),
        ["platform", "quiet", "team-b-dags"]
    );
    app.get(&public, "/api/v2/sources")
        .await
        .expect(StatusCode::FORBIDDEN);
    app.get(&public, "/api/v2/sources/platform")
        .await
        .expect(StatusCode::FORBIDDEN);

    let hidden = app
        .get(&viewer_a, "/api/v2/sources/team-b-dags")
        .await
        .expect(StatusCode::NOT_FOUND)
        .json();
    let missing = app
        .get(&viewer_a, "/api/v2/sources/nope")
        .await
        .expect(StatusCode::NOT_FOUND)
        .json();
    assert_eq!(
        hidden["detail"]
            .as_str()
            .unwrap()
            .replace("team-b-dags", "<name>"),
        missing["detail"]
            .as_str()
            .unwrap()
            .replace("nope", "<name>"),
        "another tenant's source reads like a missing one"
    );

    let platform = app.get(&viewer_a, "/api/v2/sources/platform").await;
    assert!(
        !platform.text.contains("s3cret-token") && !platform.text.contains("deploy"),
        "credentials shown: {}",
        platform.text
    );
    let platform = platform.expect(StatusCode::OK).json();
    assert_eq!(platform["url"], "https://git.example.com/platform.git");
    assert_eq!(platform["tenant"], Value::Null);
    assert_eq!(platform["kind"], "git");
    assert_eq!(platform["ref"], "main");
    assert_eq!(platform["revision"], REV_A);
    assert_eq!(platform["revision_url"], commit_url("platform", REV_A));
    assert_eq!(platform["failures"], 0);
    assert_eq!(platform["error"], Value::Null);
    assert_eq!(platform["last_sync_at"], "2026-01-02T03:04:05Z");
}

#[tokio::test]
async fn a_sync_is_asked_for_by_an_op_of_the_sources_tenant_and_pokes_the_scheduler() {
    let app = App::new(AuthSettings::disabled()).await;
    let op_a = who("oa", vec![Grant::for_tenant(Role::Op, "team_a")]);
    let op_b = who("ob", vec![Grant::for_tenant(Role::Op, "team_b")]);
    let user_b = who("ub", vec![Grant::for_tenant(Role::User, "team_b")]);
    let op = who("o", vec![Grant::everywhere(Role::Op)]);

    app.post(&user_b, "/api/v2/sources/team-b-dags/sync", json!({}))
        .await
        .expect(StatusCode::FORBIDDEN);
    app.post(&op_a, "/api/v2/sources/team-b-dags/sync", json!({}))
        .await
        .expect(StatusCode::NOT_FOUND);
    // A source mounted at the root serves every tenant: a global Op's to sync.
    app.post(&op_a, "/api/v2/sources/platform/sync", json!({}))
        .await
        .expect(StatusCode::FORBIDDEN);
    assert!(!app.requested("team-b-dags").await);
    assert!(!app.requested("platform").await);

    let poked = app.poke.notified();
    let accepted = app
        .post(&op_b, "/api/v2/sources/team-b-dags/sync", json!({}))
        .await
        .expect(StatusCode::ACCEPTED)
        .json();
    assert_eq!(accepted["name"], "team-b-dags");
    assert!(accepted["sync_requested_at"].is_string(), "{accepted}");
    tokio::time::timeout(Duration::from_secs(10), poked)
        .await
        .expect("the scheduler in this process is poked");
    assert!(app.requested("team-b-dags").await);
    app.post(&op, "/api/v2/sources/platform/sync", json!({}))
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(
        app.store.take_source_sync_requests().await.unwrap(),
        ["platform", "team-b-dags"]
    );
    app.post(&op, "/api/v2/sources/nope/sync", json!({}))
        .await
        .expect(StatusCode::NOT_FOUND);
}

fn github_signature(secret: &str, body: &str) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn a_git_hosts_webhook_syncs_its_source_alone() {
    let app = App::new(AuthSettings::ephemeral()).await;
    let push = r#"{"ref":"refs/heads/main","after":"bbbb"}"#;
    let signed = github_signature(PLATFORM_SECRET, push);
    let hook = |uri: &'static str, headers: Vec<(&'static str, String)>, body: &'static str| {
        let app = &app;
        async move {
            let mut all: Vec<(&str, &str)> = vec![("content-type", "application/json")];
            all.extend(headers.iter().map(|(n, v)| (*n, v.as_str())));
            app.send(None, Method::POST, uri, &all, body).await
        }
    };
    const SYNC: &str = "/api/v2/sources/platform/sync";

    // Refused: a wrong signature, a changed body, a wrong token, another source's path, any
    // other endpoint, no credentials at all.
    let wrong = github_signature("not the secret", push);
    let refusals = [
        (SYNC, vec![("x-hub-signature-256", wrong)], push),
        (
            SYNC,
            vec![("x-hub-signature-256", signed.clone())],
            r#"{"ref":"refs/heads/evil"}"#,
        ),
        (
            SYNC,
            vec![("x-hub-signature-256", "sha256=zz".into())],
            push,
        ),
        (SYNC, vec![("x-gitlab-token", "guess".into())], push),
        (
            "/api/v2/sources/team-b-dags/sync",
            vec![("x-hub-signature-256", signed.clone())],
            push,
        ),
        (
            "/api/v2/sources/team-b-dags/sync",
            vec![("x-gitlab-token", PLATFORM_SECRET.into())],
            push,
        ),
        (
            "/api/v2/dags/a_job/dagRuns",
            vec![("x-gitlab-token", PLATFORM_SECRET.into())],
            "{}",
        ),
        (SYNC, vec![], push),
    ];
    for (uri, headers, body) in refusals {
        let shown = format!("{uri} {headers:?}");
        let reply = hook(uri, headers, body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{shown}: {}",
            reply.text
        );
        assert!(!reply.text.contains(PLATFORM_SECRET), "{}", reply.text);
    }
    assert!(!app.requested("platform").await);
    assert!(!app.requested("team-b-dags").await);
    let get = app
        .send(
            None,
            Method::GET,
            "/api/v2/sources/platform",
            &[("x-gitlab-token", PLATFORM_SECRET)],
            "",
        )
        .await;
    assert_eq!(get.status, StatusCode::UNAUTHORIZED, "a webhook only syncs");

    // GitHub's signature of the body.
    hook(SYNC, vec![("x-hub-signature-256", signed)], push)
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(
        app.store.take_source_sync_requests().await.unwrap(),
        ["platform"]
    );
    // GitLab's token.
    hook(SYNC, vec![("x-gitlab-token", PLATFORM_SECRET.into())], push)
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(
        app.store.take_source_sync_requests().await.unwrap(),
        ["platform"]
    );
    // Recorded in the audit log as the webhook's.
    let events = app
        .store
        .events(&updraft_store::EventQuery {
            event: Some("sync_source".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .0;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.username == "webhook:platform"));
}

#[tokio::test]
async fn pages_show_failing_sources_the_sources_page_and_the_dags_source() {
    let app = App::new(AuthSettings::disabled()).await;
    let failing = SourceRow {
        failures: 3,
        error: Some("source team-b-dags: could not resolve host git.example.com".into()),
        last_sync_at: Some(Utc::now()),
        ..source("team-b-dags", Some("team_b"), REV_A)
    };
    app.store.record_source(&failing).await.unwrap();
    let viewer_a = who("va", vec![Grant::for_tenant(Role::Viewer, "team_a")]);
    let viewer_b = who("vb", vec![Grant::for_tenant(Role::Viewer, "team_b")]);
    let op_b = who("ob", vec![Grant::for_tenant(Role::Op, "team_b")]);

    for page in ["/dags", "/pools", "/sources", "/dags/b_job"] {
        let seen = app.get(&viewer_b, page).await.expect(StatusCode::OK);
        assert!(
            seen.text.contains("source-alerts")
                && seen.text.contains("could not resolve host git.example.com")
                && seen.text.contains("3 syncs in a row")
                && seen.text.contains("2026-01-02"),
            "{page} shows no banner for team_b: {}",
            seen.text
        );
        let other = app.get(&viewer_a, page).await;
        assert!(
            !other.text.contains("source-alerts") && !other.text.contains("could not resolve"),
            "{page} shows team_b's source to team_a: {}",
            other.text
        );
    }
    // Fixed: the banner goes.
    app.store
        .record_source(&source("team-b-dags", Some("team_b"), REV_B))
        .await
        .unwrap();
    let fixed = app.get(&viewer_b, "/dags").await.expect(StatusCode::OK);
    assert!(!fixed.text.contains("source-alerts"), "{}", fixed.text);

    // The Sources page: revisions linked to their commits; Sync only where allowed.
    let page = app.get(&op_b, "/sources").await.expect(StatusCode::OK).text;
    assert!(
        page.contains(&format!(
            "href=\"{}\"",
            escaped(&commit_url("team-b-dags", REV_B))
        )),
        "{page}"
    );
    let sync_button = |name: &str| {
        let api = escaped(&format!("/api/v2/sources/{name}/sync"));
        format!("data-sync-source=\"{api}\"")
    };
    assert!(page.contains(&sync_button("team-b-dags")), "{page}");
    assert!(!page.contains(&sync_button("platform")), "{page}");
    assert!(!page.contains("s3cret-token"), "{page}");
    assert!(!page.contains("quiet"), "team_a's source shown to team_b");
    let read_only = app.get(&viewer_b, "/sources").await.text;
    assert!(read_only.contains("team-b-dags"));
    assert!(!read_only.contains("data-sync-source"), "{read_only}");

    // The DAG page: its source and revision, linked to the commit.
    let dag_page = app
        .get(&viewer_a, "/dags/a_job")
        .await
        .expect(StatusCode::OK);
    assert!(
        dag_page.text.contains(&format!(
            "href=\"{}\"",
            escaped(&commit_url("platform", REV_A))
        )) && dag_page.text.contains(&REV_A[..12]),
        "{}",
        dag_page.text
    );
    let plain_page = app.get(&viewer_a, "/dags/plain_job").await.text;
    assert!(!plain_page.contains("commit&#x2f;"), "{plain_page}");

    // A run's page: the revision it reads its files from, not the source's newest.
    let admin = Identity::local_admin();
    app.post(
        &admin,
        "/api/v2/dags/a_job/dagRuns",
        json!({"dag_run_id": "pinned"}),
    )
    .await
    .expect(StatusCode::OK);
    app.store
        .record_source(&source("platform", None, REV_B))
        .await
        .unwrap();
    let run_page = app
        .get(&viewer_a, "/dags/a_job/runs/pinned")
        .await
        .expect(StatusCode::OK)
        .text;
    assert!(
        run_page.contains(&format!(
            "Reads its files from source platform at <a class=\"revision\" href=\"{}\"",
            escaped(&commit_url("platform", REV_A))
        )),
        "{run_page}"
    );
}
