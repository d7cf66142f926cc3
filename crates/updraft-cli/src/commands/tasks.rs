//! `updraft tasks ...`

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use clap::Subcommand;
use regex::Regex;
use serde_json::{Value, json};
use updraft_core::TaskState;
use updraft_core::timetable::manual_interval;
use updraft_dag::log_path;
use updraft_executor::render::{TemplateContext, look_up_secrets, render_task, secret_references};
use updraft_executor::{
    ExecOutcome, LaunchSpec, LocalExecutor, LocalExecutorConfig, Program, RenderedTask, TryEvent,
    TryKey,
};
use updraft_store::{NewestRunsFilter, ReadStore, RunRow, Store, TiKey, TiRow};

use super::dags::find_run;
use super::{fmt_time, parse_date, require_dag, sync_dags};
use crate::config::Settings;
use crate::output::{Format, print_rows, print_value};

#[derive(Subcommand)]
pub enum TasksCommand {
    /// List a DAG's tasks in dependency order.
    List { dag_id: String },
    /// Run one task now, in this process, ignoring dependencies and recording nothing.
    Test {
        dag_id: String,
        task_id: String,
        /// Logical date (default: now).
        logical_date: Option<String>,
    },
    /// Print a task's templates rendered for a logical date (secrets shown as `***`), as
    /// Airflow's `tasks render`; runs nothing and records nothing.
    Render {
        dag_id: String,
        task_id: String,
        /// Logical date (default: now).
        logical_date: Option<String>,
    },
    /// Print a task try's log.
    Logs {
        dag_id: String,
        run_id: String,
        task_id: String,
        /// Try number (default: the latest).
        #[arg(long = "try")]
        try_number: Option<u32>,
    },
    /// Clear task instances so they run again.
    Clear {
        dag_id: String,
        /// Only tasks whose id matches this regular expression.
        #[arg(long, short = 't')]
        task_regex: Option<String>,
        /// Also clear every task downstream of the matched ones.
        #[arg(long, short = 'd')]
        downstream: bool,
        /// Only this run.
        #[arg(long, short = 'r')]
        run_id: Option<String>,
        /// Only runs with logical date at or after this.
        #[arg(long, short = 's')]
        start_date: Option<String>,
        /// Only runs with logical date at or before this.
        #[arg(long, short = 'e')]
        end_date: Option<String>,
        /// Only failed and upstream_failed instances.
        #[arg(long, short = 'f')]
        only_failed: bool,
    },
    /// Set a task instance's state (mark success / failed / skipped).
    SetState {
        dag_id: String,
        run_id: String,
        task_id: String,
        /// success, failed or skipped
        state: String,
    },
    /// Each task instance's state in a run.
    StatesForDagRun { dag_id: String, run_id: String },
}

