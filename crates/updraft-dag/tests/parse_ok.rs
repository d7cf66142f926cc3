//! Valid DAG files: what they parse to, defaults, versions and graph queries.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use updraft_dag::{
    DEFAULT_POOL, Dag, ParamType, Schedule, TaskKind, TriggerRule, WeightRule, parse_dag,
    parse_schedule,
};

fn parse(text: &str) -> Dag {
    match parse_dag("default", "etl/etl_daily.yaml", text) {
        Ok(dag) => dag,
        Err(errors) => panic!("unexpected import errors: {errors:#?}"),
    }
}

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

const FULL: &str = r#"
dag_id: etl_daily            # default: file stem
description: Nightly ETL
schedule: "0 3 * * *"
timezone: Asia/Tokyo
start_date: 2024-01-01
end_date: 2024-12-31T00:00:00
catchup: true
max_active_runs: 4
max_active_tasks: 8
is_paused_upon_creation: false
tags: [etl, team-a]
params:
  region: jp
  limit: {default: 10, type: integer, minimum: 1, maximum: 100, description: "Row limit"}
  mode: {default: fast, enum: [fast, slow]}
env: {A: "1", PORT: 8080}
default_args: {retries: 2, retry_delay: 5m, pool: etl, owner: team-a}
tasks:
  - task_id: extract
    bash: "echo {{ ds }}"
  - task_id: load
    command: ["python3", "load.py", "--date", "{{ ds }}"]
    upstream: [extract]
    trigger_rule: all_success
    retries: 3
    retry_delay: 30s
    retry_exponential_backoff: true
    max_retry_delay: 1h
    execution_timeout: 10m
    pool: default_pool
    pool_slots: 2
    priority_weight: 5
    weight_rule: absolute
    depends_on_past: true
    env: {B: "{{ ds_nodash }}"}
    cwd: /tmp
  - task_id: bench
    noop: true
    upstream: load
"#;

#[test]
fn the_full_format_parses() {
    let dag = parse(FULL);
    assert_eq!(dag.dag_id, "etl_daily");
    assert_eq!(dag.tenant, "default");
    assert_eq!(dag.fileloc, "etl/etl_daily.yaml");
    assert_eq!(dag.description.as_deref(), Some("Nightly ETL"));
    assert_eq!(dag.schedule, Schedule::Cron("0 3 * * *".into()));
    assert_eq!(dag.timezone, chrono_tz::Asia::Tokyo);
    // Naive dates are in the DAG's time zone.
    assert_eq!(dag.start_date, Some(utc("2023-12-31T15:00:00Z")));
    assert_eq!(dag.end_date, Some(utc("2024-12-30T15:00:00Z")));
    assert!(dag.catchup);
    assert_eq!((dag.max_active_runs, dag.max_active_tasks), (4, 8));
    assert_eq!(dag.is_paused_upon_creation, Some(false));
    assert_eq!(dag.tags, vec!["etl", "team-a"]);
    assert_eq!(dag.env["A"], "1");
    assert_eq!(dag.env["PORT"], "8080");

    assert_eq!(dag.params["region"].default, Some(json!("jp")));
    assert_eq!(dag.params["region"].kind, None);
    let limit = &dag.params["limit"];
    assert_eq!(limit.default, Some(json!(10)));
    assert_eq!(limit.kind, Some(ParamType::Integer));
    assert_eq!((limit.minimum, limit.maximum), (Some(1.0), Some(100.0)));
    assert_eq!(limit.description.as_deref(), Some("Row limit"));
    assert_eq!(
        dag.params["mode"].allowed,
        Some(vec![json!("fast"), json!("slow")])
    );

    let ids: Vec<&str> = dag.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, ["extract", "load", "bench"]);

    let extract = dag.task("extract").unwrap();
    assert_eq!(extract.kind, TaskKind::Bash("echo {{ ds }}".into()));
    // From default_args.
    assert_eq!(extract.retries, 2);
    assert_eq!(extract.retry_delay, Duration::from_secs(300));
    assert_eq!(extract.pool, "etl");
    assert!(extract.upstream.is_empty());

    let load = dag.task("load").unwrap();
    assert_eq!(
        load.kind,
        TaskKind::Command(vec![
            "python3".into(),
            "load.py".into(),
            "--date".into(),
            "{{ ds }}".into()
        ])
    );
    assert_eq!(load.upstream, ["extract"]);
    assert_eq!(load.trigger_rule, TriggerRule::AllSuccess);
    assert_eq!(load.retries, 3);
    assert_eq!(load.retry_delay, Duration::from_secs(30));
    assert!(load.retry_exponential_backoff);
    assert_eq!(load.max_retry_delay, Some(Duration::from_secs(3600)));
    assert_eq!(load.execution_timeout, Some(Duration::from_secs(600)));
    assert_eq!(load.pool, DEFAULT_POOL);
    assert_eq!(load.pool_slots, 2);
    assert_eq!(load.priority_weight, 5);
    assert_eq!(load.weight_rule, WeightRule::Absolute);
    assert!(load.depends_on_past);
    assert_eq!(load.env["B"], "{{ ds_nodash }}");
    assert_eq!(load.cwd.as_deref(), Some("/tmp"));

    let bench = dag.task("bench").unwrap();
    assert_eq!(bench.kind, TaskKind::Noop);
    assert_eq!(bench.upstream, ["load"]);
}

