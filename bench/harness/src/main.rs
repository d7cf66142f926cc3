//! `updraft-bench`: runs the same work on updraft and on Apache Airflow on this machine,
//! measures the physical limit next to them, and prints one table; the samples go to
//! `bench/results/` as JSON with a chart (SVG).
//!
//! Run it through `bench/run`, which builds updraft in release mode first.

mod airflow;
mod figures;
mod process;
mod report;
mod updraft;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::json;

use crate::report::Results;

#[derive(Parser)]
#[command(about = "updraft and Apache Airflow side by side, with the physical limit")]
struct Args {
    /// The repository (bench/footprint and bench/orchestration live there).
    #[arg(long)]
    root: PathBuf,
    /// The updraft binary to measure (a release build).
    #[arg(long)]
    updraft: PathBuf,
    /// Skip Apache Airflow (quick runs).
    #[arg(long)]
    no_airflow: bool,
    /// Repetitions of every updraft scenario and of the limit.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Repetitions of every Airflow scenario (each takes a minute or more).
    #[arg(long, default_value_t = 3)]
    airflow_repeat: usize,
    /// Minutes an Airflow run may take before it is stopped and reported as unfinished.
    #[arg(long, default_value_t = 30)]
    airflow_patience_min: u64,
    /// Only these scenarios (comma separated): chain40, wide200, wide1000, footprint,
    /// dagfiles, noop-sqlite, noop-postgres.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where results go (default: bench/results in the repository).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A scenario: what it measures on updraft, on Airflow and as the limit.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scenario {
    Chain40,
    Wide200,
    Wide1000,
    Footprint,
    DagFiles,
    NoopSqlite,
    NoopPostgres,
}

const SCENARIOS: &[(Scenario, &str)] = &[
    (Scenario::Chain40, "chain40"),
    (Scenario::Wide200, "wide200"),
    (Scenario::Wide1000, "wide1000"),
    (Scenario::Footprint, "footprint"),
    (Scenario::DagFiles, "dagfiles"),
    (Scenario::NoopSqlite, "noop-sqlite"),
    (Scenario::NoopPostgres, "noop-postgres"),
];

const DAG_FILES: usize = 10_000;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let chosen = chosen_scenarios(&args.only)?;
    let airflow_script = airflow::script(&args.root);
    if !args.no_airflow && !airflow_script.exists() {
        bail!(
            "the Airflow script {} is missing: set UPDRAFT_BENCH_AIRFLOW or pass --no-airflow",
            airflow_script.display()
        );
    }
    let mut results = Results::default();
    for &scenario in &chosen {
        for round in 1..=args.repeat {
            eprintln!("updraft {scenario:?}, round {round}/{}", args.repeat);
            measure_updraft(scenario, &args, &mut results)
                .await
                .with_context(|| format!("updraft {scenario:?}"))?;
            measure_limit(scenario, &mut results)?;
        }
    }
    if !args.no_airflow {
        for &scenario in &chosen {
            let Some((shape, n)) = airflow_shape(scenario) else {
                continue;
            };
            let rounds = airflow_rounds(scenario, args.airflow_repeat);
            if rounds < args.airflow_repeat {
                results.note(
                    airflow_figure(scenario),
                    format!("Airflow: {rounds} round(s) only"),
                );
            }
            for round in 1..=rounds {
                eprintln!("Airflow {shape} {n}, round {round}/{rounds}");
                let patience = Duration::from_secs(args.airflow_patience_min * 60);
                match airflow::run(&airflow_script, shape, n, patience) {
                    Ok(run) => record_airflow(scenario, &run, &mut results),
                    Err(e) => {
                        eprintln!("Airflow {shape} {n}: {e:#}");
                        let id = airflow_figure(scenario);
                        results.note(id, format!("Airflow round {round}: {e:#}"));
                    }
                }
            }
        }
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.root.join("bench/results"));
    write_results(&args, &results, &out)?;
    println!("{}", report::table(&results));
    for note in report::notes(&results) {
        println!("  {note}");
    }
    println!("Results: {}", out.display());
    Ok(())
}

