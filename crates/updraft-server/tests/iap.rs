//! Sign-in through Google's Identity-Aware Proxy: assertions signed in the test with generated
//! ES256 keys, whose JWKS a local HTTP server publishes (or a file holds), checked by the
//! verifier and by the middleware that guards every route.

mod external;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use external::{EsKey, JwksServer, now};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use updraft_auth::claims::RoleMapping;
use updraft_auth::{Grant, Role};
use updraft_server::authn::AuthSettings;
use updraft_server::authn::iap::{
    self, ASSERTION_HEADER, GOOGLE_IAP_ISSUER, Iap, IapError, IapSettings,
};
use updraft_server::authn::jwks::{self, KeySource};
use updraft_server::{AppState, ServerConfig};
use updraft_store::{AdminStore, SqliteStore, Store, UserStore};

const AUDIENCE: &str = "/projects/123456789/global/backendServices/987654321";

fn mapping(default: Option<&str>) -> RoleMapping {
    let table = BTreeMap::from([
        ("boss@example.com".to_string(), vec!["Admin".to_string()]),
        (
            "@example.com".to_string(),
            vec!["Viewer@team_a".to_string()],
        ),
        ("data-team".to_string(), vec!["User@team_b".to_string()]),
    ]);
    RoleMapping::parse(&table, default).unwrap()
}

fn settings(keys: KeySource) -> IapSettings {
    IapSettings {
        audience: AUDIENCE.to_string(),
        issuer: GOOGLE_IAP_ISSUER.to_string(),
        keys,
        http_timeout: Duration::from_secs(5),
        min_key_refresh: jwks::MIN_REFRESH,
        claim: None,
        mapping: mapping(None),
    }
}

fn claims(email: &str) -> Value {
    json!({
        "iss": GOOGLE_IAP_ISSUER,
        "aud": AUDIENCE,
        "sub": "accounts.google.com:1234567890",
        "email": email,
        "hd": "example.com",
        "iat": now() - 5,
        "exp": now() + 600,
    })
}

async fn iap_with(key: &EsKey) -> (Iap, JwksServer) {
    let server = JwksServer::start(vec![key.jwk()]).await;
    let iap = Iap::new(settings(KeySource::Url(server.url()))).unwrap();
    (iap, server)
}

#[tokio::test]
async fn a_good_assertion_names_the_user_and_the_mapped_grants() {
    let key = EsKey::generate("key-1");
    let (iap, _server) = iap_with(&key).await;

    let user = iap
        .verify(&key.sign(&claims("Alice@Example.com")))
        .await
        .unwrap();
    assert_eq!(user.email, "alice@example.com");
    assert_eq!(user.grants, [Grant::for_tenant(Role::Viewer, "team_a")]);

    let boss = iap
        .verify(&key.sign(&claims("boss@example.com")))
        .await
        .unwrap();
    assert_eq!(
        boss.grants,
        [
            Grant::everywhere(Role::Admin),
            Grant::for_tenant(Role::Viewer, "team_a")
        ]
    );
}

#[tokio::test]
async fn users_no_entry_maps_get_the_default_or_are_refused() {
    let key = EsKey::generate("key-1");
    let (iap, server) = iap_with(&key).await;
    let stranger = key.sign(&claims("someone@elsewhere.org"));
    match iap.verify(&stranger).await {
        Err(IapError::Unmapped(_)) => {}
        other => panic!("expected Unmapped, got {other:?}"),
    }

    let mut with_default = settings(KeySource::Url(server.url()));
    with_default.mapping = mapping(Some("Viewer@guests"));
    let iap = Iap::new(with_default).unwrap();
    let user = iap.verify(&stranger).await.unwrap();
    assert_eq!(user.grants, [Grant::for_tenant(Role::Viewer, "guests")]);
}

#[tokio::test]
async fn a_configured_claim_is_looked_up_in_the_mapping() {
    let key = EsKey::generate("key-1");
    let server = JwksServer::start(vec![key.jwk()]).await;
    let mut settings = settings(KeySource::Url(server.url()));
    settings.claim = Some("google.groups".parse().unwrap());
    let iap = Iap::new(settings).unwrap();
    let mut assertion = claims("carol@elsewhere.org");
    assertion["google"] = json!({"groups": ["data-team", "other"]});
    let user = iap.verify(&key.sign(&assertion)).await.unwrap();
    assert_eq!(user.grants, [Grant::for_tenant(Role::User, "team_b")]);
}

