//! Task groups in DAG files: full ids, names resolved relative to a group, nested
//! `default_args`, dependencies on groups (leaves upstream, roots downstream) and every import
//! error with its position.

use std::time::Duration;

use updraft_dag::{Dag, ImportError, TaskGroup, parse_dag};

fn parse(text: &str) -> Dag {
    match parse_dag("default", "groups.yaml", text) {
        Ok(dag) => dag,
        Err(errors) => panic!("unexpected import errors: {errors:#?}"),
    }
}

fn upstream<'d>(dag: &'d Dag, task_id: &str) -> Vec<&'d str> {
    let task = dag
        .task(task_id)
        .unwrap_or_else(|| panic!("no task {task_id} in {:?}", ids(dag)));
    let mut ids: Vec<&str> = task.upstream.iter().map(String::as_str).collect();
    ids.sort_unstable();
    ids
}

fn ids(dag: &Dag) -> Vec<&str> {
    dag.tasks.iter().map(|t| t.task_id.as_str()).collect()
}

const ETL: &str = r#"
dag_id: etl
default_args: {retries: 1, pool: shared}
tasks:
  - task_id: start
    bash: echo start
  - group_id: extract
    tooltip: Extract every source
    default_args: {retries: 2}
    upstream: [start]
    tasks:
      - task_id: a
        bash: echo a
      - task_id: b
        upstream: [a]
        retries: 5
        bash: echo b
      - group_id: inner
        default_args: {pool: inner_pool}
        upstream: a
        tasks:
          - task_id: x
            bash: echo x
          - task_id: y
            bash: echo y
            upstream: [x]
  - task_id: load
    upstream: [extract]
    bash: echo load
"#;

#[test]
fn grouped_tasks_get_full_ids_and_the_groups_are_kept() {
    let dag = parse(ETL);
    assert_eq!(
        ids(&dag),
        [
            "start",
            "extract.a",
            "extract.b",
            "extract.inner.x",
            "extract.inner.y",
            "load"
        ]
    );
    assert_eq!(
        dag.groups,
        [
            TaskGroup {
                group_id: "extract".into(),
                label: "extract".into(),
                parent: None,
                tooltip: Some("Extract every source".into()),
                prefix_group_id: true,
                tasks: vec!["extract.a".into(), "extract.b".into()],
            },
            TaskGroup {
                group_id: "extract.inner".into(),
                label: "inner".into(),
                parent: Some("extract".into()),
                tooltip: None,
                prefix_group_id: true,
                tasks: vec!["extract.inner.x".into(), "extract.inner.y".into()],
            },
        ]
    );
    assert_eq!(dag.group_of("extract.inner.y").unwrap().label, "inner");
    assert_eq!(dag.group_of("extract.a").unwrap().group_id, "extract");
    assert!(dag.group_of("load").is_none());
}

#[test]
fn group_dependencies_become_task_dependencies() {
    let dag = parse(ETL);
    // The group's upstream reaches only its roots: `a` (b and inner hang off a).
    assert_eq!(upstream(&dag, "extract.a"), ["start"]);
    assert_eq!(upstream(&dag, "extract.b"), ["extract.a"]);
    // `inner` depends on `a` (a name relative to `extract`): its root x does.
    assert_eq!(upstream(&dag, "extract.inner.x"), ["extract.a"]);
    assert_eq!(upstream(&dag, "extract.inner.y"), ["extract.inner.x"]);
    // `load` depends on the group: on its leaves, b and inner's y.
    assert_eq!(upstream(&dag, "load"), ["extract.b", "extract.inner.y"]);
}

#[test]
fn default_args_merge_dag_then_groups_then_task() {
    let dag = parse(ETL);
    let task = |id: &str| dag.task(id).unwrap();
    assert_eq!(
        (task("start").retries, task("start").pool.as_str()),
        (1, "shared")
    );
    assert_eq!(
        (task("extract.a").retries, task("extract.a").pool.as_str()),
        (2, "shared")
    );
    assert_eq!(task("extract.b").retries, 5);
    assert_eq!(
        (
            task("extract.inner.x").retries,
            task("extract.inner.x").pool.as_str()
        ),
        (2, "inner_pool")
    );
    assert_eq!(task("load").retries, 1);
}

#[test]
fn a_group_upstream_of_a_group_links_leaves_to_roots() {
    let dag = parse(
        r#"
tasks:
  - group_id: one
    tasks:
      - {task_id: a, bash: "true"}
      - {task_id: b, bash: "true", upstream: a}
      - {task_id: c, bash: "true", upstream: a}
  - group_id: two
    upstream: [one]
    tasks:
      - {task_id: p, bash: "true"}
      - {task_id: q, bash: "true"}
      - {task_id: r, bash: "true", upstream: [p, q]}
"#,
    );
    for root in ["two.p", "two.q"] {
        assert_eq!(upstream(&dag, root), ["one.b", "one.c"], "{root}");
    }
    assert_eq!(upstream(&dag, "two.r"), ["two.p", "two.q"]);
    assert_eq!(upstream(&dag, "one.a"), Vec::<&str>::new());
    let order: Vec<&str> = dag
        .topological_order()
        .iter()
        .map(|t| t.task_id.as_str())
        .collect();
    assert_eq!(
        order,
        ["one.a", "one.b", "one.c", "two.p", "two.q", "two.r"]
    );
}

