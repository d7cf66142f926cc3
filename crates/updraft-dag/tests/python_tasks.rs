//! The `python:` task kind: what a DAG file may say, and the import errors (file, line,
//! column, field) for what it may not.

use std::collections::BTreeMap;

use serde_json::json;
use updraft_dag::{
    ImportError, PythonInterpreter, PythonTask, TaskKind, check_callable, parse_dag,
};

fn python_of(yaml: &str) -> PythonTask {
    let dag = parse_dag("etl", "etl/daily.yaml", yaml).expect("parses");
    match &dag.tasks[0].kind {
        TaskKind::Python(python) => (**python).clone(),
        other => panic!("expected a python task, got {other:?}"),
    }
}

fn one_error(yaml: &str) -> ImportError {
    let errors = parse_dag("etl", "etl/daily.yaml", yaml).expect_err("must be refused");
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.into_iter().next().unwrap()
}

/// The error is at `line`:`column` of etl/daily.yaml and its message holds every `part`.
fn assert_error(yaml: &str, line: u32, column: u32, parts: &[&str]) {
    let error = one_error(yaml);
    assert_eq!(error.filename, "etl/daily.yaml");
    assert_eq!(error.tenant, "etl");
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
fn a_callable_with_templated_arguments() {
    let python = python_of(
        r#"
dag_id: daily
tasks:
  - task_id: transform
    python:
      callable: "etl.transform:run"
      op_args: ["{{ ds }}", 3, [a, {b: true}]]
      op_kwargs: {table: "{{ params.table }}", limit: 2.5, none: null}
"#,
    );
    assert_eq!(python.callable, "etl.transform:run");
    assert_eq!(
        python.op_args,
        vec![json!("{{ ds }}"), json!(3), json!(["a", {"b": true}])]
    );
    assert_eq!(
        python.op_kwargs,
        BTreeMap::from([
            ("limit".to_owned(), json!(2.5)),
            ("none".to_owned(), json!(null)),
            ("table".to_owned(), json!("{{ params.table }}")),
        ])
    );
    assert_eq!(python.python, PythonInterpreter::Default);
    assert_eq!(python.python.program(), "python3");
}

#[test]
fn the_interpreter_choices() {
    let python = python_of(
        "tasks:\n  - task_id: a\n    python: {callable: 'm:f', interpreter: /opt/py/bin/python3}\n",
    );
    assert_eq!(
        python.python,
        PythonInterpreter::Interpreter("/opt/py/bin/python3".into())
    );
    assert_eq!(python.python.program(), "/opt/py/bin/python3");
    let python = python_of(
        "tasks:\n  - task_id: a\n    python: {callable: 'm:f', interpreter: python3.11}\n",
    );
    assert_eq!(python.python.program(), "python3.11");
    let python =
        python_of("tasks:\n  - task_id: a\n    python: {callable: 'm:f', venv: /opt/venvs/etl/}\n");
    assert_eq!(
        python.python,
        PythonInterpreter::Venv("/opt/venvs/etl/".into())
    );
    assert_eq!(python.python.program(), "/opt/venvs/etl/bin/python");
    assert!(python.op_args.is_empty() && python.op_kwargs.is_empty());
}

#[test]
fn callable_names_are_checked() {
    for good in ["m:f", "etl.transform:run", "_p.m2:C.method", "a.b.c:_f"] {
        assert_eq!(check_callable(good), Ok(()), "{good}");
    }
    for bad in [
        "etl.transform",
        "etl/transform:run",
        ":run",
        "etl:",
        "etl..x:run",
        "2etl:run",
        "etl:run()",
        "etl:run:x",
        "m:f-g",
    ] {
        assert!(check_callable(bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn a_callable_without_a_colon_points_at_the_value() {
    assert_error(
        "tasks:\n  - task_id: a\n    python:\n      callable: etl.transform.run\n",
        4,
        17,
        &[
            "`python.callable`",
            "`etl.transform.run` has no `:`",
            "module.path:function",
        ],
    );
    assert_error(
        "tasks:\n  - task_id: a\n    python:\n      callable: 'etl-x:run'\n",
        4,
        17,
        &["`etl-x` in the module part is not a Python name"],
    );
    assert_error(
        "tasks:\n  - task_id: a\n    python:\n      callable: 3\n",
        4,
        17,
        &["`python.callable` must be a string"],
    );
}

#[test]
fn a_missing_callable_points_at_the_mapping() {
    assert_error(
        "tasks:\n  - task_id: a\n    python:\n      op_args: [1]\n",
        4,
        7,
        &["`python` needs a `callable`"],
    );
}

#[test]
fn two_interpreter_choices_point_at_the_second() {
    assert_error(
        "tasks:\n  - task_id: a\n    python:\n      callable: m:f\n      interpreter: python3\n      venv: /opt/v\n",
        6,
        7,
        &["sets both `interpreter` and `venv`", "at most one"],
    );
}

#[test]
fn relative_interpreter_and_venv_paths_are_refused() {
    assert_error(
        "tasks:\n  - task_id: a\n    python:\n      callable: m:f\n      venv: venvs/etl\n",
        5,
        13,
        &["`python.venv`", "absolute path"],
    );
    assert_error(
        "tasks:\n  - task_id: a\n    python:\n      callable: m:f\n      interpreter: bin/python\n",
        5,
        20,
        &["`python.interpreter`", "relative path"],
    );
}

#[test]
fn requirements_make_an_environment_from_python3_or_the_interpreter() {
    let python = python_of(
        "tasks:\n  - task_id: a\n    python:\n      callable: m:f\n      requirements: [pandas==2.2.3, six]\n",
    );
    assert_eq!(
        python.python,
        PythonInterpreter::Requirements {
            base: "python3".into(),
            requirements: vec!["pandas==2.2.3".into(), "six".into()],
        }
    );
    assert_eq!(python.python.program(), "python3", "the base");
    let python = python_of(
        "tasks:\n  - task_id: a\n    python: {callable: 'm:f', interpreter: python3.11, requirements: [six]}\n",
    );
    assert_eq!(
        python.python,
        PythonInterpreter::Requirements {
            base: "python3.11".into(),
            requirements: vec!["six".into()],
        }
    );
}

#[test]
fn requirements_are_package_specifiers_not_pip_options() {
    assert_error(
        "tasks:\n  - task_id: a\n    python:\n      callable: m:f\n      requirements: [six, --index-url=http://evil]\n",
        5,
        27,
        &[
            "`--index-url=http://evil` is not a requirement specifier",
            "pip options",
        ],
    );
    assert_error(
        "tasks:\n  - task_id: a\n    python:\n      callable: m:f\n      requirements: []\n",
        5,
        21,
        &["`python.requirements` must not be empty"],
    );
    assert_error(
        "tasks:\n  - task_id: a\n    python:\n      callable: m:f\n      requirements: six\n",
        5,
        21,
        &["`python.requirements`"],
    );
    assert_error(
        "tasks:\n  - task_id: a\n    python:\n      callable: m:f\n      venv: /v\n      requirements: [six]\n",
        6,
        7,
        &["sets both `venv` and `requirements`"],
    );
}

#[test]
fn argument_shapes_are_checked() {
    assert_error(
        "tasks:\n  - task_id: a\n    python:\n      callable: m:f\n      op_args: {a: 1}\n",
        5,
        16,
        &["`python.op_args` must be a list"],
    );
    assert_error(
        "tasks:\n  - task_id: a\n    python:\n      callable: m:f\n      op_kwargs: [1]\n",
        5,
        18,
        &["`python.op_kwargs` must be a mapping"],
    );
    assert_error(
        "tasks:\n  - task_id: a\n    python:\n      callable: m:f\n      op_kwargs:\n        bad-name: 1\n",
        6,
        9,
        &["`bad-name` is not a Python parameter name"],
    );
}

#[test]
fn airflow_names_get_advice() {
    let errors = parse_dag(
        "etl",
        "etl/daily.yaml",
        "tasks:\n  - task_id: a\n    python:\n      python_callable: m:f\n",
    )
    .expect_err("must be refused");
    let advice = errors
        .iter()
        .find(|e| {
            e.message
                .contains("unknown key `python_callable` in python")
        })
        .unwrap_or_else(|| panic!("no advice in {errors:?}"));
    assert!(advice.message.contains("use `callable:"), "{advice}");
    assert_eq!((advice.line, advice.column), (Some(4), Some(7)));
    assert_error(
        "tasks:\n  - task_id: a\n    noop: true\n    python_callable: m:f\n",
        4,
        5,
        &["the `python:` kind"],
    );
    assert_error(
        "tasks:\n  - task_id: a\n    bash: echo\n    python: {callable: 'm:f'}\n",
        4,
        5,
        &["sets both `bash` and `python`"],
    );
}

#[test]
fn a_python_task_changes_the_version_with_its_arguments() {
    let base = "tasks:\n  - task_id: a\n    python: {callable: 'm:f', op_args: [1]}\n";
    let other = "tasks:\n  - task_id: a\n    python: {callable: 'm:f', op_args: [2]}\n";
    let a = parse_dag("etl", "etl/daily.yaml", base).unwrap();
    let b = parse_dag("etl", "etl/daily.yaml", other).unwrap();
    assert_ne!(a.version(), b.version());
}
