//! Dynamic task mapping in DAG files: `expand:` read into the model (literal lists, templates,
//! XCom references that become upstreams, `max_active_tis_per_dag`) and its import errors,
//! each at its file, line and column.

use updraft_dag::{Dag, ImportError, MapSource, parse_dag};

fn parse(text: &str) -> Dag {
    parse_dag("default", "mapped.yaml", text).unwrap_or_else(|e| panic!("{e:#?}"))
}

#[track_caller]
fn assert_one(text: &str, line: u32, column: u32, fragments: &[&str]) {
    let errors: Vec<ImportError> = match parse_dag("default", "mapped.yaml", text) {
        Ok(dag) => panic!("expected import errors, parsed {dag:?}"),
        Err(errors) => errors,
    };
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    let error = &errors[0];
    assert_eq!(error.filename, "mapped.yaml");
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
fn expand_reads_literals_templates_and_xcom_references_in_file_order() {
    let dag = parse(
        "\
dag_id: m
params:
  files: {default: [a, b]}
tasks:
  - task_id: list_files
    bash: echo
  - task_id: work
    bash: echo {{ mapped.n }} {{ mapped.f }}
    max_active_tis_per_dag: 4
    expand:
      n: [1, 2, 3]
      f: \"{{ params.files }}\"
      x: {xcom: {task_id: list_files, key: files}}
      y: {xcom: list_files}
",
    );
    let work = dag.task("work").unwrap();
    assert!(work.is_mapped());
    assert_eq!(work.max_active_tis_per_dag, Some(4));
    let args = &work.expand.as_ref().unwrap().args;
    let names: Vec<&str> = args.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["n", "f", "x", "y"]);
    assert_eq!(
        args[0].source,
        MapSource::Literal(vec![1.into(), 2.into(), 3.into()])
    );
    assert_eq!(
        args[1].source,
        MapSource::Template("{{ params.files }}".into())
    );
    assert_eq!(
        args[2].source,
        MapSource::XCom {
            task_id: "list_files".into(),
            key: "files".into()
        }
    );
    assert_eq!(
        args[3].source,
        MapSource::XCom {
            task_id: "list_files".into(),
            key: "return_value".into()
        }
    );
    // The XCom's task became an upstream, once.
    assert_eq!(work.upstream, ["list_files"]);
    assert!(!dag.task("list_files").unwrap().is_mapped());
}

#[test]
fn an_unmapped_dag_keeps_its_version() {
    // A DAG without `expand` serializes no mapping field, so its version did not change.
    let dag = parse("dag_id: v\ntasks:\n  - {task_id: a, bash: echo}\n");
    let json = serde_json::to_string(&dag).unwrap();
    assert!(!json.contains("expand"), "{json}");
    assert!(!json.contains("max_active_tis_per_dag"), "{json}");
}

#[test]
fn max_active_tis_per_dag_may_come_from_default_args() {
    let dag = parse(
        "dag_id: d\ndefault_args: {max_active_tis_per_dag: 2}\ntasks:\n  - {task_id: a, bash: echo}\n  - {task_id: b, bash: echo, max_active_tis_per_dag: null}\n",
    );
    assert_eq!(dag.task("a").unwrap().max_active_tis_per_dag, Some(2));
    assert_eq!(dag.task("b").unwrap().max_active_tis_per_dag, None);
}

#[test]
fn an_xcom_reference_to_no_task_is_located() {
    assert_one(
        "dag_id: m\ntasks:\n  - task_id: a\n    bash: echo\n    expand:\n      f: {xcom: {task_id: lister}}\n",
        6,
        27,
        &["`expand` of task `a`", "task `lister`", "does not exist"],
    );
}

#[test]
fn a_scalar_to_map_over_is_located() {
    assert_one(
        "dag_id: m\ntasks:\n  - task_id: a\n    bash: echo\n    expand:\n      f: 3\n",
        6,
        10,
        &["`expand.f` must be a list", "found an integer"],
    );
    // A plain string (no template) is not a list either.
    assert_one(
        "dag_id: m\ntasks:\n  - task_id: a\n    bash: echo\n    expand:\n      f: abc\n",
        6,
        10,
        &["`expand.f` must be a list"],
    );
}

#[test]
fn expand_must_be_a_non_empty_mapping_of_identifiers() {
    assert_one(
        "dag_id: m\ntasks:\n  - task_id: a\n    bash: echo\n    expand: {}\n",
        5,
        13,
        &["`expand` is empty"],
    );
    assert_one(
        "dag_id: m\ntasks:\n  - task_id: a\n    bash: echo\n    expand:\n      2x: [1]\n",
        6,
        7,
        &["argument `2x` must be an identifier"],
    );
}

#[test]
fn a_branching_task_cannot_be_mapped() {
    assert_one(
        "dag_id: m\ntasks:\n  - task_id: a\n    bash: echo\n    branch: true\n    expand:\n      f: [1]\n",
        7,
        7,
        &["sets `expand` and `branch`"],
    );
}

#[test]
fn a_python_argument_is_either_partial_or_expanded() {
    assert_one(
        "dag_id: m\ntasks:\n  - task_id: a\n    python:\n      callable: \"m:f\"\n      op_kwargs: {x: 1}\n    expand:\n      x: [1]\n",
        8,
        7,
        &["maps `x` in `expand` and also sets it in `python.op_kwargs`"],
    );
}

#[test]
fn a_task_cannot_map_over_its_own_xcom_and_cycles_through_xcoms_are_found() {
    assert_one(
        "dag_id: m\ntasks:\n  - task_id: a\n    bash: echo\n    expand:\n      f: {xcom: a}\n",
        6,
        17,
        &["cannot map over its own XCom"],
    );
    let errors = parse_dag(
        "default",
        "mapped.yaml",
        "dag_id: m\ntasks:\n  - task_id: a\n    bash: echo\n    upstream: [b]\n  - task_id: b\n    bash: echo\n    expand:\n      f: {xcom: a}\n",
    )
    .unwrap_err();
    assert!(
        errors.iter().any(|e| e.message.contains("cycle")),
        "{errors:#?}"
    );
}

#[test]
fn expand_is_set_on_tasks_not_in_default_args() {
    assert_one(
        "dag_id: m\ndefault_args:\n  expand: {f: [1]}\ntasks:\n  - {task_id: a, bash: echo}\n",
        3,
        3,
        &["set on each task"],
    );
}
