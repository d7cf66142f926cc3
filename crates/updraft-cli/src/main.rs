//! `updraft`: the command line, shaped like Airflow's.
//!
//! Configuration and errors are handled here, at the edge; every command is a thin layer over
//! the scheduler, store and executor crates.

mod commands;
mod config;
mod examples;
mod keys;
mod log_mask;
mod output;
mod secret_sources;
mod stop;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::Format;

#[derive(Parser)]
#[command(
    name = "updraft",
    version,
    about = "A small, fast workflow orchestrator that speaks Airflow"
)]
struct Cli {
    /// Output format of listing commands.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process: migrate the database, offer example DAGs, run the scheduler
    /// and the web UI and API.
    Standalone,
    /// Run the scheduler.
    Scheduler,
    /// Run the web UI and REST API (default http://127.0.0.1:8080).
    Server,
    /// Database commands.
    #[command(subcommand)]
    Db(commands::db::DbCommand),
    /// Configuration commands.
    #[command(subcommand)]
    Config(commands::config_cmd::ConfigCommand),
    /// DAG commands.
    #[command(subcommand)]
    Dags(commands::dags::DagsCommand),
    /// Task commands.
    #[command(subcommand)]
    Tasks(commands::tasks::TasksCommand),
    /// Pool commands.
    #[command(subcommand)]
    Pools(commands::pools::PoolsCommand),
    /// Scheduler jobs: list them, check that one is alive.
    #[command(subcommand)]
    Jobs(commands::jobs::JobsCommand),
    /// Users and the roles they hold per tenant.
    #[command(subcommand)]
    Users(commands::users::UsersCommand),
    /// Roles: what each may do.
    #[command(subcommand)]
    Roles(commands::users::RolesCommand),
    /// Connections (Airflow's): add, get, list, delete, import, export, per tenant.
    #[command(subcommand)]
    Connections(commands::connections::ConnectionsCommand),
    /// Variables (Airflow's): set, get, list, delete, import, export, per tenant.
    #[command(subcommand)]
    Variables(commands::variables::VariablesCommand),
    /// DAG sources (`[[sources]]`): list them, sync them now.
    #[command(subcommand)]
    Sources(commands::sources::SourcesCommand),
    /// Re-encrypt every connection password and extra and every variable value with the
    /// first key of core.fernet_key (put the new key first, run this, then drop the old one).
    RotateFernetKey,
    /// Print updraft's version (Airflow's `airflow version`).
    Version,
    /// Print the values of Apache Airflow's Helm chart in FILE as values of updraft's chart
    /// (charts/updraft), listing every value not carried over and why.
    HelmValuesFromAirflow {
        /// The Airflow chart's values file (helm's `-f` file).
        file: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // These need no configuration: they answer even where the configuration is broken.
    match &cli.command {
        Command::Version => return print_version(),
        Command::HelmValuesFromAirflow { file } => {
            return commands::helm_values::run(file).unwrap_or_else(|e| {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            });
        }
        _ => {}
    }
    // Both ring and aws-lc-rs are linked: rustls needs to be told which one to use.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = match config::Settings::load() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(1);
        }
    };
    init_tracing(&settings.config.logging.level);
    // Before the runtime starts any thread: see `stop::on_signal`.
    let stop = if cli.command.is_service() {
        let s = &settings.config.scheduler;
        let mut deadline = stop::hard_deadline(s.shutdown_grace, s.kill_grace);
        if settings.uploads_logs() {
            deadline += updraft_scheduler::LOG_FLUSH_WAIT;
        }
        match stop::on_signal(deadline) {
            Ok(stop) => Some(stop),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli, settings, stop));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn print_version() -> ExitCode {
    println!("{}", env!("CARGO_PKG_VERSION"));
    ExitCode::SUCCESS
}

impl Command {
    /// A long-running service, stopped by SIGTERM or SIGINT within a hard deadline.
    fn is_service(&self) -> bool {
        matches!(
            self,
            Command::Standalone | Command::Scheduler | Command::Server
        )
    }
}

async fn run(
    cli: Cli,
    settings: config::Settings,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
) -> anyhow::Result<ExitCode> {
    let format = cli.output;
    let stop = || stop.clone().expect("services listen for stop signals");
    match cli.command {
        Command::Standalone => commands::service::standalone(&settings, stop()).await,
        Command::Scheduler => commands::service::scheduler(&settings, stop()).await,
        Command::Server => commands::service::server(&settings, stop()).await,
        Command::Db(cmd) => commands::db::run(cmd, &settings, format).await,
        Command::Config(cmd) => commands::config_cmd::run(cmd, &settings),
        Command::Dags(cmd) => commands::dags::run(cmd, &settings, format).await,
        Command::Tasks(cmd) => commands::tasks::run(cmd, &settings, format).await,
        Command::Pools(cmd) => commands::pools::run(cmd, &settings, format).await,
        Command::Jobs(cmd) => commands::jobs::run(cmd, &settings, format).await,
        Command::Users(cmd) => commands::users::run(cmd, &settings, format).await,
        Command::Roles(cmd) => commands::users::run_roles(cmd, format),
        Command::Connections(cmd) => commands::connections::run(cmd, &settings, format).await,
        Command::Variables(cmd) => commands::variables::run(cmd, &settings, format).await,
        Command::Sources(cmd) => commands::sources::run(cmd, &settings, format).await,
        Command::RotateFernetKey => commands::vault::rotate(&settings).await,
        Command::Version => Ok(print_version()),
        Command::HelmValuesFromAirflow { file } => commands::helm_values::run(&file),
    }
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UPDRAFT_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(log_mask::MaskedStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
