//! The `sh` filter against a real bash: a run's conf crafted to break out of double quotes runs
//! its command when interpolated as is, and is printed as plain text through `| sh`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use updraft_dag::{Dag, Schedule, Task, TaskKind, TriggerRule, WeightRule};
use updraft_executor::TemplateContext;
use updraft_executor::render::render_task;

fn dag_with_script(script: &str) -> (Dag, Task) {
    let task = Task {
        task_id: "greet".into(),
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
        env: BTreeMap::new(),
        cwd: None,
        connections: vec![],
        branching: None,
        do_xcom_push: false,
        callbacks: Default::default(),
        outlets: vec![],
        expand: None,
        max_active_tis_per_dag: None,
        kind: TaskKind::Bash(script.into()),
    };
    let dag = Dag {
        dag_id: "hello".into(),
        tenant: "acme".into(),
        fileloc: "hello.yaml".into(),
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
        groups: Vec::new(),
        run_callbacks: Default::default(),
        dagrun_timeout: None,
        tasks: vec![task.clone()],
    };
    (dag, task)
}

fn context(who: &str) -> TemplateContext {
    let conf = serde_json::json!({ "who": who });
    TemplateContext {
        secrets: Default::default(),
        xcoms: Default::default(),
        tenant: "acme".into(),
        dag_id: "hello".into(),
        run_id: "manual__2024-01-02T00:00:00+00:00".into(),
        task_id: "greet".into(),
        try_number: 1,
        map_index: -1,
        mapped: Default::default(),
        logical_date: Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap(),
        data_interval_start: Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap(),
        data_interval_end: Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap(),
        conf: conf.clone(),
        params: conf.as_object().unwrap().clone(),
        run_type: "manual".into(),
        timezone: chrono_tz::UTC,
    }
}

/// Renders `script` with `who` as the run's conf and runs it with bash in `dir`; its stdout.
fn run_rendered(script: &str, who: &str, dir: &Path) -> String {
    let (dag, task) = dag_with_script(script);
    let rendered = render_task(&dag, &task, &context(who)).expect("the script renders");
    let updraft_executor::Program::Bash(source) = rendered.program else {
        panic!("a bash task renders to a bash program");
    };
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&source)
        .current_dir(dir)
        .output()
        .expect("bash runs (install bash)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn conf_quoted_with_sh_stays_text() {
    let dir = tempfile::tempdir().unwrap();
    let pwned = dir.path().join("pwned");
    let attack = format!("x\"; touch '{}'; echo \"", pwned.display());

    // As the issue found it: the conf closes the double quotes and runs its command.
    run_rendered(r#"echo "hello {{ params.who }}""#, &attack, dir.path());
    assert!(
        pwned.exists(),
        "the unquoted script runs the conf's command"
    );
    std::fs::remove_file(&pwned).unwrap();

    for script in [
        "echo hello {{ params.who | sh }}",
        "echo \"hello \"{{ dag_run.conf.who | sh }}",
    ] {
        let out = run_rendered(script, &attack, dir.path());
        assert!(!pwned.exists(), "{script}: the conf's command ran");
        assert_eq!(out, format!("hello {attack}\n"), "{script}");
    }
    let out = run_rendered(
        "printf '%s|' {{ params.who | sh }}",
        "it's $(id) `id`",
        dir.path(),
    );
    assert_eq!(out, "it's $(id) `id`|");
}
