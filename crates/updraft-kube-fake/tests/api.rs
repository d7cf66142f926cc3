//! The fake API server, driven by the real kube-rs client over HTTP.

use std::time::Duration;

use futures::{AsyncBufReadExt as _, StreamExt as _, TryStreamExt as _};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use serde_json::json;
use updraft_kube_fake::FakeKube;

const WAIT: Duration = Duration::from_secs(20);

fn pod(name: &str, image: &str, command: &[&str]) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "test", "name": name}},
        "spec": {"containers": [{"name": "main", "image": image, "command": command}]},
    }))
    .unwrap()
}

fn phase(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

async fn api(fake: &FakeKube, ns: &str) -> Api<Pod> {
    Api::namespaced(kube::Client::try_from(fake.client_config()).unwrap(), ns)
}

fn api_code(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(status) => (status.code, status.reason),
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn create_get_list_conflicts_and_missing_pods() {
    let fake = FakeKube::start().await;
    let pods = api(&fake, "team").await;
    pods.create(&PostParams::default(), &pod("a", "busybox", &["true"]))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("b", "busybox", &["true"]))
        .await
        .unwrap();
    let e = pods
        .create(&PostParams::default(), &pod("a", "busybox", &["true"]))
        .await
        .unwrap_err();
    assert_eq!(api_code(e), (409, "AlreadyExists".into()));
    assert_eq!(
        pods.get("a").await.unwrap().metadata.namespace.as_deref(),
        Some("team")
    );
    let e = pods.get("zzz").await.unwrap_err();
    assert_eq!(api_code(e), (404, "NotFound".into()));
    let e = pods
        .delete("zzz", &DeleteParams::default())
        .await
        .unwrap_err();
    assert_eq!(api_code(e), (404, "NotFound".into()));
    let listed = pods
        .list(&ListParams::default().labels("name=b"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let listed = pods
        .list(&ListParams::default().fields("metadata.name=a"))
        .await
        .unwrap();
    assert_eq!(listed.items[0].metadata.name.as_deref(), Some("a"));
    let other = api(&fake, "elsewhere").await;
    assert!(
        other
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let e = pods
        .create(
            &PostParams::default(),
            &pod("Bad_Name", "busybox", &["true"]),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(e).0, 422);
}

#[tokio::test]
async fn unknown_namespaces_are_refused() {
    let fake = FakeKube::start_with_namespaces(&["team"]).await;
    let pods = api(&fake, "nope").await;
    let e = pods
        .create(&PostParams::default(), &pod("a", "busybox", &["true"]))
        .await
        .unwrap_err();
    assert_eq!(api_code(e), (404, "NotFound".into()));
}

#[tokio::test]
async fn a_pod_runs_its_command_and_its_log_follows_live() {
    let fake = FakeKube::start().await;
    let pods = api(&fake, "team").await;
    let mut watch = pods
        .watch(&WatchParams::default().fields("metadata.name=p"), "0")
        .await
        .unwrap()
        .boxed();
    pods.create(
        &PostParams::default(),
        &pod(
            "p",
            "busybox",
            &["sh", "-c", "echo one; echo two >&2; exec sleep 3600"],
        ),
    )
    .await
    .unwrap();
    fake.wait_for(WAIT, |p| p.iter().any(|p| phase(p) == "Running"))
        .await;
    let logs = pods
        .log_stream(
            "p",
            &LogParams {
                follow: true,
                container: Some("main".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut lines = logs.lines();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let line = tokio::time::timeout(WAIT, lines.try_next())
            .await
            .unwrap()
            .unwrap();
        seen.extend(line);
    }
    seen.sort();
    assert_eq!(seen, ["one", "two"], "stdout and stderr, while it runs");
    fake.finish_pod("team", "p", 3);
    let rest: Vec<String> = tokio::time::timeout(WAIT, lines.try_collect())
        .await
        .unwrap()
        .unwrap();
    assert!(
        rest.is_empty(),
        "the stream ends with the container: {rest:?}"
    );
    let done = fake.wait_for(WAIT, |p| phase(&p[0]) == "Failed").await;
    let state = done[0]
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .clone();
    assert_eq!(state.state.unwrap().terminated.unwrap().exit_code, 3);
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    let mut kinds = Vec::new();
    while let Some(event) = tokio::time::timeout(WAIT, watch.next()).await.unwrap() {
        let (kind, phase_now) = match event.unwrap() {
            WatchEvent::Added(p) => ("ADDED", phase(&p)),
            WatchEvent::Modified(p) => ("MODIFIED", phase(&p)),
            WatchEvent::Deleted(p) => ("DELETED", phase(&p)),
            other => panic!("{other:?}"),
        };
        kinds.push(format!("{kind} {phase_now}"));
        if kind == "DELETED" {
            break;
        }
    }
    assert_eq!(kinds.first().map(String::as_str), Some("ADDED Pending"));
    assert!(kinds.contains(&"MODIFIED Running".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"MODIFIED Failed".to_owned()), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("DELETED Failed"));
}

#[tokio::test]
async fn the_runtime_watcher_lists_then_watches() {
    use kube::runtime::watcher;
    let fake = FakeKube::start().await;
    let pods = api(&fake, "team").await;
    pods.create(&PostParams::default(), &pod("w", "busybox", &["true"]))
        .await
        .unwrap();
    let mut events = watcher(
        pods.clone(),
        watcher::Config::default().fields("metadata.name=w"),
    )
    .boxed();
    let mut phases = Vec::new();
    while let Some(event) = tokio::time::timeout(WAIT, events.next()).await.unwrap() {
        if let watcher::Event::Apply(p) | watcher::Event::InitApply(p) = event.unwrap() {
            phases.push(phase(&p));
            if phases.last().map(String::as_str) == Some("Succeeded") {
                break;
            }
        }
    }
    assert_eq!(
        phases.last().map(String::as_str),
        Some("Succeeded"),
        "{phases:?}"
    );
}

#[tokio::test]
async fn deleting_a_running_pod_kills_it_and_a_kubeconfig_reaches_the_server() {
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&path).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(kube::Client::try_from(config).unwrap());
    pods.create(
        &PostParams::default(),
        &pod("s", "busybox", &["sleep", "3600"]),
    )
    .await
    .unwrap();
    fake.wait_for(WAIT, |p| p.iter().any(|p| phase(p) == "Running"))
        .await;
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    pods.delete("s", &params).await.unwrap();
    fake.wait_for(WAIT, |p| p.is_empty()).await;
}

#[tokio::test]
async fn failure_modes_follow_the_image() {
    let fake = FakeKube::start().await;
    let pods = api(&fake, "team").await;
    for (name, image) in [
        ("pull", "x/err-image-pull"),
        ("sched", "unschedulable"),
        ("oom", "oom"),
        ("evict", "evicted"),
    ] {
        pods.create(&PostParams::default(), &pod(name, image, &["true"]))
            .await
            .unwrap();
    }
    let get = |name: &str| fake.pod("team", name).unwrap();
    let waiting = |p: &Pod| {
        p.status.as_ref()?.container_statuses.as_ref()?[0]
            .state
            .as_ref()?
            .waiting
            .as_ref()?
            .reason
            .clone()
    };
    fake.wait_for(WAIT, |_| {
        waiting(&get("pull")).as_deref() == Some("ImagePullBackOff")
    })
    .await;
    let sched = get("sched").status.unwrap().conditions.unwrap();
    assert_eq!(sched[0].reason.as_deref(), Some("Unschedulable"));
    fake.wait_for(WAIT, |_| {
        phase(&get("oom")) == "Failed" && phase(&get("evict")) == "Failed"
    })
    .await;
    let oom = get("oom").status.unwrap().container_statuses.unwrap()[0].clone();
    let t = oom.state.unwrap().terminated.unwrap();
    assert_eq!((t.reason.as_deref(), t.exit_code), (Some("OOMKilled"), 137));
    assert_eq!(
        get("evict").status.unwrap().reason.as_deref(),
        Some("Evicted")
    );
}

#[tokio::test]
async fn a_vanished_pod_cuts_watches_and_old_resource_versions_are_gone() {
    let fake = FakeKube::start().await;
    let pods = api(&fake, "team").await;
    let created = pods
        .create(
            &PostParams::default(),
            &pod("v", "busybox", &["sleep", "3600"]),
        )
        .await
        .unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    let mut open = pods
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    fake.vanish_pod("team", "v");
    // The open watch ends without telling of the deletion...
    loop {
        match tokio::time::timeout(WAIT, open.next()).await.unwrap() {
            None => break,
            Some(Ok(WatchEvent::Deleted(_))) => panic!("the deletion was not to be seen"),
            Some(_) => {}
        }
    }
    // ...a watch from before it is refused with 410 Gone, in the API server's wire form...
    let mut again = pods
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(WAIT, again.next()).await.unwrap() {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    // ...and only a new list shows that the pod is gone.
    assert!(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(pods.get_opt("v").await.unwrap().is_none());
}

fn secret(name: &str, labels: serde_json::Value, string_data: serde_json::Value) -> Secret {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "labels": labels},
        "stringData": string_data,
    }))
    .unwrap()
}

fn data_of(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()?
        .get(key)
        .map(|v| String::from_utf8(v.0.clone()).unwrap())
}

#[tokio::test]
async fn secrets_are_created_read_listed_patched_and_deleted() {
    let fake = FakeKube::start_with_namespaces(&["team"]).await;
    let client = kube::Client::try_from(fake.client_config()).unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "team");
    let mut first = secret(
        "one",
        json!({"app": "x", "try": "1"}),
        json!({"uri": "pg://u:p@h"}),
    );
    first.data = Some([("other".to_owned(), ByteString(b"kept".to_vec()))].into());
    secrets
        .create(&PostParams::default(), &first)
        .await
        .unwrap();
    secrets
        .create(
            &PostParams::default(),
            &secret("two", json!({"app": "y"}), json!({"k": "v"})),
        )
        .await
        .unwrap();

    // stringData lands in data, base64 on the wire.
    let raw = fake.requests().len();
    let got = secrets.get("one").await.unwrap();
    assert!(got.string_data.is_none());
    assert_eq!(data_of(&got, "uri").as_deref(), Some("pg://u:p@h"));
    assert_eq!(data_of(&got, "other").as_deref(), Some("kept"));
    assert_eq!(
        fake.requests()[raw],
        "GET /api/v1/namespaces/team/secrets/one"
    );
    let wire = reqwest_free_get(&fake.url(), "/api/v1/namespaces/team/secrets/one").await;
    assert!(wire.contains("\"uri\":\"cGc6Ly91OnBAaA==\""), "{wire}");

    let e = secrets
        .create(&PostParams::default(), &secret("one", json!({}), json!({})))
        .await
        .unwrap_err();
    assert_eq!(api_code(e), (409, "AlreadyExists".into()));
    let elsewhere: Api<Secret> = Api::namespaced(client.clone(), "nope");
    let e = elsewhere
        .create(&PostParams::default(), &secret("one", json!({}), json!({})))
        .await
        .unwrap_err();
    assert_eq!(api_code(e), (404, "NotFound".into()));

    let listed = secrets
        .list(&ListParams::default().labels("app=x,try=1"))
        .await
        .unwrap();
    let names: Vec<_> = listed
        .items
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, vec!["one".to_owned()]);

    let patch = json!({"metadata": {"ownerReferences": [{
        "apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u-1"
    }]}});
    secrets
        .patch("one", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let owners = secrets
        .get("one")
        .await
        .unwrap()
        .metadata
        .owner_references
        .unwrap();
    assert_eq!(
        (owners[0].name.as_str(), owners[0].uid.as_str()),
        ("p", "u-1")
    );
    assert_eq!(
        data_of(&secrets.get("one").await.unwrap(), "uri").as_deref(),
        Some("pg://u:p@h")
    );

    secrets
        .delete("one", &DeleteParams::default())
        .await
        .unwrap();
    let e = secrets.get("one").await.unwrap_err();
    assert_eq!(api_code(e), (404, "NotFound".into()));
    assert!(secrets.get_opt("one").await.unwrap().is_none());
    assert_eq!(fake.secrets().len(), 1);
}

/// A GET by hand, to see the body as sent.
async fn reqwest_free_get(url: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let host = url.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut body = String::new();
    tcp.read_to_string(&mut body).await.unwrap();
    body
}

#[tokio::test]
async fn the_kubelet_gives_containers_their_secrets_or_refuses_to_start_them() {
    let fake = FakeKube::start().await;
    let client = kube::Client::try_from(fake.client_config()).unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "team");
    secrets
        .create(
            &PostParams::default(),
            &secret(
                "creds",
                json!({}),
                json!({"A_KEY": "from-ref", "B": "from-envfrom"}),
            ),
        )
        .await
        .unwrap();
    let pods = api(&fake, "team").await;
    let with_env = |name: &str, secret_name: &str, key: &str| -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"containers": [{
                "name": "main", "image": "busybox",
                "command": ["sh", "-c", "echo \"$REFD $PRE_B $PLAIN\""],
                "envFrom": [{"prefix": "PRE_", "secretRef": {"name": "creds"}}],
                "env": [
                    {"name": "PLAIN", "value": "plain"},
                    {"name": "REFD", "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}},
                ],
            }]},
        }))
        .unwrap()
    };
    pods.create(&PostParams::default(), &with_env("ok", "creds", "A_KEY"))
        .await
        .unwrap();
    pods.create(
        &PostParams::default(),
        &with_env("no-secret", "gone", "A_KEY"),
    )
    .await
    .unwrap();
    pods.create(&PostParams::default(), &with_env("no-key", "creds", "Z"))
        .await
        .unwrap();
    let waiting = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c[0].state.as_ref())
            .and_then(|s| s.waiting.clone())
    };
    let pods_now = fake
        .wait_for(WAIT, |ps| {
            ps.iter().all(|p| {
                phase(p) == "Succeeded"
                    || waiting(p)
                        .is_some_and(|w| w.reason.as_deref() == Some("CreateContainerConfigError"))
            })
        })
        .await;
    let by_name = |n: &str| {
        pods_now
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(n))
            .unwrap()
    };
    assert_eq!(phase(by_name("ok")), "Succeeded");
    let log = pods.logs("ok", &LogParams::default()).await.unwrap();
    assert_eq!(log, "from-ref from-envfrom plain\n");
    let missing = waiting(by_name("no-secret")).unwrap();
    assert_eq!(
        missing.message.as_deref(),
        Some("secret \"gone\" not found")
    );
    assert_eq!(phase(by_name("no-secret")), "Pending");
    let no_key = waiting(by_name("no-key")).unwrap();
    assert_eq!(
        no_key.message.as_deref(),
        Some("couldn't find key Z in Secret team/creds")
    );
}

#[tokio::test]
async fn a_deleted_pod_takes_the_secrets_it_owns_with_it() {
    let fake = FakeKube::start().await;
    let client = kube::Client::try_from(fake.client_config()).unwrap();
    let pods = api(&fake, "team").await;
    let created = pods
        .create(&PostParams::default(), &pod("owner", "busybox", &["true"]))
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    let secrets: Api<Secret> = Api::namespaced(client, "team");
    for (name, owner_uid) in [("owned", uid.as_str()), ("other", "another-uid")] {
        let mut s = secret(name, json!({}), json!({"k": "v"}));
        s.metadata.owner_references = Some(vec![
            serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Pod", "name": "owner", "uid": owner_uid
            }))
            .unwrap(),
        ]);
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    secrets
        .create(
            &PostParams::default(),
            &secret("free", json!({}), json!({})),
        )
        .await
        .unwrap();
    pods.delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    fake.wait_for(WAIT, |ps| ps.is_empty()).await;
    let mut left: Vec<String> = fake
        .secrets()
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["free", "other"]);
}
