//! `python:` tasks end to end: rendered, run by the local executor with this machine's
//! `python3` (or a virtual environment made here), the runner importing the callable from a
//! DAGs folder, calling it with Airflow's context, and writing its XComs.
//!
//! The tries get `UPDRAFT_DAGS_FOLDER` and `UPDRAFT_DAG_FILE` through their environment, as the
//! scheduler gives them; the executor gives `UPDRAFT_XCOM_PATH` and reports what the runner
//! wrote there with the try's end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::json;
use tokio::sync::mpsc;
use updraft_dag::{
    Dag, PythonInterpreter, PythonTask, Schedule, Task, TaskKind, TriggerRule, WeightRule, log_path,
};
use updraft_executor::render::render_task;
use updraft_executor::{
    ExecOutcome, LaunchSpec, LocalExecutor, LocalExecutorConfig, TemplateContext, TryEvent, TryKey,
};

const PATIENCE: Duration = Duration::from_secs(60);

/// The module the tasks call, in `<dags>/team/etl/` beside the DAG file `<dags>/team/etl.yaml`
/// (so `etl.steps` is found through the DAG file's folder), and `shared.py` at the root of
/// the DAGs folder (found through the DAGs folder).
const STEPS: &str = r#"
import datetime
import json
import sys

import shared


def echo(*args, **kwargs):
    """Returns what it was given, dates as text with their offset."""
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, datetime.datetime):
            assert value.tzinfo is not None, key
            out[key] = "datetime " + value.isoformat()
        elif key in ("dag_run", "ti", "task_instance"):
            out[key] = type(value).__name__
        else:
            out[key] = value
    return {"args": list(args), "kwargs": out}


def named(ds, ti, dag_run, params, table, logical_date):
    ti.xcom_push("pushed", {"n": 1})
    ti.xcom_push(key="also", value=[ds, ti.try_number, ti.map_index, ti.task_id, ti.dag_id])
    return {
        "ds": ds,
        "table": table,
        "limit": params["limit"],
        "conf": dag_run.conf,
        "run_id": dag_run.run_id == ti.run_id,
        "logical_date": logical_date.isoformat(),
        "shared": shared.GREETING,
    }


def fails():
    print("about to fail")
    raise RuntimeError("the warehouse is closed")


class AirflowSkipException(Exception):
    pass


def skips_with_own_class():
    raise AirflowSkipException("nothing to do today")


def skips_with_helper():
    import updraft
    updraft.skip("nothing to do")


def returns_none():
    print("side effects only")


def returns_a_set():
    return {1, 2}


def prefix():
    return {"prefix": sys.prefix, "executable": sys.executable}


def six_version():
    import six

    return {"six": six.__version__, "prefix": sys.prefix}


def conflict(ds):
    return ds
"#;

struct Setup {
    dir: tempfile::TempDir,
    executor: LocalExecutor,
    events: mpsc::UnboundedReceiver<TryEvent>,
    /// The XComs each try's end reported, as one JSON object per task; absent when none.
    xcoms: BTreeMap<String, serde_json::Value>,
}

impl Setup {
    fn new() -> Setup {
        Setup::with_config(|_| LocalExecutorConfig::default())
    }

