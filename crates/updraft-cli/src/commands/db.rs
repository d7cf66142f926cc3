//! `updraft db ...`

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{ArgGroup, Subcommand};
use serde_json::json;

use super::parse_date;
use crate::config::Settings;
use crate::output::{Format, print_object};

#[derive(Subcommand)]
pub enum DbCommand {
    /// Create or upgrade the database schema.
    Migrate,
    /// Check the database's pages (SQLite's `PRAGMA quick_check`; the services run it at
    /// start). Exits non-zero, naming what is wrong and how to recover, on a corrupt database.
    Check,
    /// Delete old history, as Airflow's `db clean`: finished runs that ended before the cutoff
    /// (with their task instances, tries and notes), except each DAG's latest scheduled or
    /// backfill run; scheduler jobs that ended before it; change-log entries of deleted runs;
    /// DAG versions no remaining run or DAG uses. Queued and running runs always stay.
    #[command(group(
        ArgGroup::new("cutoff")
            .required(true)
            .args(["older_than", "clean_before_timestamp"])
    ))]
    Clean {
        /// Delete what ended longer ago than this, e.g. `30d`, `12h`, `1w 2d`.
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Option<Duration>,
        /// Delete what ended before this time: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS` (UTC) or
        /// RFC 3339.
        #[arg(long)]
        clean_before_timestamp: Option<String>,
        /// Only count what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(cmd: DbCommand, settings: &Settings, format: Format) -> Result<ExitCode> {
    match cmd {
        DbCommand::Migrate => {
            // Always migrates, whatever `database.migrate_on_start` says.
            let store = super::connect_store(settings).await?;
            super::migrate(settings, store.as_ref()).await?;
            println!("Database migrated: {}", settings.database_display());
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Check => {
            let store = super::connect_store(settings).await?;
            store.check_integrity().await.with_context(|| {
                format!("checking the database {}", settings.database_display())
            })?;
            println!("Database OK: {}", settings.database_display());
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Clean {
            older_than,
            clean_before_timestamp,
            dry_run,
        } => {
            let before = cutoff(older_than, clean_before_timestamp.as_deref(), Utc::now())?;
            let store = super::open_store(settings).await?;
            let report = store
                .purge_history(before, dry_run)
                .await
                .context("cleaning the database")?;
            let before_text = before.to_rfc3339_opts(SecondsFormat::Micros, true);
            let mut value = json!({
                "runs": report.runs,
                "task_instances": report.task_instances,
                "tries": report.tries,
                "run_changes": report.run_changes,
                "scheduler_jobs": report.scheduler_jobs,
                "dag_versions": report.dag_versions,
            });
            match format {
                Format::Table | Format::Plain => {
                    let verb = if dry_run { "Would delete" } else { "Deleted" };
                    println!("{verb} (history that ended before {before_text}):");
                }
                Format::Json | Format::Yaml => {
                    value["before"] = json!(before_text);
                    value["dry_run"] = json!(dry_run);
                }
            }
            print_object(format, &value);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The time before which history goes: `now - older_than`, or the timestamp given.
fn cutoff(
    older_than: Option<Duration>,
    timestamp: Option<&str>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>> {
    match (older_than, timestamp) {
        (Some(age), None) => {
            let age = chrono::Duration::from_std(age).context("--older-than is too long")?;
            now.checked_sub_signed(age)
                .context("--older-than reaches before the calendar starts")
        }
        (None, Some(text)) => parse_date(text).context("--clean-before-timestamp"),
        _ => anyhow::bail!("give exactly one of --older-than and --clean-before-timestamp"),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn cutoff_from_age_or_timestamp() {
        let now = Utc.with_ymd_and_hms(2024, 3, 31, 12, 0, 0).unwrap();
        let age = humantime::parse_duration("30d").unwrap();
        assert_eq!(
            cutoff(Some(age), None, now).unwrap(),
            Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap()
        );
        assert_eq!(
            cutoff(None, Some("2024-02-01"), now).unwrap(),
            Utc.with_ymd_and_hms(2024, 2, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            cutoff(None, Some("2024-02-01T06:00:00+02:00"), now).unwrap(),
            Utc.with_ymd_and_hms(2024, 2, 1, 4, 0, 0).unwrap()
        );
        assert!(cutoff(None, Some("last tuesday"), now).is_err());
        assert!(cutoff(None, None, now).is_err());
        assert!(cutoff(Some(age), Some("2024-02-01"), now).is_err());
    }
}
