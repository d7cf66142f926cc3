//! Long-running commands: `standalone` and `scheduler`.

use std::process::ExitCode;

use anyhow::{Result, bail};
use tokio::signal::unix::{SignalKind, signal};
use updraft_scheduler::Scheduler;

use crate::config::Settings;
use crate::examples;

pub async fn standalone(settings: &Settings) -> Result<ExitCode> {
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
    run_scheduler(settings).await
}

pub async fn scheduler(settings: &Settings) -> Result<ExitCode> {
    run_scheduler(settings).await
}

async fn run_scheduler(settings: &Settings) -> Result<ExitCode> {
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
    scheduler.run(shutdown_signal()).await?;
    eprintln!("updraft scheduler stopped");
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM: {e}");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
