//! The local executor against real processes. Synchronisation is by events, files and fifos;
//! the only waits on the clock are the timeouts and grace periods under test.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use tokio::sync::mpsc;
use updraft_dag::{Dag, Schedule, Task, TaskKind, TriggerRule, WeightRule, log_path};
use updraft_executor::render::render_task;
use updraft_executor::{
    ExecOutcome, LaunchSpec, LocalExecutor, LocalExecutorConfig, Program, RenderedTask,
    TemplateContext, TryEvent, TryKey,
};

const PATIENCE: Duration = Duration::from_secs(30);

struct Events {
    rx: mpsc::UnboundedReceiver<TryEvent>,
    buffered: Vec<TryEvent>,
    /// Every event in arrival order.
    history: Vec<TryEvent>,
}

impl Events {
    async fn next(&mut self) -> TryEvent {
        let ev = tokio::time::timeout(PATIENCE, self.rx.recv())
            .await
            .expect("no event in time")
            .expect("event channel closed");
        self.history.push(ev.clone());
        ev
    }

    async fn wait(&mut self, pred: impl Fn(&TryEvent) -> bool) -> TryEvent {
        if let Some(i) = self.buffered.iter().position(&pred) {
            return self.buffered.remove(i);
        }
        loop {
            let ev = self.next().await;
            if pred(&ev) {
                return ev;
            }
            self.buffered.push(ev);
        }
    }

    async fn started(&mut self, task: &str) -> Option<u32> {
        match self
            .wait(|e| matches!(e, TryEvent::Started { key, .. } if key.task_id == task))
            .await
        {
            TryEvent::Started { pid, .. } => pid,
            _ => unreachable!(),
        }
    }

    async fn finished(&mut self, task: &str) -> ExecOutcome {
        match self
            .wait(|e| matches!(e, TryEvent::Finished { key, .. } if key.task_id == task))
            .await
        {
            TryEvent::Finished { outcome, .. } => outcome,
            _ => unreachable!(),
        }
    }

    fn was_started(&self, task: &str) -> bool {
        self.history
            .iter()
            .any(|e| matches!(e, TryEvent::Started { key, .. } if key.task_id == task))
    }
}

fn executor(max_concurrency: usize, kill_grace: Duration) -> (LocalExecutor, Events) {
    let (tx, rx) = mpsc::unbounded_channel();
    let config = LocalExecutorConfig {
        max_concurrency,
        kill_grace,
        ..Default::default()
    };
    let events = Events {
        rx,
        buffered: Vec::new(),
        history: Vec::new(),
    };
    (LocalExecutor::new(config, tx), events)
}

fn key(task: &str) -> TryKey {
    TryKey {
        run_pk: 7,
        task_id: task.into(),
        map_index: -1,
        try_number: 1,
    }
}

fn bash(script: &str) -> RenderedTask {
    RenderedTask {
        secret_env: Vec::new(),
        mask: Default::default(),
        do_xcom_push: false,
        program: Program::Bash(script.into()),
        env: vec![],
        cwd: None,
        conf: "{}".into(),
    }
}

fn command(argv: &[&str]) -> RenderedTask {
    RenderedTask {
        secret_env: Vec::new(),
        mask: Default::default(),
        do_xcom_push: false,
        program: Program::Command(argv.iter().map(|s| s.to_string()).collect()),
        env: vec![],
        cwd: None,
        conf: "{}".into(),
    }
}

fn log_of(dir: &Path, task: &str) -> PathBuf {
    log_path(
        &dir.join("logs"),
        "default",
        "dag",
        "manual__2024-01-01T00:00:00+00:00",
        task,
        1,
    )
}

fn spec(dir: &Path, task: &str, rendered: RenderedTask, timeout: Option<Duration>) -> LaunchSpec {
    LaunchSpec {
        key: key(task),
        rendered,
        log_path: log_of(dir, task),
        timeout,
    }
}

fn read_log(dir: &Path, task: &str) -> String {
    std::fs::read_to_string(log_of(dir, task)).expect("log file exists")
}

fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(ok.success());
}

/// Lets a try blocked in `read line < fifo` finish (blocks until the try opens the fifo).
async fn release(fifo: PathBuf) {
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .expect("open fifo");
        writeln!(f, "go").expect("write fifo");
    })
    .await
    .unwrap();
}