#[tokio::test]
async fn forged_stale_and_misdirected_assertions_are_refused() {
    let key = EsKey::generate("key-1");
    let (iap, _server) = iap_with(&key).await;
    let good = claims("alice@example.com");

    let mut wrong_audience = good.clone();
    wrong_audience["aud"] = json!("/projects/123456789/global/backendServices/1");
    let mut wrong_issuer = good.clone();
    wrong_issuer["iss"] = json!("https://accounts.google.com");
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 120);
    let mut no_expiry = good.clone();
    no_expiry.as_object_mut().unwrap().remove("exp");
    let mut no_email = good.clone();
    no_email.as_object_mut().unwrap().remove("email");
    let impostor = EsKey::generate("key-1");
    let unknown = EsKey::generate("key-2");
    let mut tampered = key.sign(&good);
    tampered.replace_range(tampered.len() - 6.., "AAAAAA");
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some("key-1".to_string()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &good,
        &jsonwebtoken::EncodingKey::from_secret(b"a guessed secret of thirty-two bytes").unwrap(),
    )
    .unwrap();

    let cases = [
        ("wrong audience", key.sign(&wrong_audience)),
        ("wrong issuer", key.sign(&wrong_issuer)),
        ("expired", key.sign(&expired)),
        ("no expiry", key.sign(&no_expiry)),
        ("no email", key.sign(&no_email)),
        (
            "signed by another key with the same key id",
            impostor.sign(&good),
        ),
        ("signed by a key not published", unknown.sign(&good)),
        ("tampered signature", tampered),
        ("HMAC instead of ES256", hs256),
        ("garbage", "not.a.jwt".to_string()),
        ("empty", String::new()),
        ("huge", "e".repeat(20_000)),
    ];
    for (what, assertion) in cases {
        let outcome = iap.verify(&assertion).await;
        assert!(outcome.is_err(), "{what}: accepted as {outcome:?}");
    }
    assert!(
        iap.verify(&key.sign(&good)).await.is_ok(),
        "the good one still passes"
    );
}

#[tokio::test]
async fn a_new_key_is_fetched_when_first_seen() {
    let old = EsKey::generate("old");
    let server = JwksServer::start(vec![old.jwk()]).await;
    let mut settings = settings(KeySource::Url(server.url()));
    settings.min_key_refresh = Duration::ZERO;
    let iap = Iap::new(settings).unwrap();
    iap.verify(&old.sign(&claims("alice@example.com")))
        .await
        .unwrap();
    iap.verify(&old.sign(&claims("alice@example.com")))
        .await
        .unwrap();
    assert_eq!(server.fetches(), 1, "the keys are cached");

    let new = EsKey::generate("new");
    server.publish(vec![old.jwk(), new.jwk()]);
    iap.verify(&new.sign(&claims("alice@example.com")))
        .await
        .unwrap();
    assert_eq!(
        server.fetches(),
        2,
        "an unknown key id fetched the keys again"
    );
    iap.verify(&old.sign(&claims("alice@example.com")))
        .await
        .unwrap();
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn made_up_key_ids_do_not_make_the_server_fetch_again_and_again() {
    let key = EsKey::generate("key-1");
    let (iap, server) = iap_with(&key).await;
    iap.verify(&key.sign(&claims("alice@example.com")))
        .await
        .unwrap();
    for i in 0..20 {
        let junk = EsKey::generate(&format!("junk-{i}"));
        assert!(
            iap.verify(&junk.sign(&claims("alice@example.com")))
                .await
                .is_err()
        );
    }
    assert_eq!(server.fetches(), 1, "refetching is rate-limited");
}

#[tokio::test]
async fn keys_can_come_from_a_local_file() {
    let key = EsKey::generate("file-key");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iap-keys.json");
    std::fs::write(&path, json!({"keys": [key.jwk()]}).to_string()).unwrap();
    let iap = Iap::new(settings(KeySource::File(path))).unwrap();
    let user = iap
        .verify(&key.sign(&claims("alice@example.com")))
        .await
        .unwrap();
    assert_eq!(user.email, "alice@example.com");
    let other = EsKey::generate("other");
    assert!(
        iap.verify(&other.sign(&claims("alice@example.com")))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_unreachable_key_endpoint_refuses_rather_than_hangs() {
    let key = EsKey::generate("key-1");
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let iap = Iap::new(settings(KeySource::Url(format!("http://{closed}/jwks")))).unwrap();
    let refused = iap
        .verify(&key.sign(&claims("alice@example.com")))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("could not be fetched"),
        "{refused}"
    );
}

/// The server's router over a temporary SQLite store, with IAP configured.
async fn server(iap: Iap) -> (tempfile::TempDir, Arc<SqliteStore>, AppState) {
    server_with(iap, None).await
}

/// [`server`] with `[auth] metrics_token` set.
async fn server_with(
    iap: Iap,
    metrics_token: Option<&str>,
) -> (tempfile::TempDir, Arc<SqliteStore>, AppState) {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("updraft.db"))
            .await
            .unwrap(),
    );
    store.migrate().await.unwrap();
    let mut auth = AuthSettings::ephemeral();
    auth.iap = Some(Arc::new(iap));
    auth.metrics_token = metrics_token.map(str::to_string);
    let state = AppState::new(
        store.clone() as Arc<dyn Store>,
        ServerConfig {
            keyring: None,
            source_sync: None,
            source_webhooks: Default::default(),
            bind: "127.0.0.1:0".parse().unwrap(),
            dags_folder: dags,
            logs_folder: dir.path().join("logs"),
            auth,
        },
        tokio::sync::broadcast::channel(16).0,
        Arc::new(|| {}),
    );
    (dir, store, state)
}

