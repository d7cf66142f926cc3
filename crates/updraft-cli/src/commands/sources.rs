//! `updraft sources ...`: the DAG sources as the scheduler last recorded them, and syncing
//! them now (through the running scheduler, or in this process with `--here`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde_json::{Value, json};
use updraft_store::{SourceRow, Store};

use crate::config::Settings;
use crate::output::{Format, print_rows};

/// How often `sources sync` looks whether the scheduler recorded the sync it asked for.
const WAIT_STEP: Duration = Duration::from_millis(200);

#[derive(Subcommand)]
pub enum SourcesCommand {
    /// List the DAG sources: revision in use, last sync, failures and error.
    List,
    /// Sync a source (or every configured one) now and print what it found.
    Sync {
        /// The source; every configured source when left out.
        name: Option<String>,
        /// Sync in this process instead of asking the running scheduler.
        #[arg(long)]
        here: bool,
        /// How long to wait for the scheduler to record the sync.
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

const COLUMNS: &[&str] = &[
    "name",
    "tenant",
    "kind",
    "url",
    "ref",
    "revision",
    "last_sync_at",
    "last_success_at",
    "failures",
    "error",
];

pub async fn run(cmd: SourcesCommand, settings: &Settings, format: Format) -> Result<ExitCode> {
    let store = super::open_store(settings).await?;
    match cmd {
        SourcesCommand::List => {
            let rows: Vec<Value> = store.sources().await?.iter().map(row_json).collect();
            print_rows(format, COLUMNS, &rows);
            Ok(ExitCode::SUCCESS)
        }
        SourcesCommand::Sync {
            name,
            here,
            timeout,
        } => {
            let names = target_names(settings, name)?;
            let rows = if here {
                sync_here(settings, store.as_ref(), &names).await?
            } else {
                sync_by_scheduler(settings, store.as_ref(), &names, timeout).await?
            };
            let json: Vec<Value> = rows.iter().map(row_json).collect();
            print_rows(format, COLUMNS, &json);
            let failed = rows.iter().any(|r| r.last_sync_at != r.last_success_at);
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// `name`, checked against the configuration, or every configured source.
fn target_names(settings: &Settings, name: Option<String>) -> Result<Vec<String>> {
    let configured: Vec<String> = settings
        .source_specs()?
        .into_iter()
        .map(|s| s.name)
        .collect();
    match name {
        Some(name) if configured.contains(&name) => Ok(vec![name]),
        Some(name) => bail!(
            "no DAG source named `{name}` in {} (configured: {})",
            crate::config::CONFIG_FILE,
            if configured.is_empty() {
                "none".to_owned()
            } else {
                configured.join(", ")
            }
        ),
        None if configured.is_empty() => {
            bail!("no [[sources]] in {}", crate::config::CONFIG_FILE)
        }
        None => Ok(configured),
    }
}

/// Syncs `names` in this process, one after another, recording each.
async fn sync_here(
    settings: &Settings,
    store: &dyn Store,
    names: &[String],
) -> Result<Vec<SourceRow>> {
    let sources = super::open_sources(settings)?.context("no [[sources]] configured")?;
    let mut rows = Vec::with_capacity(names.len());
    for name in names {
        sources.sync(name).await?;
        let row = sources.row(name)?;
        store
            .record_source(&row)
            .await
            .with_context(|| format!("recording the sync of DAG source {name}"))?;
        rows.push(row);
    }
    Ok(rows)
}

/// Records a request per source, wakes the scheduler, and waits until it has recorded a sync
/// of each that ended after the request.
async fn sync_by_scheduler(
    settings: &Settings,
    store: &dyn Store,
    names: &[String],
    timeout: Duration,
) -> Result<Vec<SourceRow>> {
    let asked = Utc::now();
    for name in names {
        if !store.request_source_sync(name, asked).await? {
            bail!(
                "DAG source `{name}` has never been recorded: no scheduler with it configured has \
                 run yet (start one, or sync it in this process with --here)"
            );
        }
    }
    super::poke_scheduler(settings, store).await;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut rows = Vec::with_capacity(names.len());
    for name in names {
        rows.push(wait_for_sync(store, name, asked, deadline, timeout).await?);
    }
    Ok(rows)
}

async fn wait_for_sync(
    store: &dyn Store,
    name: &str,
    asked: DateTime<Utc>,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<SourceRow> {
    loop {
        if let Some(row) = store.source(name).await?
            && row.last_sync_at.is_some_and(|at| at >= asked)
        {
            return Ok(row);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "no scheduler synced DAG source `{name}` within {} (is a scheduler running with \
                 it configured? --here syncs in this process)",
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(WAIT_STEP).await;
    }
}

fn row_json(row: &SourceRow) -> Value {
    json!({
        "name": row.name,
        "tenant": row.tenant,
        "kind": row.kind,
        "url": row.url,
        "ref": row.reference,
        "revision": row.revision,
        "revision_url": row.revision_url,
        "last_sync_at": row.last_sync_at.map(|t| t.to_rfc3339()),
        "last_success_at": row.last_success_at.map(|t| t.to_rfc3339()),
        "failures": row.failures,
        "error": row.error,
        "sync_requested_at": row.sync_requested_at.map(|t| t.to_rfc3339()),
    })
}
