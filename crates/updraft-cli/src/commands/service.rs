//! Long-running commands: `standalone` and `scheduler`.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use tokio::signal::unix::{SignalKind, signal};
use updraft_scheduler::Scheduler;

use crate::config::Settings;
use crate::examples;

pub async fn standalone(settings: &Settings) -> Result<ExitCode> {
    let shutdown = shutdown_signal()?;
    let folder = settings.dags_folder();
    if settings.config.core.load_examples {
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
    run_scheduler(settings, shutdown).await
}

pub async fn scheduler(settings: &Settings) -> Result<ExitCode> {
    let shutdown = shutdown_signal()?;
    run_scheduler(settings, shutdown).await
}

async fn run_scheduler(
    settings: &Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<ExitCode> {
    let store = super::open_store(settings).await?;
    let Some(_lock) = super::try_scheduler_lock(settings)? else {
        bail!(
            "another scheduler is already running on {}",
            settings.sqlite_path()?.display()
        );
    };
    let folder = settings.dags_folder();
    std::fs::create_dir_all(&folder)?;
    let config = super::scheduler_config(settings, Some(folder.clone()), settings.logs_folder());
    let mut scheduler = Scheduler::new(store, config)?;
    super::listen_for_pokes(scheduler.waker())?;
    eprintln!(
        "updraft scheduler running: DAGs from {}, database {}, logs in {}. Stop with Ctrl-C or SIGTERM.",
        folder.display(),
        settings.sqlite_path()?.display(),
        settings.logs_folder().display()
    );
    scheduler.run(shutdown).await?;
    eprintln!("updraft scheduler stopped");
    Ok(ExitCode::SUCCESS)
}

/// A future that completes on SIGTERM or SIGINT. The handlers are installed at once, so a
/// stop requested while the service is still starting is not lost (nor fatal).
fn shutdown_signal() -> Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
