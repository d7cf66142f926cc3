//! The DAG-loading and command-line surface of the `updraft` binary: tenants, import errors,
//! broken and repaired files, `dags test` / `tasks test`, listings, pausing, configuration,
//! JSON output and exit codes, `standalone` with the example DAGs, migrations.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{CmdResult, DEFAULT_TIMEOUT, Home, as_array, str_of, wait_until};
use serde_json::{Value, json};

// ---- helpers ----------------------------------------------------------------------------------

/// A DAG with one bash task `t`, manual runs only.
fn one_task_dag(dag_id: &str, bash: &str) -> String {
    format!(
        "dag_id: {dag_id}\ntasks:\n  - task_id: t\n    bash: {}\n",
        json!(bash)
    )
}

/// A daily DAG from 2024-01-01 with one task `t` echoing its logical date.
fn daily_dag(dag_id: &str) -> String {
    format!(
        "dag_id: {dag_id}\nschedule: \"@daily\"\nstart_date: 2024-01-01\ntasks:\n  \
         - task_id: t\n    bash: echo \"ran {dag_id} for {{{{ ds }}}}\"\n"
    )
}

/// `dags list -o json`, keyed by dag_id.
fn listed(home: &Home) -> BTreeMap<String, Value> {
    home.dags_list()
        .into_iter()
        .map(|d| (str_of(&d["dag_id"]), d))
        .collect()
}

fn dag_ids(home: &Home) -> Vec<String> {
    listed(home).into_keys().collect()
}

fn import_errors(home: &Home) -> Vec<Value> {
    as_array(home.json(&["dags", "list-import-errors"]))
}

/// `updraft ARGS` in `home` with the environment variables `removed` unset.
fn run_without(home: &Home, removed: &[&str], args: &[&str]) -> CmdResult {
    let mut cmd = home.command(args);
    for name in removed {
        cmd.env_remove(name);
    }
    let output = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running updraft");
    CmdResult {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `updraft ARGS` in `home`, killed (and the test failed) if it runs longer than `timeout`.
fn run_within(home: &Home, args: &[&str], timeout: Duration) -> CmdResult {
    let child = home
        .command(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting updraft");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(output) => {
            let output = output.expect("waiting for updraft");
            CmdResult {
                status: output.status,
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        }
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let output = rx
                .recv()
                .expect("updraft was killed")
                .expect("waiting for updraft");
            panic!(
                "`updraft {}` did not finish within {timeout:?}:\n{}\n{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// The database files of a home (`updraft.db` and any journal), with their bytes.
fn database_files(home: &Home) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(home.path())
        .expect("reading UPDRAFT_HOME")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("updraft.db"))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, fs::read(e.path()).expect("reading a database file"))
        })
        .collect()
}

fn logs_dir(home: &Home) -> PathBuf {
    home.path().join("logs")
}

/// `tasks logs DAG RUN TASK` (the latest try); panics unless it succeeds.
fn task_log(home: &Home, dag_id: &str, run_id: &str, task_id: &str) -> String {
    home.ok(&["tasks", "logs", dag_id, run_id, task_id]).stdout
}

fn log_file(home: &Home, tenant: &str, dag_id: &str, run_id: &str, task_id: &str) -> PathBuf {
    logs_dir(home)
        .join(tenant)
        .join(dag_id)
        .join(run_id)
        .join(task_id)
        .join("attempt=1.log")
}

/// Every `.yaml`/`.yml` file below `dir`, as `/`-separated paths relative to it.
fn yaml_files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).expect("reading a folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let rel = path.strip_prefix(root).unwrap();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

// ---- 1. tenancy -------------------------------------------------------------------------------

#[test]
fn tenants_come_from_folders_and_reach_runs_and_log_paths() {
    let home = Home::new();
    let dags = [
        ("plain", "default", "plain.yaml"),
        ("alpha", "team_a", "team_a/alpha.yaml"),
        ("beta", "team_b", "team_b/x/beta.yaml"),
    ];
    for (dag_id, _, file) in dags {
        home.write_dag(
            file,
            &one_task_dag(
                dag_id,
                &format!("echo \"{dag_id} in tenant $UPDRAFT_TENANT\""),
            ),
        );
    }

    let by_id = listed(&home);
    assert_eq!(by_id.len(), 3, "{by_id:?}");
    for (dag_id, tenant, file) in dags {
        assert_eq!(
            by_id[dag_id]["tenant"], tenant,
            "{dag_id}: {}",
            by_id[dag_id]
        );
        assert_eq!(
            by_id[dag_id]["fileloc"], file,
            "{dag_id}: {}",
            by_id[dag_id]
        );
    }

    // Triggered runs, run by the scheduler, log under logs/<tenant>/<dag_id>/<run_id>/<task>/.
    let _scheduler = home.start_scheduler();
    for (dag_id, tenant, _) in dags {
        let run = home.json(&["dags", "trigger", dag_id, "--run-id", "tenancy_run"]);
        assert_eq!(run["tenant"], tenant, "{run}");
    }
    for (dag_id, tenant, _) in dags {
        assert_eq!(home.wait_run_finished(dag_id, "tenancy_run"), "success");
        let path = log_file(&home, tenant, dag_id, "tenancy_run", "t");
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        assert!(
            text.contains(&format!("{dag_id} in tenant {tenant}")),
            "{text}"
        );
        assert_eq!(task_log(&home, dag_id, "tenancy_run", "t"), text);
    }
    // Nothing was logged outside the tenants' folders.
    let mut top: Vec<String> = fs::read_dir(logs_dir(&home))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["default", "team_a", "team_b"]);

    // `dags test` lays its (temporary) logs out the same way and says where each one is.
    for (dag_id, tenant, _) in dags {
        let out = home.ok(&["dags", "test", dag_id, "2024-02-03"]);
        let expected =
            format!("{tenant}/{dag_id}/manual__2024-02-03T00:00:00+00:00/t/attempt=1.log");
        assert!(
            out.stdout.contains(&expected),
            "expected {expected} in:\n{out}"
        );
        assert!(
            out.stdout.contains(&format!("{dag_id} in tenant {tenant}")),
            "{out}"
        );
    }
}

