//! `branch`, `short_circuit` and `ignore_downstream_trigger_rules` on tasks: what a DAG file
//! may say, the import errors (file, line, column, field) for what it may not, and the DAG
//! warning for a branching task without downstream tasks.

use updraft_dag::lint::lint_dag_file;
use updraft_dag::{Branching, ImportError, parse_dag};

const HEAD: &str = "dag_id: pick\ntasks:\n";

fn parse(tasks: &str) -> Result<updraft_dag::Dag, Vec<ImportError>> {
    parse_dag("default", "pick.yaml", &format!("{HEAD}{tasks}"))
}

#[track_caller]
fn one_error(tasks: &str) -> ImportError {
    let errors = parse(tasks).expect_err("must be refused");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let error = errors.into_iter().next().unwrap();
    assert_eq!(error.filename, "pick.yaml");
    error
}

#[test]
fn branch_and_short_circuit_are_read() {
    let dag = parse(
        "  - task_id: choose\n    bash: echo a\n    branch: true\n\
         \x20 - task_id: gate\n    bash: echo\n    short_circuit: true\n    upstream: [choose]\n\
         \x20 - task_id: soft\n    bash: echo\n    short_circuit: true\n    ignore_downstream_trigger_rules: false\n    upstream: [gate]\n\
         \x20 - task_id: plain\n    bash: echo\n    branch: false\n    upstream: [soft]\n",
    )
    .expect("parses");
    let branching: Vec<Option<Branching>> = dag.tasks.iter().map(|t| t.branching).collect();
    assert_eq!(
        branching,
        [
            Some(Branching::Branch),
            Some(Branching::ShortCircuit {
                ignore_downstream_trigger_rules: true
            }),
            Some(Branching::ShortCircuit {
                ignore_downstream_trigger_rules: false
            }),
            None,
        ]
    );
}

#[test]
fn a_dag_without_branching_keeps_its_version() {
    // The field is left out of the serialized definition when absent.
    let dag = parse("  - task_id: a\n    bash: echo a\n").unwrap();
    let json = serde_json::to_string(&dag).unwrap();
    assert!(!json.contains("branching"), "{json}");
    let with = parse("  - task_id: a\n    bash: echo a\n    branch: true\n").unwrap();
    assert_ne!(dag.version(), with.version());
}

#[test]
fn branch_must_be_a_boolean() {
    let error = one_error("  - task_id: a\n    bash: echo a\n    branch: yes\n");
    assert_eq!((error.line, error.column), (Some(5), Some(13)), "{error}");
    assert!(error.message.contains("branch"), "{error}");
}

#[test]
fn branch_and_short_circuit_together_are_refused_at_the_second() {
    let error =
        one_error("  - task_id: a\n    bash: echo a\n    branch: true\n    short_circuit: true\n");
    assert_eq!((error.line, error.column), (Some(6), Some(5)), "{error}");
    assert!(
        error.message.contains("task `a`")
            && error
                .message
                .contains("both `branch: true` and `short_circuit: true`"),
        "{error}"
    );
}

#[test]
fn ignore_downstream_trigger_rules_needs_a_short_circuit() {
    let error = one_error(
        "  - task_id: a\n    bash: echo a\n    branch: true\n    ignore_downstream_trigger_rules: false\n",
    );
    assert_eq!((error.line, error.column), (Some(6), Some(5)), "{error}");
    assert!(
        error
            .message
            .contains("`ignore_downstream_trigger_rules` without `short_circuit: true`"),
        "{error}"
    );
    let error = one_error(
        "  - task_id: a\n    bash: echo a\n    short_circuit: true\n    ignore_downstream_trigger_rules: 1\n",
    );
    assert_eq!((error.line, error.column), (Some(6), Some(38)), "{error}");
    assert!(
        error.message.contains("ignore_downstream_trigger_rules"),
        "{error}"
    );
}

#[test]
fn branching_keys_are_not_default_args() {
    let errors = parse_dag(
        "default",
        "pick.yaml",
        "dag_id: pick\ndefault_args:\n  short_circuit: true\ntasks:\n  - task_id: a\n    bash: echo\n",
    )
    .expect_err("must be refused");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!((errors[0].line, errors[0].column), (Some(3), Some(3)));
    assert!(
        errors[0].message.contains("set on each task"),
        "{}",
        errors[0].message
    );
}

#[test]
fn a_branch_without_downstream_tasks_loads_with_a_warning() {
    let text = format!("{HEAD}  - task_id: a\n    bash: echo a\n    branch: true\n");
    parse_dag("default", "pick.yaml", &text).expect("loads: Airflow runs it too");
    let warnings = lint_dag_file("pick.yaml", &text);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        (warnings[0].line, warnings[0].task_id.as_str()),
        (Some(5), "a")
    );
}
