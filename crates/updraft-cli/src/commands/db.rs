//! `updraft db ...`

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use crate::config::Settings;

#[derive(Subcommand)]
pub enum DbCommand {
    /// Create or upgrade the database schema.
    Migrate,
}

pub async fn run(cmd: DbCommand, settings: &Settings) -> Result<ExitCode> {
    match cmd {
        DbCommand::Migrate => {
            super::open_store(settings).await?;
            println!("Database migrated: {}", settings.sqlite_path()?.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
