//! The chaos test: a mixed workload of several tenants on two schedulers, a web server and a
//! PostgreSQL cluster of the test's own, while faults are injected one after another: the disk
//! under `UPDRAFT_HOME` filled and freed, a PostgreSQL restart, kill -9 of a scheduler, SIGSTOP
//! of another until it is declared dead, a template over its budget, a symbolic link to `/` in
//! the DAGs folder, and a DAG file edited in place.
//!
//! It asserts that no run is lost, that no task instance runs twice at once (each task holds an
//! exclusive `flock` on a file named after its instance while it works, and writes a
//! `concurrent` line when another copy holds it), that every run of the well-behaved tenants
//! finishes within a bound of its normal time (measured first, in the same test), and that no
//! process exits unless told to.
//!
//! Needs root (to mount a small tmpfs that can be filled) and PostgreSQL 15's `initdb`/`pg_ctl`;
//! `scripts/test` runs as root in CI. Without them the test fails; it never skips.

mod common;
#[path = "common/pg.rs"]
mod pg;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::http::{api_address, get_json, try_api};
use common::tmpfs::Tmpfs;
use common::{Home, SchedulerProcess, wait_until};
use nix::sys::signal::Signal;
use pg::{PgCluster, TestDatabase, WORKLOAD_TIMEOUT, with_store};
use serde_json::{Value, json};
use updraft_core::{RunState, TaskState};
use updraft_store::{JobState, NewestRunsFilter, Store};

/// The well-behaved tenants' DAGs: (tenant, dag id, tasks per layer, layers, seconds a task
/// works). `beta_long`'s tasks outlive the time the schedulers take to declare a silent one
/// dead, so a try surviving its scheduler would still be working when its retry starts.
const GOOD_DAGS: [(&str, &str, usize, usize, &str); 4] = [
    ("alpha", "alpha_0", 2, 3, "0.3"),
    ("alpha", "alpha_1", 2, 3, "0.3"),
    ("beta", "beta_0", 3, 2, "0.3"),
    ("beta", "beta_long", 1, 2, "4"),
];

/// How long the disk stays full: the fault's length, not a wait for anything.
const DISK_FULL_FOR: Duration = Duration::from_secs(3);

/// What a run of a well-behaved tenant may take beyond twice its normal time: the longest
/// fault (a silent scheduler is declared dead after 2 s, then its tries are retried, the
/// longest working 4 s) with room for a busy machine.
const FAULT_ALLOWANCE: Duration = Duration::from_secs(30);

/// Where the tasks leave their evidence, outside the file system that gets filled.
struct Evidence {
    _dir: tempfile::TempDir,
    ledger: PathBuf,
    locks: PathBuf,
}

