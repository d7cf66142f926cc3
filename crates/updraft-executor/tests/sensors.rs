//! In-process pokes in the local executor: no process and no slot, `Started` without a pid,
//! then `Poked`; a poke bounded by its timeout, stopped by a kill and by shutdown; an external
//! state in `failed_states` failing (or, with `soft_fail`, skipping) the try; a `bash` check run
//! as a short process whose exit code is the answer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use updraft_dag::SensorTiming;
use updraft_executor::{
    ExecOutcome, ExternalQuery, LaunchSpec, LocalExecutor, LocalExecutorConfig, PokeCheck,
    PokeResult, Program, RenderedTask, SensorProgram, SensorStates, StatesFuture, TryEvent, TryKey,
};

/// Answers every query with `state`, or never when `None`.
#[derive(Debug)]
struct Fixed(Option<&'static str>);

impl SensorStates for Fixed {
    fn external_state<'a>(&'a self, _: &'a ExternalQuery) -> StatesFuture<'a> {
        let state = self.0;
        Box::pin(async move {
            match state {
                Some(s) => Ok(Some(s.to_owned())),
                None => std::future::pending().await,
            }
        })
    }
}

fn sensor(check: PokeCheck, soft_fail: bool, first_poke: Option<DateTime<Utc>>) -> RenderedTask {
    RenderedTask {
        secret_env: Vec::new(),
        mask: Default::default(),
        do_xcom_push: false,
        program: Program::Sensor(Box::new(SensorProgram {
            check,
            timing: SensorTiming {
                soft_fail,
                ..SensorTiming::default()
            },
            first_poke,
            rescheduled: 2,
        })),
        env: vec![],
        cwd: None,
        conf: "{}".into(),
    }
}

fn external() -> PokeCheck {
    PokeCheck::ExternalTask(ExternalQuery {
        tenant: "acme".into(),
        dag_id: "producer".into(),
        task_id: None,
        logical_date: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        allowed_states: vec!["success".into()],
        failed_states: vec!["failed".into()],
    })
}

fn spec(dir: &Path, task: &str, rendered: RenderedTask, timeout: Option<Duration>) -> LaunchSpec {
    LaunchSpec {
        key: TryKey {
            run_pk: 1,
            task_id: task.into(),
            try_number: 1,
            map_index: -1,
        },
        rendered,
        log_path: dir.join(format!("{task}.log")),
        timeout,
    }
}

fn executor(
    states: Fixed,
    poke_timeout: Duration,
) -> (LocalExecutor, mpsc::UnboundedReceiver<TryEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let config = LocalExecutorConfig {
        max_concurrency: 1,
        kill_grace: Duration::from_secs(1),
        sensor_states: Some(Arc::new(states)),
        poke_timeout,
        ..LocalExecutorConfig::default()
    };
    (LocalExecutor::new(config, tx), rx)
}

/// The try's `Started` (its pid) and `Finished` outcome.
async fn events(rx: &mut mpsc::UnboundedReceiver<TryEvent>) -> (Option<u32>, ExecOutcome) {
    let mut pid = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap()
            .unwrap()
        {
            TryEvent::Started { pid: p, .. } => pid = p,
            TryEvent::Finished { outcome, .. } => return (pid, outcome),
        }
    }
}

#[tokio::test]
async fn a_poke_runs_in_process_and_reports_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (exec, mut rx) = executor(Fixed(Some("running")), Duration::from_secs(30));
    let first = DateTime::from_timestamp(1_600_000_000, 0).unwrap();
    exec.launch(spec(
        dir.path(),
        "wait",
        sensor(external(), false, Some(first)),
        None,
    ));
    let (pid, outcome) = events(&mut rx).await;
    assert_eq!(pid, None, "no process");
    let ExecOutcome::Poked(poke) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(poke.result, PokeResult::NotYet);
    assert_eq!(
        poke.first_poke, first,
        "the try's first poke, as the scheduler read it"
    );
    assert_eq!(poke.poke_number, 3, "two pokes rescheduled before this one");
    assert_eq!(exec.running(), 0, "a poke takes no slot");
    let log = std::fs::read_to_string(dir.path().join("wait.log")).unwrap();
    assert!(
        log.contains("DAG producer at logical date") && log.contains("is running"),
        "{log}"
    );

    let (exec, mut rx) = executor(Fixed(Some("success")), Duration::from_secs(30));
    exec.launch(spec(
        dir.path(),
        "done",
        sensor(external(), false, None),
        None,
    ));
    let (_, outcome) = events(&mut rx).await;
    let ExecOutcome::Poked(poke) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(poke.result, PokeResult::Done);
    assert!(
        poke.first_poke <= Utc::now(),
        "a first poke counts from its own start"
    );
}

