//! The `trigger_dag_run:` task kind (Airflow's `TriggerDagRunOperator`) as a DAG file says it:
//! read as a sensor whose check starts the run, Airflow's defaults, and the located import
//! errors for what it may not say.

use std::time::Duration;

use updraft_dag::{
    ImportError, SensorCheck, SensorTask, SensorTiming, TaskKind, TriggerDagRunCheck, parse_dag,
};

fn yaml_of(body: &str) -> String {
    format!("dag_id: parent\ntasks:\n  - task_id: start\n    trigger_dag_run:\n{body}")
}

fn trigger_of(body: &str) -> SensorTask {
    let dag = parse_dag("etl", "etl/parent.yaml", &yaml_of(body)).expect("parses");
    match &dag.tasks[0].kind {
        TaskKind::Sensor(sensor) => (**sensor).clone(),
        other => panic!("expected a sensor, got {other:?}"),
    }
}

/// The body's only error is at `line`:`column` of etl/parent.yaml (the body starts at line 5)
/// and its message holds every `part`.
fn assert_error(body: &str, line: u32, column: u32, parts: &[&str]) {
    let errors: Vec<ImportError> =
        parse_dag("etl", "etl/parent.yaml", &yaml_of(body)).expect_err("must be refused");
    assert_eq!(errors.len(), 1, "{errors:?}");
    let error = &errors[0];
    assert_eq!(error.filename, "etl/parent.yaml");
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
fn airflow_s_defaults() {
    let trigger = trigger_of("      trigger_dag_id: child\n");
    assert_eq!(
        trigger,
        SensorTask {
            timing: SensorTiming {
                poke_interval: Duration::from_secs(60),
                ..SensorTiming::default()
            },
            check: SensorCheck::TriggerDagRun(TriggerDagRunCheck {
                trigger_dag_id: "child".into(),
                trigger_run_id: None,
                logical_date: None,
                conf: serde_json::Value::Null,
                reset_dag_run: false,
                skip_when_already_exists: false,
                wait_for_completion: false,
                allowed_states: vec!["success".into()],
                failed_states: vec!["failed".into()],
            }),
        }
    );
    assert_eq!(trigger.check.name(), "trigger_dag_run");
}

#[test]
fn every_field() {
    let trigger = trigger_of(
        "      trigger_dag_id: \"{{ params.target }}\"\n      trigger_run_id: \"from_{{ run_id }}\"\n      logical_date: \"{{ ts }}\"\n      conf:\n        day: \"{{ ds }}\"\n        sizes: [1, 2]\n      reset_dag_run: true\n      wait_for_completion: true\n      poke_interval: 5s\n      timeout: 1h\n      allowed_states: [success, failed]\n      failed_states: []\n      deferrable: true\n",
    );
    assert_eq!(
        trigger,
        SensorTask {
            timing: SensorTiming {
                poke_interval: Duration::from_secs(5),
                timeout: Duration::from_secs(3600),
                ..SensorTiming::default()
            },
            check: SensorCheck::TriggerDagRun(TriggerDagRunCheck {
                trigger_dag_id: "{{ params.target }}".into(),
                trigger_run_id: Some("from_{{ run_id }}".into()),
                logical_date: Some("{{ ts }}".into()),
                conf: serde_json::json!({"day": "{{ ds }}", "sizes": [1, 2]}),
                reset_dag_run: true,
                skip_when_already_exists: false,
                wait_for_completion: true,
                allowed_states: vec!["success".into(), "failed".into()],
                failed_states: vec![],
            }),
        }
    );
}

#[test]
fn the_definition_is_stored_and_read_back() {
    let yaml = yaml_of(
        "      trigger_dag_id: child\n      conf: {a: 1}\n      wait_for_completion: true\n",
    );
    let dag = parse_dag("etl", "etl/parent.yaml", &yaml).unwrap();
    let json = serde_json::to_string(&dag).unwrap();
    let back: updraft_dag::Dag = serde_json::from_str(&json).unwrap();
    assert_eq!(back, dag);
}

#[test]
fn located_errors() {
    assert_error(
        "      conf: {a: 1}\n",
        5,
        7,
        &["`trigger_dag_run` needs a `trigger_dag_id`"],
    );
    assert_error(
        "      trigger_dag_id: \"bad id\"\n",
        5,
        23,
        &["trigger_dag_run.trigger_dag_id"],
    );
    assert_error(
        "      trigger_dag_id: child\n      execution_date: \"2024-01-01\"\n",
        6,
        7,
        &["unknown key `execution_date`", "use `logical_date`"],
    );
    assert_error(
        "      trigger_dag_id: child\n      logical_date: yesterday\n",
        6,
        21,
        &["`trigger_dag_run.logical_date`"],
    );
    assert_error(
        "      trigger_dag_id: child\n      conf: [1, 2]\n",
        6,
        13,
        &["trigger_dag_run.conf", "a mapping"],
    );
    assert_error(
        "      trigger_dag_id: child\n      allowed_states: [success, skipped]\n",
        6,
        33,
        &[
            "unknown state `skipped`",
            "queued, running, success, failed",
        ],
    );
    assert_error(
        "      trigger_dag_id: child\n      failed_states: [success]\n",
        6,
        22,
        &["`success` is in both `allowed_states` and `failed_states`"],
    );
    assert_error(
        "      trigger_dag_id: child\n      reset_dag_run: true\n      skip_when_already_exists: true\n",
        7,
        7,
        &["both `reset_dag_run` and `skip_when_already_exists`"],
    );
    assert_error(
        "      trigger_dag_id: child\n      wait_for_completion: yes please\n",
        6,
        28,
        &["trigger_dag_run.wait_for_completion"],
    );
}

#[test]
fn a_trigger_and_another_kind_are_refused() {
    let yaml = "dag_id: parent\ntasks:\n  - task_id: start\n    bash: echo hi\n    trigger_dag_run:\n      trigger_dag_id: child\n";
    let errors = parse_dag("etl", "etl/parent.yaml", yaml).expect_err("two kinds");
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("bash") && e.message.contains("trigger_dag_run")),
        "{errors:?}"
    );
}

#[test]
fn a_mapped_trigger_parses() {
    let yaml = "dag_id: parent\ntasks:\n  - task_id: start\n    expand:\n      day: [\"2024-01-01\", \"2024-01-02\"]\n    trigger_dag_run:\n      trigger_dag_id: child\n      trigger_run_id: \"for_{{ mapped.day }}\"\n      conf: {day: \"{{ mapped.day }}\"}\n";
    let dag = parse_dag("etl", "etl/parent.yaml", yaml).expect("parses");
    assert!(dag.tasks[0].expand.is_some());
}

#[test]
fn the_example_dag_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/dags/trigger_example.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let dag = parse_dag("default", "trigger_example.yaml", &text).expect("the example parses");
    assert_eq!(dag.tasks[0].kind.name(), "trigger_dag_run");
    assert_eq!(dag.tasks[1].kind.name(), "bash");
}
