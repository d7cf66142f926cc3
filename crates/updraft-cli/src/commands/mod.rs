//! One module per command group; shared plumbing lives here.

pub mod config_cmd;
pub mod connections;
pub mod dags;
pub mod db;
pub mod helm_values;
pub mod jobs;
pub mod pools;
pub mod service;
pub mod sources;
pub mod tasks;
pub mod users;
pub mod variables;
pub mod vault;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use updraft_dag::DagBag;
use updraft_scheduler::{KubernetesConfig, SchedulerConfig};
use updraft_store::{
    AdminStore, DagRow, JobState, PgStore, PgStoreOptions, ReadStore, SchedulerStore, SqliteStore,
    Store,
};

use crate::config::{Database, Settings};

/// Open the database named by the configuration, creating and migrating it as needed
/// (unless `database.migrate_on_start` is off).
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>> {
    let store = connect_store(settings).await?;
    if settings.config.database.migrate_on_start {
        migrate(settings, store.as_ref()).await?;
    }
    Ok(store)
}

/// [`open_store`] for a long-running service: the database's pages are checked first
/// ([`AdminStore::check_integrity`], unless `database.check_on_start` is off), so a corrupt
/// database stops the service at once with a message naming it, instead of failing passes.
pub async fn open_checked_store(settings: &Settings) -> Result<Arc<dyn Store>> {
    let store = connect_store(settings).await?;
    if settings.config.database.check_on_start {
        let started = std::time::Instant::now();
        store.check_integrity().await.with_context(|| {
            format!(
                "checking the database {} before starting",
                settings.database_display()
            )
        })?;
        tracing::info!(elapsed = ?started.elapsed(), "database integrity checked");
    }
    if settings.config.database.migrate_on_start {
        migrate(settings, store.as_ref()).await?;
    }
    Ok(store)
}

/// Create or upgrade the schema (safe from several processes at once).
pub async fn migrate(settings: &Settings, store: &dyn AdminStore) -> Result<()> {
    store
        .migrate()
        .await
        .with_context(|| format!("migrating the database {}", settings.database_display()))
}

/// Connect to the configured database without touching its schema.
pub async fn connect_store(settings: &Settings) -> Result<Arc<dyn Store>> {
    match settings.database()? {
        Database::Sqlite(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let store = SqliteStore::open(&path)
                .await
                .with_context(|| format!("opening database {}", path.display()))?;
            Ok(Arc::new(store))
        }
        Database::Postgres(url) => {
            let db = &settings.config.database;
            let options = PgStoreOptions {
                max_connections: db.max_connections.max(1),
                statement_cache: db.statement_cache,
                acquire_timeout: db.acquire_timeout,
            };
            let connect = url
                .parse::<updraft_store::PgConnectOptions>()
                .with_context(|| {
                    format!(
                        "database.url: `{}` is not a PostgreSQL URL",
                        settings.database_display()
                    )
                })?;
            let store = PgStore::connect_with(connect, &options)
                .await
                .with_context(|| {
                    format!("connecting to the database {}", settings.database_display())
                })?;
            Ok(Arc::new(store))
        }
    }
}

/// The configured DAG sources (their trees as last synced; nothing is fetched), or `None`
/// when there are none and the DAGs folder is read.
pub fn open_sources(settings: &Settings) -> Result<Option<Arc<updraft_sources::Sources>>> {
    let specs = settings.source_specs()?;
    if specs.is_empty() {
        return Ok(None);
    }
    Ok(Some(updraft_sources::Sources::new(
        settings.sources_folder(),
        specs,
    )?))
}

/// A bag over what the scheduler reads: the DAG sources' current trees, or the DAGs folder.
/// Not loaded yet.
pub fn dag_bag(settings: &Settings) -> Result<DagBag> {
    Ok(match open_sources(settings)? {
        Some(sources) => {
            let mounts = sources
                .mounts()
                .into_iter()
                .map(|m| updraft_dag::DagMount {
                    root: m.root,
                    tenant: m.tenant,
                    name: Some(m.name),
                    version: Some(m.revision),
                })
                .collect();
            DagBag::with_mounts(mounts, bag_options(settings))
        }
        None => DagBag::with_options(settings.dags_folder(), bag_options(settings)),
    })
}

/// Load the DAGs folder (or the DAG sources' trees) and record it, as Airflow's CLI parses
/// the DAG files it works on.
pub async fn sync_dags(settings: &Settings, store: &dyn SchedulerStore) -> Result<DagBag> {
    let mut bag = dag_bag(settings)?;
    bag.refresh();
    updraft_runs::record_dag_bag(
        store,
        &bag,
        settings.config.core.dags_are_paused_at_creation,
        Utc::now(),
    )
    .await?;
    Ok(bag)
}

