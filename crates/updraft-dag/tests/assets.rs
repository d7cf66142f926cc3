//! Asset schedules (lists, `all`/`any` mappings, expressions) and task outlets: what parses,
//! and the import errors, with their positions, of what does not.

use updraft_dag::{AssetCondition, ImportError, Schedule, parse_asset_expression, parse_dag};

use AssetCondition::{All, Any, Asset};

fn asset(uri: &str) -> AssetCondition {
    Asset(uri.to_owned())
}

fn schedule_of(schedule_yaml: &str) -> Schedule {
    let text = format!(
        "dag_id: consumer\nschedule: {schedule_yaml}\ntasks:\n  - task_id: t\n    bash: 'true'\n"
    );
    match parse_dag("default", "consumer.yaml", &text) {
        Ok(dag) => dag.schedule,
        Err(errors) => panic!("{schedule_yaml}: {errors:#?}"),
    }
}

fn errors(text: &str) -> Vec<ImportError> {
    match parse_dag("default", "consumer.yaml", text) {
        Ok(dag) => panic!("expected import errors, parsed {dag:?}"),
        Err(errors) => errors,
    }
}

#[track_caller]
fn assert_one(text: &str, line: u32, column: u32, fragments: &[&str]) {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    let error = &errors[0];
    assert_eq!(
        (error.line, error.column),
        (Some(line), Some(column)),
        "{error}"
    );
    for fragment in fragments {
        assert!(
            error.message.contains(fragment),
            "{:?} lacks {fragment:?}",
            error.message
        );
    }
    assert_eq!(error.filename, "consumer.yaml");
}

#[test]
fn a_list_is_all_of_its_assets() {
    assert_eq!(
        schedule_of("[s3://a, s3://b]"),
        Schedule::Assets(All(vec![asset("s3://a"), asset("s3://b")]))
    );
    assert_eq!(schedule_of("[s3://a]"), Schedule::Assets(asset("s3://a")));
}

#[test]
fn expressions_follow_pythons_precedence() {
    assert_eq!(
        schedule_of("\"s3://a & (s3://b | s3://c)\""),
        Schedule::Assets(All(vec![
            asset("s3://a"),
            Any(vec![asset("s3://b"), asset("s3://c")])
        ]))
    );
    // `&` binds tighter than `|`.
    assert_eq!(
        parse_asset_expression("s3://a | s3://b & s3://c").unwrap(),
        Any(vec![
            asset("s3://a"),
            All(vec![asset("s3://b"), asset("s3://c")])
        ])
    );
    // Same-kind groups flatten, as Airflow's AssetAll / AssetAny do.
    assert_eq!(
        parse_asset_expression("s3://a & (s3://b & s3://c)").unwrap(),
        All(vec![asset("s3://a"), asset("s3://b"), asset("s3://c")])
    );
}

#[test]
fn mappings_nest_with_lists_and_expressions() {
    let schedule = schedule_of("{any: [s3://a, {all: [s3://b, s3://c]}, \"s3://d & s3://e\"]}");
    assert_eq!(
        schedule,
        Schedule::Assets(Any(vec![
            asset("s3://a"),
            All(vec![asset("s3://b"), asset("s3://c")]),
            All(vec![asset("s3://d"), asset("s3://e")]),
        ]))
    );
    assert_eq!(schedule.description(), "Triggered by assets");
}

#[test]
fn a_condition_prints_as_an_expression_that_parses_back() {
    for text in [
        "s3://a",
        "s3://a & s3://b",
        "s3://a | (s3://b & s3://c)",
        "(s3://a | s3://b) & (s3://c | s3://d)",
    ] {
        let condition = parse_asset_expression(text).unwrap();
        assert_eq!(condition.to_string(), text);
        assert_eq!(
            parse_asset_expression(&condition.to_string()).unwrap(),
            condition
        );
    }
}

