//! `python:` tasks through the binary: the scheduler runs a tenant's DAG whose callables live
//! beside its file and at the root of the DAGs folder (with the machine's `python3`), `dags
//! test` and `tasks test` run them the same way, and `dags lint` warns about a module that is
//! nowhere in the DAGs folder.

mod common;

use common::Home;

const DAG: &str = r#"dag_id: py_etl
params:
  table: {default: orders, type: string}
tasks:
  - task_id: extract
    python:
      callable: "etl.steps:extract"
      op_args: ["{{ params.table }}"]
      op_kwargs: {day: "{{ ds }}"}
  - task_id: transform
    upstream: extract
    python:
      callable: "shared_helpers:shout"
      op_kwargs: {word: "{{ dag_run.conf.get('word', 'quiet') }}"}
  - task_id: skipped
    upstream: extract
    python:
      callable: "etl.steps:skip_me"
  - task_id: pull
    upstream: extract
    python:
      callable: "shared_helpers:shout"
      op_kwargs: {word: "{{ ti.xcom_pull(task_ids='extract')['table'] }}"}
  - task_id: broken
    upstream: extract
    python:
      callable: "etl.steps:boom"
"#;

const STEPS: &str = r#"
import json
import os


def extract(table, day, ti, dag_run, **context):
    print("EXTRACT table=%s day=%s try=%d run=%s conf=%s" % (
        table, day, ti.try_number, dag_run.run_id, json.dumps(dag_run.conf, sort_keys=True)))
    print("DAG FILE %s" % os.environ["UPDRAFT_DAG_FILE"])
    return {"rows": 3, "table": table}


def skip_me():
    from updraft import AirflowSkipException
    raise AirflowSkipException("not today")


def boom():
    raise ValueError("exploded on purpose")
"#;

const SHARED: &str =
    "def shout(word):\n    print('SHOUT ' + word.upper())\n    return word.upper()\n";

fn home_with_python_dag() -> Home {
    let home = Home::new();
    std::fs::create_dir_all(home.dags().join("team_a/etl")).unwrap();
    std::fs::write(home.dags().join("team_a/etl/__init__.py"), "").unwrap();
    std::fs::write(home.dags().join("team_a/etl/steps.py"), STEPS).unwrap();
    std::fs::write(home.dags().join("shared_helpers.py"), SHARED).unwrap();
    home.write_dag("team_a/py_etl.yaml", DAG);
    home
}

#[test]
fn the_scheduler_runs_python_tasks_from_the_dags_folder() {
    let home = home_with_python_dag();
    let _scheduler = home.start_scheduler();
    home.wait_dag_listed("py_etl");
    let run_id = home.trigger("py_etl", Some(r#"{"word": "loud", "table": "customers"}"#));
    home.wait_run_finished("py_etl", &run_id);
    let states = home.task_states("py_etl", &run_id);
    assert_eq!(states["extract"], "success", "{states:?}");
    assert_eq!(states["transform"], "success", "{states:?}");
    assert_eq!(states["skipped"], "skipped", "{states:?}");
    assert_eq!(states["broken"], "failed", "{states:?}");

    let log = home.logs("py_etl", &run_id, "extract", None);
    assert!(
        log.contains("EXTRACT table=customers day=")
            && log.contains(&format!(
                r#"try=1 run={run_id} conf={{"table": "customers", "word": "loud"}}"#
            )),
        "the param from the conf, and the conf: {log}"
    );
    let dag_file = home.dags().join("team_a/py_etl.yaml");
    let dag_file = std::path::absolute(&dag_file).unwrap();
    assert!(
        log.contains(&format!("DAG FILE {}", dag_file.display())),
        "{log}"
    );
    assert!(
        log.contains("Done. Returned value was: {'rows': 3, 'table': 'customers'}"),
        "{log}"
    );
    let log = home.logs("py_etl", &run_id, "transform", None);
    assert!(log.contains("SHOUT LOUD"), "{log}");
    // The value `extract` returned, pulled by a downstream task's template.
    assert_eq!(states["pull"], "success", "{states:?}");
    let log = home.logs("py_etl", &run_id, "pull", None);
    assert!(log.contains("SHOUT CUSTOMERS"), "{log}");
    let log = home.logs("py_etl", &run_id, "skipped", None);
    assert!(log.contains("not today"), "{log}");
    let log = home.logs("py_etl", &run_id, "broken", None);
    assert!(log.contains("Traceback (most recent call last):"), "{log}");
    assert!(log.contains("ValueError: exploded on purpose"), "{log}");
}

#[test]
fn dags_test_and_tasks_test_run_python_tasks() {
    let home = home_with_python_dag();
    let out = home.run(&["dags", "test", "py_etl", "2024-02-03"]);
    let text = out.to_string();
    assert_eq!(out.code(), Some(1), "`broken` fails the run:\n{text}");
    assert!(
        text.contains("EXTRACT table=orders day=2024-02-03"),
        "{text}"
    );
    assert!(text.contains("SHOUT QUIET"), "{text}");
    assert!(text.contains("ValueError: exploded on purpose"), "{text}");

    let out = home.ok(&["tasks", "test", "py_etl", "transform", "2024-02-03"]);
    assert!(out.to_string().contains("SHOUT QUIET"), "{out}");
}

#[test]
fn dags_lint_warns_about_a_module_missing_from_the_dags_folder() {
    let home = home_with_python_dag();
    home.write_dag(
        "lost.yaml",
        "dag_id: lost\ntasks:\n  - task_id: nowhere\n    python:\n      callable: \"reports.weekly:build\"\n",
    );
    let warnings = home.json(&["dags", "lint"]);
    let warnings = warnings.as_array().expect("a list of warnings");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    assert_eq!(w["filename"], "lost.yaml");
    assert_eq!(w["line"], 5);
    assert_eq!(w["task_id"], "nowhere");
    assert!(
        w["message"]
            .as_str()
            .unwrap()
            .contains("module `reports.weekly`"),
        "{w}"
    );
}
