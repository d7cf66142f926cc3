//! Several schedulers on one PostgreSQL database, through the real binary: every try runs
//! exactly once, a scheduler killed mid-run has its tries retried by the others, and a
//! PostgreSQL restart mid-run is survived.
//!
//! Every task appends `+<dag>/<run>/<task>/<try>` to one file when it starts and
//! `<dag>/<run>/<task>/<try>` when it ends; the tests compare that file with the task instances
//! recorded in the database, and check that no try ended after its retry started. Needs PostgreSQL: `UPDRAFT_TEST_POSTGRES_URL`
//! (set by `scripts/test`) for the shared server, and PostgreSQL 15's `initdb`/`pg_ctl` for the
//! restart test's own cluster. Without them the tests fail; they never skip.

mod common;
#[path = "common/pg.rs"]
mod pg;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::http::{api_address, get_json};
use common::{Home, SchedulerProcess, wait_until};
use pg::{PgCluster, TestDatabase, WORKLOAD_TIMEOUT, with_store};
use updraft_core::{RunState, TaskState};
use updraft_store::{JobState, NewestRunsFilter, Store, TiRow};

/// `dags` DAGs of `layers` × `width` tasks; each layer waits for the whole previous one. Each
/// task appends `+<its try>` to `ledger`, sleeps as many seconds as the file
/// [`sleep_file`]`(ledger)` says when it starts (`sleep` at first), then appends its try. One
/// `@once` run per DAG.
fn write_workload(
    home: &Home,
    dags: usize,
    layers: usize,
    width: usize,
    sleep: &str,
    retries: u32,
    ledger: &Path,
) {
    let sleep_file = sleep_file(ledger);
    std::fs::write(&sleep_file, sleep).unwrap();
    let this_try = "{{ ti.dag_id }}/{{ run_id }}/{{ ti.task_id }}/{{ ti.try_number }}";
    let bash = format!(
        "echo '+{this_try}' >> '{ledger}'; sleep $(< '{sleep}'); echo '{this_try}' >> '{ledger}'",
        ledger = ledger.display(),
        sleep = sleep_file.display(),
    );
    let header = format!(
        "schedule: \"@once\"\nstart_date: 2024-01-01\n\
         default_args:\n  retries: {retries}\n  retry_delay: 0s\n"
    );
    for d in 0..dags {
        let dag_id = format!("ha_{d:02}");
        let yaml = common::layered_dag_yaml(&dag_id, &header, layers, width, &bash);
        home.write_dag(&format!("{dag_id}.yaml"), &yaml);
    }
}

/// A home whose commands use `database_url`, with fast heartbeats.
fn ha_home(database_url: &str, health_check_threshold: &str) -> Home {
    Home::new()
        .with_env("UPDRAFT__DATABASE__URL", database_url)
        .with_env("UPDRAFT__DATABASE__ACQUIRE_TIMEOUT", "2s")
        .with_env("UPDRAFT__SCHEDULER__HEARTBEAT_INTERVAL", "200ms")
        .with_env(
            "UPDRAFT__SCHEDULER__HEALTH_CHECK_THRESHOLD",
            health_check_threshold,
        )
}

/// The file whose number of seconds the workload's tasks sleep.
fn sleep_file(ledger: &Path) -> std::path::PathBuf {
    ledger.with_extension("sleep")
}

/// The ledger's ends of tries, counted.
fn ledger_counts(ledger: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(ledger).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('+')) {
        *counts.entry(line.to_string()).or_insert(0) += 1;
    }
    counts
}