impl Evidence {
    fn new() -> Evidence {
        let dir = tempfile::Builder::new()
            .prefix("updraft-chaos-evidence-")
            .tempdir()
            .expect("a folder for the ledger");
        let locks = dir.path().join("locks");
        std::fs::create_dir_all(&locks).expect("creating locks/");
        Evidence {
            ledger: dir.path().join("ledger"),
            locks,
            _dir: dir,
        }
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.ledger)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// `flock`'s exit status when the lock is held by another process.
const LOCK_TAKEN: i32 = 75;

/// A task that holds its instance's lock while it works, then writes its try to the ledger;
/// a copy finding the lock taken writes a `concurrent` line instead.
fn guarded_task(evidence: &Evidence, sleep: &str) -> String {
    let key = "{{ ti.dag_id }}/{{ run_id }}/{{ ti.task_id }}";
    let lock = format!(
        "{}/{{{{ ti.dag_id }}}}.{{{{ run_id }}}}.{{{{ ti.task_id }}}}",
        evidence.locks.display()
    );
    let ledger = evidence.ledger.display();
    format!(
        "flock -n -E {LOCK_TAKEN} '{lock}' sh -c \"echo started $(date +%s.%N) '{key}/{{{{ ti.try_number }}}}' >> '{ledger}'; \
         sleep {sleep}; echo '{key}/{{{{ ti.try_number }}}}' >> '{ledger}'\"; \
         status=$?; if [ $status -eq {LOCK_TAKEN} ]; then echo concurrent $(date +%s.%N) '{key}/{{{{ ti.try_number }}}}' >> '{ledger}'; fi; \
         exit $status"
    )
}

fn good_dag_yaml(
    dag_id: &str,
    width: usize,
    layers: usize,
    sleep: &str,
    evidence: &Evidence,
) -> String {
    let header = "schedule: null\nstart_date: 2024-01-01\n\
                  default_args:\n  retries: 3\n  retry_delay: 0s\n";
    let bash = guarded_task(evidence, sleep);
    common::layered_dag_yaml(dag_id, header, layers, width, &bash)
}

fn good_dag_file(tenant: &str, dag_id: &str) -> String {
    format!("{tenant}/{dag_id}.yaml")
}

/// The test's world: the database, the home on a tmpfs, the processes.
struct World {
    // Dropped in this order: the processes first (printing their output if the test failed,
    // while the home is still there), the file system last.
    schedulers: Vec<SchedulerProcess>,
    server: SchedulerProcess,
    api: String,
    /// Runs of the well-behaved DAGs: (dag id, run id) as the API answered the trigger.
    triggered: Vec<(String, String)>,
    evidence: Evidence,
    home: Home,
    db: TestDatabase,
    cluster: PgCluster,
    fs: Tmpfs,
}

impl World {
    fn start() -> World {
        let fs = Tmpfs::mount("64m");
        let cluster = PgCluster::start();
        let db = TestDatabase::create_on(&cluster.admin_url());
        let home = Home::new_in(fs.path())
            .with_env("UPDRAFT__DATABASE__URL", &db.url)
            .with_env("UPDRAFT__DATABASE__ACQUIRE_TIMEOUT", "2s")
            .with_env("UPDRAFT__SCHEDULER__HEARTBEAT_INTERVAL", "200ms")
            .with_env("UPDRAFT__SCHEDULER__HEALTH_CHECK_THRESHOLD", "2s");
        let evidence = Evidence::new();
        for (tenant, dag_id, width, layers, sleep) in GOOD_DAGS {
            home.write_dag(
                &good_dag_file(tenant, dag_id),
                &good_dag_yaml(dag_id, width, layers, sleep, &evidence),
            );
        }
        let schedulers = vec![home.start_scheduler(), home.start_scheduler()];
        let server = home.start_server();
        let api = api_address(&server);
        for (_, dag_id, ..) in GOOD_DAGS {
            wait_until(&format!("{dag_id} to be listed"), WORKLOAD_TIMEOUT, || {
                get_json(&api, &format!("/dags/{dag_id}")).filter(|dag| dag["dag_id"] == dag_id)
            });
        }
        World {
            cluster,
            db,
            home,
            fs,
            evidence,
            schedulers,
            server,
            api,
            triggered: Vec::new(),
        }
    }

    /// Trigger one run of every well-behaved DAG through the API; each must be accepted.
    fn trigger_wave(&mut self) {
        for (_, dag_id, ..) in GOOD_DAGS {
            let run_id = self.trigger(dag_id);
            self.triggered.push((dag_id.to_string(), run_id));
        }
    }

    fn trigger(&self, dag_id: &str) -> String {
        let body = json!({"logical_date": null});
        let path = format!("/dags/{dag_id}/dagRuns");
        let (status, answer) = wait_until(
            &format!("the API to answer a trigger of {dag_id}"),
            WORKLOAD_TIMEOUT,
            || try_api(&self.api, "POST", &path, Some(&body)),
        );
        assert_eq!(status, 200, "triggering {dag_id}: {answer}");
        answer["dag_run_id"].as_str().expect("a run id").to_string()
    }

