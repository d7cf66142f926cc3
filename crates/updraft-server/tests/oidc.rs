//! Sign-in with a real OpenID Connect provider (`oidc-provider-mock` from PyPI, installed into
//! a virtual environment under `target/`), driven over HTTP as a browser would: updraft's
//! login redirect, the provider's sign-in form, the callback with the code. The user's claims
//! are Keycloak-shaped (`resource_access.airflow.roles`), mapped as seed 001 maps them.
//!
//! Needs Python 3 with `venv` and pip access to PyPI; fails with a message when missing.

mod external;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use external::{Provider, RecordingUsers};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use updraft_auth::claims::RoleMapping;
use updraft_auth::{Grant, Role};
use updraft_server::authn::oidc::{self, ClaimToken, Oidc, OidcRoutes, OidcSettings};
use updraft_store::{NewUser, SqliteStore, UserStore as _};

struct Updraft {
    base: String,
    users: Arc<RecordingUsers>,
}

fn mapping(default: Option<&str>) -> RoleMapping {
    let table = BTreeMap::from([
        ("viewer".to_string(), vec!["Admin".to_string()]),
        ("team-a-dev".to_string(), vec!["User@team_a".to_string()]),
        ("auditor".to_string(), vec!["Viewer".to_string()]),
    ]);
    RoleMapping::parse(&table, default).unwrap()
}

fn settings(provider: &Provider, base: &str) -> OidcSettings {
    OidcSettings {
        display_name: "Keycloak".to_string(),
        issuer: provider.issuer.clone(),
        client_id: "airflow".to_string(),
        client_secret: Some("s3cret".to_string()),
        scopes: vec!["openid".into(), "profile".into(), "email".into()],
        claim: "resource_access.airflow.roles".parse().unwrap(),
        claim_token: ClaimToken::Id,
        mapping: mapping(None),
        username_claim: "preferred_username".to_string(),
        redirect_url: format!("{base}{}", oidc::CALLBACK_PATH),
        cookie_key: b"a test key of enough length, 32+".to_vec(),
        secure_cookie: false,
        http_timeout: Duration::from_secs(10),
    }
}

/// updraft's OIDC routes on a loopback port; a sign-in ends on a page naming the user.
async fn updraft(provider: &Provider, change: impl FnOnce(&mut OidcSettings)) -> Updraft {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut settings = settings(provider, &base);
    change(&mut settings);
    let users = Arc::new(RecordingUsers::default());
    let routes = OidcRoutes {
        oidc: Arc::new(Oidc::new(settings).unwrap()),
        store: users.clone(),
        start_session: Arc::new(|username: &str, next: &str| {
            format!("session for {username}, going to {next}").into_response()
        }),
    };
    let app: Router = oidc::router(routes);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Updraft { base, users }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("a redirect, got {}", response.status()))
        .to_str()
        .unwrap()
        .to_string()
}

/// The pending-sign-in cookie `name=value` from a response.
fn pending_cookie(response: &reqwest::Response) -> String {
    let set = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with(oidc::PENDING_COOKIE))
        .expect("the pending-sign-in cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    set.split(';').next().unwrap().to_string()
}

/// Start at updraft, sign in as `sub` at the provider; the provider's redirect back to
/// updraft's callback and the cookie to send with it.
async fn through_the_provider(updraft: &Updraft, sub: &str, next: &str) -> (String, String) {
    let client = http();
    let start = client
        .get(format!("{}{}?next={next}", updraft.base, oidc::LOGIN_PATH))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let authorize = location(&start);
    let cookie = pending_cookie(&start);
    let url = url::Url::parse(&authorize).unwrap();
    let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], "airflow");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43, "a SHA-256 challenge");
    assert!(query["scope"].split(' ').any(|s| s == "openid"));
    assert!(query["state"].len() >= 43 && query["nonce"].len() >= 43);

    let form = client.get(&authorize).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK, "the provider's sign-in form");
    let signed = client
        .post(&authorize)
        .form(&[("sub", sub)])
        .send()
        .await
        .unwrap();
    let back = location(&signed);
    assert!(
        back.starts_with(&format!("{}{}", updraft.base, oidc::CALLBACK_PATH)),
        "{back}"
    );
    (back, cookie)
}