pub fn bag_options(settings: &Settings) -> updraft_dag::DagBagOptions {
    let core = &settings.config.core;
    updraft_dag::DagBagOptions {
        max_file_size: core.max_dag_file_size,
        max_entries: core.max_dag_folder_entries,
        max_depth: core.max_dag_folder_depth,
        ..Default::default()
    }
}

/// Parse the DAGs folder and return one DAG, recording nothing (`dags test`, `tasks test`).
/// When the DAG is not there, the folder's import errors are printed.
pub fn load_dag_file(settings: &Settings, dag_id: &str) -> Result<Arc<updraft_dag::LoadedDag>> {
    let mut bag = dag_bag(settings)?;
    bag.refresh();
    if let Some(loaded) = bag.dag(dag_id) {
        return Ok(Arc::clone(loaded));
    }
    for error in bag.import_errors() {
        eprintln!("import error: {error}");
    }
    bail!(
        "DAG `{dag_id}` not found in {}",
        settings.dags_folder().display()
    );
}

/// The DAGs folder `loaded` was read from and its file there, both absolute (as the
/// scheduler gives a local try in `UPDRAFT_DAGS_FOLDER` and `UPDRAFT_DAG_FILE`); `None` when
/// its DAG source has no tree here.
pub fn dag_file_location(
    settings: &Settings,
    loaded: &updraft_dag::LoadedDag,
) -> Result<Option<(PathBuf, PathBuf)>> {
    let fileloc = loaded.dag.fileloc.as_str();
    let (root, in_folder) = match &loaded.bundle {
        None => (settings.dags_folder(), fileloc),
        Some(name) => {
            let Some(sources) = open_sources(settings)? else {
                return Ok(None);
            };
            let Some(mount) = sources.mounts().into_iter().find(|m| m.name == *name) else {
                return Ok(None);
            };
            let in_folder = match &mount.tenant {
                Some(tenant) => fileloc
                    .strip_prefix(tenant.as_str())
                    .and_then(|rest| rest.strip_prefix('/'))
                    .unwrap_or(fileloc),
                None => fileloc,
            };
            (mount.root, in_folder)
        }
    };
    let root = std::path::absolute(&root).unwrap_or(root);
    Ok(Some((root.clone(), root.join(in_folder))))
}

/// The DAG, or an error that says why it is not there (including its import error).
pub async fn require_dag(store: &dyn ReadStore, dag_id: &str) -> Result<DagRow> {
    match store.dag(dag_id).await? {
        Some(row) if row.is_active => Ok(row),
        Some(row) => bail!(
            "DAG `{dag_id}` is not active: its file `{}` is gone or no longer defines it (see `updraft dags list-import-errors`)",
            row.dag.fileloc
        ),
        None => bail!(
            "DAG `{dag_id}` not found (see `updraft dags list` and `updraft dags list-import-errors`)"
        ),
    }
}

/// The scheduler's configuration, with the secrets chain of `[secrets]`, which opens the
/// database when a template first looks a name up there.
pub async fn scheduler_config(
    settings: &Settings,
    dags_folder: Option<PathBuf>,
    logs: PathBuf,
) -> Result<SchedulerConfig> {
    let config = scheduler_config_without_secrets(settings, dags_folder, logs).await?;
    with_secrets(config, settings, None)
}

/// [`scheduler_config`] whose secrets chain reads the database through `store`.
pub async fn scheduler_config_over(
    settings: &Settings,
    dags_folder: Option<PathBuf>,
    logs: PathBuf,
    store: Arc<dyn Store>,
) -> Result<SchedulerConfig> {
    let config = scheduler_config_without_secrets(settings, dags_folder, logs).await?;
    with_secrets(config, settings, Some(store))
}

async fn scheduler_config_without_secrets(
    settings: &Settings,
    dags_folder: Option<PathBuf>,
    logs: PathBuf,
) -> Result<SchedulerConfig> {
    let c = &settings.config;
    Ok(SchedulerConfig {
        secrets: None,
        sources: open_sources(settings)?,
        dags_folder,
        logs_folder: logs,
        parallelism: c.core.parallelism,
        default_pool_slots: c.core.default_pool_slots,
        dags_are_paused_at_creation: c.core.dags_are_paused_at_creation,
        rescan_interval: c.scheduler.rescan_interval,
        poll_interval: c.scheduler.poll_interval,
        kill_grace: c.scheduler.kill_grace,
        shutdown_grace: c.scheduler.shutdown_grace,
        dag_bag: bag_options(settings),
        hostname: hostname(),
        default_cwd: None,
        isolation: try_isolation(settings),
        heartbeat_interval: c.scheduler.heartbeat_interval,
        health_check_threshold: c.scheduler.health_check_threshold,
        exclusive: matches!(settings.database(), Ok(Database::Sqlite(_))),
        kubernetes: kubernetes_config(settings).await?,
        max_xcom_size: c.core.max_xcom_size,
        notification_retry: updraft_scheduler::NotificationRetry {
            tries: c.scheduler.notification_tries.max(1),
            first_delay: c.scheduler.notification_retry_delay,
            timeout: c.scheduler.notification_timeout,
            ..Default::default()
        },
        max_map_length: c.core.max_map_length,
        sensor_poke_timeout: c.scheduler.sensor_poke_timeout,
    })
}

