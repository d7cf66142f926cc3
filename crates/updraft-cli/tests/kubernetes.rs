//! The `updraft` binary running tasks as Kubernetes pods.
//!
//! No Kubernetes API server can run where these tests run: the binary is pointed (through a
//! kubeconfig file, as in production) at the in-repo fake API server (`updraft-kube-fake`),
//! which speaks the real wire format over HTTP and runs each pod's container as a local
//! process. `crates/updraft-pods/tests/pods.rs` has the opt-in test against a real cluster.

mod common;

use common::{DEFAULT_TIMEOUT, Home, wait_until};
use k8s_openapi::api::core::v1::Pod;
use updraft_kube_fake::FakeKube;

/// A home whose scheduler reaches the fake cluster through a kubeconfig.
fn cluster_home(rt: &tokio::runtime::Runtime) -> (Home, FakeKube) {
    let fake = rt.block_on(FakeKube::start());
    let home = Home::new();
    let kubeconfig = home.path().join("kubeconfig.yaml");
    fake.write_kubeconfig(&kubeconfig).unwrap();
    let home = home
        .with_env(
            "UPDRAFT__KUBERNETES__KUBECONFIG",
            kubeconfig.to_str().unwrap(),
        )
        .with_env("UPDRAFT__KUBERNETES__DELETE_GRACE", "0s");
    (home, fake)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn running_pods(fake: &FakeKube) -> Option<Vec<Pod>> {
    let pods: Vec<Pod> = fake
        .pods()
        .into_iter()
        .filter(|p| phase(p) == "Running")
        .collect();
    (!pods.is_empty()).then_some(pods)
}

#[test]
fn the_kubernetes_executor_runs_every_task_as_a_pod_in_the_tenant_namespace() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (home, fake) = cluster_home(&rt);
    let home = home.with_env("UPDRAFT__CORE__EXECUTOR", "kubernetes");
    home.write_dag(
        "shop/orders.yaml",
        r#"
dag_id: orders
tasks:
  - task_id: extract
    bash: echo "extract {{ ds }} from $UPDRAFT_TENANT"
  - task_id: settle
    upstream: [extract]
    pod:
      image: busybox
      cmds: ["sh", "-c"]
      args: ["echo settled {{ run_id }}"]
"#,
    );
    let _scheduler = home.start_scheduler();
    home.wait_dag_listed("orders");
    let run_id = home.trigger("orders", None);
    assert_eq!(home.wait_run_finished("orders", &run_id), "success");
    let extract = home.logs("orders", &run_id, "extract", None);
    assert!(extract.contains("extract "), "{extract}");
    assert!(extract.contains("from shop"), "{extract}");
    let settle = home.logs("orders", &run_id, "settle", None);
    assert!(settle.contains(&format!("settled {run_id}")), "{settle}");
    let created: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("POST"))
        .collect();
    assert_eq!(created.len(), 2, "{created:?}");
    assert!(
        created.iter().all(|r| r.contains("/namespaces/shop/pods")),
        "{created:?}"
    );
    wait_until("pods deleted", DEFAULT_TIMEOUT, || {
        fake.pods().is_empty().then_some(())
    });
}

#[test]
fn a_pod_task_without_a_cluster_fails_saying_how_to_configure_one() {
    let home = Home::new();
    home.write_dag(
        "shop/orders.yaml",
        "dag_id: orders\ntasks:\n  - task_id: t\n    pod: {image: busybox}\n",
    );
    let _scheduler = home.start_scheduler();
    home.wait_dag_listed("orders");
    let run_id = home.trigger("orders", None);
    assert_eq!(home.wait_run_finished("orders", &run_id), "failed");
    let log = home.logs("orders", &run_id, "t", None);
    assert!(log.contains("[kubernetes] enabled = true"), "{log}");
}

