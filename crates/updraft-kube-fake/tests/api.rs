//! The fake API server, driven by the real kube-rs client over HTTP.

use std::time::Duration;

use futures::{AsyncBufReadExt as _, StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, WatchEvent, WatchParams};
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
