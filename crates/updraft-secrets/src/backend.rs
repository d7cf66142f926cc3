//! Where connections and variables come from.

use async_trait::async_trait;

use crate::{Connection, SecretsError};

/// One source of connections and variables, asked for one tenant's view: the tenant's own
/// values first, then the shared ones. A backend that holds nothing for a name answers
/// `None` (the next backend in [`crate::Secrets`]' order is asked).
#[async_trait]
pub trait SecretsBackend: Send + Sync {
    /// Its name in configuration and messages (`environment`, `files`, `database`,
    /// `kubernetes`).
    fn name(&self) -> &str;
    async fn connection(
        &self,
        tenant: &str,
        conn_id: &str,
    ) -> Result<Option<Connection>, SecretsError>;
    async fn variable(&self, tenant: &str, key: &str) -> Result<Option<String>, SecretsError>;
}
