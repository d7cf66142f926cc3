//! Long-running commands: `standalone` (scheduler and web server in one process),
//! `scheduler` and `server`. Each stops when `stop` becomes true (SIGTERM or SIGINT, see
//! `crate::stop`, which also bounds how long stopping may take).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result, bail};
use tokio::sync::watch;
use updraft_scheduler::Scheduler;
use updraft_server::{AppState, ServerConfig};
use updraft_store::Store;

use crate::config::Settings;
use crate::examples;

pub async fn standalone(settings: &Settings, stop: watch::Receiver<bool>) -> Result<ExitCode> {
    if let Some(file) = crate::keys::ensure_generated_key(settings)? {
        eprintln!(
            "No Fernet key was configured: generated one into {} (set core.fernet_key or \
             core.fernet_key_file to use your own).",
            file.display()
        );
    }
    let folder = settings.dags_folder();
    // With DAG sources the DAGs folder is not read: examples written there would not load.
    if settings.config.core.load_examples && settings.config.sources.is_empty() {
        let written = examples::offer(&folder)?;
        if written > 0 {
            let store = super::open_store(settings).await?;
            examples::create_example_pools(store.as_ref()).await?;
            eprintln!(
                "The DAGs folder {} was empty: wrote {written} example DAGs into it \
                 (set core.load_examples = false to stop this).",
                folder.display()
            );
        }
    }
    run(settings, stop, true).await
}

/// Why a service stops: a signal, or a corrupt database met by any of its parts.
#[derive(Clone)]
struct Stop {
    /// Becomes true on SIGTERM, SIGINT, or corruption.
    requested: watch::Receiver<bool>,
    /// The corruption's message, when that is why.
    corruption: Arc<OnceLock<String>>,
}

impl Stop {
    /// Stops on `signals`, or once `store` meets a corrupt database.
    fn new(signals: watch::Receiver<bool>, store: Arc<dyn Store>) -> Stop {
        let (tx, requested) = watch::channel(false);
        let corruption = Arc::new(OnceLock::new());
        let found = corruption.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = wait_for(signals) => {}
                e = store.corruption_found() => {
                    let _ = found.set(e.to_string());
                }
            }
            let _ = tx.send(true);
        });
        Stop {
            requested,
            corruption,
        }
    }

    fn wait(&self) -> impl Future<Output = ()> + use<> {
        wait_for(self.requested.clone())
    }

    /// After the service stopped: an error when a corrupt database stopped it.
    fn outcome(&self) -> Result<()> {
        match self.corruption.get() {
            Some(message) => bail!("{message}"),
            None => Ok(()),
        }
    }
}

pub async fn scheduler(settings: &Settings, stop: watch::Receiver<bool>) -> Result<ExitCode> {
    run(settings, stop, false).await
}

/// The web UI and API alone, beside a scheduler running elsewhere on the same database.
pub async fn server(settings: &Settings, signals: watch::Receiver<bool>) -> Result<ExitCode> {
    let store = super::open_checked_store(settings).await?;
    let stop = Stop::new(signals, store.clone());
    let changes = tokio::sync::broadcast::channel(1024).0;
    // No scheduler in this process publishes state changes: the live views follow the
    // database's change log instead.
    tokio::spawn(updraft_server::live::watch_store_changes(
        store.clone(),
        changes.clone(),
        updraft_server::live::DEFAULT_INTERVAL,
        stop.wait(),
    ));
    let poke_settings = settings.clone();
    let poke_store = store.clone();
    let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let settings = poke_settings.clone();
        let store = poke_store.clone();
        tokio::spawn(async move { super::poke_scheduler(&settings, store.as_ref()).await });
    });
    let config = server_config(settings)?;
    let listener = updraft_server::listen(&config).await?;
    let state = AppState::new(store, config, changes, wake)
        .with_health_check_threshold(settings.config.scheduler.health_check_threshold)
        .with_guard(settings.config.api.guard()?);
    let state = with_remote_logs(state, settings.remote_logs()?.map(Arc::new));
    updraft_server::serve(listener, state, stop.wait()).await?;
    stop.outcome()?;
    Ok(ExitCode::SUCCESS)
}

