//! The scenarios on updraft: its release binary run as a user would, the figures read from
//! what it recorded (the SQLite database) or from the scripts next to this harness.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use crate::process::{Group, TempDir, free_port, run_captured, wait_for_health};

/// How long a run may take before the harness gives up on it.
const RUN_PATIENCE: Duration = Duration::from_secs(600);

/// A DAG of `n` tasks running `true`, each depending on the one before when `chained`
/// (Airflow's bench DAG has the same shape and `max_active_tasks`).
pub fn bench_dag(n: usize, chained: bool) -> String {
    let mut yaml = String::from("dag_id: bench\nmax_active_tasks: 64\ntasks:\n");
    for i in 0..n {
        let _ = writeln!(yaml, "  - task_id: t{i:05}\n    bash: \"true\"");
        if chained && i > 0 {
            let _ = writeln!(yaml, "    upstream: [t{:05}]", i - 1);
        }
    }
    yaml
}

/// A chain of `n` pod tasks whose container runs `true`.
pub fn pod_chain_dag(n: usize) -> String {
    let mut yaml = String::from("dag_id: bench\nmax_active_tasks: 64\ntasks:\n");
    for i in 0..n {
        let _ = writeln!(
            yaml,
            "  - task_id: t{i:05}\n    pod: {{image: busybox, cmds: [\"true\"]}}"
        );
        if i > 0 {
            let _ = writeln!(yaml, "    upstream: [t{:05}]", i - 1);
        }
    }
    yaml
}

/// What one run of the bench DAG recorded: the run's dates and each instance's, in task order
/// (microseconds since the epoch).
#[derive(Debug)]
pub struct RecordedRun {
    pub start: i64,
    pub end: i64,
    pub tasks: Vec<(i64, i64)>,
}

impl RecordedRun {
    pub fn seconds(&self) -> f64 {
        (self.end - self.start) as f64 / 1e6
    }

    /// Per edge of a chain: the downstream's start minus the upstream's end, in ms.
    pub fn edge_gaps_ms(&self) -> Vec<f64> {
        self.tasks
            .windows(2)
            .map(|w| (w[1].0 - w[0].1) as f64 / 1000.0)
            .collect()
    }
}

/// The value at quantile `q` (0..=1) of `values`, nearest rank.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Run the bench DAG of `n` tasks once under `updraft standalone` on a fresh home.
pub async fn run_bench_dag(updraft: &Path, n: usize, chained: bool) -> Result<RecordedRun> {
    let home = TempDir::new("updraft-bench")?;
    run_dag(updraft, home.path(), &bench_dag(n, chained), &[]).await
}

/// A producer pushing an `n`-item list, a `true` task mapped over it and a downstream task.
pub fn mapped_dag(n: usize) -> String {
    format!(
        "dag_id: bench\nmax_active_tasks: 64\ntasks:\n  - task_id: produce\n    bash: |\n      \
         echo \"{{\\\"return_value\\\": [$(seq -s, 0 {last})]}}\" > \"$UPDRAFT_XCOM_PATH\"\n  \
         - task_id: each\n    expand:\n      x: {{xcom: produce}}\n    bash: \"true\"\n  \
         - task_id: after\n    upstream: [each]\n    bash: \"true\"\n",
        last = n - 1
    )
}

/// What one run of the mapped bench DAG recorded (microseconds since the epoch).
#[derive(Debug)]
pub struct MappedRun {
    pub produced: i64,
    pub last_mapped_end: i64,
    pub downstream_start: i64,
}

impl MappedRun {
    /// From the producer's end to the last mapped instance's end.
    pub fn mapped_seconds(&self) -> f64 {
        (self.last_mapped_end - self.produced) as f64 / 1e6
    }

    /// From the producer's end to the downstream task's start.
    pub fn downstream_seconds(&self) -> f64 {
        (self.downstream_start - self.produced) as f64 / 1e6
    }
}