// ---- 2. import errors -------------------------------------------------------------------------

/// The DAGs that must keep loading next to a broken file.
fn write_good_dags(home: &Home) {
    home.write_dag("good.yaml", &one_task_dag("good", "echo good"));
    home.write_dag("team_a/good_a.yaml", &one_task_dag("good_a", "echo good_a"));
}

/// Writes `content` to `dags/<file>` next to the good DAGs, and checks that it is the one
/// import error, at `line`:`column`, with a message containing every fragment; and that the
/// good DAGs still load.
fn assert_import_error(
    home: &Home,
    file: &str,
    content: &[u8],
    line: Option<u64>,
    column: Option<u64>,
    fragments: &[&str],
) {
    write_good_dags(home);
    let path = home.dags().join(file);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, content).unwrap();

    let errors = import_errors(home);
    assert_eq!(errors.len(), 1, "expected one import error: {errors:#?}");
    let error = &errors[0];
    let tenant = file.split_once('/').map_or("default", |(t, _)| t);
    assert_eq!(error["filename"], file, "{error}");
    assert_eq!(error["tenant"], tenant, "{error}");
    assert_eq!(error["line"], json!(line), "line of {error}");
    assert_eq!(error["column"], json!(column), "column of {error}");
    let message = str_of(&error["message"]);
    for fragment in fragments {
        assert!(message.contains(fragment), "`{fragment}` not in: {message}");
    }
    assert_eq!(dag_ids(home), ["good", "good_a"]);

    // The table form shows the same place.
    let table = home.ok(&["dags", "list-import-errors"]).stdout;
    assert!(table.contains(file), "{table}");
}

/// `dags reserialize` records every DAG it can load and counts the files it cannot.
#[test]
fn reserialize_records_the_folder_and_counts_what_failed() {
    let home = Home::new();
    write_good_dags(&home);
    home.write_dag("broken.yaml", "dag_id: broken\ntasks: [\n");
    let counts = home.json(&["dags", "reserialize"]);
    assert_eq!(counts["dags"], 2, "{counts}");
    assert_eq!(counts["import_errors"], 1, "{counts}");
    assert_eq!(dag_ids(&home), ["good", "good_a"]);
    let errors = import_errors(&home);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().contains("broken.yaml"), "{errors:?}");
}

#[test]
fn import_error_bad_yaml_syntax() {
    assert_import_error(
        &Home::new(),
        "syntax.yaml",
        b"dag_id: syntax\ntasks:\n  - task_id: [oops\n",
        Some(3),
        Some(14),
        &["invalid YAML", "unclosed bracket"],
    );
}

#[test]
fn import_error_unknown_key_suggests_the_right_one() {
    assert_import_error(
        &Home::new(),
        "typo.yaml",
        b"dag_id: typo\ntasks:\n  - task_id: t\n    bash: echo\n    retires: 3\n",
        Some(5),
        Some(5),
        &[
            "unknown key `retires`",
            "task `t`",
            "did you mean `retries`?",
        ],
    );
}

#[test]
fn import_error_bad_cron_names_the_field() {
    assert_import_error(
        &Home::new(),
        "cron.yaml",
        b"dag_id: cron\nschedule: \"61 * * * *\"\nstart_date: 2024-01-01\ntasks: []\n",
        Some(2),
        Some(11),
        &["invalid cron expression `61 * * * *`", "minute field `61`"],
    );
}

#[test]
fn import_error_unknown_timezone_suggests_the_closest() {
    assert_import_error(
        &Home::new(),
        "team_a/tz.yaml",
        b"dag_id: tz\ntimezone: Europe/Pariss\ntasks: []\n",
        Some(2),
        Some(11),
        &[
            "unknown time zone `Europe/Pariss`",
            "did you mean `Europe/Paris`?",
        ],
    );
}

#[test]
fn import_error_cycle_names_its_tasks() {
    let yaml = "dag_id: cyc\ntasks:\n  - task_id: a\n    bash: echo\n    upstream: c\n  \
                - task_id: b\n    bash: echo\n    upstream: a\n  \
                - task_id: c\n    bash: echo\n    upstream: b\n";
    assert_import_error(
        &Home::new(),
        "cycle.yaml",
        yaml.as_bytes(),
        Some(5),
        Some(15),
        &["the tasks form a cycle: a -> b -> c -> a"],
    );
}

#[test]
fn import_error_duplicate_task_id() {
    assert_import_error(
        &Home::new(),
        "dup.yaml",
        b"dag_id: dup\ntasks:\n  - task_id: a\n    bash: echo\n  - task_id: a\n    bash: echo\n",
        Some(5),
        Some(14),
        &["duplicate task_id `a`", "first defined at line 3"],
    );
}

#[test]
fn import_error_missing_upstream() {
    assert_import_error(
        &Home::new(),
        "team_b/deep/miss.yaml",
        b"dag_id: miss\ntasks:\n  - task_id: a\n    bash: echo\n    upstream: [nope]\n",
        Some(5),
        Some(16),
        &["upstream task `nope` of task `a` does not exist"],
    );
}

