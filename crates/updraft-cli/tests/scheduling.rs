//! Scheduling behaviour of the `updraft` binary, end to end: DAG files in a temporary
//! `UPDRAFT_HOME`, a real `updraft scheduler` process, and assertions on what the CLI reports
//! (`-o json`), on the tries' logs and on files the tasks write.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use chrono::{Duration as ChronoDuration, NaiveDate, Utc};
use common::{DEFAULT_TIMEOUT, Home, process_alive, read_stamps, stamp, str_of, wait_until};
use serde_json::Value;

/// `[(task_id, state)]` as a map, for comparing with `Home::task_states`.
fn states(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(t, s)| (t.to_string(), s.to_string()))
        .collect()
}

/// Indent every line of `script` by `n` spaces, for a YAML block scalar.
fn indent(script: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    script
        .lines()
        .map(|l| format!("{pad}{l}\n"))
        .collect::<String>()
}

/// A shell loop that waits (at most 60 s) for `file` to exist.
fn wait_for_file_sh(file: &Path) -> String {
    format!(
        "for i in $(seq 600); do [ -e '{}' ] && break; sleep 0.1; done",
        file.display()
    )
}

/// (start, end) pairs from stamp lines labelled `start <id>` / `end <id>`, keyed by id.
fn intervals(file: &Path) -> BTreeMap<String, (f64, f64)> {
    let mut starts = BTreeMap::new();
    let mut ends = BTreeMap::new();
    for (t, label) in read_stamps(file) {
        let (kind, id) = label.split_once(' ').expect("stamp label is `<kind> <id>`");
        match kind {
            "start" => assert!(
                starts.insert(id.to_string(), t).is_none(),
                "{id} started twice"
            ),
            "end" => assert!(ends.insert(id.to_string(), t).is_none(), "{id} ended twice"),
            other => panic!("unexpected stamp {other}"),
        }
    }
    starts
        .into_iter()
        .map(|(id, s)| {
            let e = *ends
                .get(&id)
                .unwrap_or_else(|| panic!("{id} has no end stamp"));
            (id, (s, e))
        })
        .collect()
}

/// Panics if any two intervals overlap.
fn assert_no_overlap(intervals: &BTreeMap<String, (f64, f64)>) {
    let mut sorted: Vec<(&String, &(f64, f64))> = intervals.iter().collect();
    sorted.sort_by(|a, b| a.1.0.total_cmp(&b.1.0));
    for pair in sorted.windows(2) {
        let (a, (_, a_end)) = pair[0];
        let (b, (b_start, _)) = pair[1];
        assert!(
            b_start >= a_end,
            "{b} started at {b_start:.3} before {a} ended at {a_end:.3}: {intervals:?}"
        );
    }
}

/// A task body that stamps `start <id>`, sleeps a little, and stamps `end <id>`.
fn timed_body(file: &Path, id: &str) -> String {
    format!(
        "{}\nsleep 0.4\n{}\n",
        stamp(file, &format!("start {id}")),
        stamp(file, &format!("end {id}"))
    )
}

// ---- 1. trigger with conf ------------------------------------------------------------------

