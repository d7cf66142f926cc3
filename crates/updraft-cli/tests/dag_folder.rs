//! The DAGs folder under a running `updraft standalone`: a file edited in place keeps its DAG
//! scheduled on its last good version until the file is deleted, and a folder holding a link
//! to `/` (and links to files outside it) neither stalls the scheduler nor leaks what the
//! links point to.

mod common;

use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};

use common::http::{api_address, get, post};
use common::{DEFAULT_TIMEOUT, Home, wait_until};
use serde_json::{Value, json};

fn dag(dag_id: &str, word: &str) -> String {
    format!("dag_id: {dag_id}\ntasks:\n  - task_id: say\n    bash: echo {word}\n")
}

/// Whether the API shows the DAG as active (not stale).
fn is_active(api: &str, dag_id: &str) -> Option<bool> {
    let (status, body) = get(api, &format!("/dags/{dag_id}"));
    (status == 200).then(|| body["is_stale"] == json!(false))
}

/// The import errors of `filename`, as the API lists them.
fn import_errors_of(api: &str, filename: &str) -> Vec<Value> {
    let (status, body) = get(api, "/importErrors");
    assert_eq!(status, 200, "{body}");
    body["import_errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["filename"] == json!(filename))
        .cloned()
        .collect()
}

/// Triggers a run through the API; panics unless it answers 200.
fn trigger(api: &str, dag_id: &str, run_id: &str) {
    let body = json!({"dag_run_id": run_id, "logical_date": null});
    let (status, answer) = post(api, &format!("/dags/{dag_id}/dagRuns"), &body);
    assert_eq!(status, 200, "triggering {dag_id} ({run_id}): {answer}");
}

fn wait_run_success(api: &str, dag_id: &str, run_id: &str, timeout: Duration) {
    let state = wait_until(&format!("{dag_id}/{run_id} to finish"), timeout, || {
        let (_, run) = get(api, &format!("/dags/{dag_id}/dagRuns/{run_id}"));
        let state = run["state"].as_str()?.to_owned();
        matches!(state.as_str(), "success" | "failed").then_some(state)
    });
    assert_eq!(state, "success", "{dag_id}/{run_id}");
}

/// An editor saving in place: the file is truncated, then written. While it is empty, and
/// while it holds a broken version, its import error is shown and its DAG stays active on
/// the last good version: triggers answer 200 and their runs finish. Deleting the file
/// deactivates the DAG.
#[test]
fn a_file_edited_in_place_keeps_its_dag_until_deleted() {
    let home = Home::new();
    let path = home.write_dag("edited.yaml", &dag("edited", "v1"));
    let service = home.start_standalone();
    let api = api_address(&service);
    wait_until("the DAG to be active", DEFAULT_TIMEOUT, || {
        is_active(&api, "edited").filter(|a| *a)
    });
    trigger(&api, "edited", "before");
    wait_run_success(&api, "edited", "before", DEFAULT_TIMEOUT);

    // Truncated: the empty file is an import error the scheduler records.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    wait_until("the empty file's import error", DEFAULT_TIMEOUT, || {
        (!import_errors_of(&api, "edited.yaml").is_empty()).then_some(())
    });
    assert_eq!(is_active(&api, "edited"), Some(true), "active while empty");
    trigger(&api, "edited", "while_empty");

    // Written: a broken version (a task with no kind), still an import error.
    file.write_all(b"dag_id: edited\ntasks:\n  - task_id: say\n")
        .unwrap();
    file.sync_all().unwrap();
    drop(file);
    let errors = wait_until("the broken version's import error", DEFAULT_TIMEOUT, || {
        let errors = import_errors_of(&api, "edited.yaml");
        errors
            .iter()
            .any(|e| e["line"] == json!(3))
            .then_some(errors)
    });
    assert!(
        errors[0]["stack_trace"].as_str().unwrap().contains("say"),
        "{errors:?}"
    );
    assert_eq!(is_active(&api, "edited"), Some(true), "active while broken");
    for i in 0..5 {
        trigger(&api, "edited", &format!("while_broken_{i}"));
    }
    wait_run_success(&api, "edited", "while_empty", DEFAULT_TIMEOUT);
    for i in 0..5 {
        wait_run_success(
            &api,
            "edited",
            &format!("while_broken_{i}"),
            DEFAULT_TIMEOUT,
        );
    }
    // The runs used the last good version.
    let (_, log) = get(
        &api,
        "/dags/edited/dagRuns/while_broken_0/taskInstances/say/logs/1?full_content=true",
    );
    assert!(log.to_string().contains("v1"), "{log}");

    home.remove_dag("edited.yaml");
    wait_until(
        "the deleted file's DAG to be inactive",
        DEFAULT_TIMEOUT,
        || is_active(&api, "edited").filter(|a| !a),
    );
    assert!(import_errors_of(&api, "edited.yaml").is_empty());
    let (status, answer) = post(
        &api,
        "/dags/edited/dagRuns",
        &json!({"dag_run_id": "after_delete", "logical_date": null}),
    );
    assert_eq!(status, 404, "{answer}");
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A link to `/` and links to system files in the DAGs folder: each is an import error naming
/// the link and quoting nothing of its target; another DAG keeps running promptly through
/// several rescans; memory stays small; SIGTERM stops the service within its grace.
#[test]
fn a_link_to_the_root_neither_stalls_nor_leaks() {
    let grace = Duration::from_secs(3);
    let home = Home::new().with_env("UPDRAFT__SCHEDULER__SHUTDOWN_GRACE", "3s");
    home.write_dag("other.yaml", &dag("other", "hello"));
    let dags = home.dags();
    std::os::unix::fs::symlink("/", dags.join("slash")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dags.join("passwd.yaml")).unwrap();
    std::os::unix::fs::symlink("/proc/self/status", dags.join("status.yaml")).unwrap();
    let mut service = home.start_standalone();
    let api = api_address(&service);
    wait_until("the other DAG to be active", DEFAULT_TIMEOUT, || {
        is_active(&api, "other").filter(|a| *a)
    });

    // The folder is rescanned every second: runs keep going through several rescans.
    let started = Instant::now();
    for i in 0..4 {
        let run_id = format!("r{i}");
        trigger(&api, "other", &run_id);
        wait_run_success(&api, "other", &run_id, Duration::from_secs(15));
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "four one-task runs took {:?}",
        started.elapsed()
    );

    let (_, body) = get(&api, "/importErrors");
    for link in ["slash", "passwd.yaml", "status.yaml"] {
        let errors = import_errors_of(&api, link);
        assert_eq!(errors.len(), 1, "{link}: {body}");
        let message = errors[0]["stack_trace"].as_str().unwrap();
        assert!(message.contains("outside the DAGs folder"), "{message}");
    }
    let listed = body.to_string();
    for line in fs::read_to_string("/etc/passwd").unwrap().lines() {
        assert!(
            line.len() < 8 || !listed.contains(line),
            "quotes /etc/passwd: {listed}"
        );
    }
    assert!(
        !listed.contains("VmRSS"),
        "quotes /proc/self/status: {listed}"
    );
    let rss = rss_kib(service.pid());
    assert!(rss < 256 * 1024, "resident memory {rss} KiB");

    let asked = Instant::now();
    service.terminate();
    let status = service.wait_exit(grace + Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{}", service.output());
    assert!(
        asked.elapsed() < grace + Duration::from_secs(2),
        "stopped after {:?}",
        asked.elapsed()
    );
}
