//! `updraft config ...`

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use crate::config::{Settings, masked_toml};

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (file plus environment), secrets masked.
    Show,
    /// Print a new Fernet key, for core.fernet_key (Airflow's format).
    GenerateFernetKey,
}

pub fn run(cmd: ConfigCommand, settings: &Settings) -> Result<ExitCode> {
    match cmd {
        ConfigCommand::Show => {
            println!("# UPDRAFT_HOME = {}", settings.home.display());
            print!("{}", masked_toml(&settings.config)?);
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::GenerateFernetKey => {
            println!("{}", updraft_secrets::Keyring::generate_key());
            Ok(ExitCode::SUCCESS)
        }
    }
}