/// `config` with the secrets chain of `[secrets]` (connections and variables for templates).
fn with_secrets(
    mut config: SchedulerConfig,
    settings: &Settings,
    store: Option<Arc<dyn Store>>,
) -> Result<SchedulerConfig> {
    config.secrets = Some(crate::secret_sources::build(
        settings,
        store,
        config.kubernetes.as_ref(),
    )?);
    Ok(config)
}

/// What local tries see, where they work and which user runs them: `[executor]` and each
/// `[tenants.<tenant>] run_as_user`.
pub fn try_isolation(settings: &Settings) -> updraft_executor::TryIsolation {
    let executor = &settings.config.executor;
    let mut env_allowlist: Vec<String> = updraft_executor::DEFAULT_ENV_ALLOWLIST
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    env_allowlist.extend(executor.env_allowlist.iter().cloned());
    updraft_executor::TryIsolation {
        env_allowlist,
        work_folder: Some(settings.home.join(&executor.work_folder)),
        keep_work_dirs: executor.keep_work_dirs,
        run_as_user: settings
            .config
            .tenants
            .iter()
            .filter_map(|(tenant, t)| Some((tenant.clone(), t.run_as_user.clone()?)))
            .collect(),
    }
}

/// The cluster pods run in, when `[kubernetes]` is enabled or the executor is `kubernetes`.
pub async fn kubernetes_config(settings: &Settings) -> Result<Option<KubernetesConfig>> {
    use updraft_pods::kube;
    let c = &settings.config;
    let k = &c.kubernetes;
    let every_task = c.core.executor == crate::config::ExecutorKind::Kubernetes;
    if !k.enabled && !every_task {
        return Ok(None);
    }
    for (tenant, namespaces) in &k.namespaces {
        for ns in namespaces {
            updraft_dag::check_namespace(ns)
                .map_err(|m| anyhow::anyhow!("kubernetes.namespaces.{tenant}: {m}"))?;
        }
    }
    let options = kube::config::KubeConfigOptions {
        context: (!k.context.is_empty()).then(|| k.context.clone()),
        ..Default::default()
    };
    let client_config = if !k.kubeconfig.is_empty() {
        let path = settings.home.join(&k.kubeconfig);
        let file = kube::config::Kubeconfig::read_from(&path)
            .with_context(|| format!("kubernetes.kubeconfig: reading {}", path.display()))?;
        kube::Config::from_custom_kubeconfig(file, &options)
            .await
            .with_context(|| format!("kubernetes.kubeconfig: {}", path.display()))?
    } else if options.context.is_some() {
        kube::Config::from_kubeconfig(&options)
            .await
            .context("kubernetes.context")?
    } else {
        kube::Config::infer()
            .await
            .context("finding the Kubernetes cluster (in-cluster service account, $KUBECONFIG or ~/.kube/config); set kubernetes.kubeconfig")?
    };
    let client = kube::Client::try_from(client_config).context("creating the Kubernetes client")?;
    let pods = updraft_pods::PodExecutorConfig {
        templates_folder: settings.home.join(&k.templates_folder),
        namespaces: k.namespaces.clone(),
        default_template: (!k.default_template.is_empty())
            .then(|| settings.home.join(&k.default_template)),
        default_image: k.default_image.clone(),
        startup_timeout: k.startup_timeout,
        delete_pod: k.delete_pod,
        delete_grace: k.delete_grace,
        max_xcom_size: settings.config.core.max_xcom_size,
        ..Default::default()
    };
    Ok(Some(KubernetesConfig {
        client,
        pods,
        every_task,
    }))
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// What a scheduler process holds for its life. On SQLite only one scheduler may drive the
/// database: an exclusive lock on a file next to it, holding the holder's pid so that commands
/// that record work can wake it. On PostgreSQL any number may run; commands find local
/// schedulers among the scheduler jobs recorded in the database.
pub struct SchedulerLock {
    _file: Option<File>,
    /// SIGUSR1 is caught from before the pid is published (its default action would end the
    /// process); [`SchedulerLock::forward_pokes_to`] hands pokes to the scheduler.
    pokes: Option<tokio::signal::unix::Signal>,
}

impl SchedulerLock {
    /// From now on SIGUSR1 (sent by [`poke_scheduler`]) wakes `waker`; a poke that arrived
    /// earlier is delivered at once.
    pub fn forward_pokes_to(&mut self, waker: Arc<tokio::sync::Notify>) {
        if let Some(mut pokes) = self.pokes.take() {
            tokio::spawn(async move {
                while pokes.recv().await.is_some() {
                    waker.notify_one();
                }
            });
        }
    }
}

/// The right to run a scheduler on the configured database; `None` when another scheduler
/// holds an SQLite database. Always granted on PostgreSQL.
pub fn try_scheduler_lock(settings: &Settings) -> Result<Option<SchedulerLock>> {
    let pokes = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .context("listening for SIGUSR1")?;
    let Some(db) = settings.sqlite_path()? else {
        return Ok(Some(SchedulerLock {
            _file: None,
            pokes: Some(pokes),
        }));
    };
    let path = lock_path(&db);
    let mut file = open_lock_file(&path)?;
    // `poke_scheduler` probes the lock with a brief shared lock; a few attempts ride that out.
    for attempt in 0..5 {
        match file.try_lock() {
            Ok(()) => {
                use std::io::Write;
                file.set_len(0)?;
                write!(file, "{}", std::process::id())?;
                return Ok(Some(SchedulerLock {
                    _file: Some(file),
                    pokes: Some(pokes),
                }));
            }
            Err(std::fs::TryLockError::WouldBlock) if attempt < 4 => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
    }
    Ok(None)
}

fn open_lock_file(path: &Path) -> Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Make the schedulers running on this database on this machine look for new work now,
/// instead of at their next poll. Best effort: without it the work is still picked up by the
/// poll (schedulers on other machines always pick it up that way).
pub async fn poke_scheduler(settings: &Settings, store: &dyn AdminStore) {
    for pid in local_scheduler_pids(settings, store).await {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGUSR1,
        );
    }
}

async fn local_scheduler_pids(settings: &Settings, store: &dyn AdminStore) -> Vec<i32> {
    match settings.sqlite_path() {
        Ok(Some(db)) => sqlite_scheduler_pid(&db).into_iter().collect(),
        Ok(None) => {
            let Ok(jobs) = store.schedulers(64).await else {
                return Vec::new();
            };
            let host = hostname();
            jobs.into_iter()
                .filter(|job| job.state == JobState::Running && job.hostname == host)
                .filter_map(|job| i32::try_from(job.pid).ok())
                .filter(|pid| is_updraft_process(*pid))
                .collect()
        }
        Err(_) => Vec::new(),
    }
}

/// The pid in the SQLite scheduler lock file, if a scheduler holds the lock.
fn sqlite_scheduler_pid(db: &Path) -> Option<i32> {
    let path = lock_path(db);
    let file = File::open(&path).ok()?;
    if file.try_lock_shared().is_ok() {
        return None; // nobody holds the lock: no scheduler is running
    }
    std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
}

/// A recorded pid may have been reused after its scheduler died without a word; SIGUSR1 would
/// end most other programs, so only a process running this same executable is signalled.
fn is_updraft_process(pid: i32) -> bool {
    let exe = |p: String| std::fs::read_link(p).ok();
    match (
        exe(format!("/proc/{pid}/exe")),
        exe("/proc/self/exe".to_string()),
    ) {
        (Some(theirs), Some(ours)) => theirs == ours,
        _ => false,
    }
}

fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".scheduler.lock");
    db.with_file_name(name)
}

