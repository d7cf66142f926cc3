//! Shared helpers for the integration tests of the `updraft` binary.
//!
//! Every test makes its own [`Home`]: a temporary `UPDRAFT_HOME` with a `dags/` folder, so tests
//! are independent and can run in parallel. Commands run the real binary with `-o json` where
//! the output is parsed. Waiting is always polling with a deadline ([`wait_until`]), never a
//! fixed sleep.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod http;
pub mod tmpfs;

/// The deadline used by the `wait_*` helpers: generous, for slow shared CI machines.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(100);

/// The `updraft` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_updraft")
}

/// The result of one `updraft` invocation.
#[derive(Debug)]
pub struct CmdResult {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdResult {
    fn from_output(output: Output) -> CmdResult {
        CmdResult {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn success(&self) -> bool {
        self.status.success()
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// stdout parsed as JSON (panics with both streams when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }
}

impl std::fmt::Display for CmdResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// A temporary `UPDRAFT_HOME`, removed when dropped.
///
/// When a test fails, set `UPDRAFT_TEST_KEEP_HOME=1` to keep the home of failing tests (its path
/// is printed) for a look at the database, logs and the scheduler's output.
pub struct Home {
    dir: Option<tempfile::TempDir>,
    env: Vec<(String, String)>,
}

impl Drop for Home {
    fn drop(&mut self) {
        if std::thread::panicking()
            && std::env::var_os("UPDRAFT_TEST_KEEP_HOME").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!(
                "kept UPDRAFT_HOME of the failed test: {}",
                dir.keep().display()
            );
        }
    }
}

impl Default for Home {
    fn default() -> Self {
        Home::new()
    }
}

impl Home {
    /// A fresh home with an empty `dags/` folder. DAGs are unpaused at creation, the scheduler
    /// polls every 100 ms and rescans the folder every second, a stopped try gets 2 s between
    /// SIGTERM and SIGKILL, and example DAGs are not offered. Change any of it with
    /// [`Home::set_env`].
    pub fn new() -> Home {
        Self::new_in(&std::env::temp_dir())
    }

    /// [`Home::new`] in a folder of `parent` (e.g. a small file system of the test's own).
    pub fn new_in(parent: &Path) -> Home {
        let dir = tempfile::Builder::new()
            .prefix("updraft-test-")
            .tempdir_in(parent)
            .expect("creating a temporary UPDRAFT_HOME");
        fs::create_dir_all(dir.path().join("dags")).expect("creating dags/");
        let env = vec![
            (
                "UPDRAFT__CORE__DAGS_ARE_PAUSED_AT_CREATION".to_string(),
                "false".to_string(),
            ),
            (
                "UPDRAFT__CORE__LOAD_EXAMPLES".to_string(),
                "false".to_string(),
            ),
            (
                "UPDRAFT__SCHEDULER__POLL_INTERVAL".to_string(),
                "100ms".to_string(),
            ),
            (
                "UPDRAFT__SCHEDULER__RESCAN_INTERVAL".to_string(),
                "1s".to_string(),
            ),
            (
                "UPDRAFT__SCHEDULER__KILL_GRACE".to_string(),
                "2s".to_string(),
            ),
            // Tests run in parallel: let each server pick a free port.
            ("UPDRAFT__API__PORT".to_string(), "0".to_string()),
            // Most tests exercise what the API does, not who may call it; the tests of the web
            // UI, of API clients and of authentication turn it back on (`Home::with_auth`).
            ("UPDRAFT__AUTH__ENABLED".to_string(), "false".to_string()),
        ];
        Home {
            dir: Some(dir),
            env,
        }
    }

    /// Authentication on, as it is by default outside the tests.
    pub fn with_auth(self) -> Home {
        self.with_env("UPDRAFT__AUTH__ENABLED", "true")
    }

    /// Records a local user holding `role` for every tenant in this home's database, through
    /// `updraft users create` as an operator would.
    pub fn create_user(&self, username: &str, password: &str, role: &str) {
        let email = format!("{username}@example.com");
        self.ok(&[
            "users",
            "create",
            "--username",
            username,
            "--password",
            password,
            "--role",
            role,
            "--email",
            &email,
            "--firstname",
            username,
            "--lastname",
            "Tester",
        ]);
    }

    /// Set (or replace) an environment variable for every later command and scheduler, e.g.
    /// `home.set_env("UPDRAFT__SCHEDULER__SHUTDOWN_GRACE", "1s")`.
    pub fn set_env(&mut self, name: &str, value: &str) -> &mut Home {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Builder form of [`Home::set_env`].
    pub fn with_env(mut self, name: &str, value: &str) -> Home {
        self.set_env(name, value);
        self
    }

    pub fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("the home exists until dropped")
            .path()
    }

    pub fn dags(&self) -> PathBuf {
        self.path().join("dags")
    }

    pub fn logs_folder(&self) -> PathBuf {
        self.path().join("logs")
    }

    /// A scratch folder for files written by tasks (created on first use).
    pub fn work(&self) -> PathBuf {
        let work = self.path().join("work");
        fs::create_dir_all(&work).expect("creating work/");
        work
    }

    /// Write `dags/<name>` (name may contain sub-folders, e.g. `team_a/x.yaml`). The file is
    /// written to a temporary name and renamed, so a scanner never sees it half-written.
    pub fn write_dag(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.dags().join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("creating the DAG's folder");
        }
        let tmp = path.with_file_name(format!(
            ".{}.tmp",
            path.file_name().unwrap().to_string_lossy()
        ));
        fs::write(&tmp, yaml).expect("writing the DAG file");
        fs::rename(&tmp, &path).expect("renaming the DAG file");
        path
    }

    pub fn remove_dag(&self, name: &str) {
        fs::remove_file(self.dags().join(name)).expect("removing the DAG file");
    }

    /// A `Command` for `updraft ARGS` in this home (inherited `UPDRAFT*` variables removed).
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(bin());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("UPDRAFT") {
                cmd.env_remove(name);
            }
        }
        cmd.env("UPDRAFT_HOME", self.path());
        cmd.env("UPDRAFT_LOG", "warn");
        cmd.env("NO_COLOR", "1");
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        cmd.current_dir(self.path());
        cmd.args(args);
        cmd
    }

