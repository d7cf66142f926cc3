//! `updraft variables set|get|list|delete|import|export`, with Airflow's flags and file
//! formats, for one tenant (`--tenant`, default `default`) or the shared variables
//! (`--shared`). Values of variables whose key looks sensitive are shown as `***` by `get`
//! and `list`; `export` writes them in the clear.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};
use updraft_secrets::{MASK, Variable, mask};
use updraft_store::{StoreError, WriteMode};

use super::vault::{self, FileFormat, Scope, audit, open_vault, tenant_label};
use crate::config::Settings;
use crate::output::{Format, print_rows, print_value};

#[derive(Subcommand)]
pub enum VariablesCommand {
    /// Set a variable (created or replaced).
    Set {
        key: String,
        value: String,
        #[arg(long)]
        description: Option<String>,
        /// Store the value as JSON text (it must be valid JSON).
        #[arg(long, short = 'j')]
        serialize_json: bool,
        #[command(flatten)]
        scope: Scope,
    },
    /// Print a variable's value as the tenant's DAGs see it (its own, else the shared one);
    /// *** when its key looks sensitive.
    Get {
        key: String,
        /// Printed when the variable does not exist (else that is an error).
        #[arg(long, short = 'd')]
        default: Option<String>,
        /// Print the value as JSON (pretty-printed).
        #[arg(long, short = 'j')]
        deserialize_json: bool,
        #[command(flatten)]
        scope: Scope,
    },
    /// List the tenant's variables and the shared ones; values of sensitive keys as ***.
    List {
        #[command(flatten)]
        scope: Scope,
    },
    /// Delete a variable of the tenant (or a shared one with --shared).
    Delete {
        key: String,
        #[command(flatten)]
        scope: Scope,
    },
    /// Import variables from a .json, .yaml/.yml or .env file (Airflow's formats).
    Import {
        file: PathBuf,
        /// What to do with a variable that exists.
        #[arg(long, value_enum, default_value = "overwrite")]
        action_on_existing_key: OnExisting,
        #[command(flatten)]
        scope: Scope,
    },
    /// Export the tenant's variables (or the shared ones) to a file, `-` for standard output.
    /// The file holds every value IN THE CLEAR, sensitive ones included (written readable by
    /// its owner only).
    Export {
        file: PathBuf,
        /// json, yaml or env; default: from the file's extension.
        #[arg(long = "file-format", alias = "format", value_enum)]
        file_format: Option<FileFormat>,
        #[command(flatten)]
        scope: Scope,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnExisting {
    Overwrite,
    Fail,
    Skip,
}

pub async fn run(cmd: VariablesCommand, settings: &Settings, format: Format) -> Result<ExitCode> {
    match cmd {
        VariablesCommand::Set {
            key,
            value,
            description,
            serialize_json,
            scope,
        } => {
            let value = if serialize_json {
                let parsed: Value = serde_json::from_str(&value)
                    .with_context(|| format!("variable `{key}`: the value is not valid JSON"))?;
                parsed.to_string()
            } else {
                value
            };
            set(
                settings,
                Variable {
                    key,
                    value,
                    description,
                },
                &scope,
            )
            .await
        }
        VariablesCommand::Get {
            key,
            default,
            deserialize_json,
            scope,
        } => get(settings, &key, default, deserialize_json, &scope, format).await,
        VariablesCommand::List { scope } => list(settings, &scope, format).await,
        VariablesCommand::Delete { key, scope } => delete(settings, &key, &scope).await,
        VariablesCommand::Import {
            file,
            action_on_existing_key,
            scope,
        } => import(settings, &file, action_on_existing_key, &scope).await,
        VariablesCommand::Export {
            file,
            file_format,
            scope,
        } => export(settings, &file, file_format, &scope).await,
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.trim().is_empty() {
        bail!("a variable's key cannot be empty");
    }
    Ok(())
}

async fn set(settings: &Settings, variable: Variable, scope: &Scope) -> Result<ExitCode> {
    check_key(&variable.key)?;
    let tenant = scope.tenant()?;
    let (store, vault) = open_vault(settings).await?;
    vault
        .write_variable(tenant, &variable, WriteMode::Upsert)
        .await?;
    audit(
        store.as_ref(),
        "cli_variables_set",
        tenant,
        json!({"key": variable.key}),
    )
    .await?;
    println!("Variable {} created ({})", variable.key, scope.describe());
    Ok(ExitCode::SUCCESS)
}

async fn get(
    settings: &Settings,
    key: &str,
    default: Option<String>,
    as_json: bool,
    scope: &Scope,
    format: Format,
) -> Result<ExitCode> {
    let (_, vault) = open_vault(settings).await?;
    let tenant = scope.tenant()?;
    let found = match vault.variable(tenant, key).await? {
        Some(variable) => Some(variable),
        None if tenant.is_some() => vault.variable(None, key).await?,
        None => None,
    };
    let value = match (found, default) {
        (Some(variable), _) => {
            register(&variable);
            shown_value(&variable)
        }
        (None, Some(default)) => default,
        (None, None) => bail!("Variable {key} does not exist ({})", scope.describe()),
    };
    if as_json {
        let parsed: Value = serde_json::from_str(&value)
            .with_context(|| format!("variable `{key}`: the value is not valid JSON"))?;
        match format {
            Format::Json | Format::Yaml => print_value(format, &parsed),
            _ => println!("{}", serde_json::to_string_pretty(&parsed)?),
        }
    } else {
        println!("{value}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The value, or `***` when its key looks sensitive.
fn shown_value(variable: &Variable) -> String {
    if variable.is_sensitive() {
        MASK.to_string()
    } else {
        variable.value.clone()
    }
}

/// A sensitive value joins the process's masking set (updraft's own log lines).
fn register(variable: &Variable) {
    if variable.is_sensitive() {
        mask::register(&variable.value);
    }
}

async fn list(settings: &Settings, scope: &Scope, format: Format) -> Result<ExitCode> {
    let (_, vault) = open_vault(settings).await?;
    let vault = &vault;
    let variables = vault::all_pages(scope.visible()?, |q| async move {
        Ok(vault.variables(&q).await?)
    })
    .await?;
    let rows: Vec<Value> = variables
        .iter()
        .map(|(tenant, v)| {
            register(v);
            json!({
                "tenant": tenant_label(tenant.as_deref()),
                "key": v.key,
                "val": shown_value(v),
                "description": v.description,
            })
        })
        .collect();
    print_rows(format, &["tenant", "key", "val", "description"], &rows);
    Ok(ExitCode::SUCCESS)
}

async fn delete(settings: &Settings, key: &str, scope: &Scope) -> Result<ExitCode> {
    let tenant = scope.tenant()?;
    let (store, vault) = open_vault(settings).await?;
    if !vault.delete_variable(tenant, key).await? {
        bail!("Variable {key} does not exist ({})", scope.describe());
    }
    audit(
        store.as_ref(),
        "cli_variables_delete",
        tenant,
        json!({"key": key}),
    )
    .await?;
    println!("Variable {key} deleted ({})", scope.describe());
    Ok(ExitCode::SUCCESS)
}

/// A variable of an import file, as Airflow reads them: a string is the value, another JSON
/// value is stored as JSON text, and `{"value": ..., "description": ...}` carries a
/// description.
fn entry_variable(entry: &vault::Entry) -> Result<Variable> {
    check_key(&entry.name).with_context(|| entry.place.clone())?;
    let (value, description) = match &entry.value {
        Value::Object(map) if map.contains_key("value") && map.contains_key("description") => {
            let description = match map.get("description") {
                Some(Value::String(d)) => Some(d.clone()),
                Some(Value::Null) | None => None,
                Some(_) => bail!("{}: `description` must be text", entry.place),
            };
            (
                map.get("value").cloned().unwrap_or(Value::Null),
                description,
            )
        }
        other => (other.clone(), None),
    };
    let value = match value {
        Value::String(s) => s,
        other => other.to_string(),
    };
    Ok(Variable {
        key: entry.name.clone(),
        value,
        description,
    })
}

async fn import(
    settings: &Settings,
    file: &Path,
    on_existing: OnExisting,
    scope: &Scope,
) -> Result<ExitCode> {
    let tenant = scope.tenant()?;
    let variables = vault::read_entries(file)?
        .iter()
        .map(entry_variable)
        .collect::<Result<Vec<_>>>()?;
    let (store, vault) = open_vault(settings).await?;
    let mode = match on_existing {
        OnExisting::Overwrite => WriteMode::Upsert,
        OnExisting::Fail | OnExisting::Skip => WriteMode::Create,
    };
    let (mut imported, mut skipped) = (Vec::new(), Vec::new());
    for variable in &variables {
        match vault.write_variable(tenant, variable, mode).await {
            Err(updraft_secrets::SecretsError::Store(StoreError::Conflict(_)))
                if on_existing == OnExisting::Skip =>
            {
                skipped.push(variable.key.clone());
            }
            Err(updraft_secrets::SecretsError::Store(StoreError::Conflict(_))) => {
                bail!(
                    "variable {} already exists ({}); {} imported before it",
                    variable.key,
                    scope.describe(),
                    imported.len()
                );
            }
            Err(e) => return Err(e.into()),
            Ok(()) => imported.push(variable.key.clone()),
        }
    }
    audit(
        store.as_ref(),
        "cli_variables_import",
        tenant,
        json!({"file": file.display().to_string(), "keys": imported}),
    )
    .await?;
    println!(
        "{} of {} variables successfully updated.",
        imported.len(),
        variables.len()
    );
    if !skipped.is_empty() {
        println!(
            "The following variables already exist and were skipped: {}",
            skipped.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn export(
    settings: &Settings,
    file: &Path,
    file_format: Option<FileFormat>,
    scope: &Scope,
) -> Result<ExitCode> {
    let format = FileFormat::of(file, file_format)?;
    let (_, vault) = open_vault(settings).await?;
    let vault = &vault;
    let variables = vault::all_pages(
        scope.own()?,
        |q| async move { Ok(vault.variables(&q).await?) },
    )
    .await?;
    let mut map = serde_json::Map::new();
    for (_, variable) in &variables {
        map.insert(variable.key.clone(), exported(format, variable));
    }
    let text = vault::render_map(format, map)?;
    vault::write_export(file, &text)?;
    eprintln!(
        "{} variables ({}) successfully exported to {}",
        variables.len(),
        scope.describe(),
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// As Airflow's export writes a variable: JSON text as JSON, with its description when it
/// has one (`.env` lines hold the text alone).
fn exported(format: FileFormat, variable: &Variable) -> Value {
    if format == FileFormat::Env {
        return Value::String(variable.value.clone());
    }
    let value = serde_json::from_str::<Value>(&variable.value)
        .unwrap_or_else(|_| Value::String(variable.value.clone()));
    match &variable.description {
        Some(description) => json!({"value": value, "description": description}),
        None => value,
    }
}
