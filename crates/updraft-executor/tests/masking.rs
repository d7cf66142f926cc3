//! A try given secrets leaves only `***` in its log: a password printed through a template,
//! through `$AIRFLOW_CONN_MY_DB`, and in two pieces written apart (so the log receives them
//! in separate reads). Synchronisation is by the log's content and a file the test creates.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use tokio::sync::mpsc;
use updraft_executor::render::{TemplateSecrets, render_task};
use updraft_executor::{
    ExecOutcome, LaunchSpec, LocalExecutor, LocalExecutorConfig, TemplateContext, TryEvent, TryKey,
};
use updraft_secrets::Connection;

const PATIENCE: Duration = Duration::from_secs(30);
const PASSWORD: &str = "Zq9-hunter2/secret@pw";

fn context(secrets: TemplateSecrets) -> TemplateContext {
    TemplateContext {
        secrets,
        xcoms: Default::default(),
        tenant: "acme".into(),
        dag_id: "leaky".into(),
        run_id: "manual__2024-01-02T00:00:00+00:00".into(),
        task_id: "print".into(),
        try_number: 1,
        map_index: -1,
        mapped: Default::default(),
        logical_date: Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap(),
        data_interval_start: Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap(),
        data_interval_end: Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap(),
        conf: serde_json::json!({}),
        params: serde_json::Map::new(),
        run_type: "manual".into(),
        timezone: chrono_tz::UTC,
    }
}

fn my_db() -> Connection {
    Connection {
        conn_id: "my_db".into(),
        conn_type: "postgres".into(),
        host: Some("db.example".into()),
        login: Some("app".into()),
        password: Some(PASSWORD.into()),
        port: Some(5432),
        schema: Some("shop".into()),
        ..Connection::default()
    }
}

async fn wait_for_log(path: &Path, what: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(what) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{what:?} never reached the log: {text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_printing_a_password_leaves_only_stars_in_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release");
    let yaml = format!(
        r#"dag_id: leaky
tasks:
  - task_id: print
    connections: [my_db]
    env: {{RELEASE: "{release}"}}
    bash: |
      echo "template: {{{{ conn.my_db.password }}}}"
      echo "env: $AIRFLOW_CONN_MY_DB"
      printf 'before the pieces %s\n' "{{{{ '.' * 200 }}}}"
      printf 'pieces: {{{{ conn.my_db.password[:7] }}}}'
      while [ ! -e "$RELEASE" ]; do sleep 0.01; done
      printf '{{{{ conn.my_db.password[7:] }}}} end\n'
"#,
        release = release.display()
    );
    let dag = updraft_dag::parse_dag("acme", "acme/leaky.yaml", &yaml).unwrap();
    let mut secrets = TemplateSecrets::default();
    secrets.connections.insert("my_db".into(), my_db());
    let rendered = render_task(&dag, &dag.tasks[0], &context(secrets)).unwrap();
    assert!(!rendered.mask.is_empty());

    let (tx, mut events) = mpsc::unbounded_channel();
    let executor = LocalExecutor::new(LocalExecutorConfig::default(), tx);
    let log = dir.path().join("print.log");
    let key = TryKey {
        run_pk: 1,
        task_id: "print".into(),
        map_index: -1,
        try_number: 1,
    };
    executor.launch(LaunchSpec {
        key,
        rendered,
        log_path: log.clone(),
        timeout: None,
    });

    // The first piece has been written and read: it is held back, as it may begin a secret.
    let so_far = wait_for_log(&log, "before the pieces").await;
    assert!(!so_far.contains(&PASSWORD[..7]), "{so_far}");
    std::fs::write(&release, "").unwrap();

    let outcome = loop {
        let event = tokio::time::timeout(PATIENCE, events.recv())
            .await
            .expect("the try to finish in time")
            .expect("the executor to report");
        if let TryEvent::Finished { outcome, .. } = event {
            break outcome;
        }
    };
    assert_eq!(outcome, ExecOutcome::Success);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("template: ***\n"), "{text}");
    assert!(text.contains("env: ***\n"), "{text}");
    assert!(text.contains("pieces: *** end\n"), "{text}");
    assert!(text.contains("[updraft] try 1 finished"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    // As written in the URI, percent-encoded.
    assert!(!text.contains("hunter2%2Fsecret%40pw"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_uri_reaches_the_process_environment() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "dag_id: leaky\ntasks:\n  - task_id: print\n    connections: [my_db]\n    \
                bash: 'test \"$AIRFLOW_CONN_MY_DB\" = \"$EXPECTED\"'\n";
    let mut dag = updraft_dag::parse_dag("acme", "acme/leaky.yaml", yaml).unwrap();
    dag.tasks[0].env.insert("EXPECTED".into(), my_db().to_uri());
    let mut secrets = TemplateSecrets::default();
    secrets.connections.insert("my_db".into(), my_db());
    let rendered = render_task(&dag, &dag.tasks[0], &context(secrets)).unwrap();
    let (tx, mut events) = mpsc::unbounded_channel();
    let executor = LocalExecutor::new(LocalExecutorConfig::default(), tx);
    executor.launch(LaunchSpec {
        key: TryKey {
            run_pk: 1,
            task_id: "print".into(),
            map_index: -1,
            try_number: 1,
        },
        rendered,
        log_path: dir.path().join("print.log"),
        timeout: None,
    });
    let outcome = loop {
        match tokio::time::timeout(PATIENCE, events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            TryEvent::Finished { outcome, .. } => break outcome,
            TryEvent::Started { .. } => {}
        }
    };
    let text = std::fs::read_to_string(dir.path().join("print.log")).unwrap();
    assert_eq!(outcome, ExecOutcome::Success, "{text}");
}

/// Runs `rendered` to its end; returns its log.
async fn run_to_end(rendered: updraft_executor::RenderedTask, log: &Path) -> String {
    let (tx, mut events) = mpsc::unbounded_channel();
    let executor = LocalExecutor::new(LocalExecutorConfig::default(), tx);
    executor.launch(LaunchSpec {
        key: TryKey {
            run_pk: 1,
            task_id: "print".into(),
            map_index: -1,
            try_number: 1,
        },
        rendered,
        log_path: log.to_path_buf(),
        timeout: None,
    });
    loop {
        match tokio::time::timeout(PATIENCE, events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            TryEvent::Finished { outcome, .. } => {
                assert_eq!(outcome, ExecOutcome::Success);
                break;
            }
            TryEvent::Started { .. } => {}
        }
    }
    std::fs::read_to_string(log).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_try_given_secrets_writes_through_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "dag_id: leaky\ntasks:\n  - task_id: print\n    bash: 'echo \"out=$(readlink /proc/$$/fd/1)\"'\n";
    let dag = updraft_dag::parse_dag("acme", "acme/leaky.yaml", yaml).unwrap();
    let task = &dag.tasks[0];

    let plain = render_task(&dag, task, &context(TemplateSecrets::default())).unwrap();
    let log = dir.path().join("plain.log");
    let text = run_to_end(plain, &log).await;
    assert!(
        text.contains(&format!("out={}\n", log.canonicalize().unwrap().display())),
        "a try without secrets writes to its log file itself: {text}"
    );

    let mut secrets = TemplateSecrets::default();
    secrets.connections.insert("my_db".into(), my_db());
    let mut with_db = task.clone();
    with_db.connections = vec!["my_db".into()];
    let masked = render_task(&dag, &with_db, &context(secrets)).unwrap();
    let text = run_to_end(masked, &dir.path().join("masked.log")).await;
    assert!(text.contains("out=pipe:["), "{text}");
}
