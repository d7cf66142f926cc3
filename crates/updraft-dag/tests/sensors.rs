//! The `sensor:` task kind: its timing and each of its checks as a DAG file says them, and the
//! import errors (file, line, column, field) for what it may not say.

use std::collections::BTreeMap;
use std::time::Duration;

use updraft_dag::{
    ExternalTaskCheck, HttpCheck, ImportError, SensorCheck, SensorTask, SensorTiming, SqlCheck,
    TaskKind, parse_dag,
};

fn sensor_of(body: &str) -> SensorTask {
    let yaml = format!("dag_id: daily\ntasks:\n  - task_id: wait\n    sensor:\n{body}");
    let dag = parse_dag("etl", "etl/daily.yaml", &yaml).expect("parses");
    match &dag.tasks[0].kind {
        TaskKind::Sensor(sensor) => (**sensor).clone(),
        other => panic!("expected a sensor, got {other:?}"),
    }
}

fn one_error(yaml: &str) -> ImportError {
    let errors = parse_dag("etl", "etl/daily.yaml", yaml).expect_err("must be refused");
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.into_iter().next().unwrap()
}

/// The sensor body's error is at `line`:`column` of etl/daily.yaml (the task's `sensor:` is
/// line 4, its body from line 5) and its message holds every `part`.
fn assert_error(body: &str, line: u32, column: u32, parts: &[&str]) {
    let yaml = format!("dag_id: daily\ntasks:\n  - task_id: wait\n    sensor:\n{body}");
    let error = one_error(&yaml);
    assert_eq!(error.filename, "etl/daily.yaml");
    assert_eq!(
        (error.line, error.column),
        (Some(line), Some(column)),
        "{error}"
    );
    for part in parts {
        assert!(error.message.contains(part), "{part:?} not in: {error}");
    }
}

#[test]
fn a_path_sensor_with_its_timing() {
    let sensor = sensor_of(
        "      path: /data/{{ ds }}/*.csv\n      poke_interval: 30s\n      timeout: 2h\n      exponential_backoff: true\n      max_wait: 10m\n      soft_fail: true\n      mode: reschedule\n",
    );
    assert_eq!(
        sensor,
        SensorTask {
            timing: SensorTiming {
                poke_interval: Duration::from_secs(30),
                timeout: Duration::from_secs(7200),
                exponential_backoff: true,
                max_wait: Some(Duration::from_secs(600)),
                soft_fail: true,
            },
            check: SensorCheck::Path("/data/{{ ds }}/*.csv".into()),
        }
    );
}

#[test]
fn airflow_s_defaults_when_no_timing_is_given() {
    // Airflow's BaseSensorOperator: poke_interval 60 s, timeout 7 days, no backoff.
    let sensor = sensor_of("      time_delta: 1h\n");
    assert_eq!(sensor.timing, SensorTiming::default());
    assert_eq!(sensor.timing.poke_interval, Duration::from_secs(60));
    assert_eq!(sensor.timing.timeout, Duration::from_secs(7 * 86_400));
    assert_eq!(
        sensor.check,
        SensorCheck::TimeDelta(Duration::from_secs(3600))
    );
}

#[test]
fn every_check() {
    assert_eq!(
        sensor_of("      date_time: \"{{ data_interval_end }}\"\n").check,
        SensorCheck::DateTime("{{ data_interval_end }}".into())
    );
    assert_eq!(
        sensor_of("      date_time: 2024-01-01T03:00:00Z\n").check,
        SensorCheck::DateTime("2024-01-01T03:00:00Z".into())
    );
    assert_eq!(
        sensor_of(
            "      external_task:\n        external_dag_id: load\n        external_task_id: publish\n        allowed_states: [success, skipped]\n        failed_states: failed\n        execution_delta: 1h\n"
        )
        .check,
        SensorCheck::ExternalTask(ExternalTaskCheck {
            external_dag_id: "load".into(),
            external_task_id: Some("publish".into()),
            allowed_states: vec!["success".into(), "skipped".into()],
            failed_states: vec!["failed".into()],
            execution_delta: Some(Duration::from_secs(3600)),
        })
    );
    assert_eq!(
        sensor_of("      external_task: {external_dag_id: load}\n").check,
        SensorCheck::ExternalTask(ExternalTaskCheck {
            external_dag_id: "load".into(),
            external_task_id: None,
            allowed_states: vec!["success".into()],
            failed_states: vec![],
            execution_delta: None,
        }),
        "Airflow's defaults: the whole run, success allowed, no failed states"
    );
    assert_eq!(
        sensor_of(
            "      http:\n        connection: api\n        endpoint: /ready/{{ ds }}\n        method: head\n        expected_status: [200, 204]\n        headers: {X-Token: \"{{ var.value.token }}\"}\n"
        )
        .check,
        SensorCheck::Http(HttpCheck {
            connection: Some("api".into()),
            url: None,
            endpoint: "/ready/{{ ds }}".into(),
            method: "HEAD".into(),
            expected_status: vec![200, 204],
            headers: BTreeMap::from([("X-Token".into(), "{{ var.value.token }}".into())]),
            body: None,
        })
    );
    assert_eq!(
        sensor_of("      http: {url: \"http://localhost:8080\"}\n").check,
        SensorCheck::Http(HttpCheck {
            connection: None,
            url: Some("http://localhost:8080".into()),
            endpoint: String::new(),
            method: "GET".into(),
            expected_status: vec![200],
            headers: BTreeMap::new(),
            body: None,
        })
    );
    assert_eq!(
        sensor_of("      sql:\n        connection: warehouse\n        query: SELECT count(*) FROM loads WHERE day = '{{ ds }}'\n").check,
        SensorCheck::Sql(SqlCheck {
            connection: "warehouse".into(),
            query: "SELECT count(*) FROM loads WHERE day = '{{ ds }}'".into(),
        })
    );
    assert_eq!(
        sensor_of("      bash: test -s /data/ready\n").check,
        SensorCheck::Bash("test -s /data/ready".into())
    );
    assert_eq!(
        sensor_of("      command: [test, -e, /data/ready]\n").check,
        SensorCheck::Command(vec!["test".into(), "-e".into(), "/data/ready".into()])
    );
}

