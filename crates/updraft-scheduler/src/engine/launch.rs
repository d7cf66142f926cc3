//! Launching tries: rendering a task, choosing the local or pod executor, and failing a try
//! that cannot start.
//!
//! A task with templates is rendered off the loop ([`render_off_loop`]: the blocking pool, a
//! bounded number at a time, one per tenant, within the default `RenderBudget`); the try is
//! handed to its executor when its templates are rendered, or fails through the local
//! executor's events when they cannot be (over budget, an undefined name), its reason in its
//! log. The loop never waits for a template; a task without any is only copied, on the loop.
//!
//! A task referring to connections or variables (its templates' `conn` and `var`, its
//! `connections:`) has them looked up for its run's tenant first, through the configured
//! secrets backends, also off the loop ([`look_up_secrets`], within 30 s); a lookup that fails (a backend
//! down, a value that cannot be decrypted), or no backend configured, fails the try with the
//! reason in its log. A name that exists nowhere is left out, so that the template fails
//! naming it (unless it gives a default).
//!
//! A run of a DAG read from a DAG source is pinned to the source's revision it started with
//! (its `bundle_version`): its pod tries read their `template:` from that revision's tree
//! (restored from git if pruned), and its local tries get that revision's DAG folder in
//! `UPDRAFT_DAGS_FOLDER` / `AIRFLOW__CORE__DAGS_FOLDER`, the DAG file there in
//! `UPDRAFT_DAG_FILE` and the revision in `UPDRAFT_BUNDLE_VERSION`, so files beside the DAG
//! (a python task's module) are read as they were when the run began. A run of the plain DAGs
//! folder's local tries get that folder and file. Python tasks always run locally.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::warn;
use updraft_dag::{TaskKind, mapped_log_path};
use updraft_executor::render::{
    RenderBudget, TemplateContext, TemplateXComs, XComReferences, has_templates, look_up_secrets,
    render_task, render_task_within, secret_references, xcom_references,
};
use updraft_executor::{
    ExecOutcome, LaunchSpec, Program, RenderError, RenderedTask, TryKey, render_off_loop,
};
use updraft_secrets::Secrets;
use updraft_sources::Sources;
use updraft_store::{NOT_MAPPED, RunRow, Store, TiKey, TiRow, XComQuery};

use updraft_pods::{PodExecutor, TryIdentity};

use super::{InFlight, Scheduler};
use crate::SchedulerError;
use crate::dagcache::CachedDag;

impl Scheduler {
    pub(super) async fn launch(
        &mut self,
        run: &RunRow,
        ti: &TiRow,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        let cached = self
            .definitions
            .cache
            .get(self.store.as_ref(), &run.dag_id, &run.version)
            .await?;
        let key = TryKey {
            run_pk: ti.run_pk,
            task_id: ti.task_id.clone(),
            map_index: ti.map_index,
            try_number: ti.try_number,
        };
        let log = self.try_log_path(run, ti);
        self.track_in_flight(run, ti, &cached);
        let Some(task) = cached.task(&ti.task_id) else {
            return self
                .fail_before_start(key, &log, "task is missing from the run's DAG version", now)
                .await;
        };
        let mut context = match template_context(run, &cached, ti) {
            Ok(context) => context,
            Err(message) => return self.fail_before_start(key, &log, &message, now).await,
        };
        if ti.map_index >= 0 {
            match self.mapped_args(run, &cached, ti).await? {
                Ok(mapped) => {
                    context.map_index = ti.map_index;
                    context.mapped = mapped;
                }
                Err(message) => {
                    let message = format!("cannot map this instance: {message}");
                    return self.fail_before_start(key, &log, &message, now).await;
                }
            }
        }
        let timeout = task.execution_timeout;
        let pods = self.pods_for(&task.kind).cloned();
        let local = self.executors.local.clone();
        let identity = try_identity(run, ti);
        let hand_over = move |rendered: Result<RenderedTask, String>, pinned: Pinned| match rendered
        {
            Ok(mut rendered) => {
                pinned.add_env(&mut rendered.env, pods.is_none());
                let spec = LaunchSpec {
                    key,
                    rendered,
                    log_path: log,
                    timeout,
                };
                match pods {
                    Some(pods) => {
                        pods.launch_with_templates(spec, identity, pinned.tenant_templates)
                    }
                    None => local.launch(spec),
                }
            }
            Err(e) => local.report_failure(key, log, format!("could not start: {e}")),
        };
        let pin = self.pin_of(run);
        let fileloc = cached.dag.fileloc.clone();
        let sensor = matches!(task.kind, TaskKind::Sensor(_));
        if pin.is_none()
            && !sensor
            && !has_templates(&cached.dag, task)
            && task.connections.is_empty()
        {
            // Only text to copy, bounded by the DAG file: nothing to wait for.
            let rendered = render_task(&cached.dag, task, &context).map_err(|e| e.to_string());
            hand_over(rendered, self.unpinned(&fileloc));
            return Ok(());
        }
        let unpinned = self.unpinned(&fileloc);
        let preparing = self.executors.local.preparing();
        let lookups = Lookups {
            secrets: self.config.secrets.clone(),
            store: self.store.clone(),
            run_pk: run.id,
            try_number: ti.try_number,
            map_index: ti.map_index,
        };
        let tenant = run.tenant.clone();
        let dag = cached.clone();
        let task = task.clone();
        tokio::spawn(async move {
            let pinned = match pin {
                Some(pin) => pin.resolve(&tenant, &fileloc).await,
                None => Ok(unpinned),
            };
            match pinned {
                Ok(pinned) => {
                    hand_over(prepare(lookups, &tenant, dag, task, context).await, pinned)
                }
                Err(e) => hand_over(Err(e), Pinned::default()),
            }
            drop(preparing);
        });
        Ok(())
    }

