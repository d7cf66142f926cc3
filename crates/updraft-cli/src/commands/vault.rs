//! What `connections` and `variables` share: the tenant they act on (`--tenant` or
//! `--shared`), the vault over the configured Fernet keys, Airflow's import and export file
//! formats (JSON, YAML, `.env`), the audit log, and `updraft rotate-fernet-key`.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use updraft_secrets::Vault;
use updraft_store::{NewEvent, SecretQuery, Store};

use crate::config::Settings;

/// The tenant of objects no `--tenant` names.
pub const DEFAULT_TENANT: &str = "default";

/// How shared objects are shown in the `tenant` column.
pub const SHARED_LABEL: &str = "*";

/// Page size when listing everything.
const PAGE: u32 = 500;

#[derive(Args, Clone)]
pub struct Scope {
    /// The tenant whose objects these are (default: `default`).
    #[arg(long, short = 't', value_name = "TENANT", conflicts_with = "shared")]
    tenant: Option<String>,
    /// Installation-wide objects, shared by every tenant, instead of one tenant's.
    #[arg(long)]
    shared: bool,
}

impl Scope {
    /// `None` for the shared objects.
    pub fn tenant(&self) -> Result<Option<&str>> {
        if self.shared {
            return Ok(None);
        }
        let tenant = self.tenant.as_deref().unwrap_or(DEFAULT_TENANT).trim();
        if tenant.is_empty() || tenant == SHARED_LABEL {
            bail!("--tenant needs a tenant's name (use --shared for installation-wide objects)");
        }
        Ok(Some(tenant))
    }

    /// For messages: `tenant a` or `shared`.
    pub fn describe(&self) -> String {
        match self.tenant() {
            Ok(Some(tenant)) => format!("tenant {tenant}"),
            _ => "shared".to_string(),
        }
    }

    /// What a DAG of this tenant sees (its own and the shared ones); only the shared ones
    /// for `--shared`.
    pub fn visible(&self) -> Result<SecretQuery> {
        Ok(SecretQuery {
            tenants: Some(self.tenant()?.map(str::to_string).into_iter().collect()),
            include_shared: true,
            id_pattern: None,
            id: None,
            limit: PAGE,
            offset: 0,
        })
    }

    /// Exactly this scope's objects (export).
    pub fn own(&self) -> Result<SecretQuery> {
        let tenant = self.tenant()?;
        Ok(SecretQuery {
            tenants: Some(tenant.map(str::to_string).into_iter().collect()),
            include_shared: tenant.is_none(),
            id_pattern: None,
            id: None,
            limit: PAGE,
            offset: 0,
        })
    }
}

/// The `tenant` column's text.
pub fn tenant_label(tenant: Option<&str>) -> String {
    tenant.unwrap_or(SHARED_LABEL).to_string()
}

/// The database's connections and variables under the configured Fernet keys; an error
/// naming `core.fernet_key` when none is configured.
pub async fn open_vault(settings: &Settings) -> Result<(Arc<dyn Store>, Vault)> {
    let keyring = settings.keyring()?;
    let store = super::open_store(settings).await?;
    let vault = Vault::new(store.clone(), keyring);
    Ok((store, vault))
}

/// Every page of a listing.
pub async fn all_pages<T, F, Fut>(mut query: SecretQuery, mut page: F) -> Result<Vec<T>>
where
    F: FnMut(SecretQuery) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, u64)>>,
{
    let mut all = Vec::new();
    loop {
        let (items, total) = page(query.clone()).await?;
        let got = items.len() as u32;
        all.extend(items);
        if got < query.limit || all.len() as u64 >= total {
            return Ok(all);
        }
        query.offset += got;
    }
}

/// Record a change made from the command line in the audit log, under the login name of
/// whoever ran it (secrets never in `extra`).
pub async fn audit(
    store: &dyn Store,
    event: &str,
    tenant: Option<&str>,
    extra: Value,
) -> Result<()> {
    let who = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "cli".to_string());
    store
        .record_event(&NewEvent {
            username: who,
            event: event.to_string(),
            tenant: tenant.map(str::to_string),
            extra: Some(extra.to_string()),
            ..NewEvent::default()
        })
        .await
        .context("recording the change in the audit log")?;
    Ok(())
}

