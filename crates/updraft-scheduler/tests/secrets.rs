//! Connections and variables reaching tries through a live scheduler: looked up for the run's
//! tenant in the database (a real SQLite store, values encrypted by the vault), rendered into
//! templates and `AIRFLOW_CONN_*`, masked in the try's log; another tenant's connection never
//! reached; a backend that fails, or none configured, failing the try with the reason.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::oneshot;
use updraft_core::RunState;
use updraft_scheduler::{Scheduler, SchedulerConfig};
use updraft_secrets::{
    Connection, DatabaseBackend, Keyring, Secrets, SecretsBackend, SecretsError, Variable, Vault,
};
use updraft_store::{SqliteStore, Store, WriteMode};

const DEADLINE: Duration = Duration::from_secs(60);
const PASSWORD_A: &str = "a-pass/Word@1234";
const PASSWORD_B: &str = "b-only-pass-9876";
const TOKEN_A: &str = "tok-aaaa-5678";

fn config(dags: &Path, logs: &Path, secrets: Option<Arc<Secrets>>) -> SchedulerConfig {
    SchedulerConfig {
        secrets,
        ..common::config(dags, logs, "secrets-test")
    }
}

fn write_dag(dags: &Path, tenant: &str, dag_id: &str, task: &str) {
    let dir = dags.join(tenant);
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!("dag_id: {dag_id}\ntasks:\n  - task_id: t\n{task}");
    std::fs::write(dir.join(format!("{dag_id}.yaml")), text).unwrap();
}

fn connection(conn_id: &str, password: &str) -> Connection {
    Connection {
        conn_id: conn_id.into(),
        conn_type: "postgres".into(),
        host: Some("db.example".into()),
        login: Some("app".into()),
        password: Some(password.into()),
        port: Some(5432),
        schema: Some("shop".into()),
        ..Connection::default()
    }
}

fn variable(key: &str, value: &str) -> Variable {
    Variable {
        key: key.into(),
        value: value.into(),
        description: None,
    }
}

