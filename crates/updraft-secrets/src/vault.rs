//! Connections and variables in the metadata database, encrypted with the [`Keyring`].
//!
//! The [`Vault`] is the one way updraft writes and reads them there: it encrypts a
//! connection's password and extra and a variable's value on write (as Airflow does with its
//! `fernet_key`) and decrypts them on read, with an error naming the key setting when the
//! configured keys cannot. [`DatabaseBackend`] is the vault as a [`SecretsBackend`].

use std::sync::Arc;

use async_trait::async_trait;
use updraft_store::{SecretQuery, SecretStore, WriteMode};

use crate::{Connection, Keyring, SecretsBackend, SecretsError, Variable};

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
        let _ = (&self.store, tenant, conn_id);
        todo!("Vault::connection")
    }

    /// A page of connections (decrypted), with the total matching; each with its tenant.
    pub async fn connections(
        &self,
        query: &SecretQuery,
    ) -> Result<(Vec<(Option<String>, Connection)>, u64), SecretsError> {
        let _ = query;
        todo!("Vault::connections")
    }

    pub async fn write_connection(
        &self,
        tenant: Option<&str>,
        connection: &Connection,
        mode: WriteMode,
    ) -> Result<(), SecretsError> {
        let _ = (tenant, connection, mode);
        todo!("Vault::write_connection")
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
        let _ = (tenant, key);
        todo!("Vault::variable")
    }

    pub async fn variables(
        &self,
        query: &SecretQuery,
    ) -> Result<(Vec<(Option<String>, Variable)>, u64), SecretsError> {
        let _ = query;
        todo!("Vault::variables")
    }

    pub async fn write_variable(
        &self,
        tenant: Option<&str>,
        variable: &Variable,
        mode: WriteMode,
    ) -> Result<(), SecretsError> {
        let _ = (tenant, variable, mode);
        todo!("Vault::write_variable")
    }

    pub async fn delete_variable(
        &self,
        tenant: Option<&str>,
        key: &str,
    ) -> Result<bool, SecretsError> {
        Ok(self.store.delete_variable(tenant, key).await?)
    }

    /// Re-encrypts every encrypted value with the first key (`updraft rotate-fernet-key`), in
    /// one transaction; returns how many values were rewritten.
    pub async fn rotate(&self) -> Result<u64, SecretsError> {
        todo!("Vault::rotate")
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
