//! Connections and variables as stored: the types and the [`SecretStore`] contract. Both
//! backends implement it once, in `backend.rs`.
//!
//! The store keeps what it is given: encrypting the password and extra of a connection and
//! the value of a variable is the caller's job (`updraft-secrets`' `Vault`), which records
//! it in the `is_encrypted` flags. A connection or variable belongs to one tenant, or to none
//! (`tenant: None`, shared by every tenant; stored with the tenant `*`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;

/// A connection as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConnectionRow {
    /// `None`: shared by every tenant.
    pub tenant: Option<String>,
    pub conn_id: String,
    pub conn_type: String,
    pub description: Option<String>,
    pub host: Option<String>,
    pub schema: Option<String>,
    pub login: Option<String>,
    /// A Fernet token when `is_encrypted`.
    pub password: Option<String>,
    pub port: Option<i32>,
    /// A Fernet token when `is_extra_encrypted`.
    pub extra: Option<String>,
    pub is_encrypted: bool,
    pub is_extra_encrypted: bool,
}

/// A variable as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VariableRow {
    /// `None`: shared by every tenant.
    pub tenant: Option<String>,
    pub key: String,
    /// A Fernet token when `is_encrypted`.
    pub value: String,
    pub description: Option<String>,
    pub is_encrypted: bool,
}

/// Which connections or variables to list, by tenant then id (or key).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretQuery {
    /// Only these tenants' (plus, with `include_shared`, the shared ones); `None`: all,
    /// shared ones included. `Some(vec![])` with `include_shared`: only the shared ones.
    pub tenants: Option<Vec<String>>,
    pub include_shared: bool,
    /// Only ids (keys) containing this text, ignoring ASCII case as Airflow's `*_pattern`
    /// filters do (`%` and `_` are literal).
    pub id_pattern: Option<String>,
    /// Only the ids (keys) equal to this one, exactly (one per tenant at most).
    pub id: Option<String>,
    /// The page size (0: an empty page, with the total).
    pub limit: u32,
    pub offset: u32,
}

/// How a write treats an existing row of the same tenant and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Only a new one: an existing row is [`crate::StoreError::Conflict`].
    Create,
    /// Only an existing one: none is [`crate::StoreError::NotFound`].
    Update,
    /// Either.
    Upsert,
}

/// One encrypted field met by [`SecretStore::reencrypt`]: what it is (for error messages,
/// e.g. `connection my_db's password (tenant a)`) and its stored token.
pub struct EncryptedField<'a> {
    pub what: String,
    pub token: &'a str,
}

/// Re-encrypts one field: the new token, or an error message (which aborts the whole
/// re-encryption, changing nothing).
pub type Reencrypt<'a> =
    dyn Fn(EncryptedField<'_>) -> std::result::Result<String, String> + Send + Sync + 'a;

/// Connections and variables.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// One connection of `tenant` (`None`: the shared one), exactly: no fallback.
    async fn connection(
        &self,
        tenant: Option<&str>,
        conn_id: &str,
    ) -> Result<Option<ConnectionRow>>;
    /// A page of connections, by tenant (shared first) then id, with the total matching.
    async fn connections(&self, query: &SecretQuery) -> Result<(Vec<ConnectionRow>, u64)>;
    /// A tenant named `*` (how shared rows are stored) is [`crate::StoreError::Invalid`].
    async fn write_connection(&self, row: &ConnectionRow, mode: WriteMode) -> Result<()>;
    /// False when there was none.
    async fn delete_connection(&self, tenant: Option<&str>, conn_id: &str) -> Result<bool>;

    async fn variable(&self, tenant: Option<&str>, key: &str) -> Result<Option<VariableRow>>;
    async fn variables(&self, query: &SecretQuery) -> Result<(Vec<VariableRow>, u64)>;
    /// As [`SecretStore::write_connection`].
    async fn write_variable(&self, row: &VariableRow, mode: WriteMode) -> Result<()>;
    async fn delete_variable(&self, tenant: Option<&str>, key: &str) -> Result<bool>;

    /// Replaces every encrypted field (connection passwords and extras, variable values)
    /// with `reencrypt`'s answer, in one transaction: all or nothing. Returns how many fields
    /// were rewritten.
    async fn reencrypt(&self, reencrypt: &Reencrypt<'_>) -> Result<u64>;
}