    /// What a try of a run read from the plain DAGs folder takes from it: the folder and the
    /// DAG file (none when this scheduler has no DAGs folder).
    fn unpinned(&self, fileloc: &str) -> Pinned {
        // The try works in a folder of its own: a relative DAGs folder would not be found.
        let dags_folder = self
            .config
            .dags_folder
            .as_ref()
            .map(|folder| std::path::absolute(folder).unwrap_or_else(|_| folder.clone()));
        Pinned {
            dag_file: dags_folder.as_ref().map(|folder| folder.join(fileloc)),
            dags_folder,
            ..Pinned::default()
        }
    }

    /// The DAG source and revision `run` reads its files from, when its DAG comes from a
    /// configured source: the run's `bundle_version`, else (a run created before its source
    /// had a revision recorded) the source's current one.
    fn pin_of(&self, run: &RunRow) -> Option<Pin> {
        let sources = self.config.sources.clone()?;
        let bundle = self.bundle_of(run)?;
        let revision = match super::folder::pinned_revision(run) {
            Some(revision) => revision,
            None => sources.revision(&bundle)?,
        };
        Some(Pin {
            sources,
            bundle,
            revision,
        })
    }

    /// The DAG source `run`'s DAG was read from.
    fn bundle_of(&self, run: &RunRow) -> Option<String> {
        self.definitions.rows.get(&run.dag_id)?.bundle_name.clone()
    }

    /// Remembers a try handed to an executor until its end is reported; its log is
    /// uploaded while it runs.
    pub(super) fn track_in_flight(&mut self, run: &RunRow, ti: &TiRow, cached: &Arc<CachedDag>) {
        let log = self.try_log_path(run, ti);
        self.log_started(&log);
        if cached
            .task(&ti.task_id)
            .is_some_and(|t| !t.callbacks.is_empty())
        {
            self.tries.notifiers.insert(
                super::state::try_id(&ti.key(), ti.try_number),
                super::notify::TryNotifiers {
                    dag: cached.clone(),
                    reason: None,
                },
            );
        }
        self.tries.in_flight.insert(
            ti.key(),
            InFlight {
                try_number: ti.try_number,
                log,
                max_tries: ti.max_tries,
                dag: cached.clone(),
                launched: std::time::Instant::now(),
            },
        );
    }

    /// The pod executor, when a task of this kind runs as a pod.
    fn pods_for(&self, kind: &TaskKind) -> Option<&PodExecutor> {
        let as_pod = match kind {
            TaskKind::Pod(_) => true,
            // A python task's module is in the DAGs folder: it runs where that folder is.
            // A sensor pokes in this process, whatever runs the DAG's other tasks.
            TaskKind::Noop | TaskKind::Python(_) | TaskKind::Sensor(_) => false,
            TaskKind::Bash(_) | TaskKind::Command(_) => self.executors.every_task_in_pods,
        };
        self.executors.pods.as_ref().filter(|_| as_pod)
    }