#[test]
fn an_asset_dag_needs_no_start_date() {
    let text = "dag_id: consumer\nschedule: [s3://a]\nparams:\n  p: {type: string}\ntasks:\n  - task_id: t\n    bash: 'true'\n";
    let dag = parse_dag("default", "consumer.yaml", text).unwrap();
    assert_eq!(dag.schedule.assets().unwrap().uris(), vec!["s3://a"]);
    assert!(!dag.schedule.is_scheduled());
}

#[test]
fn expression_errors_name_the_character() {
    let dag = |expr: &str| {
        format!("dag_id: c\nschedule: \"{expr}\"\ntasks:\n  - task_id: t\n    bash: 'true'\n")
    };
    assert_one(
        &dag("s3://a & (s3://b"),
        2,
        11,
        &["asset expression", "character 17", "never closed"],
    );
    assert_one(
        &dag("s3://a & | s3://b"),
        2,
        11,
        &["character 10", "found `|`"],
    );
    assert_one(
        &dag("s3://a s3://b"),
        2,
        11,
        &["character 8", "unexpected asset `s3://b`"],
    );
    assert_one(&dag("s3://a &"), 2, 11, &["character 9", "ends"]);
    let error = parse_asset_expression("s3://a )").unwrap_err();
    assert_eq!(
        (error.character, error.message.as_str()),
        (8, "unexpected `)`")
    );
}

#[test]
fn bad_asset_mappings_and_lists() {
    let dag =
        |s: &str| format!("dag_id: c\nschedule: {s}\ntasks:\n  - task_id: t\n    bash: 'true'\n");
    assert_one(
        &dag("{every: [s3://a]}"),
        2,
        12,
        &["unknown asset condition", "`all` or `any`"],
    );
    assert_one(&dag("{all: s3://a}"), 2, 17, &["`all`", "a list"]);
    assert_one(&dag("[]"), 2, 11, &["cannot be empty"]);
    assert_one(
        &dag("[s3://a, 3]"),
        2,
        20,
        &["asset condition must be", "an integer"],
    );
    assert_one(
        &dag("{all: [s3://a], any: [s3://b]}"),
        2,
        11,
        &["exactly one key"],
    );
}

#[test]
fn outlets_as_uris_and_mappings() {
    let text = "\
dag_id: producer
tasks:
  - task_id: write
    bash: 'true'
    outlets:
      - s3://bucket/raw
      - uri: s3://bucket/clean
        name: clean
        extra: {rows: 3, format: parquet}
  - task_id: plain
    bash: 'true'
";
    let dag = parse_dag("default", "producer.yaml", text).unwrap();
    let outlets = &dag.task("write").unwrap().outlets;
    assert_eq!(outlets.len(), 2);
    assert_eq!(outlets[0].uri, "s3://bucket/raw");
    assert_eq!(outlets[0].name, None);
    assert_eq!(outlets[1].name.as_deref(), Some("clean"));
    assert_eq!(outlets[1].extra["rows"], serde_json::json!(3));
    assert!(dag.task("plain").unwrap().outlets.is_empty());
    // A task without outlets serializes as before, so DAG versions did not change.
    let json = serde_json::to_string(dag.task("plain").unwrap()).unwrap();
    assert!(!json.contains("outlets"), "{json}");
}

#[test]
fn bad_outlets() {
    let dag = |o: &str| {
        format!("dag_id: p\ntasks:\n  - task_id: t\n    bash: 'true'\n    outlets: {o}\n")
    };
    assert_one(&dag("s3://a"), 5, 14, &["`outlets`", "a list"]);
    assert_one(&dag("[s3://a, s3://a]"), 5, 23, &["listed twice"]);
    assert_one(&dag("[\"s3://a b\"]"), 5, 15, &["invalid outlet", "' '"]);
    assert_one(&dag("[{name: x}]"), 5, 15, &["needs a `uri`"]);
    assert_one(
        &dag("[{uri: s3://a, extras: {}}]"),
        5,
        29,
        &["unknown key `extras`", "did you mean `extra`"],
    );
    assert_one(
        &dag("[{uri: s3://a, extra: 3}]"),
        5,
        36,
        &["`extra`", "a mapping"],
    );
}
