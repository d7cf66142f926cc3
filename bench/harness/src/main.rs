//! `updraft-bench`: runs the same work on updraft and on Apache Airflow on this machine,
//! measures the physical limit next to them, and prints one table; the samples go to
//! `bench/results/` as JSON with a chart (SVG).
//!
//! Run it through `bench/run`, which builds updraft in release mode first.

mod airflow;
mod figures;
mod process;
mod report;
mod scenarios;
mod updraft;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use serde_json::json;

use crate::figures::compact;
use crate::report::{Engine, Results};
use crate::scenarios::{Sample, Scenario, Setup};

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
    /// Take Apache Airflow's samples from an earlier results file (its `*.json`) instead of
    /// running Airflow again: its rounds take half an hour, updraft's a few minutes.
    #[arg(long, conflicts_with = "no_airflow")]
    airflow_from: Option<PathBuf>,
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

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    process::clean_up_on_signals();
    let chosen = scenarios::chosen(&args.only).map_err(|e| anyhow!(e))?;
    if args.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    let airflow_script = airflow::script(&args.root);
    if !args.no_airflow && args.airflow_from.is_none() && !airflow_script.exists() {
        bail!(
            "the Apache Airflow script {} is missing: set UPDRAFT_BENCH_AIRFLOW to its path, \
             or pass --no-airflow",
            airflow_script.display()
        );
    }
    let load_dags = updraft::load_dags_command(&args.updraft);
    let setup = Setup {
        root: &args.root,
        updraft: &args.updraft,
        repeat: args.repeat,
        load_dags,
    };
    let mut results = Results::default();
    for scenario in &chosen {
        run_on_updraft(scenario, &setup, &mut results)
            .await
            .with_context(|| format!("updraft, scenario {}", scenario.name))?;
    }
    if let Some(earlier) = &args.airflow_from {
        airflow_from(earlier, &mut results)?;
    } else if !args.no_airflow {
        for scenario in &chosen {
            run_on_airflow(scenario, &args, &airflow_script, &mut results);
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

/// Every round of `scenario` on updraft (and the limit), or the reason it cannot run here.
async fn run_on_updraft(
    scenario: &Scenario,
    setup: &Setup<'_>,
    results: &mut Results,
) -> Result<()> {
    for (id, note) in scenario.notes(setup) {
        results.note(id, note);
    }
    if let Some((id, why)) = scenario.skipped() {
        eprintln!("updraft {}: {why}", scenario.name);
        results.skip(id, why);
        return Ok(());
    }
    let rounds = scenario.rounds(setup.repeat);
    for round in 1..=rounds {
        let label = format!("updraft {} {round}/{rounds}", scenario.name);
        eprintln!("{label}: started");
        let started = Instant::now();
        let samples = scenario.measure(setup).await?;
        eprintln!(
            "{label}: done in {:.1} s: {}",
            started.elapsed().as_secs_f64(),
            describe(&samples)
        );
        record(results, &samples);
    }
    Ok(())
}

/// Every round of `scenario` on Airflow; a failed or unfinished round is a note, not the end.
fn run_on_airflow(scenario: &Scenario, args: &Args, script: &Path, results: &mut Results) {
    let Some((shape, n)) = scenario.airflow_shape() else {
        return;
    };
    let rounds = scenario.airflow_rounds(args.airflow_repeat);
    if rounds < args.airflow_repeat {
        results.note(
            scenario.airflow_figure(),
            format!("Airflow: {rounds} round(s) only"),
        );
    }
    let patience = scenarios::airflow_patience(args.airflow_patience_min);
    for round in 1..=rounds {
        let label = format!("Airflow {} {round}/{rounds}", scenario.name);
        eprintln!("{label}: started ({} {shape} {n})", script.display());
        let started = Instant::now();
        match airflow::run(script, shape, n, patience) {
            Ok(run) => {
                let samples = scenario.airflow_samples(&run);
                eprintln!(
                    "{label}: done in {:.0} s: {}",
                    started.elapsed().as_secs_f64(),
                    describe(&samples)
                );
                record(results, &samples);
                for (id, note) in scenarios::airflow_notes(&run) {
                    results.note(id, note);
                }
                results.airflow_version = Some(run.version);
            }
            Err(e) => {
                eprintln!("{label}: {e:#}");
                results.note(
                    scenario.airflow_figure(),
                    format!("Airflow round {round}: {e:#}"),
                );
            }
        }
    }
}

/// Airflow's samples and notes of every figure in an earlier results file.
fn airflow_from(path: &Path, results: &mut Results) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let earlier: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a results file", path.display()))?;
    let date = earlier["context"]["date"]
        .as_str()
        .unwrap_or("an earlier run");
    results.airflow_version = earlier["airflow_version"].as_str().map(str::to_owned);
    let figures = earlier["figures"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for figure in figures {
        let Some(known) = figures::FIGURES.iter().find(|f| figure["id"] == f.id) else {
            continue;
        };
        let samples = figure["airflow"]["samples"].as_array().map(Vec::as_slice);
        for value in samples
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.as_f64())
        {
            results.push(known.id, Engine::Airflow, value);
        }
        let notes = figure["notes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for note in notes.iter().filter_map(|n| n.as_str()) {
            if note.starts_with("Airflow") {
                results.note(known.id, note.to_owned());
            }
        }
        if !results.row(known.id).airflow.values.is_empty() {
            results.note(
                known.id,
                format!("Airflow's samples taken from the run of {date}"),
            );
        }
    }
    Ok(())
}

fn record(results: &mut Results, samples: &[Sample]) {
    for &(id, engine, value) in samples {
        results.push(id, engine, value);
    }
}

/// "chain40_run updraft 0.190, chain40_run limit 0.031"
fn describe(samples: &[Sample]) -> String {
    let engine = |e| match e {
        Engine::Updraft => "updraft",
        Engine::Airflow => "Airflow",
        Engine::Limit => "limit",
    };
    samples
        .iter()
        .map(|(id, e, v)| format!("{id} {} {}", engine(*e), compact(*v)))
        .collect::<Vec<_>>()
        .join(", ")
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
        "nproc": command_output("nproc", &[]).and_then(|n| n.parse::<u64>().ok()),
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