#[test]
fn marking_a_running_pod_task_failed_deletes_its_pod() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (home, fake) = cluster_home(&rt);
    let home = home.with_env("UPDRAFT__KUBERNETES__ENABLED", "true");
    home.write_dag(
        "shop/long.yaml",
        "dag_id: long\ntasks:\n  - task_id: t\n    pod: {image: busybox, cmds: [\"sleep\", \"3600\"]}\n",
    );
    let _scheduler = home.start_scheduler();
    home.wait_dag_listed("long");
    let run_id = home.trigger("long", None);
    wait_until("the pod runs", DEFAULT_TIMEOUT, || running_pods(&fake));
    home.ok(&["tasks", "set-state", "long", &run_id, "t", "failed"]);
    wait_until("the pod is deleted", DEFAULT_TIMEOUT, || {
        fake.pods().is_empty().then_some(())
    });
    assert_eq!(home.wait_run_finished("long", &run_id), "failed");
}

#[test]
fn after_a_scheduler_restart_running_pods_are_followed_again_not_relaunched() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (home, fake) = cluster_home(&rt);
    let home = home.with_env("UPDRAFT__KUBERNETES__ENABLED", "true");
    home.write_dag(
        "shop/nightly.yaml",
        r#"
dag_id: nightly
tasks:
  - task_id: load
    pod: {image: busybox, cmds: ["sh", "-c", "echo before-restart; exec sleep 3600"]}
  - task_id: report
    upstream: [load]
    bash: echo report done
"#,
    );
    let mut scheduler = home.start_scheduler();
    home.wait_dag_listed("nightly");
    let run_id = home.trigger("nightly", None);
    let pods = wait_until("the pod runs", DEFAULT_TIMEOUT, || running_pods(&fake));
    let name = pods[0].metadata.name.clone().unwrap();
    home.wait_task_state("nightly", &run_id, "load", "running");
    wait_until("the log has the first line", DEFAULT_TIMEOUT, || {
        home.logs("nightly", &run_id, "load", None)
            .contains("before-restart")
            .then_some(())
    });

    scheduler.terminate();
    assert!(
        scheduler.wait_exit(DEFAULT_TIMEOUT).success(),
        "{}",
        scheduler.output()
    );
    assert_eq!(fake.pods().len(), 1, "the pod outlives the scheduler");
    assert_eq!(home.task_states("nightly", &run_id)["load"], "running");

    let again = home.start_scheduler();
    wait_until("the new scheduler follows the pod", DEFAULT_TIMEOUT, || {
        again
            .output()
            .contains("following the pod of a try started before a restart")
            .then_some(())
    });
    fake.finish_pod("shop", &name, 0);
    assert_eq!(home.wait_run_finished("nightly", &run_id), "success");
    let load = &home.task_instances("nightly", &run_id)["load"];
    assert_eq!(load["try_number"], 1, "{load}");
    let log = home.logs("nightly", &run_id, "load", None);
    assert_eq!(log.matches("before-restart").count(), 1, "{log}");
    let posts = fake
        .requests()
        .iter()
        .filter(|r| r.starts_with("POST"))
        .count();
    assert_eq!(posts, 1, "launched once");
}

#[test]
fn tasks_test_runs_a_pod_task_in_the_cluster_and_prints_its_log() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (home, fake) = cluster_home(&rt);
    let home = home.with_env("UPDRAFT__KUBERNETES__ENABLED", "true");
    home.write_dag(
        "shop/probe.yaml",
        "dag_id: probe\ntasks:\n  - task_id: t\n    pod: {image: busybox, cmds: [\"sh\", \"-c\", \"echo probing {{ ds }}\"]}\n",
    );
    let out = home.ok(&["tasks", "test", "probe", "t", "2024-03-05"]);
    assert!(out.stdout.contains("probing 2024-03-05"), "{out}");
    assert!(out.stdout.contains("Task t: success"), "{out}");
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.starts_with("POST"))
            .count(),
        1
    );
}