#[test]
fn names_resolve_in_the_group_first_then_from_the_root() {
    let dag = parse(
        r#"
tasks:
  - {task_id: a, bash: "true"}
  - group_id: g
    tasks:
      - {task_id: a, bash: "true"}
      - {task_id: local, bash: "true", upstream: a}
      - {task_id: top, bash: "true", upstream: g.a}
      - group_id: h
        tasks:
          - {task_id: b, bash: "true"}
      - {task_id: nested, bash: "true", upstream: h.b}
      - {task_id: full, bash: "true", upstream: g.h.b}
  - {task_id: after, bash: "true", upstream: [g.h, a]}
"#,
    );
    // `a` in g is g's own `a`, not the top-level one.
    assert_eq!(upstream(&dag, "g.local"), ["g.a"]);
    // `g.a` names nothing below g (g holds no `g`), so it is the full id.
    assert_eq!(upstream(&dag, "g.top"), ["g.a"]);
    assert_eq!(upstream(&dag, "g.nested"), ["g.h.b"]);
    assert_eq!(upstream(&dag, "g.full"), ["g.h.b"]);
    // At the top level `a` is the top-level task; `g.h` is the nested group.
    assert_eq!(upstream(&dag, "after"), ["a", "g.h.b"]);
}

#[test]
fn prefix_group_id_false_keeps_ids_as_written() {
    let dag = parse(
        r#"
tasks:
  - group_id: g
    prefix_group_id: false
    tasks:
      - {task_id: a, bash: "true"}
      - group_id: h
        tasks:
          - {task_id: b, bash: "true", upstream: a}
  - {task_id: z, bash: "true", upstream: [g.a, h.b]}
"#,
    );
    // As Airflow: g does not prefix its children, h (inside g) still prefixes its own.
    assert_eq!(ids(&dag), ["a", "h.b", "z"]);
    assert_eq!(dag.groups[1].group_id, "h");
    assert_eq!(dag.groups[1].parent.as_deref(), Some("g"));
    // `a` inside h: not a member of h, so the full id `a`.
    assert_eq!(upstream(&dag, "h.b"), ["a"]);
    // `g.a` by the path of ids, `h.b` by its full id.
    assert_eq!(upstream(&dag, "z"), ["a", "h.b"]);
    // `b` is neither a member of the top level nor a full id.
    let errors = parse_dag(
        "default",
        "groups.yaml",
        r#"
tasks:
  - group_id: g
    prefix_group_id: false
    tasks:
      - {task_id: a, bash: "true"}
  - {task_id: z, bash: "true", upstream: [g.a, b]}
"#,
    )
    .unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!((errors[0].line, errors[0].column), (Some(7), Some(48)));
    assert!(errors[0].message.contains("`b`"), "{}", errors[0]);
}

#[test]
fn the_version_covers_the_groups_and_a_dag_without_groups_keeps_its_own() {
    let grouped = parse(ETL);
    let retitled = parse(&ETL.replace("Extract every source", "Extract it all"));
    assert_ne!(grouped.version(), retitled.version());
    assert_eq!(grouped.tasks, retitled.tasks);
    let plain = parse("tasks:\n  - {task_id: a, bash: \"true\"}\n");
    let json = serde_json::to_value(&plain).unwrap();
    assert!(json.get("groups").is_none(), "{json}");
}

#[test]
fn group_settings_do_not_leak_to_siblings() {
    let dag = parse(
        r#"
tasks:
  - group_id: g
    default_args: {execution_timeout: 5m}
    tasks:
      - {task_id: a, bash: "true"}
  - {task_id: b, bash: "true"}
"#,
    );
    assert_eq!(
        dag.task("g.a").unwrap().execution_timeout,
        Some(Duration::from_secs(300))
    );
    assert_eq!(dag.task("b").unwrap().execution_timeout, None);
}

fn errors(text: &str) -> Vec<ImportError> {
    match parse_dag("default", "groups.yaml", text) {
        Ok(dag) => panic!("expected import errors, parsed {dag:?}"),
        Err(errors) => errors,
    }
}

#[track_caller]
fn assert_one(text: &str, line: u32, column: u32, fragments: &[&str]) {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    let error = &errors[0];
    assert_eq!(error.filename, "groups.yaml");
    assert_eq!(
        (error.line, error.column),
        (Some(line), Some(column)),
        "wrong position for {error}"
    );
    for fragment in fragments {
        assert!(
            error.message.contains(fragment),
            "{:?} does not contain {fragment:?}",
            error.message
        );
    }
}

