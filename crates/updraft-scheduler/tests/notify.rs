//! Notifications and `dagrun_timeout` through a live scheduler on SQLite: a failing task tells
//! its `on_retry` then its `on_failure` notifiers, a run its `on_success`/`on_failure` ones
//! (a webhook and a Slack connection on an in-test HTTP receiver, email through the SMTP
//! sink), and a run past its `dagrun_timeout` is failed with its sleeping try killed and its
//! instance skipped.

mod common;

use common::eventually;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;
use tokio::sync::oneshot;
use updraft_core::{RunState, TaskState};
use updraft_scheduler::{Scheduler, SchedulerConfig};
use updraft_secrets::{EnvBackend, Secrets, SecretsBackend};
use updraft_store::{ReadStore, SqliteStore, Store};

const DEADLINE: Duration = Duration::from_secs(60);

type Received = Arc<Mutex<Vec<(String, Value)>>>;

async fn record(
    State(received): State<Received>,
    UrlPath(path): UrlPath<String>,
    body: String,
) -> StatusCode {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    received.lock().unwrap().push((path, value));
    StatusCode::OK
}

/// An HTTP receiver recording every POST (its path, its JSON body); its base URL.
async fn receiver() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route("/{*path}", post(record))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), received)
}

fn config(dags: &Path, logs: &Path, secrets: Option<Arc<Secrets>>) -> SchedulerConfig {
    SchedulerConfig {
        secrets,
        rescan_interval: Duration::from_secs(60),
        // Long: a timeout must come from the run's deadline, not from a poll.
        poll_interval: Duration::from_secs(60),
        ..common::config(dags, logs, "notify-test")
    }
}

/// Events received on `path`, in order.
fn on(received: &Received, path: &str) -> Vec<Value> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == path)
        .map(|(_, v)| v.clone())
        .collect()
}

struct Harness {
    store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
    dags: PathBuf,
    logs: PathBuf,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&dags).unwrap();
    let store = common::migrated_store(dir.path()).await;
    Harness {
        store,
        _dir: dir,
        dags,
        logs,
    }
}

/// Runs a scheduler while `check` runs; `check` gets the store and the scheduler's waker.
async fn with_scheduler<F, Fut>(h: &Harness, secrets: Option<Arc<Secrets>>, check: F)
where
    F: FnOnce(Arc<SqliteStore>, Arc<tokio::sync::Notify>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dyn_store: Arc<dyn Store> = h.store.clone();
    let mut scheduler = Scheduler::new(dyn_store, config(&h.dags, &h.logs, secrets)).unwrap();
    let waker = scheduler.waker();
    let (stop, stopped) = oneshot::channel::<()>();
    let scheduling = scheduler.run(async {
        let _ = stopped.await;
    });
    let checks = async {
        check(h.store.clone(), waker).await;
        stop.send(()).unwrap();
    };
    let (scheduled, ()) = tokio::join!(scheduling, checks);
    scheduled.unwrap();
}

async fn trigger(store: &SqliteStore, waker: &tokio::sync::Notify, dag_id: &str) -> i64 {
    common::trigger(store, waker, dag_id, DEADLINE).await.id
}