async fn run(
    settings: &Settings,
    signals: watch::Receiver<bool>,
    with_server: bool,
) -> Result<ExitCode> {
    let store = super::open_checked_store(settings).await?;
    let stop = Stop::new(signals, store.clone());
    let Some(mut lock) = super::try_scheduler_lock(settings)? else {
        bail!(
            "another scheduler is already running on {} (an SQLite database has one scheduler; \
             run several on PostgreSQL)",
            settings.database_display()
        );
    };
    if with_server {
        super::users::ensure_standalone_admin(settings, store.as_ref()).await?;
    }
    let folder = settings.dags_folder();
    std::fs::create_dir_all(&folder)?;
    let config = super::scheduler_config_over(
        settings,
        Some(folder.clone()),
        settings.logs_folder(),
        store.clone(),
    )
    .await?;
    let mut scheduler = Scheduler::new(store.clone(), config)?;
    lock.forward_pokes_to(scheduler.waker());
    let remote_logs = settings.remote_logs()?.map(Arc::new);
    if let Some(remote) = &remote_logs {
        let uploads = settings.log_upload_settings();
        scheduler.upload_logs(updraft_logs::LogUploader::start(remote.clone(), uploads));
    }
    let server = if with_server {
        Some(spawn_server(settings, store, &scheduler, remote_logs, stop.wait()).await?)
    } else {
        spawn_metrics_port(settings, store, stop.wait()).await?;
        None
    };
    eprintln!(
        "updraft scheduler running: DAGs from {}, database {}, logs in {}. Stop with Ctrl-C or SIGTERM.",
        folder.display(),
        settings.database_display(),
        settings.logs_folder().display()
    );
    scheduler.run(stop.wait()).await?;
    if let Some(server) = server {
        server.await.context("the web server task failed")??;
    }
    stop.outcome()?;
    eprintln!("updraft scheduler stopped");
    Ok(ExitCode::SUCCESS)
}

async fn spawn_server(
    settings: &Settings,
    store: Arc<dyn Store>,
    scheduler: &Scheduler,
    remote_logs: Option<Arc<updraft_logs::RemoteLogs>>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<Result<(), updraft_server::ServerError>>> {
    let mut config = server_config(settings)?;
    config.source_sync = scheduler.sources().map(|sources| sources.poke());
    // Bind before the scheduler starts, so a bad or busy address stops everything at once.
    let listener = updraft_server::listen(&config).await?;
    let waker = scheduler.waker();
    let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || waker.notify_one());
    let state = AppState::new(store, config, scheduler.changes(), wake)
        .with_health_check_threshold(settings.config.scheduler.health_check_threshold)
        .with_guard(settings.config.api.guard()?);
    let state = with_remote_logs(state, remote_logs);
    Ok(tokio::spawn(updraft_server::serve(listener, state, stop)))
}

/// `[scheduler] metrics_port`: `GET /metrics` of a scheduler without a server in its process.
/// Bound before the scheduler starts, so a busy port stops it at once.
async fn spawn_metrics_port(
    settings: &Settings,
    store: Arc<dyn Store>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let Some(port) = settings.config.scheduler.metrics_port else {
        return Ok(());
    };
    let host = &settings.config.scheduler.metrics_host;
    let address = format!("{}:{port}", bracket_ipv6(host));
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("[scheduler] metrics_port: binding {address}"))?;
    eprintln!(
        "updraft scheduler metrics on http://{}/metrics",
        listener.local_addr()?
    );
    tokio::spawn(async move {
        if let Err(e) = updraft_server::metrics::serve_port(listener, store, stop).await {
            tracing::warn!("the metrics port stopped: {e}");
        }
    });
    Ok(())
}

fn with_remote_logs(state: AppState, remote: Option<Arc<updraft_logs::RemoteLogs>>) -> AppState {
    match remote {
        Some(remote) => state.with_remote_logs(remote),
        None => state,
    }
}

fn server_config(settings: &Settings) -> Result<ServerConfig> {
    let api = &settings.config.api;
    let bind: SocketAddr = format!("{}:{}", bracket_ipv6(&api.host), api.port)
        .parse()
        .with_context(|| {
            format!(
                "api.host / api.port: `{}:{}` is not an address",
                api.host, api.port
            )
        })?;
    let keyring = match settings.key_source()? {
        Some(keys) => Some(keys.keyring()?),
        None => None,
    };
    Ok(ServerConfig {
        keyring,
        source_sync: None,
        source_webhooks: webhook_secrets(settings)?,
        bind,
        dags_folder: settings.dags_folder(),
        logs_folder: settings.logs_folder(),
        auth: settings.auth_settings()?,
    })
}

/// The webhook secret of every source that has one (`webhook_secret_file`/`_env`).
fn webhook_secrets(settings: &Settings) -> Result<updraft_server::WebhookSecrets> {
    let mut secrets = Vec::new();
    for source in &settings.config.sources {
        if let Some(secret) = source.webhook_secret()? {
            secrets.push((source.name.trim().to_string(), secret));
        }
    }
    Ok(updraft_server::WebhookSecrets::new(secrets))
}

fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

async fn wait_for(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}