#[test]
fn defaults_of_a_minimal_file() {
    let dag = parse("tasks:\n  - task_id: only\n    bash: echo\n");
    assert_eq!(dag.dag_id, "etl_daily", "dag_id defaults to the file stem");
    assert_eq!(dag.schedule, Schedule::None);
    assert_eq!(dag.timezone, chrono_tz::UTC);
    assert_eq!((dag.start_date, dag.end_date), (None, None));
    assert!(!dag.catchup);
    assert_eq!((dag.max_active_runs, dag.max_active_tasks), (16, 16));
    assert_eq!(dag.is_paused_upon_creation, None);
    assert!(dag.tags.is_empty() && dag.params.is_empty() && dag.env.is_empty());
    let task = &dag.tasks[0];
    assert_eq!(task.trigger_rule, TriggerRule::AllSuccess);
    assert_eq!(task.retries, 0);
    assert_eq!(task.retry_delay, Duration::from_secs(300));
    assert!(!task.retry_exponential_backoff);
    assert_eq!((task.max_retry_delay, task.execution_timeout), (None, None));
    assert_eq!(task.pool, DEFAULT_POOL);
    assert_eq!(task.pool_slots, 1);
    assert_eq!(task.priority_weight, 1);
    assert_eq!(task.weight_rule, WeightRule::Downstream);
    assert!(!task.depends_on_past);
    assert!(task.env.is_empty());
    assert_eq!(task.cwd, None);
}

#[test]
fn a_dag_without_tasks_is_allowed() {
    assert!(parse("dag_id: empty\n").tasks.is_empty());
    assert!(parse("dag_id: empty\ntasks: []\n").tasks.is_empty());
}