async fn call(state: &AppState, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let mut request = Request::get(path).header("host", "localhost");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = updraft_server::router(state.clone())
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn every_route_but_the_health_check_needs_an_assertion() {
    let key = EsKey::generate("key-1");
    let (iap, _server) = iap_with(&key).await;
    let (_dir, store, state) = server(iap).await;

    let (status, _) = call(&state, iap::HEALTH_PATH, &[]).await;
    assert_eq!(status, StatusCode::OK);

    let (status, page) = call(&state, "/dags", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains(ASSERTION_HEADER), "{page}");
    let (status, body) = call(&state, "/api/v2/dags", &[(ASSERTION_HEADER, "garbage")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let error: Value = serde_json::from_str(&body).expect("the API's JSON error");
    assert!(
        error["detail"].as_str().unwrap().contains("refused"),
        "{error}"
    );
    let stranger = key.sign(&claims("x@elsewhere.org"));
    let (status, page) = call(&state, "/dags", &[(ASSERTION_HEADER, &stranger)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("no role"), "{page}");
    assert!(
        store.user("x@elsewhere.org").await.unwrap().is_none(),
        "refused users are not recorded"
    );

    let assertion = key.sign(&claims("alice@example.com"));
    let (status, body) = call(&state, "/api/v2/dags", &[(ASSERTION_HEADER, &assertion)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, page) = call(&state, "/dags", &[(ASSERTION_HEADER, &assertion)]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("alice@example.com"),
        "the page names the user"
    );
    let alice = store
        .user("alice@example.com")
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(alice.source, "proxy");
    assert_eq!(alice.grants, [Grant::for_tenant(Role::Viewer, "team_a")]);

    // An API token of that (now recorded) user is no way around the proxy.
    let token = updraft_server::authn::token::issue(
        &state.config.auth,
        "alice@example.com",
        chrono::Utc::now(),
    )
    .unwrap();
    let bearer = format!("Bearer {token}");
    let (status, _) = call(&state, "/api/v2/dags", &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// A Prometheus inside the cluster does not come through the proxy: `[auth] metrics_token`
/// reads `/metrics` without an assertion, and opens nothing else.
#[tokio::test]
async fn the_metrics_token_reads_the_metrics_without_the_proxy_and_nothing_else() {
    let key = EsKey::generate("key-1");
    let (iap, _server) = iap_with(&key).await;
    let token = "a-metrics-token-of-32-characters";
    let (_dir, _store, state) = server_with(iap, Some(token)).await;
    let bearer = format!("Bearer {token}");
    let (status, body) = call(&state, "/metrics", &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("airflow_pool_open_slots"), "{body}");
    let (status, _) = call(&state, "/api/v2/dags", &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&state, "/metrics", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