#[test]
fn import_error_bad_identifier() {
    assert_import_error(
        &Home::new(),
        "ident.yaml",
        b"dag_id: \"bad id!\"\ntasks: []\n",
        Some(1),
        Some(9),
        &["dag_id", "bad id!", "only ASCII letters, digits"],
    );
}

#[test]
fn import_error_not_utf8() {
    assert_import_error(
        &Home::new(),
        "latin1.yaml",
        b"dag_id: latin1\ndescription: caf\xe9\ntasks: []\n",
        None,
        None,
        &["not valid UTF-8", "offset 31"],
    );
}

#[test]
fn import_error_file_over_the_size_limit() {
    let home = Home::new().with_env("UPDRAFT__CORE__MAX_DAG_FILE_SIZE", "300");
    let mut big = one_task_dag("big", "echo big");
    while big.len() <= 1000 {
        big.push_str("# padding padding padding padding padding padding padding\n");
    }
    let size = big.len().to_string();
    assert_import_error(
        &home,
        "big.yaml",
        big.as_bytes(),
        None,
        None,
        &[&size, "over the 300-byte limit"],
    );
}

#[test]
fn import_error_duplicate_dag_id_across_tenants_names_only_the_claiming_file() {
    let home = Home::new();
    write_good_dags(&home);
    home.write_dag("team_a/same.yaml", &one_task_dag("same", "echo a"));
    home.write_dag("team_b/same.yaml", &one_task_dag("same", "echo b"));

    let errors = import_errors(&home);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let error = &errors[0];
    assert_eq!(error["filename"], "team_b/same.yaml");
    assert_eq!(error["tenant"], "team_b");
    assert_eq!(error["line"], 1);
    assert_eq!(error["column"], 9);
    let message = str_of(&error["message"]);
    assert!(message.contains("dag_id `same`"), "{message}");
    assert!(message.contains("team_b/same.yaml"), "{message}");
    // Another tenant learns neither who owns the dag_id nor from which file.
    assert!(!message.contains("team_a"), "{message}");

    // The file that sorts first keeps the dag_id.
    let by_id = listed(&home);
    assert_eq!(by_id.keys().collect::<Vec<_>>(), ["good", "good_a", "same"]);
    assert_eq!(by_id["same"]["tenant"], "team_a");
    assert_eq!(by_id["same"]["fileloc"], "team_a/same.yaml");
}

// ---- 3. a DAG whose file breaks after it ran --------------------------------------------------

/// As in Airflow, a file that fails to parse keeps its DAG on its last good version (listed,
/// triggerable, its import error shown); only deleting the file deactivates the DAG, whose
/// history and paused flag survive until the file comes back.
#[test]
fn broken_file_keeps_its_dag_and_deleted_file_deactivates_it_keeping_history() {
    let home = Home::new();
    home.write_dag("keeper.yaml", &one_task_dag("keeper", "echo keeper"));
    home.write_dag("flaky.yaml", &daily_dag("flaky"));
    home.ok(&[
        "dags",
        "backfill",
        "flaky",
        "-s",
        "2024-01-01",
        "-e",
        "2024-01-01",
    ]);
    let runs = home.runs("flaky");
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run_id = str_of(&runs[0]["run_id"]);
    assert_eq!(runs[0]["state"], "success");
    // Unpaused by the test home's default; pausing makes the flag worth keeping.
    assert_eq!(listed(&home)["flaky"]["is_paused"], false);
    home.ok(&["dags", "pause", "flaky"]);
    let version = str_of(&listed(&home)["flaky"]["version"]);

    home.write_dag("flaky.yaml", "dag_id: flaky\nschedule: [\"@daily\"\n");
    let by_id = listed(&home);
    assert!(
        by_id.contains_key("flaky"),
        "broken, still listed: {by_id:?}"
    );
    assert_eq!(
        str_of(&by_id["flaky"]["version"]),
        version,
        "last good version"
    );
    assert!(by_id.contains_key("keeper"));
    let errors = import_errors(&home);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["filename"], "flaky.yaml");
    assert_eq!(errors[0]["line"], 2, "{}", errors[0]);
    home.ok(&["dags", "trigger", "flaky", "--run-id", "while_broken"]);

    home.remove_dag("flaky.yaml");
    let by_id = listed(&home);
    assert!(
        !by_id.contains_key("flaky"),
        "inactive DAG listed: {by_id:?}"
    );
    assert!(import_errors(&home).is_empty());
    // History is kept and readable.
    let runs = home.runs("flaky");
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().any(|r| r["run_id"] == run_id.as_str()));
    assert_eq!(
        home.ok(&["dags", "state", "flaky", &run_id]).stdout.trim(),
        "success"
    );
    assert!(task_log(&home, "flaky", &run_id, "t").contains("ran flaky for 2024-01-01"));
    // But it cannot get new runs.
    let refused = home.fails(&["dags", "trigger", "flaky"]);
    assert!(refused.stderr.contains("not active"), "{refused}");
    assert!(refused.stderr.contains("flaky.yaml"), "{refused}");

    home.write_dag("flaky.yaml", &daily_dag("flaky"));
    let by_id = listed(&home);
    assert_eq!(by_id["flaky"]["is_paused"], true, "{}", by_id["flaky"]);
    assert!(import_errors(&home).is_empty());
    assert_eq!(home.runs("flaky").len(), 2);
}

// ---- 4. dags test -----------------------------------------------------------------------------

