//! A local try gets none of the scheduler's environment but the allow-list: the only test of
//! this binary, as it sets this process's environment before starting anything.

use std::time::Duration;

use tokio::sync::mpsc;
use updraft_executor::{
    ExecOutcome, LaunchSpec, LocalExecutor, LocalExecutorConfig, Program, RenderedTask, TryEvent,
    TryIsolation, TryKey,
};

#[test]
fn a_try_sees_only_the_allowed_part_of_the_schedulers_environment() {
    // SAFETY: no other thread runs yet (the only test of this binary, before the runtime).
    unsafe {
        std::env::set_var("UPDRAFT__DATABASE__URL", "postgres://u:hunter2@db/updraft");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "sekrit");
        std::env::set_var("SITE_REGION", "eu-west-1");
        std::env::set_var("TZ", "Europe/Paris");
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/try.log");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let outcome = runtime.block_on(async {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let ex = LocalExecutor::new(
            LocalExecutorConfig {
                isolation: TryIsolation {
                    env_allowlist: vec!["PATH".into(), "TZ".into(), "SITE_*".into()],
                    ..TryIsolation::default()
                },
                ..Default::default()
            },
            tx,
        );
        ex.launch(LaunchSpec {
            key: TryKey {
                run_pk: 1,
                task_id: "env".into(),
                map_index: -1,
                try_number: 1,
            },
            rendered: RenderedTask {
                secret_env: Vec::new(),
                mask: Default::default(),
                do_xcom_push: false,
                program: Program::Command(vec!["env".into()]),
                env: vec![
                    ("OWN_VAR".into(), "mine".into()),
                    ("UPDRAFT_TENANT".into(), "team_a".into()),
                ],
                cwd: None,
                conf: "{}".into(),
            },
            log_path: log.clone(),
            timeout: None,
        });
        loop {
            let event = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("the try ends in time")
                .expect("events flow");
            if let TryEvent::Finished { outcome, .. } = event {
                return outcome;
            }
        }
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(outcome, ExecOutcome::Success, "{text}");
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once('=').map(|(name, _)| name))
        .filter(|name| !name.starts_with("[updraft]"))
        .collect();
    for present in [
        "PATH",
        "TZ",
        "SITE_REGION",
        "OWN_VAR",
        "UPDRAFT_TENANT",
        "UPDRAFT_TRY_MARK",
        "UPDRAFT_CONF_FILE",
        "UPDRAFT_XCOM_PATH",
        "HOME",
        "TMPDIR",
    ] {
        assert!(names.contains(&present), "{present} missing:\n{text}");
    }
    for absent in ["UPDRAFT__DATABASE__URL", "AWS_SECRET_ACCESS_KEY"] {
        assert!(!names.contains(&absent), "{absent} leaked:\n{text}");
    }
    assert!(
        !text.contains("hunter2") && !text.contains("sekrit"),
        "{text}"
    );
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "HOME",
            "OWN_VAR",
            "PATH",
            "SITE_REGION",
            "TMPDIR",
            "TZ",
            "UPDRAFT_CONF_FILE",
            "UPDRAFT_TENANT",
            "UPDRAFT_TRY_MARK",
            "UPDRAFT_XCOM_PATH"
        ],
        "nothing else"
    );
}