    /// The good runs triggered so far, once all are finished.
    fn wait_good_runs_finished(&self) -> BTreeMap<(String, String), RunSummary> {
        let wanted: BTreeSet<(String, String)> = self.triggered.iter().cloned().collect();
        wait_until("every good run to finish", WORKLOAD_TIMEOUT, || {
            let runs = with_store(&self.db.url, async |store: &dyn Store| {
                let runs = store.newest_runs(&NewestRunsFilter::default()).await.ok()?;
                let mut found = BTreeMap::new();
                for run in runs {
                    let key = (run.dag_id.clone(), run.run_id.clone());
                    if !wanted.contains(&key) {
                        continue;
                    }
                    if !run.state.is_finished() {
                        return None;
                    }
                    let tis = store.task_instances(run.id).await.ok()?;
                    found.insert(
                        key,
                        RunSummary {
                            state: run.state,
                            start: run.start_date?,
                            end: run.end_date?,
                            instances: tis
                                .into_iter()
                                .map(|ti| (ti.task_id, (ti.state, ti.try_number)))
                                .collect(),
                        },
                    );
                }
                Some(found)
            })?;
            (runs.len() == wanted.len()).then_some(runs)
        })
    }

    /// Every process still running, except those told to stop.
    fn assert_all_alive(&mut self, moment: &str) {
        for scheduler in &mut self.schedulers {
            assert!(
                scheduler.try_wait().is_none(),
                "a scheduler exited {moment}:\n{}",
                scheduler.output()
            );
        }
        assert!(
            self.server.try_wait().is_none(),
            "the server exited {moment}:\n{}",
            self.server.output()
        );
    }

    fn health(&self) -> Option<Value> {
        get_json(&self.api, "/monitor/health")
    }

