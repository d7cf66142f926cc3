//! The `pod:` task kind: what a DAG file may say, and the import errors for what it may not.

use std::collections::BTreeMap;
use std::time::Duration;

use updraft_dag::{DeletePolicy, ImportError, PodTask, TaskKind, parse_dag};

fn pod_of(yaml: &str) -> PodTask {
    let dag = parse_dag("shop", "shop/orders.yaml", yaml).expect("parses");
    match &dag.tasks[0].kind {
        TaskKind::Pod(pod) => (**pod).clone(),
        other => panic!("expected a pod task, got {other:?}"),
    }
}

fn errors_of(yaml: &str) -> Vec<ImportError> {
    parse_dag("shop", "shop/orders.yaml", yaml).expect_err("must be refused")
}

fn one_error(yaml: &str) -> ImportError {
    let errors = errors_of(yaml);
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.into_iter().next().unwrap()
}

#[test]
fn a_template_with_overrides() {
    let pod = pod_of(
        r#"
dag_id: orders
tasks:
  - task_id: settle_orders
    pod:
      template: order-service/settle.yaml
      image: registry.example/order:1.42
      cmds: ["sh", "-c"]
      args: ["./settle --date {{ ds }}"]
      env: {REGION: jp, SHARDS: 4}
      resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {memory: 256Mi}}
      namespace: shop-batch
      labels: {team: payments}
      delete_pod: on_success
      startup_timeout: 5m
"#,
    );
    assert_eq!(pod.template.as_deref(), Some("order-service/settle.yaml"));
    assert_eq!(pod.image.as_deref(), Some("registry.example/order:1.42"));
    assert_eq!(pod.cmds, Some(vec!["sh".to_owned(), "-c".to_owned()]));
    assert_eq!(pod.args, Some(vec!["./settle --date {{ ds }}".to_owned()]));
    assert_eq!(pod.env["REGION"], "jp");
    assert_eq!(pod.env["SHARDS"], "4");
    let resources = pod.resources.expect("resources");
    assert_eq!(resources.requests["cpu"], "100m");
    assert_eq!(resources.limits["memory"], "256Mi");
    assert_eq!(pod.namespace.as_deref(), Some("shop-batch"));
    assert_eq!(
        pod.labels,
        BTreeMap::from([("team".into(), "payments".into())])
    );
    assert_eq!(pod.delete_pod, Some(DeletePolicy::OnSuccess));
    assert_eq!(pod.startup_timeout, Some(Duration::from_secs(300)));
}

#[test]
fn an_inline_spec_is_kept_as_json() {
    let pod = pod_of(
        r#"
dag_id: orders
tasks:
  - task_id: hello
    pod:
      spec:
        containers:
          - name: main
            image: busybox:1.36
            command: ["echo", "{{ ds }}"]
        nodeSelector: {pool: batch}
"#,
    );
    let spec = pod.spec.expect("spec");
    assert_eq!(spec["containers"][0]["image"], "busybox:1.36");
    assert_eq!(spec["containers"][0]["command"][1], "{{ ds }}");
    assert_eq!(spec["nodeSelector"]["pool"], "batch");
}

#[test]
fn an_image_alone_is_enough_and_airflow_names_are_accepted() {
    let pod = pod_of(
        r#"
dag_id: orders
tasks:
  - task_id: hello
    pod: {image: "busybox", cmds: ["true"], on_finish_action: keep_pod}
"#,
    );
    assert_eq!(pod.delete_pod, Some(DeletePolicy::Never));
    assert!(pod.template.is_none() && pod.spec.is_none());
}

#[test]
fn template_paths_that_leave_the_tenant_folder_are_refused_with_their_position() {
    for (path, says) in [
        ("../other-tenant/secret.yaml", "`..` is not allowed"),
        ("app/../../x.yaml", "`..` is not allowed"),
        ("/etc/kubernetes/pod.yaml", "is absolute"),
    ] {
        let e = one_error(&format!(
            "dag_id: orders\ntasks:\n  - task_id: t\n    pod:\n      template: {path}\n"
        ));
        assert_eq!(e.filename, "shop/orders.yaml");
        assert_eq!((e.line, e.column), (Some(5), Some(17)), "{e}");
        assert!(e.message.contains("pod.template"), "{e}");
        assert!(e.message.contains(says), "{path}: {e}");
    }
}

#[test]
fn bad_namespaces_and_policies_are_refused() {
    let e =
        one_error("dag_id: o\ntasks:\n  - task_id: t\n    pod: {image: x, namespace: Team_A}\n");
    assert!(e.message.contains("not a Kubernetes namespace name"), "{e}");
    assert_eq!(e.line, Some(4));

    let e = one_error(
        "dag_id: o\ntasks:\n  - task_id: t\n    pod: {image: x, delete_pod: sometimes}\n",
    );
    assert!(e.message.contains("unknown `pod.delete_pod`"), "{e}");
    assert!(e.message.contains("on_success"), "{e}");
}

#[test]
fn a_pod_needs_something_to_run_and_one_source() {
    let e = one_error("dag_id: o\ntasks:\n  - task_id: t\n    pod: {cmds: [\"true\"]}\n");
    assert!(e.message.contains("needs a `template`"), "{e}");

    let e = one_error(
        "dag_id: o\ntasks:\n  - task_id: t\n    pod:\n      template: a.yaml\n      spec: {containers: []}\n",
    );
    assert!(e.message.contains("both `template` and `spec`"), "{e}");
    assert_eq!(e.line, Some(6));
}

#[test]
fn unknown_keys_and_wrong_types_are_named() {
    let e = one_error("dag_id: o\ntasks:\n  - task_id: t\n    pod: {image: x, arguments: [a]}\n");
    assert!(
        e.message
            .contains("unknown key `arguments` in pod; use `args`"),
        "{e}"
    );

    let e = one_error("dag_id: o\ntasks:\n  - task_id: t\n    pod: {image: x, args: \"a b\"}\n");
    assert!(e.message.contains("pod.args"), "{e}");

    let e = one_error(
        "dag_id: o\ntasks:\n  - task_id: t\n    pod:\n      spec: {apiVersion: v1, containers: []}\n",
    );
    assert!(e.message.contains("not a whole manifest"), "{e}");
}

#[test]
fn pod_and_bash_cannot_be_mixed() {
    let e = one_error("dag_id: o\ntasks:\n  - task_id: t\n    bash: echo\n    pod: {image: x}\n");
    assert!(e.message.contains("sets both `bash` and `pod`"), "{e}");
}

#[test]
fn a_pod_task_round_trips_through_json_and_changes_the_version() {
    let yaml = "dag_id: o\ntasks:\n  - task_id: t\n    pod: {image: x, args: [a]}\n";
    let dag = parse_dag("shop", "shop/o.yaml", yaml).unwrap();
    let json = serde_json::to_string(&dag).unwrap();
    let back: updraft_dag::Dag = serde_json::from_str(&json).unwrap();
    assert_eq!(back, dag);
    let other = parse_dag("shop", "shop/o.yaml", &yaml.replace("[a]", "[b]")).unwrap();
    assert_ne!(dag.version(), other.version());
}
