//! The scenarios on updraft: its release binary run as a user would, the figures read from
//! what it recorded (the SQLite database) or from the scripts next to this harness.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use crate::process::{TempDir, free_port, wait_for_health};

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
    std::fs::create_dir_all(home.path().join("dags"))?;
    std::fs::write(home.path().join("dags/bench.yaml"), bench_dag(n, chained))?;
    let port = free_port()?;
    let mut standalone = Service::start(updraft, home.path(), port)?;
    wait_for_health(port, Duration::from_secs(60), || standalone.alive())?;
    let trigger = updraft_command(updraft, home.path(), port)
        .args(["dags", "trigger", "bench", "-r", "bench"])
        .stdout(Stdio::null())
        .status()
        .context("running `updraft dags trigger`")?;
    if !trigger.success() {
        bail!("`updraft dags trigger` failed");
    }
    let recorded = wait_for_run(&home.path().join("updraft.db")).await;
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
            Some("failed") => bail!("the bench run failed"),
            _ if Instant::now() > deadline => bail!("the bench run did not finish in time"),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    let recorded = read_run(&mut conn).await;
    conn.close().await?;
    recorded
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

/// Seconds `updraft dags reserialize` takes to load `count` new DAG files into a fresh
/// database, and the seconds one `cat` takes to read the same files (the limit).
pub fn load_dag_files(updraft: &Path, count: usize) -> Result<(f64, f64)> {
    let home = TempDir::new("updraft-bench-dags")?;
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags)?;
    for i in 0..count {
        std::fs::write(
            dags.join(format!("dag_{i:05}.yaml")),
            "schedule: \"@daily\"\nstart_date: 2024-01-01\ntasks:\n  - task_id: extract\n    \
             bash: echo extract {{ ds }}\n  - task_id: load\n    upstream: [extract]\n    \
             bash: echo load\n",
        )?;
    }
    let started = Instant::now();
    let status = updraft_command(updraft, home.path(), 0)
        .args(["dags", "reserialize"])
        .stdout(Stdio::null())
        .status()
        .context("running `updraft dags reserialize`")?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("`updraft dags reserialize` failed");
    }
    let started = Instant::now();
    let cat = Command::new("sh")
        .arg("-c")
        .arg("find . -name '*.yaml' -exec cat {} + > /dev/null")
        .current_dir(&dags)
        .status()?;
    if !cat.success() {
        bail!("reading the DAG files with cat failed");
    }
    Ok((seconds, started.elapsed().as_secs_f64()))
}

/// `bench/footprint 100`: (idle PSS in MB, start → API ready in s).
pub fn footprint(root: &Path) -> Result<(f64, f64)> {
    let json = run_script(&root.join("bench/footprint"), &["100"])?;
    let pss = number(&json, "idle_pss_mb")?;
    let ready_ms = number(&json, "start_to_api_ready_ms")?;
    Ok((pss, ready_ms / 1000.0))
}

/// `bench/orchestration BACKEND 1 20 500 REPEAT`: task instances per second of each round.
pub fn orchestration(root: &Path, backend: &str, repeat: usize) -> Result<Vec<f64>> {
    let repeat = repeat.to_string();
    let json = run_script(
        &root.join("bench/orchestration"),
        &[backend, "1", "20", "500", &repeat],
    )?;
    let tis = number(&json, "task_instances")?;
    let seconds = json["seconds"]
        .as_array()
        .context("no `seconds` in bench/orchestration's output")?;
    Ok(seconds
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .map(|s| tis / s)
        .collect())
}

/// Whether this machine can start the throwaway PostgreSQL 15 bench/orchestration needs.
pub fn postgres_available() -> bool {
    Path::new("/usr/lib/postgresql/15/bin/initdb").exists()
}

fn run_script(script: &Path, args: &[&str]) -> Result<serde_json::Value> {
    let out = Command::new(script)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} {} failed", script.display(), args.join(" "));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("{} printed no JSON", script.display()))?;
    Ok(serde_json::from_str(line)?)
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
    child: Child,
    log: PathBuf,
}

impl Service {
    fn start(updraft: &Path, home: &Path, port: u16) -> Result<Self> {
        use std::os::unix::process::CommandExt as _;
        let log = home.join("standalone.log");
        let child = updraft_command(updraft, home, port)
            .arg("standalone")
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(home.join("standalone.err"))?)
            .process_group(0)
            .spawn()
            .context("starting `updraft standalone`")?;
        Ok(Service { child, log })
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn stop(&mut self) {
        if self.alive() {
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.alive() {
            eprintln!("  updraft standalone log: {}", self.log.display());
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.wait();
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
    fn the_bench_dag_chains_only_when_asked() {
        let chain = bench_dag(3, true);
        assert!(chain.contains("upstream: [t00000]") && chain.contains("upstream: [t00001]"));
        assert!(!bench_dag(3, false).contains("upstream"));
        assert_eq!(bench_dag(3, false).matches("bash: \"true\"").count(), 3);
    }
}