fn chosen_scenarios(only: &[String]) -> Result<Vec<Scenario>> {
    if only.is_empty() {
        return Ok(SCENARIOS.iter().map(|(s, _)| *s).collect());
    }
    only.iter()
        .map(|name| {
            SCENARIOS
                .iter()
                .find(|(_, n)| n == name)
                .map(|(s, _)| *s)
                .with_context(|| format!("unknown scenario {name}"))
        })
        .collect()
}

async fn measure_updraft(scenario: Scenario, args: &Args, results: &mut Results) -> Result<()> {
    let bin = &args.updraft;
    match scenario {
        Scenario::Chain40 => {
            let run = updraft::run_bench_dag(bin, 40, true).await?;
            let gaps = run.edge_gaps_ms();
            results.row("chain40_run").updraft.push(run.seconds());
            if let Some(median) = updraft::quantile(&gaps, 0.5) {
                results.row("chain40_gap_median").updraft.push(median);
            }
            if let Some(p99) = updraft::quantile(&gaps, 0.99) {
                results.row("chain40_gap_p99").updraft.push(p99);
            }
        }
        Scenario::Wide200 | Scenario::Wide1000 => {
            let (id, n) = wide(scenario);
            let run = updraft::run_bench_dag(bin, n, false).await?;
            results.row(id).updraft.push(n as f64 / run.seconds());
        }
        Scenario::Footprint => {
            let (pss, ready) = updraft::footprint(&args.root)?;
            results.row("idle_pss").updraft.push(pss);
            results.row("start_ready").updraft.push(ready);
            results.note("idle_pss", "updraft: `updraft standalone` with 100 DAGs");
            results.note("start_ready", "updraft: `updraft standalone` with 100 DAGs");
        }
        Scenario::DagFiles => {
            let (seconds, cat) = updraft::load_dag_files(bin, DAG_FILES)?;
            results.row("dag_files_10k").updraft.push(seconds);
            results.row("dag_files_10k").limit.push(cat);
            results.note("dag_files_10k", "limit: one `cat` reading every file");
        }
        Scenario::NoopSqlite => {
            // bench/orchestration repeats itself; one call per harness round would
            // multiply the rounds, so it runs once with all of them.
            if results.row("noop_sqlite").updraft.values.is_empty() {
                for rate in updraft::orchestration(&args.root, "sqlite", args.repeat)? {
                    results.row("noop_sqlite").updraft.push(rate);
                }
            }
        }
        Scenario::NoopPostgres => {
            if !updraft::postgres_available() {
                results.row("noop_postgres");
                results.note("noop_postgres", "skipped: PostgreSQL 15 is not installed");
            } else if results.row("noop_postgres").updraft.values.is_empty() {
                for rate in updraft::orchestration(&args.root, "postgres", args.repeat)? {
                    results.row("noop_postgres").updraft.push(rate);
                }
            }
        }
    }
    Ok(())
}

fn wide(scenario: Scenario) -> (&'static str, usize) {
    match scenario {
        Scenario::Wide1000 => ("wide1000", 1000),
        _ => ("wide200", 200),
    }
}

fn measure_limit(scenario: Scenario, results: &mut Results) -> Result<()> {
    match scenario {
        Scenario::Chain40 => {
            let seconds = process::spawn_true(40)?;
            results.row("chain40_run").limit.push(seconds);
            results
                .row("chain40_gap_median")
                .limit
                .push(seconds / 40.0 * 1000.0);
            results.note(
                "chain40_run",
                "limit: bash spawning /bin/true 40 times in a row",
            );
            results.note(
                "chain40_gap_median",
                "limit: one spawn of /bin/true (the loop's time per spawn)",
            );
        }
        Scenario::Wide200 | Scenario::Wide1000 => {
            let (id, n) = wide(scenario);
            results
                .row(id)
                .limit
                .push(n as f64 / process::spawn_true(n)?);
            results.note(id, "limit: bash spawning /bin/true as many times, in a row");
        }
        Scenario::Footprint => {
            results
                .row("start_ready")
                .limit
                .push(process::spawn_true_once()?);
            results.note("start_ready", "limit: spawning /bin/true once");
        }
        Scenario::DagFiles | Scenario::NoopSqlite | Scenario::NoopPostgres => {}
    }
    Ok(())
}