    /// Run `updraft ARGS` to completion, whatever its exit status.
    pub fn run(&self, args: &[&str]) -> CmdResult {
        let output = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .expect("running updraft");
        CmdResult::from_output(output)
    }

    /// Run `updraft ARGS`; panic (showing both streams) unless it exits 0.
    pub fn ok(&self, args: &[&str]) -> CmdResult {
        let result = self.run(args);
        assert!(
            result.success(),
            "`updraft {}` failed:\n{result}",
            args.join(" ")
        );
        result
    }

    /// Run `updraft -o json ARGS`, require exit 0, and parse stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-o", "json"];
        full.extend_from_slice(args);
        self.ok(&full).json()
    }

    /// Run `updraft ARGS`; panic unless it exits non-zero. Returns the result for checking
    /// the message.
    pub fn fails(&self, args: &[&str]) -> CmdResult {
        let result = self.run(args);
        assert!(
            !result.success(),
            "`updraft {}` was expected to fail:\n{result}",
            args.join(" ")
        );
        result
    }

    // ---- DAGs and runs ---------------------------------------------------------------------

    /// `dags list -o json`: the active DAGs.
    pub fn dags_list(&self) -> Vec<Value> {
        as_array(self.json(&["dags", "list"]))
    }

    /// `dags trigger DAG [--conf CONF] -o json`; returns the new run's `run_id`.
    pub fn trigger(&self, dag_id: &str, conf: Option<&str>) -> String {
        let mut args = vec!["dags", "trigger", dag_id];
        if let Some(conf) = conf {
            args.extend(["--conf", conf]);
        }
        let run = self.json(&args);
        run["run_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no run_id in {run}"))
            .to_string()
    }

    /// `dags list-runs DAG -o json`: the DAG's runs, newest first.
    pub fn runs(&self, dag_id: &str) -> Vec<Value> {
        as_array(self.json(&["dags", "list-runs", dag_id]))
    }

    /// One run of `dags list-runs`, by run id.
    pub fn run_row(&self, dag_id: &str, run_id: &str) -> Value {
        self.runs(dag_id)
            .into_iter()
            .find(|r| r["run_id"] == run_id)
            .unwrap_or_else(|| panic!("no run {run_id} of {dag_id}"))
    }

    /// The state of a run, from `dags list-runs`.
    pub fn run_state(&self, dag_id: &str, run_id: &str) -> String {
        str_of(&self.run_row(dag_id, run_id)["state"])
    }

    /// `tasks states-for-dag-run DAG RUN -o json`, keyed by task id.
    pub fn task_instances(&self, dag_id: &str, run_id: &str) -> BTreeMap<String, Value> {
        as_array(self.json(&["tasks", "states-for-dag-run", dag_id, run_id]))
            .into_iter()
            .map(|ti| (str_of(&ti["task_id"]), ti))
            .collect()
    }

    /// Task id → state for a run.
    pub fn task_states(&self, dag_id: &str, run_id: &str) -> BTreeMap<String, String> {
        self.task_instances(dag_id, run_id)
            .into_iter()
            .map(|(id, ti)| (id, str_of(&ti["state"])))
            .collect()
    }

    /// `tasks logs DAG RUN TASK [--try N]` stdout (panics if the command fails).
    pub fn logs(
        &self,
        dag_id: &str,
        run_id: &str,
        task_id: &str,
        try_number: Option<u32>,
    ) -> String {
        let try_text = try_number.map(|n| n.to_string());
        let mut args = vec!["tasks", "logs", dag_id, run_id, task_id];
        if let Some(t) = &try_text {
            args.extend(["--try", t.as_str()]);
        }
        self.ok(&args).stdout
    }

    /// Wait until the run is in a finished state (`success` or `failed`); returns that state.
    pub fn wait_run_finished(&self, dag_id: &str, run_id: &str) -> String {
        self.wait_run_finished_within(dag_id, run_id, DEFAULT_TIMEOUT)
    }

    pub fn wait_run_finished_within(
        &self,
        dag_id: &str,
        run_id: &str,
        timeout: Duration,
    ) -> String {
        wait_until(
            &format!("run {run_id} of {dag_id} to finish"),
            timeout,
            || {
                let state = self.run_state(dag_id, run_id);
                matches!(state.as_str(), "success" | "failed").then_some(state)
            },
        )
    }

    /// Wait until the DAG is listed by `dags list` (the CLI parses the folder itself).
    pub fn wait_dag_listed(&self, dag_id: &str) {
        wait_until(
            &format!("DAG {dag_id} to be listed"),
            DEFAULT_TIMEOUT,
            || {
                self.dags_list()
                    .iter()
                    .any(|d| d["dag_id"] == dag_id)
                    .then_some(())
            },
        )
    }

    /// Wait until a task instance is in `state`; returns its row.
    pub fn wait_task_state(&self, dag_id: &str, run_id: &str, task_id: &str, state: &str) -> Value {
        wait_until(
            &format!("{dag_id}.{task_id} in {run_id} to be {state}"),
            DEFAULT_TIMEOUT,
            || {
                self.task_instances(dag_id, run_id)
                    .remove(task_id)
                    .filter(|ti| ti["state"] == state)
            },
        )
    }

    /// Wait until a file exists (e.g. a marker written by a task); returns its contents.
    pub fn wait_file(&self, path: &Path) -> String {
        wait_until(
            &format!("{} to exist", path.display()),
            DEFAULT_TIMEOUT,
            || fs::read_to_string(path).ok(),
        )
    }

    // ---- the scheduler -------------------------------------------------------------------

    /// Start `updraft scheduler` in this home. It is killed when the handle is dropped.
    pub fn start_scheduler(&self) -> SchedulerProcess {
        self.start_service("scheduler")
    }

    /// Start `updraft standalone` in this home. It is killed when the handle is dropped.
    pub fn start_standalone(&self) -> SchedulerProcess {
        self.start_service("standalone")
    }

    /// Start `updraft server` (web UI and API without a scheduler) in this home. It is killed
    /// when the handle is dropped.
    pub fn start_server(&self) -> SchedulerProcess {
        self.start_service("server")
    }

    fn start_service(&self, command: &str) -> SchedulerProcess {
        let log_path = self.path().join(format!(
            "{command}-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let log = fs::File::create(&log_path).expect("creating the scheduler's log file");
        let mut cmd = self.command([command]);
        // The service's own log at info level, for diagnosing a failing test.
        cmd.env("UPDRAFT_LOG", "info");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning a file handle"))
            .stderr(log)
            .spawn()
            .expect("starting the scheduler");
        SchedulerProcess {
            child: Some(child),
            log_path,
        }
    }
}

/// A running `updraft scheduler` (or `standalone`). Killed (SIGKILL) and reaped on drop.
pub struct SchedulerProcess {
    child: Option<Child>,
    log_path: PathBuf,
}

impl SchedulerProcess {
    /// Starts `cmd` (any long-running `updraft` command) with its output in `log_path`.
    pub fn spawn(mut cmd: Command, log_path: PathBuf) -> SchedulerProcess {
        let log = fs::File::create(&log_path).expect("creating the service's log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning a file handle"))
            .stderr(log)
            .spawn()
            .expect("starting the service");
        SchedulerProcess {
            child: Some(child),
            log_path,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("the scheduler is running").id() as i32
    }

    /// The service's stdout and stderr so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Send a signal to the scheduler process (not its children).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal)
            .expect("signalling the scheduler");
    }

    /// Send SIGTERM.
    pub fn terminate(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    /// SIGKILL the scheduler and reap it (like a crash). Its local tries' processes are then
    /// killed by its reaper, as after any crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process has exited (without waiting).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("polling the scheduler"))
    }

    /// Wait (polling, with a deadline) for the process to exit; returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            if started.elapsed() > timeout {
                panic!(
                    "the scheduler did not exit within {timeout:?}; its output:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for SchedulerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- output of the scheduler ({}) ---\n{}--- end of the scheduler's output ---",
                self.log_path.display(),
                self.output()
            );
        }
    }
}

