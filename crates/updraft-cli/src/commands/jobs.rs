//! `updraft jobs ...`: the scheduler jobs recorded in the database, and Airflow's `jobs check`
//! for liveness probes.

use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;
use clap::Subcommand;
use serde_json::json;
use updraft_store::{JobState, SchedulerJobRow};

use crate::config::Settings;
use crate::output::{Format, print_rows};

#[derive(Subcommand)]
pub enum JobsCommand {
    /// List scheduler jobs, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Exit 0 when a scheduler is alive (running, with a heartbeat within
    /// `scheduler.health_check_threshold`), 1 otherwise; as Airflow's
    /// `jobs check --job-type SchedulerJob`.
    Check {
        /// The kind of job; updraft's only one is Airflow's `SchedulerJob`.
        #[arg(long, value_parser = ["SchedulerJob"])]
        job_type: Option<String>,
        /// Only schedulers on this host (e.g. `$(hostname)` in a pod's liveness probe).
        #[arg(long, conflicts_with = "local")]
        hostname: Option<String>,
        /// Only schedulers on the host this command runs on (a liveness probe without a
        /// shell, as in the container image).
        #[arg(long)]
        local: bool,
        /// Only the scheduler running as this process.
        #[arg(long)]
        pid: Option<i64>,
    },
}

pub async fn run(cmd: JobsCommand, settings: &Settings, format: Format) -> Result<ExitCode> {
    let store = super::open_store(settings).await?;
    match cmd {
        JobsCommand::List { limit } => {
            let rows: Vec<_> = store
                .schedulers(limit)
                .await?
                .iter()
                .map(job_json)
                .collect();
            print_rows(
                format,
                &[
                    "id",
                    "hostname",
                    "pid",
                    "state",
                    "start_date",
                    "latest_heartbeat",
                    "end_date",
                ],
                &rows,
            );
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Check {
            job_type: _,
            hostname,
            local,
            pid,
        } => {
            let hostname = if local {
                Some(super::hostname())
            } else {
                hostname
            };
            let threshold =
                chrono::Duration::from_std(settings.config.scheduler.health_check_threshold)
                    .unwrap_or(chrono::Duration::MAX);
            let now = Utc::now();
            let alive: Vec<SchedulerJobRow> = store
                .schedulers(1000)
                .await?
                .into_iter()
                .filter(|job| {
                    job.state == JobState::Running && now - job.latest_heartbeat <= threshold
                })
                .filter(|job| hostname.as_ref().is_none_or(|h| &job.hostname == h))
                .filter(|job| pid.is_none_or(|p| job.pid == p))
                .collect();
            if alive.is_empty() {
                eprintln!("No alive scheduler job found.");
                return Ok(ExitCode::from(1));
            }
            println!("Found {} alive scheduler job(s).", alive.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn job_json(job: &SchedulerJobRow) -> serde_json::Value {
    json!({
        "id": job.id,
        "hostname": job.hostname,
        "pid": job.pid,
        "state": job.state,
        "start_date": job.start_date.to_rfc3339(),
        "latest_heartbeat": job.latest_heartbeat.to_rfc3339(),
        "end_date": super::fmt_time(job.end_date),
    })
}
