//! The pod executor against a Kubernetes API server.
//!
//! No Kubernetes API server can run where these tests run, so they use the in-repo fake
//! (`updraft-kube-fake`): the real kube-rs client talks to it over HTTP in the real wire
//! format, and its simulated kubelet runs each pod's container as a local process. The
//! opt-in test at the end runs against a real cluster when `UPDRAFT_E2E_KUBECONFIG` is set.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use tokio::sync::mpsc;
use updraft_dag::DeletePolicy;
use updraft_executor::render::{TemplateContext, render_task};
use updraft_executor::{ExecOutcome, LaunchSpec, RenderedTask, TryEvent, TryKey};
use updraft_kube_fake::FakeKube;
use updraft_pods::{PodExecutor, PodExecutorConfig, TryIdentity};

const WAIT: Duration = Duration::from_secs(20);

struct Harness {
    fake: FakeKube,
    executor: PodExecutor,
    events: mpsc::UnboundedReceiver<TryEvent>,
    dir: tempfile::TempDir,
    /// The run of the next launched try, so that tries launched together differ.
    next_run_pk: std::cell::Cell<i64>,
}

async fn harness(config: impl FnOnce(&mut PodExecutorConfig)) -> Harness {
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = PodExecutorConfig {
        templates_folder: dir.path().join("templates"),
        delete_grace: Duration::ZERO,
        ..PodExecutorConfig::default()
    };
    config(&mut cfg);
    let client = kube::Client::try_from(fake.client_config()).unwrap();
    let (tx, events) = mpsc::unbounded_channel();
    Harness {
        executor: PodExecutor::new(client, cfg, tx),
        fake,
        events,
        dir,
        next_run_pk: std::cell::Cell::new(1),
    }
}

impl Harness {
    /// Launches task `t` of a DAG file of tenant `shop` whose tasks are `tasks_yaml`.
    fn launch(&self, tasks_yaml: &str, run_id: &str) -> (TryKey, PathBuf) {
        self.launch_with(tasks_yaml, run_id, |_| {})
    }

    /// Launches like [`launch`](Self::launch), the rendered task changed by `edit` first.
    fn launch_with(
        &self,
        tasks_yaml: &str,
        run_id: &str,
        edit: impl FnOnce(&mut RenderedTask),
    ) -> (TryKey, PathBuf) {
        let yaml = format!("dag_id: orders\ntasks:\n{tasks_yaml}");
        let dag = updraft_dag::parse_dag("shop", "shop/orders.yaml", &yaml).expect("valid DAG");
        let task = dag.task("t").expect("task t");
        let date = Utc.with_ymd_and_hms(2024, 3, 5, 0, 0, 0).unwrap();
        let ctx = TemplateContext {
            secrets: Default::default(),
            xcoms: Default::default(),
            tenant: "shop".into(),
            dag_id: "orders".into(),
            run_id: run_id.into(),
            task_id: "t".into(),
            try_number: 1,
            map_index: -1,
            mapped: Default::default(),
            logical_date: date,
            data_interval_start: date,
            data_interval_end: date,
            conf: serde_json::json!({}),
            params: serde_json::Map::new(),
            run_type: "manual".into(),
            timezone: chrono_tz::UTC,
        };
        let mut rendered = render_task(&dag, task, &ctx).expect("renders");
        edit(&mut rendered);
        let run_pk = self.next_run_pk.replace(self.next_run_pk.get() + 1);
        let key = TryKey {
            run_pk,
            task_id: "t".into(),
            map_index: -1,
            try_number: 1,
        };
        let log = self.dir.path().join(format!("logs/{run_id}.log"));
        self.executor.launch(
            LaunchSpec {
                key: key.clone(),
                rendered,
                log_path: log.clone(),
                timeout: task.execution_timeout,
            },
            identity(run_id),
        );
        (key, log)
    }

    async fn finished(&mut self) -> ExecOutcome {
        loop {
            let event = tokio::time::timeout(WAIT, self.events.recv())
                .await
                .expect("the try ends in time")
                .expect("events flow");
            if let TryEvent::Finished { outcome, .. } = event {
                return outcome;
            }
        }
    }

    async fn started(&mut self) {
        let event = tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("the try starts in time")
            .expect("events flow");
        assert!(matches!(event, TryEvent::Started { .. }), "{event:?}");
    }

