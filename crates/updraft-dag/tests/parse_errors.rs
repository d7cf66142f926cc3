//! Every import-error case of a single DAG file: each asserts the error's position and
//! message.

use updraft_dag::{ImportError, parse_dag};

fn errors(text: &str) -> Vec<ImportError> {
    match parse_dag("default", "team_file.yaml", text) {
        Ok(dag) => panic!("expected import errors, parsed {dag:?}"),
        Err(errors) => errors,
    }
}

/// Asserts `text` has exactly one error, at `line`:`column`, whose message contains every
/// fragment.
#[track_caller]
fn assert_one(text: &str, line: u32, column: u32, fragments: &[&str]) -> ImportError {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    let error = errors.into_iter().next().unwrap();
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
    assert_eq!(error.filename, "team_file.yaml");
    assert_eq!(error.tenant, "default");
    error
}

#[test]
fn bad_yaml_syntax() {
    assert_one(
        "dag_id: x\ntasks: [\n",
        2,
        8,
        &["invalid YAML", "unclosed bracket"],
    );
    assert_one(
        "dag_id: x\n  description: oops\n",
        2,
        14,
        &["invalid YAML", "mapping values are not allowed"],
    );
}

#[test]
fn a_second_yaml_document_is_an_error() {
    assert_one("dag_id: a\n---\ndag_id: b\n", 3, 1, &["multiple"]);
}

#[test]
fn unknown_task_key_suggests_the_closest() {
    let text = "\
dag_id: x
tasks:
  - task_id: a
    bash: echo hi
    retrys: 3
";
    assert_one(
        text,
        5,
        5,
        &[
            "unknown key `retrys` in task `a`",
            "did you mean `retries`?",
        ],
    );
}

#[test]
fn unknown_top_level_key_without_a_close_match_lists_valid_keys() {
    assert_one(
        "colour: red\n",
        1,
        1,
        &[
            "unknown key `colour` in the DAG",
            "valid keys: dag_id, description",
        ],
    );
}

#[test]
fn airflow_names_get_advice() {
    assert_one(
        "schedule_interval: '@daily'\n",
        1,
        1,
        &["unknown key `schedule_interval`", "use `schedule`"],
    );
    assert_one(
        "default_args:\n  start_date: 2024-01-01\n",
        2,
        3,
        &["`start_date` is a DAG-level key"],
    );
    assert_one(
        "tasks:\n  - task_id: a\n    noop: true\n    bash_command: echo\n",
        4,
        5,
        &["use `bash`"],
    );
    assert_one("retries: 2\n", 1, 1, &["is a task setting", "default_args"]);
}

#[test]
fn unknown_key_in_default_args_and_params() {
    assert_one(
        "default_args:\n  retry_dealy: 5m\n",
        2,
        3,
        &[
            "unknown key `retry_dealy` in default_args",
            "did you mean `retry_delay`?",
        ],
    );
    assert_one(
        "params:\n  limit: {default: 1, maximun: 5}\n",
        2,
        23,
        &[
            "unknown key `maximun` in param `limit`",
            "did you mean `maximum`?",
        ],
    );
}

#[test]
fn wrong_types() {
    let text = "\
tasks:
  - task_id: a
    bash: echo
    retries: '3'
";
    assert_one(
        text,
        4,
        14,
        &[
            "`retries` must be a non-negative integer",
            "found a string \"3\"",
        ],
    );
    assert_one(
        "catchup: yes\n",
        1,
        10,
        &["`catchup` must be true or false", "\"yes\""],
    );
    assert_one(
        "tasks:\n  - task_id: a\n    bash: echo\n    do_xcom_push: 'yes'\n",
        4,
        19,
        &["`do_xcom_push` must be true or false"],
    );
    assert_one(
        "max_active_runs: 0\n",
        1,
        18,
        &["`max_active_runs` must be an integer >= 1"],
    );
    assert_one("tags: etl\n", 1, 7, &["`tags` must be a list of strings"]);
    assert_one(
        "tasks: {a: 1}\n",
        1,
        8,
        &["`tasks` must be a list of tasks"],
    );
    assert_one(
        "tasks:\n  - just a string\n",
        2,
        5,
        &["`tasks[0]` must be a mapping"],
    );
    assert_one("env: {A: [1]}\n", 1, 10, &["`env.A` must be a string"]);
    assert_one(
        "tasks:\n  - {task_id: a, noop: false}\n",
        2,
        24,
        &["`noop` must be true"],
    );
}

