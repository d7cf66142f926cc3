//! `updraft pools ...`

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::json;
use updraft_store::PoolRow;

use crate::config::Settings;
use crate::output::{Format, print_rows};

#[derive(Subcommand)]
pub enum PoolsCommand {
    /// List pools with their slots.
    List,
    /// Create or resize a pool.
    Set {
        name: String,
        slots: i64,
        #[arg(default_value = "")]
        description: String,
    },
    /// Delete a pool.
    Delete { name: String },
}

pub async fn run(cmd: PoolsCommand, settings: &Settings, format: Format) -> Result<ExitCode> {
    let store = super::open_store(settings).await?;
    match cmd {
        PoolsCommand::List => {
            let rows: Vec<_> = store
                .pools()
                .await?
                .into_iter()
                .map(|p| json!({"pool": p.name, "slots": p.slots, "description": p.description}))
                .collect();
            print_rows(format, &["pool", "slots", "description"], &rows);
        }
        PoolsCommand::Set {
            name,
            slots,
            description,
        } => {
            if slots < 0 {
                bail!("slots must be zero or more");
            }
            store
                .upsert_pool(&PoolRow {
                    name: name.clone(),
                    slots,
                    description,
                    tenant: None,
                })
                .await?;
            super::poke_scheduler(settings, store.as_ref()).await;
            println!("Pool {name} set to {slots} slots");
        }
        PoolsCommand::Delete { name } => {
            if name == updraft_dag::DEFAULT_POOL {
                bail!("the default pool cannot be deleted");
            }
            if !store.delete_pool(&name).await? {
                bail!("pool `{name}` not found");
            }
            println!("Pool {name} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}