/// 1,000 tasks take Airflow about twenty minutes here: one round of those.
fn airflow_rounds(scenario: Scenario, repeat: usize) -> usize {
    match scenario {
        Scenario::Wide1000 => repeat.min(1),
        _ => repeat,
    }
}

/// The row an Airflow run of `scenario` reports on first.
fn airflow_figure(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::Chain40 => "chain40_run",
        _ => wide(scenario).0,
    }
}

fn airflow_shape(scenario: Scenario) -> Option<(&'static str, usize)> {
    match scenario {
        Scenario::Chain40 => Some(("chain", 40)),
        Scenario::Wide200 => Some(("wide", 200)),
        Scenario::Wide1000 => Some(("wide", 1000)),
        _ => None,
    }
}

fn record_airflow(scenario: Scenario, run: &airflow::AirflowRun, results: &mut Results) {
    results.airflow_version = Some(run.version.clone());
    match scenario {
        Scenario::Chain40 => {
            push(results, "chain40_run", run.run_s);
            push(
                results,
                "chain40_gap_median",
                run.median_gap_s.map(|s| s * 1000.0),
            );
            push(
                results,
                "chain40_gap_p99",
                run.p99_gap_s.map(|s| s * 1000.0),
            );
        }
        Scenario::Wide200 | Scenario::Wide1000 => {
            push(results, wide(scenario).0, run.tasks_per_s);
        }
        _ => {}
    }
    // Every Airflow run starts it afresh: its idle memory and start-up count for those rows.
    push(results, "idle_pss", run.idle_pss_mb);
    push(results, "start_ready", run.startup_s);
    let processes = run
        .processes
        .map(|p| format!(", {p} processes"))
        .unwrap_or_default();
    results.note(
        "idle_pss",
        format!("Airflow: `airflow standalone` with its 2 bench DAGs{processes}"),
    );
    results.note(
        "start_ready",
        "Airflow: `airflow standalone` until both bench DAGs are parsed and the API answers",
    );
}

fn push(results: &mut Results, id: &'static str, value: Option<f64>) {
    if let Some(v) = value {
        results.row(id).airflow.push(v);
    }
}

fn write_results(args: &Args, results: &Results, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let now = chrono::Utc::now();
    let context = json!({
        "date": now.to_rfc3339(),
        "machine": machine(),
        "commit": command_output("git", &["-C", &args.root.to_string_lossy(), "rev-parse", "--short", "HEAD"]),
        "repeat": args.repeat,
        "airflow_repeat": if args.no_airflow { 0 } else { args.airflow_repeat },
    });
    let json = serde_json::to_string_pretty(&report::to_json(results, context))?;
    let stamp = now.format("%Y-%m-%dT%H%M%SZ").to_string();
    let title = format!(
        "updraft vs Apache Airflow {} — {} — {}",
        results.airflow_version.as_deref().unwrap_or("(not run)"),
        now.format("%Y-%m-%d"),
        machine()["cpu"].as_str().unwrap_or("this machine"),
    );
    for name in [stamp.as_str(), "latest"] {
        std::fs::write(out.join(format!("{name}.json")), &json)?;
        report::chart(results, &title, &out.join(format!("{name}.svg")))?;
    }
    Ok(())
}

fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim);
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "cpu": cpu,
        "memory": mem,
        "kernel": command_output("uname", &["-r"]),
    })
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