/// No try ended after the next try of its instance started: of the ledger's lines, each end of
/// try `n` precedes the start of try `n + 1`. Returns the number of retries seen.
fn assert_no_try_ends_after_its_retry_starts(ledger: &Path) -> usize {
    let text = std::fs::read_to_string(ledger).unwrap_or_default();
    let mut started = BTreeMap::new();
    let mut ended = BTreeMap::new();
    for (at, line) in text.lines().enumerate() {
        let (ends, name) = match line.strip_prefix('+') {
            Some(name) => (&mut started, name),
            None => (&mut ended, line),
        };
        let (instance, try_number) = name.rsplit_once('/').expect("a ledger line");
        let try_number: u32 = try_number.parse().expect("a try number");
        ends.insert((instance.to_string(), try_number), at);
    }
    let mut retries = 0;
    for ((instance, try_number), start) in &started {
        let Some(previous) = try_number.checked_sub(1).filter(|n| *n > 0) else {
            continue;
        };
        retries += 1;
        if let Some(end) = ended.get(&(instance.clone(), previous)) {
            assert!(
                end < start,
                "{instance}: try {previous} ended (line {end}) after try {try_number} started (line {start})"
            );
        }
    }
    retries
}

fn ledger_lines(ledger: &Path) -> usize {
    ledger_counts(ledger).values().sum()
}

/// Every run and task instance in the database, once all `expected_runs` runs are finished.
fn wait_all_runs_finished(url: &str, expected_runs: usize) -> Vec<(String, RunState, Vec<TiRow>)> {
    wait_until("every run to finish", WORKLOAD_TIMEOUT, || {
        let runs = with_store(url, async |store: &dyn Store| {
            store.newest_runs(&NewestRunsFilter::default()).await.ok()
        })?;
        let done = runs.len() == expected_runs && runs.iter().all(|r| r.state.is_finished());
        if !done {
            return None;
        }
        Some(with_store(url, async |store: &dyn Store| {
            let mut all = Vec::new();
            for run in runs {
                let tis = store
                    .task_instances(run.id)
                    .await
                    .expect("reading instances");
                all.push((format!("{}/{}", run.dag_id, run.run_id), run.state, tis));
            }
            all
        }))
    })
}

/// Each recorded instance succeeded and its final try appears in the ledger exactly once; no
/// line appears twice; every line names a recorded instance and a try it really had.
fn assert_exactly_once(
    runs: &[(String, RunState, Vec<TiRow>)],
    ledger: &Path,
    tasks_per_run: usize,
) {
    let counts = ledger_counts(ledger);
    let twice: Vec<&String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(l, _)| l)
        .collect();
    assert!(twice.is_empty(), "tries that ran more than once: {twice:?}");
    let mut expected_final = BTreeSet::new();
    let mut allowed = BTreeSet::new();
    for (run, state, tis) in runs {
        assert_eq!(*state, RunState::Success, "run {run}");
        assert_eq!(tis.len(), tasks_per_run, "run {run}");
        for ti in tis {
            assert_eq!(ti.state, TaskState::Success, "{run}/{}", ti.task_id);
            expected_final.insert(format!("{run}/{}/{}", ti.task_id, ti.try_number));
            for try_number in 1..=ti.try_number {
                allowed.insert(format!("{run}/{}/{try_number}", ti.task_id));
            }
        }
    }
    let missing: Vec<&String> = expected_final
        .iter()
        .filter(|l| !counts.contains_key(*l))
        .collect();
    assert!(
        missing.is_empty(),
        "final tries missing from the ledger: {missing:?}"
    );
    let unknown: Vec<&String> = counts.keys().filter(|l| !allowed.contains(*l)).collect();
    assert!(
        unknown.is_empty(),
        "ledger lines of no recorded try: {unknown:?}"
    );
}

fn start_schedulers(home: &Home, n: usize) -> Vec<SchedulerProcess> {
    (0..n).map(|_| home.start_scheduler()).collect()
}