#[test]
fn trigger_with_conf_renders_conf_params_ds_and_env() {
    let home = Home::new();
    home.write_dag(
        "render.yaml",
        r#"
dag_id: render
params:
  p: {default: the-default, type: string}
tasks:
  - task_id: show
    bash: |
      echo "conf_x={{ dag_run.conf.x }} param_p={{ params.p }} ds={{ ds }} run_id=$UPDRAFT_RUN_ID"
"#,
    );
    let run = home.json(&[
        "dags",
        "trigger",
        "render",
        "--conf",
        r#"{"x": "from-conf", "p": "param-from-conf"}"#,
        "--logical-date",
        "2024-03-05T10:00:00",
    ]);
    let run_id = str_of(&run["run_id"]);
    assert_eq!(run["state"], "queued");
    // Templates are strict (an undefined name fails the try), so this run sets `x` too.
    let default_run = home.trigger("render", Some(r#"{"x": 2}"#));

    let _scheduler = home.start_scheduler();
    assert_eq!(home.wait_run_finished("render", &run_id), "success");
    assert_eq!(home.wait_run_finished("render", &default_run), "success");

    let log = home.logs("render", &run_id, "show", None);
    let expected =
        format!("conf_x=from-conf param_p=param-from-conf ds=2024-03-05 run_id={run_id}");
    assert!(
        log.contains(&expected),
        "expected `{expected}` in the log:\n{log}"
    );

    let log = home.logs("render", &default_run, "show", None);
    assert!(
        log.contains("conf_x=2 param_p=the-default")
            && log.contains(&format!("run_id={default_run}")),
        "the default param and run id are not in the log:\n{log}"
    );
    let row = home.run_row("render", &run_id);
    assert_eq!(row["run_type"], "manual");
    assert_eq!(row["conf"]["x"], "from-conf");
}

// ---- 2. params validation ------------------------------------------------------------------

#[test]
fn trigger_with_invalid_params_is_refused_and_creates_no_run() {
    let home = Home::new();
    home.write_dag(
        "validated.yaml",
        r#"
dag_id: validated
params:
  limit: {default: 10, type: integer, minimum: 1, maximum: 100}
  mode: {default: fast, enum: [fast, slow]}
tasks:
  - task_id: t
    bash: "true"
"#,
    );
    let refused = home.fails(&[
        "dags",
        "trigger",
        "validated",
        "--conf",
        r#"{"limit": "ten"}"#,
    ]);
    assert!(
        refused.stderr.contains("limit") && refused.stderr.contains("integer"),
        "the message should name the param and its type:\n{refused}"
    );
    let refused = home.fails(&[
        "dags",
        "trigger",
        "validated",
        "--conf",
        r#"{"mode": "medium"}"#,
    ]);
    assert!(
        refused.stderr.contains("mode") && refused.stderr.contains("fast"),
        "the message should name the param and the allowed values:\n{refused}"
    );
    let refused = home.fails(&[
        "dags",
        "trigger",
        "validated",
        "--conf",
        r#"{"limit": 1000}"#,
    ]);
    assert!(refused.stderr.contains("limit"), "{refused}");
    let refused = home.fails(&["dags", "trigger", "validated", "--conf", "not json"]);
    assert!(refused.stderr.contains("JSON"), "{refused}");
    assert!(
        home.runs("validated").is_empty(),
        "a refused trigger created a run"
    );

    // A valid conf is accepted (the refusals above were about the values).
    home.trigger("validated", Some(r#"{"limit": 5, "mode": "slow"}"#));
    assert_eq!(home.runs("validated").len(), 1);
}

// ---- 3. retries ----------------------------------------------------------------------------

#[test]
fn a_failed_try_is_retried_after_retry_delay() {
    let home = Home::new();
    let work = home.work();
    let counter = work.join("counter");
    let stamps = work.join("stamps");
    let script = format!(
        r#"n=$(cat '{counter}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{counter}'
{start}
if [ "$n" -eq 1 ]; then echo "failing on try $n"; {end1}; exit 1; fi
echo "succeeding on try $n"
"#,
        counter = counter.display(),
        start = stamp(&stamps, "start $n"),
        end1 = stamp(&stamps, "end 1"),
    );
    home.write_dag(
        "flaky.yaml",
        &format!(
            "dag_id: flaky\ntasks:\n  - task_id: flaky\n    retries: 1\n    retry_delay: 1s\n    bash: |\n{}",
            indent(&script, 6)
        ),
    );
    let _scheduler = home.start_scheduler();
    let run_id = home.trigger("flaky", None);
    assert_eq!(home.wait_run_finished("flaky", &run_id), "success");

    let ti = &home.task_instances("flaky", &run_id)["flaky"];
    assert_eq!(ti["state"], "success");
    assert_eq!(ti["try_number"], 2);
    let try1 = home.logs("flaky", &run_id, "flaky", Some(1));
    assert!(try1.contains("failing on try 1"), "try 1 log:\n{try1}");
    let try2 = home.logs("flaky", &run_id, "flaky", Some(2));
    assert!(try2.contains("succeeding on try 2"), "try 2 log:\n{try2}");
    assert_eq!(home.logs("flaky", &run_id, "flaky", None), try2);

    let stamps = read_stamps(&stamps);
    let at = |label: &str| {
        stamps
            .iter()
            .find(|(_, l)| l == label)
            .unwrap_or_else(|| panic!("no `{label}` stamp in {stamps:?}"))
            .0
    };
    let gap = at("start 2") - at("end 1");
    assert!(
        gap >= 1.0,
        "try 2 started {gap:.3}s after try 1 ended; retry_delay is 1s"
    );
}

// ---- 4. execution_timeout ------------------------------------------------------------------

#[test]
fn execution_timeout_fails_the_try_and_kills_its_process_group() {
    let home = Home::new();
    let work = home.work();
    let pids = work.join("pids");
    let script = format!(
        r#"echo "shell $$" >> '{pids}'
bash -c 'sleep 30 & echo "grandchild $!" >> "{pids}"; wait' &
echo "child $!" >> '{pids}'
sleep 30
"#,
        pids = pids.display()
    );
    home.write_dag(
        "slow.yaml",
        &format!(
            "dag_id: slow\ntasks:\n  - task_id: slow\n    execution_timeout: 3s\n    bash: |\n{}",
            indent(&script, 6)
        ),
    );
    let _scheduler = home.start_scheduler();
    let run_id = home.trigger("slow", None);
    assert_eq!(home.wait_run_finished("slow", &run_id), "failed");
    let ti = &home.task_instances("slow", &run_id)["slow"];
    assert_eq!(ti["state"], "failed");
    assert_eq!(ti["try_number"], 1);
    let log = home.logs("slow", &run_id, "slow", None);
    assert!(log.contains("execution_timeout"), "log:\n{log}");

    let recorded: Vec<(String, i32)> = fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| {
            let (what, pid) = l.split_once(' ').unwrap();
            (what.to_string(), pid.trim().parse().unwrap())
        })
        .collect();
    assert_eq!(recorded.len(), 3, "pids recorded: {recorded:?}");
    for (what, pid) in &recorded {
        wait_until(
            &format!("{what} {pid} to be gone"),
            Duration::from_secs(10),
            || (!process_alive(*pid)).then_some(()),
        );
    }
}

// ---- 5. skip and trigger rules -------------------------------------------------------------

#[test]
fn exit_code_99_skips_and_trigger_rules_follow_airflow() {
    let home = Home::new();
    home.write_dag(
        "rules.yaml",
        r#"
dag_id: rules
tasks:
  - task_id: skipper
    bash: "exit 99"
  - task_id: ok
    bash: "true"
  - task_id: after_skip
    upstream: [skipper]
    bash: "true"
  - task_id: after_after_skip
    upstream: [after_skip]
    bash: "true"
  - task_id: nfmos_mixed
    upstream: [skipper, ok]
    trigger_rule: none_failed_min_one_success
    bash: "true"
  - task_id: nfmos_all_skipped
    upstream: [skipper]
    trigger_rule: none_failed_min_one_success
    bash: "true"
  - task_id: none_failed_all_skipped
    upstream: [skipper]
    trigger_rule: none_failed
    bash: "true"
  - task_id: all_done_mixed
    upstream: [skipper, ok]
    trigger_rule: all_done
    bash: "true"
  - task_id: one_failed_none_failed
    upstream: [skipper, ok]
    trigger_rule: one_failed
    bash: "true"
  - task_id: all_skipped_rule
    upstream: [skipper]
    trigger_rule: all_skipped
    bash: "true"
"#,
    );
    let _scheduler = home.start_scheduler();
    let run_id = home.trigger("rules", None);
    assert_eq!(home.wait_run_finished("rules", &run_id), "success");
    assert_eq!(
        home.task_states("rules", &run_id),
        states(&[
            ("skipper", "skipped"),
            ("ok", "success"),
            ("after_skip", "skipped"),
            ("after_after_skip", "skipped"),
            ("nfmos_mixed", "success"),
            ("nfmos_all_skipped", "skipped"),
            ("none_failed_all_skipped", "success"),
            ("all_done_mixed", "success"),
            ("one_failed_none_failed", "skipped"),
            ("all_skipped_rule", "success"),
        ])
    );
    let skipped = &home.task_instances("rules", &run_id)["skipper"];
    assert_eq!(skipped["try_number"], 1, "the skipped task did run once");
    // Tasks skipped by their trigger rule never ran.
    assert_eq!(
        home.task_instances("rules", &run_id)["after_skip"]["try_number"],
        0
    );
}

// ---- 6. failure propagation ----------------------------------------------------------------

#[test]
fn a_failure_marks_downstream_upstream_failed_and_all_done_cleanup_still_runs() {
    let home = Home::new();
    let marker = home.work().join("cleanup-ran");
    home.write_dag(
        "failing.yaml",
        &format!(
            r#"
dag_id: failing
tasks:
  - task_id: fail
    bash: "echo boom; exit 3"
  - task_id: down
    upstream: [fail]
    bash: "true"
  - task_id: down2
    upstream: [down]
    bash: "true"
  - task_id: cleanup
    upstream: [down]
    trigger_rule: all_done
    bash: "touch '{}'"
  - task_id: independent
    bash: "true"
  - task_id: alert
    upstream: [fail, independent]
    trigger_rule: one_failed
    bash: "true"
  - task_id: none_failed_down
    upstream: [fail]
    trigger_rule: none_failed
    bash: "true"
  - task_id: nfmos_down
    upstream: [fail, independent]
    trigger_rule: none_failed_min_one_success
    bash: "true"
"#,
            marker.display()
        ),
    );
    let _scheduler = home.start_scheduler();
    let run_id = home.trigger("failing", None);
    assert_eq!(home.wait_run_finished("failing", &run_id), "failed");
    assert_eq!(
        home.task_states("failing", &run_id),
        states(&[
            ("fail", "failed"),
            ("down", "upstream_failed"),
            ("down2", "upstream_failed"),
            ("cleanup", "success"),
            ("independent", "success"),
            ("alert", "success"),
            ("none_failed_down", "upstream_failed"),
            ("nfmos_down", "upstream_failed"),
        ])
    );
    assert!(marker.exists(), "the all_done cleanup task did not run");
    let log = home.logs("failing", &run_id, "fail", None);
    assert!(log.contains("boom"), "log:\n{log}");
}

// ---- 7. pools and max_active_tasks ---------------------------------------------------------

#[test]
fn a_pool_with_one_slot_runs_its_tasks_one_at_a_time() {
    let home = Home::new();
    home.ok(&["pools", "set", "p1", "1"]);
    let stamps = home.work().join("stamps");
    let mut yaml = String::from("dag_id: pooled\ntasks:\n");
    for id in ["a", "b", "c"] {
        yaml.push_str(&format!(
            "  - task_id: {id}\n    pool: p1\n    bash: |\n{}",
            indent(&timed_body(&stamps, id), 6)
        ));
    }
    home.write_dag("pooled.yaml", &yaml);
    let _scheduler = home.start_scheduler();
    let run_id = home.trigger("pooled", None);
    assert_eq!(home.wait_run_finished("pooled", &run_id), "success");
    let intervals = intervals(&stamps);
    assert_eq!(intervals.len(), 3, "{intervals:?}");
    assert_no_overlap(&intervals);
    for ti in home.task_instances("pooled", &run_id).values() {
        assert_eq!(ti["pool"], "p1");
    }
}

#[test]
fn max_active_tasks_one_runs_tasks_one_at_a_time() {
    let home = Home::new();
    let stamps = home.work().join("stamps");
    let mut yaml = String::from("dag_id: narrow\nmax_active_tasks: 1\ntasks:\n");
    for id in ["a", "b", "c"] {
        yaml.push_str(&format!(
            "  - task_id: {id}\n    bash: |\n{}",
            indent(&timed_body(&stamps, id), 6)
        ));
    }
    home.write_dag("narrow.yaml", &yaml);
    let _scheduler = home.start_scheduler();
    let run_id = home.trigger("narrow", None);
    assert_eq!(home.wait_run_finished("narrow", &run_id), "success");
    let intervals = intervals(&stamps);
    assert_eq!(intervals.len(), 3, "{intervals:?}");
    assert_no_overlap(&intervals);
}

// ---- 8. catchup ----------------------------------------------------------------------------

fn today_utc() -> NaiveDate {
    Utc::now().date_naive()
}

fn daily_dag(dag_id: &str, start: NaiveDate, catchup: bool, stamps: &Path) -> String {
    format!(
        "dag_id: {dag_id}\nschedule: \"@daily\"\nstart_date: {start}\ncatchup: {catchup}\n\
         max_active_runs: 1\nis_paused_upon_creation: true\ntasks:\n  - task_id: work\n    bash: |\n{}",
        indent(&timed_body(stamps, "{{ ds }}"), 6)
    )
}

/// The `@daily` logical dates (as `YYYY-MM-DD`) of the runs of `dag_id`, oldest first.
fn logical_days(runs: &[Value]) -> Vec<String> {
    let mut days: Vec<String> = runs
        .iter()
        .map(|r| str_of(&r["logical_date"])[..10].to_string())
        .collect();
    days.sort();
    days
}

#[test]
fn catchup_creates_every_missed_run_once_unpaused_one_at_a_time() {
    let home = Home::new();
    let stamps = home.work().join("stamps");
    let today = today_utc();
    let start = today - ChronoDuration::days(3);
    home.write_dag("caught.yaml", &daily_dag("caught", start, true, &stamps));
    let _scheduler = home.start_scheduler();
    home.wait_dag_listed("caught");
    let dag = home
        .dags_list()
        .into_iter()
        .find(|d| d["dag_id"] == "caught")
        .unwrap();
    assert_eq!(dag["is_paused"], true);
    assert!(home.runs("caught").is_empty(), "a paused DAG got runs");

    home.ok(&["dags", "unpause", "caught"]);
    // The complete daily intervals since start_date: [d-3, d-2), [d-2, d-1), [d-1, d).
    let expected: Vec<String> = (1..=3)
        .rev()
        .map(|k| (today - ChronoDuration::days(k)).to_string())
        .collect();
    let runs = wait_until(
        "the 3 catchup runs to succeed",
        Duration::from_secs(60),
        || {
            let runs = home.runs("caught");
            (runs.len() >= 3 && runs.iter().all(|r| r["state"] == "success")).then_some(runs)
        },
    );
    if today_utc() == today {
        assert_eq!(logical_days(&runs), expected);
    }
    for run in &runs {
        assert_eq!(run["run_type"], "scheduled");
    }
    // max_active_runs: 1, so the runs did not overlap, and they ran oldest first.
    let intervals = intervals(&stamps);
    assert_eq!(intervals.len(), runs.len(), "{intervals:?}");
    assert_no_overlap(&intervals);

    // A manual run goes through a full scheduler pass, which would also create any further
    // (wrongly) due scheduled run.
    let manual = home.trigger("caught", None);
    assert_eq!(home.wait_run_finished("caught", &manual), "success");
    let scheduled: Vec<Value> = home
        .runs("caught")
        .into_iter()
        .filter(|r| r["run_type"] == "scheduled")
        .collect();
    if today_utc() == today {
        assert_eq!(logical_days(&scheduled), expected);
    }
    let mut by_start: Vec<(&String, f64)> = intervals.iter().map(|(d, (s, _))| (d, *s)).collect();
    by_start.sort_by(|a, b| a.1.total_cmp(&b.1));
    let order: Vec<String> = by_start.into_iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(order, logical_days(&runs), "catchup runs ran out of order");
}

#[test]
fn without_catchup_only_the_latest_interval_gets_a_run() {
    let home = Home::new();
    let stamps = home.work().join("stamps");
    let today = today_utc();
    let start = today - ChronoDuration::days(3);
    home.write_dag("latest.yaml", &daily_dag("latest", start, false, &stamps));
    let _scheduler = home.start_scheduler();
    home.wait_dag_listed("latest");
    home.ok(&["dags", "unpause", "latest"]);
    let runs = wait_until("the latest run to succeed", DEFAULT_TIMEOUT, || {
        let runs = home.runs("latest");
        (!runs.is_empty() && runs.iter().all(|r| r["state"] == "success")).then_some(runs)
    });
    if today_utc() == today {
        assert_eq!(
            logical_days(&runs),
            vec![(today - ChronoDuration::days(1)).to_string()]
        );
    }
}

// ---- 9. backfill ---------------------------------------------------------------------------

#[test]
fn backfill_without_a_scheduler_runs_in_process_and_skips_existing_runs() {
    let home = Home::new();
    let done = home.work().join("done");
    home.write_dag(
        "filled.yaml",
        &format!(
            "dag_id: filled\nschedule: \"@daily\"\nstart_date: 2024-01-01\ntasks:\n  - task_id: a\n    bash: \"echo {{{{ ds }}}} >> '{}'\"\n  - task_id: b\n    upstream: a\n    bash: \"true\"\n",
            done.display()
        ),
    );
    let result = home.ok(&[
        "dags",
        "backfill",
        "filled",
        "-s",
        "2024-01-01",
        "-e",
        "2024-01-03",
    ]);
    let runs = home.runs("filled");
    assert_eq!(runs.len(), 3, "{runs:?}\n{result}");
    assert_eq!(
        logical_days(&runs),
        ["2024-01-01", "2024-01-02", "2024-01-03"]
    );
    for run in &runs {
        assert_eq!(run["run_type"], "backfill");
        assert_eq!(run["state"], "success");
        let run_id = str_of(&run["run_id"]);
        assert_eq!(
            home.task_states("filled", &run_id),
            states(&[("a", "success"), ("b", "success")])
        );
    }
    let mut days: Vec<String> = fs::read_to_string(&done)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    days.sort();
    assert_eq!(days, ["2024-01-01", "2024-01-02", "2024-01-03"]);

    // Runs that exist already are skipped; the others are created and run.
    let result = home.ok(&[
        "dags",
        "backfill",
        "filled",
        "-s",
        "2024-01-02",
        "-e",
        "2024-01-04",
    ]);
    assert!(result.stderr.contains("skipped"), "{result}");
    let runs = home.runs("filled");
    assert_eq!(
        logical_days(&runs),
        ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
    );
    assert!(runs.iter().all(|r| r["state"] == "success"), "{runs:?}");
    assert_eq!(fs::read_to_string(&done).unwrap().lines().count(), 4);
}

#[test]
fn backfill_skips_a_logical_date_that_already_has_a_manual_run() {
    let home = Home::new();
    home.write_dag(
        "filled2.yaml",
        "dag_id: filled2\nschedule: \"@daily\"\nstart_date: 2024-01-01\ntasks:\n  - task_id: a\n    bash: \"true\"\n",
    );
    home.json(&[
        "dags",
        "trigger",
        "filled2",
        "--logical-date",
        "2024-01-02T00:00:00",
    ]);
    let result = home.ok(&[
        "dags",
        "backfill",
        "filled2",
        "-s",
        "2024-01-01",
        "-e",
        "2024-01-03",
    ]);
    let runs = home.runs("filled2");
    assert_eq!(
        logical_days(&runs),
        ["2024-01-01", "2024-01-02", "2024-01-03"],
        "one run per logical date:\n{runs:?}\n{result}"
    );
    let manual: Vec<&Value> = runs.iter().filter(|r| r["run_type"] == "manual").collect();
    assert_eq!(manual.len(), 1);
    assert_eq!(
        manual[0]["state"], "queued",
        "the backfill ran a run it did not create"
    );
    assert!(
        result.stderr.contains("manual__2024-01-02"),
        "the skipped date should name the run that holds it:\n{result}"
    );

    // A trigger at a logical date that has a run is refused.
    let refused = home.fails(&[
        "dags",
        "trigger",
        "filled2",
        "--logical-date",
        "2024-01-03T00:00:00",
    ]);
    assert!(refused.stderr.contains("already exists"), "{refused}");
    assert_eq!(home.runs("filled2").len(), 3);
}

// ---- 10. clear and set-state ---------------------------------------------------------------

#[test]
fn clear_reruns_the_task_and_its_downstream_and_set_state_marks_it() {
    let home = Home::new();
    let stamps = home.work().join("stamps");
    let mut yaml = String::from("dag_id: clearable\ntasks:\n");
    for (id, up) in [("a", None), ("b", Some("a")), ("c", Some("b"))] {
        yaml.push_str(&format!("  - task_id: {id}\n"));
        if let Some(up) = up {
            yaml.push_str(&format!("    upstream: [{up}]\n"));
        }
        yaml.push_str(&format!(
            "    bash: \"{}\"\n",
            stamp(&stamps, id).replace('"', "\\\"")
        ));
    }
    home.write_dag("clearable.yaml", &yaml);
    let _scheduler = home.start_scheduler();
    let run_id = home.trigger("clearable", None);
    assert_eq!(home.wait_run_finished("clearable", &run_id), "success");

    home.ok(&[
        "tasks",
        "clear",
        "clearable",
        "-t",
        "^b$",
        "-d",
        "-r",
        &run_id,
    ]);
    wait_until("b and c to run again", DEFAULT_TIMEOUT, || {
        let tis = home.task_instances("clearable", &run_id);
        (tis["c"]["try_number"] == 2 && tis["c"]["state"] == "success").then_some(())
    });
    assert_eq!(home.wait_run_finished("clearable", &run_id), "success");
    let tis = home.task_instances("clearable", &run_id);
    assert_eq!(tis["a"]["try_number"], 1, "a was not cleared but ran again");
    assert_eq!(tis["b"]["try_number"], 2);
    assert_eq!(tis["c"]["try_number"], 2);
    let labels: Vec<String> = read_stamps(&stamps).into_iter().map(|(_, l)| l).collect();
    assert_eq!(labels, ["a", "b", "c", "b", "c"]);

    home.ok(&["tasks", "set-state", "clearable", &run_id, "a", "failed"]);
    assert_eq!(home.task_states("clearable", &run_id)["a"], "failed");
    let refused = home.fails(&["tasks", "set-state", "clearable", &run_id, "a", "running"]);
    assert!(refused.stderr.contains("success"), "{refused}");
}

#[test]
fn clearing_a_running_task_stops_its_try_and_runs_it_again() {
    let home = Home::new();
    let work = home.work();
    let counter = work.join("counter");
    let release = work.join("release");
    let script = format!(
        r#"n=$(cat '{counter}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{counter}'
echo "try $n running"
if [ "$n" -eq 1 ]; then sleep 60; fi
{wait}
echo "try $n done"
"#,
        counter = counter.display(),
        wait = wait_for_file_sh(&release),
    );
    home.write_dag(
        "recleared.yaml",
        &format!(
            "dag_id: recleared\ntasks:\n  - task_id: t\n    bash: |\n{}  - task_id: after\n    upstream: [t]\n    bash: \"true\"\n",
            indent(&script, 6)
        ),
    );
    let _scheduler = home.start_scheduler();
    let run_id = home.trigger("recleared", None);
    home.wait_task_state("recleared", &run_id, "t", "running");
    home.ok(&["tasks", "clear", "recleared", "-t", "^t$", "-r", &run_id]);
    // Try 2 is running (and waits for the release file) while try 1 is being stopped.
    wait_until("try 2 to run", DEFAULT_TIMEOUT, || {
        let ti = home.task_instances("recleared", &run_id).remove("t")?;
        (ti["try_number"] == 2 && ti["state"] == "running").then_some(())
    });
    let try1 = wait_until("try 1 to be stopped", DEFAULT_TIMEOUT, || {
        let log = home.logs("recleared", &run_id, "t", Some(1));
        log.contains("kill requested").then_some(log)
    });
    assert!(!try1.contains("try 1 done"), "{try1}");
    // Let try 1's end be handled before try 2 ends.
    wait_until("try 1's end to be logged", DEFAULT_TIMEOUT, || {
        home.logs("recleared", &run_id, "t", Some(1))
            .contains("try 1 finished")
            .then_some(())
    });
    let ti = &home.task_instances("recleared", &run_id)["t"];
    assert_eq!(ti["try_number"], 2);
    assert_eq!(
        ti["state"], "running",
        "try 1's end was recorded as try 2's"
    );
    fs::write(&release, "").unwrap();
    assert_eq!(home.wait_run_finished("recleared", &run_id), "success");
    let tis = home.task_instances("recleared", &run_id);
    assert_eq!(tis["t"]["state"], "success");
    assert_eq!(tis["t"]["try_number"], 2);
    assert_eq!(tis["after"]["state"], "success");
    let try2 = home.logs("recleared", &run_id, "t", Some(2));
    assert!(try2.contains("try 2 done"), "{try2}");
}

// ---- 11. pause -----------------------------------------------------------------------------

#[test]
fn a_paused_dags_run_stays_queued_until_unpaused() {
    let home = Home::new();
    home.write_dag(
        "held.yaml",
        "dag_id: held\ntasks:\n  - task_id: t\n    bash: \"true\"\n",
    );
    home.write_dag(
        "free.yaml",
        "dag_id: free\ntasks:\n  - task_id: t\n    bash: \"true\"\n",
    );
    home.ok(&["dags", "pause", "held"]);
    let _scheduler = home.start_scheduler();
    let held = home.trigger("held", None);
    let free = home.trigger("free", None);
    // The scheduler ran the other DAG's run, triggered later: it has seen the held one too.
    assert_eq!(home.wait_run_finished("free", &free), "success");
    let free2 = home.trigger("free", None);
    assert_eq!(home.wait_run_finished("free", &free2), "success");
    assert_eq!(home.run_state("held", &held), "queued");
    assert_eq!(home.task_instances("held", &held)["t"]["try_number"], 0);

    home.ok(&["dags", "unpause", "held"]);
    assert_eq!(home.wait_run_finished("held", &held), "success");
}

// ---- 12. SIGTERM ---------------------------------------------------------------------------

#[test]
fn sigterm_lets_a_running_task_finish_within_shutdown_grace() {
    let home = Home::new().with_env("UPDRAFT__SCHEDULER__SHUTDOWN_GRACE", "60s");
    let work = home.work();
    let started = work.join("started");
    let release = work.join("release");
    let script = format!(
        "touch '{}'\n{}\necho finished normally\n",
        started.display(),
        wait_for_file_sh(&release)
    );
    home.write_dag(
        "graceful.yaml",
        &format!(
            "dag_id: graceful\ntasks:\n  - task_id: t\n    bash: |\n{}",
            indent(&script, 6)
        ),
    );
    let mut scheduler = home.start_scheduler();
    let run_id = home.trigger("graceful", None);
    home.wait_file(&started);
    home.wait_task_state("graceful", &run_id, "t", "running");
    scheduler.terminate();
    wait_until(
        "the scheduler to begin shutting down",
        DEFAULT_TIMEOUT,
        || scheduler.output().contains("shutting down").then_some(()),
    );
    assert!(
        scheduler.try_wait().is_none(),
        "the scheduler exited without waiting for its running task:\n{}",
        scheduler.output()
    );
    fs::write(&release, "").unwrap();
    let status = scheduler.wait_exit(DEFAULT_TIMEOUT);
    assert_eq!(status.code(), Some(0), "{}", scheduler.output());
    let ti = &home.task_instances("graceful", &run_id)["t"];
    assert_eq!(ti["state"], "success");
    let log = home.logs("graceful", &run_id, "t", None);
    assert!(log.contains("finished normally"), "{log}");

    // The run's outcome is recorded before the scheduler exits.
    assert_eq!(home.run_state("graceful", &run_id), "success");
}

#[test]
fn sigterm_with_a_short_grace_stops_the_task_and_records_it() {
    let home = Home::new().with_env("UPDRAFT__SCHEDULER__SHUTDOWN_GRACE", "1s");
    let work = home.work();
    let pid_file = work.join("pid");
    let script = format!("echo $$ > '{}'\nsleep 60\n", pid_file.display());
    home.write_dag(
        "stopped.yaml",
        &format!(
            "dag_id: stopped\ntasks:\n  - task_id: t\n    bash: |\n{}",
            indent(&script, 6)
        ),
    );
    let mut scheduler = home.start_scheduler();
    let run_id = home.trigger("stopped", None);
    home.wait_task_state("stopped", &run_id, "t", "running");
    let pid: i32 = home.wait_file(&pid_file).trim().parse().unwrap();
    scheduler.terminate();
    let status = scheduler.wait_exit(DEFAULT_TIMEOUT);
    assert_eq!(status.code(), Some(0), "{}", scheduler.output());
    let ti = &home.task_instances("stopped", &run_id)["t"];
    assert!(
        ti["state"] == "failed" || ti["state"] == "up_for_retry",
        "the stopped try is recorded as {}",
        ti["state"]
    );
    for ti in home.task_instances("stopped", &run_id).values() {
        assert!(ti["state"] != "running" && ti["state"] != "queued", "{ti}");
    }
    wait_until(
        "the task's process to be gone",
        Duration::from_secs(10),
        || (!process_alive(pid)).then_some(()),
    );

    assert_eq!(
        home.task_instances("stopped", &run_id)["t"]["try_number"],
        1
    );
    // The run's outcome is recorded before the scheduler exits (no retries left).
    assert_eq!(home.run_state("stopped", &run_id), "failed");
}

// ---- 13. kill -9 recovery ------------------------------------------------------------------

/// Kills a process group when dropped (for task processes a killed scheduler leaves behind).
struct KillGroupOnDrop(Option<i32>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[test]
fn a_try_orphaned_by_a_killed_scheduler_is_failed_and_retried_after_restart() {
    let home = Home::new();
    let work = home.work();
    let counter = work.join("counter");
    let pid_file = work.join("pid");
    let script = format!(
        r#"n=$(cat '{counter}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{counter}'
if [ "$n" -eq 1 ]; then echo $$ > '{pid}'; sleep 60; fi
echo "try $n done"
"#,
        counter = counter.display(),
        pid = pid_file.display()
    );
    home.write_dag(
        "orphan.yaml",
        &format!(
            "dag_id: orphan\ntasks:\n  - task_id: t\n    retries: 1\n    retry_delay: 1s\n    bash: |\n{}",
            indent(&script, 6)
        ),
    );
    let mut scheduler = home.start_scheduler();
    let run_id = home.trigger("orphan", None);
    home.wait_task_state("orphan", &run_id, "t", "running");
    let pid: i32 = home.wait_file(&pid_file).trim().parse().unwrap();
    let _leftover = KillGroupOnDrop(Some(pid));
    scheduler.kill();
    assert_eq!(home.task_states("orphan", &run_id)["t"], "running");

    let _restarted = home.start_scheduler();
    assert_eq!(home.wait_run_finished("orphan", &run_id), "success");
    let ti = &home.task_instances("orphan", &run_id)["t"];
    assert_eq!(ti["state"], "success");
    assert_eq!(ti["try_number"], 2);
    let try1 = home.logs("orphan", &run_id, "t", Some(1));
    assert!(try1.contains("scheduler stopped"), "try 1 log:\n{try1}");
    let try2 = home.logs("orphan", &run_id, "t", Some(2));
    assert!(try2.contains("try 2 done"), "try 2 log:\n{try2}");
}

// ---- 14. DAG file edited during a run ------------------------------------------------------

#[test]
fn a_run_keeps_its_dag_version_when_the_file_changes() {
    let home = Home::new();
    let work = home.work();
    let started = work.join("started");
    let release = work.join("release");
    let dag = |version: &str, extra_task: bool| {
        let mut yaml = format!(
            "dag_id: edited\ntasks:\n  - task_id: first\n    bash: |\n{}  - task_id: second\n    upstream: [first]\n    bash: \"echo second from {version}\"\n",
            indent(
                &format!(
                    "touch '{}'\n{}\n",
                    started.display(),
                    wait_for_file_sh(&release)
                ),
                6
            )
        );
        if extra_task {
            yaml.push_str("  - task_id: added\n    upstream: [second]\n    bash: \"echo added\"\n");
        }
        yaml
    };
    home.write_dag("edited.yaml", &dag("v1", false));
    let _scheduler = home.start_scheduler();
    let first_run = home.trigger("edited", None);
    home.wait_file(&started);
    home.wait_task_state("edited", &first_run, "first", "running");

    home.write_dag("edited.yaml", &dag("v2", true));
    // Wait until the new version is loaded (the CLI and the scheduler both load the folder).
    let v1 = str_of(&home.run_row("edited", &first_run)["version"]);
    wait_until(
        "the edited DAG to get a new version",
        DEFAULT_TIMEOUT,
        || {
            let versions: Vec<Value> = home
                .dags_list()
                .into_iter()
                .filter(|d| d["dag_id"] == "edited")
                .collect();
            (versions.len() == 1 && versions[0]["version"] != v1.as_str()).then_some(())
        },
    );
    fs::write(&release, "").unwrap();
    assert_eq!(home.wait_run_finished("edited", &first_run), "success");
    assert_eq!(
        home.task_states("edited", &first_run),
        states(&[("first", "success"), ("second", "success")]),
        "the running run got tasks of the new version"
    );
    let log = home.logs("edited", &first_run, "second", None);
    assert!(log.contains("second from v1"), "{log}");

    let second_run = home.trigger("edited", None);
    assert_eq!(home.wait_run_finished("edited", &second_run), "success");
    assert_eq!(
        home.task_states("edited", &second_run),
        states(&[
            ("first", "success"),
            ("second", "success"),
            ("added", "success")
        ])
    );
    let log = home.logs("edited", &second_run, "second", None);
    assert!(log.contains("second from v2"), "{log}");
}

// ---- 15. DAG file deleted ------------------------------------------------------------------

#[test]
fn a_deleted_dag_file_leaves_the_list_but_keeps_its_history() {
    let home = Home::new();
    home.write_dag(
        "doomed.yaml",
        "dag_id: doomed\ntasks:\n  - task_id: t\n    bash: \"true\"\n",
    );
    home.write_dag(
        "kept.yaml",
        "dag_id: kept\ntasks:\n  - task_id: t\n    bash: \"true\"\n",
    );
    let scheduler = home.start_scheduler();
    let run_id = home.trigger("doomed", None);
    assert_eq!(home.wait_run_finished("doomed", &run_id), "success");

    home.remove_dag("doomed.yaml");
    wait_until(
        "the deleted DAG to leave `dags list`",
        DEFAULT_TIMEOUT,
        || {
            let ids: Vec<Value> = home
                .dags_list()
                .into_iter()
                .map(|d| d["dag_id"].clone())
                .collect();
            (!ids.contains(&Value::from("doomed"))).then_some(())
        },
    );
    assert!(home.dags_list().iter().any(|d| d["dag_id"] == "kept"));
    let runs = home.runs("doomed");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["run_id"], run_id.as_str());
    assert_eq!(runs[0]["state"], "success");
    assert_eq!(
        home.task_states("doomed", &run_id),
        states(&[("t", "success")])
    );
    let refused = home.fails(&["dags", "trigger", "doomed"]);
    assert!(refused.stderr.contains("not active"), "{refused}");
    drop(scheduler);
}

// ---- 16. a long chain ----------------------------------------------------------------------

#[test]
fn a_chain_of_40_tasks_completes() {
    let home = Home::new();
    let mut yaml = String::from("dag_id: chain\ntasks:\n");
    for i in 0..40 {
        yaml.push_str(&format!("  - task_id: t{i:02}\n    bash: \"true\"\n"));
        if i > 0 {
            yaml.push_str(&format!("    upstream: [t{:02}]\n", i - 1));
        }
    }
    home.write_dag("chain.yaml", &yaml);
    let _scheduler = home.start_scheduler();
    let run_id = home.trigger("chain", None);
    assert_eq!(
        home.wait_run_finished_within("chain", &run_id, Duration::from_secs(120)),
        "success"
    );
    let tis = home.task_instances("chain", &run_id);
    assert_eq!(tis.len(), 40);
    for (id, ti) in &tis {
        assert_eq!(ti["state"], "success", "{id}");
        assert_eq!(ti["try_number"], 1, "{id}");
    }
    // Each task started after its upstream ended.
    for i in 1..40 {
        let up = &tis[&format!("t{:02}", i - 1)];
        let down = &tis[&format!("t{i:02}")];
        let time = |v: &Value| chrono::DateTime::parse_from_rfc3339(&str_of(v)).unwrap();
        assert!(
            time(&down["start_date"]) >= time(&up["end_date"]),
            "t{i:02} started before its upstream ended"
        );
    }
}

/// The value of the sample `name` (with its labels, as written) in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// What a scheduler pod is watched with. `[scheduler] metrics_port`: a scheduler without a
/// server serves Prometheus metrics on a port of its own; after a run, its tries are counted
/// by state and timed under their DAG and task, the DAGs folder's size and import errors are
/// there, and the pools' slots. The liveness probe (`jobs check --job-type SchedulerJob
/// --local`, no shell needed) finds it on this host.
#[test]
fn a_scheduler_alone_serves_its_metrics_and_answers_its_liveness_probe() {
    let home = Home::new().with_env("UPDRAFT__SCHEDULER__METRICS_PORT", "0");
    home.write_dag(
        "measured.yaml",
        "dag_id: measured\ntasks:\n  - task_id: works\n    bash: 'true'\n  - task_id: breaks\n    bash: 'exit 3'\n",
    );
    home.write_dag("broken.yaml", "tasks: [\n");
    let run_id = home.trigger("measured", None);
    let scheduler = home.start_scheduler();
    assert_eq!(home.wait_run_finished("measured", &run_id), "failed");

    let address = wait_until("the metrics port to be announced", DEFAULT_TIMEOUT, || {
        let output = scheduler.output();
        let (_, rest) = output.split_once("updraft scheduler metrics on http://")?;
        Some(rest.split('/').next()?.to_string())
    });
    let (status, text) = common::http::get_text(&address, "/metrics").expect("metrics answer");
    assert_eq!(status, 200, "{text}");
    let value =
        |name: &str| sample(&text, name).unwrap_or_else(|| panic!("no sample {name} in:\n{text}"));
    assert_eq!(value("airflow_ti_successes_total"), 1.0);
    assert_eq!(value("airflow_ti_failures_total"), 1.0);
    assert_eq!(
        value(r#"airflow_ti_finish_total{dag_id="measured",task_id="breaks",state="failed"}"#),
        1.0
    );
    assert_eq!(
        value(r#"airflow_task_duration_count{dag_id="measured",task_id="works"}"#),
        1.0
    );
    assert_eq!(value("airflow_dagbag_size"), 1.0);
    assert_eq!(value("airflow_dag_processing_import_errors"), 1.0);
    assert_eq!(
        value(r#"airflow_pool_open_slots{pool_name="default_pool"}"#),
        128.0
    );
    assert!(value("updraft_store_step_duration_seconds_count") >= 1.0);
    assert!(value("airflow_scheduler_scheduler_loop_duration_count") >= 1.0);
    assert_eq!(
        common::http::get_text(&address, "/api/v2/dags").map(|r| r.0),
        Some(404)
    );
}