#[tokio::test]
async fn a_failed_state_fails_the_try_or_skips_it_with_soft_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (exec, mut rx) = executor(Fixed(Some("failed")), Duration::from_secs(30));
    exec.launch(spec(
        dir.path(),
        "hard",
        sensor(external(), false, None),
        None,
    ));
    let (_, outcome) = events(&mut rx).await;
    assert!(
        matches!(&outcome, ExecOutcome::Failed { message, .. } if message.contains("failed_states")),
        "{outcome:?}"
    );
    exec.launch(spec(
        dir.path(),
        "soft",
        sensor(external(), true, None),
        None,
    ));
    assert_eq!(events(&mut rx).await.1, ExecOutcome::Skipped);
}

#[tokio::test]
async fn a_poke_is_bounded_by_its_timeout_and_stopped_by_a_kill_or_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (exec, mut rx) = executor(Fixed(None), Duration::from_millis(200));
    exec.launch(spec(
        dir.path(),
        "slow",
        sensor(external(), false, None),
        None,
    ));
    assert_eq!(
        events(&mut rx).await.1,
        ExecOutcome::TimedOut,
        "poke_timeout"
    );
    exec.launch(spec(
        dir.path(),
        "bounded",
        sensor(external(), false, None),
        Some(Duration::from_millis(100)),
    ));
    assert_eq!(
        events(&mut rx).await.1,
        ExecOutcome::TimedOut,
        "execution_timeout"
    );

    let (exec, mut rx) = executor(Fixed(None), Duration::from_secs(3600));
    exec.launch(spec(
        dir.path(),
        "killed",
        sensor(external(), false, None),
        None,
    ));
    let key = TryKey {
        run_pk: 1,
        task_id: "killed".into(),
        try_number: 1,
        map_index: -1,
    };
    assert!(matches!(rx.recv().await, Some(TryEvent::Started { .. })));
    assert!(exec.kill(&key));
    assert_eq!(events(&mut rx).await.1, ExecOutcome::Killed);

    exec.launch(spec(
        dir.path(),
        "stopped",
        sensor(external(), false, None),
        None,
    ));
    assert!(matches!(rx.recv().await, Some(TryEvent::Started { .. })));
    assert_eq!(exec.in_flight(), 1);
    exec.shutdown(Duration::from_millis(100)).await;
    assert_eq!(events(&mut rx).await.1, ExecOutcome::Killed);
    assert_eq!(exec.in_flight(), 0);
}

#[tokio::test]
async fn a_bash_check_is_a_short_process_whose_exit_code_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (exec, mut rx) = executor(Fixed(None), Duration::from_secs(30));
    let check = |script: &str| PokeCheck::Process(Box::new(Program::Bash(script.into())));
    for (task, script, expected) in [
        ("yes", "exit 0", Some(PokeResult::Done)),
        ("no", "exit 1", Some(PokeResult::NotYet)),
        ("skip", "exit 99", None),
    ] {
        exec.launch(spec(
            dir.path(),
            task,
            sensor(check(script), false, None),
            None,
        ));
        let (pid, outcome) = events(&mut rx).await;
        assert!(pid.is_some(), "{task}: a process ran");
        match expected {
            Some(result) => {
                let ExecOutcome::Poked(poke) = outcome else {
                    panic!("{task}: {outcome:?}")
                };
                assert_eq!(poke.result, result, "{task}");
            }
            None => assert_eq!(outcome, ExecOutcome::Skipped, "{task}"),
        }
    }
}
