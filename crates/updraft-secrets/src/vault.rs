//! Connections and variables in the metadata database, encrypted with the [`Keyring`].
//!
//! The [`Vault`] is the one way updraft writes and reads them there: it encrypts a
//! connection's password and extra and a variable's value on write (as Airflow does with its
//! `fernet_key`) and decrypts them on read, with an error naming the key setting when the
//! configured keys cannot. [`DatabaseBackend`] is the vault as a [`SecretsBackend`].

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use updraft_store::{ConnectionRow, SecretQuery, SecretStore, StoreError, VariableRow, WriteMode};

use crate::{Connection, Keyring, KeyringError, SecretsBackend, SecretsError, Variable};

/// Reads and writes connections and variables in the database, encrypting what is secret.
#[derive(Clone)]
pub struct Vault {
    store: Arc<dyn SecretStore>,
    keyring: Keyring,
}

impl Vault {
    pub fn new(store: Arc<dyn SecretStore>, keyring: Keyring) -> Vault {
        Vault { store, keyring }
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// `tenant`'s connection (`None`: the shared one), exactly: no fallback.
    pub async fn connection(
        &self,
        tenant: Option<&str>,
        conn_id: &str,
    ) -> Result<Option<Connection>, SecretsError> {
        let row = self.store.connection(tenant, conn_id).await?;
        row.map(|row| self.open_connection(row)).transpose()
    }

    /// A page of connections (decrypted), with the total matching; each with its tenant.
    pub async fn connections(
        &self,
        query: &SecretQuery,
    ) -> Result<(Vec<(Option<String>, Connection)>, u64), SecretsError> {
        let (rows, total) = self.store.connections(query).await?;
        let opened = rows
            .into_iter()
            .map(|row| Ok((row.tenant.clone(), self.open_connection(row)?)))
            .collect::<Result<_, SecretsError>>()?;
        Ok((opened, total))
    }

    pub async fn write_connection(
        &self,
        tenant: Option<&str>,
        connection: &Connection,
        mode: WriteMode,
    ) -> Result<(), SecretsError> {
        let row = self.seal_connection(tenant, connection);
        Ok(self.store.write_connection(&row, mode).await?)
    }

    pub async fn delete_connection(
        &self,
        tenant: Option<&str>,
        conn_id: &str,
    ) -> Result<bool, SecretsError> {
        Ok(self.store.delete_connection(tenant, conn_id).await?)
    }

    pub async fn variable(
        &self,
        tenant: Option<&str>,
        key: &str,
    ) -> Result<Option<Variable>, SecretsError> {
        let row = self.store.variable(tenant, key).await?;
        row.map(|row| self.open_variable(row)).transpose()
    }

    pub async fn variables(
        &self,
        query: &SecretQuery,
    ) -> Result<(Vec<(Option<String>, Variable)>, u64), SecretsError> {
        let (rows, total) = self.store.variables(query).await?;
        let opened = rows
            .into_iter()
            .map(|row| Ok((row.tenant.clone(), self.open_variable(row)?)))
            .collect::<Result<_, SecretsError>>()?;
        Ok((opened, total))
    }

    pub async fn write_variable(
        &self,
        tenant: Option<&str>,
        variable: &Variable,
        mode: WriteMode,
    ) -> Result<(), SecretsError> {
        let row = VariableRow {
            tenant: tenant.map(str::to_owned),
            key: variable.key.clone(),
            value: self.keyring.encrypt(&variable.value),
            description: variable.description.clone(),
            is_encrypted: true,
        };
        Ok(self.store.write_variable(&row, mode).await?)
    }

    pub async fn delete_variable(
        &self,
        tenant: Option<&str>,
        key: &str,
    ) -> Result<bool, SecretsError> {
        Ok(self.store.delete_variable(tenant, key).await?)
    }

    /// Re-encrypts every encrypted value with the first key (`updraft rotate-fernet-key`), in
    /// one transaction; returns how many values were rewritten. A value no configured key can
    /// decrypt aborts it, changing nothing, with [`KeyringError::WrongKey`] naming the value.
    pub async fn rotate(&self) -> Result<u64, SecretsError> {
        let failure: Mutex<Option<KeyringError>> = Mutex::new(None);
        let rotated = self
            .store
            .reencrypt(&|field| {
                self.keyring.rotate(field.token, &field.what).map_err(|e| {
                    let message = e.to_string();
                    failure
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .get_or_insert(e);
                    message
                })
            })
            .await;
        let failure = failure
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match (rotated, failure) {
            (Ok(count), _) => Ok(count),
            (Err(_), Some(keyring)) => Err(keyring.into()),
            (Err(store), None) => Err(store.into()),
        }
    }

    /// The row to store for `connection`: its password and extra (when present) encrypted.
    fn seal_connection(&self, tenant: Option<&str>, connection: &Connection) -> ConnectionRow {
        let seal = |value: &Option<String>| value.as_deref().map(|v| self.keyring.encrypt(v));
        ConnectionRow {
            tenant: tenant.map(str::to_owned),
            conn_id: connection.conn_id.clone(),
            conn_type: connection.conn_type.clone(),
            description: connection.description.clone(),
            host: connection.host.clone(),
            schema: connection.schema.clone(),
            login: connection.login.clone(),
            password: seal(&connection.password),
            port: connection.port.map(i32::from),
            extra: seal(&connection.extra),
            is_encrypted: connection.password.is_some(),
            is_extra_encrypted: connection.extra.is_some(),
        }
    }

    /// `row` with its encrypted fields decrypted; fields stored unencrypted are kept as they are.
    fn open_connection(&self, row: ConnectionRow) -> Result<Connection, SecretsError> {
        let owner = owner(row.tenant.as_deref());
        let what = |field: &str| format!("connection {}'s {field} ({owner})", row.conn_id);
        let password = self.open(row.password.clone(), row.is_encrypted, || what("password"))?;
        let extra = self.open(row.extra.clone(), row.is_extra_encrypted, || what("extra"))?;
        let port = row
            .port
            .map(|port| {
                u16::try_from(port).map_err(|_| {
                    StoreError::Corrupt(format!("{}: port {port} is out of range", what("port")))
                })
            })
            .transpose()?;
        Ok(Connection {
            conn_id: row.conn_id,
            conn_type: row.conn_type,
            description: row.description,
            host: row.host,
            schema: row.schema,
            login: row.login,
            password,
            port,
            extra,
        })
    }

    fn open_variable(&self, row: VariableRow) -> Result<Variable, SecretsError> {
        let value = if row.is_encrypted {
            let what = format!(
                "variable {}'s value ({})",
                row.key,
                owner(row.tenant.as_deref())
            );
            self.keyring.decrypt(&row.value, &what)?
        } else {
            row.value
        };
        Ok(Variable {
            key: row.key,
            value,
            description: row.description,
        })
    }

    /// `value` decrypted when `encrypted`; `what` names it for the error.
    fn open(
        &self,
        value: Option<String>,
        encrypted: bool,
        what: impl FnOnce() -> String,
    ) -> Result<Option<String>, KeyringError> {
        match value {
            Some(token) if encrypted => self.keyring.decrypt(&token, &what()).map(Some),
            other => Ok(other),
        }
    }
}

/// Whose a value is, in messages: `tenant a`, or `shared`.
fn owner(tenant: Option<&str>) -> String {
    match tenant {
        Some(tenant) => format!("tenant {tenant}"),
        None => "shared".to_owned(),
    }
}

/// The database as a secrets backend: the tenant's own value, then the shared one.
pub struct DatabaseBackend {
    vault: Vault,
}

impl DatabaseBackend {
    pub fn new(vault: Vault) -> DatabaseBackend {
        DatabaseBackend { vault }
    }
}

#[async_trait]
impl SecretsBackend for DatabaseBackend {
    fn name(&self) -> &str {
        "database"
    }

    async fn connection(
        &self,
        tenant: &str,
        conn_id: &str,
    ) -> Result<Option<Connection>, SecretsError> {
        match self.vault.connection(Some(tenant), conn_id).await? {
            Some(found) => Ok(Some(found)),
            None => self.vault.connection(None, conn_id).await,
        }
    }

    async fn variable(&self, tenant: &str, key: &str) -> Result<Option<String>, SecretsError> {
        let found = match self.vault.variable(Some(tenant), key).await? {
            Some(found) => Some(found),
            None => self.vault.variable(None, key).await?,
        };
        Ok(found.map(|v| v.value))
    }
}