async fn callback(back: &str, cookie: Option<&str>) -> (StatusCode, String) {
    let mut request = http().get(back);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

fn keycloak_user(username: &str, roles: &[&str]) -> Value {
    json!({
        "preferred_username": username,
        "email": format!("{username}@example.com"),
        "given_name": "Alice",
        "family_name": "Liddell",
        "resource_access": {
            "airflow": {"roles": roles},
            "account": {"roles": ["manage-account"]}
        },
        "realm_access": {"roles": ["offline_access"]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_shaped_roles_map_to_grants_and_are_resynced_at_every_sign_in() {
    let provider = Provider::start().await;
    let updraft = updraft(&provider, |_| {}).await;
    provider
        .set_user("u-1", &keycloak_user("alice", &["viewer"]))
        .await;

    let (back, cookie) = through_the_provider(&updraft, "u-1", "/dags?tags=a").await;
    let (status, body) = callback(&back, Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "session for alice, going to /dags?tags=a");
    let recorded = updraft.users.recorded();
    assert_eq!(recorded.len(), 1);
    let (user, grants) = &recorded[0];
    assert_eq!(
        (
            user.username.as_str(),
            user.email.as_str(),
            user.first_name.as_str()
        ),
        ("alice", "alice@example.com", "Alice")
    );
    assert_eq!(user.source, "oidc");
    assert_eq!(
        grants,
        &[Grant::everywhere(Role::Admin)],
        "seed 001: viewer -> Admin"
    );

    // The provider now says something else: the next sign-in replaces the grants.
    provider
        .set_user("u-1", &keycloak_user("alice", &["team-a-dev", "auditor"]))
        .await;
    let (back, cookie) = through_the_provider(&updraft, "u-1", "/").await;
    let (status, body) = callback(&back, Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, grants) = updraft.users.recorded().pop().unwrap();
    assert_eq!(
        grants,
        [
            Grant::everywhere(Role::Viewer),
            Grant::for_tenant(Role::User, "team_a")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmapped_users_are_refused_with_a_page_that_says_why() {
    let provider = Provider::start().await;
    let updraft = updraft(&provider, |_| {}).await;
    provider
        .set_user("u-2", &keycloak_user("bob", &["nobody"]))
        .await;
    let (back, cookie) = through_the_provider(&updraft, "u-2", "/").await;
    let (status, page) = callback(&back, Some(&cookie)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        page.contains("no role for updraft") && page.contains("nobody"),
        "{page}"
    );
    assert!(
        page.contains(oidc::LOGIN_PATH),
        "a way to try again: {page}"
    );
    assert!(updraft.users.recorded().is_empty());

    // With a default grant the same user gets it.
    let lenient = self::updraft(&provider, |s| s.mapping = mapping(Some("Viewer@guests"))).await;
    let (back, cookie) = through_the_provider(&lenient, "u-2", "/").await;
    assert_eq!(callback(&back, Some(&cookie)).await.0, StatusCode::OK);
    let (_, grants) = lenient.users.recorded().pop().unwrap();
    assert_eq!(grants, [Grant::for_tenant(Role::Viewer, "guests")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_not_started_here_replayed_or_swapped_are_refused() {
    let provider = Provider::start().await;
    let updraft = updraft(&provider, |_| {}).await;
    provider
        .set_user("u-3", &keycloak_user("carol", &["viewer"]))
        .await;

    let (back, cookie) = through_the_provider(&updraft, "u-3", "/").await;
    let (status, page) = callback(&back, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no cookie: {page}");
    assert!(page.contains("not started from this browser"), "{page}");

    // Another sign-in's cookie does not fit this callback's state.
    let (_, other_cookie) = through_the_provider(&updraft, "u-3", "/").await;
    assert_eq!(
        callback(&back, Some(&other_cookie)).await.0,
        StatusCode::BAD_REQUEST
    );
    // A forged cookie is refused.
    let forged = format!("{}=eyJhbGciOiJub25lIn0.e30.", oidc::PENDING_COOKIE);
    assert_eq!(
        callback(&back, Some(&forged)).await.0,
        StatusCode::BAD_REQUEST
    );

    assert_eq!(callback(&back, Some(&cookie)).await.0, StatusCode::OK);
    let (status, page) = callback(&back, Some(&cookie)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a code works once: {page}"
    );
    assert_eq!(updraft.users.recorded().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_access_tokens_and_other_issuers_are_refused() {
    let provider = Provider::start().await;
    provider
        .set_user("u-4", &keycloak_user("dave", &["viewer"]))
        .await;

    // The provider's access tokens are opaque: reading roles from them is refused, not
    // guessed.
    let from_access = updraft(&provider, |s| s.claim_token = ClaimToken::Access).await;
    let (back, cookie) = through_the_provider(&from_access, "u-4", "/").await;
    let (status, page) = callback(&back, Some(&cookie)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{page}");
    assert!(page.contains("access token was refused"), "{page}");

    // A discovery document that names another issuer than the one configured (here: the
    // provider's own document, served from another address) is not trusted.
    let mut document: Value = reqwest::get(format!(
        "{}/.well-known/openid-configuration",
        provider.issuer
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let impostor = format!("http://{}", listener.local_addr().unwrap());
    document["issuer"] = json!(provider.issuer);
    let app = Router::new().route(
        "/.well-known/openid-configuration",
        axum::routing::get(move || async move { axum::Json(document) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let elsewhere = updraft(&provider, |s| s.issuer = impostor.clone()).await;
    let response = http()
        .get(format!("{}{}", elsewhere.base, oidc::LOGIN_PATH))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let page = response.text().await.unwrap();
    assert!(page.contains("names issuer"), "{page}");

    // A provider that does not answer: a clear page, not a hang or a 500.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = updraft(&provider, |s| s.issuer = format!("http://{closed}")).await;
    let response = http()
        .get(format!("{}{}", down.base, oidc::LOGIN_PATH))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("could not be reached")
    );
}

/// The same routes over the real SQLite store.
async fn updraft_on(provider: &Provider, store: Arc<SqliteStore>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let routes = OidcRoutes {
        oidc: Arc::new(Oidc::new(settings(provider, &base)).unwrap()),
        store: Arc::new(store),
        start_session: Arc::new(|username: &str, _: &str| {
            format!("session for {username}").into_response()
        }),
    };
    let app: Router = oidc::router(routes);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_recorded_in_the_store_and_never_take_over_local_users() {
    let provider = Provider::start().await;
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    let local = NewUser {
        username: "admin".to_string(),
        password_hash: Some("$argon2id$not-checked-here".to_string()),
        source: "local".to_string(),
        ..NewUser::default()
    };
    store
        .create_user(&local, &[Grant::everywhere(Role::Admin)])
        .await
        .unwrap();
    let base = updraft_on(&provider, store.clone()).await;
    let updraft = Updraft {
        base,
        users: Arc::new(RecordingUsers::default()),
    };

    // The provider calls someone `admin`: refused, and the local admin is untouched.
    provider
        .set_user("u-9", &keycloak_user("admin", &["auditor"]))
        .await;
    let (back, cookie) = through_the_provider(&updraft, "u-9", "/").await;
    let (status, page) = callback(&back, Some(&cookie)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("signs in another way"), "{page}");
    let admin = store.user("admin").await.unwrap().unwrap();
    assert_eq!(admin.source, "local");
    assert_eq!(admin.grants, [Grant::everywhere(Role::Admin)]);

    provider
        .set_user("u-10", &keycloak_user("erin", &["viewer"]))
        .await;
    let (back, cookie) = through_the_provider(&updraft, "u-10", "/").await;
    assert_eq!(
        callback(&back, Some(&cookie)).await,
        (StatusCode::OK, "session for erin".to_string())
    );
    let erin = store.user("erin").await.unwrap().expect("erin recorded");
    assert_eq!(
        (erin.source.as_str(), erin.email.as_str()),
        ("oidc", "erin@example.com")
    );
    assert_eq!(erin.grants, [Grant::everywhere(Role::Admin)]);
    assert!(erin.password_hash.is_none() && erin.last_login.is_some());

    provider
        .set_user("u-10", &keycloak_user("erin", &["team-a-dev"]))
        .await;
    let (back, cookie) = through_the_provider(&updraft, "u-10", "/").await;
    assert_eq!(callback(&back, Some(&cookie)).await.0, StatusCode::OK);
    let erin = store.user("erin").await.unwrap().unwrap();
    assert_eq!(
        erin.grants,
        [Grant::for_tenant(Role::User, "team_a")],
        "re-synced, not added"
    );
}

/// The `name=value` of a cookie a response sets.
fn set_cookie_pair(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("the cookie {name}"))
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_signs_in_through_the_login_pages_link_and_the_session_reaches_the_api() {
    use updraft_server::authn::{AuthSettings, session};
    use updraft_server::{AppState, ServerConfig};
    use updraft_store::{AdminStore as _, Store};

    let provider = Provider::start().await;
    provider
        .set_user("u-9", &keycloak_user("alice", &["viewer"]))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("updraft.db"))
            .await
            .unwrap(),
    );
    store.migrate().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let mut auth = AuthSettings::ephemeral().with_public_url(&base).unwrap();
    auth.oidc = Some(Arc::new(Oidc::new(settings(&provider, &base)).unwrap()));
    let state = AppState::new(
        store.clone() as Arc<dyn Store>,
        ServerConfig {
            keyring: None,
            source_sync: None,
            source_webhooks: Default::default(),
            bind: addr,
            dags_folder: dir.path().join("dags"),
            logs_folder: dir.path().join("logs"),
            auth,
        },
        tokio::sync::broadcast::channel(16).0,
        Arc::new(|| {}),
    );
    let app =
        updraft_server::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = http();

    let anonymous = client
        .get(format!("{base}/api/v2/dags"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let login = client
        .get(format!("{base}/login?next=/dags"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(login.contains("Sign in with Keycloak"), "{login}");
    let link = login
        .split("id=\"oidc-login\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the login page links to the provider")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&");
    assert!(link.starts_with(oidc::LOGIN_PATH), "{link}");

    let start = client.get(format!("{base}{link}")).send().await.unwrap();
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let authorize = location(&start);
    let pending = pending_cookie(&start);
    let signed = client
        .post(&authorize)
        .form(&[("sub", "u-9")])
        .send()
        .await
        .unwrap();
    let back = location(&signed);
    let finished = client
        .get(&back)
        .header(COOKIE, &pending)
        .send()
        .await
        .unwrap();
    assert_eq!(finished.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&finished), "/dags");
    let session = set_cookie_pair(&finished, session::COOKIE);

    let dags = client
        .get(format!("{base}/api/v2/dags"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(
        dags.status(),
        StatusCode::OK,
        "{}",
        dags.text().await.unwrap()
    );
    let alice = store.user("alice").await.unwrap().expect("alice recorded");
    assert_eq!(alice.source, "oidc");
    assert_eq!(alice.grants, [Grant::everywhere(Role::Admin)]);
}