    /// With the executor's configuration made knowing the test's folder.
    fn with_config(config: impl FnOnce(&Path) -> LocalExecutorConfig) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let dags = dir.path().join("dags");
        std::fs::create_dir_all(dags.join("team/etl")).unwrap();
        std::fs::write(dags.join("team/etl.yaml"), "# the DAG file\n").unwrap();
        std::fs::write(dags.join("team/etl/__init__.py"), "").unwrap();
        std::fs::write(dags.join("team/etl/steps.py"), STEPS).unwrap();
        std::fs::write(dags.join("shared.py"), "GREETING = 'hello from the root'\n").unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        let executor = LocalExecutor::new(config(dir.path()), tx);
        Setup {
            dir,
            executor,
            events,
            xcoms: BTreeMap::new(),
        }
    }

    fn dags(&self) -> PathBuf {
        self.dir.path().join("dags")
    }

    fn log(&self, task_id: &str) -> PathBuf {
        log_path(
            &self.dir.path().join("logs"),
            "team",
            "etl",
            "manual__2024-03-05T06:07:08+00:00",
            task_id,
            2,
        )
    }

    /// Runs `python` as task `task_id` and waits for its end: the outcome and the log.
    async fn run(&mut self, task_id: &str, python: PythonTask) -> (ExecOutcome, String) {
        let (dag, task) = dag_and_task(task_id, python, &self.dags());
        let rendered = render_task(&dag, &task, &context(task_id)).expect("renders");
        let key = TryKey {
            run_pk: 1,
            task_id: task_id.to_owned(),
            map_index: -1,
            try_number: 2,
        };
        self.executor.launch(LaunchSpec {
            key,
            rendered,
            log_path: self.log(task_id),
            timeout: Some(PATIENCE),
        });
        let outcome = loop {
            let event = tokio::time::timeout(PATIENCE, self.events.recv())
                .await
                .expect("the try ends in time")
                .expect("events flow");
            if let TryEvent::Finished {
                key,
                outcome,
                xcoms,
                ..
            } = event
                && key.task_id == task_id
            {
                if !xcoms.is_empty() {
                    let object: serde_json::Map<String, serde_json::Value> = xcoms
                        .into_iter()
                        .map(|x| (x.key, serde_json::from_str(&x.value).expect("JSON")))
                        .collect();
                    self.xcoms.insert(task_id.to_owned(), object.into());
                }
                break outcome;
            }
        };
        let log = std::fs::read_to_string(self.log(task_id)).expect("the try has a log");
        (outcome, log)
    }

    fn xcoms(&self, task_id: &str) -> Option<serde_json::Value> {
        self.xcoms.get(task_id).cloned()
    }
}

fn call(callable: &str) -> PythonTask {
    PythonTask {
        callable: callable.to_owned(),
        op_args: vec![],
        op_kwargs: BTreeMap::new(),
        python: PythonInterpreter::Default,
    }
}

fn context(task_id: &str) -> TemplateContext {
    TemplateContext {
        secrets: Default::default(),
        xcoms: Default::default(),
        tenant: "team".into(),
        dag_id: "etl".into(),
        run_id: "manual__2024-03-05T06:07:08+00:00".into(),
        task_id: task_id.into(),
        try_number: 2,
        map_index: -1,
        mapped: Default::default(),
        logical_date: Utc.with_ymd_and_hms(2024, 3, 5, 6, 7, 8).unwrap(),
        data_interval_start: Utc.with_ymd_and_hms(2024, 3, 4, 6, 7, 8).unwrap(),
        data_interval_end: Utc.with_ymd_and_hms(2024, 3, 5, 6, 7, 8).unwrap(),
        conf: json!({"region": "eu", "table": "orders"}),
        params: json!({"limit": 10, "table": "users"})
            .as_object()
            .unwrap()
            .clone(),
        run_type: "manual".into(),
        timezone: chrono_tz::UTC,
    }
}