#[test]
fn dags_test_reports_every_task_and_leaves_the_database_alone() {
    let home = Home::new();
    home.write_dag(
        "pipeline.yaml",
        "dag_id: pipeline\ntasks:\n  - task_id: first\n    bash: echo \"first for {{ ds }}\"\n  \
         - task_id: second\n    upstream: first\n    bash: echo \"second for {{ ds_nodash }}\"\n",
    );
    home.write_dag(
        "doomed.yaml",
        "dag_id: doomed\ntasks:\n  - task_id: breaks\n    bash: echo \"breaking now\"; exit 3\n  \
         - task_id: after\n    upstream: breaks\n    bash: echo never\n",
    );

    // Before any other command: no database is created.
    let ok = home.ok(&["dags", "test", "pipeline", "2024-02-03"]);
    assert!(
        database_files(&home).is_empty(),
        "dags test created a database"
    );
    assert!(
        !logs_dir(&home).exists(),
        "dags test wrote into the logs folder"
    );
    let out = &ok.stdout;
    for needle in [
        "--- first try 1 (success)",
        "first for 2024-02-03",
        "--- second try 1 (success)",
        "second for 20240203",
        "Run manual__2024-02-03T00:00:00+00:00 of pipeline: success",
    ] {
        assert!(out.contains(needle), "`{needle}` not in:\n{ok}");
    }
    assert!(
        out.find("first for").unwrap() < out.find("second for").unwrap(),
        "{ok}"
    );

    // With a database in place, it is left byte for byte as it was.
    assert!(home.runs("pipeline").is_empty());
    let before = database_files(&home);
    assert!(!before.is_empty());
    let failed = home.run(&["dags", "test", "doomed", "2024-02-03"]);
    assert_eq!(failed.code(), Some(1), "{failed}");
    for needle in [
        "--- breaks try 1 (failed)",
        "breaking now",
        "exit code 3",
        "upstream_failed",
        "Run manual__2024-02-03T00:00:00+00:00 of doomed: failed",
    ] {
        assert!(
            failed.stdout.contains(needle),
            "`{needle}` not in:\n{failed}"
        );
    }
    assert!(!failed.stdout.contains("never"), "{failed}");
    home.ok(&["dags", "test", "pipeline"]);
    assert!(
        database_files(&home) == before,
        "dags test changed the database"
    );
    assert!(home.runs("pipeline").is_empty());
    assert!(home.runs("doomed").is_empty());

    let missing = home.fails(&["dags", "test", "ghost"]);
    assert!(
        missing.stderr.contains("DAG `ghost` not found"),
        "{missing}"
    );
}

#[test]
fn dags_test_is_not_held_back_by_pools() {
    let home = Home::new();
    home.write_dag(
        "pooled.yaml",
        "dag_id: pooled\ndefault_args: {pool: team_pool, pool_slots: 2}\ntasks:\n  \
         - task_id: one\n    bash: echo one\n  - task_id: two\n    bash: echo two\n  \
         - task_id: three\n    upstream: [one, two]\n    pool: default_pool\n    bash: echo three\n",
    );
    // `team_pool` exists nowhere; a test run ignores pools, as Airflow's does.
    let result = run_within(
        &home,
        &["dags", "test", "pooled", "2024-01-01"],
        DEFAULT_TIMEOUT,
    );
    assert_eq!(result.code(), Some(0), "{result}");
    assert!(result.stdout.contains("of pooled: success"), "{result}");
    assert!(database_files(&home).is_empty());
}

// ---- 5. tasks test ----------------------------------------------------------------------------

#[test]
fn tasks_test_runs_one_task_with_its_date_and_leaves_the_database_alone() {
    let home = Home::new();
    home.write_dag(
        "single.yaml",
        "dag_id: single\ntasks:\n  - task_id: prepare\n    bash: exit 3\n  \
         - task_id: report\n    upstream: prepare\n    \
         command: [\"echo\", \"report for {{ ds }} of\", \"{{ dag_run.run_id }}\"]\n",
    );
    // `command` elements are templates; the upstream task's failure does not matter.
    let ok = home.ok(&["tasks", "test", "single", "report", "2024-05-06"]);
    assert!(
        ok.stdout
            .contains("report for 2024-05-06 of manual__2024-05-06T00:00:00+00:00"),
        "{ok}"
    );
    assert!(ok.stdout.contains("Task report: success"), "{ok}");

    let failed = home.run(&["tasks", "test", "single", "prepare", "2024-05-06"]);
    assert_eq!(failed.code(), Some(1), "{failed}");
    assert!(
        failed.stdout.contains("Task prepare: failed: exit code 3"),
        "{failed}"
    );

    assert!(
        database_files(&home).is_empty(),
        "tasks test opened the database"
    );
    assert!(
        !logs_dir(&home).exists(),
        "tasks test wrote into the logs folder"
    );
    assert!(home.runs("single").is_empty());

    let unknown = home.fails(&["tasks", "test", "single", "nope"]);
    assert!(
        unknown.stderr.contains("DAG `single` has no task `nope`"),
        "{unknown}"
    );
    let ghost = home.fails(&["tasks", "test", "ghost", "t"]);
    assert!(ghost.stderr.contains("DAG `ghost` not found"), "{ghost}");
}

// ---- 6. listings and lookups ------------------------------------------------------------------

const DIAMOND: &str = "dag_id: diamond
schedule: \"@daily\"
start_date: 2024-01-01
tasks:
  - task_id: a
    bash: echo \"a for {{ ds }}\"
  - task_id: b
    upstream: a
    bash: echo b
  - task_id: c
    upstream: a
    trigger_rule: all_done
    bash: echo c
  - task_id: d
    upstream: [b, c]
    bash: echo d
";