pub async fn run(cmd: TasksCommand, settings: &Settings, format: Format) -> Result<ExitCode> {
    if let TasksCommand::Test {
        dag_id,
        task_id,
        logical_date,
    } = &cmd
    {
        return test(settings, dag_id, task_id, logical_date.as_deref()).await;
    }
    if let TasksCommand::Render {
        dag_id,
        task_id,
        logical_date,
    } = &cmd
    {
        return render(settings, dag_id, task_id, logical_date.as_deref()).await;
    }
    let store = super::open_store(settings).await?;
    sync_dags(settings, store.as_ref()).await?;
    let store = store.as_ref();
    match cmd {
        TasksCommand::List { dag_id } => {
            let row = require_dag(store, &dag_id).await?;
            let rows: Vec<Value> = updraft_dag::topological_order(&row.dag)
                .into_iter()
                .map(|t| {
                    json!({"task_id": t.task_id, "upstream": t.upstream,
                           "trigger_rule": t.trigger_rule.as_str(), "pool": t.pool})
                })
                .collect();
            match format {
                Format::Table | Format::Plain => rows
                    .iter()
                    .for_each(|r| println!("{}", r["task_id"].as_str().unwrap_or_default())),
                Format::Json | Format::Yaml => print_value(format, &Value::Array(rows)),
            }
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::Test { .. } | TasksCommand::Render { .. } => {
            unreachable!("handled above")
        }
        TasksCommand::Logs {
            dag_id,
            run_id,
            task_id,
            try_number,
        } => logs(settings, store, &dag_id, &run_id, &task_id, try_number).await,
        TasksCommand::Clear {
            dag_id,
            task_regex,
            downstream,
            run_id,
            start_date,
            end_date,
            only_failed,
        } => {
            let selection = ClearSelection {
                task_regex: task_regex
                    .as_deref()
                    .map(Regex::new)
                    .transpose()
                    .context("--task-regex")?,
                downstream,
                run_id,
                start: start_date.as_deref().map(parse_date).transpose()?,
                end: end_date.as_deref().map(parse_date).transpose()?,
                only_failed,
            };
            let code = clear(store, &dag_id, &selection).await?;
            super::poke_scheduler(settings, store).await;
            Ok(code)
        }
        TasksCommand::SetState {
            dag_id,
            run_id,
            task_id,
            state,
        } => {
            let state: TaskState = state.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            if !matches!(
                state,
                TaskState::Success | TaskState::Failed | TaskState::Skipped
            ) {
                bail!("a task instance can be set to success, failed or skipped");
            }
            let run = find_run(store, &dag_id, &run_id).await?;
            let key = TiKey {
                run_pk: run.id,
                task_id: task_id.clone(),
                map_index: -1,
            };
            if !store.force_ti_state(&key, state, Utc::now()).await? {
                bail!("no task `{task_id}` in run `{}`", run.run_id);
            }
            super::poke_scheduler(settings, store).await;
            println!("{dag_id}.{task_id} in {} set to {state}", run.run_id);
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::StatesForDagRun { dag_id, run_id } => {
            let run = find_run(store, &dag_id, &run_id).await?;
            let rows: Vec<Value> = store
                .task_instances(run.id)
                .await?
                .iter()
                .map(ti_json)
                .collect();
            print_rows(
                format,
                &["task_id", "state", "try_number", "start_date", "end_date"],
                &rows,
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn ti_json(ti: &TiRow) -> Value {
    json!({
        "dag_id": ti.dag_id,
        "run_id": ti.run_id,
        "task_id": ti.task_id,
        "state": ti.state.as_str(),
        "try_number": ti.try_number,
        "start_date": fmt_time(ti.start_date),
        "end_date": fmt_time(ti.end_date),
        "pool": ti.pool,
    })
}

struct ClearSelection {
    task_regex: Option<Regex>,
    downstream: bool,
    run_id: Option<String>,
    start: Option<chrono::DateTime<Utc>>,
    end: Option<chrono::DateTime<Utc>>,
    only_failed: bool,
}

async fn clear(store: &dyn Store, dag_id: &str, selection: &ClearSelection) -> Result<ExitCode> {
    require_dag(store, dag_id).await?;
    let runs: Vec<RunRow> = match &selection.run_id {
        Some(run_id) => vec![find_run(store, dag_id, run_id).await?],
        None => store
            .newest_runs(&NewestRunsFilter {
                dag_id: Some(dag_id.to_string()),
                states: vec![],
                limit: None,
            })
            .await?
            .into_iter()
            .filter(|r| selection.start.is_none_or(|s| r.logical_date >= s))
            .filter(|r| selection.end.is_none_or(|e| r.logical_date <= e))
            .collect(),
    };
    let mut cleared = 0;
    for run in &runs {
        let dag = store
            .dag_version(&run.dag_id, &run.version)
            .await?
            .with_context(|| format!("version {} of {dag_id} is missing", run.version))?;
        let tis = store.task_instances(run.id).await?;
        let task_ids = tasks_to_clear(&dag, &tis, selection);
        if !task_ids.is_empty() {
            cleared += store
                .clear_task_instances(run.id, &task_ids, Utc::now())
                .await?;
        }
    }
    println!("Cleared {cleared} task instances in {} runs", runs.len());
    Ok(ExitCode::SUCCESS)
}

fn tasks_to_clear(
    dag: &updraft_dag::Dag,
    tis: &[TiRow],
    selection: &ClearSelection,
) -> Vec<String> {
    let mut chosen: Vec<String> = tis
        .iter()
        .filter(|ti| {
            selection
                .task_regex
                .as_ref()
                .is_none_or(|re| re.is_match(&ti.task_id))
        })
        .filter(|ti| {
            !selection.only_failed
                || matches!(ti.state, TaskState::Failed | TaskState::UpstreamFailed)
        })
        .map(|ti| ti.task_id.clone())
        .collect();
    if selection.downstream {
        let extra: Vec<String> = chosen
            .iter()
            .flat_map(|id| dag.downstream_of(id))
            .map(str::to_string)
            .collect();
        chosen.extend(extra);
    }
    chosen.sort();
    chosen.dedup();
    chosen
}

async fn logs(
    settings: &Settings,
    store: &dyn ReadStore,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    try_number: Option<u32>,
) -> Result<ExitCode> {
    let run = find_run(store, dag_id, run_id).await?;
    let ti = store
        .task_instance(&TiKey {
            run_pk: run.id,
            task_id: task_id.to_string(),
            map_index: -1,
        })
        .await?
        .with_context(|| format!("no task `{task_id}` in run `{}`", run.run_id))?;
    let try_number = try_number.unwrap_or(ti.try_number);
    if try_number == 0 {
        bail!("task `{task_id}` has not run yet in `{}`", run.run_id);
    }
    let path = log_path(
        &settings.logs_folder(),
        &run.tenant,
        dag_id,
        &run.run_id,
        task_id,
        try_number,
    );
    let text = match settings.remote_logs()? {
        // The local file while it exists, else the object store.
        Some(remote) => {
            let rel = updraft_logs::rel_path(&run.tenant, dag_id, &run.run_id, task_id, try_number);
            let running = try_number == ti.try_number && ti.state.is_active();
            let slice = remote.read(&rel, running, 0, u64::MAX).await?;
            let slice = slice.with_context(|| {
                format!(
                    "no log of try {try_number}: neither {} nor {rel} in {}",
                    path.display(),
                    remote.location().url
                )
            })?;
            String::from_utf8_lossy(&slice.bytes).into_owned()
        }
        None => {
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?
        }
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// Print each task instance's state, then each try's log, for a finished run.
pub async fn print_run_report(store: &dyn ReadStore, run: &RunRow, logs_root: &Path) -> Result<()> {
    let tis = store.task_instances(run.id).await?;
    let rows: Vec<Value> = tis.iter().map(ti_json).collect();
    print_rows(
        Format::Table,
        &["task_id", "state", "try_number", "start_date", "end_date"],
        &rows,
    );
    for ti in &tis {
        for try_number in 1..=ti.try_number {
            let path = updraft_dag::mapped_log_path(
                logs_root,
                &run.tenant,
                &run.dag_id,
                &run.run_id,
                &ti.task_id,
                ti.map_index,
                try_number,
            );
            let shown = path.strip_prefix(logs_root).unwrap_or(&path);
            let instance = if ti.map_index >= 0 {
                format!("{}[{}]", ti.task_id, ti.map_index)
            } else {
                ti.task_id.clone()
            };
            println!(
                "--- {instance} try {try_number} ({}): {} ---",
                ti.state,
                shown.display()
            );
            match std::fs::read_to_string(&path) {
                Ok(text) => print!("{}", masked(&text)),
                Err(e) => println!("(no log: {e})"),
            }
        }
    }
    Ok(())
}

/// `text` with every secret this process has read hidden.
fn masked(text: &str) -> String {
    match updraft_secrets::mask::global().read() {
        Ok(global) if !global.is_empty() => global.mask(text),
        _ => text.to_owned(),
    }
}

/// The connections and variables templates may use in `tasks test` and `tasks render`: the
/// configured backends.
async fn secrets_chain(
    settings: &Settings,
) -> Result<Option<std::sync::Arc<updraft_secrets::Secrets>>> {
    let logs = settings.logs_folder();
    Ok(super::scheduler_config(settings, None, logs).await?.secrets)
}

/// One task of the DAG file as it is now, rendered for a manual run at `logical_date` (now
/// when absent), with the connections and variables it refers to looked up for its tenant.
async fn render_from_file(
    settings: &Settings,
    dag: &updraft_dag::Dag,
    task: &updraft_dag::Task,
    logical_date: Option<&str>,
) -> Result<(String, RenderedTask)> {
    let logical_date = logical_date
        .map(parse_date)
        .transpose()?
        .unwrap_or_else(Utc::now);
    let interval = manual_interval(dag, logical_date);
    let run_id = updraft_core::runs::manual_run_id(logical_date);
    let params = updraft_dag::resolve_params(dag, &Default::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut context = TemplateContext {
        secrets: Default::default(),
        xcoms: Default::default(),
        tenant: dag.tenant.clone(),
        dag_id: dag.dag_id.clone(),
        run_id: run_id.clone(),
        task_id: task.task_id.clone(),
        try_number: 1,
        map_index: -1,
        mapped: Default::default(),
        logical_date,
        data_interval_start: interval.start,
        data_interval_end: interval.end,
        conf: json!({}),
        params,
        run_type: "manual".to_string(),
        timezone: dag.timezone,
    };
    let references = secret_references(dag, task);
    if !references.is_empty() {
        let secrets = secrets_chain(settings).await?;
        context.secrets = look_up_secrets(secrets.as_deref(), &dag.tenant, &references)
            .await
            .map_err(|e| anyhow::anyhow!("task `{}`: {}", task.task_id, masked(&e)))?;
    }
    let rendered = render_task(dag, task, &context)?;
    Ok((run_id, rendered))
}

/// `tasks render`: each rendered field, masked.
async fn render(
    settings: &Settings,
    dag_id: &str,
    task_id: &str,
    logical_date: Option<&str>,
) -> Result<ExitCode> {
    let loaded = super::load_dag_file(settings, dag_id)?;
    let dag = &loaded.dag;
    let task = dag
        .task(task_id)
        .with_context(|| format!("DAG `{dag_id}` has no task `{task_id}`"))?;
    let (_, rendered) = render_from_file(settings, dag, task, logical_date).await?;
    print!("{}", rendered_fields(&rendered));
    Ok(ExitCode::SUCCESS)
}

/// The rendered fields as Airflow's `tasks render` prints them, every secret `***`.
fn rendered_fields(rendered: &RenderedTask) -> String {
    let mut fields: Vec<(String, String)> = Vec::new();
    match &rendered.program {
        Program::Bash(script) => fields.push(("bash".into(), script.clone())),
        Program::Command(argv) => fields.extend(
            argv.iter()
                .enumerate()
                .map(|(i, a)| (format!("command[{i}]"), a.clone())),
        ),
        Program::Pod(pod) => fields.push((
            "pod".into(),
            serde_json::to_string_pretty(pod).unwrap_or_default(),
        )),
        Program::Python(python) => {
            fields.push(("python.interpreter".into(), python.interpreter.clone()));
            fields.push(("python.call".into(), python.call.clone()));
        }
        Program::Noop => {}
        Program::Sensor(sensor) => fields.push(("sensor".into(), format!("{:?}", sensor.check))),
    }
    if let Some(cwd) = &rendered.cwd {
        fields.push(("cwd".into(), cwd.display().to_string()));
    }
    for (name, value) in rendered.env.iter().chain(&rendered.secret_env) {
        fields.push((format!("env.{name}"), value.clone()));
    }
    let rule = "# ----------------------------------------------------------";
    let mut out = String::new();
    for (name, value) in fields {
        let value = rendered.mask.mask(&value);
        out.push_str(&format!("{rule}\n# property: {name}\n{rule}\n{value}\n\n"));
    }
    out
}

/// `tasks test`: one task, from the DAG file as it is now, without touching the database.
async fn test(
    settings: &Settings,
    dag_id: &str,
    task_id: &str,
    logical_date: Option<&str>,
) -> Result<ExitCode> {
    let loaded = super::load_dag_file(settings, dag_id)?;
    let dag = &loaded.dag;
    let task = dag
        .task(task_id)
        .with_context(|| format!("DAG `{dag_id}` has no task `{task_id}`"))?;
    let (run_id, mut rendered) = render_from_file(settings, dag, task, logical_date).await?;
    if let Some((folder, file)) = super::dag_file_location(settings, &loaded)? {
        let folder = folder.display().to_string();
        for (name, value) in [
            ("AIRFLOW__CORE__DAGS_FOLDER", folder.clone()),
            ("UPDRAFT_DAGS_FOLDER", folder),
            ("UPDRAFT_DAG_FILE", file.display().to_string()),
        ] {
            rendered.env.retain(|(n, _)| n != name);
            rendered.env.push((name.to_owned(), value));
        }
        rendered.env.sort();
    }
    let logs = tempfile::tempdir()?;
    let log = log_path(logs.path(), &dag.tenant, dag_id, &run_id, task_id, 1);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let spec = LaunchSpec {
        key: TryKey {
            run_pk: 0,
            task_id: task_id.to_string(),
            map_index: -1,
            try_number: 1,
        },
        rendered,
        log_path: log.clone(),
        timeout: task.execution_timeout,
    };
    let kubernetes = super::kubernetes_config(settings).await?;
    let as_pod = match (&spec.rendered.program, &kubernetes) {
        (Program::Pod(_), Some(_)) => true,
        (Program::Bash(_) | Program::Command(_), Some(k)) => k.every_task,
        // A python task's module is in the DAGs folder: it runs here.
        _ => false,
    };
    match kubernetes.filter(|_| as_pod) {
        Some(k) => {
            let identity = updraft_pods::TryIdentity {
                tenant: dag.tenant.clone(),
                dag_id: dag.dag_id.clone(),
                run_id: run_id.clone(),
                task_id: task_id.to_string(),
                try_number: 1,
            };
            updraft_pods::PodExecutor::new(k.client, k.pods, tx).launch(spec, identity);
        }
        None => {
            let executor = LocalExecutor::new(
                LocalExecutorConfig {
                    max_concurrency: 1,
                    kill_grace: settings.config.scheduler.kill_grace,
                    default_cwd: None,
                    isolation: super::try_isolation(settings),
                    ..LocalExecutorConfig::default()
                },
                tx,
            );
            executor.launch(spec);
        }
    }
    let outcome = loop {
        match rx.recv().await {
            Some(TryEvent::Finished { outcome, .. }) => break outcome,
            Some(TryEvent::Started { .. }) => continue,
            None => bail!("the executor stopped without reporting"),
        }
    };
    print!(
        "{}",
        masked(&std::fs::read_to_string(&log).unwrap_or_default())
    );
    let outcome_text = match &outcome {
        ExecOutcome::Success => "success".to_string(),
        ExecOutcome::Skipped => "skipped".to_string(),
        ExecOutcome::Failed { message, .. } => format!("failed: {message}"),
        ExecOutcome::TimedOut => "failed: execution_timeout expired".to_string(),
        ExecOutcome::Killed => "killed".to_string(),
        // `tasks test` pokes a sensor once (Airflow's `tasks test` runs it to its end).
        ExecOutcome::Poked(_) => outcome.to_string(),
    };
    println!("Task {task_id}: {outcome_text}");
    Ok(match outcome {
        ExecOutcome::Success | ExecOutcome::Skipped => ExitCode::SUCCESS,
        ExecOutcome::Poked(poke) if poke.result == updraft_executor::PokeResult::Done => {
            ExitCode::SUCCESS
        }
        _ => ExitCode::from(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_fields_show_every_secret_as_stars() {
        let mut mask = updraft_secrets::Masker::new();
        mask.add("s3cr3t-password");
        mask.add("postgres://app:s3cr3t-password@db/shop");
        let rendered = RenderedTask {
            program: Program::Bash("psql --password=s3cr3t-password -h db".into()),
            env: vec![("DB_PASS".into(), "pw s3cr3t-password".into())],
            cwd: None,
            conf: "{}".into(),
            secret_env: vec![(
                "AIRFLOW_CONN_MY_DB".into(),
                "postgres://app:s3cr3t-password@db/shop".into(),
            )],
            mask,
            do_xcom_push: false,
        };
        let shown = rendered_fields(&rendered);
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("# property: bash\n"), "{shown}");
        assert!(shown.contains("psql --password=*** -h db\n"), "{shown}");
        assert!(shown.contains("# property: env.DB_PASS\n"), "{shown}");
        assert!(shown.contains("pw ***\n"), "{shown}");
        assert!(
            shown.contains("# property: env.AIRFLOW_CONN_MY_DB\n"),
            "{shown}"
        );
    }
}