fn dag_and_task(task_id: &str, python: PythonTask, dags: &Path) -> (Dag, Task) {
    let env = BTreeMap::from([
        ("UPDRAFT_DAGS_FOLDER".to_owned(), dags.display().to_string()),
        (
            "UPDRAFT_DAG_FILE".to_owned(),
            dags.join("team/etl.yaml").display().to_string(),
        ),
    ]);
    let task = Task {
        task_id: task_id.into(),
        upstream: vec![],
        trigger_rule: TriggerRule::AllSuccess,
        retries: 0,
        retry_delay: Duration::from_secs(1),
        retry_exponential_backoff: false,
        max_retry_delay: None,
        execution_timeout: None,
        pool: "default_pool".into(),
        pool_slots: 1,
        priority_weight: 1,
        weight_rule: WeightRule::Downstream,
        depends_on_past: false,
        env,
        cwd: None,
        connections: vec![],
        // The runner writes the XCom file; the last line of the output is not an XCom.
        do_xcom_push: false,
        callbacks: Default::default(),
        branching: None,
        outlets: vec![],
        expand: None,
        max_active_tis_per_dag: None,
        kind: TaskKind::Python(Box::new(python)),
    };
    let dag = Dag {
        dag_id: "etl".into(),
        tenant: "team".into(),
        fileloc: "team/etl.yaml".into(),
        description: None,
        schedule: Schedule::None,
        timezone: chrono_tz::UTC,
        start_date: None,
        end_date: None,
        catchup: false,
        max_active_runs: 1,
        max_active_tasks: 1,
        tags: vec![],
        params: BTreeMap::new(),
        env: BTreeMap::new(),
        is_paused_upon_creation: None,
        run_callbacks: Default::default(),
        dagrun_timeout: None,
        groups: vec![],
        tasks: vec![task.clone()],
    };
    (dag, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_callable_gets_the_whole_context_and_rendered_arguments() {
    let mut s = Setup::new();
    let mut python = call("etl.steps:echo");
    python.op_args = vec![
        json!("{{ ds }}"),
        json!(3),
        json!(["{{ ds_nodash }}", {"k": "{{ params.table }}"}]),
    ];
    python.op_kwargs = BTreeMap::from([
        ("table".to_owned(), json!("{{ dag_run.conf.table }}")),
        ("ds".to_owned(), json!("op_kwargs win over the context")),
    ]);
    let (outcome, log) = s.run("echo", python).await;
    assert_eq!(outcome, ExecOutcome::Success, "{log}");
    let xcoms = s.xcoms("echo").expect("an XCom file");
    let value = &xcoms["return_value"];
    assert_eq!(
        value["args"],
        json!(["2024-03-05", 3, ["20240305", {"k": "users"}]]),
        "op_args rendered, strings inside lists and maps too"
    );
    let kwargs = &value["kwargs"];
    for (name, expected) in [
        ("table", json!("orders")),
        ("ds", json!("op_kwargs win over the context")),
        ("ds_nodash", json!("20240305")),
        ("ts", json!("2024-03-05T06:07:08+00:00")),
        ("logical_date", json!("datetime 2024-03-05T06:07:08+00:00")),
        (
            "data_interval_start",
            json!("datetime 2024-03-04T06:07:08+00:00"),
        ),
        (
            "data_interval_end",
            json!("datetime 2024-03-05T06:07:08+00:00"),
        ),
        ("run_id", json!("manual__2024-03-05T06:07:08+00:00")),
        ("dag_id", json!("etl")),
        ("task_id", json!("echo")),
        ("try_number", json!(2)),
        ("map_index", json!(-1)),
        ("params", json!({"limit": 10, "table": "users"})),
        ("dag_run", json!("DagRun")),
        ("ti", json!("TaskInstance")),
        ("task_instance", json!("TaskInstance")),
        ("task_instance_key_str", json!("etl__echo__20240305")),
    ] {
        assert_eq!(kwargs[name], expected, "{name} in {kwargs}");
    }
    assert!(
        kwargs.get("conf").is_none(),
        "`conf` is Airflow's configuration: not given"
    );
    assert!(log.contains("Done. Returned value was: {'args'"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callable_gets_only_what_it_names_and_pushes_xcoms() {
    let mut s = Setup::new();
    let mut python = call("etl.steps:named");
    python.op_kwargs = BTreeMap::from([("table".to_owned(), json!("{{ params.table }}_v2"))]);
    let (outcome, log) = s.run("named", python).await;
    assert_eq!(outcome, ExecOutcome::Success, "{log}");
    assert_eq!(
        s.xcoms("named").expect("an XCom file"),
        json!({
            "pushed": {"n": 1},
            "also": ["2024-03-05", 2, -1, "named", "etl"],
            "return_value": {
                "ds": "2024-03-05",
                "table": "users_v2",
                "limit": 10,
                "conf": {"region": "eu", "table": "orders"},
                "run_id": true,
                "logical_date": "2024-03-05T06:07:08+00:00",
                "shared": "hello from the root",
            },
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_fails_the_try_with_its_traceback_in_the_log() {
    let mut s = Setup::new();
    let (outcome, log) = s.run("fails", call("etl.steps:fails")).await;
    assert!(
        matches!(
            outcome,
            ExecOutcome::Failed {
                exit_code: Some(1),
                ..
            }
        ),
        "{outcome:?}\n{log}"
    );
    assert!(log.contains("about to fail"), "{log}");
    assert!(log.contains("Traceback (most recent call last):"), "{log}");
    assert!(
        log.contains(r#"raise RuntimeError("the warehouse is closed")"#),
        "{log}"
    );
    assert!(
        log.contains("RuntimeError: the warehouse is closed"),
        "{log}"
    );
    assert!(
        log.contains("[updraft] etl.steps:fails raised RuntimeError"),
        "{log}"
    );
    assert!(s.xcoms("fails").is_none(), "a failed try pushes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_airflow_skip_exception_skips_the_try() {
    let mut s = Setup::new();
    let (outcome, log) = s
        .run("skip_own", call("etl.steps:skips_with_own_class"))
        .await;
    assert_eq!(outcome, ExecOutcome::Skipped, "{log}");
    assert!(log.contains("nothing to do today"), "{log}");
    let (outcome, log) = s
        .run("skip_helper", call("etl.steps:skips_with_helper"))
        .await;
    assert_eq!(outcome, ExecOutcome::Skipped, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_errors_name_the_module_and_the_function() {
    let mut s = Setup::new();
    let (outcome, log) = s.run("no_module", call("etl.missing:run")).await;
    assert!(
        matches!(
            outcome,
            ExecOutcome::Failed {
                exit_code: Some(1),
                ..
            }
        ),
        "{outcome:?}\n{log}"
    );
    assert!(
        log.contains("[updraft] cannot import module `etl.missing` of callable `etl.missing:run`: ModuleNotFoundError: No module named 'etl.missing'"),
        "{log}"
    );
    assert!(
        log.contains(&s.dags().display().to_string()),
        "names where it looked: {log}"
    );

    let (outcome, log) = s.run("no_function", call("etl.steps:nowhere")).await;
    assert!(
        matches!(
            outcome,
            ExecOutcome::Failed {
                exit_code: Some(1),
                ..
            }
        ),
        "{outcome:?}\n{log}"
    );
    assert!(
        log.contains("[updraft] module `etl.steps` (") && log.contains("has no function `nowhere`"),
        "{log}"
    );
    assert!(
        !log.contains("Traceback"),
        "a missing function needs no traceback: {log}"
    );

    std::fs::write(s.dags().join("team/etl/broken.py"), "def run(:\n").unwrap();
    let (outcome, log) = s.run("broken", call("etl.broken:run")).await;
    assert!(matches!(outcome, ExecOutcome::Failed { .. }), "{outcome:?}");
    assert!(log.contains("SyntaxError"), "{log}");
    assert!(log.contains("broken.py"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_is_not_pushed_and_a_value_that_is_not_json_fails() {
    let mut s = Setup::new();
    let (outcome, log) = s.run("none", call("etl.steps:returns_none")).await;
    assert_eq!(outcome, ExecOutcome::Success, "{log}");
    assert!(log.contains("Done. Returned value was: None"), "{log}");
    assert!(
        s.xcoms("none").is_none(),
        "None is not pushed, as in Airflow"
    );

    let (outcome, log) = s.run("set", call("etl.steps:returns_a_set")).await;
    assert!(
        matches!(
            outcome,
            ExecOutcome::Failed {
                exit_code: Some(1),
                ..
            }
        ),
        "{outcome:?}\n{log}"
    );
    assert!(
        log.contains("the return value of etl.steps:returns_a_set cannot be pushed as an XCom: it is not JSON serialisable (TypeError: Object of type set is not JSON serializable)"),
        "{log}"
    );
    assert!(s.xcoms("set").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_positional_argument_may_not_take_a_context_name() {
    let mut s = Setup::new();
    let mut python = call("etl.steps:conflict");
    python.op_args = vec![json!("x")];
    let (outcome, log) = s.run("conflict", python).await;
    assert!(matches!(outcome, ExecOutcome::Failed { .. }), "{outcome:?}");
    assert!(
        log.contains("the key 'ds' in op_args is a part of kwargs and therefore reserved"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_venv_or_an_interpreter_runs_the_callable() {
    let mut s = Setup::new();
    let venv = s.dir.path().join("venv");
    let made = std::process::Command::new("python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .expect("python3 runs");
    assert!(made.success(), "python3 -m venv failed");
    let venv = venv.canonicalize().unwrap();

    let mut python = call("etl.steps:prefix");
    python.python = PythonInterpreter::Venv(venv.display().to_string());
    let (outcome, log) = s.run("in_venv", python).await;
    assert_eq!(outcome, ExecOutcome::Success, "{log}");
    let value = &s.xcoms("in_venv").unwrap()["return_value"];
    assert_eq!(value["prefix"], json!(venv.display().to_string()), "{log}");

    let mut python = call("etl.steps:prefix");
    let interpreter = venv.join("bin/python3");
    python.python = PythonInterpreter::Interpreter(interpreter.display().to_string());
    let (outcome, log) = s.run("external", python).await;
    assert_eq!(outcome, ExecOutcome::Success, "{log}");
    let value = &s.xcoms("external").unwrap()["return_value"];
    assert_eq!(
        value["executable"],
        json!(interpreter.display().to_string())
    );
    assert_eq!(value["prefix"], json!(venv.display().to_string()));

    let mut python = call("etl.steps:prefix");
    python.python = PythonInterpreter::Interpreter("/nonexistent/python3".into());
    let (outcome, log) = s.run("missing_interpreter", python).await;
    assert!(matches!(outcome, ExecOutcome::Failed { .. }), "{outcome:?}");
    assert!(log.contains("cannot start `/nonexistent/python3`"), "{log}");
}

/// `requirements:` against the machine's package index (PyPI): the environment is made in the
/// executor's cache on the first try, with pip's output in that try's log, and reused by the
/// next; an install that fails fails the try and says so in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requirements_make_an_environment_once_and_reuse_it() {
    let mut s = Setup::with_config(|dir| LocalExecutorConfig {
        venv_cache: Some(dir.join("venvs")),
        ..LocalExecutorConfig::default()
    });
    let cache = s.dir.path().join("venvs").canonicalize().ok();
    assert!(cache.is_none(), "the cache is made on first use");
    let with = |requirements: &[&str]| {
        let mut python = call("etl.steps:six_version");
        python.python = PythonInterpreter::Requirements {
            base: "python3".into(),
            requirements: requirements.iter().map(|r| (*r).to_owned()).collect(),
        };
        python
    };

    let (outcome, log) = s.run("first", with(&["six==1.16.0"])).await;
    assert_eq!(outcome, ExecOutcome::Success, "{log}");
    assert!(log.contains("making the virtual environment"), "{log}");
    let value = s.xcoms("first").unwrap()["return_value"].clone();
    assert_eq!(value["six"], "1.16.0", "{log}");
    let prefix = PathBuf::from(value["prefix"].as_str().unwrap());
    let cache = s.dir.path().join("venvs").canonicalize().unwrap();
    assert!(prefix.starts_with(&cache), "{prefix:?} in {cache:?}");

    let (outcome, log) = s.run("second", with(&[" six==1.16.0"])).await;
    assert_eq!(outcome, ExecOutcome::Success, "{log}");
    assert!(
        !log.contains("making the virtual environment"),
        "reused: {log}"
    );
    assert_eq!(s.xcoms("second").unwrap()["return_value"], value);

    let (outcome, log) = s
        .run("broken", with(&["updraft-no-such-package-zz9==0.0.1"]))
        .await;
    assert!(matches!(outcome, ExecOutcome::Failed { .. }), "{outcome:?}");
    assert!(log.contains("`pip install` failed"), "{log}");
    let (outcome, log) = s
        .run(
            "broken_again",
            with(&["updraft-no-such-package-zz9==0.0.1"]),
        )
        .await;
    assert!(matches!(outcome, ExecOutcome::Failed { .. }), "{outcome:?}");
    assert!(
        log.contains("making the virtual environment"),
        "a failed environment is made again, not reused: {log}"
    );
}
