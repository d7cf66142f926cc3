//! What a local try sees of the scheduler and of other tenants, against real processes: its
//! environment (only the allow-list of the scheduler's), a working directory of its own per try,
//! logs only updraft's user can read, and, run as root (as in CI), a unix user per tenant.
//!
//! One test per binary sets this process's environment before anything else runs: see
//! `isolation_env.rs`.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio::sync::mpsc;
use updraft_executor::{
    ExecOutcome, LaunchSpec, LocalExecutor, LocalExecutorConfig, Program, RenderedTask, TryEvent,
    TryIsolation, TryKey,
};

const PATIENCE: Duration = Duration::from_secs(30);

fn executor(isolation: TryIsolation) -> (LocalExecutor, mpsc::UnboundedReceiver<TryEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let config = LocalExecutorConfig {
        max_concurrency: 4,
        kill_grace: Duration::from_secs(2),
        isolation,
        ..Default::default()
    };
    (LocalExecutor::new(config, tx), rx)
}

fn task(tenant: &str, script: &str) -> RenderedTask {
    RenderedTask {
        secret_env: Vec::new(),
        mask: Default::default(),
        do_xcom_push: false,
        program: Program::Bash(script.into()),
        env: vec![("UPDRAFT_TENANT".into(), tenant.into())],
        cwd: None,
        conf: "{}".into(),
    }
}

fn log_path(root: &Path, tenant: &str, task: &str) -> PathBuf {
    updraft_dag::log_path(
        &root.join("logs"),
        tenant,
        "dag",
        "manual__2024-01-01T00:00:00+00:00",
        task,
        1,
    )
}