/// Run [`mapped_dag`] once under `updraft standalone` on a fresh home, `[core]
/// max_map_length` raised to `n`.
pub async fn run_mapped_dag(updraft: &Path, n: usize) -> Result<MappedRun> {
    let home = TempDir::new("updraft-bench")?;
    let env = [("UPDRAFT__CORE__MAX_MAP_LENGTH", n.to_string())];
    run_dag(updraft, home.path(), &mapped_dag(n), &env).await?;
    let db = home.path().join("updraft.db");
    let mut conn = SqliteConnectOptions::new()
        .filename(&db)
        .read_only(true)
        .connect()
        .await
        .with_context(|| format!("opening {}", db.display()))?;
    let (produced,): (i64,) = sqlx::query_as(
        "SELECT end_date FROM task_instance WHERE run_id = 'bench' AND task_id = 'produce'",
    )
    .fetch_one(&mut conn)
    .await?;
    let (last_mapped_end, count): (i64, i64) = sqlx::query_as(
        "SELECT MAX(end_date), COUNT(*) FROM task_instance
         WHERE run_id = 'bench' AND task_id = 'each' AND state = 'success'",
    )
    .fetch_one(&mut conn)
    .await?;
    if count != n as i64 {
        bail!("{count} mapped instances succeeded, not {n}");
    }
    let (downstream_start,): (i64,) = sqlx::query_as(
        "SELECT start_date FROM task_instance WHERE run_id = 'bench' AND task_id = 'after'",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok(MappedRun {
        produced,
        last_mapped_end,
        downstream_start,
    })
}

/// Run a chain of `n` pod tasks once under `updraft standalone` with pod tasks on, against
/// the fake Kubernetes API server (`updraft-kube-fake`, built next to `updraft`), whose
/// simulated kubelet runs each pod's container as a local process.
pub async fn run_pod_chain(updraft: &Path, n: usize) -> Result<RecordedRun> {
    let home = TempDir::new("updraft-bench")?;
    let kubeconfig = home.path().join("kubeconfig");
    let fake_bin = updraft.with_file_name("updraft-kube-fake");
    let said = home.path().join("fake.out");
    let mut fake = Command::new(&fake_bin);
    fake.arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdout(std::fs::File::create(&said)?)
        .stderr(Stdio::null());
    let mut fake = Group::spawn(fake)?;
    // The fake prints where it serves once the kubeconfig is written.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&said)?.contains("API at") {
        if !fake.alive() || Instant::now() > deadline {
            bail!("{} did not start", fake_bin.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let env = [
        ("UPDRAFT__KUBERNETES__ENABLED", "true".to_owned()),
        (
            "UPDRAFT__KUBERNETES__KUBECONFIG",
            kubeconfig.display().to_string(),
        ),
    ];
    let recorded = run_dag(updraft, home.path(), &pod_chain_dag(n), &env).await;
    fake.stop();
    recorded
}

/// Runs `dag_yaml` (DAG `bench`) once under `updraft standalone` in `home`, with `env` set.
async fn run_dag(
    updraft: &Path,
    home: &Path,
    dag_yaml: &str,
    env: &[(&str, String)],
) -> Result<RecordedRun> {
    std::fs::create_dir_all(home.join("dags"))?;
    std::fs::write(home.join("dags/bench.yaml"), dag_yaml)?;
    let port = free_port()?;
    let mut standalone = Service::start(updraft, home, port, env)?;
    wait_for_health(port, Duration::from_secs(60), || standalone.alive())?;
    let trigger = updraft_command(updraft, home, port)
        .args(["dags", "trigger", "bench", "-r", "bench"])
        .stdout(Stdio::null())
        .status()
        .context("running `updraft dags trigger`")?;
    if !trigger.success() {
        bail!("`updraft dags trigger` failed");
    }
    let recorded = wait_for_run(&home.join("updraft.db")).await;
    standalone.stop();
    recorded
}

async fn wait_for_run(db: &Path) -> Result<RecordedRun> {
    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .connect()
        .await
        .with_context(|| format!("opening {}", db.display()))?;
    let deadline = Instant::now() + RUN_PATIENCE;
    loop {
        let state: Option<(String,)> =
            sqlx::query_as("SELECT state FROM dag_run WHERE run_id = 'bench'")
                .fetch_optional(&mut conn)
                .await?;
        match state.as_ref().map(|(s,)| s.as_str()) {
            Some("success") => break,
            Some("failed") => bail!(
                "the bench run failed:\n{}",
                failed_logs(&mut conn, db).await
            ),
            _ if Instant::now() > deadline => bail!("the bench run did not finish in time"),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    let recorded = read_run(&mut conn).await;
    conn.close().await?;
    recorded
}

/// The logs of the bench run's failed tasks, to say why it failed.
async fn failed_logs(conn: &mut SqliteConnection, db: &Path) -> String {
    let failed: Vec<(String,)> = sqlx::query_as(
        "SELECT task_id FROM task_instance WHERE run_id = 'bench' AND state = 'failed'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    let logs = db.with_file_name("logs");
    failed
        .iter()
        .map(|(task,)| {
            let log = logs.join(format!("default/bench/bench/{task}/attempt=1.log"));
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            format!("{task}:\n{text}")
        })
        .collect()
}

async fn read_run(conn: &mut SqliteConnection) -> Result<RecordedRun> {
    let (start, end): (i64, i64) =
        sqlx::query_as("SELECT start_date, end_date FROM dag_run WHERE run_id = 'bench'")
            .fetch_one(&mut *conn)
            .await?;
    let tasks: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT start_date, end_date FROM task_instance WHERE run_id = 'bench' ORDER BY task_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(RecordedRun { start, end, tasks })
}

/// The command that parses the DAGs folder, records every DAG in the database, prints how
/// many and exits.
pub const LOAD_DAGS: &[&str] = &["dags", "reserialize"];
/// The same load for builds without it (prints the import errors only).
const LOAD_DAGS_FALLBACK: &[&str] = &["dags", "list-import-errors"];

/// [`LOAD_DAGS`] if this build of updraft has it, else the fallback.
pub fn load_dags_command(updraft: &Path) -> &'static [&'static str] {
    let has_it = Command::new(updraft)
        .args(LOAD_DAGS)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if has_it {
        LOAD_DAGS
    } else {
        LOAD_DAGS_FALLBACK
    }
}

/// A small DAG file like bench/footprint's: two tasks, daily.
const SMALL_DAG: &str = "schedule: \"@daily\"\nstart_date: 2024-01-01\ntasks:\n  - task_id: extract\n    \
                         bash: echo extract {{ ds }}\n  - task_id: load\n    upstream: [extract]\n    \
                         bash: echo load\n";

/// Seconds `updraft <load>` takes to load `count` new DAG files into a fresh database
/// (spawn to exit), and the seconds one `cat` takes to read the same files (the limit).
pub fn load_dag_files(updraft: &Path, count: usize, load: &[&str]) -> Result<(f64, f64)> {
    let home = TempDir::new("updraft-bench-dags")?;
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags)?;
    for i in 0..count {
        std::fs::write(dags.join(format!("dag_{i:05}.yaml")), SMALL_DAG)?;
    }
    let shown = format!("updraft {}", load.join(" "));
    let started = Instant::now();
    let out = updraft_command(updraft, home.path(), 0)
        .args(load)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running `{shown}`"))?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("`{shown}` failed");
    }
    if load == LOAD_DAGS {
        let loaded = loaded_dags(&String::from_utf8_lossy(&out.stdout));
        if loaded != Some(count) {
            bail!("`{shown}` recorded {loaded:?} DAGs, not {count}");
        }
    }
    Ok((seconds, cat_folder(&dags)?))
}

/// The count in `dags: N`, as `updraft dags reserialize` prints it.
pub fn loaded_dags(output: &str) -> Option<usize> {
    output
        .lines()
        .find_map(|l| l.strip_prefix("dags:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Seconds for one `cat` to read every file of `folder`.
fn cat_folder(folder: &Path) -> Result<f64> {
    let started = Instant::now();
    let cat = Command::new("sh")
        .arg("-c")
        .arg("find . -type f -exec cat {} + > /dev/null")
        .current_dir(folder)
        .status()?;
    if !cat.success() {
        bail!("reading the DAG files with cat failed");
    }
    Ok(started.elapsed().as_secs_f64())
}

/// `bench/footprint DAGS`: (idle PSS in MB, start → API ready in s).
pub fn footprint(root: &Path, dags: usize) -> Result<(f64, f64)> {
    let json = run_script(&root.join("bench/footprint"), &[&dags.to_string()])?;
    let pss = number(&json, "idle_pss_mb")?;
    let ready_ms = number(&json, "start_to_api_ready_ms")?;
    Ok((pss, ready_ms / 1000.0))
}

/// Task instances per second of each round of `bench/orchestration`, updraft's and the
/// limit's (the database committing the same batches alone).
#[derive(Debug, Default, PartialEq)]
pub struct Orchestration {
    pub updraft: Vec<f64>,
    pub limit: Vec<f64>,
}

/// `bench/orchestration BACKEND 1 20 500 REPEAT`, on the `updraft` binary given.
pub fn orchestration(
    root: &Path,
    updraft: &Path,
    backend: &str,
    repeat: usize,
) -> Result<Orchestration> {
    let repeat = repeat.to_string();
    let json = run_script_with(
        &root.join("bench/orchestration"),
        &[backend, "1", "20", "500", &repeat],
        &[("UPDRAFT_BENCH_BIN", updraft)],
    )?;
    orchestration_rates(&json)
}

/// `bench/orchestration sqlite 1 RUNS TASKS REPEAT` (RUNS runs of TASKS no-op tasks each),
/// on the `updraft` binary given.
pub fn orchestration_shape(
    root: &Path,
    updraft: &Path,
    runs: usize,
    tasks: usize,
    repeat: usize,
) -> Result<Orchestration> {
    let (runs, tasks, repeat) = (runs.to_string(), tasks.to_string(), repeat.to_string());
    let json = run_script_with(
        &root.join("bench/orchestration"),
        &["sqlite", "1", &runs, &tasks, &repeat],
        &[("UPDRAFT_BENCH_BIN", updraft)],
    )?;
    orchestration_rates(&json)
}

/// Round by round, `ours[i] / base[i]` (as many as the shorter has).
pub fn round_ratios(ours: &[f64], base: &[f64]) -> Vec<f64> {
    ours.iter().zip(base).map(|(o, b)| o / b).collect()
}

/// The rates in bench/orchestration's JSON: task instances over each round's seconds.
pub fn orchestration_rates(json: &serde_json::Value) -> Result<Orchestration> {
    let tis = number(json, "task_instances")?;
    let rates = |key: &str| -> Result<Vec<f64>> {
        let seconds = json[key]
            .as_array()
            .with_context(|| format!("no `{key}` in bench/orchestration's output"))?;
        Ok(seconds
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .map(|s| tis / s)
            .collect())
    };
    Ok(Orchestration {
        updraft: rates("seconds")?,
        limit: rates("limit_seconds")?,
    })
}

/// Why bench/orchestration cannot run on PostgreSQL here, if it cannot: without
/// `UPDRAFT_BENCH_POSTGRES_URL` it starts a throwaway PostgreSQL 15 cluster, which takes its
/// binaries and root (to run them as `postgres`).
pub fn postgres_unavailable() -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    if std::env::var_os("UPDRAFT_BENCH_POSTGRES_URL").is_some() {
        return None;
    }
    let bin = Path::new("/usr/lib/postgresql/15/bin");
    if !["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|b| bin.join(b).exists())
    {
        return Some("PostgreSQL 15 not installed".into());
    }
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    (!root).then(|| "starting PostgreSQL 15 takes root (or set UPDRAFT_BENCH_POSTGRES_URL)".into())
}

/// Scripts get this long; bench/orchestration on PostgreSQL takes a few minutes.
const SCRIPT_PATIENCE: Duration = Duration::from_secs(1800);

fn run_script(script: &Path, args: &[&str]) -> Result<serde_json::Value> {
    run_script_with(script, args, &[])
}

/// [`run_script`] with `env` set.
fn run_script_with(
    script: &Path,
    args: &[&str],
    env: &[(&str, &Path)],
) -> Result<serde_json::Value> {
    let mut command = Command::new(script);
    command.args(args).envs(env.iter().copied());
    let shown = format!("{} {}", script.display(), args.join(" "));
    let text = run_captured(command, SCRIPT_PATIENCE).with_context(|| shown.clone())?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("{shown} printed no JSON"))?;
    serde_json::from_str(line).with_context(|| format!("reading the JSON of {shown}"))
}

fn number(json: &serde_json::Value, key: &str) -> Result<f64> {
    json[key]
        .as_f64()
        .with_context(|| format!("no number `{key}` in {json}"))
}

fn updraft_command(updraft: &Path, home: &Path, port: u16) -> Command {
    let mut cmd = Command::new(updraft);
    cmd.env("UPDRAFT_HOME", home)
        .env("UPDRAFT__CORE__LOAD_EXAMPLES", "false")
        .env("UPDRAFT__CORE__DAGS_ARE_PAUSED_AT_CREATION", "false")
        .env("UPDRAFT__LOGGING__LEVEL", "warn");
    if port != 0 {
        cmd.env("UPDRAFT__API__PORT", port.to_string());
    }
    cmd
}

/// `updraft standalone` in a process group of its own, stopped when dropped.
struct Service {
    group: Group,
    log: PathBuf,
}

impl Service {
    fn start(updraft: &Path, home: &Path, port: u16, env: &[(&str, String)]) -> Result<Self> {
        let log = home.join("standalone.log");
        let mut command = updraft_command(updraft, home, port);
        command
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .arg("standalone")
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(home.join("standalone.err"))?);
        let group = Group::spawn(command).context("starting `updraft standalone`")?;
        Ok(Service { group, log })
    }

    fn alive(&mut self) -> bool {
        self.group.alive()
    }

    fn stop(&mut self) {
        self.group.stop();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.alive() {
            let err = self.log.with_file_name("standalone.err");
            if let Ok(text) = std::fs::read_to_string(&err)
                && !text.trim().is_empty()
            {
                eprintln!("  updraft standalone said:\n{text}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_gaps_are_downstream_start_minus_upstream_end() {
        let run = RecordedRun {
            start: 0,
            end: 10_000,
            tasks: vec![(0, 1_000), (2_500, 3_000), (3_000, 9_000)],
        };
        assert_eq!(run.edge_gaps_ms(), [1.5, 0.0]);
        assert_eq!(run.seconds(), 0.01);
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&[3.0], 0.99), Some(3.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn reads_the_count_reserialize_prints() {
        assert_eq!(loaded_dags("dags: 10000\nimport_errors: 0\n"), Some(10_000));
        assert_eq!(loaded_dags("import_errors: 3\n"), None);
    }

    #[test]
    fn orchestration_rates_are_task_instances_over_seconds_for_both() {
        let json = serde_json::json!({
            "task_instances": 10000, "seconds": [2.0, 0.5], "limit_seconds": [0.1],
        });
        let rates = orchestration_rates(&json).unwrap();
        assert_eq!(rates.updraft, [5000.0, 20000.0]);
        assert_eq!(rates.limit, [100_000.0]);
        assert!(
            orchestration_rates(&serde_json::json!({"task_instances": 1, "seconds": []})).is_err()
        );
    }

    #[test]
    fn round_ratios_pair_rounds_in_order() {
        assert_eq!(round_ratios(&[4.0, 9.0, 1.0], &[2.0, 3.0]), [2.0, 3.0]);
    }

    #[test]
    fn the_bench_dag_chains_only_when_asked() {
        let chain = bench_dag(3, true);
        assert!(chain.contains("upstream: [t00000]") && chain.contains("upstream: [t00001]"));
        assert!(!bench_dag(3, false).contains("upstream"));
        assert_eq!(bench_dag(3, false).matches("bash: \"true\"").count(), 3);
    }
}