#[test]
fn three_schedulers_run_every_try_exactly_once() {
    let db = TestDatabase::create();
    let home = ha_home(&db.url, "30s");
    let ledger = home.work().join("ledger");
    write_workload(&home, 50, 4, 5, "0", 0, &ledger);
    // All three start on an empty database at once: they migrate, load the same folder and
    // race to create the same @once runs.
    let _schedulers = start_schedulers(&home, 3);
    let runs = wait_all_runs_finished(&db.url, 50);
    assert_exactly_once(&runs, &ledger, 20);
    assert_eq!(ledger_lines(&ledger), 1000, "one try per task");
    // The work was shared: more than one scheduler queued tries.
    let owners: BTreeSet<i64> = runs
        .iter()
        .flat_map(|(_, _, tis)| tis.iter().filter_map(|ti| ti.queued_by_job_id))
        .collect();
    assert!(owners.len() > 1, "one scheduler did everything: {owners:?}");
    // The three are listed as running scheduler jobs, and a liveness probe finds them.
    let jobs = common::as_array(home.json(&["jobs", "list"]));
    let running = jobs.iter().filter(|j| j["state"] == "running").count();
    assert_eq!(running, 3, "{jobs:?}");
    home.ok(&["jobs", "check", "--hostname", &common_hostname()]);
}

fn common_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("reading the hostname")
        .trim()
        .to_string()
}

#[test]
fn a_killed_schedulers_tries_are_retried_by_the_others() {
    let db = TestDatabase::create();
    let home = ha_home(&db.url, "2s");
    let ledger = home.work().join("ledger");
    write_workload(&home, 50, 4, 5, "0.4", 2, &ledger);
    let mut schedulers = start_schedulers(&home, 3);
    let victim_pid = schedulers[0].pid();

    wait_until("half of the tries to run", WORKLOAD_TIMEOUT, || {
        (ledger_lines(&ledger) >= 500).then_some(())
    });
    // Tries starting from now take 6 s: longer than the others need to take a dead
    // scheduler's tries over (its heartbeat ages 2 s), so a try left running by the victim
    // would still run when its retry starts.
    std::fs::write(sleep_file(&ledger), "6").unwrap();
    let slow_from = chrono::Utc::now();
    // Kill the victim while it holds such a try. Which tries it held when it died is read
    // after the kill: a dead scheduler records nothing more, and the others wait for its
    // heartbeat to age before taking its tries over, so the snapshot is exact.
    let victim_job = wait_until("the victim to hold a slow try", WORKLOAD_TIMEOUT, || {
        let job = running_job_of(&db.url, victim_pid)?;
        running_tries_of(&db.url, job)
            .iter()
            .any(|held| held.3.is_some_and(|start| start > slow_from))
            .then_some(job)
    });
    schedulers[0].kill();
    std::fs::write(sleep_file(&ledger), "0.4").unwrap();
    let held = running_tries_of(&db.url, victim_job);
    assert!(
        !held.is_empty(),
        "the victim held no running try when it died"
    );

    let runs = wait_all_runs_finished(&db.url, 50);
    assert_exactly_once(&runs, &ledger, 20);
    // The victim's tries were stopped when it died (by its reaper), before any retry started.
    let retries = assert_no_try_ends_after_its_retry_starts(&ledger);
    assert!(retries >= held.len(), "{retries} retries for {held:?}");
    let jobs = with_store(&db.url, async |store: &dyn Store| {
        store.schedulers(16).await.unwrap()
    });
    let victim = jobs.iter().find(|j| j.id == victim_job).unwrap();
    assert_eq!(
        victim.state,
        JobState::Dead,
        "the silent scheduler is declared dead"
    );
    let probe = home.run(&["jobs", "check", "--pid", &victim_pid.to_string()]);
    assert_eq!(
        probe.code(),
        Some(1),
        "the dead scheduler passed the liveness probe: {probe}"
    );
    home.ok(&["jobs", "check"]);
    // Each try the victim held when it died was failed and followed by another try, queued by
    // one of the survivors.
    for (run_pk, task_id, try_number, _) in &held {
        let (_, _, tis) = runs
            .iter()
            .find(|(_, _, tis)| tis.first().is_some_and(|t| t.run_pk == *run_pk))
            .unwrap();
        let ti = tis.iter().find(|t| &t.task_id == task_id).unwrap();
        assert!(
            ti.try_number > *try_number,
            "{task_id} of run {run_pk}: try {try_number} held by the victim was not retried: {ti:?}"
        );
        assert_ne!(ti.queued_by_job_id, Some(victim_job), "{task_id}");
        let tries = with_store(&db.url, async |store: &dyn Store| {
            store
                .tries(&updraft_store::TiKey {
                    run_pk: *run_pk,
                    task_id: task_id.clone(),
                    map_index: -1,
                })
                .await
                .unwrap()
        });
        let dead = tries.iter().find(|t| t.try_number == *try_number).unwrap();
        assert!(
            matches!(dead.state, TaskState::Failed | TaskState::UpForRetry),
            "{task_id} try {try_number} ended {:?}",
            dead.state
        );
    }
}