#[test]
fn a_sensor_s_definition_is_stored_and_read_back() {
    let yaml =
        "dag_id: daily\ntasks:\n  - task_id: wait\n    sensor: {path: /x, poke_interval: 5s}\n";
    let dag = parse_dag("etl", "etl/daily.yaml", yaml).unwrap();
    let json = serde_json::to_string(&dag).unwrap();
    let back: updraft_dag::Dag = serde_json::from_str(&json).unwrap();
    assert_eq!(back, dag);
}

#[test]
fn located_errors() {
    assert_error(
        "      poke_interval: 5s\n",
        5,
        7,
        &["does not say what to wait for", "`path`"],
    );
    assert_error(
        "      path: /a\n      bash: \"true\"\n",
        6,
        7,
        &["sets both `path` and `bash`"],
    );
    assert_error(
        "      path: /a\n      poke_interval: soon\n",
        6,
        22,
        &["sensor.poke_interval"],
    );
    assert_error(
        "      path: /a\n      poke_interval: 0\n",
        6,
        22,
        &["longer than zero"],
    );
    assert_error(
        "      path: /a\n      mode: poke\n",
        6,
        13,
        &["always reschedule"],
    );
    assert_error(
        "      path: /a\n      soft_fail: yes\n",
        6,
        18,
        &["sensor.soft_fail"],
    );
    assert_error(
        "      path: /a\n      filepath: /a\n",
        6,
        7,
        &["unknown key `filepath`", "use `path`"],
    );
    assert_error(
        "      date_time: tomorrow\n",
        5,
        18,
        &["sensor.date_time", "not a date"],
    );
    assert_error(
        "      external_task: {external_task_id: a}\n",
        5,
        22,
        &["needs an `external_dag_id`"],
    );
    assert_error(
        "      external_task:\n        external_dag_id: load\n        allowed_states: [succes]\n",
        7,
        26,
        &["unknown state `succes`", "success"],
    );
    assert_error(
        "      external_task:\n        external_dag_id: load\n        failed_states: [success]\n",
        7,
        24,
        &["in both `allowed_states` and `failed_states`"],
    );
    assert_error(
        "      http: {endpoint: /x}\n",
        5,
        13,
        &["needs a `connection`", "`url`"],
    );
    assert_error(
        "      http: {url: \"http://h\", expected_status: [700]}\n",
        5,
        49,
        &["expected_status", "100 to 599"],
    );
    assert_error(
        "      http: {url: \"http://h\", method: FETCH}\n",
        5,
        39,
        &["unknown `sensor.http.method`"],
    );
    assert_error(
        "      sql: {query: SELECT 1}\n",
        5,
        12,
        &["needs a `connection`"],
    );
    assert_error(
        "      sql: {connection: \"my db\", query: SELECT 1}\n",
        5,
        25,
        &["sensor.sql.connection", "contains ' '"],
    );
    assert_error(
        "      command: test -e /x\n",
        5,
        16,
        &["sensor.command", "a list of arguments"],
    );
}

#[test]
fn timing_keys_outside_the_sensor_are_pointed_inside() {
    let error = one_error(
        "dag_id: daily\ntasks:\n  - task_id: wait\n    poke_interval: 5s\n    sensor: {path: /x}\n",
    );
    assert_eq!((error.line, error.column), (Some(4), Some(5)), "{error}");
    assert!(error.message.contains("inside `sensor:`"), "{error}");
}

#[test]
fn the_example_dag_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/dags/sensor_example.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let dag = parse_dag("default", "sensor_example.yaml", &text).expect("the example parses");
    let sensors = dag
        .tasks
        .iter()
        .filter(|t| matches!(t.kind, TaskKind::Sensor(_)))
        .count();
    assert_eq!(sensors, 3);
}

#[test]
fn a_sensor_s_bash_script_is_linted_like_a_task_s() {
    let text = "dag_id: daily\ntasks:\n  - task_id: wait\n    sensor:\n      bash: test -e {{ params.path }}\n  - task_id: safe\n    sensor:\n      bash: test -e {{ params.path | sh }}\n";
    parse_dag("etl", "etl/daily.yaml", text).expect("parses");
    let warnings = updraft_dag::lint::lint_dag_file("etl/daily.yaml", text);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].task_id, "wait");
    assert_eq!(warnings[0].line, Some(5));
    assert!(warnings[0].message.contains("unquoted"));
}