    /// Stops a try wherever it runs.
    pub(super) fn kill_try(&self, key: &TryKey) -> bool {
        self.executors.pods.as_ref().is_some_and(|p| p.kill(key)) || self.executors.local.kill(key)
    }

    /// A try that could not be started (bad template, missing task) fails like any other.
    async fn fail_before_start(
        &mut self,
        key: TryKey,
        log: &Path,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        append_log_line(
            log,
            &format!("try {} could not start: {message}", key.try_number),
        )
        .await;
        let outcome = ExecOutcome::Failed {
            exit_code: None,
            signal: None,
            message: message.to_string(),
        };
        self.record_finish(key, outcome, now).await
    }

    pub(super) fn try_log_path(&self, run: &RunRow, ti: &TiRow) -> PathBuf {
        mapped_log_path(
            &self.config.logs_folder,
            &run.tenant,
            &run.dag_id,
            &run.run_id,
            &ti.task_id,
            ti.map_index,
            ti.try_number,
        )
    }
}

/// A run's DAG source and the revision it is pinned to.
struct Pin {
    sources: Arc<Sources>,
    bundle: String,
    revision: String,
}

/// What a try takes from its pinned revision.
#[derive(Debug, Default)]
struct Pinned {
    /// The tenant's pod templates at the revision.
    tenant_templates: Option<PathBuf>,
    /// The DAG folder at the revision (or the plain DAGs folder).
    dags_folder: Option<PathBuf>,
    /// The run's DAG file in `dags_folder`.
    dag_file: Option<PathBuf>,
    bundle: Option<(String, String)>,
}

impl Pin {
    /// Finds (or restores) the revision's tree; a revision gone for good fails the try.
    /// `fileloc` is the DAG file as the DAG bag names it (under `<tenant>/` for a source
    /// mounted at a tenant).
    async fn resolve(self, tenant: &str, fileloc: &str) -> Result<Pinned, String> {
        let (sources, bundle, revision) = (&self.sources, &self.bundle, &self.revision);
        let failed = |e: updraft_sources::SourceError| {
            format!(
                "the run is pinned to revision {revision} of DAG source {bundle}, which cannot be read: {e}"
            )
        };
        let tenant_templates = sources
            .tenant_templates_at(bundle, revision, tenant)
            .await
            .map_err(failed)?;
        let dags_folder = sources.dags_at(bundle, revision).await.map_err(failed)?;
        let mount_tenant = sources
            .specs()
            .find(|spec| spec.name == *bundle)
            .and_then(|spec| spec.tenant.as_deref());
        let in_folder = match mount_tenant {
            Some(t) => fileloc
                .strip_prefix(t)
                .and_then(|rest| rest.strip_prefix('/'))
                .unwrap_or(fileloc),
            None => fileloc,
        };
        Ok(Pinned {
            tenant_templates: Some(tenant_templates),
            dag_file: Some(dags_folder.join(in_folder)),
            dags_folder: Some(dags_folder),
            bundle: Some((self.bundle, self.revision)),
        })
    }
}

impl Pinned {
    /// Adds the revision's variables to a try's environment (kept sorted, these winning);
    /// the DAG folder only for a local try (a pod has no such path).
    fn add_env(&self, env: &mut Vec<(String, String)>, local: bool) {
        let mut set =
            |name: &str, value: String| match env.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
                Ok(i) => env[i].1 = value,
                Err(i) => env.insert(i, (name.to_owned(), value)),
            };
        if let Some((bundle, revision)) = &self.bundle {
            set("UPDRAFT_BUNDLE_NAME", bundle.clone());
            set("UPDRAFT_BUNDLE_VERSION", revision.clone());
        }
        if !local {
            return;
        }
        if let Some(folder) = &self.dags_folder {
            let folder = folder.display().to_string();
            set("UPDRAFT_DAGS_FOLDER", folder.clone());
            set("AIRFLOW__CORE__DAGS_FOLDER", folder);
        }
        if let Some(file) = &self.dag_file {
            set("UPDRAFT_DAG_FILE", file.display().to_string());
        }
    }
}

/// How long looking up one try's connections and variables may take.
const SECRETS_LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where what a task's templates refer to is looked up.
struct Lookups {
    secrets: Option<Arc<Secrets>>,
    store: Arc<dyn Store>,
    run_pk: i64,
    /// The try being launched (a sensor's pokes so far are those of this try).
    try_number: u32,
    map_index: i32,
}