/// The id of the running scheduler job of the process `pid`.
fn running_job_of(url: &str, pid: i32) -> Option<i64> {
    with_store(url, async |store: &dyn Store| {
        let jobs = store.schedulers(16).await.ok()?;
        jobs.into_iter()
            .find(|j| j.pid == i64::from(pid) && j.state == JobState::Running)
            .map(|j| j.id)
    })
}

/// The tries queued by scheduler job `job` that are running now: (run, task, try number,
/// start).
type HeldTry = (i64, String, u32, Option<chrono::DateTime<chrono::Utc>>);

fn running_tries_of(url: &str, job: i64) -> Vec<HeldTry> {
    with_store(url, async |store: &dyn Store| {
        let mut held = Vec::new();
        let runs = store
            .newest_runs(&NewestRunsFilter::default())
            .await
            .unwrap();
        for run in runs {
            for ti in store.task_instances(run.id).await.unwrap() {
                if ti.queued_by_job_id == Some(job) && ti.state == TaskState::Running {
                    held.push((run.id, ti.task_id, ti.try_number, ti.start_date));
                }
            }
        }
        held
    })
}

#[test]
fn schedulers_survive_a_postgresql_restart_mid_run() {
    let cluster = PgCluster::start();
    let db = TestDatabase::create_on(&cluster.admin_url());
    let home = ha_home(&db.url, "30s");
    let ledger = home.work().join("ledger");
    // Tries long enough that some still run when the server stops, and end during the outage.
    write_workload(&home, 10, 4, 5, "1.5", 0, &ledger);
    let mut schedulers = start_schedulers(&home, 2);
    let server = home.start_server();
    let api = api_address(&server);

    wait_until("a third of the tries to run", WORKLOAD_TIMEOUT, || {
        (ledger_lines(&ledger) >= 60).then_some(())
    });
    let ends_at_stop = ledger_lines(&ledger);
    cluster.stop_server();
    let health = wait_until(
        "the health check to see the outage",
        WORKLOAD_TIMEOUT,
        || {
            let health = get_json(&api, "/monitor/health")?;
            (health["metadatabase"]["status"] == "unhealthy").then_some(health)
        },
    );
    assert_eq!(health["scheduler"]["status"], "unhealthy");
    // Tries keep finishing meanwhile; their ends wait in the schedulers until the database is
    // back.
    wait_until("a try to end during the outage", WORKLOAD_TIMEOUT, || {
        (ledger_lines(&ledger) > ends_at_stop).then_some(())
    });
    cluster.start_server();

    let runs = wait_all_runs_finished(&db.url, 10);
    assert_exactly_once(&runs, &ledger, 20);
    assert_eq!(
        ledger_lines(&ledger),
        200,
        "no try ran twice or was retried"
    );
    for scheduler in &mut schedulers {
        assert!(
            scheduler.try_wait().is_none(),
            "a scheduler exited during the outage:\n{}",
            scheduler.output()
        );
    }
    wait_until("the health check to recover", WORKLOAD_TIMEOUT, || {
        let health = get_json(&api, "/monitor/health")?;
        (health["metadatabase"]["status"] == "healthy"
            && health["scheduler"]["status"] == "healthy")
            .then_some(())
    });
}