/// Airflow's import and export file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    Json,
    Yaml,
    Env,
}

impl FileFormat {
    /// The format given, else the one the file's extension names.
    pub fn of(path: &Path, given: Option<FileFormat>) -> Result<FileFormat> {
        if let Some(format) = given {
            return Ok(format);
        }
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("json") => Ok(FileFormat::Json),
            Some("yaml" | "yml") => Ok(FileFormat::Yaml),
            Some("env") => Ok(FileFormat::Env),
            _ => bail!(
                "{}: cannot tell the file's format: name it .json, .yaml, .yml or .env (or give --file-format)",
                path.display()
            ),
        }
    }
}

/// One entry of an import file: its name, its value, and where it was (for errors).
pub struct Entry {
    pub name: String,
    pub value: Value,
    pub place: String,
}

/// The entries of an import file: a JSON or YAML map of names to values, or `.env` lines
/// `NAME=VALUE` (`#` comments and blank lines skipped; values are strings).
pub fn read_entries(path: &Path) -> Result<Vec<Entry>> {
    let format = FileFormat::of(path, None)?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file = path.display();
    match format {
        FileFormat::Env => env_entries(&text, &file.to_string()),
        FileFormat::Json | FileFormat::Yaml => {
            let value: Value = if format == FileFormat::Json {
                serde_json::from_str(&text).with_context(|| format!("{file}"))?
            } else {
                serde_saphyr::from_str(&text).with_context(|| format!("{file}"))?
            };
            let Value::Object(map) = value else {
                bail!("{file}: expected a map of names to values at the top");
            };
            Ok(map
                .into_iter()
                .map(|(name, value)| Entry {
                    place: format!("{file}: `{name}`"),
                    name,
                    value,
                })
                .collect())
        }
    }
}

fn env_entries(text: &str, file: &str) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((name, value)) = trimmed.split_once('=') else {
            bail!("{file}, line {line_no}: expected NAME=VALUE");
        };
        let name = name.trim();
        if name.is_empty() {
            bail!("{file}, line {line_no}: the name before `=` is empty");
        }
        entries.push(Entry {
            name: name.to_string(),
            value: Value::String(value.trim().to_string()),
            place: format!("{file}, line {line_no}"),
        });
    }
    Ok(entries)
}

/// `map` written in `format` (`.env`: one `NAME=VALUE` line per entry, values as given).
pub fn render_map(format: FileFormat, map: serde_json::Map<String, Value>) -> Result<String> {
    match format {
        FileFormat::Json => Ok(serde_json::to_string_pretty(&Value::Object(map))? + "\n"),
        FileFormat::Yaml => Ok(serde_saphyr::to_string(&Value::Object(map))?),
        FileFormat::Env => {
            let mut text = String::new();
            for (name, value) in map {
                let value = match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                if value.contains(['\n', '\r']) {
                    bail!(
                        "`{name}`: a value holding a line break cannot be written to a .env file (use JSON or YAML)"
                    );
                }
                text.push_str(&format!("{name}={value}\n"));
            }
            Ok(text)
        }
    }
}

/// Write an export to `path` (readable by its owner only: it holds secrets in the clear), or
/// to standard output for `-`.
pub fn write_export(path: &Path, text: &str) -> Result<()> {
    if path == Path::new("-") {
        print!("{text}");
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// `updraft rotate-fernet-key`: every encrypted value re-encrypted with the first key.
pub async fn rotate(settings: &Settings) -> Result<ExitCode> {
    let (store, vault) = open_vault(settings).await?;
    let count = vault.rotate().await?;
    audit(
        store.as_ref(),
        "cli_rotate_fernet_key",
        None,
        json!({"values": count}),
    )
    .await?;
    println!(
        "Re-encrypted {count} values with the first key of {}",
        vault.keyring().setting()
    );
    Ok(ExitCode::SUCCESS)
}