/// Looks up what the task refers to, then renders it off the loop.
async fn prepare(
    lookups: Lookups,
    tenant: &str,
    dag: Arc<CachedDag>,
    task: updraft_dag::Task,
    mut context: TemplateContext,
) -> Result<RenderedTask, String> {
    let task_id = task.task_id.clone();
    if let Some(pulled) = xcom_references(&dag.dag, &task) {
        context.xcoms = Arc::new(
            look_up_xcoms(lookups.store.as_ref(), lookups.run_pk, pulled)
                .await
                .map_err(|e| format!("task `{task_id}`: reading the run's XComs failed: {e}"))?,
        );
    }
    let references = secret_references(&dag.dag, &task);
    if !references.is_empty() {
        let lookup = look_up_secrets(lookups.secrets.as_deref(), tenant, &references);
        context.secrets = match tokio::time::timeout(SECRETS_LOOKUP_TIMEOUT, lookup).await {
            Ok(found) => found,
            Err(_) => Err(format!(
                "looking up {references} took longer than {} s",
                SECRETS_LOOKUP_TIMEOUT.as_secs()
            )),
        }
        .map_err(|message| format!("task `{task_id}`: {}", masked(&message)))?;
    }
    let render = move |budget: &RenderBudget| render_task_within(&dag.dag, &task, &context, budget);
    let mut rendered = render_off_loop(tenant, &task_id, RenderBudget::default(), render)
        .await
        .map_err(|e: RenderError| e.to_string())?;
    if let Program::Sensor(sensor) = &mut rendered.program {
        let key = TiKey {
            run_pk: lookups.run_pk,
            task_id: task_id.clone(),
            map_index: lookups.map_index,
        };
        super::sensors::add_progress(lookups.store.as_ref(), &key, lookups.try_number, sensor)
            .await
            .map_err(|e| format!("task `{task_id}`: reading the sensor's pokes failed: {e}"))?;
    }
    if !rendered.mask.is_empty()
        && let Ok(mut global) = updraft_secrets::mask::global().write()
    {
        global.extend(&rendered.mask);
    }
    Ok(rendered)
}

/// The run's XComs of the tasks `pulled` names, for `ti.xcom_pull`: an unmapped task's value,
/// and for a mapped task the list of its instances' values in map index order (Airflow's lazy
/// sequence). A stored value that is not JSON is left out (a pull of it gives `none`, or is
/// missing from the list).
async fn look_up_xcoms(
    store: &dyn Store,
    run_pk: i64,
    pulled: XComReferences,
) -> Result<TemplateXComs, updraft_store::StoreError> {
    let task_ids = match pulled {
        XComReferences::Tasks(ids) if ids.is_empty() => return Ok(TemplateXComs::new()),
        XComReferences::Tasks(ids) => Some(ids.into_iter().collect()),
        XComReferences::All => None,
    };
    let (rows, _) = store
        .xcoms(&XComQuery {
            run_pk,
            task_ids,
            ..XComQuery::default()
        })
        .await?;
    let mut xcoms = TemplateXComs::new();
    for row in rows {
        let Ok(value) = serde_json::from_str(&row.value) else {
            continue;
        };
        let values = xcoms.entry(row.task_id).or_default();
        if row.map_index == NOT_MAPPED {
            values.insert(row.key, value);
            continue;
        }
        // Rows come in map index order: each mapped value joins its key's list.
        match values
            .entry(row.key)
            .or_insert_with(|| serde_json::Value::Array(Vec::new()))
        {
            serde_json::Value::Array(list) => list.push(value),
            other => *other = serde_json::Value::Array(vec![value]),
        }
    }
    Ok(xcoms)
}

/// `text` with every secret this process knows of hidden.
fn masked(text: &str) -> String {
    match updraft_secrets::mask::global().read() {
        Ok(global) if !global.is_empty() => global.mask(text),
        _ => text.to_owned(),
    }
}

pub(super) fn try_identity(run: &RunRow, ti: &TiRow) -> TryIdentity {
    TryIdentity {
        tenant: run.tenant.clone(),
        dag_id: run.dag_id.clone(),
        run_id: run.run_id.clone(),
        task_id: ti.task_id.clone(),
        try_number: ti.try_number,
    }
}

fn template_context(
    run: &RunRow,
    cached: &CachedDag,
    ti: &TiRow,
) -> Result<TemplateContext, String> {
    context_for(run, &cached.dag, &ti.task_id, ti.try_number)
}

