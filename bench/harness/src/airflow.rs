//! The same shapes on Apache Airflow, through the shared script that installs and runs it
//! (`airflow standalone`: LocalExecutor and SQLite) and prints one JSON line per run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::process;

/// What the script prints for one run.
#[derive(Debug, Clone, Deserialize)]
pub struct AirflowRun {
    pub version: String,
    pub state: Option<String>,
    pub run_s: Option<f64>,
    pub median_gap_s: Option<f64>,
    pub p99_gap_s: Option<f64>,
    pub tasks_per_s: Option<f64>,
    pub idle_pss_mb: Option<f64>,
    pub processes: Option<u32>,
    pub startup_s: Option<f64>,
}

/// The script: `UPDRAFT_BENCH_AIRFLOW`, else `../shared/bench/airflow/run` next to the repo.
pub fn script(root: &Path) -> PathBuf {
    std::env::var_os("UPDRAFT_BENCH_AIRFLOW")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/bench/airflow/run"))
}

/// Runs `shape` (`chain` or `wide`) with `n` tasks once, giving up after `patience` (the
/// script then stops everything it started). Its progress (and the first-use install) goes
/// to our stderr.
pub fn run(script: &Path, shape: &str, n: usize, patience: Duration) -> Result<AirflowRun> {
    let mut command = Command::new(script);
    command.args([shape, &n.to_string()]);
    let stdout = process::run_captured(command, patience)
        .with_context(|| format!("{} {shape} {n}", script.display()))?;
    parse(&stdout)
}

/// The last JSON line of the script's output.
pub fn parse(stdout: &str) -> Result<AirflowRun> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("the Airflow script printed no JSON")?;
    let run: AirflowRun =
        serde_json::from_str(line).context("reading the Airflow script's JSON")?;
    if let Some(state) = &run.state
        && state != "success"
    {
        bail!("the Airflow run ended {state}");
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_json_line() {
        let out = "installing...\n{\"engine\":\"airflow\",\"version\":\"3.3.2\",\"shape\":\"chain\",\
                   \"n\":40,\"state\":\"success\",\"run_s\":45.3,\"tasks_per_s\":0.88,\
                   \"idle_pss_mb\":1098,\"processes\":40,\"startup_s\":10.2,\
                   \"median_gap_s\":0.97,\"p99_gap_s\":1.4}\n";
        let run = parse(out).unwrap();
        assert_eq!(run.version, "3.3.2");
        assert_eq!(run.run_s, Some(45.3));
        assert_eq!(run.median_gap_s, Some(0.97));
        assert_eq!(run.idle_pss_mb, Some(1098.0));
    }

    #[test]
    fn a_failed_run_is_an_error() {
        let out = "{\"engine\":\"airflow\",\"version\":\"3.3.2\",\"state\":\"failed\"}";
        assert!(parse(out).is_err());
        assert!(parse("no json here").is_err());
    }
}
