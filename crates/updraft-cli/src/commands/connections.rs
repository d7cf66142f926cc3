//! `updraft connections add|get|list|delete|import|export`, with Airflow's flags and file
//! formats, for one tenant (`--tenant`, default `default`) or the shared connections
//! (`--shared`). `get` and `list` show passwords and sensitive extra fields as `***`;
//! `export` writes them in the clear.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use updraft_secrets::{Connection, MASK, Masker, SecretsError, mask};
use updraft_store::{StoreError, WriteMode};

use super::vault::{self, FileFormat, Scope, audit, open_vault, tenant_label};
use crate::config::Settings;
use crate::output::{Format, print_object, print_rows};

#[derive(Subcommand)]
pub enum ConnectionsCommand {
    /// Add a connection: from a URI (--conn-uri), Airflow's JSON (--conn-json), or its parts
    /// (--conn-type and the others).
    Add {
        /// The connection's id (`conn_id`).
        conn_id: String,
        #[command(flatten)]
        fields: Box<ConnFields>,
        #[command(flatten)]
        scope: Scope,
    },
    /// Show a connection as the tenant's DAGs see it (its own, else the shared one); the
    /// password and sensitive extra fields are shown as ***.
    Get {
        conn_id: String,
        #[command(flatten)]
        scope: Scope,
    },
    /// List the tenant's connections and the shared ones; passwords and sensitive extra
    /// fields are shown as ***.
    List {
        /// Only this connection.
        #[arg(long)]
        conn_id: Option<String>,
        #[command(flatten)]
        scope: Scope,
    },
    /// Delete a connection of the tenant (or a shared one with --shared).
    Delete {
        conn_id: String,
        #[command(flatten)]
        scope: Scope,
    },
    /// Import connections from a .json, .yaml/.yml or .env file (Airflow's formats).
    Import {
        file: PathBuf,
        /// Replace connections that exist (else they are skipped).
        #[arg(long)]
        overwrite: bool,
        #[command(flatten)]
        scope: Scope,
    },
    /// Export the tenant's connections (or the shared ones) to a file, `-` for standard
    /// output. The file holds passwords and extras IN THE CLEAR (written readable by its
    /// owner only).
    Export {
        file: PathBuf,
        /// json, yaml or env; default: from the file's extension.
        #[arg(long = "file-format", alias = "format", value_enum)]
        file_format: Option<FileFormat>,
        /// How .env lines write each connection: uri (default) or json.
        #[arg(long, value_enum, default_value = "uri")]
        serialization_format: Serialization,
        #[command(flatten)]
        scope: Scope,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Serialization {
    Uri,
    Json,
}

#[derive(Args)]
pub struct ConnFields {
    /// Airflow's connection URI: type://login:password@host:port/schema?key=value.
    #[arg(long)]
    conn_uri: Option<String>,
    /// Airflow's connection JSON: {"conn_type": ..., "host": ..., "extra": {...}}.
    #[arg(long, conflicts_with = "conn_uri")]
    conn_json: Option<String>,
    /// The connection type (`postgres`, `http`, ...).
    #[arg(long, conflicts_with_all = ["conn_uri", "conn_json"])]
    conn_type: Option<String>,
    /// The host.
    #[arg(long, conflicts_with_all = ["conn_uri", "conn_json"])]
    conn_host: Option<String>,
    /// The login.
    #[arg(long, conflicts_with_all = ["conn_uri", "conn_json"])]
    conn_login: Option<String>,
    /// The password (stored encrypted).
    #[arg(long, conflicts_with_all = ["conn_uri", "conn_json"])]
    conn_password: Option<String>,
    /// The schema (a database's name).
    #[arg(long, conflicts_with_all = ["conn_uri", "conn_json"])]
    conn_schema: Option<String>,
    /// The port.
    #[arg(long, conflicts_with_all = ["conn_uri", "conn_json"])]
    conn_port: Option<u16>,
    /// The extra as a JSON object.
    #[arg(long, conflicts_with = "conn_json")]
    conn_extra: Option<String>,
    /// A description.
    #[arg(long)]
    conn_description: Option<String>,
}

impl ConnFields {
    fn connection(self, conn_id: &str) -> Result<Connection> {
        let mut connection = if let Some(uri) = &self.conn_uri {
            Connection::from_uri(conn_id, uri).context("--conn-uri")?
        } else if let Some(json) = &self.conn_json {
            Connection::from_json(conn_id, json).context("--conn-json")?
        } else {
            let Some(conn_type) = self.conn_type else {
                bail!("give --conn-uri, --conn-json or --conn-type");
            };
            Connection {
                conn_id: conn_id.to_string(),
                conn_type,
                host: self.conn_host,
                login: self.conn_login,
                password: self.conn_password,
                schema: self.conn_schema,
                port: self.conn_port,
                ..Connection::default()
            }
        };
        if let Some(extra) = self.conn_extra {
            check_extra(&extra).context("--conn-extra")?;
            connection.extra = Some(extra);
        }
        if self.conn_description.is_some() {
            connection.description = self.conn_description;
        }
        Ok(connection)
    }
}

fn check_extra(extra: &str) -> Result<()> {
    match serde_json::from_str::<Value>(extra) {
        Ok(Value::Object(_)) => Ok(()),
        Ok(_) => bail!("the extra must be a JSON object"),
        Err(e) => bail!("the extra is not valid JSON: {e}"),
    }
}

pub async fn run(cmd: ConnectionsCommand, settings: &Settings, format: Format) -> Result<ExitCode> {
    match cmd {
        ConnectionsCommand::Add {
            conn_id,
            fields,
            scope,
        } => add(settings, &conn_id, fields, &scope).await,
        ConnectionsCommand::Get { conn_id, scope } => get(settings, &conn_id, &scope, format).await,
        ConnectionsCommand::List { conn_id, scope } => {
            list(settings, conn_id.as_deref(), &scope, format).await
        }
        ConnectionsCommand::Delete { conn_id, scope } => delete(settings, &conn_id, &scope).await,
        ConnectionsCommand::Import {
            file,
            overwrite,
            scope,
        } => import(settings, &file, overwrite, &scope).await,
        ConnectionsCommand::Export {
            file,
            file_format,
            serialization_format,
            scope,
        } => export(settings, &file, file_format, serialization_format, &scope).await,
    }
}

async fn add(
    settings: &Settings,
    conn_id: &str,
    fields: Box<ConnFields>,
    scope: &Scope,
) -> Result<ExitCode> {
    check_conn_id(conn_id)?;
    let connection = fields.connection(conn_id)?;
    let tenant = scope.tenant()?;
    let (store, vault) = open_vault(settings).await?;
    match vault
        .write_connection(tenant, &connection, WriteMode::Create)
        .await
    {
        Err(SecretsError::Store(StoreError::Conflict(_))) => bail!(
            "a connection with `conn_id`={conn_id} already exists ({})",
            scope.describe()
        ),
        other => other?,
    }
    audit(
        store.as_ref(),
        "cli_connections_add",
        tenant,
        json!({"conn_id": conn_id, "conn_type": connection.conn_type}),
    )
    .await?;
    println!(
        "Successfully added `conn_id`={conn_id} ({})",
        scope.describe()
    );
    Ok(ExitCode::SUCCESS)
}

fn check_conn_id(conn_id: &str) -> Result<()> {
    if conn_id.trim().is_empty() || conn_id.chars().any(char::is_whitespace) {
        bail!("`{conn_id}` is not a connection id: it needs characters and no blanks");
    }
    Ok(())
}

async fn get(
    settings: &Settings,
    conn_id: &str,
    scope: &Scope,
    format: Format,
) -> Result<ExitCode> {
    let (_, vault) = open_vault(settings).await?;
    let tenant = scope.tenant()?;
    let found = match vault.connection(tenant, conn_id).await? {
        Some(connection) => Some((tenant, connection)),
        None if tenant.is_some() => vault.connection(None, conn_id).await?.map(|c| (None, c)),
        None => None,
    };
    let Some((owner, connection)) = found else {
        bail!("connection `{conn_id}` not found ({})", scope.describe());
    };
    register(&connection);
    print_object(format, &shown(owner, &connection));
    Ok(ExitCode::SUCCESS)
}

async fn list(
    settings: &Settings,
    conn_id: Option<&str>,
    scope: &Scope,
    format: Format,
) -> Result<ExitCode> {
    let (_, vault) = open_vault(settings).await?;
    let vault = &vault;
    let connections = vault::all_pages(scope.visible()?, |q| async move {
        Ok(vault.connections(&q).await?)
    })
    .await?;
    let rows: Vec<Value> = connections
        .iter()
        .filter(|(_, c)| conn_id.is_none_or(|id| c.conn_id == id))
        .map(|(tenant, c)| {
            register(c);
            shown(tenant.as_deref(), c)
        })
        .collect();
    print_rows(
        format,
        &[
            "tenant",
            "conn_id",
            "conn_type",
            "description",
            "host",
            "port",
            "schema",
            "login",
            "password",
            "extra",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

/// Its secret values join the process's masking set (updraft's own log lines).
fn register(connection: &Connection) {
    for value in connection.secret_values() {
        mask::register(&value);
    }
}

/// A connection as `get` and `list` show it: the password and sensitive extra fields as
/// `***`.
fn shown(tenant: Option<&str>, c: &Connection) -> Value {
    json!({
        "tenant": tenant_label(tenant),
        "conn_id": c.conn_id,
        "conn_type": c.conn_type,
        "description": c.description,
        "host": c.host,
        "port": c.port,
        "schema": c.schema,
        "login": c.login,
        "password": c.password.as_ref().map(|_| MASK),
        "extra": c.extra.as_deref().map(masked_extra),
    })
}

/// The extra with every value under a sensitive key and every secret of the connection
/// masked; all of it when it is not JSON (nothing tells what is secret there).
fn masked_extra(extra: &str) -> Value {
    match serde_json::from_str::<Value>(extra) {
        Ok(value) => Masker::new().mask_json(&value),
        Err(_) => Value::String(MASK.to_string()),
    }
}

async fn delete(settings: &Settings, conn_id: &str, scope: &Scope) -> Result<ExitCode> {
    let tenant = scope.tenant()?;
    let (store, vault) = open_vault(settings).await?;
    if !vault.delete_connection(tenant, conn_id).await? {
        bail!(
            "did not find a connection with `conn_id`={conn_id} ({})",
            scope.describe()
        );
    }
    audit(
        store.as_ref(),
        "cli_connections_delete",
        tenant,
        json!({"conn_id": conn_id}),
    )
    .await?;
    println!(
        "Successfully deleted connection with `conn_id`={conn_id} ({})",
        scope.describe()
    );
    Ok(ExitCode::SUCCESS)
}

/// A connection of an import file: a URI or JSON text, or Airflow's fields as a map.
fn entry_connection(entry: &vault::Entry) -> Result<Connection> {
    let parsed = match &entry.value {
        Value::String(text) => Connection::from_uri_or_json(&entry.name, text),
        Value::Object(_) => Connection::from_json(&entry.name, &entry.value.to_string()),
        _ => bail!(
            "{}: expected a connection URI or a map of its fields",
            entry.place
        ),
    };
    parsed.with_context(|| entry.place.clone())
}

async fn import(
    settings: &Settings,
    file: &std::path::Path,
    overwrite: bool,
    scope: &Scope,
) -> Result<ExitCode> {
    let tenant = scope.tenant()?;
    let entries = vault::read_entries(file)?;
    let connections = entries
        .iter()
        .map(|entry| {
            check_conn_id(&entry.name).with_context(|| entry.place.clone())?;
            entry_connection(entry)
        })
        .collect::<Result<Vec<_>>>()?;
    let (store, vault) = open_vault(settings).await?;
    let mode = if overwrite {
        WriteMode::Upsert
    } else {
        WriteMode::Create
    };
    let mut imported = Vec::new();
    for connection in &connections {
        match vault.write_connection(tenant, connection, mode).await {
            Err(SecretsError::Store(StoreError::Conflict(_))) => {
                println!(
                    "Could not import connection {}: connection already exists.",
                    connection.conn_id
                );
            }
            Err(e) => return Err(e.into()),
            Ok(()) => {
                println!("Imported connection {}", connection.conn_id);
                imported.push(connection.conn_id.clone());
            }
        }
    }
    audit(
        store.as_ref(),
        "cli_connections_import",
        tenant,
        json!({"file": file.display().to_string(), "conn_ids": imported, "overwrite": overwrite}),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

async fn export(
    settings: &Settings,
    file: &std::path::Path,
    file_format: Option<FileFormat>,
    serialization: Serialization,
    scope: &Scope,
) -> Result<ExitCode> {
    let format = FileFormat::of(file, file_format)?;
    let (_, vault) = open_vault(settings).await?;
    let vault = &vault;
    let connections =
        vault::all_pages(
            scope.own()?,
            |q| async move { Ok(vault.connections(&q).await?) },
        )
        .await?;
    let mut map = serde_json::Map::new();
    for (_, connection) in &connections {
        let value = if format == FileFormat::Env && serialization == Serialization::Uri {
            Value::String(connection.to_uri())
        } else {
            let mut fields = connection.to_json();
            if let Value::Object(object) = &mut fields {
                object.remove("conn_id");
            }
            if format == FileFormat::Env {
                Value::String(fields.to_string())
            } else {
                fields
            }
        };
        map.insert(connection.conn_id.clone(), value);
    }
    let text = vault::render_map(format, map)?;
    vault::write_export(file, &text)?;
    eprintln!(
        "Exported {} connections ({}) to {}",
        connections.len(),
        scope.describe(),
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}
