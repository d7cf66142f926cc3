//! The secrets backends `[secrets] backends` names, in its order, for the scheduler's
//! templates: the environment, files, the database (through the vault, with the keys read
//! again when their file changes) and the Kubernetes Secrets of a tenant's namespace.
//!
//! Every secret value a backend answers with is added to the process's masking set
//! (`updraft_secrets::mask::global`), so updraft's own log lines never show it.

use std::sync::{Arc, Mutex};

use anyhow::{Result, bail};
use async_trait::async_trait;
use updraft_scheduler::KubernetesConfig;
use updraft_secrets::{
    Connection, DatabaseBackend, EnvBackend, FilesBackend, Keyring, Secrets, SecretsBackend,
    SecretsError, Vault, is_sensitive_name, mask,
};
use updraft_store::{SecretStore, Store};

use crate::config::Settings;
use crate::keys::KeySource;

/// The configured chain. Without a Fernet key the database backend is left out (with a
/// warning): nothing can have been written there without one.
///
/// `store` is the database when the caller has it open; `None`: it is opened when a lookup
/// first reaches it (so `dags test` of a DAG that reads no connection opens no database).
pub fn build(
    settings: &Settings,
    store: Option<Arc<dyn Store>>,
    kubernetes: Option<&KubernetesConfig>,
) -> Result<Arc<Secrets>> {
    let section = &settings.config.secrets;
    section.check()?;
    let mut backends: Vec<Arc<dyn SecretsBackend>> = Vec::new();
    for name in &section.backends {
        let backend: Arc<dyn SecretsBackend> = match name.as_str() {
            "environment" => Arc::new(EnvBackend::from_process()),
            "files" => Arc::new(FilesBackend::new(settings.home.join(&section.files_dir))),
            "database" => match settings.key_source()? {
                Some(keys) => Arc::new(LiveDatabase::new(settings, store.clone(), keys)),
                None => {
                    tracing::warn!(
                        "no Fernet key is configured (core.fernet_key): connections and \
                         variables in the database are not read"
                    );
                    continue;
                }
            },
            "kubernetes" => {
                let Some(k) = kubernetes else {
                    bail!(
                        "secrets.backends: `kubernetes` needs the cluster configured \
                         ([kubernetes] enabled = true)"
                    );
                };
                Arc::new(updraft_pods::KubernetesSecrets::new(
                    k.client.clone(),
                    k.pods.clone(),
                ))
            }
            other => bail!("secrets.backends: unknown backend `{other}`"),
        };
        backends.push(Arc::new(Registering(backend)));
    }
    Ok(Arc::new(Secrets::new(backends, section.cache_ttl)))
}

/// Adds what its backend answers to the global masking set.
struct Registering(Arc<dyn SecretsBackend>);

#[async_trait]
impl SecretsBackend for Registering {
    fn name(&self) -> &str {
        self.0.name()
    }

    async fn connection(
        &self,
        tenant: &str,
        conn_id: &str,
    ) -> Result<Option<Connection>, SecretsError> {
        let found = self.0.connection(tenant, conn_id).await?;
        if let Some(connection) = &found {
            for value in connection.secret_values() {
                mask::register(&value);
            }
        }
        Ok(found)
    }

    async fn variable(&self, tenant: &str, key: &str) -> Result<Option<String>, SecretsError> {
        let found = self.0.variable(tenant, key).await?;
        if let Some(value) = &found
            && is_sensitive_name(key)
        {
            mask::register(value);
        }
        Ok(found)
    }
}

/// The database backend over keys that may change while the process runs: when the key
/// file's text changes, the vault is made again with the new keys.
struct LiveDatabase {
    settings: Settings,
    store: tokio::sync::OnceCell<Arc<dyn SecretStore>>,
    keys: KeySource,
    current: Mutex<Option<(Option<String>, Arc<DatabaseBackend>)>>,
}

impl LiveDatabase {
    fn new(settings: &Settings, store: Option<Arc<dyn Store>>, keys: KeySource) -> LiveDatabase {
        let opened = tokio::sync::OnceCell::new();
        if let Some(store) = store {
            let store: Arc<dyn SecretStore> = store;
            let _ = opened.set(store);
        }
        LiveDatabase {
            settings: settings.clone(),
            store: opened,
            keys,
            current: Mutex::new(None),
        }
    }

    /// The database, opened on first use unless it was given.
    async fn store(&self) -> Result<Arc<dyn SecretStore>, SecretsError> {
        self.store
            .get_or_try_init(|| async {
                let store = crate::commands::open_store(&self.settings)
                    .await
                    .map_err(key_error)?;
                Ok::<Arc<dyn SecretStore>, SecretsError>(store)
            })
            .await
            .cloned()
    }

    async fn backend(&self) -> Result<Arc<DatabaseBackend>, SecretsError> {
        let store = self.store().await?;
        let text = self.key_file_text().await?;
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, backend)) = current.as_ref()
            && *seen == text
        {
            return Ok(backend.clone());
        }
        let keyring = match (&self.keys, &text) {
            (KeySource::File { setting, .. }, Some(text)) => Keyring::parse(text, setting)?,
            _ => self.keys.keyring().map_err(key_error)?,
        };
        let backend = Arc::new(DatabaseBackend::new(Vault::new(store, keyring)));
        *current = Some((text, backend.clone()));
        Ok(backend)
    }
}

impl LiveDatabase {
    /// The key file's text now (read off the caller's thread); `None` for a fixed key.
    async fn key_file_text(&self) -> Result<Option<String>, SecretsError> {
        let KeySource::File { path, setting } = &self.keys else {
            return Ok(None);
        };
        match tokio::fs::read_to_string(path).await {
            Ok(text) => Ok(Some(text.trim_end_matches(['\n', '\r']).to_string())),
            Err(e) => Err(key_error(anyhow::anyhow!(
                "{setting}: cannot read the key file {}: {e}",
                path.display()
            ))),
        }
    }
}

fn key_error(e: anyhow::Error) -> SecretsError {
    SecretsError::Backend {
        backend: "database".to_string(),
        message: format!("{e:#}"),
    }
}

#[async_trait]
impl SecretsBackend for LiveDatabase {
    fn name(&self) -> &str {
        "database"
    }

    async fn connection(
        &self,
        tenant: &str,
        conn_id: &str,
    ) -> Result<Option<Connection>, SecretsError> {
        self.backend().await?.connection(tenant, conn_id).await
    }

    async fn variable(&self, tenant: &str, key: &str) -> Result<Option<String>, SecretsError> {
        self.backend().await?.variable(tenant, key).await
    }
}