/// The template context of try `try_number` of `task_id` in `run` (a run's own notifications:
/// an empty task id and try 0).
pub(super) fn context_for(
    run: &RunRow,
    dag: &updraft_dag::Dag,
    task_id: &str,
    try_number: u32,
) -> Result<TemplateContext, String> {
    let conf = match &run.conf {
        serde_json::Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    let params = updraft_dag::resolve_params(dag, &conf).map_err(|e| e.to_string())?;
    Ok(TemplateContext {
        secrets: Default::default(),
        xcoms: Default::default(),
        tenant: run.tenant.clone(),
        dag_id: run.dag_id.clone(),
        run_id: run.run_id.clone(),
        task_id: task_id.to_owned(),
        try_number,
        map_index: -1,
        mapped: Default::default(),
        logical_date: run.logical_date,
        data_interval_start: run.data_interval_start,
        data_interval_end: run.data_interval_end,
        conf: run.conf.clone(),
        params,
        run_type: run.run_type.to_string(),
        timezone: dag.timezone,
    })
}

/// Appends a stamped line to a try's log, on the blocking pool (file work must not hold up the
/// loop); a failure to write is logged, not returned.
pub(super) async fn append_log_line(path: &Path, line: &str) {
    let stamped = format!("[{}] {line}", Utc::now().to_rfc3339());
    let target = path.to_path_buf();
    let written = tokio::task::spawn_blocking(move || write_log_line(&target, &stamped))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    if let Err(e) = written {
        warn!("could not write to {}: {e}", path.display());
    }
}

/// [`append_log_line`] without waiting for it, for the loop's synchronous report handling.
pub(super) fn append_log_line_soon(path: &Path, line: String) {
    let stamped = format!("[{}] {line}", Utc::now().to_rfc3339());
    let target = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = write_log_line(&target, &stamped) {
            warn!("could not write to {}: {e}", target.display());
        }
    });
}

fn write_log_line(path: &Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_pinned_revision_s_variables_win_and_keep_the_environment_sorted() {
        let pinned = Pinned {
            tenant_templates: None,
            dags_folder: Some(PathBuf::from("/trees/abc/dags")),
            dag_file: Some(PathBuf::from("/trees/abc/dags/etl/daily.yaml")),
            bundle: Some(("platform".to_owned(), "abc".to_owned())),
        };
        let mut local = env(&[("A", "1"), ("UPDRAFT_BUNDLE_VERSION", "forged"), ("Z", "2")]);
        pinned.add_env(&mut local, true);
        assert_eq!(
            local,
            env(&[
                ("A", "1"),
                ("AIRFLOW__CORE__DAGS_FOLDER", "/trees/abc/dags"),
                ("UPDRAFT_BUNDLE_NAME", "platform"),
                ("UPDRAFT_BUNDLE_VERSION", "abc"),
                ("UPDRAFT_DAGS_FOLDER", "/trees/abc/dags"),
                ("UPDRAFT_DAG_FILE", "/trees/abc/dags/etl/daily.yaml"),
                ("Z", "2"),
            ])
        );
        let mut pod = env(&[("A", "1")]);
        pinned.add_env(&mut pod, false);
        assert_eq!(
            pod,
            env(&[
                ("A", "1"),
                ("UPDRAFT_BUNDLE_NAME", "platform"),
                ("UPDRAFT_BUNDLE_VERSION", "abc"),
            ]),
            "a pod has no DAG folder of the scheduler's"
        );
        let mut plain = env(&[("A", "1")]);
        Pinned::default().add_env(&mut plain, true);
        assert_eq!(plain, env(&[("A", "1")]), "nothing for the DAGs folder");
        let folder = Pinned {
            dags_folder: Some(PathBuf::from("/srv/dags")),
            dag_file: Some(PathBuf::from("/srv/dags/team/etl.yaml")),
            ..Pinned::default()
        };
        let mut local = env(&[("A", "1")]);
        folder.add_env(&mut local, true);
        assert_eq!(
            local,
            env(&[
                ("A", "1"),
                ("AIRFLOW__CORE__DAGS_FOLDER", "/srv/dags"),
                ("UPDRAFT_DAGS_FOLDER", "/srv/dags"),
                ("UPDRAFT_DAG_FILE", "/srv/dags/team/etl.yaml"),
            ]),
            "a run of the plain DAGs folder gets the folder and its DAG file"
        );
    }
}