/// True when the process no longer runs: absent, or a zombie waiting for its new parent.
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// Waits for the kernel to finish a process that was sent SIGKILL (no event exists for this).
async fn assert_gone(pid: u32) {
    let until = Instant::now() + Duration::from_secs(5);
    while !is_gone(pid) {
        assert!(Instant::now() < until, "process {pid} is still alive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn read_pid(path: &Path) -> u32 {
    // Written by the try before it blocks; the try is known to be past that point.
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_map_to_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let (ex, mut ev) = executor(8, Duration::from_secs(5));
    ex.launch(spec(dir.path(), "ok", bash("exit 0"), None));
    ex.launch(spec(dir.path(), "skip", bash("exit 99"), None));
    ex.launch(spec(dir.path(), "fail", bash("exit 3"), None));
    ex.launch(spec(dir.path(), "signal", bash("kill -KILL $$"), None));
    ex.launch(spec(dir.path(), "argv", command(&["false"]), None));

    assert_eq!(ev.finished("ok").await, ExecOutcome::Success);
    assert_eq!(ev.finished("skip").await, ExecOutcome::Skipped);
    assert_eq!(
        ev.finished("fail").await,
        ExecOutcome::Failed {
            exit_code: Some(3),
            signal: None,
            message: "exit code 3".into()
        }
    );
    assert_eq!(
        ev.finished("signal").await,
        ExecOutcome::Failed {
            exit_code: None,
            signal: Some(9),
            message: "killed by signal 9 (SIGKILL)".into()
        }
    );
    assert!(matches!(
        ev.finished("argv").await,
        ExecOutcome::Failed {
            exit_code: Some(1),
            ..
        }
    ));
    for t in ["ok", "skip", "fail", "signal", "argv"] {
        assert!(ev.was_started(t), "{t} reported Started before Finished");
    }
    let log = read_log(dir.path(), "skip");
    assert!(log.starts_with("[updraft] try 1 started at "), "{log}");
    assert!(
        log.contains("finished at ") && log.contains(": skipped (exit code 99) after "),
        "{log}"
    );
    assert_eq!(ex.running(), 0);
    assert_eq!(ex.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_and_stderr_share_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (ex, mut ev) = executor(2, Duration::from_secs(5));
    ex.launch(spec(
        dir.path(),
        "t",
        bash("echo to-out; echo to-err >&2; echo again-out; exit 1"),
        None,
    ));
    assert!(ev.started("t").await.is_some());
    assert!(matches!(
        ev.finished("t").await,
        ExecOutcome::Failed {
            exit_code: Some(1),
            ..
        }
    ));
    let log = read_log(dir.path(), "t");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 5, "{log}");
    assert!(lines[0].starts_with("[updraft] try 1 started at "));
    assert_eq!(&lines[1..4], ["to-out", "to-err", "again-out"]);
    assert!(
        lines[4].starts_with("[updraft] try 1 finished at ")
            && lines[4].contains("failed: exit code 1")
    );

    // A second try of the same task appends to its own file.
    let mut s = spec(dir.path(), "t", bash("echo second"), None);
    s.key.try_number = 2;
    s.log_path = log_path(&dir.path().join("logs"), "default", "dag", "r", "t", 2);
    ex.launch(s.clone());
    assert_eq!(ev.finished("t").await, ExecOutcome::Success);
    let second = std::fs::read_to_string(&s.log_path).unwrap();
    assert!(
        second.starts_with("[updraft] try 2 started at ") && second.contains("\nsecond\n"),
        "{second}"
    );
}

fn test_dag_and_task(kind: TaskKind) -> (Dag, Task) {
    let mut env = BTreeMap::new();
    env.insert("TASK_VAR".to_owned(), "ds={{ ds }}".to_owned());
    let task = Task {
        task_id: "env".into(),
        upstream: vec![],
        trigger_rule: TriggerRule::AllSuccess,
        retries: 0,
        retry_delay: Duration::from_secs(1),
        retry_exponential_backoff: false,
        max_retry_delay: None,
        execution_timeout: None,
        pool: "default_pool".into(),
        pool_slots: 1,
        priority_weight: 1,
        weight_rule: WeightRule::Downstream,
        depends_on_past: false,
        env,
        cwd: Some("work".into()),
        connections: vec![],
        branching: None,
        do_xcom_push: false,
        callbacks: Default::default(),
        outlets: vec![],
        expand: None,
        max_active_tis_per_dag: None,
        kind,
    };
    let mut dag_env = BTreeMap::new();
    dag_env.insert("DAG_VAR".to_owned(), "{{ dag.dag_id }}".to_owned());
    let dag = Dag {
        dag_id: "etl".into(),
        tenant: "acme".into(),
        fileloc: "etl.yaml".into(),
        description: None,
        schedule: Schedule::None,
        timezone: chrono_tz::UTC,
        start_date: None,
        end_date: None,
        catchup: false,
        max_active_runs: 1,
        max_active_tasks: 1,
        tags: vec![],
        params: BTreeMap::new(),
        env: dag_env,
        is_paused_upon_creation: None,
        groups: Vec::new(),
        run_callbacks: Default::default(),
        dagrun_timeout: None,
        tasks: vec![task.clone()],
    };
    (dag, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_environment_and_cwd_reach_the_process() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("work")).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let config = LocalExecutorConfig {
        max_concurrency: 2,
        kill_grace: Duration::from_secs(5),
        default_cwd: Some(dir.path().to_path_buf()),
        base_env: vec![
            ("BASE_VAR".into(), "base".into()),
            ("TASK_VAR".into(), "overridden".into()),
        ],
        ..Default::default()
    };
    let ex = LocalExecutor::new(config, tx);
    let mut ev = Events {
        rx,
        buffered: vec![],
        history: vec![],
    };

    let ctx = TemplateContext {
        secrets: Default::default(),
        xcoms: Default::default(),
        tenant: "acme".into(),
        dag_id: "etl".into(),
        run_id: "scheduled__2024-01-02T00:00:00+00:00".into(),
        task_id: "env".into(),
        try_number: 3,
        map_index: -1,
        mapped: Default::default(),
        logical_date: Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap(),
        data_interval_start: Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap(),
        data_interval_end: Utc.with_ymd_and_hms(2024, 1, 3, 0, 0, 0).unwrap(),
        conf: serde_json::json!({"k": "v"}),
        params: serde_json::Map::new(),
        run_type: "scheduled".into(),
        timezone: chrono_tz::UTC,
    };
    let (dag, task) = test_dag_and_task(TaskKind::Command(vec!["env".into()]));
    let rendered = render_task(&dag, &task, &ctx).unwrap();
    ex.launch(spec(dir.path(), "env", rendered, None));
    assert_eq!(ev.finished("env").await, ExecOutcome::Success);
    let log = read_log(dir.path(), "env");
    let vars: HashSet<&str> = log.lines().collect();
    for expected in [
        "UPDRAFT_TENANT=acme",
        "UPDRAFT_DAG_ID=etl",
        "UPDRAFT_TASK_ID=env",
        "UPDRAFT_RUN_ID=scheduled__2024-01-02T00:00:00+00:00",
        "UPDRAFT_TRY_NUMBER=3",
        "UPDRAFT_DS=2024-01-02",
        "UPDRAFT_DS_NODASH=20240102",
        "UPDRAFT_TS=2024-01-02T00:00:00+00:00",
        "UPDRAFT_LOGICAL_DATE=2024-01-02T00:00:00+00:00",
        "UPDRAFT_DATA_INTERVAL_START=2024-01-02T00:00:00+00:00",
        "UPDRAFT_DATA_INTERVAL_END=2024-01-03T00:00:00+00:00",
        r#"UPDRAFT_CONF={"k":"v"}"#,
        "AIRFLOW_CTX_DAG_ID=etl",
        "AIRFLOW_CTX_TASK_ID=env",
        "AIRFLOW_CTX_DAG_RUN_ID=scheduled__2024-01-02T00:00:00+00:00",
        "AIRFLOW_CTX_TRY_NUMBER=3",
        "AIRFLOW_CTX_LOGICAL_DATE=2024-01-02T00:00:00+00:00",
        "TASK_VAR=ds=2024-01-02",
        "DAG_VAR=etl",
        "BASE_VAR=base",
    ] {
        assert!(vars.contains(expected), "missing {expected} in:\n{log}");
    }
    let path = std::env::var("PATH").unwrap();
    assert!(
        vars.contains(format!("PATH={path}").as_str()),
        "the parent's environment is inherited"
    );

    // The relative `cwd` is taken from the executor's default working directory.
    let (dag, task) = test_dag_and_task(TaskKind::Bash("pwd".into()));
    let rendered = render_task(&dag, &task, &ctx).unwrap();
    ex.launch(spec(dir.path(), "pwd", rendered, None));
    assert_eq!(ev.finished("pwd").await, ExecOutcome::Success);
    let cwd = dir.path().join("work").canonicalize().unwrap();
    assert!(
        read_log(dir.path(), "pwd")
            .lines()
            .any(|l| Path::new(l) == cwd)
    );
}

/// A conf far over what the environment takes (Linux: 128 KiB per variable) reaches the task
/// whole through `UPDRAFT_CONF_FILE`; the file is the try's own and goes when the try ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_conf_reaches_the_task_through_its_file() {
    use sha2::Digest as _;
    let dir = tempfile::tempdir().unwrap();
    let (ex, mut ev) = executor(2, Duration::from_secs(5));
    let blob: String = (0..500 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let mut ctx = TemplateContext {
        secrets: Default::default(),
        xcoms: Default::default(),
        tenant: "acme".into(),
        dag_id: "etl".into(),
        run_id: "manual__2024-01-02T00:00:00+00:00".into(),
        task_id: "env".into(),
        try_number: 1,
        map_index: -1,
        mapped: Default::default(),
        logical_date: Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap(),
        data_interval_start: Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap(),
        data_interval_end: Utc.with_ymd_and_hms(2024, 1, 3, 0, 0, 0).unwrap(),
        conf: serde_json::json!({ "blob": blob, "n": 1 }),
        params: serde_json::Map::new(),
        run_type: "manual".into(),
        timezone: chrono_tz::UTC,
    };
    let script = "echo \"file=$UPDRAFT_CONF_FILE\"; echo \"in_env=${UPDRAFT_CONF:+yes}\"; \
                  sha256sum < \"$UPDRAFT_CONF_FILE\"; stat -c 'mode=%a' \"$UPDRAFT_CONF_FILE\"";
    let (dag, mut task) = test_dag_and_task(TaskKind::Bash(script.into()));
    task.cwd = None;
    let rendered = render_task(&dag, &task, &ctx).unwrap();
    let expected: String = sha2::Sha256::digest(rendered.conf.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(rendered.conf.len() > 500 * 1024);
    ex.launch(spec(dir.path(), "big", rendered, None));
    assert_eq!(ev.finished("big").await, ExecOutcome::Success);
    let log = read_log(dir.path(), "big");
    assert!(log.contains(&format!("{expected}  -")), "{log}");
    assert!(
        log.contains("in_env=\n"),
        "a large conf is not in the environment: {log}"
    );
    assert!(log.contains("mode=600"), "{log}");
    let file = log
        .lines()
        .find_map(|l| l.strip_prefix("file="))
        .expect("UPDRAFT_CONF_FILE is set");
    assert!(
        !Path::new(file).exists(),
        "the conf file is removed when the try ends"
    );

    // A cleaner of old temporary files removes the directory: the next try makes another.
    std::fs::remove_dir_all(Path::new(file).parent().unwrap()).unwrap();

    // A small conf is in both.
    ctx.conf = serde_json::json!({ "k": "v" });
    let (dag, mut task) = test_dag_and_task(TaskKind::Bash(
        "cat \"$UPDRAFT_CONF_FILE\"; echo; echo \"env=$UPDRAFT_CONF\"".into(),
    ));
    task.cwd = None;
    let rendered = render_task(&dag, &task, &ctx).unwrap();
    ex.launch(spec(dir.path(), "small", rendered, None));
    assert_eq!(ev.finished("small").await, ExecOutcome::Success);
    let log = read_log(dir.path(), "small");
    assert!(log.contains("{\"k\":\"v\"}\nenv={\"k\":\"v\"}\n"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_terminates_the_whole_group_escalating_to_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let grace = Duration::from_millis(300);
    let (ex, mut ev) = executor(2, grace);
    let pidfile = dir.path().join("grandchild.pid");
    let ready = dir.path().join("ready");
    mkfifo(&ready);
    // Everything in the group ignores SIGTERM: only the SIGKILL after the grace ends it.
    let script = format!(
        "trap '' TERM; sleep 100 & echo $! > {p}; echo up > {r}; wait; echo never",
        p = pidfile.display(),
        r = ready.display()
    );
    let timeout = Duration::from_millis(500);
    ex.launch(spec(dir.path(), "slow", bash(&script), Some(timeout)));
    let leader = ev.started("slow").await.unwrap();
    let started = Instant::now();
    // Proves the pid file is written (the try blocks opening the fifo until we read it).
    tokio::task::spawn_blocking(move || std::fs::read_to_string(ready).unwrap())
        .await
        .unwrap();
    let grandchild = read_pid(&pidfile);

    assert_eq!(ev.finished("slow").await, ExecOutcome::TimedOut);
    assert!(
        started.elapsed() >= grace,
        "SIGTERM was ignored, so SIGKILL came after the grace"
    );
    assert!(is_gone(leader), "the leader is reaped before Finished");
    assert_gone(grandchild).await;
    let log = read_log(dir.path(), "slow");
    assert!(
        log.contains("execution_timeout of 0.500s exceeded"),
        "{log}"
    );
    assert!(log.contains(": timed out after "), "{log}");
    assert!(!log.contains("never"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_with_a_cooperative_group() {
    let dir = tempfile::tempdir().unwrap();
    let (ex, mut ev) = executor(2, Duration::from_secs(20));
    let pidfile = dir.path().join("grandchild.pid");
    let ready = dir.path().join("ready");
    mkfifo(&ready);
    let script = format!(
        "sleep 100 & echo $! > {p}; echo up > {r}; sleep 100",
        p = pidfile.display(),
        r = ready.display()
    );
    ex.launch(spec(
        dir.path(),
        "slow",
        bash(&script),
        Some(Duration::from_millis(300)),
    ));
    ev.started("slow").await;
    tokio::task::spawn_blocking(move || std::fs::read_to_string(ready).unwrap())
        .await
        .unwrap();
    let grandchild = read_pid(&pidfile);
    let t0 = Instant::now();
    assert_eq!(ev.finished("slow").await, ExecOutcome::TimedOut);
    assert_gone(grandchild).await;
    // SIGTERM ended everything; the 20 s grace was not needed (up to zombies awaiting reaping).
    assert!(t0.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ends_a_running_try_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let (ex, mut ev) = executor(2, Duration::from_secs(5));
    let pidfile = dir.path().join("child.pid");
    let ready = dir.path().join("ready");
    mkfifo(&ready);
    let script = format!(
        "sleep 100 & echo $! > {p}; echo up > {r}; wait",
        p = pidfile.display(),
        r = ready.display()
    );
    ex.launch(spec(dir.path(), "victim", bash(&script), None));
    ev.started("victim").await;
    tokio::task::spawn_blocking(move || std::fs::read_to_string(ready).unwrap())
        .await
        .unwrap();
    let child = read_pid(&pidfile);

    assert!(!ex.kill(&key("nobody")));
    assert!(ex.kill(&key("victim")));
    assert_eq!(ev.finished("victim").await, ExecOutcome::Killed);
    assert!(!ex.kill(&key("victim")), "no longer in flight");
    assert_gone(child).await;
    let log = read_log(dir.path(), "victim");
    assert!(
        log.contains("kill requested") && log.contains(": killed after "),
        "{log}"
    );
    assert_eq!(ex.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_of_a_queued_try_reports_it_without_starting_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ex, mut ev) = executor(1, Duration::from_secs(5));
    let fifo = dir.path().join("hold");
    mkfifo(&fifo);
    ex.launch(spec(
        dir.path(),
        "holder",
        bash(&format!("read x < {}", fifo.display())),
        None,
    ));
    ex.launch(spec(dir.path(), "queued", bash("exit 0"), None));
    ev.started("holder").await;
    assert_eq!((ex.running(), ex.in_flight()), (1, 2));
    assert!(ex.kill(&key("queued")));
    assert_eq!(ev.finished("queued").await, ExecOutcome::Killed);
    assert!(!ev.was_started("queued"));
    assert!(!log_of(dir.path(), "queued").exists());
    release(fifo).await;
    assert_eq!(ev.finished("holder").await, ExecOutcome::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (ex, mut ev) = executor(2, Duration::from_secs(5));
    let names = ["a", "b", "c", "d"];
    for n in names {
        let fifo = dir.path().join(format!("fifo-{n}"));
        mkfifo(&fifo);
        ex.launch(spec(
            dir.path(),
            n,
            bash(&format!("read x < {}", fifo.display())),
            None,
        ));
    }
    let (mut in_progress, mut max_seen) = (0usize, 0usize);
    let (mut started, mut released, mut finished) = (Vec::new(), 0usize, 0usize);
    let mut checked_full = false;
    while finished < names.len() {
        match ev.next().await {
            TryEvent::Started { key, .. } => {
                in_progress += 1;
                started.push(key.task_id);
            }
            TryEvent::Finished { outcome, .. } => {
                assert_eq!(outcome, ExecOutcome::Success);
                in_progress -= 1;
                finished += 1;
            }
        }
        max_seen = max_seen.max(in_progress);
        assert!(
            in_progress <= 2,
            "more than 2 tries between Started and Finished"
        );
        if in_progress == 2 && !checked_full {
            // Two tries hold the slots (blocked on their fifos), two wait.
            assert_eq!((ex.running(), ex.in_flight()), (2, 4));
            checked_full = true;
        }
        // Release one try at a time, only when the slots are full (or nothing else can start).
        if (in_progress == 2 || started.len() == names.len())
            && released == finished
            && released < started.len()
        {
            release(dir.path().join(format!("fifo-{}", started[released]))).await;
            released += 1;
        }
    }
    assert_eq!(max_seen, 2);
    // Slots are given in launch order (the first two race only in fork/exec).
    assert_eq!(&started[2..], ["c", "d"]);
    let mut first: Vec<_> = started[..2].to_vec();
    first.sort();
    assert_eq!(first, ["a", "b"]);
    assert_eq!((ex.running(), ex.in_flight()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_the_grace_then_kills() {
    let dir = tempfile::tempdir().unwrap();
    let (ex, mut ev) = executor(2, Duration::from_millis(200));
    let fifo = dir.path().join("finisher");
    mkfifo(&fifo);
    ex.launch(spec(
        dir.path(),
        "finisher",
        bash(&format!("read x < {}", fifo.display())),
        None,
    ));
    ex.launch(spec(dir.path(), "sleeper", bash("sleep 100"), None));
    ex.launch(spec(dir.path(), "queued", bash("exit 0"), None));
    ev.started("finisher").await;
    ev.started("sleeper").await;

    let grace = Duration::from_secs(2);
    let t0 = Instant::now();
    let shutdown = tokio::spawn({
        let ex = ex.clone();
        async move { ex.shutdown(grace).await }
    });
    // A try still waiting for a slot is cancelled as soon as shutdown begins.
    assert_eq!(ev.finished("queued").await, ExecOutcome::Killed);
    assert!(!ev.was_started("queued"));
    // A running try may still finish on its own during the grace.
    release(fifo).await;
    assert_eq!(ev.finished("finisher").await, ExecOutcome::Success);
    // The rest is killed once the grace is over.
    assert_eq!(ev.finished("sleeper").await, ExecOutcome::Killed);
    assert!(t0.elapsed() >= grace);
    tokio::time::timeout(PATIENCE, shutdown)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ex.running(), ex.in_flight()), (0, 0));

    // No new work after shutdown.
    ex.launch(spec(dir.path(), "late", bash("exit 0"), None));
    assert_eq!(ev.finished("late").await, ExecOutcome::Killed);
    assert!(!log_of(dir.path(), "late").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_returns_early_when_everything_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let (ex, mut ev) = executor(2, Duration::from_secs(5));
    ex.launch(spec(dir.path(), "quick", bash("exit 0"), None));
    let t0 = Instant::now();
    tokio::time::timeout(PATIENCE, ex.shutdown(Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(60));
    // Either it got to run (and succeeded) or shutdown cancelled it before it had a slot.
    let outcome = ev.finished("quick").await;
    assert!(
        matches!(outcome, ExecOutcome::Success | ExecOutcome::Killed),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_failures_are_failed_tries_with_the_reason_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (ex, mut ev) = executor(2, Duration::from_secs(5));
    ex.launch(spec(
        dir.path(),
        "missing",
        command(&["/nonexistent/program", "x"]),
        None,
    ));
    let mut bad_cwd = bash("true");
    bad_cwd.cwd = Some("/nonexistent/dir".into());
    ex.launch(spec(dir.path(), "bad-cwd", bad_cwd, None));
    ex.launch(spec(dir.path(), "empty", command(&[]), None));

    for (task, needle) in [
        ("missing", "cannot start `/nonexistent/program`"),
        ("bad-cwd", "in /nonexistent/dir"),
        ("empty", "empty command"),
    ] {
        match ev.finished(task).await {
            ExecOutcome::Failed {
                exit_code: None,
                signal: None,
                message,
            } => {
                assert!(message.contains(needle), "{task}: {message}");
                let log = read_log(dir.path(), task);
                assert!(log.starts_with("[updraft] try 1 started at "), "{log}");
                assert!(
                    log.contains(&message),
                    "{task}: the log holds the reason: {log}"
                );
            }
            other => panic!("{task}: {other:?}"),
        }
        assert!(!ev.was_started(task), "{task} never started");
    }
    assert_eq!(ex.in_flight(), 0);
}

/// The times on the events bracket the process's life as the process itself saw it (it
/// writes the wall clock on entry and on exit), so start and end dates are when the try ran,
/// not when the scheduler got round to recording them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_times_bracket_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let (ex, mut ev) = executor(2, Duration::from_secs(5));
    let clock = dir.path().join("clock");
    let script = format!(
        "date +%s%6N > {c}; sleep 0.05; date +%s%6N >> {c}",
        c = clock.display()
    );
    ex.launch(spec(dir.path(), "timed", bash(&script), None));
    let started_at = match ev.wait(|e| matches!(e, TryEvent::Started { .. })).await {
        TryEvent::Started { at, .. } => at,
        _ => unreachable!(),
    };
    let ended_at = match ev.wait(|e| matches!(e, TryEvent::Finished { .. })).await {
        TryEvent::Finished { outcome, at, .. } => {
            assert_eq!(outcome, ExecOutcome::Success);
            at
        }
        _ => unreachable!(),
    };
    let seen: Vec<i64> = std::fs::read_to_string(&clock)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let (entered, left) = (seen[0], seen[1]);
    assert!(
        started_at.timestamp_micros() <= entered,
        "started after the process ran"
    );
    assert!(
        ended_at.timestamp_micros() >= left,
        "ended before the process finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noop_duplicates_and_reported_failures() {
    let dir = tempfile::tempdir().unwrap();
    let (ex, mut ev) = executor(2, Duration::from_secs(5));
    let noop = RenderedTask {
        secret_env: Vec::new(),
        mask: Default::default(),
        do_xcom_push: false,
        program: Program::Noop,
        env: vec![],
        cwd: None,
        conf: "{}".into(),
    };
    ex.launch(spec(dir.path(), "noop", noop, None));
    let started_at = match ev.next().await {
        TryEvent::Started { key: k, pid, at } => {
            assert_eq!((k, pid), (key("noop"), None));
            at
        }
        other => panic!("expected Started, got {other:?}"),
    };
    match ev.next().await {
        TryEvent::Finished {
            key: k,
            outcome,
            at,
            xcoms,
        } => {
            assert_eq!((k, outcome), (key("noop"), ExecOutcome::Success));
            assert!(xcoms.is_empty(), "a noop pushes nothing");
            assert!(at >= started_at);
        }
        other => panic!("expected Finished, got {other:?}"),
    }

    let fifo = dir.path().join("hold");
    mkfifo(&fifo);
    ex.launch(spec(
        dir.path(),
        "dup",
        bash(&format!("read x < {}", fifo.display())),
        None,
    ));
    ev.started("dup").await;
    ex.launch(spec(dir.path(), "dup", bash("exit 0"), None));
    match ev.finished("dup").await {
        ExecOutcome::Failed { message, .. } => {
            assert!(message.contains("already in flight"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    release(fifo).await;
    assert_eq!(ev.finished("dup").await, ExecOutcome::Success);

    let message = "task `x`, field `bash`: undefined variable `dss`".to_owned();
    ex.report_failure(key("render"), log_of(dir.path(), "render"), message.clone());
    assert_eq!(
        ev.finished("render").await,
        ExecOutcome::Failed {
            exit_code: None,
            signal: None,
            message: message.clone()
        }
    );
    assert!(read_log(dir.path(), "render").contains(&message));
}

/// Measures the delay from a process's last statement to its `Finished` event.
/// `cargo test -p updraft-executor --release -- --ignored --nocapture latency`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn latency_exit_to_event() {
    let dir = tempfile::tempdir().unwrap();
    let (ex, mut ev) = executor(1, Duration::from_secs(5));
    let mut delays = Vec::new();
    for i in 0..200 {
        let stamp = dir.path().join(format!("stamp-{i}"));
        let task = format!("t{i}");
        let script = format!("echo $EPOCHREALTIME > {}; exit 0", stamp.display());
        ex.launch(spec(dir.path(), &task, bash(&script), None));
        assert_eq!(ev.finished(&task).await, ExecOutcome::Success);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let then: f64 = std::fs::read_to_string(&stamp)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        delays.push((now.as_secs_f64() - then) * 1e6);
    }
    delays.sort_by(f64::total_cmp);
    let pct = |p: usize| delays[delays.len() * p / 100];
    println!(
        "last statement -> Finished event, µs: p50 {:.0} p90 {:.0} p99 {:.0}",
        pct(50),
        pct(90),
        pct(99)
    );
}

#[test]
#[ignore = "baseline"]
fn latency_baseline_std_wait() {
    let dir = tempfile::tempdir().unwrap();
    let mut delays = Vec::new();
    for i in 0..200 {
        let stamp = dir.path().join(format!("stamp-{i}"));
        let script = format!("echo $EPOCHREALTIME > {}; exit 0", stamp.display());
        let st = std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .status()
            .unwrap();
        assert!(st.success());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let then: f64 = std::fs::read_to_string(&stamp)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        delays.push((now.as_secs_f64() - then) * 1e6);
    }
    delays.sort_by(f64::total_cmp);
    let pct = |p: usize| delays[delays.len() * p / 100];
    println!(
        "baseline std wait, µs: p50 {:.0} p90 {:.0} p99 {:.0}",
        pct(50),
        pct(90),
        pct(99)
    );
}

/// Set in the process [`a_try_never_outlives_its_executors_process`] starts: the executor's
/// process, which writes the try's pids to this file and then waits to be killed.
const EXECUTOR_PROCESS: &str = "UPDRAFT_TEST_EXECUTOR_PROCESS";

#[test]
fn a_try_never_outlives_its_executors_process() {
    if let Some(pids) = std::env::var_os(EXECUTOR_PROCESS) {
        run_a_try_until_killed(Path::new(&pids));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // This test again, in a process of its own, as the executor's process.
    let mut process = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_try_never_outlives_its_executors_process",
            "--nocapture",
        ])
        .env(EXECUTOR_PROCESS, &pids)
        .spawn()
        .unwrap();
    let until = Instant::now() + PATIENCE;
    let recorded = loop {
        if let Ok(text) = std::fs::read_to_string(&pids)
            && text.ends_with('\n')
        {
            break text;
        }
        assert!(Instant::now() < until, "the try did not start");
        std::thread::sleep(Duration::from_millis(10));
    };
    let pids: Vec<u32> = recorded
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(pids.iter().all(|pid| !is_gone(*pid)), "{pids:?}");
    process.kill().unwrap();
    process.wait().unwrap();
    // The try's leader and the other process in its group, both killed by the reaper.
    let until = Instant::now() + Duration::from_secs(3);
    while !pids.iter().all(|pid| is_gone(*pid)) {
        assert!(
            Instant::now() < until,
            "the try outlived its executor: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The executor's side of [`a_try_never_outlives_its_executors_process`].
fn run_a_try_until_killed(pids: &Path) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (ex, mut events) = executor(1, Duration::from_secs(1));
        let script = format!(
            "sleep 60 & echo \"$$ $!\" > '{0}.tmp'; mv '{0}.tmp' '{0}'; sleep 60",
            pids.display()
        );
        ex.launch(spec(dir.path(), "t", bash(&script), None));
        events.finished("t").await;
        panic!("the try ended before its executor was killed");
    });
}