#[test]
fn db_migrate_from_several_processes_at_once_is_safe() {
    let db = TestDatabase::create();
    let home = ha_home(&db.url, "30s");
    let children: Vec<std::process::Child> = (0..4)
        .map(|_| {
            home.command(["db", "migrate"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("starting db migrate")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("waiting for db migrate");
        assert!(
            out.status.success(),
            "db migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("Database migrated"), "{stdout}");
    }
    // The schema is whole: a command that records and reads works.
    home.write_dag(
        "m.yaml",
        "dag_id: migrated\ntasks:\n  - {task_id: a, noop: true}\n",
    );
    let dags = home.dags_list();
    assert_eq!(dags.len(), 1, "{dags:?}");
}

/// A pod outlives the scheduler that launched it: when that scheduler falls silent, another
/// adopts the pod (Kubernetes through the in-repo fake API server, which runs each pod's
/// container as a local process); when the silent one comes back and finds itself declared
/// dead, it lets go of the pod instead of deleting it, and the try ends once, as its first.
#[test]
fn a_silent_schedulers_pod_is_adopted_and_not_deleted_when_it_returns() {
    use nix::sys::signal::Signal;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(updraft_kube_fake::FakeKube::start());
    let db = TestDatabase::create();
    let home = ha_home(&db.url, "2s");
    let kubeconfig = home.path().join("kubeconfig.yaml");
    fake.write_kubeconfig(&kubeconfig).unwrap();
    let home = home
        .with_env("UPDRAFT__KUBERNETES__ENABLED", "true")
        .with_env(
            "UPDRAFT__KUBERNETES__KUBECONFIG",
            kubeconfig.to_str().unwrap(),
        );
    home.write_dag(
        "shop/long.yaml",
        "dag_id: long\ntasks:\n  - task_id: t\n    pod: {image: busybox, cmds: [\"sleep\", \"3600\"]}\n",
    );
    let schedulers = start_schedulers(&home, 2);
    home.wait_dag_listed("long");
    let run_id = home.trigger("long", None);
    let instance = || -> Option<TiRow> {
        with_store(&db.url, async |store: &dyn Store| {
            let run = store
                .newest_runs(&NewestRunsFilter::default())
                .await
                .ok()?
                .into_iter()
                .next()?;
            store.task_instances(run.id).await.ok()?.into_iter().next()
        })
    };
    let owner_job = || -> Option<i64> {
        instance()
            .filter(|ti| ti.state == TaskState::Running)
            .and_then(|ti| ti.queued_by_job_id)
    };
    let holder_job = wait_until("the try runs", WORKLOAD_TIMEOUT, owner_job);
    let jobs = with_store(&db.url, async |store: &dyn Store| {
        store.schedulers(16).await.unwrap()
    });
    let holder_pid = jobs.iter().find(|j| j.id == holder_job).unwrap().pid;
    let holder = schedulers
        .iter()
        .find(|s| i64::from(s.pid()) == holder_pid)
        .expect("one of ours holds the try");

    holder.signal(Signal::SIGSTOP);
    let adopter_job = wait_until("another scheduler adopts the pod", WORKLOAD_TIMEOUT, || {
        owner_job().filter(|job| *job != holder_job)
    });
    holder.signal(Signal::SIGCONT);
    // It lets go of its tries, then registers again.
    wait_until(
        "the returning scheduler registers again",
        WORKLOAD_TIMEOUT,
        || {
            let output = holder.output();
            (output.contains("declared dead by another")
                && output.matches("registered as scheduler job").count() >= 2)
                .then_some(())
        },
    );
    let pods = fake.pods();
    assert_eq!(pods.len(), 1);
    assert!(
        pods[0].metadata.deletion_timestamp.is_none(),
        "the pod was not deleted"
    );

    fake.finish_pod("shop", pods[0].metadata.name.as_deref().unwrap(), 0);
    assert_eq!(home.wait_run_finished("long", &run_id), "success");
    let ti = instance().unwrap();
    assert_eq!(ti.try_number, 1, "{ti:?}");
    assert_eq!(ti.queued_by_job_id, Some(adopter_job));
    let requests = fake.requests();
    assert_eq!(
        requests.iter().filter(|r| r.starts_with("POST")).count(),
        1,
        "{requests:?}"
    );
}