/// Runs `dag_ids` once each on a scheduler with `secrets`; returns each run's state and the
/// log of its task `t`.
async fn run_dags(
    store: Arc<SqliteStore>,
    dags: &Path,
    secrets: Option<Arc<Secrets>>,
    dag_ids: &[&str],
) -> Vec<(RunState, String)> {
    let logs = tempfile::tempdir().unwrap();
    let logs_path: PathBuf = logs.path().to_path_buf();
    let dyn_store: Arc<dyn Store> = store.clone();
    let mut scheduler = Scheduler::new(dyn_store, config(dags, &logs_path, secrets)).unwrap();
    let waker = scheduler.waker();
    let (stop, stopped) = oneshot::channel::<()>();
    let scheduling = scheduler.run(async {
        let _ = stopped.await;
    });
    let checks = async {
        let mut results = Vec::new();
        for dag_id in dag_ids {
            let run = common::trigger_and_wait(&store, &waker, dag_id, DEADLINE).await;
            let state = run.state;
            let log = updraft_dag::log_path(&logs_path, &run.tenant, dag_id, &run.run_id, "t", 1);
            results.push((state, std::fs::read_to_string(&log).unwrap_or_default()));
        }
        stop.send(()).unwrap();
        results
    };
    let (scheduled, results) = tokio::join!(scheduling, checks);
    scheduled.unwrap();
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tries_get_their_tenant_s_secrets_masked_and_never_another_tenant_s() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    let store = common::migrated_store(dir.path()).await;
    let keyring = Keyring::parse(&Keyring::generate_key(), "core.fernet_key").unwrap();
    let vault = Vault::new(store.clone(), keyring);
    let create = WriteMode::Create;
    vault
        .write_connection(Some("a"), &connection("my_db", PASSWORD_A), create)
        .await
        .unwrap();
    vault
        .write_connection(Some("b"), &connection("b_only", PASSWORD_B), create)
        .await
        .unwrap();
    vault
        .write_variable(Some("a"), &variable("api_token", TOKEN_A), create)
        .await
        .unwrap();
    vault
        .write_variable(
            None,
            &variable("settings", r#"{"bucket": "shared-bucket"}"#),
            create,
        )
        .await
        .unwrap();
    let backends: Vec<Arc<dyn SecretsBackend>> = vec![Arc::new(DatabaseBackend::new(vault))];
    let secrets = Arc::new(Secrets::new(backends, Duration::ZERO));

    write_dag(
        &dags,
        "a",
        "uses_secrets",
        r#"    connections: [my_db]
    bash: |
      echo "template {{ conn.my_db.password }} login {{ conn.my_db.login }}"
      echo "env $AIRFLOW_CONN_MY_DB"
      echo "token {{ var.value.api_token }}"
      echo "bucket {{ var.json.settings.bucket }} default {{ var.value.get('nope', 'fallback') }}"
"#,
    );
    write_dag(
        &dags,
        "a",
        "steals_by_template",
        "    bash: echo {{ conn.b_only.password }}\n",
    );
    write_dag(
        &dags,
        "a",
        "steals_by_env",
        "    connections: [b_only]\n    bash: echo \"$AIRFLOW_CONN_B_ONLY\"\n",
    );
    write_dag(
        &dags,
        "b",
        "owns_it",
        "    bash: echo {{ conn.b_only.login }}\n",
    );

    let results = run_dags(
        store,
        &dags,
        Some(secrets),
        &[
            "uses_secrets",
            "steals_by_template",
            "steals_by_env",
            "owns_it",
        ],
    )
    .await;

    let (state, log) = &results[0];
    assert_eq!(*state, RunState::Success, "{log}");
    assert!(log.contains("template *** login app\n"), "{log}");
    assert!(log.contains("env ***\n"), "{log}");
    assert!(log.contains("token ***\n"), "{log}");
    assert!(
        log.contains("bucket shared-bucket default fallback\n"),
        "{log}"
    );
    assert!(!log.contains(PASSWORD_A) && !log.contains(TOKEN_A), "{log}");

    for (state, log) in &results[1..3] {
        assert_eq!(*state, RunState::Failed, "{log}");
        assert!(
            log.contains("connection `b_only` does not exist (tenant `a`)"),
            "{log}"
        );
        assert!(!log.contains(PASSWORD_B), "{log}");
    }
    assert!(
        results[1].1.contains("task `t`, field `bash`"),
        "{}",
        results[1].1
    );
    assert!(
        results[2].1.contains("task `t`, field `connections`"),
        "{}",
        results[2].1
    );
    // The owner reads it.
    assert_eq!(results[3].0, RunState::Success, "{}", results[3].1);
    assert!(results[3].1.contains("app\n"), "{}", results[3].1);
}

/// A backend that cannot be reached.
struct Down;

#[async_trait]
impl SecretsBackend for Down {
    fn name(&self) -> &str {
        "unreachable"
    }

    async fn connection(&self, _: &str, _: &str) -> Result<Option<Connection>, SecretsError> {
        Err(SecretsError::Backend {
            backend: "unreachable".into(),
            message: "connection refused".into(),
        })
    }

    async fn variable(&self, _: &str, _: &str) -> Result<Option<String>, SecretsError> {
        Err(SecretsError::Backend {
            backend: "unreachable".into(),
            message: "connection refused".into(),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_backend_or_none_fails_the_try_with_the_reason_in_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    write_dag(
        &dags,
        "a",
        "needs_db",
        "    bash: echo {{ conn.my_db.host }}\n",
    );
    write_dag(
        &dags,
        "a",
        "needs_var",
        "    bash: echo {{ var.value.get('k', 'd') }}\n",
    );
    write_dag(
        &dags,
        "a",
        "needs_nothing",
        "    bash: echo {{ ds }} plain\n",
    );

    let store = common::migrated_store(dir.path()).await;
    let down: Vec<Arc<dyn SecretsBackend>> = vec![Arc::new(Down)];
    let secrets = Arc::new(Secrets::new(down, Duration::ZERO));
    let results = run_dags(
        store.clone(),
        &dags,
        Some(secrets),
        &["needs_db", "needs_var", "needs_nothing"],
    )
    .await;
    assert_eq!(results[0].0, RunState::Failed);
    assert!(
        results[0].1.contains(
            "task `t`: looking up connection `my_db` failed: secrets backend unreachable: connection refused"
        ),
        "{}",
        results[0].1
    );
    assert_eq!(results[1].0, RunState::Failed);
    assert!(
        results[1].1.contains("looking up variable `k` failed"),
        "{}",
        results[1].1
    );
    assert_eq!(results[2].0, RunState::Success, "{}", results[2].1);

    // The same DAGs again (new runs), with no backend configured.
    let results = run_dags(store, &dags, None, &["needs_db", "needs_nothing"]).await;
    assert_eq!(results[0].0, RunState::Failed);
    assert!(
        results[0]
            .1
            .contains("task `t`: it uses connection `my_db`, but no secrets backend is configured"),
        "{}",
        results[0].1
    );
    assert_eq!(results[1].0, RunState::Success, "{}", results[1].1);
}