#[test]
fn task_listing_graph_run_state_and_missing_runs() {
    let home = Home::new();
    home.write_dag("diamond.yaml", DIAMOND);

    let tasks = as_array(home.json(&["tasks", "list", "diamond"]));
    let ids: Vec<String> = tasks.iter().map(|t| str_of(&t["task_id"])).collect();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[0], "a");
    assert_eq!(ids[3], "d");
    assert_eq!(tasks[3]["upstream"], json!(["b", "c"]));
    let c = tasks.iter().find(|t| t["task_id"] == "c").unwrap();
    assert_eq!(c["trigger_rule"], "all_done", "{c}");
    let table = home.ok(&["tasks", "list", "diamond"]).stdout;
    assert_eq!(table.lines().collect::<Vec<_>>(), ids);

    let dot = home.ok(&["dags", "show", "diamond"]).stdout;
    assert!(dot.starts_with("digraph \"diamond\""), "{dot}");
    for edge in [
        "\"a\" -> \"b\"",
        "\"a\" -> \"c\"",
        "\"b\" -> \"d\"",
        "\"c\" -> \"d\"",
    ] {
        assert!(dot.contains(edge), "{edge} not in:\n{dot}");
    }
    assert_eq!(dot.matches("->").count(), 4, "{dot}");

    home.ok(&[
        "dags",
        "backfill",
        "diamond",
        "-s",
        "2024-01-01",
        "-e",
        "2024-01-02",
    ]);
    home.trigger("diamond", None);
    let runs = home.runs("diamond");
    assert_eq!(runs.len(), 3, "{runs:?}");
    let backfill_run = "backfill__2024-01-01T00:00:00+00:00";

    // `dags state` by run id and by logical date.
    assert_eq!(
        home.ok(&["dags", "state", "diamond", backfill_run])
            .stdout
            .trim(),
        "success"
    );
    assert_eq!(
        home.ok(&["dags", "state", "diamond", "2024-01-02"])
            .stdout
            .trim(),
        "success"
    );
    let state = home.json(&["dags", "state", "diamond", backfill_run]);
    assert_eq!(state["run_id"], backfill_run);
    assert_eq!(state["state"], "success");

    // `dags list-runs --state`.
    let by_state = |state: &str| -> Vec<Value> {
        as_array(home.json(&["dags", "list-runs", "diamond", "--state", state]))
    };
    let success = by_state("success");
    assert_eq!(success.len(), 2, "{success:?}");
    assert!(success.iter().all(|r| r["run_type"] == "backfill"));
    let queued = by_state("queued");
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0]["run_type"], "manual");
    assert!(by_state("failed").is_empty());
    let bad_state = home.fails(&["dags", "list-runs", "diamond", "--state", "bogus"]);
    assert_eq!(bad_state.code(), Some(1));
    assert!(
        bad_state.stderr.contains("unknown state `bogus`"),
        "{bad_state}"
    );
    assert!(bad_state.stderr.contains("success"), "{bad_state}");

    // `tasks states-for-dag-run`.
    let states = home.task_instances("diamond", backfill_run);
    assert_eq!(states.keys().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
    for (task, ti) in &states {
        assert_eq!(ti["state"], "success", "{task}: {ti}");
        assert_eq!(ti["try_number"], 1, "{task}: {ti}");
    }
    let manual_run = str_of(&queued[0]["run_id"]);
    let fresh = home.task_states("diamond", &manual_run);
    assert!(fresh.values().all(|s| s == "none"), "{fresh:?}");

    // Logs: present, not yet written, or for a run that does not exist.
    assert!(task_log(&home, "diamond", backfill_run, "a").contains("a for 2024-01-01"));
    let not_yet = home.fails(&["tasks", "logs", "diamond", &manual_run, "a"]);
    assert!(not_yet.stderr.contains("has not run yet"), "{not_yet}");
    let missing = home.fails(&["tasks", "logs", "diamond", "no_such_run", "a"]);
    assert_eq!(missing.code(), Some(1));
    assert!(
        missing
            .stderr
            .contains("no run `no_such_run` of DAG `diamond`"),
        "{missing}"
    );
    let no_task = home.fails(&["tasks", "logs", "diamond", backfill_run, "zz"]);
    assert!(no_task.stderr.contains("no task `zz`"), "{no_task}");
    let missing_state = home.fails(&["dags", "state", "diamond", "2030-01-01"]);
    assert!(
        missing_state.stderr.contains("no run `2030-01-01`"),
        "{missing_state}"
    );
    let missing_states = home.fails(&["tasks", "states-for-dag-run", "diamond", "nope"]);
    assert!(
        missing_states.stderr.contains("no run `nope`"),
        "{missing_states}"
    );

    // Unknown DAGs are errors, not empty listings, and are named as such.
    for args in [
        &["dags", "list-runs", "ghost"][..],
        &["dags", "show", "ghost"][..],
        &["tasks", "list", "ghost"][..],
        &["dags", "state", "ghost", "some_run"][..],
        &["tasks", "logs", "ghost", "some_run", "a"][..],
        &["tasks", "states-for-dag-run", "ghost", "some_run"][..],
    ] {
        let result = home.fails(args);
        assert_eq!(result.code(), Some(1), "{result}");
        assert!(
            result.stderr.contains("DAG `ghost` not found"),
            "{args:?}: {result}"
        );
    }
}

// ---- 7. paused at creation --------------------------------------------------------------------

const PAUSED_DEFAULT: &str = "UPDRAFT__CORE__DAGS_ARE_PAUSED_AT_CREATION";