#[test]
fn duplicate_ids_across_groups_and_tasks() {
    assert_one(
        r#"
tasks:
  - group_id: g
    tasks: [{task_id: a, bash: "true"}]
  - group_id: g
    tasks: [{task_id: b, bash: "true"}]
"#,
        5,
        15,
        &["duplicate group_id `g`", "line 3"],
    );
    assert_one(
        r#"
tasks:
  - {task_id: g, bash: "true"}
  - group_id: g
    tasks: [{task_id: b, bash: "true"}]
"#,
        4,
        15,
        &["group `g`", "task at line 3", "cannot share an id"],
    );
    assert_one(
        r#"
tasks:
  - {task_id: g.a, bash: "true"}
  - group_id: g
    tasks:
      - {task_id: a, bash: "true"}
"#,
        6,
        19,
        &["duplicate task_id `g.a`", "line 3"],
    );
}

#[test]
fn unknown_upstream_names() {
    assert_one(
        r#"
tasks:
  - {task_id: start, bash: "true"}
  - group_id: g
    upstream: [strat]
    tasks: [{task_id: a, bash: "true"}]
"#,
        5,
        16,
        &["upstream `strat` of group `g`", "did you mean `start`?"],
    );
    assert_one(
        r#"
tasks:
  - group_id: g
    tasks:
      - {task_id: a, bash: "true"}
      - {task_id: b, bash: "true", upstream: [c]}
"#,
        6,
        47,
        &["upstream task `c` of task `g.b` does not exist"],
    );
}

#[test]
fn cycles_through_groups() {
    assert_one(
        r#"
tasks:
  - group_id: one
    upstream: two
    tasks: [{task_id: a, bash: "true"}]
  - group_id: two
    upstream: one
    tasks: [{task_id: b, bash: "true"}]
"#,
        4,
        15,
        &["cycle", "one.a -> two.b -> one.a"],
    );
    assert_one(
        r#"
tasks:
  - {task_id: t, bash: "true", upstream: g}
  - group_id: g
    tasks:
      - {task_id: a, bash: "true", upstream: [t]}
"#,
        3,
        42,
        &["cycle", "t -> g.a -> t"],
    );
}

#[test]
fn dependencies_on_what_holds_or_is_held() {
    assert_one(
        r#"
tasks:
  - group_id: g
    tasks:
      - {task_id: a, bash: "true", upstream: g}
"#,
        5,
        46,
        &["task `g.a` cannot depend on group `g`, which holds it"],
    );
    assert_one(
        r#"
tasks:
  - group_id: g
    upstream: g.a
    tasks:
      - {task_id: a, bash: "true"}
"#,
        4,
        15,
        &["group `g` cannot depend on task `g.a`, which it holds"],
    );
    assert_one(
        r#"
tasks:
  - group_id: g
    tasks:
      - group_id: h
        upstream: g
        tasks: [{task_id: a, bash: "true"}]
"#,
        6,
        19,
        &["group `g.h` cannot depend on group `g`, which holds it"],
    );
}

#[test]
fn dots_in_ids_inside_groups() {
    assert_one(
        r#"
tasks:
  - group_id: a.b
    tasks: [{task_id: x, bash: "true"}]
"#,
        3,
        15,
        &["group_id `a.b` contains `.`"],
    );
    assert_one(
        r#"
tasks:
  - group_id: g
    tasks:
      - {task_id: x.y, bash: "true"}
"#,
        5,
        19,
        &["task_id `x.y` in group `g` contains `.`"],
    );
}

#[test]
fn malformed_groups() {
    assert_one(
        "tasks:\n  - group_id: g\n    tasks: []\n",
        3,
        12,
        &["group `g` has no tasks"],
    );
    assert_one(
        "tasks:\n  - group_id: g\n",
        2,
        5,
        &["group `g` has no `tasks`"],
    );
    assert_one(
        "tasks:\n  - group_id: g\n    bash: echo\n    tasks: [{task_id: a, bash: \"true\"}]\n",
        3,
        5,
        &["unknown key `bash` in group `g`", "put `bash` on a task"],
    );
    assert_one(
        "tasks:\n  - group_id: g\n    task_id: t\n    tasks: [{task_id: a, bash: \"true\"}]\n",
        3,
        5,
        &["`task_id`", "not both"],
    );
    assert_one(
        "tasks:\n  - group_id: g\n    retries: 3\n    tasks: [{task_id: a, bash: \"true\"}]\n",
        3,
        5,
        &["set it for the group's tasks in its `default_args`"],
    );
    assert_one(
        "tasks:\n  - group_id: g\n    prefix_group_id: yes please\n    tasks: [{task_id: a, bash: \"true\"}]\n",
        3,
        22,
        &["`prefix_group_id` must be true or false"],
    );
    assert_one(
        "tasks:\n  - group_id: g\n    default_args: {retries: -1}\n    tasks: [{task_id: a, bash: \"true\"}]\n",
        3,
        29,
        &["`retries`"],
    );
}

#[test]
fn every_problem_in_a_group_is_reported() {
    let errors = errors(
        r#"
tasks:
  - group_id: g
    tasks:
      - {task_id: a}
      - {task_id: b, bash: "true", retrys: 2}
"#,
    );
    let at: Vec<(Option<u32>, Option<u32>)> = errors.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(at.len(), 2, "{errors:#?}");
    assert!(
        errors[0].message.contains("does not say what to run"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].message.contains("did you mean `retries`?"),
        "{}",
        errors[1]
    );
}