/// Poll `check` every [`POLL`] until it returns `Some`, or panic after `timeout` naming `what`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        if started.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// The JSON array's items (panics if not an array).
pub fn as_array(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        other => panic!("expected a JSON array, got {other}"),
    }
}

/// A JSON string's text (panics otherwise).
pub fn str_of(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a JSON string, got {value}"))
        .to_string()
}

/// A shell snippet appending the current time (seconds since the epoch, with nanoseconds) and
/// `label` as one line to `file`, for tasks to record when they ran.
pub fn stamp(file: &Path, label: &str) -> String {
    format!("echo \"$(date +%s.%N) {label}\" >> '{}'", file.display())
}

/// Lines written by [`stamp`]: (time in seconds, label).
pub fn read_stamps(file: &Path) -> Vec<(f64, String)> {
    let text = fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (t, label) = line.split_once(' ').unwrap_or((line, ""));
            let t: f64 = t.parse().unwrap_or_else(|e| {
                panic!("bad timestamp line `{line}` in {}: {e}", file.display())
            });
            (t, label.to_string())
        })
        .collect()
}

/// Whether a process with this pid exists (zombies count as gone).
pub fn process_alive(pid: i32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    // A zombie still answers signal 0; look at its state.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

/// A DAG of `layers` × `width` tasks `l<layer>_t<i>`, each layer waiting for the whole previous
/// one, every task running `bash` (YAML-quoted here). `header` holds the DAG's other keys
/// (`schedule`, `default_args`, ...), each line ending in a newline.
pub fn layered_dag_yaml(
    dag_id: &str,
    header: &str,
    layers: usize,
    width: usize,
    bash: &str,
) -> String {
    let mut yaml = format!("dag_id: {dag_id}\n{header}tasks:\n");
    let bash = serde_json::to_string(bash).expect("a JSON string");
    for layer in 0..layers {
        for i in 0..width {
            yaml.push_str(&format!("  - task_id: l{layer}_t{i}\n"));
            if layer > 0 {
                let upstream: Vec<String> =
                    (0..width).map(|j| format!("l{}_t{j}", layer - 1)).collect();
                yaml.push_str(&format!("    upstream: [{}]\n", upstream.join(", ")));
            }
            yaml.push_str(&format!("    bash: {bash}\n"));
        }
    }
    yaml
}