#[test]
fn new_dags_are_paused_unless_the_dag_or_the_installation_says_otherwise() {
    // The installation's default (no override): paused, as in Airflow.
    let home = Home::new();
    home.write_dag("plain.yaml", &one_task_dag("plain", "echo"));
    home.write_dag(
        "eager.yaml",
        "dag_id: eager\nis_paused_upon_creation: false\ntasks: []\n",
    );
    let listing = run_without(&home, &[PAUSED_DEFAULT], &["-o", "json", "dags", "list"]);
    assert!(listing.success(), "{listing}");
    let by_id: BTreeMap<String, Value> = as_array(listing.json())
        .into_iter()
        .map(|d| (str_of(&d["dag_id"]), d))
        .collect();
    assert_eq!(by_id["plain"]["is_paused"], true);
    assert_eq!(by_id["eager"]["is_paused"], false);

    // The flag is decided once, when the DAG is first seen.
    let later = listed(&home.with_env(PAUSED_DEFAULT, "false"));
    assert_eq!(later["plain"]["is_paused"], true);

    // An installation that does not pause new DAGs; a DAG may still ask to be paused.
    let home = Home::new().with_env(PAUSED_DEFAULT, "false");
    home.write_dag("plain.yaml", &one_task_dag("plain", "echo"));
    home.write_dag(
        "shy.yaml",
        "dag_id: shy\nis_paused_upon_creation: true\ntasks: []\n",
    );
    let by_id = listed(&home);
    assert_eq!(by_id["plain"]["is_paused"], false);
    assert_eq!(by_id["shy"]["is_paused"], true);

    // pause / unpause flip it.
    let paused = home.ok(&["dags", "pause", "plain"]);
    assert!(paused.stdout.contains("paused: true"), "{paused}");
    assert_eq!(listed(&home)["plain"]["is_paused"], true);
    home.ok(&["dags", "unpause", "shy"]);
    home.ok(&["dags", "unpause", "plain"]);
    let by_id = listed(&home);
    assert_eq!(by_id["plain"]["is_paused"], false);
    assert_eq!(by_id["shy"]["is_paused"], false);

    for command in ["pause", "unpause"] {
        let unknown = home.fails(&["dags", command, "ghost"]);
        assert_eq!(unknown.code(), Some(1), "{unknown}");
        assert!(
            unknown.stderr.contains("DAG `ghost` not found"),
            "{unknown}"
        );
    }
}

// ---- 8. config show ---------------------------------------------------------------------------

#[test]
fn config_show_applies_overrides_and_masks_secrets_without_opening_the_database() {
    let home = Home::new()
        .with_env("UPDRAFT__CORE__PARALLELISM", "7")
        .with_env("UPDRAFT__SCHEDULER__POLL_INTERVAL", "250ms")
        .with_env(
            "UPDRAFT__DATABASE__URL",
            "postgres://app:hunter2@db.example:5432/updraft",
        );
    fs::write(
        home.path().join("updraft.toml"),
        "[logging]\nlevel = \"debug\"\n[core]\nparallelism = 3\n",
    )
    .unwrap();
    let shown = home.ok(&["config", "show"]);
    assert!(
        !shown.stdout.contains("hunter2"),
        "password shown:\n{shown}"
    );
    assert!(
        !shown.stderr.contains("hunter2"),
        "password shown:\n{shown}"
    );
    let config: toml::Table = shown.stdout.parse().expect("config show prints TOML");
    assert_eq!(
        config["core"]["parallelism"].as_integer(),
        Some(7),
        "env wins over the file"
    );
    assert_eq!(
        config["logging"]["level"].as_str(),
        Some("debug"),
        "the file is read"
    );
    assert_eq!(config["scheduler"]["poll_interval"].as_str(), Some("250ms"));
    assert_eq!(
        config["database"]["url"].as_str(),
        Some("postgres://app:***@db.example:5432/updraft")
    );
    assert!(
        database_files(&home).is_empty(),
        "config show opened a database"
    );

    // A secret from the file is masked too.
    let home = Home::new();
    fs::write(
        home.path().join("updraft.toml"),
        "[database]\nurl = \"postgresql://svc:s3cr3t@localhost/updraft\"\n",
    )
    .unwrap();
    let shown = home.ok(&["config", "show"]);
    assert!(!shown.stdout.contains("s3cr3t"), "{shown}");
    assert!(
        shown
            .stdout
            .contains("postgresql://svc:***@localhost/updraft"),
        "{shown}"
    );

    // Commands that cannot reach or do not know the database say so without echoing the
    // password.
    for (url, said) in [
        (
            "postgres://app:hunter2@db.invalid/updraft",
            "connecting to the database postgres://app:***@db.invalid/updraft",
        ),
        ("mysql://app:hunter2@db/updraft", "database.url"),
    ] {
        let home = Home::new()
            .with_env("UPDRAFT__DATABASE__URL", url)
            .with_env("UPDRAFT__DATABASE__ACQUIRE_TIMEOUT", "1s");
        let refused = home.fails(&["dags", "list"]);
        assert_eq!(refused.code(), Some(1), "{refused}");
        assert!(refused.stderr.contains(said), "{refused}");
        assert!(
            !refused.stderr.contains("hunter2"),
            "password shown:\n{refused}"
        );
    }
}

// ---- 9. configuration typos -------------------------------------------------------------------