    fn template(&self, rel: &str, text: &str) {
        let path = self.dir.path().join("templates").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn identity(run_id: &str) -> TryIdentity {
    TryIdentity {
        tenant: "shop".into(),
        dag_id: "orders".into(),
        run_id: run_id.into(),
        task_id: "t".into(),
        try_number: 1,
    }
}

/// Reads of single pods (not of their logs): a follower that polled would make them.
fn pod_reads(requests: &[String]) -> usize {
    requests
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/namespaces/shop/pods/") && !r.contains("/log"))
        .count()
}

fn pod_task(pod: &str) -> String {
    format!("  - task_id: t\n    pod: {pod}\n")
}

fn message(outcome: &ExecOutcome) -> &str {
    match outcome {
        ExecOutcome::Failed { message, .. } => message,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until the file contains `text` (the log is written by the executor's own task).
async fn wait_for_text(path: &Path, text: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !read(path).contains(text) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never contained {text:?}: {}",
            path.display(),
            read(path)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_pod_runs_with_rendered_overrides_its_log_is_kept_and_it_is_deleted() {
    let mut h = harness(|_| {}).await;
    let (_, log) = h.launch(
        &pod_task(r#"{image: "busybox:1.36", cmds: ["sh", "-c"], args: ["echo ds={{ ds }} region=$REGION; echo oops >&2"], env: {REGION: jp}}"#),
        "manual__1",
    );
    h.started().await;
    assert_eq!(h.finished().await, ExecOutcome::Success);
    let text = read(&log);
    assert!(text.contains("ds=2024-03-05 region=jp\n"), "{text}");
    assert!(text.contains("oops\n"), "{text}");
    assert!(
        text.contains("finished at") && text.contains("success"),
        "{text}"
    );
    h.fake.wait_for(WAIT, |pods| pods.is_empty()).await;

    let requests = h.fake.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("POST /api/v1/namespaces/shop/pods")),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.contains("/log?") && r.contains("follow=true")),
        "{requests:?}"
    );
    assert_eq!(pod_reads(&requests), 0, "no polling: {requests:?}");
}

#[tokio::test]
async fn pods_carry_deterministic_names_labels_and_the_tenant_namespace() {
    let mut h = harness(|_| {}).await;
    h.launch(
        &pod_task(r#"{image: "busybox", cmds: ["sleep", "3600"], labels: {team: pay}}"#),
        "manual__2",
    );
    h.started().await;
    let pods = h.fake.wait_for(WAIT, |pods| pods.len() == 1).await;
    let pod = &pods[0];
    let name = pod.metadata.name.clone().unwrap();
    assert_eq!(
        name,
        updraft_pods::manifest::pod_name(&identity("manual__2"))
    );
    assert_eq!(pod.metadata.namespace.as_deref(), Some("shop"));
    let labels = pod.metadata.labels.clone().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "updraft");
    assert_eq!(labels["updraft.io/dag-id"], "orders");
    assert_eq!(labels["updraft.io/try-number"], "1");
    assert_eq!(labels["team"], "pay");
    assert_eq!(
        pod.spec.as_ref().unwrap().restart_policy.as_deref(),
        Some("Never")
    );
    h.fake.finish_pod("shop", &name, 0);
    assert_eq!(h.finished().await, ExecOutcome::Success);
}

#[tokio::test]
async fn exit_codes_become_outcomes_and_the_policy_keeps_failed_pods() {
    let mut h = harness(|_| {}).await;
    h.launch(
        &pod_task(r#"{image: busybox, cmds: ["sh", "-c", "exit 99"]}"#),
        "skip",
    );
    assert_eq!(h.finished().await, ExecOutcome::Skipped);
    h.launch(
        &pod_task(r#"{image: busybox, cmds: ["sh", "-c", "exit 3"], delete_pod: on_success}"#),
        "fail",
    );
    let outcome = h.finished().await;
    assert_eq!(message(&outcome), "exit code 3");
    // The skipped pod's deletion completes asynchronously in the API server.
    let pods = h.fake.wait_for(WAIT, |pods| pods.len() == 1).await;
    assert_eq!(
        pods[0].status.as_ref().unwrap().phase.as_deref(),
        Some("Failed")
    );
    h.launch(
        &pod_task(r#"{image: busybox, cmds: ["true"], delete_pod: never}"#),
        "keep",
    );
    assert_eq!(h.finished().await, ExecOutcome::Success);
    let phases = |pods: &[k8s_openapi::api::core::v1::Pod]| {
        let mut phases: Vec<String> = pods
            .iter()
            .filter_map(|p| p.status.as_ref()?.phase.clone())
            .collect();
        phases.sort();
        phases
    };
    // `never` keeps even a succeeded pod (the wait fails if it is deleted).
    h.fake
        .wait_for(WAIT, |pods| phases(pods) == ["Failed", "Succeeded"])
        .await;
}

#[tokio::test]
async fn a_template_is_read_from_the_tenant_folder_and_overridden() {
    let mut h = harness(|_| {}).await;
    h.template(
        "shop/order-service/settle.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  labels: {app: order}\nspec:\n  containers:\n    - name: sidecar\n      image: proxy\n      command: [\"true\"]\n    - name: main\n      image: order:1\n      command: [\"sh\", \"-c\", \"echo from-template\"]\n",
    );
    // The fake runs the first container; the override goes to the named one.
    let (_, log) = h.launch(
        &pod_task(r#"{template: order-service/settle.yaml, container: sidecar, image: "order:{{ ds_nodash }}", cmds: ["sh", "-c", "echo overridden $UPDRAFT_DS"]}"#),
        "tpl",
    );
    h.started().await;
    let pods = h.fake.wait_for(WAIT, |pods| pods.len() == 1).await;
    let spec = pods[0].spec.clone().unwrap();
    assert_eq!(spec.containers[0].image.as_deref(), Some("order:20240305"));
    assert_eq!(spec.containers[1].image.as_deref(), Some("order:1"));
    assert_eq!(pods[0].metadata.labels.as_ref().unwrap()["app"], "order");
    assert_eq!(h.finished().await, ExecOutcome::Success);
    assert!(
        read(&log).contains("overridden 2024-03-05\n"),
        "{}",
        read(&log)
    );
}

#[tokio::test]
async fn escapes_and_foreign_namespaces_are_refused_before_anything_is_created() {
    let mut h = harness(|c| {
        c.namespaces
            .insert("shop".into(), vec!["shop".into(), "shop-batch".into()]);
    })
    .await;
    h.template(
        "billing/secret.yaml",
        "apiVersion: v1\nkind: Pod\nspec:\n  containers: [{name: a, image: b}]\n",
    );
    std::fs::create_dir_all(h.dir.path().join("templates/shop")).unwrap();
    std::os::unix::fs::symlink(
        h.dir.path().join("templates/billing/secret.yaml"),
        h.dir.path().join("templates/shop/link.yaml"),
    )
    .unwrap();
    let (_, log) = h.launch(&pod_task("{template: link.yaml}"), "link");
    let outcome = h.finished().await;
    assert!(
        message(&outcome).contains("outside the tenant's templates folder"),
        "{outcome}"
    );
    assert!(read(&log).contains("no pod was created"), "{}", read(&log));

    h.launch(&pod_task("{image: x, namespace: kube-system}"), "ns");
    let outcome = h.finished().await;
    assert!(
        message(&outcome).contains("namespace `kube-system` is not allowed for tenant `shop`"),
        "{outcome}"
    );

    h.launch(
        &pod_task(r#"{image: busybox, namespace: shop-batch, cmds: ["true"]}"#),
        "ok",
    );
    assert_eq!(h.finished().await, ExecOutcome::Success);
    assert!(
        h.fake
            .requests()
            .iter()
            .filter(|r| r.starts_with("POST"))
            .all(|r| r.contains("/namespaces/shop-batch/")),
        "only the allowed pod was created: {:?}",
        h.fake.requests()
    );
}

#[tokio::test]
async fn failures_name_kubernetes_reasons() {
    let mut h = harness(|c| c.startup_timeout = Duration::from_secs(1)).await;
    let cases = [
        (
            r#"{image: "registry/err-image-pull:1", cmds: ["true"]}"#,
            "ErrImagePull",
        ),
        (
            r#"{image: "unschedulable", cmds: ["true"]}"#,
            "Unschedulable: 0/3 nodes are available",
        ),
        (
            r#"{image: "oom", cmds: ["sh", "-c", "echo eating"]}"#,
            "OOMKilled (exit code 137)",
        ),
        (
            r#"{image: "evicted", cmds: ["true"]}"#,
            "Evicted: The node was low on resource: memory",
        ),
        (
            r#"{spec: {activeDeadlineSeconds: 1, containers: [{name: main, image: busybox, command: ["sleep", "3600"]}]}}"#,
            "DeadlineExceeded",
        ),
    ];
    for (i, (pod, reason)) in cases.iter().enumerate() {
        h.launch(&pod_task(pod), &format!("case{i}"));
        let outcome = h.finished().await;
        assert!(message(&outcome).contains(reason), "{pod}: {outcome}");
    }
}

#[tokio::test]
async fn timeouts_and_kills_delete_the_pod() {
    let mut h = harness(|_| {}).await;
    h.launch(
        "  - task_id: t\n    execution_timeout: 1s\n    pod: {image: busybox, cmds: [\"sleep\", \"3600\"]}\n",
        "timeout",
    );
    h.started().await;
    assert_eq!(h.finished().await, ExecOutcome::TimedOut);
    h.fake.wait_for(WAIT, |pods| pods.is_empty()).await;

    let (key, log) = h.launch(
        &pod_task(r#"{image: busybox, cmds: ["sleep", "3600"], delete_pod: never}"#),
        "kill",
    );
    h.started().await;
    h.fake
        .wait_for(WAIT, |pods| {
            pods.iter()
                .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        })
        .await;
    assert!(h.executor.kill(&key));
    assert_eq!(h.finished().await, ExecOutcome::Killed);
    h.fake.wait_for(WAIT, |pods| pods.is_empty()).await;
    assert!(read(&log).contains("kill requested"), "{}", read(&log));
}

#[tokio::test]
async fn the_log_is_streamed_while_the_pod_runs() {
    let mut h = harness(|_| {}).await;
    let (_, log) = h.launch(
        &pod_task(r#"{image: busybox, cmds: ["sh", "-c", "echo first; exec sleep 3600"]}"#),
        "live",
    );
    h.started().await;
    wait_for_text(&log, "first\n").await;
    let pods = h.fake.pods();
    assert_eq!(
        pods[0].status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    h.fake
        .finish_pod("shop", pods[0].metadata.name.as_deref().unwrap(), 0);
    assert_eq!(h.finished().await, ExecOutcome::Success);
    let requests = h.fake.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.contains("watch=true") && r.contains("labelSelector=app.kubernetes.io")),
        "a running pod is followed by a watch: {requests:?}"
    );
    assert_eq!(pod_reads(&requests), 0, "never polled: {requests:?}");
}

fn posts(requests: &[String]) -> usize {
    requests.iter().filter(|r| r.starts_with("POST")).count()
}

#[tokio::test]
async fn pod_creation_is_tried_again_while_the_api_server_is_briefly_failing() {
    let mut h = harness(|_| {}).await;
    h.fake.fail_next_creates(2, 503, false);
    let (_, log) = h.launch(
        &pod_task(r#"{image: busybox, cmds: ["echo", "ran"]}"#),
        "busy",
    );
    assert_eq!(h.finished().await, ExecOutcome::Success);
    assert!(read(&log).contains("ran\n"), "{}", read(&log));
    assert_eq!(posts(&h.fake.requests()), 3, "two refusals, then created");

    // The answer lost after the pod was made: the next attempt finds it there, as this try's.
    h.fake.fail_next_creates(1, 504, true);
    let (_, log) = h.launch(
        &pod_task(r#"{image: busybox, cmds: ["echo", "once"]}"#),
        "lost",
    );
    assert_eq!(h.finished().await, ExecOutcome::Success);
    assert_eq!(read(&log).matches("once\n").count(), 1, "{}", read(&log));
    assert_eq!(posts(&h.fake.requests()), 5);

    // Failing for longer than the retries last: the try fails, saying so. (Answers of 503
    // are retried by the client for minutes, so this is a 500, which updraft retries.)
    h.fake.fail_next_creates(100, 500, false);
    h.launch(&pod_task(r#"{image: busybox, cmds: ["true"]}"#), "down");
    let outcome = h.finished().await;
    assert!(
        message(&outcome).contains("the pod could not be created"),
        "{outcome:?}"
    );
    assert_eq!(
        posts(&h.fake.requests()),
        5 + 6,
        "one attempt and five more"
    );
}

#[tokio::test]
async fn a_try_killed_while_its_pod_is_being_created_ends_at_once() {
    let mut h = harness(|_| {}).await;
    // Answers of 503 are retried by the client for minutes.
    h.fake.fail_next_creates(1000, 503, false);
    let (key, log) = h.launch(&pod_task(r#"{image: busybox, cmds: ["true"]}"#), "stuck");
    let deadline = tokio::time::Instant::now() + WAIT;
    while posts(&h.fake.requests()) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "creation is retried"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(h.executor.kill(&key));
    assert_eq!(h.finished().await, ExecOutcome::Killed);
    assert!(read(&log).contains("kill requested"), "{}", read(&log));
    assert!(h.fake.pods().is_empty());
    assert_eq!(h.executor.in_flight(), 0);
}

/// Watch requests on the `shop` namespace (the watcher's lists are not counted).
fn watches_of_shop(requests: &[String]) -> usize {
    requests
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/namespaces/shop/pods?") && r.contains("watch=true"))
        .count()
}

#[tokio::test]
async fn pods_in_one_namespace_share_one_watch() {
    let mut h = harness(|_| {}).await;
    let task = pod_task(r#"{image: busybox, cmds: ["sh", "-c", "echo up; exec sleep 3600"]}"#);
    let logs: Vec<PathBuf> = ["a", "b", "c"]
        .iter()
        .map(|run| h.launch(&task, run).1)
        .collect();
    for log in &logs {
        wait_for_text(log, "up\n").await;
    }
    assert_eq!(h.executor.in_flight(), 3);
    for pod in h.fake.pods() {
        h.fake
            .finish_pod("shop", pod.metadata.name.as_deref().unwrap(), 0);
    }
    let mut outcomes = Vec::new();
    while outcomes.len() < 3 {
        outcomes.push(h.finished().await);
    }
    assert!(
        outcomes.iter().all(|o| *o == ExecOutcome::Success),
        "{outcomes:?}"
    );
    let requests = h.fake.requests();
    assert_eq!(
        watches_of_shop(&requests),
        1,
        "three pods, one watch: {requests:?}"
    );
    assert_eq!(h.executor.namespaces_watched(), 1);
    assert_eq!(pod_reads(&requests), 0, "never polled: {requests:?}");
    h.executor.detach().await;
    assert_eq!(
        h.executor.namespaces_watched(),
        0,
        "detach closes the watch"
    );
}

#[tokio::test]
async fn a_pod_deleted_while_the_watch_was_away_is_noticed_after_the_relist() {
    let mut h = harness(|_| {}).await;
    let (_, log) = h.launch(
        &pod_task(r#"{image: busybox, cmds: ["sh", "-c", "echo up; exec sleep 3600"]}"#),
        "vanished",
    );
    h.started().await;
    wait_for_text(&log, "up\n").await;
    let name = h.fake.pods()[0].metadata.name.clone().unwrap();
    h.fake.vanish_pod("shop", &name);
    let outcome = h.finished().await;
    assert!(
        message(&outcome).contains("was deleted before it finished"),
        "{outcome:?}"
    );
    let requests = h.fake.requests();
    let lists = requests
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/namespaces/shop/pods?") && !r.contains("watch="))
        .count();
    assert_eq!(lists, 2, "listed again after 410 Gone: {requests:?}");
    assert_eq!(pod_reads(&requests), 1, "asked once whether it is gone");
}

#[tokio::test]
async fn a_detached_pod_is_found_again_and_followed_to_its_end() {
    let mut h = harness(|c| c.delete_pod = DeletePolicy::Always).await;
    let (key, log) = h.launch(
        &pod_task(r#"{image: busybox, cmds: ["sh", "-c", "echo before; exec sleep 3600"]}"#),
        "restart",
    );
    h.started().await;
    wait_for_text(&log, "before\n").await;
    h.executor.detach().await;
    assert!(
        h.events.try_recv().is_err(),
        "a detached try reports nothing"
    );
    let pods = h.fake.pods();
    assert_eq!(pods.len(), 1, "the pod goes on");

    // A new executor, as after a scheduler restart.
    let client = kube::Client::try_from(h.fake.client_config()).unwrap();
    let (tx, mut events) = mpsc::unbounded_channel();
    let again = PodExecutor::new(client, h.executor.config().clone(), tx);
    let found = again
        .find(&identity("restart"))
        .await
        .unwrap()
        .expect("the pod is found by its labels");
    assert!(again.find(&identity("other-run")).await.unwrap().is_none());
    let listed = again.pods_of_tenant("shop").await.unwrap();
    assert_eq!(listed.keys().collect::<Vec<_>>(), [&identity("restart")]);
    assert!(again.pods_of_tenant("billing").await.unwrap().is_empty());
    again.adopt(key, &found, log.clone(), None, None, false);
    h.fake
        .finish_pod("shop", found.metadata.name.as_deref().unwrap(), 0);
    let outcome = match tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap()
    {
        TryEvent::Finished { outcome, .. } => outcome,
        TryEvent::Started { .. } => panic!("an adopted try is not started again"),
    };
    assert_eq!(outcome, ExecOutcome::Success);
    let text = read(&log);
    assert_eq!(
        text.matches("before\n").count(),
        1,
        "the log is not repeated: {text}"
    );
    assert!(
        text.contains("followed again after a scheduler restart"),
        "{text}"
    );
    h.fake.wait_for(WAIT, |pods| pods.is_empty()).await;
    let posts = h
        .fake
        .requests()
        .iter()
        .filter(|r| r.starts_with("POST"))
        .count();
    assert_eq!(posts, 1, "never launched twice");
}

#[tokio::test]
async fn a_released_try_is_left_running_and_reports_nothing() {
    let mut h = harness(|_| {}).await;
    let (key, log) = h.launch(
        &pod_task(r#"{image: busybox, cmds: ["sh", "-c", "printf no-newline; exec sleep 3600"]}"#),
        "released",
    );
    h.started().await;
    wait_for_text(&log, "no-newline").await;
    assert!(h.executor.release(&key));
    h.executor.detach().await;
    assert_eq!(h.executor.in_flight(), 0);
    assert!(
        h.events.try_recv().is_err(),
        "a released try reports nothing"
    );
    let pods = h.fake.pods();
    assert_eq!(pods.len(), 1, "its pod goes on");
    assert!(!h.executor.kill(&key), "no longer followed");
}

#[tokio::test]
async fn a_log_stream_that_breaks_off_is_resumed_without_repeating_lines() {
    let mut h = harness(|_| {}).await;
    let go = h.dir.path().join("go");
    let script = format!(
        "echo one; while [ ! -e {} ]; do sleep 0.05; done; echo two",
        go.display()
    );
    let (_, log) = h.launch(
        &pod_task(&format!(
            r#"{{image: busybox, cmds: ["sh", "-c", "{script}"]}}"#
        )),
        "cut",
    );
    h.started().await;
    wait_for_text(&log, "one\n").await;
    h.fake.cut_log_streams();
    std::fs::write(&go, "").unwrap();
    assert_eq!(h.finished().await, ExecOutcome::Success);
    let text = read(&log);
    assert_eq!(text.matches("one\n").count(), 1, "{text}");
    assert_eq!(text.matches("two\n").count(), 1, "{text}");
    let log_requests = h
        .fake
        .requests()
        .iter()
        .filter(|r| r.contains("/log?"))
        .count();
    assert!(log_requests >= 2, "the stream was opened again");
}

#[tokio::test]
async fn output_without_a_final_newline_does_not_swallow_the_footer() {
    let mut h = harness(|_| {}).await;
    let (_, log) = h.launch(
        &pod_task(r#"{image: busybox, cmds: ["printf", "partial"]}"#),
        "partial",
    );
    assert_eq!(h.finished().await, ExecOutcome::Success);
    let text = read(&log);
    assert!(
        text.contains("partial\n[updraft] try 1 finished at"),
        "{text}"
    );
}

/// Opt-in (ignored unless asked for): runs one pod on a real cluster. Run with
/// `UPDRAFT_E2E_KUBECONFIG=<kubeconfig> cargo test -p updraft-pods --test pods -- --ignored`
/// (e.g. a kubeconfig from `kind create cluster`); `UPDRAFT_E2E_NAMESPACE` (default
/// `default`) is where the pod runs; the image `busybox:1.36` must be pullable. The pod takes
/// a connection from its try's Secret (so the account needs to create, patch, list and delete
/// Secrets there), prints it masked, and the Secret is gone after the try.
#[tokio::test]
#[ignore = "needs a real Kubernetes cluster: set UPDRAFT_E2E_KUBECONFIG and pass --ignored"]
async fn e2e_a_pod_on_a_real_cluster() {
    let path = std::env::var("UPDRAFT_E2E_KUBECONFIG")
        .expect("UPDRAFT_E2E_KUBECONFIG names the kubeconfig of the cluster to test against");
    let namespace = std::env::var("UPDRAFT_E2E_NAMESPACE").unwrap_or_else(|_| "default".into());
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut events) = mpsc::unbounded_channel();
    let executor_client = client.clone();
    let mut cfg = PodExecutorConfig {
        templates_folder: dir.path().join("templates"),
        ..PodExecutorConfig::default()
    };
    cfg.namespaces
        .insert("shop".into(), vec![namespace.clone()]);
    let executor = PodExecutor::new(executor_client, cfg, tx);
    let yaml = format!(
        "dag_id: orders\ntasks:\n  - task_id: t\n    pod: {{image: \"busybox:1.36\", cmds: [\"sh\", \"-c\", \"echo e2e {{{{ ds }}}} $AIRFLOW_CONN_ORDERS_DB\"], namespace: {namespace}}}\n"
    );
    let dag = updraft_dag::parse_dag("shop", "shop/orders.yaml", &yaml).unwrap();
    let date = Utc.with_ymd_and_hms(2024, 3, 5, 0, 0, 0).unwrap();
    let run_id = format!("e2e__{}", Utc::now().timestamp_millis());
    let ctx = TemplateContext {
        secrets: Default::default(),
        xcoms: Default::default(),
        tenant: "shop".into(),
        dag_id: "orders".into(),
        run_id: run_id.clone(),
        task_id: "t".into(),
        try_number: 1,
        map_index: -1,
        mapped: Default::default(),
        logical_date: date,
        data_interval_start: date,
        data_interval_end: date,
        conf: serde_json::json!({}),
        params: serde_json::Map::new(),
        run_type: "manual".into(),
        timezone: chrono_tz::UTC,
    };
    let mut rendered = render_task(&dag, dag.task("t").unwrap(), &ctx).unwrap();
    with_connection(&mut rendered);
    let log = dir.path().join("e2e.log");
    let key = TryKey {
        run_pk: 1,
        task_id: "t".into(),
        map_index: -1,
        try_number: 1,
    };
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client.clone(), &namespace);
    let selector = format!(
        "updraft.io/run-id={}",
        updraft_pods::manifest::label_value(&run_id)
    );
    executor.launch(
        LaunchSpec {
            key,
            rendered,
            log_path: log.clone(),
            timeout: Some(Duration::from_secs(300)),
        },
        identity(&run_id),
    );
    let outcome = loop {
        match tokio::time::timeout(Duration::from_secs(300), events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            TryEvent::Finished { outcome, .. } => break outcome,
            TryEvent::Started { .. } => {}
        }
    };
    assert_eq!(outcome, ExecOutcome::Success, "{}", read(&log));
    // The connection came through the try's Secret, masked in the log; the Secret is gone.
    assert!(read(&log).contains("e2e 2024-03-05 ***"), "{}", read(&log));
    let left = secrets
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
        .unwrap();
    assert!(left.items.is_empty(), "the try's Secret is deleted");
}

const CONN_URI: &str = "postgres://app:s3cr3t-pw@db.shop:5432/orders";
const PASSWORD: &str = "s3cr3t-pw";

/// A connection as a secret variable of the try, its URI and password to be masked.
fn with_connection(rendered: &mut RenderedTask) {
    rendered.secret_env = vec![("AIRFLOW_CONN_ORDERS_DB".into(), CONN_URI.into())];
    rendered.mask.add(PASSWORD);
}

fn try_secrets(fake: &FakeKube) -> Vec<k8s_openapi::api::core::v1::Secret> {
    fake.secrets()
}

#[tokio::test]
async fn a_pod_takes_secret_variables_from_a_secret_of_its_try_and_its_log_is_masked() {
    let mut h = harness(|_| {}).await;
    // The password leaves the container in two writes, so in two chunks of its log. The
    // masker holds back the last bytes that could begin a secret until more output comes:
    // the padding line lets "done" through while the container still runs.
    let script = r#"echo "uri=$AIRFLOW_CONN_ORDERS_DB"; printf 'pw=s3cr'; sleep 0.3; printf '3t-pw!\n'; echo done; echo "$PADDING"; exec sleep 3600"#;
    let (key, log) = h.launch_with(
        &pod_task(&format!(
            r#"{{image: busybox, cmds: ["sh", "-c", {script:?}]}}"#
        )),
        "secret",
        |r| {
            with_connection(r);
            r.env.push(("PADDING".into(), "-".repeat(64)));
        },
    );
    h.started().await;
    wait_for_text(&log, "done\n").await;

    let pod = h.fake.pods().pop().expect("the pod");
    let name = pod.metadata.name.clone().unwrap();
    let pod_json = serde_json::to_string(&pod).unwrap();
    assert!(!pod_json.contains(PASSWORD), "{pod_json}");
    assert!(!pod_json.contains("db.shop"), "{pod_json}");
    let env = &pod.spec.as_ref().unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let var = env
        .iter()
        .find(|v| v.name == "AIRFLOW_CONN_ORDERS_DB")
        .unwrap();
    assert!(var.value.is_none());
    let reference = var
        .value_from
        .as_ref()
        .and_then(|f| f.secret_key_ref.as_ref())
        .unwrap();
    assert_eq!(
        (reference.name.as_str(), reference.key.as_str()),
        (name.as_str(), "AIRFLOW_CONN_ORDERS_DB")
    );

    let secret = h.fake.secret("shop", &name).expect("the try's Secret");
    let data = secret.data.as_ref().unwrap();
    assert_eq!(data["AIRFLOW_CONN_ORDERS_DB"].0, CONN_URI.as_bytes());
    assert_eq!(
        secret.metadata.labels,
        pod.metadata.labels.clone().map(|l| {
            l.into_iter()
                .filter(|(k, _)| {
                    k.starts_with("updraft.io/") || k.starts_with("app.kubernetes.io/managed-by")
                })
                .collect()
        })
    );
    let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), Some(&owner.uid)),
        ("Pod", name.as_str(), pod.metadata.uid.as_ref())
    );

    h.fake.finish_pod("shop", &name, 0);
    assert_eq!(h.finished().await, ExecOutcome::Success);
    let text = read(&log);
    assert!(text.contains("uri=***\n"), "{text}");
    assert!(text.contains("pw=***!\n"), "{text}");
    assert!(!text.contains("s3cr"), "{text}");
    assert!(
        try_secrets(&h.fake).is_empty(),
        "the Secret goes with the try"
    );
    h.fake.wait_for(WAIT, |pods| pods.is_empty()).await;
    let _ = key;
}

#[tokio::test]
async fn the_secret_goes_when_the_pod_is_kept_or_cannot_be_created() {
    let mut h = harness(|c| c.delete_pod = DeletePolicy::Never).await;
    let (_, log) = h.launch_with(
        &pod_task(r#"{image: busybox, cmds: ["sh", "-c", "test -n \"$AIRFLOW_CONN_ORDERS_DB\"; exit 3"]}"#),
        "kept",
        with_connection,
    );
    let outcome = h.finished().await;
    assert!(
        message(&outcome).contains("exit code 3"),
        "{outcome:?}: {}",
        read(&log)
    );
    assert_eq!(h.fake.pods().len(), 1, "the pod is kept");
    assert!(try_secrets(&h.fake).is_empty(), "its Secret is not");

    h.fake.fail_next_creates(1, 403, false);
    let (_, log) = h.launch_with(
        &pod_task("{image: busybox, cmds: [\"true\"]}"),
        "refused",
        with_connection,
    );
    let outcome = h.finished().await;
    assert!(
        message(&outcome).contains("could not be created"),
        "{}",
        read(&log)
    );
    assert!(try_secrets(&h.fake).is_empty(), "no Secret without its pod");
    assert_eq!(h.fake.pods().len(), 1, "no new pod");
}

#[tokio::test]
async fn without_secret_variables_no_secret_is_made() {
    let mut h = harness(|_| {}).await;
    h.launch(&pod_task(r#"{image: busybox, cmds: ["true"]}"#), "plain");
    assert_eq!(h.finished().await, ExecOutcome::Success);
    let secret_requests = h
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.contains("/secrets"))
        .count();
    assert_eq!(secret_requests, 0);
}

#[tokio::test]
async fn an_adopted_pod_keeps_its_secret_until_its_end_and_its_log_stays_masked() {
    let mut h = harness(|_| {}).await;
    let script = r#"while true; do echo "pw=$AIRFLOW_CONN_ORDERS_DB"; sleep 0.1; done"#;
    let (key, log) = h.launch_with(
        &pod_task(&format!(
            r#"{{image: busybox, cmds: ["sh", "-c", {script:?}]}}"#
        )),
        "adopted",
        with_connection,
    );
    h.started().await;
    wait_for_text(&log, "pw=***\n").await;
    h.executor.detach().await;
    assert_eq!(
        try_secrets(&h.fake).len(),
        1,
        "the running pod keeps its Secret"
    );

    let client = kube::Client::try_from(h.fake.client_config()).unwrap();
    let (tx, mut events) = mpsc::unbounded_channel();
    let again = PodExecutor::new(client, h.executor.config().clone(), tx);
    let found = again.find(&identity("adopted")).await.unwrap().unwrap();
    let name = found.metadata.name.clone().unwrap();
    let before = read(&log).matches("pw=***").count();
    again.adopt(key, &found, log.clone(), None, None, false);
    // More output after the adoption, then the end.
    let deadline = tokio::time::Instant::now() + WAIT;
    while read(&log).matches("pw=***").count() < before + 3 {
        assert!(tokio::time::Instant::now() < deadline, "{}", read(&log));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.fake.finish_pod("shop", &name, 0);
    match tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap()
    {
        TryEvent::Finished { outcome, .. } => assert_eq!(outcome, ExecOutcome::Success),
        other => panic!("{other:?}"),
    }
    let text = read(&log);
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(
        try_secrets(&h.fake).is_empty(),
        "deleted at the adopted try's end"
    );
}

#[tokio::test]
async fn an_orphan_s_secret_is_found_by_its_labels_and_deleted() {
    // As left by a scheduler that stopped between creating a try's Secret and its pod.
    let h = harness(|_| {}).await;
    let id = identity("orphan");
    let secret = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("orders-t-orphan-1".into()),
            labels: Some(updraft_pods::manifest::identity_labels(&id)),
            annotations: Some(updraft_pods::manifest::identity_annotations(&id)),
            ..Default::default()
        },
        ..Default::default()
    };
    let client = kube::Client::try_from(h.fake.client_config()).unwrap();
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client, "shop");
    api.create(&kube::api::PostParams::default(), &secret)
        .await
        .unwrap();
    assert_eq!(
        h.executor
            .delete_try_secrets(&identity("other"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(try_secrets(&h.fake).len(), 1);
    assert_eq!(h.executor.delete_try_secrets(&id).await.unwrap(), 1);
    assert!(try_secrets(&h.fake).is_empty());
}

#[tokio::test]
async fn a_pod_deleted_behind_updraft_s_back_takes_its_secret_along() {
    let mut h = harness(|_| {}).await;
    h.launch_with(
        &pod_task(r#"{image: busybox, cmds: ["sh", "-c", "exec sleep 3600"]}"#),
        "collected",
        with_connection,
    );
    h.started().await;
    h.executor.detach().await;
    assert_eq!(try_secrets(&h.fake).len(), 1);
    let pod = h.fake.pods().pop().unwrap();
    h.fake
        .vanish_pod("shop", pod.metadata.name.as_deref().unwrap());
    assert!(try_secrets(&h.fake).is_empty(), "owned by the pod");
}

#[tokio::test]
async fn a_secret_of_the_same_name_not_of_this_try_is_left_alone_and_fails_it() {
    let mut h = harness(|_| {}).await;
    let name = updraft_pods::manifest::pod_name(&identity("taken"));
    let foreign = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let client = kube::Client::try_from(h.fake.client_config()).unwrap();
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client, "shop");
    api.create(&kube::api::PostParams::default(), &foreign)
        .await
        .unwrap();
    let (_, log) = h.launch_with(
        &pod_task(r#"{image: busybox, cmds: ["true"]}"#),
        "taken",
        with_connection,
    );
    let outcome = h.finished().await;
    assert!(
        message(&outcome).contains("does not belong to this try"),
        "{}",
        read(&log)
    );
    assert!(h.fake.pods().is_empty(), "no pod without its Secret");
    let kept = h
        .fake
        .secret("shop", &name)
        .expect("the other Secret stays");
    assert!(kept.data.is_none(), "and is not overwritten");
}

impl Harness {
    /// The end of the next try: its outcome and what it pushed.
    async fn finished_with_xcoms(&mut self) -> (ExecOutcome, Vec<updraft_executor::XComPush>) {
        loop {
            let event = tokio::time::timeout(WAIT, self.events.recv())
                .await
                .expect("the try ends in time")
                .expect("events flow");
            if let TryEvent::Finished { outcome, xcoms, .. } = event {
                return (outcome, xcoms);
            }
        }
    }
}

fn pushed(key: &str, value: &str) -> updraft_executor::XComPush {
    updraft_executor::XComPush {
        key: key.into(),
        value: value.into(),
    }
}

#[tokio::test]
async fn a_pod_pushes_its_termination_message_and_with_do_xcom_push_its_last_line() {
    let mut h = harness(|_| {}).await;
    // The fake kubelet's stand-in for /dev/termination-log.
    let var = updraft_kube_fake::TERMINATION_LOG_VAR;
    let script =
        format!(r#"echo working; echo '{{"return_value": [1, 2], "rows": 7}}' > "${var}""#);
    let task = format!(
        "  - task_id: t\n    pod: {{image: busybox, cmds: [sh, -c], args: [{}]}}\n",
        serde_json::to_string(&script).unwrap()
    );
    h.launch(&task, "manual__msg");
    let (outcome, xcoms) = h.finished_with_xcoms().await;
    assert_eq!(outcome, ExecOutcome::Success);
    assert_eq!(
        xcoms,
        [pushed("return_value", "[1,2]"), pushed("rows", "7")]
    );

    let line = "  - task_id: t\n    do_xcom_push: true\n    pod: {image: busybox, cmds: [sh, -c], args: [\"echo first; echo '{\\\"k\\\": 1}'\"]}\n";
    h.launch(line, "manual__line");
    let (outcome, xcoms) = h.finished_with_xcoms().await;
    assert_eq!(outcome, ExecOutcome::Success);
    assert_eq!(xcoms, [pushed("return_value", "{\"k\":1}")]);

    let quiet = "  - task_id: t\n    pod: {image: busybox, cmds: [sh, -c], args: [\"echo 42\"]}\n";
    h.launch(quiet, "manual__quiet");
    let (outcome, xcoms) = h.finished_with_xcoms().await;
    assert_eq!(outcome, ExecOutcome::Success);
    assert!(xcoms.is_empty(), "no message and no do_xcom_push: nothing");
}

#[tokio::test]
async fn a_termination_message_that_is_not_a_json_object_fails_the_try() {
    let mut h = harness(|_| {}).await;
    let var = updraft_kube_fake::TERMINATION_LOG_VAR;
    let script = format!(r#"echo 'not json' > "${var}""#);
    let task = format!(
        "  - task_id: t\n    pod: {{image: busybox, cmds: [sh, -c], args: [{}]}}\n",
        serde_json::to_string(&script).unwrap()
    );
    let (_, log) = h.launch(&task, "manual__bad");
    let (outcome, xcoms) = h.finished_with_xcoms().await;
    let why = message(&outcome);
    assert!(
        why.contains("termination message is not valid JSON"),
        "{why}"
    );
    assert!(xcoms.is_empty());
    assert!(
        read(&log).contains("termination message is not valid JSON"),
        "{}",
        read(&log)
    );
}