#[test]
fn bad_cron_expressions() {
    assert_one(
        "schedule: '61 3 * * *'\nstart_date: 2024-01-01\n",
        1,
        11,
        &["invalid cron expression `61 3 * * *`"],
    );
    assert_one(
        "schedule: '0 3 * *'\nstart_date: 2024-01-01\n",
        1,
        11,
        &["has 4 fields; expected 5"],
    );
    assert_one(
        "schedule: '@dialy'\nstart_date: 2024-01-01\n",
        1,
        11,
        &["unknown schedule preset `@dialy`", "did you mean `@daily`?"],
    );
    assert_one(
        "schedule: daily\nstart_date: 2024-01-01\n",
        1,
        11,
        &["neither a cron expression"],
    );
}

/// A zero schedule is refused like any other zero duration (Airflow: "schedule interval must
/// be positive"), whether written as a number of seconds or as a duration.
#[test]
fn zero_or_negative_schedule_is_refused() {
    for value in ["0", "-60", "0s", "'0m'"] {
        let error = assert_one(
            &format!("schedule: {value}\nstart_date: 2024-01-01\n"),
            1,
            11,
            &["`schedule` must be longer than zero"],
        );
        assert!(error.to_string().contains("team_file.yaml"), "{error}");
    }
}

#[test]
fn unknown_timezone() {
    assert_one(
        "timezone: Asia/Tokio\n",
        1,
        11,
        &[
            "unknown time zone `Asia/Tokio`",
            "did you mean `Asia/Tokyo`?",
        ],
    );
}

#[test]
fn bad_durations() {
    let text = "\
tasks:
  - task_id: a
    bash: echo
    retry_delay: soon
";
    assert_one(
        text,
        4,
        18,
        &["`retry_delay` is not a valid duration", "\"soon\""],
    );
    assert_one(
        "tasks:\n  - {task_id: a, noop: true, execution_timeout: 0}\n",
        2,
        49,
        &["`execution_timeout` must be longer than zero"],
    );
    assert_one(
        "tasks:\n  - {task_id: a, noop: true, retry_delay: -5}\n",
        2,
        43,
        &["`retry_delay` must be a duration"],
    );
}

#[test]
fn cycle_names_its_tasks_and_points_at_the_closing_edge() {
    let text = "\
tasks:
  - task_id: a
    bash: echo
    upstream: c
  - task_id: b
    bash: echo
    upstream: [a]
  - task_id: c
    bash: echo
    upstream: [b]
  - task_id: d
    bash: echo
    upstream: [c]
";
    assert_one(text, 4, 15, &["cycle: a -> b -> c -> a"]);
}

#[test]
fn self_dependency_is_a_cycle() {
    assert_one(
        "tasks:\n  - {task_id: solo, noop: true, upstream: [solo]}\n",
        2,
        44,
        &["cycle: solo -> solo"],
    );
}

#[test]
fn duplicate_task_id_points_at_the_second() {
    let text = "\
tasks:
  - task_id: a
    bash: echo
  - task_id: a
    noop: true
";
    assert_one(
        text,
        4,
        14,
        &["duplicate task_id `a`", "first defined at line 2"],
    );
}

#[test]
fn upstream_naming_a_missing_task() {
    let text = "\
tasks:
  - task_id: extract
    bash: echo
  - task_id: load
    bash: echo
    upstream: [extract, extrakt]
";
    assert_one(
        text,
        6,
        25,
        &[
            "upstream task `extrakt` of task `load` does not exist",
            "did you mean `extract`?",
        ],
    );
}