#[test]
fn config_typos_name_the_file_line_and_key() {
    let home = Home::new();
    let file = home.path().join("updraft.toml");
    fs::write(
        &file,
        "[core]\nparallelism = 3\n\n[scheduler]\npoll_intervl = \"1s\"\n",
    )
    .unwrap();
    for args in [&["config", "show"][..], &["dags", "list"][..]] {
        let result = home.fails(args);
        assert_eq!(result.code(), Some(1), "{result}");
        let err = &result.stderr;
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains("line 5"), "{err}");
        assert!(err.contains("poll_intervl"), "{err}");
        assert!(
            err.contains("poll_interval"),
            "the valid keys are listed: {err}"
        );
    }
    assert!(database_files(&home).is_empty());

    // The same mistake in an environment variable names the variable.
    let home = Home::new().with_env("UPDRAFT__CORE__PARALELISM", "3");
    let result = home.fails(&["config", "show"]);
    assert_eq!(result.code(), Some(1), "{result}");
    assert!(
        result.stderr.contains("UPDRAFT__CORE__PARALELISM"),
        "{result}"
    );
    assert!(
        result.stderr.contains("unknown field `paralelism`"),
        "{result}"
    );
}

// ---- 10. JSON output and exit codes -----------------------------------------------------------

#[test]
fn json_output_parses_for_every_listing_and_exit_codes_follow_convention() {
    let home = Home::new();
    home.write_dag("diamond.yaml", DIAMOND);
    home.write_dag(
        "broken.yaml",
        "dag_id: broken\nschedule: 5 parsecs\ntasks: []\n",
    );
    home.ok(&[
        "dags",
        "backfill",
        "diamond",
        "-s",
        "2024-01-01",
        "-e",
        "2024-01-01",
    ]);
    let run_id = "backfill__2024-01-01T00:00:00+00:00";

    let expect_array = |args: &[&str], min_len: usize| {
        let value = home.json(args);
        let items = value
            .as_array()
            .unwrap_or_else(|| panic!("{args:?}: not an array: {value}"));
        assert!(items.len() >= min_len, "{args:?}: {value}");
        assert!(items.iter().all(Value::is_object), "{args:?}: {value}");
    };
    expect_array(&["dags", "list"], 1);
    expect_array(&["dags", "list-import-errors"], 1);
    expect_array(&["dags", "list-runs", "diamond"], 1);
    expect_array(&["dags", "list-runs", "diamond", "--state", "failed"], 0);
    expect_array(&["tasks", "list", "diamond"], 4);
    expect_array(&["tasks", "states-for-dag-run", "diamond", run_id], 4);
    expect_array(&["pools", "list"], 1);
    assert!(home.json(&["dags", "show", "diamond"]).is_object());
    assert!(home.json(&["dags", "state", "diamond", run_id]).is_object());
    assert!(home.json(&["dags", "trigger", "diamond"]).is_object());
    // The long spelling, and the option after the subcommand.
    let long = home.ok(&["dags", "list", "--output", "json"]);
    assert!(long.json().is_array(), "{long}");

    // An empty listing is an empty array, not a table message.
    let empty = Home::new();
    assert_eq!(empty.json(&["dags", "list"]), json!([]));
    assert_eq!(empty.json(&["dags", "list-import-errors"]), json!([]));

    // 0 success, 1 failure, 2 usage error.
    assert_eq!(home.run(&["dags", "list"]).code(), Some(0));
    assert_eq!(home.run(&["--version"]).code(), Some(0));
    assert_eq!(
        home.run(&["dags", "state", "diamond", "no_such_run"])
            .code(),
        Some(1)
    );
    assert_eq!(
        home.run(&["dags", "trigger", "diamond", "--conf", "[1]"])
            .code(),
        Some(1)
    );
    for usage in [
        &[][..],
        &["dags"][..],
        &["no-such-command"][..],
        &["dags", "list", "--bogus"][..],
        &["-o", "xml", "dags", "list"][..],
        &["dags", "trigger"][..],
        &["dags", "list-runs", "diamond", "--limit", "many"][..],
    ] {
        let result = home.run(usage);
        assert_eq!(result.code(), Some(2), "{usage:?}:\n{result}");
        assert!(!result.stderr.is_empty(), "{usage:?}: no message");
    }
}

// ---- 11. standalone with the example DAGs -----------------------------------------------------

#[test]
fn standalone_offers_the_examples_which_all_load_and_stops_cleanly_on_sigterm() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/dags");
    let example_files = yaml_files(&examples);
    assert!(!example_files.is_empty());

    let home = Home::new()
        .with_env("UPDRAFT__CORE__LOAD_EXAMPLES", "true")
        .with_env(PAUSED_DEFAULT, "true");
    let mut standalone = home.start_standalone();
    let dags = wait_until("the example DAGs to load", DEFAULT_TIMEOUT, || {
        let dags = home.dags_list();
        (dags.len() == example_files.len() && import_errors(&home).is_empty()).then_some(dags)
    });
    assert_eq!(yaml_files(&home.dags()), example_files);
    for file in &example_files {
        let written = fs::read_to_string(home.dags().join(file)).unwrap();
        assert_eq!(
            written,
            fs::read_to_string(examples.join(file)).unwrap(),
            "{file}"
        );
    }
    for dag in &dags {
        let fileloc = str_of(&dag["fileloc"]);
        let tenant = fileloc.split_once('/').map_or("default", |(t, _)| t);
        assert_eq!(dag["tenant"], tenant, "{dag}");
        // Paused at creation (the default here) unless the example says otherwise.
        let text = fs::read_to_string(examples.join(&fileloc)).unwrap();
        let eager = text.contains("is_paused_upon_creation: false");
        assert_eq!(dag["is_paused"], !eager, "{dag}");
    }

    wait_until("standalone to run its scheduler", DEFAULT_TIMEOUT, || {
        standalone
            .output()
            .contains("scheduler running")
            .then_some(())
    });
    standalone.terminate();
    let status = standalone.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "output:\n{}", standalone.output());
    assert!(
        standalone
            .output()
            .contains(&format!("wrote {} example DAGs", example_files.len())),
        "{}",
        standalone.output()
    );

    // A folder that already holds DAGs is left alone.
    let home = Home::new().with_env("UPDRAFT__CORE__LOAD_EXAMPLES", "true");
    home.write_dag("mine.yaml", &one_task_dag("mine", "echo"));
    let mut standalone = home.start_standalone();
    wait_until("standalone to start", DEFAULT_TIMEOUT, || {
        standalone
            .output()
            .contains("scheduler running")
            .then_some(())
    });
    standalone.terminate();
    let status = standalone.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "output:\n{}", standalone.output());
    assert_eq!(yaml_files(&home.dags()), ["mine.yaml"]);
}

