//! `updraft dags ...`

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use updraft_core::timetable::{intervals_between, manual_interval, next_interval};
use updraft_core::{RunState, RunType};
use updraft_dag::Dag;
use updraft_runs::{RunError, RunRequest, create_run, trigger_run};
use updraft_scheduler::Scheduler;
use updraft_store::{DagRow, NewestRunsFilter, ReadStore, RunRow, SqliteStore, Store};

use super::{fmt_time, parse_conf, parse_date, require_dag, sync_dags};
use crate::config::Settings;
use crate::output::{Format, print_object, print_rows};

#[derive(Subcommand)]
pub enum DagsCommand {
    /// List all DAGs.
    List,
    /// List DAG files that failed to load, with file, line and column.
    ListImportErrors,
    /// DAG warnings: what loads but is likely a mistake, such as a `bash` script that puts
    /// the run's conf in the script unquoted (quote it with `| sh`). Reads the DAGs folder, or
    /// the FILEs given; records nothing. Warnings do not fail the command.
    Lint {
        /// DAG files to check instead of the DAGs folder.
        files: Vec<std::path::PathBuf>,
    },
    /// Parse the DAGs folder and record every DAG and import error in the database; print
    /// how many of each.
    Reserialize,
    /// Show a DAG's structure (Graphviz DOT; `-o json` prints the definition).
    Show { dag_id: String },
    /// Create a manual run.
    Trigger {
        dag_id: String,
        /// JSON object passed as `dag_run.conf`; validated against the DAG's params and its
        /// size (1 MiB at most). `@path` reads it from a file.
        #[arg(long, short = 'c')]
        conf: Option<String>,
        #[arg(long, short = 'r')]
        run_id: Option<String>,
        /// Default: now.
        #[arg(long, short = 'l')]
        logical_date: Option<String>,
    },
    /// Pause a DAG: no new runs, its runs stop advancing.
    Pause { dag_id: String },
    /// Unpause a DAG.
    Unpause { dag_id: String },
    /// Run one whole DAG run in this process, without touching the database; print each
    /// task's state and log.
    Test {
        dag_id: String,
        /// Logical date (default: now).
        logical_date: Option<String>,
        #[arg(long, short = 'c')]
        conf: Option<String>,
    },
    /// Create and run the runs whose logical dates fall in a range.
    Backfill {
        dag_id: String,
        #[arg(long, short = 's')]
        start_date: String,
        #[arg(long, short = 'e')]
        end_date: String,
        /// Create the runs and return without waiting for them.
        #[arg(long)]
        no_wait: bool,
    },
    /// List a DAG's runs, newest first.
    ListRuns {
        dag_id: String,
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// State of a run, by run id or logical date.
    State {
        dag_id: String,
        run_id_or_logical_date: String,
    },
}

pub async fn run(cmd: DagsCommand, settings: &Settings, format: Format) -> Result<ExitCode> {
    if let DagsCommand::Test {
        dag_id,
        logical_date,
        conf,
    } = &cmd
    {
        return test(settings, dag_id, logical_date.as_deref(), conf.as_deref()).await;
    }
    if let DagsCommand::Lint { files } = &cmd {
        return lint(settings, files, format);
    }
    let store = super::open_store(settings).await?;
    let bag = sync_dags(settings, store.as_ref()).await?;
    let store = store.as_ref();
    match cmd {
        DagsCommand::Reserialize => {
            let counts = json!({
                "dags": bag.dags().count(),
                "import_errors": bag.import_errors().len(),
            });
            print_object(format, &counts);
            Ok(ExitCode::SUCCESS)
        }
        DagsCommand::List => list(store, format).await,
        DagsCommand::ListImportErrors => list_import_errors(store, format).await,
        DagsCommand::Show { dag_id } => show(store, &dag_id, format).await,
        DagsCommand::Trigger {
            dag_id,
            conf,
            run_id,
            logical_date,
        } => {
            let conf = parse_conf(conf.as_deref())?;
            let logical_date = logical_date.as_deref().map(parse_date).transpose()?;
            require_dag(store, &dag_id).await?;
            let run = trigger_run(store, &dag_id, run_id, logical_date, conf, Utc::now()).await?;
            super::poke_scheduler(settings, store).await;
            print_object(format, &run_json(&run));
            Ok(ExitCode::SUCCESS)
        }
        DagsCommand::Pause { dag_id } => set_paused(settings, store, &dag_id, true).await,
        DagsCommand::Unpause { dag_id } => set_paused(settings, store, &dag_id, false).await,
        DagsCommand::Test { .. } | DagsCommand::Lint { .. } => unreachable!("handled above"),
        DagsCommand::Backfill {
            dag_id,
            start_date,
            end_date,
            no_wait,
        } => backfill(settings, store, &dag_id, &start_date, &end_date, no_wait).await,
        DagsCommand::ListRuns {
            dag_id,
            state,
            limit,
        } => list_runs(store, &dag_id, state.as_deref(), limit, format).await,
        DagsCommand::State {
            dag_id,
            run_id_or_logical_date,
        } => state(store, &dag_id, &run_id_or_logical_date, format).await,
    }
}

async fn list(store: &dyn ReadStore, format: Format) -> Result<ExitCode> {
    let mut dags = store.dags().await?;
    dags.retain(|d| d.is_active);
    dags.sort_by(|a, b| a.dag.dag_id.cmp(&b.dag.dag_id));
    let mut rows = Vec::new();
    for row in &dags {
        rows.push(dag_json(store, row).await?);
    }
    print_rows(
        format,
        &[
            "dag_id",
            "tenant",
            "fileloc",
            "schedule",
            "is_paused",
            "next_dagrun",
            "tags",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

async fn dag_json(store: &dyn ReadStore, row: &DagRow) -> Result<Value> {
    let last = store.latest_scheduled_run(&row.dag.dag_id).await?.map(|r| {
        updraft_core::timetable::DataInterval {
            start: r.data_interval_start,
            end: r.data_interval_end,
        }
    });
    let next = next_interval(&row.dag, last.as_ref(), Utc::now());
    Ok(json!({
        "dag_id": row.dag.dag_id,
        "tenant": row.dag.tenant,
        "fileloc": row.dag.fileloc,
        "description": row.dag.description,
        "schedule": row.dag.schedule.to_string(),
        "timezone": row.dag.timezone.name(),
        "is_paused": row.is_paused,
        "is_active": row.is_active,
        "version": row.version,
        "next_dagrun": fmt_time(next.as_ref().map(|i| i.start)),
        "tags": row.dag.tags,
    }))
}

async fn list_import_errors(store: &dyn ReadStore, format: Format) -> Result<ExitCode> {
    let errors = store.import_errors().await?;
    let rows: Vec<Value> = errors
        .iter()
        .map(|e| {
            json!({"tenant": e.tenant, "filename": e.filename, "line": e.line,
                   "column": e.column, "message": e.message})
        })
        .collect();
    print_rows(
        format,
        &["tenant", "filename", "line", "column", "message"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

fn lint(settings: &Settings, files: &[std::path::PathBuf], format: Format) -> Result<ExitCode> {
    use updraft_dag::lint::{lint_dag_file, python_module_warnings};
    let mut warnings = Vec::new();
    if files.is_empty() {
        let mut bag = super::dag_bag(settings)?;
        bag.refresh();
        for loaded in bag.dags() {
            warnings.extend(lint_dag_file(&loaded.dag.fileloc, &loaded.source));
            if let Some((root, file)) = super::dag_file_location(settings, loaded)? {
                let folders: Vec<&std::path::Path> =
                    file.parent().into_iter().chain([root.as_path()]).collect();
                warnings.extend(python_module_warnings(
                    &loaded.dag.fileloc,
                    &loaded.source,
                    &folders,
                ));
            }
        }
    } else {
        let root = settings.dags_folder();
        for file in files {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let name = file.display().to_string();
            warnings.extend(lint_dag_file(&name, &text));
            let folders: Vec<&std::path::Path> =
                file.parent().into_iter().chain([root.as_path()]).collect();
            warnings.extend(python_module_warnings(&name, &text, &folders));
        }
    }
    warnings.sort_by(|a, b| (&a.filename, a.line).cmp(&(&b.filename, b.line)));
    warnings.dedup();
    let rows: Vec<Value> = warnings
        .iter()
        .map(|w| serde_json::to_value(w).unwrap_or(Value::Null))
        .collect();
    if rows.is_empty() && format == Format::Table {
        println!("No DAG warnings");
    } else {
        print_rows(format, &["filename", "line", "task_id", "message"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(store: &dyn ReadStore, dag_id: &str, format: Format) -> Result<ExitCode> {
    let row = require_dag(store, dag_id).await?;
    match format {
        Format::Json => println!("{}", serde_json::to_string(&row.dag)?),
        Format::Yaml => print!("{}", serde_saphyr::to_string(&row.dag)?),
        Format::Table | Format::Plain => print!("{}", dot(&row.dag)),
    }
    Ok(ExitCode::SUCCESS)
}

fn dot(dag: &Dag) -> String {
    let mut out = format!("digraph \"{}\" {{\n  rankdir=LR;\n", dag.dag_id);
    for task in &dag.tasks {
        out.push_str(&format!("  \"{}\";\n", task.task_id));
    }
    for task in &dag.tasks {
        for up in &task.upstream {
            out.push_str(&format!("  \"{up}\" -> \"{}\";\n", task.task_id));
        }
    }
    out.push_str("}\n");
    out
}

async fn set_paused(
    settings: &Settings,
    store: &dyn Store,
    dag_id: &str,
    paused: bool,
) -> Result<ExitCode> {
    if !store.set_paused(dag_id, paused).await? {
        bail!("DAG `{dag_id}` not found");
    }
    super::poke_scheduler(settings, store).await;
    println!("Dag: {dag_id}, paused: {paused}");
    Ok(ExitCode::SUCCESS)
}

pub fn run_json(run: &RunRow) -> Value {
    json!({
        "dag_id": run.dag_id,
        "run_id": run.run_id,
        "tenant": run.tenant,
        "state": run.state.as_str(),
        "run_type": run.run_type.as_str(),
        "logical_date": run.logical_date.to_rfc3339(),
        "data_interval_start": run.data_interval_start.to_rfc3339(),
        "data_interval_end": run.data_interval_end.to_rfc3339(),
        "start_date": fmt_time(run.start_date),
        "end_date": fmt_time(run.end_date),
        "conf": run.conf,
        "version": run.version,
    })
}

const RUN_COLUMNS: [&str; 6] = [
    "dag_id",
    "run_id",
    "state",
    "logical_date",
    "start_date",
    "end_date",
];

async fn list_runs(
    store: &dyn ReadStore,
    dag_id: &str,
    state: Option<&str>,
    limit: u32,
    format: Format,
) -> Result<ExitCode> {
    let states = match state {
        Some(s) => vec![s.parse::<RunState>().map_err(|e| {
            anyhow::anyhow!("--state: {e}; expected queued, running, success or failed")
        })?],
        None => vec![],
    };
    // Inactive DAGs (file gone) keep their runs, so only an unknown DAG is an error.
    if store.dag(dag_id).await?.is_none() {
        bail!(
            "DAG `{dag_id}` not found (see `updraft dags list` and `updraft dags list-import-errors`)"
        );
    }
    let runs = store
        .newest_runs(&NewestRunsFilter {
            dag_id: Some(dag_id.to_string()),
            states,
            limit: Some(limit),
        })
        .await?;
    let rows: Vec<Value> = runs.iter().map(run_json).collect();
    print_rows(format, &RUN_COLUMNS, &rows);
    Ok(ExitCode::SUCCESS)
}

/// Find a run by run id, or by logical date.
pub async fn find_run(store: &dyn ReadStore, dag_id: &str, key: &str) -> Result<RunRow> {
    if let Some(run) = store.run(dag_id, key).await? {
        return Ok(run);
    }
    if let Ok(date) = parse_date(key) {
        let runs = store
            .newest_runs(&NewestRunsFilter {
                dag_id: Some(dag_id.to_string()),
                states: vec![],
                limit: None,
            })
            .await?;
        if let Some(run) = runs.into_iter().find(|r| r.logical_date == date) {
            return Ok(run);
        }
    }
    if store.dag(dag_id).await?.is_none() {
        bail!("DAG `{dag_id}` not found (see `updraft dags list`)");
    }
    bail!("no run `{key}` of DAG `{dag_id}` (see `updraft dags list-runs {dag_id}`)")
}

async fn state(store: &dyn ReadStore, dag_id: &str, key: &str, format: Format) -> Result<ExitCode> {
    let run = find_run(store, dag_id, key).await?;
    match format {
        Format::Json | Format::Yaml => print_object(format, &run_json(&run)),
        Format::Table | Format::Plain => println!("{}", run.state),
    }
    Ok(ExitCode::SUCCESS)
}

async fn backfill(
    settings: &Settings,
    store: &dyn Store,
    dag_id: &str,
    start: &str,
    end: &str,
    no_wait: bool,
) -> Result<ExitCode> {
    let row = require_dag(store, dag_id).await?;
    let (start, end) = (parse_date(start)?, parse_date(end)?);
    if end < start {
        bail!("--end-date is before --start-date");
    }
    let intervals = intervals_between(&row.dag, start, end);
    if intervals.is_empty() {
        bail!("no data interval of DAG `{dag_id}` starts between {start} and {end}");
    }
    let mut run_pks = Vec::new();
    for interval in intervals {
        let request = RunRequest {
            run_type: RunType::Backfill,
            run_id: None,
            logical_date: interval.start,
            interval,
            conf: json!({}),
        };
        match create_run(store, &row.dag, &row.version, request, Utc::now()).await {
            Ok(run) => run_pks.push(run.id),
            Err(RunError::RunExists { run_id, .. }) => {
                eprintln!("run {run_id} already exists; skipped")
            }
            Err(e) => return Err(e.into()),
        }
    }
    eprintln!("created {} backfill runs of {dag_id}", run_pks.len());
    super::poke_scheduler(settings, store).await;
    if no_wait || run_pks.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    wait_for_backfill(settings, store, &run_pks).await
}

async fn wait_for_backfill(
    settings: &Settings,
    store: &dyn ReadStore,
    run_pks: &[i64],
) -> Result<ExitCode> {
    let bar = ProgressBar::new(run_pks.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} runs finished {elapsed}")
            .expect("valid template"),
    );
    match super::try_scheduler_lock(settings)? {
        Some(mut lock) => {
            // No scheduler is running on this database: drive the backfill here.
            let store = super::connect_store(settings).await?;
            let config = super::scheduler_config_over(
                settings,
                Some(settings.dags_folder()),
                settings.logs_folder(),
                store.clone(),
            )
            .await?;
            let mut scheduler = Scheduler::for_runs(store, config, run_pks)?;
            lock.forward_pokes_to(scheduler.waker());
            scheduler
                .run_until_finished(|done, _| bar.set_position(done as u64))
                .await?;
        }
        None => {
            eprintln!("a scheduler is running on this database: it runs the backfill");
            loop {
                let mut done = 0;
                for pk in run_pks {
                    if store
                        .run_by_pk(*pk)
                        .await?
                        .is_some_and(|r| r.state.is_finished())
                    {
                        done += 1;
                    }
                }
                bar.set_position(done);
                if done as usize == run_pks.len() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
    bar.finish();
    let mut failed = 0;
    for pk in run_pks {
        if let Some(run) = store.run_by_pk(*pk).await?
            && run.state == RunState::Failed
        {
            failed += 1;
            eprintln!("run {} failed", run.run_id);
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `dags test`: a whole run in an in-memory database and a temporary logs folder.
async fn test(
    settings: &Settings,
    dag_id: &str,
    logical_date: Option<&str>,
    conf: Option<&str>,
) -> Result<ExitCode> {
    let logical_date = logical_date
        .map(parse_date)
        .transpose()?
        .unwrap_or_else(Utc::now);
    let conf = parse_conf(conf)?;
    let loaded = super::load_dag_file(settings, dag_id)?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await?);
    store.migrate().await?;
    let record = updraft_store::LoadedDagRecord {
        dag: &loaded.dag,
        version: &loaded.version,
        source: &loaded.source,
        bundle: None,
    };
    store.sync_dags(&[record], &[], false, Utc::now()).await?;
    // As in Airflow, a test run is not limited by pools: each pool the DAG names gets room
    // for all of its tasks at once.
    let mut pools: std::collections::BTreeMap<&str, i64> = Default::default();
    for task in &loaded.dag.tasks {
        *pools.entry(task.pool.as_str()).or_default() += i64::from(task.pool_slots);
    }
    for (name, slots) in pools {
        let pool = updraft_store::PoolRow {
            name: name.to_string(),
            slots,
            description: "dags test".to_string(),
            tenant: None,
        };
        store.upsert_pool(&pool).await?;
    }
    let request = RunRequest {
        run_type: RunType::Manual,
        run_id: None,
        logical_date,
        interval: manual_interval(&loaded.dag, logical_date),
        conf,
    };
    let run = create_run(
        store.as_ref(),
        &loaded.dag,
        &loaded.version,
        request,
        Utc::now(),
    )
    .await?;
    let logs = tempfile::tempdir().context("creating a temporary logs folder")?;
    // Its secrets chain reads the configured database, not the test's own. The DAGs folder
    // is not loaded (the scheduler drives only this run): its tries get it, as they would
    // from a scheduler.
    let folder = super::dag_file_location(settings, &loaded)?.map(|(folder, _)| folder);
    let config = super::scheduler_config(settings, folder, logs.path().to_path_buf()).await?;
    let mut scheduler = Scheduler::for_runs(store.clone(), config, &[run.id])?;
    scheduler.run_until_finished(|_, _| {}).await?;
    let run = store
        .run_by_pk(run.id)
        .await?
        .context("the test run disappeared")?;
    super::tasks::print_run_report(store.as_ref(), &run, logs.path()).await?;
    println!("Run {} of {dag_id}: {}", run.run_id, run.state);
    Ok(if run.state == RunState::Success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