#[test]
fn invalid_identifiers() {
    assert_one(
        "dag_id: 'my dag'\n",
        1,
        9,
        &["dag_id \"my dag\" contains ' '"],
    );
    assert_one(
        "tasks:\n  - {task_id: 'a/b', noop: true}\n",
        2,
        15,
        &["task_id \"a/b\" contains '/'"],
    );
    let long = "x".repeat(251);
    assert_one(
        &format!("dag_id: {long}\n"),
        1,
        9,
        &["251 characters long; the limit is 250"],
    );
    assert_one(
        "tasks:\n  - {task_id: a, noop: true, pool: 'my pool'}\n",
        2,
        36,
        &["pool \"my pool\" contains ' '"],
    );
}

#[test]
fn invalid_tenant_and_file_stem_are_file_level_errors() {
    let errors = parse_dag("bad tenant", "bad tenant/x.yaml", "tasks: []\n").unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!((errors[0].line, errors[0].column), (None, None));
    assert!(
        errors[0]
            .message
            .contains("tenant \"bad tenant\" contains ' '"),
        "{}",
        errors[0]
    );

    let errors = parse_dag("default", "my dag.yaml", "tasks: []\n").unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].line, None);
    assert!(
        errors[0].message.contains("no `dag_id` is set"),
        "{}",
        errors[0]
    );
}

#[test]
fn end_date_before_start_date() {
    assert_one(
        "start_date: 2024-02-01\nend_date: 2024-01-31T23:00:00\n",
        2,
        11,
        &["`end_date`", "is before `start_date`"],
    );
}

#[test]
fn bad_dates() {
    assert_one(
        "start_date: 2024-02-30\n",
        1,
        13,
        &["`start_date`", "is not a date"],
    );
    assert_one(
        "timezone: Europe/Paris\nstart_date: 2024-03-31T02:30:00\n",
        2,
        13,
        &["daylight-saving gap"],
    );
    assert_one(
        "start_date: 20240101\n",
        1,
        13,
        &["`start_date` must be a date"],
    );
}

#[test]
fn scheduled_dag_needs_a_start_date() {
    assert_one(
        "description: x\nschedule: '@daily'\n",
        2,
        1,
        &["scheduled (@daily) but has no `start_date`"],
    );
    assert_one("schedule: 30m\n", 1, 1, &["scheduled (30m)"]);
    assert_one("schedule: '@once'\n", 1, 1, &["scheduled (@once)"]);
    assert!(parse_dag("default", "x.yaml", "schedule: null\n").is_ok());
}

#[test]
fn pool_slots_must_be_positive() {
    assert_one(
        "tasks:\n  - {task_id: a, noop: true, pool_slots: 0}\n",
        2,
        42,
        &["`pool_slots` must be an integer >= 1"],
    );
}

#[test]
fn bad_trigger_and_weight_rules() {
    assert_one(
        "tasks:\n  - {task_id: a, noop: true, trigger_rule: all_sucess}\n",
        2,
        44,
        &[
            "unknown trigger_rule `all_sucess`",
            "did you mean `all_success`?",
        ],
    );
    assert_one(
        "tasks:\n  - {task_id: a, noop: true, trigger_rule: dummy}\n",
        2,
        44,
        &["Airflow renamed it `always`"],
    );
    assert_one(
        "tasks:\n  - {task_id: a, noop: true, weight_rule: sideways}\n",
        2,
        43,
        &["unknown weight_rule `sideways`"],
    );
}

#[test]
fn bad_param_specs() {
    assert_one(
        "params:\n  limit: {default: ten, type: integer}\n",
        2,
        20,
        &[
            "param `limit`",
            "default \"ten\" does not fit its own spec",
            "expected integer",
        ],
    );
    assert_one(
        "params:\n  limit: {default: 500, type: integer, minimum: 1, maximum: 100}\n",
        2,
        20,
        &["default 500 does not fit", "must be <= 100"],
    );
    assert_one(
        "params:\n  mode: {default: medium, enum: [fast, slow]}\n",
        2,
        19,
        &["param `mode`", "must be one of [\"fast\", \"slow\"]"],
    );
    assert_one(
        "params:\n  mode: {type: string, enum: [fast, 2]}\n",
        2,
        30,
        &["enum value 2 is not a string"],
    );
    assert_one(
        "params:\n  n: {type: int}\n",
        2,
        13,
        &["unknown param type `int`"],
    );
    assert_one(
        "params:\n  n: {default: 5, minimum: 10, maximum: 1}\n",
        2,
        28,
        &["`minimum` (10) is greater than `maximum` (1)"],
    );
    assert_one(
        "params:\n  s: {type: string, minimum: 1}\n",
        2,
        30,
        &["apply to integer and number params only"],
    );
}