// ---- 12. migrations ---------------------------------------------------------------------------

#[test]
fn db_migrate_twice_is_harmless() {
    let home = Home::new();
    let first = home.ok(&["db", "migrate"]);
    assert!(first.stdout.contains("Database migrated"), "{first}");
    assert!(home.path().join("updraft.db").exists());
    home.ok(&["pools", "set", "kept_pool", "3", "survives migrations"]);
    let second = home.ok(&["db", "migrate"]);
    assert!(second.stdout.contains("Database migrated"), "{second}");
    let pools = as_array(home.json(&["pools", "list"]));
    let names: Vec<String> = pools.iter().map(|p| str_of(&p["pool"])).collect();
    assert_eq!(names, ["default_pool", "kept_pool"], "{pools:?}");
    assert_eq!(pools[1]["slots"], 3);
}

/// `db clean` (Airflow's): a dry run counts and keeps everything; the real clean deletes old
/// finished runs with their task instances and tries, keeps the DAG's latest backfill run (the
/// timetable continues from it) and unfinished runs; exactly one cutoff option is accepted.
#[test]
fn db_clean_deletes_old_runs_but_keeps_the_latest_scheduled_one() {
    let home = Home::new();
    home.write_dag("daily.yaml", &daily_dag("daily"));
    home.ok(&[
        "dags",
        "backfill",
        "daily",
        "-s",
        "2024-01-01",
        "-e",
        "2024-01-03",
    ]);
    let manual = home.trigger("daily", None);
    let run_ids = |home: &Home| -> Vec<String> {
        let mut ids: Vec<String> = home
            .runs("daily")
            .iter()
            .map(|r| str_of(&r["run_id"]))
            .collect();
        ids.sort();
        ids
    };
    let before = run_ids(&home);
    assert_eq!(before.len(), 4, "{before:?}");
    let latest = "backfill__2024-01-03T00:00:00+00:00";

    let future = "2999-01-01";
    let dry = home.json(&[
        "db",
        "clean",
        "--clean-before-timestamp",
        future,
        "--dry-run",
    ]);
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(dry["before"], "2999-01-01T00:00:00.000000Z", "{dry}");
    assert_eq!(
        (&dry["runs"], &dry["task_instances"], &dry["tries"]),
        (&json!(2), &json!(2), &json!(2)),
        "{dry}"
    );
    assert_eq!(run_ids(&home), before);

    let done = home.json(&["db", "clean", "--clean-before-timestamp", future]);
    assert_eq!(done["dry_run"], false, "{done}");
    for count in [
        "runs",
        "task_instances",
        "tries",
        "run_changes",
        "scheduler_jobs",
        "dag_versions",
    ] {
        assert_eq!(done[count], dry[count], "{count}: {done} vs {dry}");
    }
    let mut kept = vec![latest.to_string(), manual.clone()];
    kept.sort();
    assert_eq!(run_ids(&home), kept);
    assert_eq!(home.run_state("daily", latest), "success");
    assert_eq!(home.task_states("daily", latest)["t"], "success");
    assert!(
        home.logs("daily", latest, "t", None)
            .contains("ran daily for 2024-01-03")
    );

    // Nothing left to delete; the table output names each count.
    let table = home.ok(&["db", "clean", "--older-than", "30d"]).stdout;
    assert!(
        table.starts_with("Deleted (history that ended before "),
        "{table}"
    );
    assert!(table.contains("runs: 0"), "{table}");

    let neither = home.fails(&["db", "clean"]);
    assert!(neither.stderr.contains("--older-than"), "{neither}");
    let both = home.fails(&[
        "db",
        "clean",
        "--older-than",
        "30d",
        "--clean-before-timestamp",
        future,
    ]);
    assert!(both.stderr.contains("cannot be used with"), "{both}");
    let bad = home.fails(&["db", "clean", "--clean-before-timestamp", "soon"]);
    assert!(bad.stderr.contains("is not a date"), "{bad}");
    assert_eq!(run_ids(&home), kept);
}

/// With authentication turned off the web server only listens on loopback: a public address is
/// refused by `server` and by `standalone` (before its scheduler starts), with a message that
/// names the setting.
#[test]
fn a_non_loopback_address_is_refused_without_authentication() {
    let mut home = Home::new();
    home.set_env("UPDRAFT__API__HOST", "0.0.0.0");
    home.set_env("UPDRAFT__AUTH__ENABLED", "false");
    for command in ["server", "standalone"] {
        let result = home.fails(&[command]);
        assert_eq!(result.status.code(), Some(1), "{result}");
        assert!(
            result.stderr.contains("refusing to serve on 0.0.0.0")
                && result.stderr.contains("auth.enabled = false")
                && result.stderr.contains("127.0.0.1"),
            "{result}"
        );
    }
}
