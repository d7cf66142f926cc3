//! XComs pushed by local tries against real processes: the XCom file named in
//! `UPDRAFT_XCOM_PATH`, `do_xcom_push`'s last line, and the pushes that fail the try (too
//! big, not an object, not JSON, a link instead of a file), each reason in the try's log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use updraft_dag::log_path;
use updraft_executor::{
    ExecOutcome, LaunchSpec, LocalExecutor, LocalExecutorConfig, Program, RenderedTask, TryEvent,
    TryKey, XComPush,
};

const PATIENCE: Duration = Duration::from_secs(30);

fn bash(script: &str, do_xcom_push: bool) -> RenderedTask {
    RenderedTask {
        secret_env: Vec::new(),
        mask: Default::default(),
        do_xcom_push,
        program: Program::Bash(script.into()),
        env: vec![],
        cwd: None,
        conf: "{}".into(),
    }
}

fn log_of(dir: &Path, task: &str) -> PathBuf {
    log_path(&dir.join("logs"), "default", "dag", "manual__x", task, 1)
}

/// Runs one try to its end: its outcome, what it pushed and its log.
async fn run(
    max_xcom_size: usize,
    task: &str,
    rendered: RenderedTask,
) -> (ExecOutcome, Vec<XComPush>, String) {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let executor = LocalExecutor::new(
        LocalExecutorConfig {
            max_xcom_size,
            ..Default::default()
        },
        tx,
    );
    executor.launch(LaunchSpec {
        key: TryKey {
            run_pk: 1,
            task_id: task.into(),
            map_index: -1,
            try_number: 1,
        },
        rendered,
        log_path: log_of(dir.path(), task),
        timeout: None,
    });
    loop {
        let event = tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .expect("an event in time")
            .expect("the executor reports");
        if let TryEvent::Finished { outcome, xcoms, .. } = event {
            let log = std::fs::read_to_string(log_of(dir.path(), task)).unwrap();
            return (outcome, xcoms, log);
        }
    }
}

fn push(key: &str, value: &str) -> XComPush {
    XComPush {
        key: key.into(),
        value: value.into(),
    }
}

fn failure(outcome: &ExecOutcome) -> &str {
    match outcome {
        ExecOutcome::Failed { message, .. } => message,
        other => panic!("expected a failure, got {other}"),
    }
}

#[tokio::test]
async fn the_xcom_file_s_members_are_pushed_after_a_successful_exit() {
    let script = r#"test ! -e "$UPDRAFT_XCOM_PATH" || exit 3
printf '{"return_value": {"rows": 42}, "path": "s3://b/k", "ok": true}' > "$UPDRAFT_XCOM_PATH""#;
    let (outcome, xcoms, _) = run(1024, "a", bash(script, false)).await;
    assert_eq!(outcome, ExecOutcome::Success, "the file is absent at start");
    assert_eq!(
        xcoms,
        [
            push("ok", "true"),
            push("path", "\"s3://b/k\""),
            push("return_value", "{\"rows\":42}"),
        ]
    );
}

#[tokio::test]
async fn nothing_is_pushed_by_a_try_that_fails_or_writes_no_file() {
    let (outcome, xcoms, _) = run(
        1024,
        "a",
        bash("echo {} > \"$UPDRAFT_XCOM_PATH\"; exit 1", false),
    )
    .await;
    assert!(matches!(
        outcome,
        ExecOutcome::Failed {
            exit_code: Some(1),
            ..
        }
    ));
    assert!(xcoms.is_empty());
    let (outcome, xcoms, _) = run(1024, "a", bash("echo 42", false)).await;
    assert_eq!(outcome, ExecOutcome::Success);
    assert!(
        xcoms.is_empty(),
        "without do_xcom_push the output is not pushed"
    );
}

#[tokio::test]
async fn do_xcom_push_pushes_the_last_non_empty_line_as_json_or_text() {
    let (outcome, xcoms, _) = run(
        1024,
        "a",
        bash("echo first; echo '[1, 2]'; echo; echo '  '", true),
    )
    .await;
    assert_eq!(outcome, ExecOutcome::Success);
    assert_eq!(xcoms, [push("return_value", "[1,2]")]);
    let (_, xcoms, _) = run(1024, "b", bash("echo 'done: 3 files' >&2", true)).await;
    assert_eq!(
        xcoms,
        [push("return_value", "\"done: 3 files\"")],
        "stderr is output too"
    );
    let (_, xcoms, _) = run(1024, "c", bash("true", true)).await;
    assert!(
        xcoms.is_empty(),
        "no output, nothing pushed (not the log's header)"
    );
    let both = "echo from-output; echo '{\"return_value\": \"from-file\", \"k\": 1}' > \"$UPDRAFT_XCOM_PATH\"";
    let (_, xcoms, _) = run(1024, "d", bash(both, true)).await;
    assert_eq!(
        xcoms,
        [push("k", "1"), push("return_value", "\"from-file\"")],
        "the file's return_value wins"
    );
}

#[tokio::test]
async fn a_value_over_max_xcom_size_fails_the_try_naming_key_size_and_limit() {
    let script = r#"printf '{"small": 1, "big": "%s"}' "$(head -c 100 /dev/zero | tr '\0' x)" > "$UPDRAFT_XCOM_PATH""#;
    let (outcome, xcoms, log) = run(64, "a", bash(script, false)).await;
    let message = failure(&outcome);
    assert!(
        message.contains("`big`") && message.contains("102 bytes") && message.contains("64 bytes"),
        "{message}"
    );
    assert!(xcoms.is_empty());
    assert!(log.contains(message), "the reason is in the log:\n{log}");
    let (outcome, _, log) = run(8, "b", bash("echo 0123456789", true)).await;
    let message = failure(&outcome);
    assert!(
        message.contains("`return_value`") && message.contains("8 bytes"),
        "{message}"
    );
    assert!(log.contains("max_xcom_size"), "{log}");
}

#[tokio::test]
async fn an_xcom_file_that_is_not_one_json_object_fails_the_try() {
    for (content, says) in [
        ("[1, 2]", "must hold one JSON object"),
        ("{\"a\": ", "is not valid JSON"),
        ("42", "found a number"),
    ] {
        let script = format!("printf '%s' '{content}' > \"$UPDRAFT_XCOM_PATH\"");
        let (outcome, xcoms, log) = run(1024, "a", bash(&script, false)).await;
        let message = failure(&outcome);
        assert!(message.contains(says), "{content}: {message}");
        assert!(
            message.contains(".updraft-xcom.json"),
            "names the file: {message}"
        );
        assert!(xcoms.is_empty());
        assert!(log.contains(says), "{log}");
    }
}

#[tokio::test]
async fn a_link_or_a_pipe_as_the_xcom_file_is_refused_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("only-updraft-reads-this");
    std::fs::write(&secret, "{\"stolen\": \"secret\"}").unwrap();
    let script = format!("ln -s '{}' \"$UPDRAFT_XCOM_PATH\"", secret.display());
    let (outcome, xcoms, _) = run(1024, "a", bash(&script, false)).await;
    assert!(failure(&outcome).contains("symbolic link"), "{outcome}");
    assert!(xcoms.is_empty());
    let (outcome, _, _) = run(1024, "b", bash("mkfifo \"$UPDRAFT_XCOM_PATH\"", false)).await;
    assert!(
        failure(&outcome).contains("not a regular file"),
        "{outcome}"
    );
}
