//! The `kubernetes` secrets backend against the fake API server: each tenant reads the
//! Secrets of its own namespace only.
//!
//! The opt-in test at the end reads a Secret of a real cluster when `UPDRAFT_E2E_KUBECONFIG`
//! is set (as the pod executor's opt-in test).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use updraft_kube_fake::FakeKube;
use updraft_pods::{KubernetesSecrets, PodExecutorConfig};
use updraft_secrets::{SecretsBackend, SecretsError};

fn config() -> PodExecutorConfig {
    let mut config = PodExecutorConfig::default();
    config
        .namespaces
        .insert("a".into(), vec!["team-a".into(), "team-a-extra".into()]);
    config.namespaces.insert("b".into(), vec!["team-b".into()]);
    config
}

fn client(fake: &FakeKube) -> kube::Client {
    kube::Client::try_from(fake.client_config()).unwrap()
}

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        string_data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    }
}

async fn put(fake: &FakeKube, namespace: &str, name: &str, data: &[(&str, &str)]) {
    let api: Api<Secret> = Api::namespaced(client(fake), namespace);
    api.create(&PostParams::default(), &secret(name, data))
        .await
        .unwrap();
}

/// The namespaces the backend asked about.
fn namespaces_asked(fake: &FakeKube) -> Vec<String> {
    fake.requests()
        .iter()
        .filter_map(|r| r.strip_prefix("GET /api/v1/namespaces/"))
        .filter_map(|r| r.split('/').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn variables_come_from_the_tenant_namespace_only() {
    let fake = FakeKube::start().await;
    put(
        &fake,
        "team-a",
        "updraft-var-api-token",
        &[("value", "tok-a")],
    )
    .await;
    put(
        &fake,
        "team-a-extra",
        "updraft-var-elsewhere",
        &[("value", "x")],
    )
    .await;
    let backend = KubernetesSecrets::new(client(&fake), config());
    assert_eq!(backend.name(), "kubernetes");

    let got = backend.variable("a", "API_TOKEN").await.unwrap();
    assert_eq!(got.as_deref(), Some("tok-a"));
    // Tenant b asks for the same key: its own namespace has none, a's is never read.
    let before = namespaces_asked(&fake).len();
    assert_eq!(backend.variable("b", "api_token").await.unwrap(), None);
    assert_eq!(namespaces_asked(&fake)[before..], ["team-b".to_owned()]);
    // Only the first allowed namespace holds a tenant's secrets.
    assert_eq!(backend.variable("a", "elsewhere").await.unwrap(), None);
    // A tenant with no namespace listed uses the one named like itself.
    put(&fake, "c", "updraft-var-k", &[("value", "vc")]).await;
    assert_eq!(
        backend.variable("c", "k").await.unwrap().as_deref(),
        Some("vc")
    );
    assert!(!namespaces_asked(&fake).contains(&"team-a-extra".to_owned()));
}

#[tokio::test]
async fn a_variable_secret_without_its_key_is_an_error_naming_it() {
    let fake = FakeKube::start().await;
    put(&fake, "team-a", "updraft-var-broken", &[("other", "x")]).await;
    let backend = KubernetesSecrets::new(client(&fake), config());
    let e = backend.variable("a", "broken").await.unwrap_err();
    assert!(matches!(e, SecretsError::Format { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("team-a/updraft-var-broken"), "{text}");
    assert!(text.contains("`value`"), "{text}");
}

#[tokio::test]
async fn connections_are_read_from_a_uri_or_json_key() {
    let fake = FakeKube::start().await;
    put(
        &fake,
        "team-a",
        "updraft-conn-orders-db",
        &[("uri", "postgres://app:pw%2Fa@db.a:5432/orders")],
    )
    .await;
    put(
        &fake,
        "team-a",
        "updraft-conn-api",
        &[(
            "json",
            r#"{"conn_type": "http", "host": "api.a", "password": "tok"}"#,
        )],
    )
    .await;
    put(
        &fake,
        "team-b",
        "updraft-conn-orders-db",
        &[("uri", "postgres://b@db.b/x")],
    )
    .await;
    let backend = KubernetesSecrets::new(client(&fake), config());

    let a = backend.connection("a", "orders_db").await.unwrap().unwrap();
    assert_eq!(a.conn_id, "orders_db");
    assert_eq!(a.conn_type, "postgres");
    assert_eq!(a.host.as_deref(), Some("db.a"));
    assert_eq!(a.password.as_deref(), Some("pw/a"));
    assert_eq!(a.port, Some(5432));
    let b = backend.connection("b", "orders_db").await.unwrap().unwrap();
    assert_eq!(b.host.as_deref(), Some("db.b"), "b sees its own, not a's");
    let api = backend.connection("a", "api").await.unwrap().unwrap();
    assert_eq!(
        (api.conn_type.as_str(), api.password.as_deref()),
        ("http", Some("tok"))
    );
    assert!(backend.connection("b", "api").await.unwrap().is_none());
}

#[tokio::test]
async fn a_connection_secret_in_neither_format_is_an_error_naming_it() {
    let fake = FakeKube::start().await;
    put(&fake, "team-a", "updraft-conn-bad", &[("url", "x")]).await;
    let backend = KubernetesSecrets::new(client(&fake), config());
    let e = backend.connection("a", "bad").await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("team-a/updraft-conn-bad"), "{text}");
    assert!(text.contains("neither a `uri` nor a `json` key"), "{text}");
}

#[tokio::test]
async fn an_unreachable_api_server_is_a_backend_error_naming_the_secret() {
    let fake = FakeKube::start().await;
    let client = client(&fake);
    fake.shutdown().await;
    let backend = KubernetesSecrets::new(client, config());
    let e = backend.variable("a", "some_key").await.unwrap_err();
    match &e {
        SecretsError::Backend { backend, message } => {
            assert_eq!(backend, "kubernetes");
            assert!(
                message.contains("Kubernetes Secret team-a/updraft-var-some-key"),
                "{message}"
            );
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
}

/// Opt-in (ignored unless asked for): reads a variable from a Secret of a real cluster. Run
/// with `UPDRAFT_E2E_KUBECONFIG=<kubeconfig> cargo test -p updraft-pods --test
/// secrets_backend -- --ignored`; `UPDRAFT_E2E_NAMESPACE` (default `default`) is the
/// namespace, where the test creates and deletes the Secret `updraft-var-e2e-<time>`.
#[tokio::test]
#[ignore = "needs a real Kubernetes cluster: set UPDRAFT_E2E_KUBECONFIG and pass --ignored"]
async fn e2e_a_variable_from_a_real_cluster() {
    let path = std::env::var("UPDRAFT_E2E_KUBECONFIG")
        .expect("UPDRAFT_E2E_KUBECONFIG names the kubeconfig of the cluster to test against");
    let namespace = std::env::var("UPDRAFT_E2E_NAMESPACE").unwrap_or_else(|_| "default".into());
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let key = format!("e2e_{}", chrono::Utc::now().timestamp_millis());
    let name = format!("updraft-var-{}", key.replace('_', "-"));
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    api.create(
        &PostParams::default(),
        &secret(&name, &[("value", "from-the-cluster")]),
    )
    .await
    .unwrap();
    let mut cfg = PodExecutorConfig::default();
    cfg.namespaces
        .insert("shop".into(), vec![namespace.clone()]);
    let backend = KubernetesSecrets::new(client, cfg);
    let got = backend.variable("shop", &key).await;
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    assert_eq!(got.unwrap().as_deref(), Some("from-the-cluster"));
    assert_eq!(
        backend.variable("shop", "e2e_never_made").await.unwrap(),
        None
    );
}