#[test]
fn task_values_override_default_args_and_null_clears_them() {
    let dag = parse(
        "default_args: {execution_timeout: 1h, cwd: /srv, env: {A: a}, trigger_rule: all_done}\n\
         tasks:\n\
         \x20 - {task_id: a, noop: true}\n\
         \x20 - {task_id: b, noop: true, execution_timeout: null, cwd: null, env: {B: b}, trigger_rule: one_failed}\n",
    );
    let (a, b) = (&dag.tasks[0], &dag.tasks[1]);
    assert_eq!(a.execution_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(a.cwd.as_deref(), Some("/srv"));
    assert_eq!(a.trigger_rule, TriggerRule::AllDone);
    assert_eq!(b.execution_timeout, None);
    assert_eq!(b.cwd, None);
    // Like Airflow's default_args, a task's value replaces the default as a whole.
    assert_eq!(b.env.keys().collect::<Vec<_>>(), ["B"]);
    assert_eq!(b.trigger_rule, TriggerRule::OneFailed);
}

#[test]
fn schedules_and_their_display() {
    let cases = [
        ("'@daily'", Schedule::Cron("0 0 * * *".into()), "@daily"),
        ("'@hourly'", Schedule::Cron("0 * * * *".into()), "@hourly"),
        ("'@weekly'", Schedule::Cron("0 0 * * 0".into()), "@weekly"),
        ("'@monthly'", Schedule::Cron("0 0 1 * *".into()), "@monthly"),
        ("'@yearly'", Schedule::Cron("0 0 1 1 *".into()), "@yearly"),
        ("'@once'", Schedule::Once, "@once"),
        (
            "'0 3 * * *'",
            Schedule::Cron("0 3 * * *".into()),
            "0 3 * * *",
        ),
        ("30m", Schedule::Every(Duration::from_secs(1800)), "30m"),
        ("1h", Schedule::Every(Duration::from_secs(3600)), "1h"),
        ("1d", Schedule::Every(Duration::from_secs(86400)), "1d"),
        ("90s", Schedule::Every(Duration::from_secs(90)), "90s"),
        ("3600", Schedule::Every(Duration::from_secs(3600)), "1h"),
    ];
    for (text, schedule, display) in cases {
        let dag = parse(&format!("schedule: {text}\nstart_date: 2024-01-01\n"));
        assert_eq!(dag.schedule, schedule, "{text}");
        assert_eq!(dag.schedule.to_string(), display, "{text}");
        if schedule != Schedule::None {
            assert_eq!(
                parse_schedule(display),
                Ok(schedule),
                "{display} parses back"
            );
        }
    }
    assert_eq!(Schedule::None.to_string(), "None");
    assert_eq!(parse("schedule: null\n").schedule, Schedule::None);
}

#[test]
fn start_date_offsets_are_honoured() {
    let dag = parse("timezone: Asia/Tokyo\nstart_date: 2024-01-01T00:00:00Z\n");
    assert_eq!(dag.start_date, Some(utc("2024-01-01T00:00:00Z")));
    let dag = parse("start_date: '2024-01-01 06:00:00+02:00'\n");
    assert_eq!(dag.start_date, Some(utc("2024-01-01T04:00:00Z")));
}

#[test]
fn upstream_accepts_a_single_string_and_ignores_repeats() {
    let dag = parse(
        "tasks:\n  - {task_id: a, noop: true}\n  - {task_id: b, noop: true, upstream: a}\n  - {task_id: c, noop: true, upstream: [a, b, a]}\n",
    );
    assert_eq!(dag.tasks[1].upstream, ["a"]);
    assert_eq!(dag.tasks[2].upstream, ["a", "b"]);
}

#[test]
fn yes_and_no_stay_strings() {
    let dag = parse("params:\n  answer: {default: no, enum: [yes, no]}\n");
    assert_eq!(dag.params["answer"].default, Some(json!("no")));
}

const REFORMATTED: &str = r#"
# Same DAG, written differently: key order, comments, quoting, flow vs block style,
# durations in other units, default_args applied by hand.
tasks:
  - {task_id: extract, bash: "echo {{ ds }}", retries: 2, retry_delay: 300, pool: etl}
  - task_id: 'load'
    upstream: extract
    command:
      - python3
      - load.py
      - --date
      - "{{ ds }}"
    retries: 3
    retry_delay: 30
    retry_exponential_backoff: true
    max_retry_delay: 60m
    execution_timeout: 600
    pool: default_pool
    pool_slots: 2
    priority_weight: 5
    weight_rule: absolute
    depends_on_past: true
    env:
      B: '{{ ds_nodash }}'
    cwd: "/tmp"
  - task_id: bench
    upstream: [load]
    noop: true
    retries: 2
    pool: etl
env:
  PORT: "8080"
  A: '1'
default_args:
  owner: someone-else
params:
  mode: {enum: [fast, slow], default: fast}
  limit:
    description: Row limit
    maximum: 100
    minimum: 1
    type: integer
    default: 10
  region: "jp"
tags:
  - etl
  - team-a
is_paused_upon_creation: false
max_active_tasks: 8
max_active_runs: 4
catchup: true
end_date: "2024-12-31 00:00"
start_date: 2024-01-01T00:00:00+09:00
timezone: "Asia/Tokyo"
schedule: 0  3 * * *
description: "Nightly ETL"
dag_id: etl_daily
"#;

#[test]
fn version_is_stable_across_formatting() {
    let original = parse(FULL);
    let reformatted = parse(REFORMATTED);
    assert_eq!(original, reformatted);
    assert_eq!(original.version(), reformatted.version());
    assert_eq!(original.version().len(), 16);
}

#[test]
fn version_changes_with_the_definition() {
    let original = parse(FULL).version();
    let changes = [
        ("retries: 3", "retries: 4"),
        ("\"0 3 * * *\"", "\"0 4 * * *\""),
        ("echo {{ ds }}", "echo {{ ts }}"),
        ("upstream: load", "upstream: extract"),
        ("default: fast", "default: slow"),
        ("timezone: Asia/Tokyo", "timezone: Europe/Paris"),
    ];
    for (from, to) in changes {
        assert!(FULL.contains(from), "{from}");
        let changed = parse(&FULL.replacen(from, to, 1)).version();
        assert_ne!(
            changed, original,
            "changing {from} to {to} must change the version"
        );
    }
}

fn graph() -> Dag {
    // a -> b -> d, a -> c -> d, d -> e; f alone.
    parse(
        "tasks:\n\
         \x20 - {task_id: e, noop: true, upstream: d}\n\
         \x20 - {task_id: a, noop: true}\n\
         \x20 - {task_id: c, noop: true, upstream: a}\n\
         \x20 - {task_id: b, noop: true, upstream: a}\n\
         \x20 - {task_id: d, noop: true, upstream: [b, c]}\n\
         \x20 - {task_id: f, noop: true}\n",
    )
}

#[test]
fn topological_order_respects_edges_then_declaration_order() {
    let dag = graph();
    let order: Vec<&str> = dag
        .topological_order()
        .iter()
        .map(|t| t.task_id.as_str())
        .collect();
    assert_eq!(order, ["a", "c", "b", "d", "e", "f"]);
    assert_eq!(
        updraft_dag::topological_order(&dag),
        dag.topological_order()
    );
}

#[test]
fn downstream_and_upstream_are_transitive() {
    let dag = graph();
    assert_eq!(dag.downstream_of("a"), ["e", "c", "b", "d"]);
    assert_eq!(dag.downstream_of("b"), ["e", "d"]);
    assert!(dag.downstream_of("e").is_empty());
    assert!(dag.downstream_of("f").is_empty());
    assert!(dag.downstream_of("missing").is_empty());
    assert_eq!(dag.upstream_of("d"), ["a", "c", "b"]);
    assert_eq!(dag.direct_downstream_of("a"), ["c", "b"]);
}

#[test]
fn trigger_and_weight_rule_names_match_serde() {
    for rule in TriggerRule::ALL {
        assert_eq!(json!(rule), json!(rule.as_str()));
        assert_eq!(TriggerRule::from_name(rule.as_str()), Some(rule));
    }
    for rule in WeightRule::ALL {
        assert_eq!(json!(rule), json!(rule.as_str()));
    }
}

#[test]
fn dags_round_trip_through_json() {
    let dag = parse(FULL);
    let back: Dag = serde_json::from_value(serde_json::to_value(&dag).unwrap()).unwrap();
    assert_eq!(back, dag);
    assert_eq!(back.version(), dag.version());
}

#[test]
fn anchors_and_merge_keys_work() {
    let dag = parse(
        "tasks:\n\
         \x20 - &base {task_id: a, bash: echo, retries: 4, env: &env {A: x}}\n\
         \x20 - <<: *base\n\
         \x20   task_id: b\n\
         \x20   env: *env\n",
    );
    let b = dag.task("b").unwrap();
    assert_eq!(b.retries, 4);
    assert_eq!(b.kind, TaskKind::Bash("echo".into()));
    assert_eq!(b.env["A"], "x");
}

#[test]
fn connections_are_read_from_tasks_and_default_args() {
    let dag = parse(
        "\
dag_id: x
default_args: {connections: [warehouse]}
tasks:
  - task_id: inherits
    bash: echo hi
  - task_id: own
    bash: echo hi
    connections: [my_db, s3-logs, legacy.ftp]
  - task_id: cleared
    bash: echo hi
    connections: []
",
    );
    let ids: Vec<&[String]> = dag.tasks.iter().map(|t| t.connections.as_slice()).collect();
    assert_eq!(ids[0], ["warehouse"]);
    assert_eq!(ids[1], ["my_db", "s3-logs", "legacy.ftp"]);
    assert!(ids[2].is_empty());
}

#[test]
fn a_task_without_connections_keeps_the_version_it_had_before_the_field_existed() {
    let dag = parse("dag_id: x\ntasks:\n  - task_id: a\n    bash: echo hi\n");
    let json = serde_json::to_value(&dag).unwrap();
    assert!(json["tasks"][0].get("connections").is_none(), "{json}");
    // A stored definition written before the field existed still reads.
    let mut old = json.clone();
    old["tasks"][0]
        .as_object_mut()
        .unwrap()
        .remove("connections");
    let back: Dag = serde_json::from_value(old).unwrap();
    assert_eq!(back, dag);
    let with =
        parse("dag_id: x\ntasks:\n  - task_id: a\n    bash: echo hi\n    connections: [db]\n");
    assert_ne!(with.version(), dag.version());
}

#[test]
fn do_xcom_push_is_read_from_tasks_and_default_args_and_defaults_to_false() {
    let dag = parse(
        "\
dag_id: x
default_args: {do_xcom_push: true}
tasks:
  - task_id: inherits
    bash: echo hi
  - task_id: off
    bash: echo hi
    do_xcom_push: false
",
    );
    let pushes: Vec<bool> = dag.tasks.iter().map(|t| t.do_xcom_push).collect();
    assert_eq!(pushes, [true, false]);
    let plain = parse("dag_id: x\ntasks:\n  - task_id: a\n    bash: echo hi\n");
    assert!(!plain.tasks[0].do_xcom_push);
    let json = serde_json::to_value(&plain).unwrap();
    assert!(
        json["tasks"][0].get("do_xcom_push").is_none(),
        "a task that does not push keeps the version it had before the setting existed: {json}"
    );
}