/// Runs `script` as a try of `tenant`'s task `task_id` and returns its outcome and log.
async fn run(
    ex: &LocalExecutor,
    rx: &mut mpsc::UnboundedReceiver<TryEvent>,
    root: &Path,
    tenant: &str,
    task_id: &str,
    script: &str,
) -> (ExecOutcome, String) {
    let log = log_path(root, tenant, task_id);
    ex.launch(LaunchSpec {
        key: TryKey {
            run_pk: 1,
            task_id: task_id.into(),
            map_index: -1,
            try_number: 1,
        },
        rendered: task(tenant, script),
        log_path: log.clone(),
        timeout: None,
    });
    loop {
        let event = tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .expect("the try ends in time")
            .expect("events flow");
        if let TryEvent::Finished { key, outcome, .. } = event
            && key.task_id == task_id
        {
            return (
                outcome,
                std::fs::read_to_string(&log).expect("the log exists"),
            );
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The value the try printed as `name=value`.
fn printed<'a>(log: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name}=");
    log.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name}= in the log:\n{log}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_try_works_in_a_directory_of_its_own_removed_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("tries");
    let (ex, mut rx) = executor(TryIsolation {
        work_folder: Some(work.clone()),
        ..TryIsolation::default()
    });
    let script = "echo cwd=$PWD; echo home=$HOME; echo tmp=$TMPDIR; \
                  echo mode=$(stat -c %a .); touch left-behind";
    let (outcome, log) = run(&ex, &mut rx, dir.path(), "team_a", "first", script).await;
    assert_eq!(outcome, ExecOutcome::Success, "{log}");
    let cwd = printed(&log, "cwd");
    assert_eq!(cwd, work.join("1-first-1").to_str().unwrap());
    assert_eq!(printed(&log, "home"), cwd);
    assert_eq!(printed(&log, "tmp"), cwd);
    assert_eq!(printed(&log, "mode"), "700");
    assert!(
        !Path::new(cwd).exists(),
        "gone from its place when the try ends"
    );
    assert_eq!(mode(&work), 0o711, "others may pass, not list");
    // Removed in the background after the report: the work folder empties.
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::fs::read_dir(&work).unwrap().next().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the try's folder is never removed"
        );
        tokio::task::yield_now().await;
    }

    // The next try of the same name (a sensor's next poke keeps its try number) gets a fresh
    // folder, which the removal of the last one never touches.
    let (outcome, log) = run(
        &ex,
        &mut rx,
        dir.path(),
        "team_a",
        "first",
        "ls -A; echo cwd=$PWD; touch mine; sleep 0.2; test -f mine && echo kept=yes",
    )
    .await;
    assert_eq!(outcome, ExecOutcome::Success, "{log}");
    assert_eq!(printed(&log, "cwd"), cwd);
    assert!(!log.contains("left-behind"), "a fresh folder: {log}");
    assert_eq!(printed(&log, "kept"), "yes");

    let (_, log) = run(
        &ex,
        &mut rx,
        dir.path(),
        "team_a",
        "second",
        "echo cwd=$PWD",
    )
    .await;
    assert_ne!(printed(&log, "cwd"), cwd, "another try, another directory");

    let (ex, mut rx) = executor(TryIsolation {
        work_folder: Some(work.clone()),
        keep_work_dirs: true,
        ..TryIsolation::default()
    });
    let (_, log) = run(
        &ex,
        &mut rx,
        dir.path(),
        "team_a",
        "kept",
        "touch here; echo cwd=$PWD",
    )
    .await;
    assert!(
        Path::new(printed(&log, "cwd")).join("here").exists(),
        "kept when asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_readable_only_by_updrafts_user() {
    let dir = tempfile::tempdir().unwrap();
    let (ex, mut rx) = executor(TryIsolation::default());
    let (outcome, _) = run(&ex, &mut rx, dir.path(), "team_a", "logged", "echo hello").await;
    assert_eq!(outcome, ExecOutcome::Success);
    let log = log_path(dir.path(), "team_a", "logged");
    assert_eq!(mode(&log), 0o600);
    let mut folder = log.parent().unwrap();
    while folder != dir.path() {
        assert_eq!(mode(folder), 0o700, "{}", folder.display());
        folder = folder.parent().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_run_as_user_fails_the_try_naming_the_user_and_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let (ex, mut rx) = executor(TryIsolation {
        run_as_user: BTreeMap::from([("team_a".into(), "no_such_user_x9".into())]),
        ..TryIsolation::default()
    });
    let (outcome, log) = run(&ex, &mut rx, dir.path(), "team_a", "t", "echo ran").await;
    let expected = "cannot run this try as user `no_such_user_x9` (set by [tenants.team_a] \
                    run_as_user): no such user on this machine";
    assert_eq!(outcome, ExecOutcome::failed(expected));
    assert!(log.contains(expected), "{log}");
    assert!(!log.contains("ran"), "{log}");
    // Other tenants are not affected.
    let (outcome, _) = run(&ex, &mut rx, dir.path(), "team_b", "t2", "true").await;
    assert_eq!(outcome, ExecOutcome::Success);
}

/// A user made for the test, deleted with its guard.
struct TestUser {
    name: String,
    uid: u32,
}

impl TestUser {
    fn create(name: &str) -> TestUser {
        let _ = Command::new("userdel")
            .arg(name)
            .stderr(std::process::Stdio::null())
            .status();
        let status = Command::new("useradd")
            .args(["--no-create-home", "--shell", "/bin/sh", name])
            .status()
            .expect("useradd runs: install it (Debian: the `passwd` package)");
        assert!(status.success(), "useradd {name}");
        let id = Command::new("id").args(["-u", name]).output().unwrap();
        let uid = String::from_utf8(id.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        TestUser {
            name: name.into(),
            uid,
        }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_tries_run_as_its_user_and_cannot_read_other_logs_or_the_database() {
    assert!(
        nix_is_root(),
        "this test runs as root (as CI does): it creates users with useradd"
    );
    let a = TestUser::create(&format!("updraft_ta_{}", std::process::id()));
    let b = TestUser::create(&format!("updraft_tb_{}", std::process::id()));
    let dir = tempfile::tempdir().unwrap();
    // The tenants' users pass through to their own directories.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let database = dir.path().join("updraft.db");
    std::fs::write(&database, "SQLite format 3").unwrap();
    std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o600)).unwrap();
    let work = dir.path().join("tries");
    let (ex, mut rx) = executor(TryIsolation {
        work_folder: Some(work.clone()),
        run_as_user: BTreeMap::from([
            ("team_a".into(), a.name.clone()),
            ("team_b".into(), b.name.clone()),
        ]),
        ..TryIsolation::default()
    });

    let script = "echo uid=$(id -u); echo user=$USER; echo owner=$(stat -c %u .); \
                  echo conf=$(cat \"$UPDRAFT_CONF_FILE\")";
    let (outcome, log_b) = run(&ex, &mut rx, dir.path(), "team_b", "b", script).await;
    assert_eq!(outcome, ExecOutcome::Success, "{log_b}");
    assert_eq!(printed(&log_b, "uid"), b.uid.to_string());
    assert_eq!(printed(&log_b, "user"), b.name);
    assert_eq!(printed(&log_b, "owner"), b.uid.to_string());
    assert_eq!(printed(&log_b, "conf"), "{}");
    let b_log = log_path(dir.path(), "team_b", "b");
    assert_eq!(
        std::fs::metadata(&b_log).unwrap().uid(),
        0,
        "written by updraft"
    );

    let probe = format!(
        "echo uid=$(id -u); cat {} && echo read_log; cat {} && echo read_database; \
         ls {} && echo listed_tries; true",
        b_log.display(),
        database.display(),
        work.display()
    );
    let (outcome, log_a) = run(&ex, &mut rx, dir.path(), "team_a", "a", &probe).await;
    assert_eq!(outcome, ExecOutcome::Success, "{log_a}");
    assert_eq!(printed(&log_a, "uid"), a.uid.to_string());
    for leak in ["read_log", "read_database", "listed_tries"] {
        assert!(!log_a.contains(leak), "{leak}:\n{log_a}");
    }
    assert!(log_a.contains("Permission denied"), "{log_a}");
}

fn nix_is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}
