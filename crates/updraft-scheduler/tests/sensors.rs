//! Sensors through a live scheduler on a real SQLite store: each check waits (the instance
//! `up_for_reschedule` between pokes, no process, no slot, one `task_reschedule` row per poke
//! that rescheduled), then succeeds once its condition holds and its downstream runs; a time
//! sensor is not poked before its target; a timeout fails the sensor (not retried) or, with
//! `soft_fail`, skips it and its downstream per trigger rule.

mod common;

use common::eventually;
use common::live::{DEADLINE, with_configured_scheduler, with_scheduler};

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use chrono::{DateTime, Utc};
use updraft_core::{RunState, TaskState};
use updraft_store::{OperatorStore, ReadStore, TiKey};

fn states(pairs: &[(&str, TaskState)]) -> BTreeMap<String, TaskState> {
    pairs.iter().map(|(id, s)| (id.to_string(), *s)).collect()
}

/// A sensor and a task downstream of it.
fn waiting_dag(dag_id: &str, sensor: &str) -> String {
    format!(
        "dag_id: {dag_id}\ntasks:\n  - task_id: wait\n    retries: 2\n    retry_delay: 1s\n    sensor:\n{sensor}  - task_id: after\n    bash: echo after\n    upstream: [wait]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_sensor_waits_for_its_file_then_its_downstream_runs() {
    let dag = waiting_dag(
        "files",
        "      path: \"{data}/{{ ds }}/*.csv\"\n      poke_interval: 1s\n      timeout: 1h\n",
    );
    with_scheduler(&[("files.yaml", &dag)], &[], |ctx| async move {
        let run = ctx.trigger("files", None, serde_json::json!({})).await;
        let waiting = ctx.until(&run, "wait", TaskState::UpForReschedule).await;
        assert_eq!(waiting.try_number, 1);
        assert_eq!(waiting.pid, None, "a poke runs no process");
        let next = waiting.retry_at.expect("the next poke is kept in retry_at");
        assert!(
            next > waiting.end_date.unwrap(),
            "the next poke comes after this one"
        );
        assert!(ctx.reschedules(&run, "wait", 1).await >= 1);
        // Pokes go on, on the same try, and nothing downstream starts.
        eventually("a second poke", DEADLINE, || async {
            (ctx.reschedules(&run, "wait", 1).await >= 2).then_some(())
        })
        .await;
        assert_eq!(
            ctx.ti(&run, "wait").await.try_number,
            1,
            "a poke is not a new try"
        );
        assert_eq!(ctx.ti(&run, "after").await.state, TaskState::None);

        let folder = ctx
            .data
            .join(run.logical_date.format("%Y-%m-%d").to_string());
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("part-1.csv"), "x").unwrap();
        let (state, tasks) = ctx.finished(&run).await;
        assert_eq!(state, RunState::Success);
        assert_eq!(
            tasks,
            states(&[("wait", TaskState::Success), ("after", TaskState::Success)])
        );
        let wait = ctx.ti(&run, "wait").await;
        assert_eq!(wait.try_number, 1, "the pokes were one try");
        assert!(
            ctx.log(&run, "wait", 1).contains("part-1.csv"),
            "the log says what was found"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_sensor_is_not_poked_before_its_target() {
    let dag = waiting_dag(
        "timed",
        "      date_time: \"{{ dag_run.conf.at }}\"\n      poke_interval: 1h\n",
    );
    with_scheduler(&[("timed.yaml", &dag)], &[], |ctx| async move {
        let target = Utc::now() + chrono::TimeDelta::seconds(3);
        let target = DateTime::from_timestamp(target.timestamp(), 0).unwrap();
        let run = ctx
            .trigger(
                "timed",
                None,
                serde_json::json!({"at": target.to_rfc3339()}),
            )
            .await;
        let waiting = ctx.until(&run, "wait", TaskState::UpForReschedule).await;
        assert_eq!(
            waiting.retry_at,
            Some(target),
            "rescheduled to the target itself, not a poke_interval (1h) later"
        );
        let (state, _) = ctx.finished(&run).await;
        assert_eq!(state, RunState::Success);
        let wait = ctx.ti(&run, "wait").await;
        assert!(wait.end_date.unwrap() >= target);
        assert_eq!(
            ctx.reschedules(&run, "wait", 1).await,
            1,
            "one poke before the target, one at it"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_delta_sensor_waits_past_the_data_interval_end() {
    let dag = waiting_dag("delta", "      time_delta: 2s\n      poke_interval: 1h\n");
    with_scheduler(&[("delta.yaml", &dag)], &[], |ctx| async move {
        let logical = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
        let run = ctx
            .trigger("delta", Some(logical), serde_json::json!({}))
            .await;
        let waiting = ctx.until(&run, "wait", TaskState::UpForReschedule).await;
        assert_eq!(
            waiting.retry_at,
            Some(run.data_interval_end + chrono::TimeDelta::seconds(2))
        );
        assert_eq!(ctx.finished(&run).await.0, RunState::Success);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_sensor_fails_without_retries_and_its_downstream_is_upstream_failed() {
    let dag = waiting_dag(
        "late",
        "      path: \"{data}/never\"\n      poke_interval: 1s\n      timeout: 2s\n",
    );
    with_scheduler(&[("late.yaml", &dag)], &[], |ctx| async move {
        let run = ctx.trigger("late", None, serde_json::json!({})).await;
        let (state, tasks) = ctx.finished(&run).await;
        assert_eq!(state, RunState::Failed);
        assert_eq!(
            tasks,
            states(&[
                ("wait", TaskState::Failed),
                ("after", TaskState::UpstreamFailed)
            ])
        );
        let wait = ctx.ti(&run, "wait").await;
        assert_eq!(
            wait.try_number, 1,
            "a sensor's timeout is not retried (retries: 2)"
        );
        let first = ctx
            .store
            .reschedules(
                &TiKey {
                    run_pk: run.id,
                    task_id: "wait".into(),
                    map_index: -1,
                },
                1,
            )
            .await
            .unwrap();
        let first_poke = first.first().unwrap().start_date;
        let ended = wait.end_date.unwrap();
        assert!(
            ended >= first_poke + chrono::TimeDelta::seconds(2),
            "timed out at the deadline counted from the first poke"
        );
        assert!(ctx.log(&run, "wait", 1).contains("timed out"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_fail_skips_the_sensor_and_its_downstream_per_trigger_rule() {
    let dag = "dag_id: soft
tasks:
  - task_id: wait
    sensor:
      path: \"{data}/never\"
      poke_interval: 1s
      timeout: 1s
      soft_fail: true
  - task_id: after
    bash: echo after
    upstream: [wait]
  - task_id: cleanup
    bash: echo cleanup
    trigger_rule: all_done
    upstream: [wait]
";
    with_scheduler(&[("soft.yaml", dag)], &[], |ctx| async move {
        let run = ctx.trigger("soft", None, serde_json::json!({})).await;
        let (state, tasks) = ctx.finished(&run).await;
        assert_eq!(state, RunState::Success);
        assert_eq!(
            tasks,
            states(&[
                ("wait", TaskState::Skipped),
                ("after", TaskState::Skipped),
                ("cleanup", TaskState::Success),
            ])
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_sensor_waits_for_exit_code_zero() {
    let dag = waiting_dag(
        "probe",
        "      bash: test -e \"{data}/flag\"\n      poke_interval: 1s\n",
    );
    with_scheduler(&[("probe.yaml", &dag)], &[], |ctx| async move {
        let run = ctx.trigger("probe", None, serde_json::json!({})).await;
        ctx.until(&run, "wait", TaskState::UpForReschedule).await;
        std::fs::write(ctx.data.join("flag"), "").unwrap();
        let (state, tasks) = ctx.finished(&run).await;
        assert_eq!(state, RunState::Success);
        assert_eq!(tasks["after"], TaskState::Success);
        assert_eq!(ctx.ti(&run, "wait").await.try_number, 1);
    })
    .await;
}

/// Airflow's `ExternalTaskSensor` cases: the other DAG's task at the same logical date
/// (`test_external_task_sensor`), a failed state failing the sensor
/// (`test_external_task_sensor_failed_states_as_success` turned around), and the whole run
/// when no task is named (`test_external_dag_sensor`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_task_sensors_follow_another_dag_of_the_tenant() {
    let producer = "dag_id: producer\ntasks:\n  - task_id: publish\n    bash: echo published\n";
    let broken = "dag_id: broken\ntasks:\n  - task_id: publish\n    bash: exit 3\n";
    let waiter = "dag_id: waiter
tasks:
  - task_id: on_task
    sensor:
      external_task: {external_dag_id: producer, external_task_id: publish}
      poke_interval: 1s
  - task_id: on_run
    sensor:
      external_task: {external_dag_id: producer}
      poke_interval: 1s
  - task_id: on_broken
    sensor:
      external_task: {external_dag_id: broken, external_task_id: publish, failed_states: [failed]}
      poke_interval: 1s
";
    // Another tenant's DAG is never seen.
    let foreign = "dag_id: foreign\ntasks:\n  - task_id: publish\n    bash: echo other tenant\n";
    let peeker = "dag_id: peeker
tasks:
  - task_id: peek
    sensor:
      external_task: {external_dag_id: foreign}
      poke_interval: 1s
      timeout: 3s
      soft_fail: true
";
    let files = [
        ("acme/producer.yaml", producer),
        ("acme/broken.yaml", broken),
        ("acme/waiter.yaml", waiter),
        ("acme/peeker.yaml", peeker),
        ("globex/foreign.yaml", foreign),
    ];
    with_scheduler(&files, &[], |ctx| async move {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let run = ctx.trigger("waiter", Some(at), serde_json::json!({})).await;
        ctx.until(&run, "on_task", TaskState::UpForReschedule).await;
        ctx.until(&run, "on_run", TaskState::UpForReschedule).await;
        let other_day = ctx
            .trigger(
                "producer",
                Some(at + chrono::TimeDelta::days(1)),
                serde_json::json!({}),
            )
            .await;
        assert_eq!(ctx.finished(&other_day).await.0, RunState::Success);
        let foreign = ctx
            .trigger("foreign", Some(at), serde_json::json!({}))
            .await;
        assert_eq!(ctx.finished(&foreign).await.0, RunState::Success);
        let peek = ctx.trigger("peeker", Some(at), serde_json::json!({})).await;
        assert_eq!(
            ctx.finished(&peek).await.1["peek"],
            TaskState::Skipped,
            "another tenant's run at the same date is not seen"
        );
        assert_eq!(
            ctx.ti(&run, "on_task").await.state,
            TaskState::UpForReschedule,
            "a run of another date does not count"
        );
        let produced = ctx
            .trigger("producer", Some(at), serde_json::json!({}))
            .await;
        assert_eq!(ctx.finished(&produced).await.0, RunState::Success);
        ctx.until(&run, "on_task", TaskState::Success).await;
        ctx.until(&run, "on_run", TaskState::Success).await;
        let broken = ctx.trigger("broken", Some(at), serde_json::json!({})).await;
        assert_eq!(ctx.finished(&broken).await.0, RunState::Failed);
        let (state, tasks) = ctx.finished(&run).await;
        assert_eq!(state, RunState::Failed);
        assert_eq!(tasks["on_broken"], TaskState::Failed);
        assert!(ctx.log(&run, "on_broken", 1).contains("failed_states"));
    })
    .await;
}

/// An axum server answering `/ready` with 503 until told otherwise, then 200.
async fn ready_server() -> (String, Arc<AtomicU16>) {
    let status = Arc::new(AtomicU16::new(503));
    let answer = status.clone();
    let app = axum::Router::new().route(
        "/ready",
        axum::routing::get(move || {
            let answer = answer.clone();
            async move { axum::http::StatusCode::from_u16(answer.load(Ordering::SeqCst)).unwrap() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), status)
}

/// `[scheduler] sensor_poke_timeout` bounds a poke whose task sets no `execution_timeout`:
/// an HTTP check against a server that accepts but never answers fails its try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poke_longer_than_the_sensor_poke_timeout_fails_its_try() {
    let app = axum::Router::new().route(
        "/hang",
        axum::routing::get(std::future::pending::<axum::http::StatusCode>),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dag = format!(
        "dag_id: hanging\ntasks:\n  - task_id: wait\n    sensor:\n      http: {{url: \"http://{addr}\", endpoint: /hang}}\n      poke_interval: 1s\n"
    );
    let configure = |config: &mut updraft_scheduler::SchedulerConfig| {
        config.sensor_poke_timeout = std::time::Duration::from_secs(1);
    };
    with_configured_scheduler(
        &[("hanging.yaml", &dag)],
        &[],
        configure,
        |ctx| async move {
            let run = ctx.trigger("hanging", None, serde_json::json!({})).await;
            let (state, tasks) = ctx.finished(&run).await;
            assert_eq!(state, RunState::Failed, "{tasks:?}");
            assert_eq!(tasks["wait"], TaskState::Failed);
            let log = ctx.log(&run, "wait", 1);
            assert!(log.contains("the poke took longer than 1s"), "{log}");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_sensor_waits_for_an_expected_status() {
    let (url, status) = ready_server().await;
    let by_url = waiting_dag(
        "by_url",
        &format!("      http: {{url: \"{url}\", endpoint: /ready}}\n      poke_interval: 1s\n"),
    );
    let by_conn = waiting_dag(
        "by_conn",
        "      http: {connection: api, endpoint: ready, expected_status: [200, 204]}\n      poke_interval: 1s\n",
    );
    let port = url.rsplit(':').next().unwrap().to_owned();
    let conn = format!(r#"{{"conn_type": "http", "host": "127.0.0.1", "port": {port}}}"#);
    with_scheduler(
        &[("by_url.yaml", &by_url), ("by_conn.yaml", &by_conn)],
        &[("api", conn)],
        |ctx| async move {
            let run = ctx.trigger("by_url", None, serde_json::json!({})).await;
            let other = ctx.trigger("by_conn", None, serde_json::json!({})).await;
            ctx.until(&run, "wait", TaskState::UpForReschedule).await;
            ctx.until(&other, "wait", TaskState::UpForReschedule).await;
            assert!(ctx.log(&run, "wait", 1).contains("answered 503"));
            status.store(200, Ordering::SeqCst);
            assert_eq!(ctx.finished(&run).await.0, RunState::Success);
            assert_eq!(ctx.finished(&other).await.0, RunState::Success);
        },
    )
    .await;
}

async fn sqlite_db(path: &Path) -> sqlx::SqliteConnection {
    use sqlx::Connection as _;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    let mut db = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE loads (day TEXT NOT NULL, done INTEGER NOT NULL)")
        .execute(&mut db)
        .await
        .unwrap();
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_sensor_on_sqlite_waits_for_a_truthy_first_cell() {
    let dag = waiting_dag(
        "loads",
        "      sql: {connection: warehouse, query: \"SELECT count(*) FROM loads WHERE day = '{{ ds }}'\"}\n      poke_interval: 1s\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("warehouse.db");
    let mut db = sqlite_db(&file).await;
    let conn = format!(r#"{{"conn_type": "sqlite", "host": "{}"}}"#, file.display());
    with_scheduler(
        &[("loads.yaml", &dag)],
        &[("warehouse", conn)],
        |ctx| async move {
            let run = ctx.trigger("loads", None, serde_json::json!({})).await;
            ctx.until(&run, "wait", TaskState::UpForReschedule).await;
            assert!(ctx.log(&run, "wait", 1).contains("first cell is false"));
            sqlx::query("INSERT INTO loads VALUES ($1, 1)")
                .bind(run.logical_date.format("%Y-%m-%d").to_string())
                .execute(&mut db)
                .await
                .unwrap();
            assert_eq!(ctx.finished(&run).await.0, RunState::Success);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_sensor_on_postgres_waits_for_a_truthy_first_cell() {
    use sqlx::Connection as _;
    let url = std::env::var("UPDRAFT_TEST_POSTGRES_URL").expect(
        "UPDRAFT_TEST_POSTGRES_URL names a PostgreSQL for this test (scripts/test starts one)",
    );
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let schema = format!("sensor_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {schema}.flags (ready BOOLEAN)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let conn = serde_json::json!({
        "conn_type": "postgres",
        "host": options.get_host(),
        "port": options.get_port(),
        "login": options.get_username(),
        "schema": options.get_database().unwrap_or("postgres"),
    })
    .to_string();
    let dag = waiting_dag(
        "flags",
        &format!(
            "      sql: {{connection: pg, query: \"SELECT ready FROM {schema}.flags LIMIT 1\"}}\n      poke_interval: 1s\n"
        ),
    );
    with_scheduler(&[("flags.yaml", &dag)], &[("pg", conn)], |ctx| async move {
        let run = ctx.trigger("flags", None, serde_json::json!({})).await;
        ctx.until(&run, "wait", TaskState::UpForReschedule).await;
        assert!(ctx.log(&run, "wait", 1).contains("no row"));
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {schema}.flags VALUES (false)"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        eventually("a poke that reads false", DEADLINE, || async {
            ctx.log(&run, "wait", 1)
                .contains("first cell is false")
                .then_some(())
        })
        .await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {schema}.flags SET ready = true"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        assert_eq!(ctx.finished(&run).await.0, RunState::Success);
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&mut admin)
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_a_sensor_deletes_its_reschedules_and_it_pokes_afresh() {
    let dag = waiting_dag(
        "again",
        "      path: \"{data}/ready\"\n      poke_interval: 1s\n",
    );
    with_scheduler(&[("again.yaml", &dag)], &[], |ctx| async move {
        let run = ctx.trigger("again", None, serde_json::json!({})).await;
        ctx.until(&run, "wait", TaskState::UpForReschedule).await;
        std::fs::write(ctx.data.join("ready"), "").unwrap();
        assert_eq!(ctx.finished(&run).await.0, RunState::Success);
        assert!(ctx.reschedules(&run, "wait", 1).await >= 1);
        std::fs::remove_file(ctx.data.join("ready")).unwrap();
        let cleared = ctx
            .store
            .clear_task_instances(run.id, &["wait".to_owned(), "after".to_owned()], Utc::now())
            .await
            .unwrap();
        assert_eq!(cleared, 2);
        assert_eq!(
            ctx.reschedules(&run, "wait", 1).await,
            0,
            "clearing deletes the rows"
        );
        ctx.waker.notify_one();
        let waiting = ctx.until(&run, "wait", TaskState::UpForReschedule).await;
        assert_eq!(waiting.try_number, 2, "the cleared instance's next try");
        assert!(ctx.reschedules(&run, "wait", 2).await >= 1);
        std::fs::write(ctx.data.join("ready"), "").unwrap();
        assert_eq!(ctx.finished(&run).await.0, RunState::Success);
    })
    .await;
}

/// Airflow's `test_sensor_with_exponential_backoff_on` in reschedule mode: the wait after the
/// n-th poke is poke_interval × 2^(n-1), read from the try's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exponential_backoff_doubles_the_wait_from_poke_to_poke() {
    let dag = waiting_dag(
        "backoff",
        "      path: \"{data}/never\"\n      poke_interval: 1s\n      exponential_backoff: true\n      max_wait: 1h\n",
    );
    with_scheduler(&[("backoff.yaml", &dag)], &[], |ctx| async move {
        let run = ctx.trigger("backoff", None, serde_json::json!({})).await;
        let key = TiKey {
            run_pk: run.id,
            task_id: "wait".into(),
            map_index: -1,
        };
        let rows = eventually("three pokes", DEADLINE, || async {
            let rows = ctx.store.reschedules(&key, 1).await.unwrap();
            (rows.len() >= 3).then_some(rows)
        })
        .await;
        let waits: Vec<i64> = rows[..3]
            .iter()
            .map(|r| (r.reschedule_date - r.end_date).num_milliseconds())
            .collect();
        assert_eq!(waits, vec![1000, 2000, 4000]);
        assert_eq!(ctx.ti(&run, "wait").await.try_number, 1);
    })
    .await;
}