#[test]
fn scheduled_dag_cannot_require_params() {
    assert_one(
        "schedule: '@daily'\nstart_date: 2024-01-01\nparams:\n  region: {type: string}\n",
        3,
        1,
        &["param `region` has no default", "scheduled"],
    );
}

#[test]
fn task_kind_is_exactly_one() {
    assert_one(
        "tasks:\n  - task_id: a\n    retries: 1\n",
        2,
        5,
        &[
            "task `a` does not say what to run",
            "`bash`, `command`, `pod`, `python`, `sensor`, `trigger_dag_run`, `noop`",
        ],
    );
    assert_one(
        "tasks:\n  - task_id: a\n    bash: echo\n    command: [echo]\n",
        4,
        5,
        &["task `a` sets both `bash` and `command`"],
    );
    assert_one(
        "tasks:\n  - {task_id: a, command: 'ls -l'}\n",
        2,
        27,
        &["`command` must be a list of arguments", "use `bash:`"],
    );
    assert_one(
        "tasks:\n  - {task_id: a, command: []}\n",
        2,
        27,
        &["`command` must name a program"],
    );
}

#[test]
fn missing_task_id() {
    assert_one(
        "tasks:\n  - bash: echo\n",
        2,
        5,
        &["tasks[0] has no `task_id`"],
    );
}

#[test]
fn duplicate_keys() {
    assert_one(
        "dag_id: a\ndescription: x\ndag_id: b\n",
        3,
        1,
        &["duplicate key `dag_id`", "first set at line 1"],
    );
}

#[test]
fn empty_file_and_non_mapping_root() {
    let errors = errors("# nothing here\n");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, None);
    assert!(errors[0].message.contains("the file is empty"));
    assert_one(
        "- a\n- b\n",
        1,
        1,
        &["a DAG file must be a YAML mapping, found a list"],
    );
}

/// Graph problems (unknown upstream ids, cycles) are only looked for once every task reads
/// correctly; everything else is reported in one pass.
#[test]
fn every_problem_is_reported_in_file_order() {
    let text = "\
dag_id: ok
timezone: Mars/Olympus
max_active_tasks: -1
tasks:
  - task_id: a
    bash: echo
    retries: many
  - task_id: b
    noop: true
    upstream: [nope]
";
    let errors = errors(text);
    let positions: Vec<(Option<u32>, Option<u32>)> =
        errors.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(
        positions,
        vec![
            (Some(2), Some(11)),
            (Some(3), Some(19)),
            (Some(7), Some(14)),
        ],
        "{errors:#?}"
    );
}

#[test]
fn display_is_file_line_column_message() {
    let error = assert_one("colour: red\n", 1, 1, &[]);
    assert!(
        error
            .to_string()
            .starts_with("team_file.yaml:1:1: unknown key `colour`")
    );
}

#[test]
fn connections_must_be_a_list_of_valid_distinct_ids() {
    let task = |value: &str| {
        format!("dag_id: x\ntasks:\n  - task_id: a\n    bash: echo hi\n    connections: {value}\n")
    };
    assert_one(
        &task("my_db"),
        5,
        18,
        &["`connections`", "a list of strings"],
    );
    assert_one(
        &task("[ok, \"my db\"]"),
        5,
        23,
        &["invalid `connections` entry", "`my db`", "' '"],
    );
    assert_one(&task("[db, db]"), 5, 23, &["`db` is listed twice"]);
    assert_one(&task("[\"\"]"), 5, 19, &["cannot be empty"]);
    assert_one(&task("[1]"), 5, 19, &["each item of connections"]);
    let long = "c".repeat(251);
    assert_one(&task(&format!("[{long}]")), 5, 19, &["longer than 250"]);
    assert_one(
        "dag_id: x\ndefault_args: {connections: [a/b]}\ntasks: []\n",
        2,
        30,
        &["`a/b` contains '/'"],
    );
}