/// `2024-01-01`, `2024-01-01T06:00:00` (UTC) or RFC 3339 with an offset.
pub fn parse_date(text: &str) -> Result<DateTime<Utc>> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Ok(dt.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(naive.and_utc());
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc());
    }
    bail!("`{text}` is not a date: use YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS or RFC 3339")
}

pub fn parse_conf(conf: Option<&str>) -> Result<serde_json::Value> {
    match conf {
        None => Ok(serde_json::Value::Object(Default::default())),
        Some(text) => {
            // `@path` reads the JSON from a file: a conf over 128 KiB cannot be one argument.
            let from_file;
            let text = match text.strip_prefix('@') {
                Some(path) => {
                    from_file = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read --conf file {path}"))?;
                    from_file.as_str()
                }
                None => text,
            };
            let value: serde_json::Value =
                serde_json::from_str(text).context("--conf is not valid JSON")?;
            if !value.is_object() {
                bail!("--conf must be a JSON object, e.g. '{{\"key\": \"value\"}}'");
            }
            Ok(value)
        }
    }
}

pub fn fmt_time(t: Option<DateTime<Utc>>) -> serde_json::Value {
    match t {
        Some(t) => serde_json::Value::String(t.to_rfc3339()),
        None => serde_json::Value::Null,
    }
}