async fn finished(store: &SqliteStore, run_pk: i64) -> updraft_store::RunRow {
    eventually("the run to finish", DEADLINE, || async {
        store
            .run_by_pk(run_pk)
            .await
            .unwrap()
            .filter(|r| r.state.is_finished())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_task_tells_on_retry_then_on_failure_and_runs_tell_their_end() {
    let h = harness().await;
    let (base, received) = receiver().await;
    let smtp = tokio::task::spawn_blocking(updraft_test_servers::smtp)
        .await
        .unwrap();
    let slack_conn = serde_json::json!({
        "conn_type": "slackwebhook",
        "host": format!("{base}/slack"),
        "password": "T0/B0/secret-token",
    });
    let smtp_conn = serde_json::json!({
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": smtp.port,
        "extra": {"disable_ssl": true, "disable_tls": true, "from_email": "updraft@example.test"},
    });
    let backends: Vec<Arc<dyn SecretsBackend>> = vec![Arc::new(EnvBackend::from_vars([
        (
            "AIRFLOW_CONN_SLACK_ALERTS".to_owned(),
            slack_conn.to_string(),
        ),
        (
            "AIRFLOW_CONN_SMTP_DEFAULT".to_owned(),
            smtp_conn.to_string(),
        ),
    ]))];
    let secrets = Arc::new(Secrets::new(backends, Duration::ZERO));
    let marker = format!("notify-e2e-{}", std::process::id());
    std::fs::write(
        h.dags.join("flaky.yaml"),
        format!(
            r#"dag_id: flaky
on_failure:
  - webhook: {{url: "{base}/run-failed", headers: {{X-Run: "{{{{ run_id }}}}"}}}}
  - email: {{to: [ops@example.test], subject: "{marker} {{{{ dag.dag_id }}}} failed"}}
default_args:
  retries: 1
  retry_delay: 0s
tasks:
  - task_id: load
    bash: exit 3
    on_retry:
      - webhook: {{url: "{base}/retry"}}
    on_failure:
      - webhook: {{url: "{base}/failed"}}
      - slack: {{connection: slack_alerts, text: "{{{{ ti.task_id }}}} failed (try {{{{ ti.try_number }}}})"}}
    on_success:
      - webhook: {{url: "{base}/never"}}
"#
        ),
    )
    .unwrap();
    std::fs::write(
        h.dags.join("fine.yaml"),
        format!(
            r#"dag_id: fine
on_success:
  - slack: {{webhook_url: "{base}/run-ok"}}
tasks:
  - task_id: work
    bash: "true"
    on_execute:
      - webhook: {{url: "{base}/started"}}
    on_success:
      - webhook: {{url: "{base}/succeeded"}}
"#
        ),
    )
    .unwrap();
    let received_in = received.clone();
    with_scheduler(&h, Some(secrets), |store, waker| async move {
        let received = received_in;
        let flaky = trigger(&store, &waker, "flaky").await;
        let run = finished(&store, flaky).await;
        assert_eq!(run.state, RunState::Failed);
        let fine = trigger(&store, &waker, "fine").await;
        assert_eq!(finished(&store, fine).await.state, RunState::Success);
        eventually("every notification", DEADLINE, || async {
            let got = |p: &str| on(&received, p).len();
            (got("retry") == 1
                && got("failed") == 1
                && got("run-failed") == 1
                && got("slack/T0/B0/secret-token") == 1
                && got("started") == 1
                && got("succeeded") == 1
                && got("run-ok") == 1)
                .then_some(())
        })
        .await;
        let retry = &on(&received, "retry")[0];
        assert_eq!(retry["event"], "on_retry");
        assert_eq!(retry["dag_id"], "flaky");
        assert_eq!(retry["task_id"], "load");
        assert_eq!(retry["try_number"], 1);
        assert_eq!(retry["state"], "up_for_retry");
        assert_eq!(retry["run_id"], run.run_id.as_str());
        assert!(retry["reason"].as_str().unwrap().contains('3'), "{retry}");
        let failed = &on(&received, "failed")[0];
        assert_eq!(failed["event"], "on_failure");
        assert_eq!(failed["try_number"], 2);
        assert_eq!(failed["state"], "failed");
        let slack = &on(&received, "slack/T0/B0/secret-token")[0];
        assert_eq!(slack, &serde_json::json!({"text": "load failed (try 2)"}));
        let run_failed = &on(&received, "run-failed")[0];
        assert_eq!(run_failed["event"], "on_failure");
        assert_eq!(run_failed["task_id"], Value::Null);
        assert_eq!(run_failed["state"], "failed");
        assert!(
            on(&received, "never").is_empty(),
            "no on_success for a failure"
        );
        let started = &on(&received, "started")[0];
        assert_eq!(started["event"], "on_execute");
        assert_eq!(started["state"], "running");
        assert_eq!(
            on(&received, "run-ok")[0]["text"],
            "updraft: run ".to_owned()
                + on(&received, "succeeded")[0]["run_id"].as_str().unwrap()
                + " of fine succeeded"
        );
        let subject = format!("{marker} flaky failed");
        let mail = tokio::task::spawn_blocking(move || smtp.wait_for(&subject, DEADLINE))
            .await
            .unwrap()
            .expect("the run's failure email");
        assert!(mail.contains("ops@example.test"), "{mail}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapped_instance_s_notification_names_its_map_index() {
    let h = harness().await;
    let (base, received) = receiver().await;
    std::fs::write(
        h.dags.join("fanned.yaml"),
        format!(
            r#"dag_id: fanned
tasks:
  - task_id: check
    expand:
      x: [good, bad]
    bash: "test {{{{ mapped.x }}}} = good"
    on_failure:
      - webhook: {{url: "{base}/failed"}}
      - slack: {{webhook_url: "{base}/slack"}}
      - slack: {{webhook_url: "{base}/templated", text: "index {{{{ map_index }}}} failed"}}
"#
        ),
    )
    .unwrap();
    let received_in = received.clone();
    with_scheduler(&h, None, |store, waker| async move {
        let received = received_in;
        let run = trigger(&store, &waker, "fanned").await;
        assert_eq!(finished(&store, run).await.state, RunState::Failed);
        eventually("the notifications", DEADLINE, || async {
            let got = |p: &str| on(&received, p).len();
            (got("failed") == 1 && got("slack") == 1 && got("templated") == 1).then_some(())
        })
        .await;
        let failed = &on(&received, "failed")[0];
        assert_eq!(
            (&failed["task_id"], &failed["map_index"]),
            (&serde_json::json!("check"), &serde_json::json!(1))
        );
        assert_eq!(
            on(&received, "slack")[0]["text"],
            "updraft: task check[1] of fanned (try 1) failed: exit code 1"
        );
        assert_eq!(on(&received, "templated")[0]["text"], "index 1 failed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_dagrun_timeout_fails_and_its_sleeping_try_is_killed() {
    let h = harness().await;
    let (base, received) = receiver().await;
    let pid_file = h.dags.parent().unwrap().join("sleeper.pid");
    std::fs::write(
        h.dags.join("slow.yaml"),
        format!(
            r#"dag_id: slow
dagrun_timeout: 2s
on_failure:
  - webhook: {{url: "{base}/run-failed"}}
tasks:
  - task_id: sleeper
    bash: echo $$ > {pid}; exec sleep 120
  - task_id: after
    upstream: [sleeper]
    bash: "true"
"#,
            pid = pid_file.display()
        ),
    )
    .unwrap();
    let received_in = received.clone();
    with_scheduler(&h, None, |store, waker| async move {
        let received = received_in;
        let started = std::time::Instant::now();
        let pk = trigger(&store, &waker, "slow").await;
        let pid: i32 = eventually("the sleeper to start", DEADLINE, || async {
            std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
        })
        .await;
        let run = finished(&store, pk).await;
        assert_eq!(run.state, RunState::Failed);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out at its deadline, not at a poll: {:?}",
            started.elapsed()
        );
        let start = run.start_date.unwrap();
        let end = run.end_date.unwrap();
        assert!(
            end - start >= chrono::Duration::seconds(2),
            "{start} .. {end}"
        );
        let states: Vec<(String, TaskState)> = store
            .task_instances(pk)
            .await
            .unwrap()
            .into_iter()
            .map(|ti| (ti.task_id, ti.state))
            .collect();
        assert!(
            states.iter().all(|(_, s)| *s == TaskState::Skipped),
            "{states:?}"
        );
        eventually("the sleeping try to be killed", DEADLINE, || async {
            (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
        })
        .await;
        let event = eventually("the run's on_failure", DEADLINE, || async {
            on(&received, "run-failed").into_iter().next()
        })
        .await;
        assert_eq!(event["reason"], "timed_out");
        assert_eq!(event["state"], "failed");
        assert_eq!(event["dag_id"], "slow");
    })
    .await;
}