    fn import_errors(&self) -> Vec<Value> {
        let errors = get_json(&self.api, "/importErrors?limit=100").unwrap_or_default();
        errors["import_errors"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn scheduler_job_state(&self, pid: i32) -> Option<JobState> {
        with_store(&self.db.url, async |store: &dyn Store| {
            let jobs = store.schedulers(32).await.ok()?;
            jobs.into_iter()
                .filter(|j| j.pid == i64::from(pid))
                .max_by_key(|j| j.id)
                .map(|j| j.state)
        })
    }

    /// Whether scheduler job of process `pid` holds a running try of `dag_id`.
    fn holds_running_try(&self, pid: i32, dag_id: &str) -> bool {
        with_store(&self.db.url, async |store: &dyn Store| {
            let Ok(jobs) = store.schedulers(32).await else {
                return false;
            };
            let Some(job) = jobs
                .into_iter()
                .find(|j| j.pid == i64::from(pid) && j.state == JobState::Running)
            else {
                return false;
            };
            let filter = NewestRunsFilter {
                dag_id: Some(dag_id.to_string()),
                ..NewestRunsFilter::default()
            };
            let Ok(runs) = store.newest_runs(&filter).await else {
                return false;
            };
            for run in runs {
                let Ok(tis) = store.task_instances(run.id).await else {
                    return false;
                };
                if tis
                    .iter()
                    .any(|ti| ti.queued_by_job_id == Some(job.id) && ti.state == TaskState::Running)
                {
                    return true;
                }
            }
            false
        })
    }
}

struct RunSummary {
    state: RunState,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    instances: BTreeMap<String, (TaskState, u32)>,
}

impl RunSummary {
    fn duration(&self) -> Duration {
        (self.end - self.start).to_std().unwrap_or_default()
    }
}

/// A fault's name, and what injects it and waits until it is over.
type Fault = (&'static str, fn(&mut World));

// ---- the faults ---------------------------------------------------------------------------

fn disk_full_and_freed(world: &mut World) {
    world.trigger_wave();
    let filler = world.fs.fill();
    let full_since = Instant::now();
    while full_since.elapsed() < DISK_FULL_FOR {
        world.assert_all_alive("while the disk was full");
        std::thread::sleep(common::POLL);
    }
    std::fs::remove_file(filler).expect("freeing the disk");
    world.trigger_wave();
}

fn postgresql_restart(world: &mut World) {
    world.trigger_wave();
    world.cluster.stop_server();
    wait_until(
        "the health check to see the outage",
        WORKLOAD_TIMEOUT,
        || {
            let health = world.health()?;
            (health["metadatabase"]["status"] == "unhealthy").then_some(())
        },
    );
    world.cluster.start_server();
    wait_until("the health check to recover", WORKLOAD_TIMEOUT, || {
        let health = world.health()?;
        (health["metadatabase"]["status"] == "healthy").then_some(())
    });
    world.trigger_wave();
}

/// kill -9 of the scheduler holding a running try of `beta_long`; a new one takes its place.
fn kill_a_scheduler(world: &mut World) {
    world.trigger_wave();
    let victim = wait_until(
        "a scheduler to hold a running long try",
        WORKLOAD_TIMEOUT,
        || {
            (0..world.schedulers.len())
                .find(|&i| world.holds_running_try(world.schedulers[i].pid(), "beta_long"))
        },
    );
    let mut dead = world.schedulers.remove(victim);
    dead.kill();
    world.schedulers.push(world.home.start_scheduler());
    world.trigger_wave();
}

/// SIGSTOP of a scheduler until the others declare it dead, then SIGCONT: it carries on.
fn freeze_a_scheduler(world: &mut World) {
    world.trigger_wave();
    let frozen = world.schedulers[0].pid();
    world.schedulers[0].signal(Signal::SIGSTOP);
    wait_until(
        "the frozen scheduler to be declared dead",
        WORKLOAD_TIMEOUT,
        || (world.scheduler_job_state(frozen) == Some(JobState::Dead)).then_some(()),
    );
    world.schedulers[0].signal(Signal::SIGCONT);
    wait_until(
        "the thawed scheduler to register again",
        WORKLOAD_TIMEOUT,
        || (world.scheduler_job_state(frozen) == Some(JobState::Running)).then_some(()),
    );
    world.trigger_wave();
}

/// A tenant's template that would loop 10¹⁰ times, and one that would build gigabytes: their
/// tries fail; nothing else is held up.
fn templates_over_budget(world: &mut World) {
    world.home.write_dag(
        "mallory/greedy.yaml",
        "dag_id: greedy\nschedule: null\nstart_date: 2024-01-01\ntasks:\n\
         \x20 - task_id: loops\n\
         \x20   bash: \"echo {% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}\"\n\
         \x20 - task_id: grows\n\
         \x20   bash: \"echo {{ 'x' * 4000000000 }}\"\n",
    );
    wait_until("the greedy DAG to be listed", WORKLOAD_TIMEOUT, || {
        get_json(&world.api, "/dags/greedy").filter(|d| d["dag_id"] == "greedy")
    });
    world.trigger_wave();
    let run_id = world.trigger("greedy");
    world.trigger_wave();
    let states = wait_until("the greedy tries to fail", WORKLOAD_TIMEOUT, || {
        let path = format!("/dags/greedy/dagRuns/{run_id}/taskInstances");
        let tis = get_json(&world.api, &path)?;
        let states: BTreeMap<String, String> = tis["task_instances"]
            .as_array()?
            .iter()
            .map(|ti| {
                (
                    ti["task_id"].as_str().unwrap_or_default().to_string(),
                    ti["state"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        (states.len() == 2 && states.values().all(|s| s == "failed" || s == "success"))
            .then_some(states)
    });
    assert!(
        states.values().all(|s| s == "failed"),
        "an over-budget template rendered: {states:?}"
    );
}

/// A link to `/` in a tenant's folder: an import error naming the link, quoting nothing of
/// what lies outside the DAGs folder.
fn symlink_to_root(world: &mut World) {
    let link = world.home.dags().join("mallory").join("root");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/", &link).expect("linking to /");
    world.trigger_wave();
    let errors = wait_until("an import error for the link", WORKLOAD_TIMEOUT, || {
        let errors = world.import_errors();
        errors
            .iter()
            .any(|e| e["filename"].as_str().is_some_and(|f| f.contains("root")))
            .then_some(errors)
    });
    let text = serde_json::to_string(&errors).unwrap();
    assert!(
        !text.contains("root:x:0:0") && !text.contains("VmRSS"),
        "an import error quotes a file outside the DAGs folder: {text}"
    );
    world.trigger_wave();
}

/// `alpha_0`'s file rewritten in place (truncated, then written) with a broken version: the
/// DAG stays on its last good version, triggers are accepted, the error is shown; restored
/// in place afterwards.
fn edit_in_place(world: &mut World) {
    let path = world.home.dags().join(good_dag_file("alpha", "alpha_0"));
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, "dag_id: alpha_0\ntasks: [\n").expect("breaking the file in place");
    wait_until(
        "an import error for the edited file",
        WORKLOAD_TIMEOUT,
        || {
            world
                .import_errors()
                .iter()
                .any(|e| {
                    e["filename"]
                        .as_str()
                        .is_some_and(|f| f.ends_with("alpha_0.yaml"))
                })
                .then_some(())
        },
    );
    world.trigger_wave();
    std::fs::write(&path, good).expect("mending the file in place");
    wait_until(
        "the edited file's import error to go",
        WORKLOAD_TIMEOUT,
        || {
            (!world.import_errors().iter().any(|e| {
                e["filename"]
                    .as_str()
                    .is_some_and(|f| f.ends_with("alpha_0.yaml"))
            }))
            .then_some(())
        },
    );
    world.trigger_wave();
}

// ---- the test -----------------------------------------------------------------------------

#[test]
fn a_mixed_workload_survives_every_fault_in_turn() {
    let mut world = World::start();

    // Normal times first: one run of each good DAG with nothing going wrong.
    world.trigger_wave();
    let normal: BTreeMap<String, Duration> = world
        .wait_good_runs_finished()
        .into_iter()
        .map(|((dag_id, _), run)| (dag_id, run.duration()))
        .collect();
    eprintln!("normal run times: {normal:?}");

    let faults: [Fault; 7] = [
        ("the disk full and freed", disk_full_and_freed),
        ("a PostgreSQL restart", postgresql_restart),
        ("kill -9 of a scheduler", kill_a_scheduler),
        ("SIGSTOP of a scheduler", freeze_a_scheduler),
        ("templates over budget", templates_over_budget),
        ("a symbolic link to /", symlink_to_root),
        ("a DAG file edited in place", edit_in_place),
    ];
    for (name, inject) in faults {
        eprintln!("injecting {name}");
        inject(&mut world);
        world.assert_all_alive(&format!("after {name}"));
    }

    let runs = world.wait_good_runs_finished();
    world.assert_all_alive("at the end");
    assert_eq!(
        runs.len(),
        world.triggered.len(),
        "runs were lost: triggered {:?}",
        world.triggered
    );
    let ledger = world.evidence.lines();
    let concurrent: Vec<&String> = ledger
        .iter()
        .filter(|l| l.starts_with("concurrent"))
        .collect();
    assert!(
        concurrent.is_empty(),
        "task instances ran twice at once: {concurrent:?}\nthe ledger:\n{}",
        ledger.join("\n")
    );
    let ledger: BTreeSet<&String> = ledger.iter().collect();
    let mut slowest = Vec::new();
    for ((dag_id, run_id), run) in &runs {
        assert_eq!(run.state, RunState::Success, "{dag_id} {run_id}");
        for (task_id, (state, try_number)) in &run.instances {
            assert_eq!(*state, TaskState::Success, "{dag_id} {run_id} {task_id}");
            let line = format!("{dag_id}/{run_id}/{task_id}/{try_number}");
            assert!(
                ledger.contains(&line),
                "the final try {line} left no trace of its work"
            );
        }
        let bound = normal[dag_id] * 2 + FAULT_ALLOWANCE;
        slowest.push((run.duration(), dag_id.clone(), run_id.clone()));
        assert!(
            run.duration() <= bound,
            "{dag_id} {run_id} took {:?}, over {bound:?} (normally {:?})",
            run.duration(),
            normal[dag_id]
        );
    }
    slowest.sort();
    eprintln!(
        "{} good runs; slowest: {:?}",
        runs.len(),
        slowest.iter().rev().take(3).collect::<Vec<_>>()
    );
}
