//! Notifiers (`on_failure`, `on_success`, `on_retry`, `on_execute`) and `dagrun_timeout`:
//! what parses, how `default_args` applies, that DAGs without them keep their version, and
//! every mistake as an import error at its line and column.

use std::collections::BTreeMap;
use std::time::Duration;

use updraft_dag::{Dag, ImportError, Notifier, SlackTarget, parse_dag};

fn parse(text: &str) -> Dag {
    parse_dag("default", "n.yaml", text).unwrap_or_else(|e| panic!("{e:#?}"))
}

fn errors(text: &str) -> Vec<ImportError> {
    match parse_dag("default", "n.yaml", text) {
        Ok(dag) => panic!("expected import errors, parsed {dag:?}"),
        Err(errors) => errors,
    }
}

#[track_caller]
fn assert_one(text: &str, line: u32, column: u32, fragments: &[&str]) {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    let error = &errors[0];
    assert_eq!(
        (error.line, error.column),
        (Some(line), Some(column)),
        "wrong position for {error}"
    );
    assert_eq!(error.filename, "n.yaml");
    for fragment in fragments {
        assert!(
            error.message.contains(fragment),
            "{:?} does not contain {fragment:?}",
            error.message
        );
    }
}

#[test]
fn every_kind_of_notifier_parses_on_tasks_default_args_and_the_dag() {
    let dag = parse(
        r#"dag_id: x
dagrun_timeout: 1h
on_failure:
  - webhook: {url: "https://hooks.example/run", headers: {Authorization: "Bearer {{ var.value.t }}"}}
on_success:
  - slack: {connection: slack_default}
default_args:
  on_failure:
    - email: {to: ops@example.test}
tasks:
  - task_id: a
    bash: "true"
  - task_id: b
    bash: "true"
    on_failure: []
    on_retry:
      - slack: {webhook_url: "https://hooks.slack.com/services/T/B/x", text: "{{ ti.task_id }} retries"}
    on_execute:
      - email: {to: [a@b.c, d@e.f], connection: mail, subject: s, body: b}
    on_success:
      - webhook: {url: "{{ params.hook }}"}
"#,
    );
    assert_eq!(dag.dagrun_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(
        dag.run_callbacks.on_failure,
        [Notifier::Webhook {
            url: "https://hooks.example/run".into(),
            headers: BTreeMap::from([("Authorization".into(), "Bearer {{ var.value.t }}".into())]),
        }]
    );
    assert_eq!(
        dag.run_callbacks.on_success,
        [Notifier::Slack {
            target: SlackTarget::Connection("slack_default".into()),
            text: None,
        }]
    );
    let a = &dag.task("a").unwrap().callbacks;
    assert_eq!(
        a.on_failure,
        [Notifier::Email {
            to: vec!["ops@example.test".into()],
            connection: "smtp_default".into(),
            subject: None,
            body: None,
        }],
        "from default_args, with the default connection"
    );
    let b = &dag.task("b").unwrap().callbacks;
    assert!(b.on_failure.is_empty(), "an empty list clears the default");
    assert_eq!(
        b.on_retry,
        [Notifier::Slack {
            target: SlackTarget::Url("https://hooks.slack.com/services/T/B/x".into()),
            text: Some("{{ ti.task_id }} retries".into()),
        }]
    );
    assert!(
        matches!(&b.on_execute[0], Notifier::Email { to, connection, .. } if to.len() == 2 && connection == "mail")
    );
    assert!(
        matches!(&b.on_success[0], Notifier::Webhook { url, .. } if url == "{{ params.hook }}")
    );
}

#[test]
fn a_dag_without_notifiers_keeps_its_version_and_old_definitions_read() {
    let dag = parse("dag_id: x\ntasks:\n  - task_id: a\n    bash: echo hi\n");
    let json = serde_json::to_value(&dag).unwrap();
    assert!(json.get("run_callbacks").is_none(), "{json}");
    assert!(json.get("dagrun_timeout").is_none(), "{json}");
    assert!(json["tasks"][0].get("callbacks").is_none(), "{json}");
    let back: Dag = serde_json::from_value(json).unwrap();
    assert_eq!(back, dag);
    let with = parse(
        "dag_id: x\ntasks:\n  - task_id: a\n    bash: echo hi\n    on_success: [{webhook: {url: \"http://h\"}}]\n",
    );
    assert_ne!(with.version(), dag.version());
    let timed = parse("dag_id: x\ndagrun_timeout: 30m\ntasks: []\n");
    assert_ne!(timed.version(), parse("dag_id: x\ntasks: []\n").version());
}

#[test]
fn notifier_mistakes_are_located() {
    let task = |value: &str| {
        format!("dag_id: x\ntasks:\n  - task_id: a\n    bash: echo hi\n    on_failure: {value}\n")
    };
    assert_one(
        &task("http://x"),
        5,
        17,
        &["`on_failure` must be a list of notifiers"],
    );
    assert_one(
        &task("[{webhook: {url: \"ftp://x\"}}]"),
        5,
        34,
        &["on_failure[0].webhook", "must start with `https://`"],
    );
    assert_one(
        &task("[{webhook: {}}]"),
        5,
        28,
        &["on_failure[0].webhook has no `url`"],
    );
    assert_one(
        &task("[{pager: {}}]"),
        5,
        19,
        &["unknown key `pager` in on_failure[0]"],
    );
    assert_one(&task("[{}]"), 5, 18, &["names no notifier"]);
    assert_one(
        &task("[{webhook: {url: \"http://h\"}, slack: {connection: s}}]"),
        5,
        47,
        &["sets both `webhook` and `slack`"],
    );
    assert_one(
        &task("[{slack: {text: hi}}]"),
        5,
        26,
        &["needs `webhook_url` or `connection`"],
    );
    assert_one(
        &task("[{slack: {connection: \"a b\"}}]"),
        5,
        39,
        &["connection", "' '"],
    );
    assert_one(
        &task("[{email: {to: [not-an-address]}}]"),
        5,
        32,
        &["\"not-an-address\" is not an email address"],
    );
    assert_one(&task("[{email: {to: []}}]"), 5, 31, &["names no recipient"]);
    assert_one(
        &task("[{webhook: {url: \"http://h\", headers: {\"Bad Name\": v}}}]"),
        5,
        55,
        &["header \"Bad Name\" is invalid"],
    );
    assert_one(
        "dag_id: x\ndefault_args:\n  on_retry: [{email: {subject: s}}]\ntasks: []\n",
        3,
        22,
        &["on_retry[0].email has no `to`"],
    );
    assert_one(
        "dag_id: x\non_success: [{webhook: {url: 3}}]\ntasks: []\n",
        2,
        30,
        &["a string"],
    );
}

#[test]
fn dagrun_timeout_must_be_a_positive_duration() {
    assert_one(
        "dag_id: x\ndagrun_timeout: 0s\ntasks: []\n",
        2,
        17,
        &["`dagrun_timeout` must be longer than zero"],
    );
    assert_one(
        "dag_id: x\ndagrun_timeout: soon\ntasks: []\n",
        2,
        17,
        &["dagrun_timeout"],
    );
    assert_one(
        "dag_id: x\ntasks:\n  - task_id: a\n    bash: echo\n    dagrun_timeout: 1h\n",
        5,
        5,
        &["unknown key `dagrun_timeout`", "DAG-level"],
    );
}
